"""The derive processor."""

from __future__ import annotations

import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.processors.derive import DeriveProcessor
from quiver.runtime.errors import PermanentError

from .contract import ORDERS, batch, make, process, rows_of


def test_derive_adds_replaces_and_chains_columns(run_ctx: RunContext) -> None:
    proc = make(
        DeriveProcessor,
        {"columns": {"gross": "total * 2", "country": "lower(country)", "big": "gross > 200"}},
    )
    out = process(proc, batch(ORDERS[:3]), run_ctx)
    assert rows_of(out) == [
        {"id": 1, "total": 50.0, "country": "de", "gross": 100.0, "big": False},
        {"id": 2, "total": 150.0, "country": "xx", "gross": 300.0, "big": True},
        {"id": 3, "total": 250.0, "country": "fr", "gross": 500.0, "big": True},
    ]
    assert out.batch is not None and out.batch.column(LINE_COLUMN).to_pylist() == [2, 3, 4]


def test_a_row_the_expression_cannot_take_is_rejected_with_its_line_and_values(
    run_ctx: RunContext,
) -> None:
    proc = make(DeriveProcessor, {"columns": {"share": "100 // n", "n": "n + 1"}})
    rows = [{"id": i, "n": n} for i, n in enumerate([4, 0, 5, 1, 0, 2, 3, 0], start=1)]
    out = process(proc, batch(rows), run_ctx)
    assert rows_of(out) == [
        {"id": 1, "n": 5, "share": 25},
        {"id": 3, "n": 6, "share": 20},
        {"id": 4, "n": 2, "share": 100},
        {"id": 6, "n": 3, "share": 50},
        {"id": 7, "n": 4, "share": 33},
    ]
    assert out.batch is not None and out.batch.column(LINE_COLUMN).to_pylist() == [2, 4, 5, 7, 8]
    assert [(e.line, e.row) for e in out.errors] == [
        (3, {"id": 2, "n": 0}),
        (6, {"id": 5, "n": 0}),
        (9, {"id": 8, "n": 0}),
    ]
    assert all("Division by zero in expression (100 // n)" in e.reason for e in out.errors)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("CAST('x' AS INTEGER) + id", "Could not convert string 'x' to INT32"),
        ("totl * 2", 'Referenced column "totl" not found'),
    ],
)
def test_an_expression_failing_on_every_row_fails_the_batch(
    run_ctx: RunContext, rows: int, expression: str, message: str
) -> None:
    proc = make(DeriveProcessor, {"columns": {"bad": expression}})
    with pytest.raises(PermanentError, match=message):
        process(proc, batch(ORDERS[:rows]), run_ctx)


def _counting_runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of queries BatchSql runs, as a one-item list read after the work."""
    from quiver.pipeline.processors.batch_sql import BatchSql

    runs = [0]
    real = BatchSql.run

    def counted(self: BatchSql, *args: object, **kwargs: object) -> object:
        runs[0] += 1
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(BatchSql, "run", counted)
    return runs


def test_many_failing_rows_are_found_in_one_pass_and_each_rejected(
    run_ctx: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A third of 30,000 rows failing: every one is rejected with its line, found by one probe
    query rather than a search per row; the first EXPLAINED_FAILURES are run alone for their
    reasons, the others given the first one's."""
    from quiver.pipeline.processors.batch_sql import EXPLAINED_FAILURES

    runs = _counting_runs(monkeypatch)
    proc = make(DeriveProcessor, {"columns": {"share": "100 // n", "half": "share // 2"}})
    rows = [{"id": i, "n": i % 3} for i in range(30_000)]
    out = process(proc, batch(rows), run_ctx)
    failing = [r["id"] for r in rows if r["n"] == 0]
    assert [e.line for e in out.errors] == [i + 2 for i in failing]
    assert [r["id"] for r in rows_of(out)] == [r["id"] for r in rows if r["n"]]
    assert rows_of(out)[:2] == [
        {"id": 1, "n": 1, "share": 100, "half": 50},
        {"id": 2, "n": 2, "share": 50, "half": 25},
    ]
    explained = out.errors[:EXPLAINED_FAILURES]
    assert all("Division by zero in expression (100 // n)" in e.reason for e in explained)
    rest = out.errors[EXPLAINED_FAILURES:]
    assert rest and all(
        e.reason.startswith("the expression cannot be computed for this row")
        and "Division by zero" in e.reason
        for e in rest
    )
    # the batch, the row of nulls, each explained row, and the rows that run
    assert runs[0] <= EXPLAINED_FAILURES + 3


def test_an_expression_try_cannot_take_still_rejects_its_failing_rows(
    run_ctx: RunContext,
) -> None:
    """A scalar subquery, which DuckDB's ``try`` refuses: the rows are found one by one."""
    proc = make(DeriveProcessor, {"columns": {"share": "100 // (SELECT n)"}})
    rows = [{"id": i, "n": n} for i, n in enumerate([4, 0, 5, 0], start=1)]
    out = process(proc, batch(rows), run_ctx)
    assert rows_of(out) == [{"id": 1, "n": 4, "share": 25}, {"id": 3, "n": 5, "share": 20}]
    assert [e.line for e in out.errors] == [3, 5]
