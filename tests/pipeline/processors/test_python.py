"""The python processor: row and batch functions, checks, errors at the user's line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.processors.python import PythonProcessor
from quiver.runtime.errors import PermanentError

from .contract import ORDERS, batch, make, process, rows_of


def py(run_ctx: RunContext, code: str, **options: Any) -> PythonProcessor:
    Path(run_ctx.base_dir, "t.py").write_text(code)
    proc: PythonProcessor = make(PythonProcessor, {"file": "t.py", **options})
    return proc


def test_python_row_function_maps_splits_drops_and_rejects(run_ctx: RunContext) -> None:
    proc = py(
        run_ctx,
        "def transform(row, ctx):\n"
        "    if row['id'] == 1: return {**row, 'run': ctx.run_id[:0] + 'x'}\n"
        "    if row['id'] == 2: return None\n"
        "    if row['id'] == 3: return [{**row, 'run': 'a'}, {**row, 'run': 'b'}]\n"
        "    raise ValueError('bad id')\n",
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [(r["id"], r["run"]) for r in rows_of(out)] == [(1, "x"), (3, "a"), (3, "b")]
    assert out.batch is not None and out.batch.column(LINE_COLUMN).to_pylist() == [2, 4, 4]
    (e,) = out.errors
    assert (e.line, e.reason, e.kind) == (5, "ValueError: bad id", "script")


def test_python_batch_function_gets_and_returns_arrow(run_ctx: RunContext) -> None:
    proc = py(
        run_ctx,
        "import pyarrow.compute as pc\n"
        "def double(batch, ctx):\n"
        "    return batch.set_column(0, 'id', pc.multiply(batch.column('id'), 2))\n",
        function="double",
        mode="batch",
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [r["id"] for r in rows_of(out)] == [2, 4, 6, 8]
    assert out.batch is not None and out.batch.column(LINE_COLUMN).to_pylist() == [2, 3, 4, 5]


def test_python_check_reports_syntax_errors_with_their_line(run_ctx: RunContext) -> None:
    proc = py(run_ctx, "def transform(row, ctx):\n    return row\n\ndef broken(:\n")
    (problem,) = proc.check(run_ctx)
    assert problem.where.endswith("t.py:4:12") and "syntax error" in problem.message


def test_python_check_reports_a_missing_function_and_failed_imports(run_ctx: RunContext) -> None:
    proc = py(run_ctx, "def other(row, ctx):\n    return row\n")
    (problem,) = proc.check(run_ctx)
    assert "no function 'transform'" in problem.message and "other" in problem.fix
    broken = py(run_ctx, "import quiver_no_such_module\n")
    (problem,) = broken.check(run_ctx)
    assert "import failed" in problem.message and problem.where.endswith("t.py:1")


def test_python_batch_exception_fails_with_the_user_line(run_ctx: RunContext) -> None:
    proc = py(run_ctx, "def transform(batch, ctx):\n    raise KeyError('nope')\n", mode="batch")
    with pytest.raises(PermanentError) as err:
        process(proc, batch(ORDERS), run_ctx)
    assert err.value.details[0].where.endswith("t.py:2")


def test_python_a_key_new_in_a_later_batch_rejects_its_row_with_the_fix(
    run_ctx: RunContext,
) -> None:
    proc = py(
        run_ctx,
        "def transform(row, ctx):\n"
        "    return {**row, 'tag': 'x'} if row['id'] in (2, 4) else row\n",
    )
    first = process(proc, batch(ORDERS[:2]), run_ctx)
    assert [r["tag"] for r in rows_of(first)] == [None, "x"]
    second = process(proc, batch(ORDERS[2:], first_line=4), run_ctx)
    assert [r["id"] for r in rows_of(second)] == [3, 4]
    assert not second.errors
    third = process(proc, batch([{"id": 2, "total": 1.0, "country": "DE", "x": 1}]), run_ctx)
    (e,) = third.errors
    assert (e.line, e.column, e.kind) == (2, "x", "script")
    assert "no row of the first batch returned (declare every field in output_schema)" in e.reason


def test_python_batch_result_is_matched_to_the_output_schema(run_ctx: RunContext) -> None:
    proc = py(
        run_ctx,
        "def same(batch, ctx):\n    return batch.select(['id'])\n",
        function="same",
        mode="batch",
        output_schema={"id": "long", "note": "string"},
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert rows_of(out) == [{"id": i, "note": None} for i in (1, 2, 3, 4)]
    assert out.batch is not None and out.batch.schema.field("id").type == "int64"


def test_python_row_columns_keep_their_input_type_only_when_no_value_changes(
    run_ctx: RunContext,
) -> None:
    """A column returned unchanged keeps its input type; one whose new values the input type
    would truncate (a fraction in an int8, microseconds in a timestamp[s], a time in a date)
    takes the type of its values instead, never a cut value."""
    import datetime as dt

    import pyarrow as pa

    proc = py(
        run_ctx,
        "import datetime as dt\n"
        "def transform(row, ctx):\n"
        "    return {**row, 'half': row['small'] / 2, 'later': row['ts'] + "
        "dt.timedelta(microseconds=5), 'moment': dt.datetime.combine(row['day'], dt.time(6))}\n",
    )
    start = dt.datetime(2024, 1, 1, 12)
    given = pa.record_batch(
        {
            "small": pa.array([5], pa.int8()),
            "half": pa.array([0], pa.int8()),
            "ts": pa.array([start], pa.timestamp("s")),
            "later": pa.array([start], pa.timestamp("s")),
            "day": pa.array([dt.date(2024, 1, 1)], pa.date32()),
            "moment": pa.array([dt.date(2024, 1, 1)], pa.date32()),
            LINE_COLUMN: pa.array([2]),
        }
    )
    out = process(proc, given, run_ctx)
    assert out.errors == [] and out.batch is not None
    types = {f.name: f.type for f in out.batch.schema}
    assert types["small"] == pa.int8() and types["ts"] == pa.timestamp("s")
    assert types["day"] == pa.date32()
    row = out.batch.to_pylist()[0]
    assert row["half"] == 2.5
    assert row["later"] == start + dt.timedelta(microseconds=5)
    assert row["moment"] == dt.datetime(2024, 1, 1, 6)


def test_python_sys_exit_in_a_row_function_rejects_its_row_instead_of_ending_the_process(
    run_ctx: RunContext,
) -> None:
    proc = py(
        run_ctx,
        "import sys\n"
        "def transform(row, ctx):\n"
        "    if row['id'] == 2: sys.exit(0)\n"
        "    return row\n",
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [r["id"] for r in rows_of(out)] == [1, 3, 4]
    (e,) = out.errors
    assert e.line == 3 and e.kind == "script"
    assert e.reason.startswith("SystemExit: sys.exit(0) was called")


def test_python_sys_exit_in_a_batch_function_fails_the_run_with_the_user_line(
    run_ctx: RunContext,
) -> None:
    proc = py(
        run_ctx,
        "import sys\ndef transform(batch, ctx):\n    sys.exit(3)\n",
        mode="batch",
    )
    with pytest.raises(PermanentError) as raised:
        process(proc, batch(ORDERS), run_ctx)
    (detail,) = raised.value.details
    assert "SystemExit: sys.exit(3)" in detail.message and detail.where.endswith("t.py:3")


def test_python_sys_exit_at_import_is_a_check_problem(run_ctx: RunContext) -> None:
    proc = py(run_ctx, "import sys\nsys.exit(4)\ndef transform(row, ctx):\n    return row\n")
    (problem,) = proc.check(run_ctx)
    assert "SystemExit: sys.exit(4)" in problem.message and problem.where.endswith("t.py:2")


def test_python_values_nesting_too_deep_or_holding_themselves_reject_their_row(
    run_ctx: RunContext,
) -> None:
    proc = py(
        run_ctx,
        "def nest(levels):\n"
        "    value = []\n"
        "    for _ in range(levels - 1):\n"
        "        value = [value]\n"
        "    return value\n"
        "def transform(row, ctx):\n"
        "    if row['id'] == 1: row['v'] = nest(128)\n"
        "    if row['id'] == 2: row['v'] = {'a': nest(5000)}\n"
        "    if row['id'] == 3:\n"
        "        loop = []\n"
        "        loop.append({'x': loop})\n"
        "        row['v'] = loop\n"
        "    if row['id'] == 4:\n"
        "        shared = nest(100)\n"
        "        row['v'] = [shared, shared]\n"
        "    return row\n",
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [r["id"] for r in rows_of(out)] == [1, 4]
    deep, cycle = out.errors
    assert (deep.line, deep.column, deep.kind) == (3, "v", "script")
    assert "nests lists and dicts more than 128 levels deep" in deep.reason
    assert deep.value == "<dict nested too deep to show>"
    assert (cycle.line, cycle.column) == (4, "v") and "holds itself" in cycle.reason
