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
