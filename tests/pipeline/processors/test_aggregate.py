"""The aggregate processor: metrics over tumbling and sliding windows, with late rows."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from pydantic import ValidationError

from quiver.pipeline.component import ProcessorOutput, RunContext
from quiver.pipeline.processors.aggregate import AggregateConfig, AggregateProcessor

from .contract import make, process
from .telemetry_rows import SPANS, spans

_T0 = dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
METRICS = {
    "n": "count",
    "total_ms": {"fn": "sum", "field": "duration_ns"},
    "avg_ms": {"fn": "avg", "field": "duration_ns"},
    "longest": {"fn": "max", "field": "duration_ns"},
    "shortest": {"fn": "min", "field": "duration_ns"},
    "codes": {"fn": "count", "field": 'attributes["http.status_code"]'},
    "p50": {"fn": "percentile", "field": "duration_ns", "q": 0.5},
}


def _flush(proc: AggregateProcessor, ctx: RunContext) -> list[ProcessorOutput]:
    async def drain() -> list[ProcessorOutput]:
        return [out async for out in proc.flush(ctx)]

    return asyncio.run(drain())


def _rows(outs: list[ProcessorOutput]) -> list[dict[str, Any]]:
    return [r for o in outs if o.batch is not None for r in o.batch.to_pylist()]


def _ms(rows: list[dict[str, Any]], key: str) -> list[Any]:
    return [r[key] / 1e6 if isinstance(r[key], (int, float)) else r[key] for r in rows]


def test_tumbling_windows_group_by_columns_and_attributes(run_ctx: RunContext) -> None:
    proc = make(
        AggregateProcessor,
        {
            "window": "10s",
            "group_by": ["service_name", "attributes.http.method"],
            "metrics": METRICS,
        },
    )
    outs = [process(proc, spans(), run_ctx), *_flush(proc, run_ctx)]
    rows = _rows(outs)
    got = sorted(
        ((r["window_start"] - _T0).seconds, r["http.method"])
        for r in rows
        if r["service_name"] == "checkout"
    )
    # checkout spans: 0s GET 12ms, 3s POST 80ms, 11s GET 30ms
    assert got == [(0, "GET"), (0, "POST"), (10, "GET")]
    by = {(r["window_start"], r["service_name"], r["http.method"]): r for r in rows}
    first = by[(_T0, "checkout", "GET")]
    assert (first["n"], first["total_ms"], first["codes"]) == (1, 12_000_000, 1)
    cart = by[(_T0 + dt.timedelta(seconds=10), "cart", None)]
    assert (cart["n"], cart["codes"], cart["window_end"] - cart["window_start"]) == (
        1,
        0,
        dt.timedelta(seconds=10),
    )
    assert sum(r["n"] for r in rows) == len(SPANS)


def test_windows_are_emitted_once_time_passes_their_end(run_ctx: RunContext) -> None:
    proc = make(AggregateProcessor, {"window": "10s", "metrics": METRICS})
    b = spans()
    first = process(proc, b.slice(0, 3), run_ctx)  # times 0, 3, 7: window 0-10 still open
    assert first.batch is None
    second = process(proc, b.slice(3), run_ctx)  # time 11 closes window 0-10
    assert second.batch is not None
    [row] = second.batch.to_pylist()
    assert (row["n"], row["total_ms"], row["longest"], row["shortest"]) == (
        3,
        97_000_000,
        80_000_000,
        5_000_000,
    )
    assert row["avg_ms"] == pytest.approx(97_000_000 / 3)
    assert row["p50"] == pytest.approx(12_000_000)
    [rest] = _rows(_flush(proc, run_ctx))
    assert rest["n"] == 2


def test_late_rows_are_dropped_and_counted_or_routed(run_ctx: RunContext) -> None:
    b = spans()
    for late, lateness in (("drop", "0s"), ("late", "0s"), ("drop", "5s")):
        proc = make(
            AggregateProcessor,
            {
                "window": "10s",
                "metrics": {"n": "count"},
                "late": late,
                "allowed_lateness": lateness,
            },
        )
        process(proc, b.slice(3, 2), run_ctx)  # times 11, 14
        out = process(proc, b.slice(0, 1), run_ctx)  # time 0: its window closed at 10
        total = sum(r["n"] for r in _rows([out, *_flush(proc, run_ctx)]))
        if lateness == "5s":  # the watermark is 14 - 5 = 9: window 0-10 still open
            assert (proc.late_rows, total) == (0, 3)
        elif late == "drop":
            assert (proc.late_rows, total) == (1, 2)
            assert ("warning", "aggregate: dropped 1 late row(s)") in run_ctx.logs  # type: ignore[attr-defined]
        else:
            assert out.routes["late"][0].column("span_name").to_pylist() == ["span0"]


def test_sliding_windows_count_each_row_in_every_window_it_falls_in(run_ctx: RunContext) -> None:
    proc = make(AggregateProcessor, {"window": "10s", "slide": "5s", "metrics": {"n": "count"}})
    rows = _rows([process(proc, spans(), run_ctx), *_flush(proc, run_ctx)])
    counts = {(r["window_start"] - _T0).total_seconds(): r["n"] for r in rows}
    # times 0, 3, 7, 11, 14
    assert counts == {-5: 2, 0: 3, 5: 3, 10: 2}


def test_a_non_timestamp_time_field_is_refused(run_ctx: RunContext) -> None:
    proc = make(
        AggregateProcessor, {"time": "span_name", "window": "1s", "metrics": {"n": "count"}}
    )
    with pytest.raises(Exception, match="not a timestamp"):
        process(proc, spans(), run_ctx)


@pytest.mark.parametrize(
    ("options", "loc"),
    [
        ({"window": "10 parsecs"}, ("window",)),
        ({"window": "10s", "slide": "3s"}, ()),
        ({"window": "10s", "group_by": ["attributes[x"]}, ("group_by",)),
        ({"window": "1s", "metrics": {"p": {"fn": "percentile", "field": "d"}}}, ("metrics", "p")),
        ({"window": "1s", "group_by": ["resource.n"], "metrics": {"n": "count"}}, ()),
    ],
)
def test_bad_aggregate_configs_are_refused_with_their_location(
    options: dict[str, Any], loc: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        AggregateConfig.model_validate({"metrics": {"n": "count"}, **options})
    assert info.value.errors()[0]["loc"][: len(loc)] == loc


def test_metrics_over_map_values_read_them_as_numbers(run_ctx: RunContext) -> None:
    proc = make(
        AggregateProcessor,
        {"window": "1d", "metrics": {"s": {"fn": "sum", "field": "attributes.http.status_code"}}},
    )
    [row] = _rows([process(proc, spans(), run_ctx), *_flush(proc, run_ctx)])
    assert row["s"] == 200 + 500 + 200 + 404
