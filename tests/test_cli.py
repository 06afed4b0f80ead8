"""The quiver command itself: shell completion."""

from __future__ import annotations

import os
import subprocess
import sys
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
def test_a_file_left_open_is_written_by_the_ordinary_shutdown(tmp_path: Path, opened: str) -> None:
    """Ending at once would lose what sits in the buffer of a file nobody closed: then the
    process ends the ordinary way, which closes it."""
    (tmp_path / "in.csv").write_text("id\n1\n")
    load, run = (
        ("LOG.append(open('left.log', 'w'))\n", "")
        if opened.startswith("when")
        else (
            "",
            "    if not LOG:\n        LOG.append(open('left.log', 'w'))\n",
        )
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
    assert (tmp_path / "left.log").read_text() == "kept"
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
