"""The intake pushes back when too much waits for the pipeline, refuses data once stopping,
and hands on, after a stop, exactly what it accepted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pytest

from quiver.ingest.intake import BackpressureError, Intake, UnavailableError
from quiver.ingest.spool import Spool


def batch(n: int) -> pa.RecordBatch:
    return pa.record_batch({"n": pa.array([n], pa.int64())})


def test_too_many_waiting_batches_push_back_and_stopping_refuses(tmp_path: Path) -> None:
    async def run() -> list[int]:
        spool = Spool(str(tmp_path))
        spool.open()
        intake = Intake(spool, max_queued_batches=2, retry_after=4)
        await intake.accept(batch(1))
        await intake.accept(batch(2))
        with pytest.raises(BackpressureError) as full:
            await intake.accept(batch(3))
        assert full.value.retry_after == 4
        assert "2 batches wait for the pipeline (max_queued_batches 2)" in full.value.message
        assert not isinstance(full.value, UnavailableError)  # 429, not 503
        taken = [b.column("n")[0].as_py() async for b in _first(intake.arriving(), 1)]
        await intake.accept(batch(3))  # room again
        intake.stop()
        with pytest.raises(UnavailableError, match="shutting down"):
            await intake.accept(batch(4))
        taken += [b.column("n")[0].as_py() async for b in intake.arriving()]
        await intake.commit()
        spool.close()
        return taken

    assert asyncio.run(run()) == [1, 2, 3]
    spool = Spool(str(tmp_path))
    spool.open()
    assert list(spool.replay()) == []  # committed: nothing left for the next run
    spool.close()


async def _first(items: AsyncIterator[pa.RecordBatch], n: int) -> AsyncIterator[pa.RecordBatch]:
    async for item in items:
        yield item
        n -= 1
        if n == 0:
            return


def test_a_request_cancelled_while_its_batch_is_written_still_hands_the_batch_on(
    tmp_path: Path,
) -> None:
    """The spool holds the batch once written: it must reach the sinks before a commit past
    it drops it from the spool, whether or not its client waited for the answer."""

    async def run() -> list[int]:
        spool = Spool(str(tmp_path))
        spool.open()
        intake = Intake(spool, max_queued_batches=8, retry_after=1)
        gone = asyncio.create_task(intake.accept(batch(1)))
        await asyncio.sleep(0)  # its write has begun
        gone.cancel()  # a gRPC deadline past, a client gone
        with pytest.raises(asyncio.CancelledError):
            await gone
        await intake.accept(batch(2))
        intake.stop()
        taken = [b.column("n")[0].as_py() async for b in intake.arriving()]
        await intake.commit()
        spool.close()
        return taken

    assert sorted(asyncio.run(run())) == [1, 2]
