"""Whole-product runs of ``quiver run`` / ``quiver validate`` in a subprocess, on small generated
inputs: what a user sees (exit codes, messages) and what lands on disk (outputs, rejects).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import pytest

from quiver.pipeline.component import LINE_COLUMN
from tests.e2e.conftest import (
    QuiverRunner,
    Run,
    copy_example,
    quiver_command,
    quiver_env,
    read_csv,
    write_csv,
    write_pipeline,
)

# ---------------------------------------------------------------------------------------------
# The orders example: validate -> js -> sql -> parquet, bad rows to a rejects file
# ---------------------------------------------------------------------------------------------

ORDERS_PIPELINE = """\
source: {csv: {path: "${INPUT}", delimiter: ",", encoding: utf-8, batch_rows: 64}}
processors:
  - validate:
      schema: {id: int, email: {type: str, pattern: ".+@.+"}, total: {type: decimal, min: 0}}
  - js: {file: enrich.js}
  - sql: {query: "select *, total * 1.2 as gross from input where country <> 'XX'"}
sink: {parquet: {path: "out/orders.parquet"}}
on_error: {policy: reject, rejects: "out/orders.rejects.csv"}
"""

ENRICH_JS = """\
function transform(row, ctx) {
  row.email_domain = row.email.split("@")[1];
  row.tier = Number(row.total) >= 500 ? "gold" : "standard";
  return row;
}
"""

ORDER_COLUMNS = ["id", "email", "total", "country", "note"]


@dataclass
class Order:
    """One generated input row, where it starts in the file, and why it is bad (if it is)."""

    values: dict[str, str]
    line: int
    bad_column: str | None = None
    bad_reason: str | None = None


def generate_orders(path: Path, rows: int, seed: int) -> list[Order]:
    """A CSV of orders with quoted notes (commas, quotes, line breaks) and some bad rows.

    Each bad row breaks exactly one rule, so the rejected column is known in advance.
    """
    rng = random.Random(seed)
    orders: list[Order] = []
    line = 2
    for i in range(1, rows + 1):
        values = {
            "id": str(i),
            "email": f"user{i}@{rng.choice(['example.com', 'mail.test', 'corp.example'])}",
            "total": f"{rng.randint(0, 99_999) / 100:.2f}",
            "country": rng.choice(["FR", "DE", "US", "XX"]),
            "note": rng.choice(["ok", 'said "hi", then left', "two\nlines", "a,b,c", ""]),
        }
        order = Order(values, line)
        kind = i % 17
        if kind == 3:
            values["email"] = f"user{i}.example.com"
            order.bad_column, order.bad_reason = "email", "pattern"
        elif kind == 7:
            values["total"] = f"-{rng.randint(1, 999)}.50"
            order.bad_column, order.bad_reason = "total", "minimum"
        elif kind == 11:
            values["total"] = "twelve"
            order.bad_column, order.bad_reason = "total", "decimal"
        elif kind == 13:
            values["id"] = f"{i}x"
            order.bad_column, order.bad_reason = "id", "int"
        orders.append(order)
        line += 1 + values["note"].count("\n")
    write_csv(path, ORDER_COLUMNS, [[o.values[c] for c in ORDER_COLUMNS] for o in orders])
    return orders


@dataclass
class OrdersRun:
    directory: Path
    orders: list[Order]
    run: Run
    report: dict[str, Any]


@pytest.fixture(scope="module")
def orders_run(tmp_path_factory: pytest.TempPathFactory) -> OrdersRun:
    """The orders pipeline run once over 500 generated rows (several batches of 64)."""
    directory = tmp_path_factory.mktemp("orders")
    orders = generate_orders(directory / "orders.csv", 500, seed=20240611)
    (directory / "enrich.js").write_text(ENRICH_JS, encoding="utf-8")
    write_pipeline(directory, ORDERS_PIPELINE)
    proc = subprocess.run(
        [
            *quiver_command(),
            "run",
            "pipeline.yaml",
            "--variable",
            "INPUT=orders.csv",
            "--report",
            "out/report.json",
        ],
        cwd=directory,
        env=quiver_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    run = Run(["run", "pipeline.yaml"], proc.returncode, proc.stdout, proc.stderr)
    assert run.code == 0, run.explain()
    report = json.loads((directory / "out" / "report.json").read_text("utf-8"))
    return OrdersRun(directory, orders, run, report)


def test_orders_rejects_carry_source_line_column_value_and_reason(orders_run: OrdersRun) -> None:
    rejects = read_csv(orders_run.directory / "out" / "orders.rejects.csv")
    bad = [o for o in orders_run.orders if o.bad_column]
    assert len(bad) > 100
    assert [int(r["line"]) for r in rejects] == [o.line for o in bad]
    for reject, order in zip(rejects, bad, strict=True):
        assert reject["step"] == "validate"
        assert reject["column"] == order.bad_column, reject
        assert reject["value"] == order.values[order.bad_column or ""], reject
        assert (order.bad_reason or "?") in reject["reason"].lower(), reject
        # an empty field is read as null (the csv source's default `null_values`)
        assert json.loads(reject["row"]) == {k: v or None for k, v in order.values.items()}


def test_orders_parquet_holds_exactly_the_valid_rows_transformed(orders_run: OrdersRun) -> None:
    table = pq.read_table(orders_run.directory / "out" / "orders.parquet")
    assert LINE_COLUMN not in table.column_names
    assert table.column_names == [*ORDER_COLUMNS, "email_domain", "tier", "gross"]
    expected = [
        o.values for o in orders_run.orders if not o.bad_column and o.values["country"] != "XX"
    ]
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [int(v["id"]) for v in expected]
    for row, source in zip(rows, expected, strict=True):
        total = Decimal(source["total"])
        assert row["email"] == source["email"]
        assert row["total"] == total
        assert row["country"] == source["country"]
        assert row["note"] == (source["note"] or None)
        assert row["email_domain"] == source["email"].split("@")[1]
        assert row["tier"] == ("gold" if total >= 500 else "standard")
        assert row["gross"] == total * Decimal("1.2")


def test_orders_report_counts_every_row_once(orders_run: OrdersRun) -> None:
    report = orders_run.report
    orders = orders_run.orders
    bad = sum(1 for o in orders if o.bad_column)
    dropped = sum(1 for o in orders if not o.bad_column and o.values["country"] == "XX")
    assert report["status"] == "ok"
    assert report["exit_code"] == 0
    assert report["rows_read"] == len(orders)
    assert report["rejected"] == bad
    assert report["rows_written"] == len(orders) - bad - dropped
    assert report["steps"]["validate"]["rows_out"] == len(orders) - bad
    assert report["steps"]["sql"]["rows_out"] == len(orders) - bad - dropped
    assert "rejected" in orders_run.run.stderr


def test_rows_the_source_cannot_read_go_to_the_rejects_with_their_line(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    (tmp_path / "in.csv").write_text(
        'id,name,qty\n1,a,5\n2,"b, with comma",6\n3,c,7,EXTRA\n4,"multi\nline",8\n5,e\n6,f,9\n',
        encoding="utf-8",
    )
    write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "sink": {"csv": {"path": "out/out.csv"}},
            "on_error": {"policy": "reject", "rejects": "out/rejects.csv"},
        },
    )
    run = quiver("run", "pipeline.yaml", "--strict")
    assert run.code == 3, run.explain()
    assert [r["id"] for r in read_csv(tmp_path / "out" / "out.csv")] == ["1", "2", "4", "6"]
    rejects = read_csv(tmp_path / "out" / "rejects.csv")
    assert [(r["step"], r["line"]) for r in rejects] == [("source", "4"), ("source", "7")]
    assert "expected 3 fields, found 4" in rejects[0]["reason"]
    assert "expected 3 fields, found 2" in rejects[1]["reason"]
    assert "3,c,7,EXTRA" in rejects[0]["row"]


# ---------------------------------------------------------------------------------------------
# Graph form: fan-out to two sinks and a named route output
# ---------------------------------------------------------------------------------------------

CLEAN_JS = """\
function transform(row, ctx) {
  if (row.email.indexOf("@") < 0) {
    ctx.emit("invalid", row);
    return null;
  }
  row.email = row.email.toLowerCase();
  return row;
}
"""

GRAPH_PIPELINE = """\
steps:
  read:   {csv: {path: in.csv, batch_rows: 50}}
  clean:  {js: {file: clean.js, routes: [invalid]}}
  good:   {csv: {path: out/good.csv}}
  mirror: {jsonl: {path: out/good.jsonl}}
  bad:    {csv: {path: out/bad.csv}}
connections:
  - {from: read, to: clean}
  - {from: clean, to: [good, mirror]}
  - {from: clean.invalid, to: bad}
on_error: {policy: reject, rejects: out/rejects.csv}
"""


def people(n: int) -> list[list[str]]:
    return [
        [str(i), f"Person{i}", f"P{i}@Example.COM" if i % 5 else f"person{i}-at-example"]
        for i in range(1, n + 1)
    ]


def test_graph_fans_out_to_two_sinks_and_routes_invalid_rows(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    rows = people(230)
    write_csv(tmp_path / "in.csv", ["id", "name", "email"], rows)
    (tmp_path / "clean.js").write_text(CLEAN_JS, encoding="utf-8")
    write_pipeline(tmp_path, GRAPH_PIPELINE)
    run = quiver("run", "pipeline.yaml", "--report", "report.json")
    assert run.code == 0, run.explain()
    valid = [{"id": i, "name": n, "email": e.lower()} for i, n, e in rows if "@" in e]
    invalid = [{"id": i, "name": n, "email": e} for i, n, e in rows if "@" not in e]
    assert read_csv(tmp_path / "out" / "good.csv") == valid
    mirrored = [json.loads(line) for line in (tmp_path / "out" / "good.jsonl").open()]
    assert [{k: str(v) for k, v in r.items()} for r in mirrored] == valid
    assert read_csv(tmp_path / "out" / "bad.csv") == invalid
    assert not (tmp_path / "out" / "rejects.csv").exists()
    report = json.loads((tmp_path / "report.json").read_text("utf-8"))
    assert report["steps"]["clean"]["routes"] == {"invalid": len(invalid)}
    assert report["rows_written"] == 2 * len(valid) + len(invalid)


def test_graph_cycle_is_rejected_before_anything_runs(tmp_path: Path, quiver: QuiverRunner) -> None:
    write_csv(tmp_path / "in.csv", ["id"], [["1"]])
    write_pipeline(
        tmp_path,
        """\
steps:
  read: {csv: {path: in.csv}}
  a:    {select: {columns: [id]}}
  b:    {select: {columns: [id]}}
  out:  {csv: {path: out.csv}}
connections:
  - {from: read, to: a}
  - {from: a, to: b}
  - {from: b, to: a}
  - {from: b, to: out}
""",
    )
    run = quiver("run", "pipeline.yaml")
    assert run.code == 2, run.explain()
    assert "cycle" in run.stderr.lower()
    assert not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------------------------------------
# --dry-run
# ---------------------------------------------------------------------------------------------


def test_dry_run_prints_the_first_rows_each_sink_would_get_and_writes_nothing(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    rows = people(40)
    write_csv(tmp_path / "in.csv", ["id", "name", "email"], rows)
    (tmp_path / "clean.js").write_text(CLEAN_JS, encoding="utf-8")
    write_pipeline(tmp_path, GRAPH_PIPELINE)
    before = sorted(os.listdir(tmp_path))
    run = quiver("run", "pipeline.yaml", "--dry-run", "5")
    assert run.code == 0, run.explain()
    assert sorted(os.listdir(tmp_path)) == before
    # five rows in: ids 1-4 are valid, id 5 goes to the `invalid` route
    assert "p4@example.com" in run.stdout
    assert "person5-at-example" in run.stdout
    assert "p6@example.com" not in run.stdout
    assert "nothing written" in run.stdout


def test_dry_run_without_a_number_shows_ten_rows(tmp_path: Path, quiver: QuiverRunner) -> None:
    write_csv(tmp_path / "in.csv", ["id", "word"], [[str(i), f"w{i:03d}"] for i in range(1, 30)])
    write_pipeline(
        tmp_path,
        {"source": {"csv": {"path": "in.csv"}}, "sink": {"csv": {"path": "out.csv"}}},
    )
    run = quiver("run", "pipeline.yaml", "--dry-run")
    assert run.code == 0, run.explain()
    shown = sorted(set(re.findall(r"w\d{3}", run.stdout)))
    assert shown == [f"w{i:03d}" for i in range(1, 11)]
    assert not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------------------------------------
# quiver validate
# ---------------------------------------------------------------------------------------------

BROKEN_STEPS = """\
source: {csv: {path: in.csv, delimter: ","}}
processors:
  - validate: {schema: {id: int, total: {type: decimal, minimum: 0}}}
  - js: {file: broken.js}
  - sql: {query: "selec * frm input"}
sink: {parquet: {path: out/x.parquet, compresion: zstd}}
"""

BROKEN_JS = """\
function transform(row, ctx) {
  var domain = ;
  return row;
}
"""


def position(text: str, word: str) -> tuple[int, int]:
    """1-based line and column of the first ``word`` in ``text``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if word in line:
            return number, line.index(word) + 1
    raise AssertionError(f"{word!r} not in the text")


def error_locations(run: Run) -> set[tuple[int, int]]:
    return {
        (int(m.group(1)), int(m.group(2)))
        for m in re.finditer(r"pipeline\.yaml:(\d+):(\d+)", run.stderr)
    }


def test_validate_reports_every_problem_at_once_with_file_line_column(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    write_csv(tmp_path / "in.csv", ["id", "total"], [["1", "2.50"]])
    (tmp_path / "broken.js").write_text(BROKEN_JS, encoding="utf-8")
    write_pipeline(tmp_path, BROKEN_STEPS)
    run = quiver("validate", "pipeline.yaml")
    assert run.code == 2, run.explain()
    # a typo'd option of the source, of a rule and of the sink point at the key itself; the
    # JavaScript and SQL errors point at their step (and into the script)
    assert {
        position(BROKEN_STEPS, "delimter"),
        position(BROKEN_STEPS, "minimum"),
        position(BROKEN_STEPS, "compresion"),
        position(BROKEN_STEPS, "js:"),
        position(BROKEN_STEPS, "sql:"),
    } <= error_locations(run), run.stderr
    assert "did you mean 'delimiter'" in run.stderr
    assert "did you mean 'compression'" in run.stderr
    assert "broken.js:2:16" in run.stderr, run.stderr
    assert "selec" in run.stderr
    assert re.search(r"^\d+ problems? found in pipeline\.yaml$", run.stderr, re.M)
    assert "Traceback" not in run.output
    assert not (tmp_path / "out").exists()


def test_validate_points_at_a_stray_closing_brace_in_a_script(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    (tmp_path / "stray.js").write_text("function transform(row, ctx) {\n  return row;\n}}\n")
    write_pipeline(
        tmp_path,
        "source: {csv: {path: in.csv}}\nprocessors:\n  - js: {file: stray.js}\n"
        "sink: {csv: {path: out.csv}}\n",
    )
    run = quiver("validate", "pipeline.yaml")
    assert run.code == 2, run.explain()
    assert "stray.js:3:2" in run.stderr, run.stderr


def test_validate_reports_top_level_and_step_errors_together(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    text = """\
source: {csv: {path: in.csv, delimter: ","}}
sink: {parquet: {path: out/x.parquet, compresion: zstd}}
on_error: {policy: rejct}
"""
    write_csv(tmp_path / "in.csv", ["id", "total"], [["1", "2.50"]])
    write_pipeline(tmp_path, text)
    run = quiver("validate", "pipeline.yaml")
    assert run.code == 2, run.explain()
    assert error_locations(run) == {
        position(text, "delimter"),
        position(text, "compresion"),
        position(text, "policy"),
    }, run.stderr


def test_validate_reports_a_misspelled_rule_option_once_at_its_key(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    text = """\
source: {csv: {path: in.csv}}
processors:
  - validate: {schema: {qty: {type: int, minimum: 0}}}
sink: {csv: {path: out.csv}}
"""
    write_pipeline(tmp_path, text)
    write_csv(tmp_path / "in.csv", ["qty"], [["1"]])
    run = quiver("validate", "pipeline.yaml")
    assert run.code == 2, run.explain()
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    line, column = position(text, "minimum")
    assert errors[0].startswith(f"error: pipeline.yaml:{line}:{column} "), run.stderr
    assert "processors[0].validate.schema.qty.minimum" in errors[0]


def test_validate_accepts_a_correct_pipeline_without_touching_data(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    (tmp_path / "enrich.js").write_text(ENRICH_JS, encoding="utf-8")
    write_pipeline(tmp_path, ORDERS_PIPELINE)
    write_csv(tmp_path / "orders.csv", ORDER_COLUMNS, [["1", "a@x.com", "5", "DE", ""]])
    # validate reads the input's columns (to bind the SQL) and writes nothing
    run = quiver("validate", "pipeline.yaml", "--variable", "INPUT=orders.csv")
    assert run.code == 0, run.explain()
    assert "ok" in run.stderr
    assert sorted(os.listdir(tmp_path)) == ["enrich.js", "orders.csv", "pipeline.yaml"]


# ---------------------------------------------------------------------------------------------
# Exit codes (0 ok, 1 failed, 2 invalid, 3 rejected rows with --strict, 130 interrupted)
# ---------------------------------------------------------------------------------------------

STRICT_PIPELINE = """\
source: {csv: {path: "${INPUT:-in.csv}"}}
processors:
  - validate: {schema: {qty: {type: int, min: 0}}}
sink: {csv: {path: out/out.csv}}
on_error: {policy: "${POLICY:-reject}", rejects: out/rejects.csv}
"""


@pytest.mark.parametrize(
    ("args", "code", "outputs"),
    [
        pytest.param([], 0, ["out.csv", "rejects.csv"], id="rejects-without-strict-is-ok"),
        pytest.param(["--strict"], 3, ["out.csv", "rejects.csv"], id="rejects-with-strict"),
        pytest.param(["--variable", "POLICY=fail_fast"], 1, [], id="fail-fast-bad-row"),
        pytest.param(["--variable", "INPUT=missing.csv"], 2, [], id="missing-input"),
        pytest.param(["--variable", "POLICY=rejekt"], 2, [], id="invalid-config"),
        pytest.param(["--variable", "POLICY"], 2, [], id="malformed-variable"),
        pytest.param(["--log-format", "xml"], 2, [], id="unknown-log-format"),
    ],
)
def test_exit_codes_are_the_documented_ones(
    tmp_path: Path, quiver: QuiverRunner, args: list[str], code: int, outputs: list[str]
) -> None:
    write_csv(tmp_path / "in.csv", ["id", "qty"], [["1", "5"], ["2", "-3"], ["3", "7"]])
    write_pipeline(tmp_path, STRICT_PIPELINE)
    run = quiver("run", "pipeline.yaml", *args)
    assert run.code == code, run.explain()
    out = tmp_path / "out"
    listing = sorted(os.listdir(out)) if out.exists() else []
    assert listing == outputs, run.explain()
    assert "Traceback" not in run.output
    if code:
        assert "error:" in run.stderr or code == 3, run.explain()
    if "out.csv" in outputs:
        assert [r["id"] for r in read_csv(out / "out.csv")] == ["1", "3"]


def test_exit_code_of_a_clean_run_is_zero_and_strict_changes_nothing(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    write_csv(tmp_path / "in.csv", ["id", "qty"], [["1", "5"], ["2", "3"]])
    write_pipeline(tmp_path, STRICT_PIPELINE)
    run = quiver("run", "pipeline.yaml", "--strict", "--quiet")
    assert run.code == 0, run.explain()
    assert [r["qty"] for r in read_csv(tmp_path / "out" / "out.csv")] == ["5", "3"]
    assert not (tmp_path / "out" / "rejects.csv").exists()


def test_an_unknown_pipeline_file_is_an_invalid_pipeline(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    run = quiver("run", "nowhere.yaml")
    assert run.code == 2, run.explain()
    assert "nowhere.yaml" in run.stderr
    assert "Traceback" not in run.output


# ---------------------------------------------------------------------------------------------
# Interrupted runs: SIGKILL and SIGINT leave no partial output. Fault injection: marked slow,
# run with `pytest -m slow tests/e2e`.
# ---------------------------------------------------------------------------------------------

STALLING_PIPELINE = """\
source: {csv: {path: in.csv, batch_rows: 50}}
processors:
  - validate: {schema: {id: int}}
  - js:
      timeout_seconds: 120
      isolation: ${ISOLATION:-thread}
      script: |
        function transform(row, ctx) {
          if (row.id == ${STALL_AT:-0}) {
            var start = Date.now();
            while (Date.now() - start < 60000) {}
          }
          row.doubled = row.id * 2;
          return row;
        }
sink: {csv: {path: out/result.csv}}
on_error: {policy: reject, rejects: out/rejects.csv}
"""


def stalling_input(tmp_path: Path, rows: int = 600) -> None:
    data = [[str(i), f"name {i}"] for i in range(1, rows + 1)]
    data[1][0] = "two"  # rejected by validate in the first batch: the rejects file is open
    write_csv(tmp_path / "in.csv", ["id", "name"], data)
    write_pipeline(tmp_path, STALLING_PIPELINE)


@dataclass
class StalledRun:
    proc: subprocess.Popen[bytes]
    workers: list[int]
    log: Path


#: Where the stalled run's JavaScript isolates run (its ``isolation``), as test ids.
BOTH_ISOLATIONS = pytest.mark.parametrize("stalled_run", ["thread", "process"], indirect=True)


@pytest.fixture
def stalled_run(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StalledRun]:
    """A run that stalls in its JavaScript step at row 300, once output is under way; its
    isolates run on threads, or in worker processes with the parameter "process".

    Whatever the test does, the run and its worker processes are gone afterwards.
    """
    isolation = getattr(request, "param", "thread")
    stalling_input(tmp_path)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                *quiver_command(),
                "run",
                "pipeline.yaml",
                "--variable",
                "STALL_AT=300",
                "--variable",
                f"ISOLATION={isolation}",
            ],
            cwd=tmp_path,
            env=quiver_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            names = os.listdir(tmp_path / "out") if (tmp_path / "out").exists() else []
            if any(n.startswith("result.csv.tmp") for n in names) and any(
                n.startswith("rejects.csv") for n in names
            ):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the run never got under way:\n{log.read_text()}")
            time.sleep(0.05)
        time.sleep(0.3)  # let the stalling batch reach the JavaScript workers
        assert proc.poll() is None, log.read_text()
        workers = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        yield StalledRun(proc, workers, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pid in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    """The processes of ``pids`` still running after up to ``seconds``."""
    deadline = time.monotonic() + seconds
    alive = pids
    while True:
        alive = [p for p in alive if _running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@BOTH_ISOLATIONS
def test_sigkill_mid_run_leaves_no_partial_output(
    tmp_path: Path, quiver: QuiverRunner, stalled_run: StalledRun
) -> None:
    stalled_run.proc.send_signal(signal.SIGKILL)
    assert stalled_run.proc.wait(timeout=30) == -signal.SIGKILL
    names = os.listdir(tmp_path / "out")
    assert "result.csv" not in names and "rejects.csv" not in names, names
    for pid in stalled_run.workers:  # not what this test is about: see the next one
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    # a new run over the same input completes and publishes whole files
    rerun = quiver("run", "pipeline.yaml", "--quiet")
    assert rerun.code == 0, rerun.explain()
    result = read_csv(tmp_path / "out" / "result.csv")
    assert len(result) == 599
    assert all(int(r["doubled"]) == 2 * int(r["id"]) for r in result)
    assert [r["value"] for r in read_csv(tmp_path / "out" / "rejects.csv")] == ["two"]
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith("result.csv.tmp")]


@pytest.mark.slow
@pytest.mark.parametrize("stalled_run", ["process"], indirect=True)
def test_javascript_workers_exit_promptly_when_the_engine_is_killed(
    stalled_run: StalledRun,
) -> None:
    assert stalled_run.workers, "with isolation: process the isolates run in worker processes"
    stalled_run.proc.send_signal(signal.SIGKILL)
    stalled_run.proc.wait(timeout=30)
    assert wait_gone(stalled_run.workers, 5) == []


@pytest.mark.slow
@BOTH_ISOLATIONS
def test_a_run_after_a_killed_one_leaves_no_temporary_files(
    tmp_path: Path, quiver: QuiverRunner, stalled_run: StalledRun
) -> None:
    stalled_run.proc.send_signal(signal.SIGKILL)
    stalled_run.proc.wait(timeout=30)
    rerun = quiver("run", "pipeline.yaml", "--quiet")
    assert rerun.code == 0, rerun.explain()
    assert sorted(os.listdir(tmp_path / "out")) == ["rejects.csv", "result.csv"]


@pytest.mark.slow
@BOTH_ISOLATIONS
def test_sigint_stops_the_run_with_130_and_writes_nothing(
    tmp_path: Path, stalled_run: StalledRun
) -> None:
    stalled_run.proc.send_signal(signal.SIGINT)
    try:
        code = stalled_run.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the run did not stop within 30 s of SIGINT")
    log = stalled_run.log.read_text()
    assert code == 130, log
    assert "interrupted" in log
    assert "Traceback" not in log
    assert os.listdir(tmp_path / "out") == []
    assert wait_gone(stalled_run.workers, 15) == []


# ---------------------------------------------------------------------------------------------
# Variables, JSON logs, FlowEngine files
# ---------------------------------------------------------------------------------------------


def test_variables_come_from_the_command_line_before_the_environment(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    write_csv(tmp_path / "a.csv", ["id"], [["1"]])
    write_csv(tmp_path / "b.csv", ["id"], [["2"], ["3"]])
    write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "${INPUT}"}},
            "sink": {"csv": {"path": "${OUT_DIR:-out}/copy.csv"}},
        },
    )
    from_env = quiver("run", "pipeline.yaml", "-q", env={"INPUT": "a.csv"})
    assert from_env.code == 0, from_env.explain()
    assert read_csv(tmp_path / "out" / "copy.csv") == [{"id": "1"}]
    both = quiver(
        "run",
        "pipeline.yaml",
        "-q",
        "--variable",
        "INPUT=b.csv",
        "-v",
        "OUT_DIR=elsewhere",
        env={"INPUT": "a.csv"},
    )
    assert both.code == 0, both.explain()
    assert read_csv(tmp_path / "elsewhere" / "copy.csv") == [{"id": "2"}, {"id": "3"}]
    missing = quiver("run", "pipeline.yaml", "-q")
    assert missing.code == 2, missing.explain()
    assert "INPUT" in missing.stderr


def test_json_logs_are_one_object_per_line_with_the_run_outcome(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    write_csv(tmp_path / "in.csv", ["id", "qty"], [["1", "5"], ["2", "-3"]])
    write_pipeline(tmp_path, STRICT_PIPELINE)
    run = quiver("run", "pipeline.yaml", "--log-format", "json")
    assert run.code == 0, run.explain()
    lines = [line for line in run.output.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]
    assert events, run.explain()
    run_ids = {e.get("run_id") for e in events}
    assert len(run_ids) == 1 and None not in run_ids
    assert any("rejected" in json.dumps(e) for e in events)


def test_flowengine_example_runs_unchanged(tmp_path: Path, quiver: QuiverRunner) -> None:
    folder = copy_example("flowengine", tmp_path)
    source = read_csv(folder / "customers.csv")
    run = quiver("run", "customer-pipeline.yaml", cwd=folder)
    assert run.code == 0, run.explain()
    # FlowEngine writes UTF-8 with a byte order mark, and so does a translated pipeline
    for name in ("processed-customers.csv", "premium-customers.csv"):
        data = (folder / "output" / name).read_bytes()
        assert data.startswith(b"\xef\xbb\xbf"), name
        (folder / "output" / name).write_bytes(data[3:])
    processed = read_csv(folder / "output" / "processed-customers.csv")
    premium = read_csv(folder / "output" / "premium-customers.csv")

    def accepted(row: dict[str, str]) -> bool:
        return bool(row["first_name"] and row["last_name"] and row["age"].isdigit())

    kept = [r for r in source if accepted(r)]
    assert [r["customer_id"] for r in processed] == [r["customer_id"] for r in kept]
    for out, src in zip(processed, kept, strict=True):
        assert out["full_name"] == f"{src['first_name']} {src['last_name']}"
        assert out["email_domain"] == src["email"].split("@")[1]
    try:
        rich = [r["customer_id"] for r in kept if Decimal(r["account_value"]) >= 100000]
    except InvalidOperation:
        pytest.fail("customers.csv holds a non-numeric account_value among accepted rows")
    assert [r["customer_id"] for r in premium] == rich


# ---------------------------------------------------------------------------------------------
# The examples in examples/pipelines, through the command line
# ---------------------------------------------------------------------------------------------


def test_orders_example_runs_from_any_directory_with_paths_relative_to_its_file(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    folder = copy_example("pipelines/orders", tmp_path)
    source = read_csv(folder / "orders.csv")
    countries = {r["code"]: r for r in read_csv(folder / "countries.csv")}
    check = quiver("validate", f"{folder.name}/pipeline.yaml")
    assert check.code == 0, check.explain()
    run = quiver("run", f"{folder.name}/pipeline.yaml", "--variable", "OUT=result", "-q")
    assert run.code == 0, run.explain()
    assert not (tmp_path / "result").exists()  # relative to the pipeline file, not the cwd
    rows = pq.read_table(folder / "result" / "orders.parquet").to_pylist()
    rejects = read_csv(folder / "result" / "orders.rejects.csv")
    rejected_ids = {json.loads(r["row"])["order_id"] for r in rejects}
    assert {str(i) for i in rejected_ids} == {"1002", "1003", "1006", "1008"}
    # 1005 repeats 1001 (same customer, total and date): dropped by dedupe, not rejected
    kept = [r for r in source if r["order_id"] not in {"1002", "1003", "1005", "1006", "1008"}]
    assert [r["order_id"] for r in rows] == [int(r["order_id"]) for r in kept]
    for row, src in zip(rows, kept, strict=True):
        assert row["country_name"] == countries[src["country"]]["country_name"]
        assert row["region"] == countries[src["country"]]["region"]
        assert row["total"] == Decimal(src["total"])
        assert row["gross"] == Decimal(src["total"]) * Decimal("1.2")
        assert row["email"] == src["email"].lower()
    assert [(r["line"], r["column"]) for r in rejects] == [
        ("3", "email"),
        ("4", "total"),
        ("7", "ordered_at"),
        ("9", "country"),
    ]


def test_rejects_of_every_step_carry_the_original_row(tmp_path: Path, quiver: QuiverRunner) -> None:
    folder = copy_example("pipelines/orders", tmp_path)
    source = {r["order_id"]: r for r in read_csv(folder / "orders.csv")}
    run = quiver("run", "pipeline.yaml", "-q", cwd=folder)
    assert run.code == 0, run.explain()
    for reject in read_csv(folder / "out" / "orders.rejects.csv"):
        row = json.loads(reject["row"])
        assert row == source[str(row["order_id"])], reject


def test_routing_example_dry_run_then_run(tmp_path: Path, quiver: QuiverRunner) -> None:
    folder = copy_example("pipelines/routing", tmp_path)
    readings = [json.loads(line) for line in (folder / "readings.jsonl").open()]
    dry = quiver("run", "pipeline.yaml", "--dry-run", "2", cwd=folder)
    assert dry.code == 0, dry.explain()
    assert not (folder / "out").exists()
    assert "berlin/s1" in dry.stdout and "berlin/s2" in dry.stdout
    assert "paris/s3" not in dry.stdout
    run = quiver("run", "pipeline.yaml", "--report", "report.json", cwd=folder)
    assert run.code == 0, run.explain()
    live = [r for r in readings if r["celsius"] != -40.0]
    normal = read_csv(folder / "out" / "normal.csv")
    alerts = [json.loads(line) for line in (folder / "out" / "alerts.jsonl").open()]
    assert [r["sensor"] for r in normal] == [r["sensor"] for r in live if r["celsius"] < 60]
    assert [r["sensor"] for r in alerts] == [r["sensor"] for r in live if r["celsius"] >= 60]
    for out in [*normal, *alerts]:
        celsius = float(out["celsius"])
        assert float(out["fahrenheit"]) == pytest.approx(celsius * 9 / 5 + 32)
    report = json.loads((folder / "report.json").read_text("utf-8"))
    assert report["steps"]["check"]["routes"] == {"alert": len(alerts)}
