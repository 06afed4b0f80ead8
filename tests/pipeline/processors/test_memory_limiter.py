"""The memory limiter: batches held back or dropped while memory is above the limit."""

from __future__ import annotations

import asyncio

import pyarrow as pa
import pytest
from pydantic import ValidationError

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.memory_limiter import (
    MemoryLimiterConfig,
    MemoryLimiterProcessor,
    resident_bytes,
)

from .contract import process

_MIB = 1024 * 1024
ROWS = pa.RecordBatch.from_pydict({"i": [1, 2, 3]})


def test_batches_pass_under_the_limit(run_ctx: RunContext) -> None:
    proc = MemoryLimiterProcessor(MemoryLimiterConfig(limit_mib=1 << 20))
    assert process(proc, ROWS, run_ctx).batch is ROWS
    assert resident_bytes() > 0


def test_above_the_limit_drop_drops_and_counts(run_ctx: RunContext) -> None:
    proc = MemoryLimiterProcessor(MemoryLimiterConfig(limit_mib=1, on_limit="drop"))
    assert process(proc, ROWS, run_ctx).batch is None  # this process uses more than 1 MiB
    assert process(proc, ROWS, run_ctx).batch is None
    assert proc.dropped_rows == 6
    assert any("dropped 3 row(s)" in m for _, m in run_ctx.logs)  # type: ignore[attr-defined]


def test_above_the_limit_wait_holds_the_batch_until_memory_goes_under_the_spike(
    run_ctx: RunContext,
) -> None:
    readings = iter([120, 120, 110, 95, 79])  # MiB: over, still over after gc, ..., under 80
    seen: list[int] = []

    def meter() -> int:
        seen.append(next(readings))
        return seen[-1] * _MIB

    cfg = MemoryLimiterConfig(limit_mib=100, spike_mib=20, check_seconds=0.01)
    proc = MemoryLimiterProcessor(cfg, meter)
    out = asyncio.run(proc.process(ROWS, run_ctx))
    assert out.batch is ROWS
    assert seen == [120, 120, 110, 95, 79]


def test_a_spike_not_below_the_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="spike_mib"):
        MemoryLimiterConfig(limit_mib=10, spike_mib=10)
