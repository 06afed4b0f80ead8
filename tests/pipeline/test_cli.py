"""``quiver run`` / ``quiver validate`` / ``quiver plugins`` as a user runs them: exit codes,
reports, logs, and real subprocesses stopped by real signals.

Most tests drive the command in-process (the same typer app, fresh consoles per call) to keep
the suite fast; the signal tests and one end-to-end run use a real ``quiver`` subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUIVER = [str(Path(sys.executable).parent / "quiver")]
C = "tests.pipeline.engine_components:"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}", "COLUMNS": "200"}


def quiver(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the command in-process, as the console script would."""
    from typer.testing import CliRunner

    from quiver.cli import app

    with contextlib.chdir(cwd):
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def quiver_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed ``quiver`` script in a subprocess."""
    return subprocess.run(
        [*QUIVER, *args], cwd=cwd, env=env(), capture_output=True, text=True, timeout=120
    )


ORDERS = "id,email,total\n1,a@x.com,10\n2,bad,5\n3,c@x.com,-1\n4,d@x.com,7\n"
PIPELINE = (
    "source: {csv: {path: in.csv}}\n"
    "processors:\n"
    "  - validate: {schema: {email: {pattern: '.+@.+'}, total: {type: int, min: 0}}}\n"
    "sink: {csv: {path: out/good.csv}}\n"
    "on_error: {policy: reject, rejects: out/rejects.csv}\n"
)


@pytest.fixture
def orders(tmp_path: Path) -> Path:
    (tmp_path / "in.csv").write_text(ORDERS)
    (tmp_path / "p.yaml").write_text(PIPELINE)
    return tmp_path


def test_run_exits_0_with_a_summary_and_writes_a_report(orders: Path) -> None:
    done = quiver_process("run", "p.yaml", "--report", "report.json", cwd=orders)
    assert done.returncode == 0, done.stderr
    assert "4 rows read, 2 written, 2 rejected" in done.stderr
    report = json.loads((orders / "report.json").read_text())
    assert report["exit_code"] == 0 and report["rejected"] == 2
    assert report["steps"]["validate"]["rows_out"] == 2
    assert (orders / "out/good.csv").read_text().splitlines() == [
        "id,email,total",
        "1,a@x.com,10",
        "4,d@x.com,7",
    ]


@pytest.mark.parametrize(("chosen", "used"), [(None, "system"), ("mimalloc", "mimalloc")])
def test_a_run_uses_the_system_allocator_unless_told_and_freezes_what_imports_made(
    tmp_path: Path, chosen: str | None, used: str
) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n2\n")
    (tmp_path / "pool.py").write_text(
        "import gc\n\n"
        "import pyarrow as pa\n\n"
        "def go(batch, ctx):\n"
        "    name = pa.default_memory_pool().backend_name\n"
        "    frozen = 'frozen' if gc.get_freeze_count() > 10000 else 'not frozen'\n"
        "    batch = batch.append_column('pool', pa.array([name] * batch.num_rows))\n"
        "    return batch.append_column('gc', pa.array([frozen] * batch.num_rows))\n"
    )
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors: [{python: {file: pool.py, function: go, mode: batch}}]\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    variables = env()
    variables.pop("ARROW_DEFAULT_MEMORY_POOL", None)
    if chosen is not None:
        variables["ARROW_DEFAULT_MEMORY_POOL"] = chosen
    done = subprocess.run(
        [*QUIVER, "run", "p.yaml", "--quiet"],
        cwd=tmp_path,
        env=variables,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.csv").read_text().splitlines()[1:] == [
        f"1,{used},frozen",
        f"2,{used},frozen",
    ]


def test_a_python_step_file_is_imported_once_a_run(tmp_path: Path) -> None:
    """The checks before the run and the run share the step's module: its module-level code
    (opening a file, connecting) runs once, as an import would."""
    (tmp_path / "in.csv").write_text("id\n1\n")
    (tmp_path / "t.py").write_text(
        "with open('loads.log', 'a') as log:\n    log.write('loaded\\n')\n\n"
        "def go(batch, ctx):\n    return batch\n"
    )
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors: [{python: {file: t.py, function: go, mode: batch}}]\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    done = quiver_process("run", "p.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "loads.log").read_text() == "loaded\n"
    assert (tmp_path / "out.csv").read_text() == "id\n1\n"


@pytest.mark.parametrize("sink", ["csv", "jsonl", "parquet"])
def test_a_run_whose_output_reader_goes_away_ends_quietly_at_once(
    tmp_path: Path, sink: str
) -> None:
    """``quiver run ... | head``: the closed pipe is not retried, no error is printed and
    a file sink beside it is not published (the run failed: exit code 1)."""
    (tmp_path / "in.csv").write_text(
        "id,name\n" + "".join(f"{i},name{i}\n" for i in range(200_000))
    )
    (tmp_path / "p.yaml").write_text(
        "steps:\n"
        "  src: {csv: {path: in.csv}}\n"
        f"  out: {{{sink}: {{path: '-'}}}}\n"
        "  copy: {csv: {path: copy.csv}}\n"
        "connections: [{from: src, to: out}, {from: src, to: copy}]\n"
    )
    for options in (["--quiet"], []):
        reader, writer = os.pipe()
        started = time.monotonic()
        proc = subprocess.Popen(
            [*QUIVER, "run", "p.yaml", *options],
            cwd=tmp_path,
            env=env(),
            stdout=writer,
            stderr=subprocess.PIPE,
            text=True,
        )
        os.close(writer)
        assert os.read(reader, 10)  # the reader takes a little, then goes away
        os.close(reader)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 1, stderr
        assert "retry" not in stderr and "error" not in stderr and "Traceback" not in stderr
        assert time.monotonic() - started < 30
        assert not (tmp_path / "copy.csv").exists()


@pytest.mark.parametrize("sink", ["csv: {path: out.csv}", "parquet: {path: out.parquet}"])
def test_rows_that_reach_a_sink_without_columns_fail_the_run(tmp_path: Path, sink: str) -> None:
    """A script answering ``{}`` for each row leaves rows without a field, which a CSV file
    (empty lines) or a Parquet file (no rows) would lose unsaid."""
    (tmp_path / "in.csv").write_text("a,b\n1,x\n2,y\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors: [{js: {script: 'function transform(r) { return {}; }'}}]\n"
        f"sink: {{{sink}}}\n"
    )
    done = quiver("run", "p.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 1
    assert "the rows reaching it have no columns" in done.stderr
    assert not list(tmp_path.glob("out.*"))


def test_strict_turns_rejected_rows_into_exit_code_3(orders: Path) -> None:
    done = quiver("run", "p.yaml", "--strict", "--quiet", cwd=orders)
    assert done.returncode == 3


def test_a_failed_run_exits_1_and_writes_nothing(orders: Path) -> None:
    (orders / "ff.yaml").write_text(
        PIPELINE.replace("on_error: {policy: reject, rejects: out/rejects.csv}\n", "")
    )
    done = quiver("run", "ff.yaml", "--report", "r.json", cwd=orders)
    assert done.returncode == 1
    assert "line 3, column 'email', value 'bad'" in done.stderr
    assert not (orders / "out").exists()
    report = json.loads((orders / "r.json").read_text())
    assert report["status"] == "failed" and report["error"]["code"] == "ROW_REJECTED"


def test_an_invalid_pipeline_exits_2_with_every_problem(orders: Path) -> None:
    (orders / "bad.yaml").write_text(
        "source: {csv: {path: in.csv, delimitr: ';'}}\n"
        "processors:\n"
        "  - sql: {query: 'selec * from input'}\n"
        "  - python: {file: t.py, function: go}\n"
        "sink: {csv: {path: o.csv}}\n"
    )
    (orders / "t.py").write_text("def transform(row, ctx):\n    return row\n")
    run = quiver("run", "bad.yaml", cwd=orders)
    assert run.returncode == 2
    assert "bad.yaml:1:30 source.csv.delimitr: unknown key 'delimitr'" in run.stderr
    done = quiver("validate", "bad.yaml", cwd=orders)
    assert done.returncode == 2
    assert "bad.yaml:1:30 source.csv.delimitr" in done.stderr
    assert "3 problems found" in done.stderr


def test_validate_checks_scripts_and_sql_without_running(orders: Path) -> None:
    (orders / "v.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - sql: {query: 'selec * from input'}\n"
        "  - python: {file: t.py, function: go}\n"
        "  - filter: {expression: 'total >'}\n"
        "sink: {csv: {path: o.csv}}\n"
    )
    (orders / "t.py").write_text("def transform(row, ctx):\n    return row\n")
    done = quiver("validate", "v.yaml", cwd=orders)
    assert done.returncode == 2
    assert "v.yaml:3:5 processors[0] sql (query): SQL syntax error" in done.stderr
    assert "v.yaml:4:5 processors[1] python" in done.stderr and "no function 'go'" in done.stderr
    assert "v.yaml:5:5 processors[2] filter (expression)" in done.stderr
    assert "3 problems found" in done.stderr
    assert not (orders / "o.csv").exists()
    ok = quiver("validate", "p.yaml", cwd=orders)
    assert ok.returncode == 0 and "ok (3 steps" in ok.stderr


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ("in.csv", "the report (--report) would write over the input {dir}/in.csv"),
        ("link.csv", "the report (--report) would write over the input {dir}/in.csv"),
        ("out/../in.csv", "the report (--report) would write over the input {dir}/in.csv"),
        ("out/good.csv", "sink 'sink' and the report (--report) both write {dir}/out/good.csv"),
        ("out/rejects.csv", "the rejects file {dir}/out/rejects.csv is also written by the report"),
        (".", "{dir} is a directory"),
        ("in.csv/r.json", "{dir}/in.csv is a file, so the directory {dir}/in.csv for the output"),
    ],
)
def test_a_report_path_the_run_could_not_write_is_refused_before_it_reads(
    orders: Path, report: str, message: str
) -> None:
    (orders / "link.csv").symlink_to(orders / "in.csv")
    done = quiver("run", "p.yaml", "--report", report, cwd=orders)
    assert done.returncode == 2, done.stderr
    assert f"error: --report: {message.format(dir=orders)}" in done.stderr.replace("\n", " ")
    assert (orders / "in.csv").read_text() == ORDERS
    assert not (orders / "out").exists()


def test_validate_reports_javascript_syntax_errors_with_their_position(orders: Path) -> None:
    (orders / "bad.js").write_text("function transform(row, ctx) {\n  return row +;\n}\n")
    (orders / "js.yaml").write_text(
        "source: {csv: {path: in.csv}}\nprocessors: [{js: {file: bad.js}}]\n"
        "sink: {csv: {path: o.csv}}\n"
    )
    done = quiver("validate", "js.yaml", cwd=orders)
    assert done.returncode == 2
    assert "bad.js:2:" in done.stderr and "SyntaxError" in done.stderr


@pytest.mark.parametrize(
    ("step", "where"),
    [
        # a block scalar: the script's line 2 is the file's line 7; the ";" is at column 23
        (
            "  - js:\n      script: |\n        function transform(row, ctx) {\n"
            "          return row +;\n        }\n",
            "inline.yaml:7:23",
        ),
        # a one-line quoted script: column counted from the start of the file's line
        (
            '  - js: {script: "function transform(row, ctx) { return row +; }"}\n',
            "inline.yaml:4:62",
        ),
    ],
)
def test_inline_script_errors_point_into_the_pipeline_file(
    orders: Path, step: str, where: str
) -> None:
    (orders / "inline.yaml").write_text(
        f"source: {{csv: {{path: in.csv}}}}\nprocessors:\n\n{step}sink: {{csv: {{path: o.csv}}}}\n"
    )
    done = quiver("validate", "inline.yaml", cwd=orders)
    assert done.returncode == 2
    assert where in done.stderr and "SyntaxError" in done.stderr, done.stderr


def test_run_checks_scripts_before_reading_any_data(orders: Path) -> None:
    (orders / "t.py").write_text("def transform(row, ctx):\n    return row\n")
    (orders / "r.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors: [{python: {file: t.py, function: go}}]\n"
        "sink: {csv: {path: out/o.csv}}\n"
    )
    done = quiver("run", "r.yaml", cwd=orders)
    assert done.returncode == 2
    assert "r.yaml:2:14 processors[0] python" in done.stderr and "no function 'go'" in done.stderr
    assert not (orders / "out").exists()


def test_dry_run_prints_rows_and_writes_nothing(orders: Path) -> None:
    done = quiver("run", "p.yaml", "--dry-run", cwd=orders)
    assert done.returncode == 0, done.stderr
    assert "first 2 row(s)" in done.stdout and "a@x.com" in done.stdout
    assert "does not match the pattern" in done.stdout
    assert not (orders / "out").exists()
    one = quiver("run", "--dry-run", "1", "p.yaml", cwd=orders)
    assert "first 1 row(s)" in one.stdout


def test_json_logs_carry_the_run_id(orders: Path) -> None:
    done = quiver("run", "p.yaml", "--log-format", "json", cwd=orders)
    assert done.returncode == 0
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert {e["event"] for e in events} >= {"run_started", "sink_committed", "run_finished"}
    assert len({e["run_id"] for e in events}) == 1
    finished = next(e for e in events if e["event"] == "run_finished")
    assert finished["rows_read"] == 4 and finished["rejected"] == 2


def test_json_logs_of_a_failed_run_carry_the_error_details(orders: Path) -> None:
    (orders / "ff.yaml").write_text(PIPELINE.split("on_error")[0])
    done = quiver("run", "ff.yaml", "--log-format", "json", cwd=orders)
    assert done.returncode == 1
    events = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    failed = next(e for e in events if e["event"] == "run_failed")
    assert failed["code"] == "ROW_REJECTED"
    assert "line 3" in failed["errors"][0]["message"]


def test_variables_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id\n1\n2\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: '${IN}'}}\nsink: {csv: {path: '${OUT:-o.csv}'}}\n"
    )
    done = quiver("run", "p.yaml", "--variable", "IN=a.csv", "-v", "OUT=b.csv", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b.csv").read_text() == "id\n1\n2\n"
    missing = quiver("run", "p.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "variable ${IN} is not set" in missing.stderr


def test_plugins_list_and_describe(tmp_path: Path) -> None:
    listed = quiver("plugins", "list", "--kind", "processor", cwd=tmp_path)
    assert listed.returncode == 0
    for name in ("validate", "dedupe", "lookup", "sql", "python"):
        assert name in listed.stdout
    described = quiver("plugins", "describe", "dedupe", cwd=tmp_path)
    assert described.returncode == 0
    assert "max_keys" in described.stdout and "10000000" in described.stdout
    bad_kind = quiver("plugins", "list", "--kind", "filter", cwd=tmp_path)
    assert bad_kind.returncode == 2 and "use one of: source, processor, sink" in bad_kind.stderr
    unknown = quiver("plugins", "describe", "dedup", cwd=tmp_path)
    assert unknown.returncode == 2 and "did you mean 'dedupe'" in unknown.stderr


def slow_pipeline(tmp_path: Path) -> subprocess.Popen[str]:
    (tmp_path / "slow.yaml").write_text(
        f"source: {{'{C}RowsSource': {{rows: 100000, batch_rows: 10, delay: 0.01}}}}\n"
        "sink: {csv: {path: out/data.csv}}\n"
    )
    return subprocess.Popen(
        [*QUIVER, "run", "slow.yaml", "--quiet"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_temp_output(folder: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if folder.exists() and any(".tmp" in p.name for p in folder.iterdir()):
            time.sleep(0.3)  # let it write a few batches
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the run never started writing")


def test_a_run_on_a_terminal_shows_its_progress_and_summary_there(tmp_path: Path) -> None:
    """With stderr a terminal, the progress display and the summary go to it (the consoles
    are made on first use; rich's live display gets the console itself)."""
    import pty
    import select

    (tmp_path / "in.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(1000)))
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*QUIVER, "run", "p.yaml"],
            cwd=tmp_path,
            env={**env(), "TERM": "xterm", "COLUMNS": "200"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        shown = b""
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            shown += chunk
        proc.wait(timeout=60)
    finally:
        os.close(leader)
    text = shown.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "1,000 rows read, 1,000 written" in text, text
    assert (tmp_path / "out.csv").read_text().splitlines()[-1] == "999"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupting_a_run_exits_130_or_143_and_leaves_no_output(
    tmp_path: Path, sig: int, code: int
) -> None:
    proc = slow_pipeline(tmp_path)
    wait_for_temp_output(tmp_path / "out", proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "interrupted" in stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_a_killed_run_never_leaves_a_final_output_file(tmp_path: Path) -> None:
    proc = slow_pipeline(tmp_path)
    wait_for_temp_output(tmp_path / "out", proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "out/data.csv").exists()


@pytest.mark.parametrize(
    ("pipeline", "message", "code"),
    [
        pytest.param(
            PIPELINE.replace("on_error: {policy: reject, rejects: out/rejects.csv}\n", ""),
            "line 3, column 'email', value 'bad'",
            1,
            id="rejected-row",
        ),
        pytest.param(
            PIPELINE.replace("in.csv", "missing.csv"),
            "input file not found",
            2,  # found before the run starts, as `quiver validate` finds it
            id="missing-input",
        ),
        pytest.param(
            PIPELINE.replace(
                "  - validate:", "  - python: {file: boom.py, mode: batch}\n  - validate:"
            ),
            "transform raised ValueError: boom",
            1,
            id="failing-step",
        ),
    ],
)
def test_a_failed_run_prints_its_error_once_with_the_fix(
    orders: Path, pipeline: str, message: str, code: int
) -> None:
    (orders / "boom.py").write_text("def transform(batch, ctx):\n    raise ValueError('boom')\n")
    (orders / "f.yaml").write_text(pipeline)
    done = quiver("run", "f.yaml", "--quiet", cwd=orders)
    assert done.returncode == code, done.stderr
    assert done.stderr.count(message) == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len([x for x in lines if x.startswith("error:")]) == 1, done.stderr
    assert len([x for x in lines if x.strip().startswith("fix:")]) == 1, done.stderr
    assert "run failed" not in done.stderr


def test_a_run_imports_only_what_its_components_use(tmp_path: Path) -> None:
    """DuckDB, Parquet, the progress bar, rich (nothing is printed), the FlowEngine translator
    and its JavaScript codec load only for the pipelines that need them."""
    (tmp_path / "in.csv").write_text('id,qty,note\n1,5,"a, b"\n2,7,plain\n')
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors:\n  - select: {columns: [qty, note]}\n"
        "  - rename: {columns: {qty: amount}}\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    heavy = [
        "duckdb",
        "pyarrow.parquet",
        "rich",
        "py_mini_racer",
        "pandas",
        "quiver.pipeline.flowengine",
        "quiver.pipeline.js_runtime.codec",
        "dateutil",
        "numpy.ma",
        "prometheus_client",
    ]
    script = (
        "import sys\nfrom quiver.cli import app\n"
        "try:\n    app(['run', 'p.yaml', '--quiet'])\nexcept SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    assert (tmp_path / "out.csv").read_text().splitlines() == [
        "amount,note",
        '5,"a, b"',
        "7,plain",
    ]


def test_postgresql_runs_do_not_import_the_adbc_dbapi_module(tmp_path: Path) -> None:
    """Loading a PostgreSQL table and reading it back go through ADBC's low-level API: the
    DB-API module, with the pandas, polars and pyarrow.dataset it imports, never loads."""
    import uuid

    import adbc_driver_postgresql.dbapi as pg

    schema = f"lean_{uuid.uuid4().hex[:10]}"
    url = "postgresql://postgres@127.0.0.1:5432/test"
    with pg.connect(url, autocommit=True) as admin, admin.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    try:
        (tmp_path / "in.csv").write_text('id,name\n1,"a, b"\n2,plain\n')
        (tmp_path / "load.yaml").write_text(
            "source: {csv: {path: in.csv, types: {id: int}}}\n"
            f"sink: {{database: {{url: '{url}', table: {schema}.t, mode: append}}}}\n"
        )
        (tmp_path / "read.yaml").write_text(
            f"source: {{database: {{url: '{url}', table: {schema}.t}}}}\n"
            "sink: {csv: {path: out.csv}}\n"
        )
        heavy = ["adbc_driver_manager.dbapi", "pandas", "polars", "pyarrow.dataset"]
        for name in ("load.yaml", "read.yaml"):
            script = (
                "import sys\nfrom quiver.cli import app\n"
                f"try:\n    app(['run', {name!r}, '--quiet'])\nexcept SystemExit as exc:\n"
                "    assert exc.code == 0, exc.code\n"
                f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
            )
            done = subprocess.run(
                [sys.executable, "-c", script],
                cwd=tmp_path,
                env=env(),
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip() == "[]", (name, done.stdout)
        assert (tmp_path / "out.csv").read_text().splitlines() == [
            "id,name",
            '1,"a, b"',
            "2,plain",
        ]
    finally:
        with pg.connect(url, autocommit=True) as admin, admin.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_ends_a_run_stuck_in_a_sink_within_a_second(
    tmp_path: Path, sig: int, code: int
) -> None:
    """The database sink's final insert waits for a table lock held by another session: the
    thread doing it cannot be cancelled, and the run still stops at once, leaving nothing."""
    import uuid

    import adbc_driver_postgresql.dbapi as pg

    schema = f"stuck_{uuid.uuid4().hex[:10]}"
    url = "postgresql://postgres@127.0.0.1:5432/test"
    holder = pg.connect(url, autocommit=True)
    try:
        with holder.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(f"CREATE TABLE {schema}.orders (id BIGINT, name TEXT)")
        holder.adbc_connection.set_autocommit(False)
        with holder.cursor() as cur:
            cur.execute(f"LOCK TABLE {schema}.orders IN ACCESS EXCLUSIVE MODE")
        (tmp_path / "in.csv").write_text("id,name\n1,a\n2,b\n")
        (tmp_path / "p.yaml").write_text(
            "source: {csv: {path: in.csv}}\n"
            f"sink: {{database: {{url: '{url}', table: {schema}.orders, mode: append}}}}\n"
        )
        proc = subprocess.Popen(
            [*QUIVER, "run", "p.yaml", "--quiet"],
            cwd=tmp_path,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        watcher = pg.connect(url, autocommit=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the run never waited for the lock"
                with watcher.cursor() as cur:
                    cur.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        f"WHERE NOT l.granted AND c.relname = 'orders' "
                        f"AND c.relnamespace = '{schema}'::regnamespace"
                    )
                    waiting = cur.fetchone()
                if waiting and waiting[0]:
                    break
                time.sleep(0.05)
            signalled = time.monotonic()
            proc.send_signal(sig)
            _, stderr = proc.communicate(timeout=30)
            took = time.monotonic() - signalled
        finally:
            watcher.close()
        assert proc.returncode == code, stderr
        assert "interrupted" in stderr
        assert took < 1.5, f"the run took {took:.2f}s to stop"
        holder.rollback()
        with holder.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {schema}.orders")
            assert cur.fetchone() == (0,)
    finally:
        holder.rollback()
        holder.adbc_connection.set_autocommit(True)
        with holder.cursor() as cur:
            cur.execute(f"DROP SCHEMA {schema} CASCADE")
        holder.close()


def test_javascript_runs_do_not_import_pandas(tmp_path: Path) -> None:
    """Handing batches to V8 and rebuilding Arrow from its answer (text with and without
    non-ASCII characters, numbers with nulls, booleans, dropped rows) builds Arrow from
    buffers: pyarrow's conversion of NumPy and Python values, which imports pandas, is
    not used."""
    (tmp_path / "in.csv").write_text("id,name,qty\n1,Zoë,3\n2,plain,\n3,drop,5\n")
    (tmp_path / "t.js").write_text(
        "function transform(row) {\n"
        "  if (row.name === 'drop') return null;\n"
        "  row.big = row.qty === null ? null : row.qty > 4;\n"
        "  row.half = row.qty === null ? null : row.qty / 2;\n"
        "  row.shout = row.name.toUpperCase();\n"
        "  return row;\n"
        "}\n"
    )
    (tmp_path / "js.yaml").write_text(
        "source: {csv: {path: in.csv, types: {id: int, qty: int}}}\n"
        "processors:\n  - js: {file: t.js}\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    script = (
        "import sys\nfrom quiver.cli import app\n"
        "try:\n    app(['run', 'js.yaml', '--quiet'])\nexcept SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print('pandas' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False", done.stdout
    assert (tmp_path / "out.csv").read_text(encoding="utf-8").splitlines() == [
        "id,name,qty,big,half,shout",
        "1,Zoë,3,false,1.5,ZOË",
        "2,plain,,,,PLAIN",
    ]
