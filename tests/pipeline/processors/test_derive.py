"""The derive processor."""

from __future__ import annotations

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.processors.derive import DeriveProcessor

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
