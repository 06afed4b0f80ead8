"""The quiver command itself: shell completion."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.graphql.servers import QUIVER


def complete(words: str) -> list[str]:
    env = {
        **os.environ,
        "_QUIVER_COMPLETE": "complete_bash",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - 1),
    }
    result = subprocess.run([QUIVER], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_shell_completion_completes_commands_and_options() -> None:
    assert complete("quiver se") == ["serve"]
    assert "--log-format" in complete("quiver serve --lo")


def test_shell_completion_offers_the_log_formats() -> None:
    env = {**os.environ, "_QUIVER_COMPLETE": "complete_bash"}
    for words in ("quiver serve --log-format ", "quiver run --log-format "):
        env |= {"COMP_WORDS": words, "COMP_CWORD": "3"}
        result = subprocess.run([QUIVER], env=env, capture_output=True, text=True, timeout=60)
        assert result.stdout.split() == ["text", "json"], words
    env |= {"COMP_WORDS": "quiver serve --log-format j", "COMP_CWORD": "3"}
    result = subprocess.run([QUIVER], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["json"]


def test_python_m_quiver_is_the_quiver_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "quiver", "check", "--db", "oracle://x@y/z"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "unsupported database URL scheme 'oracle'" in result.stderr
    assert result.stderr.startswith("error: ")


def test_help_offers_to_install_and_show_completion() -> None:
    result = subprocess.run(
        [QUIVER, "--help"], capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert "--install-completion" in result.stdout
    assert "--show-completion" in result.stdout


ROOT = Path(__file__).resolve().parents[1]
COMMAND_PACKAGES = ["graphql", "flight", "schema", "pipeline", "observers", "ingest"]


def probe(script: str, cwd: Path) -> list[str]:
    """Run ``script`` in a fresh interpreter; the lines it printed (it must exit 0)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-2:]


def imported_after(args: list[str], prefixes: list[str]) -> str:
    """A script running ``quiver ARGS`` as the console script does, then printing (last) the
    modules starting with one of ``prefixes`` that it imported and whether the garbage
    collector is on."""
    return (
        "import gc, sys\nfrom quiver.cli import main\n"
        f"sys.argv = ['quiver', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
        f"print(sorted(m for m in sys.modules if m.startswith(tuple({prefixes!r}))))\n"
        "print(gc.isenabled())\n"
    )


def test_help_lists_every_command_without_importing_any_command_module(tmp_path: Path) -> None:
    prefixes = [f"quiver.{package}." for package in COMMAND_PACKAGES]
    modules, _ = probe(imported_after(["--help"], prefixes), tmp_path)
    assert modules == "[]"


def test_a_csv_to_csv_run_imports_only_the_pipeline_commands(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,name\n1,a\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    prefixes = [f"quiver.{package}" for package in COMMAND_PACKAGES if package != "pipeline"]
    prefixes += [
        "quiver.pipeline.processors",
        "quiver.pipeline.flowengine",
        "quiver.config.settings",
        "quiver.pipeline.dead_letters",  # the queue, for a pipeline with a `dlq:` section
    ]
    prefixes += ["quiver.pipeline.sources.", "quiver.pipeline.sinks."]
    modules, collecting = probe(imported_after(["run", "p.yaml", "--quiet"], prefixes), tmp_path)
    # the components the pipeline names, and nothing of the other commands, components or
    # the dead-letter queue
    assert modules == str(
        [
            "quiver.pipeline.sinks.csv",
            "quiver.pipeline.sources.csv",
            "quiver.pipeline.sources.file_source",
        ]
    )
    assert collecting == "True"
    assert (tmp_path / "out.csv").read_text() == "id,name\n1,a\n"


def test_a_csv_to_csv_run_imports_neither_pyarrow_compute_nor_importlib_metadata(
    tmp_path: Path,
) -> None:
    """``pyarrow.compute`` writes a wrapper for each of Arrow's kernels as it is imported
    (26 ms of CPU) and ``importlib.metadata`` brings the ``email`` package (20 ms): a run that
    names built-in components only and calls a few kernels needs neither."""
    (tmp_path / "in.csv").write_text('id,name\n1,"a,b"\n2,\n')
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    script = imported_after(["run", "p.yaml", "--quiet"], ["pyarrow.compute", "importlib.meta"])
    modules, _ = probe(script, tmp_path)
    assert modules == "[]"
    assert (tmp_path / "out.csv").read_text() == 'id,name\n1,"a,b"\n2,\n'


def test_a_csv_to_csv_run_tokenizes_no_python_source(tmp_path: Path) -> None:
    """Reading a builtin's signature (a pydantic default factory such as ``list``) runs the
    tokenizer, whose pattern takes milliseconds to compile; a run needs none."""
    (tmp_path / "in.csv").write_text("id,name\n1,a\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    script = imported_after(["run", "p.yaml", "--quiet"], ["tokenize"]) + (
        "import tokenize\nprint(tokenize._compile.cache_info().currsize)\n"
    )
    _, compiled = probe(script, tmp_path)
    assert compiled == "0"


def test_every_other_command_runs_with_the_garbage_collector_on(tmp_path: Path) -> None:
    modules, collecting = probe(imported_after(["plugins", "list"], ["quiver.graphql."]), tmp_path)
    assert (modules, collecting) == ("[]", "True")


def test_the_listed_help_of_every_command_is_its_own() -> None:
    """``quiver --help`` lists the commands from a table, without loading them: the table
    holds every command, in the order the packages register them, with its own help."""
    import inspect

    import typer
    import typer.main

    from quiver.cli import COMMANDS, _register

    found: dict[str, tuple[str, str]] = {}
    for package in dict.fromkeys(package for package, _ in COMMANDS.values()):
        sub = typer.Typer()
        _register(package, sub)
        for name, command in typer.main.get_group(sub).commands.items():
            first = inspect.cleandoc(command.help or "").partition("\f")[0].split("\n\n")[0]
            found[name] = (package, first)
    assert found == COMMANDS
    order = [name for package in COMMAND_PACKAGES for name in found if found[name][0] == package]
    assert sorted(order, key=list(COMMANDS).index) == list(COMMANDS)


#: The console script as pip writes it, calling :func:`quiver.cli.script` (the installed one
#: may predate it).
SCRIPT = "import sys\nfrom quiver.cli import script\nsys.argv[0] = 'quiver'\nsys.exit(script())\n"

#: A Python step that leaves traces of how the process ended: `atexit.log` from an atexit
#: function, `freed.log` from an object freed by Python's shutdown.
TRACES = """\
import atexit

atexit.register(lambda: open("atexit.log", "w").write("ran"))


class Freed:
    def __del__(self, open=open):
        open("freed.log", "w").write("freed")


KEPT = Freed()


def go(batch, ctx):
    return batch
"""


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_console_script_is_script() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["quiver"] == "quiver.cli:script"


@pytest.mark.parametrize(
    ("sink", "options", "code"),
    [
        ("{csv: {path: out.csv}}", [], 0),
        ("{csv: {path: '-'}}", [], 0),
        ("{csv: {path: out.csv}}", ["--strict"], 3),
    ],
)
def test_a_finished_run_ends_the_process_at_once_with_its_exit_code_and_output(
    tmp_path: Path, sink: str, options: list[str], code: int
) -> None:
    """Python's shutdown, freeing each object, is skipped after ``quiver run``; the atexit
    functions still run and what was printed or written is all there."""
    (tmp_path / "in.csv").write_text("id\n1\n-2\n3\n")
    (tmp_path / "traces.py").write_text(TRACES)
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - python: {file: traces.py, function: go, mode: batch}\n"
        "  - validate: {schema: {id: {type: int, min: 0}}}\n"
        f"sink: {sink}\n"
        "on_error: {policy: reject, rejects: rejects.csv}\n"
    )
    done = run_script(["run", "p.yaml", "--quiet", *options], tmp_path)
    assert done.returncode == code, done.stderr
    written = done.stdout if "'-'" in sink else (tmp_path / "out.csv").read_text()
    assert written.splitlines() == ["id", "1", "3"]
    assert (tmp_path / "rejects.csv").read_text().count("\n") == 2
    assert (tmp_path / "atexit.log").read_text() == "ran"
    assert not (tmp_path / "freed.log").exists()


@pytest.mark.parametrize("opened", ["when the step loads", "while the run goes on"])
@pytest.mark.parametrize(
    ("opener", "reader"),
    [
        ("open('left.log', 'w')", lambda path: path.read_text()),
        (
            "__import__('gzip').open('left.log', 'wt')",
            lambda path: gzip.decompress(path.read_bytes()).decode(),
        ),
    ],
    ids=["text", "gzip"],
)
def test_a_file_left_open_is_closed_with_all_it_holds(
    tmp_path: Path, opened: str, opener: str, reader: Callable[[Path], str]
) -> None:
    """What sits in the buffers of a file nobody closed is written (a gzip file gets its
    trailer), wherever the step keeps it: Python's own shutdown may free the buffer under a
    text wrapper first and lose it."""
    (tmp_path / "in.csv").write_text("id\n1\n")
    load, run = (
        (f"LOG.append({opener})\n", "")
        if opened.startswith("when")
        else ("", f"    if not LOG:\n        LOG.append({opener})\n")
    )
    (tmp_path / "left.py").write_text(
        f"LOG = []\n{load}\n\ndef go(batch, ctx):\n{run}"
        "    LOG[0].write('kept')\n    return batch\n"
    )
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors: [{python: {file: left.py, function: go, mode: batch}}]\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    done = run_script(["run", "p.yaml", "--quiet"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert reader(tmp_path / "left.log") == "kept"
    assert (tmp_path / "out.csv").read_text() == "id\n1\n"


def test_other_commands_end_the_ordinary_way(tmp_path: Path) -> None:
    (tmp_path / "traces.py").write_text(TRACES)
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors: [{python: {file: traces.py, function: go, mode: batch}}]\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    (tmp_path / "in.csv").write_text("id\n1\n")
    done = run_script(["validate", "p.yaml"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "freed.log").read_text() == "freed"


def test_a_csv_to_csv_run_does_not_import_typer(tmp_path: Path) -> None:
    """``quiver run FILE [OPTIONS]`` is read without typer: importing it and building its
    converters (pydantic type adapters) is about 5% of a short run."""
    (tmp_path / "in.csv").write_text("id,name\n1,a\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    for options in (["--quiet"], ["--report", "r.json", "-v", "K=V", "--workers", "2"]):
        script = imported_after(["run", "p.yaml", *options], ["typer", "click"])
        modules, collecting = probe(script, tmp_path)
        assert (modules, collecting) == ("[]", "True")
        assert (tmp_path / "out.csv").read_text() == "id,name\n1,a\n"


#: ``quiver run`` arguments read without typer, each to what typer reads.
READ_WITHOUT_TYPER = [
    ["p.yaml"],
    ["p.yaml", "--quiet"],
    ["-q", "p.yaml"],
    ["p.yaml", "--resume", "--strict", "--debug", "-q"],
    ["p.yaml", "--strict", "--strict"],
    ["p.yaml", "-v", "A=1", "--variable", "B=two words", "-v", "C="],
    ["p.yaml", "--variable", "K=é"],
    ["--dry-run", "p.yaml"],
    ["p.yaml", "--dry-run"],
    ["p.yaml", "--dry-run", "5"],
    ["p.yaml", "--dry-run", "0"],
    ["--dry-run", "--quiet", "p.yaml"],
    ["p.yaml", "--report", "out/report.json"],
    ["p.yaml", "--log-format", "json"],
    ["p.yaml", "--log-format", "yaml"],  # refused by the command itself, alike
    ["p.yaml", "--workers", "1"],
    ["p.yaml", "--workers", "16"],
    ["p.yaml", "--max-rejects", "0"],
    ["p.yaml", "--max-rejects", "250"],
    ["p.yaml", "--max-reject-ratio", "0"],
    ["p.yaml", "--max-reject-ratio", "0.05"],
    ["p.yaml", "--max-reject-ratio", "1"],
    ["p.yaml", "--max-reject-ratio", "1.0"],
    ["p.yaml", "--max-reject-ratio", "0.333333333333333"],
    ["p.yaml", "--path-map", "C:\\data=/srv/data", "--path-map", "D:\\x=/x"],
    ["p.yaml", "--metrics", "127.0.0.1:8888"],
    ["dir/p v2.yaml", "--quiet"],
    ["p.yaml", "--workers", "4", "--quiet", "--report", "r.json", "--log-format", "text"],
]

#: ``quiver run`` arguments left to typer: its help, its error messages, forms read elsewise.
LEFT_TO_TYPER = [
    [],
    ["--help"],
    ["p.yaml", "--help"],
    ["p.yaml", "--bogus"],
    ["p.yaml", "other.yaml"],
    ["--quiet"],
    ["p.yaml", "--report"],
    ["p.yaml", "--report", "--quiet"],
    ["p.yaml", "--workers", "0"],
    ["p.yaml", "--workers", "-1"],
    ["p.yaml", "--workers", "two"],
    ["p.yaml", "--workers", "04"],
    ["p.yaml", "--workers", "1.0"],
    ["p.yaml", "--workers", "4", "--workers", "2"],
    ["p.yaml", "--max-rejects", "-1"],
    ["p.yaml", "--max-reject-ratio", "1.5"],
    ["p.yaml", "--max-reject-ratio", "-0.1"],
    ["p.yaml", "--max-reject-ratio", "5e-2"],
    ["p.yaml", "--max-reject-ratio", "half"],
    ["p.yaml", "--dry-run=5"],
    ["p.yaml", "--dry-run", "٣"],
    ["p.yaml", "--workers=2"],
    ["p.yaml", "-qv", "K=V"],
    ["p.yaml", "-vK=V"],
    ["p.yaml", "--"],
    ["--", "p.yaml"],
    ["-"],
    [""],
    ["p.yaml", "--variable", ""],
    ["p\udcff.yaml"],
]


def typer_reading(args: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, object]:
    """What the typer app passes to ``run_command`` for ``quiver run ARGS`` (the exit code,
    and the keywords, or the output when it passes nothing)."""
    import inspect

    from typer.testing import CliRunner

    from quiver.cli import app
    from quiver.pipeline import commands

    passed: list[dict[str, object]] = []

    def record(*values: object) -> int:
        passed.append(dict(inspect.signature(run_command).bind(*values).arguments))
        return 0

    run_command = commands.run_command
    monkeypatch.setattr(commands, "run_command", record)
    result = CliRunner().invoke(app, ["run", *args], env={"COLUMNS": "200"})
    monkeypatch.undo()
    return result.exit_code, passed[0] if passed else result.output


def typed(values: dict[str, object]) -> dict[str, tuple[type, object]]:
    return {name: (type(value), value) for name, value in values.items()}


@pytest.mark.parametrize("args", READ_WITHOUT_TYPER, ids=" ".join)
def test_run_arguments_read_without_typer_are_read_as_typer_reads_them(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from quiver.pipeline.commands import parse_run_arguments

    code, by_typer = typer_reading(args, monkeypatch)
    assert code == 0 and isinstance(by_typer, dict), by_typer
    read = parse_run_arguments(args)
    assert read is not None
    assert typed(read) == typed(by_typer)


@pytest.mark.parametrize("args", LEFT_TO_TYPER, ids=repr)
def test_run_arguments_typer_refuses_or_reads_otherwise_are_left_to_it(args: list[str]) -> None:
    from quiver.pipeline.commands import parse_run_arguments

    assert parse_run_arguments(args) is None


@pytest.mark.parametrize(
    "args",
    [a for a in LEFT_TO_TYPER if "--help" not in a and "=" not in "".join(a)][:18],
    ids=repr,
)
def test_run_arguments_left_to_typer_that_it_refuses_exit_2_with_its_message(
    args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = typer_reading(args, monkeypatch)
    if code == 0:  # typer reads it (another form of a value): only the reading differs
        return
    assert code == 2 and "Error" in str(output), output


def test_every_run_option_is_read_without_typer() -> None:
    """An option added to ``quiver run`` is read without typer too (else every run that gives
    it pays for typer)."""
    import typer
    import typer.main

    from quiver.pipeline.commands import _RUN_FLAGS, _RUN_OPTIONS, register

    sub = typer.Typer()
    register(sub)
    run = typer.main.get_group(sub).commands["run"]
    names = {name for p in run.params for name in getattr(p, "opts", []) if name.startswith("-")}
    assert names == set(_RUN_FLAGS) | set(_RUN_OPTIONS)


def test_a_run_read_without_typer_ends_as_the_typer_app_ends(tmp_path: Path) -> None:
    """The same output, files and exit code, read by typer (``app()``) or not (the script)."""
    (tmp_path / "in.csv").write_text("id\n1\n-2\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors: [{validate: {schema: {id: {type: int, min: 0}}}}]\n"
        "sink: {csv: {path: out.csv}}\n"
        "on_error: {policy: reject, rejects: rejects.csv}\n"
    )
    (tmp_path / "bad.yaml").write_text("source: {csv: {path: in.csv}}\nsink: {cvs: {}}\n")
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}", "COLUMNS": "120"}
    by_app = "import sys\nfrom quiver.cli import app\nsys.argv[0] = 'quiver'\napp()\n"
    for args in (
        ["run", "p.yaml", "--strict", "--report", "r.json", "-q"],
        ["run", "p.yaml", "--log-format", "json"],
        ["run", "p.yaml", "--dry-run"],
        ["run", "bad.yaml"],
        ["run", "missing.yaml", "-q"],
        ["run", "p.yaml", "--log-format", "yaml"],
    ):
        ends = []
        for script in (SCRIPT, by_app):
            done = subprocess.run(
                [sys.executable, "-c", script, *args],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            report = tmp_path / "r.json"
            written = json.loads(report.read_text())["exit_code"] if report.exists() else None
            report.unlink(missing_ok=True)
            ends.append((done.returncode, scrub(done.stdout), scrub(done.stderr), written))
        assert ends[0] == ends[1], args


def scrub(text: str) -> str:
    """``text`` without what differs between two runs (run ids, times, rates)."""
    import re

    text = re.sub(r"[0-9a-f]{12}", "<id>", text)
    text = re.sub(r'"(ts|time|seconds|elapsed|[a-z_]*_s|rows_per_s)": [^,}]+', r'"\1": _', text)
    text = re.sub(r"[0-9][0-9,]*(\.[0-9]+)? ?[KM]? rows/s", "<rate>", text)  # 76 rows/s, 1.2 K
    text = re.sub(r"[0-9]+\.[0-9]+s?", "<n>", text)
    # a wider number widens its table column: compare the cells, not their padding
    return re.sub(r"[ ━─═]+", " ", text)


#: A pydantic plugin that notes each model it is shown, in ``models.log``.
PLUGIN = """\
class Plugin:
    def new_schema_validator(self, schema, schema_type, *args, **kwargs):
        with open("models.log", "a") as log:
            log.write(getattr(schema_type, "__name__", str(schema_type)) + "\\n")
        return None, None, None


plugin = Plugin()
"""


def test_a_run_loads_the_installed_pydantic_plugins(tmp_path: Path) -> None:
    """Pydantic's plugins (the ``pydantic`` entry-point group) see Quiver's models, as in any
    process that builds them."""
    (tmp_path / "in.csv").write_text("id\n1\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    site = tmp_path / "site"
    (site / "noting_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "noting_plugin-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: noting-plugin\nVersion: 1.0\n"
    )
    (site / "noting_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[pydantic]\nnoting = noting_plugin:plugin\n"
    )
    (site / "noting_plugin.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src"), str(site)])}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, "run", "p.yaml", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "CsvSourceConfig" in (tmp_path / "models.log").read_text().split()


def test_a_run_without_pydantic_plugins_does_not_search_the_entry_points(tmp_path: Path) -> None:
    """With no plugin installed, pydantic is told so before it reads the entry points of every
    installed distribution (``importlib.metadata``, about 10 ms)."""
    (tmp_path / "in.csv").write_text("id\n1\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    script = (
        "import importlib.metadata as metadata\nsearched = []\nfind = metadata.entry_points\n"
        "def counted(**selection):\n    searched.append(selection)\n    return find(**selection)\n"
        "metadata.entry_points = counted\n"
        + imported_after(["run", "p.yaml", "--quiet"], [])
        + "from pydantic.plugin import _loader\nprint(searched, _loader._plugins)\n"
        + "print(_loader.get_plugins(), _loader.PYDANTIC_ENTRY_POINT_GROUP, _loader._plugins)\n"
    )
    searched, loader = probe(script, tmp_path)
    assert searched == "[] {}"
    # any other name of pydantic's loader is its own, which then holds no plugins either
    assert loader == "() pydantic {}"
    assert (tmp_path / "out.csv").read_text() == "id\n1\n"
