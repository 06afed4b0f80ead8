"""The filter processor: keep, route or reject rows by a condition."""

from __future__ import annotations

import pytest

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.filter import FilterProcessor
from quiver.runtime.errors import PermanentError

from .contract import ORDERS, batch, make, process, rows_of


def test_filter_keeps_matching_rows_and_drops_false_and_null(run_ctx: RunContext) -> None:
    out = process(
        make(FilterProcessor, {"expression": "total > 100 and country <> 'XX'"}),
        batch(ORDERS),
        run_ctx,
    )
    assert [r["id"] for r in rows_of(out)] == [3]


def test_filter_otherwise_routes_the_other_rows(run_ctx: RunContext) -> None:
    out = process(
        make(FilterProcessor, {"expression": "total > 100", "otherwise": "small"}),
        batch(ORDERS),
        run_ctx,
    )
    assert [r["id"] for r in rows_of(out)] == [2, 3]
    assert [r["id"] for r in out.routes["small"][0].to_pylist()] == [1, 4]


def test_filter_reject_turns_other_rows_into_row_errors(run_ctx: RunContext) -> None:
    proc = make(
        FilterProcessor, {"expression": "country <> 'XX'", "reject": True, "reason": "embargo"}
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [(e.line, e.reason) for e in out.errors] == [(3, "embargo")]


def test_filter_with_an_unknown_column_fails_with_the_batch_columns(run_ctx: RunContext) -> None:
    with pytest.raises(PermanentError, match=r"the batch columns are id, total, country\)$"):
        process(make(FilterProcessor, {"expression": "amount > 1"}), batch(ORDERS), run_ctx)


def test_filter_check_reports_syntax_errors(run_ctx: RunContext) -> None:
    problems = make(FilterProcessor, {"expression": "total >> > 1"}).check(run_ctx)
    assert problems and "syntax error" in problems[0].message


@pytest.mark.parametrize("options", [{}, {"reject": True}, {"otherwise": "small"}])
def test_a_row_the_condition_cannot_take_is_rejected_and_the_others_filtered(
    run_ctx: RunContext, options: dict[str, object]
) -> None:
    rows = [{"id": i, "n": n} for i, n in enumerate([4, 0, 50, "x", 1], start=1)]
    rows = [{"id": r["id"], "n": str(r["n"])} for r in rows]
    out = process(
        make(FilterProcessor, {"expression": "100 // CAST(n AS INTEGER) > 10", **options}),
        batch(rows),
        run_ctx,
    )
    assert [r["id"] for r in rows_of(out)] == [1, 5]
    failed = [(e.line, e.row) for e in out.errors if "query failed" in e.reason]
    assert failed == [(3, {"id": 2, "n": "0"}), (5, {"id": 4, "n": "x"})]
    assert "Division by zero" in out.errors[0].reason
    assert "Could not convert string 'x'" in out.errors[1].reason
    if options.get("reject"):
        assert [e.line for e in out.errors if "query failed" not in e.reason] == [4]
    if options.get("otherwise"):
        assert [r["id"] for r in out.routes["small"][0].to_pylist()] == [3]


def test_many_rows_the_condition_cannot_take_are_found_in_one_pass(
    run_ctx: RunContext,
) -> None:
    """A third of 30,000 rows failing the condition: each is rejected with its line and the
    others filtered, the failing rows found by one probe query (a search per row took minutes
    for a file of such rows)."""
    from quiver.pipeline.processors.batch_sql import EXPLAINED_FAILURES, BatchSql

    real, runs = BatchSql.run, [0]

    def counted(self: BatchSql, *args: object, **kwargs: object) -> object:
        runs[0] += 1
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    proc = make(FilterProcessor, {"expression": "100 // n > 60"})
    rows = [{"id": i, "n": i % 3} for i in range(30_000)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BatchSql, "run", counted)
        out = process(proc, batch(rows), run_ctx)
    assert [e.line for e in out.errors] == [r["id"] + 2 for r in rows if r["n"] == 0]
    assert [r["id"] for r in rows_of(out)] == [r["id"] for r in rows if r["n"] == 1]
    assert runs[0] <= EXPLAINED_FAILURES + 3
