"""The cast processor."""

from __future__ import annotations

import datetime as dt
import decimal

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.cast import CastProcessor

from .contract import batch, make, process, rows_of


def test_cast_converts_and_rejects_values_that_do_not_fit(run_ctx: RunContext) -> None:
    proc = make(
        CastProcessor,
        {
            "columns": {
                "qty": "int",
                "price": {"type": "decimal", "scale": 2},
                "day": {"type": "date", "format": "%d.%m.%Y"},
            }
        },
    )
    out = process(
        proc,
        batch(
            [
                {"qty": "3", "price": "9.99", "day": "01.02.2024"},
                {"qty": "three", "price": "1", "day": "x"},
            ]
        ),
        run_ctx,
    )
    assert rows_of(out) == [
        {"qty": 3, "price": decimal.Decimal("9.99"), "day": dt.date(2024, 2, 1)}
    ]
    (e,) = out.errors
    assert (e.line, e.column, e.value) == (3, "qty", "three")
    assert "qty: expected int" in e.reason and "day: expected date" in e.reason
