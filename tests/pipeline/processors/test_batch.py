"""The batch processor: small batches gathered by row count and age."""

from __future__ import annotations

import asyncio

import pyarrow as pa

from quiver.pipeline.component import ProcessorOutput, RunContext
from quiver.pipeline.processors.batch import BatchConfig, BatchProcessor

from .contract import process


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _rows(n: int, start: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"i": list(range(start, start + n))})


def _ids(out: ProcessorOutput) -> list[int] | None:
    return None if out.batch is None else out.batch.column("i").to_pylist()


def _flush(proc: BatchProcessor, ctx: RunContext) -> list[ProcessorOutput]:
    async def drain() -> list[ProcessorOutput]:
        return [o async for o in proc.flush(ctx)]

    return asyncio.run(drain())


def test_rows_are_held_until_size_is_reached_then_handed_on_in_order(run_ctx: RunContext) -> None:
    proc = BatchProcessor(BatchConfig(size=5))
    assert _ids(process(proc, _rows(2, 0), run_ctx)) is None
    assert _ids(process(proc, _rows(2, 2), run_ctx)) is None
    assert _ids(process(proc, _rows(3, 4), run_ctx)) == list(range(7))
    assert _ids(process(proc, _rows(1, 7), run_ctx)) is None
    assert [_ids(o) for o in _flush(proc, run_ctx)] == [[7]]
    assert _flush(proc, run_ctx) == []


def test_rows_older_than_the_timeout_are_handed_on_with_the_next_batch(
    run_ctx: RunContext,
) -> None:
    clock = _Clock()
    proc = BatchProcessor(BatchConfig(size=100, timeout=2), clock)
    assert _ids(process(proc, _rows(1, 0), run_ctx)) is None
    clock.now = 1.5
    assert _ids(process(proc, _rows(1, 1), run_ctx)) is None
    clock.now = 2.0
    assert _ids(process(proc, _rows(0, 2), run_ctx)) == [0, 1]
    clock.now = 10.0
    assert _ids(process(proc, _rows(1, 2), run_ctx)) is None  # its age starts now
