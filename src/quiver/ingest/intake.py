"""Where a network receiver hands what it accepted: the spool, then the pipeline.

:meth:`Intake.accept` returns once a batch is durable in the spool (the receiver answers its
client only then) and queues it for the pipeline; :meth:`Intake.batches` hands the pipeline
first what an earlier run left uncommitted in the spool, then what arrives, until
:meth:`Intake.stop`. :meth:`Intake.commit` drops from the spool everything handed on.

BackpressureError: when more than ``max_queued_batches`` wait for the pipeline or the spool holds
its ``max_bytes``, :meth:`accept` raises :class:`BackpressureError` (the receiver answers HTTP 429 /
gRPC RESOURCE_EXHAUSTED with a retry delay); once stopping, or when the disk refuses a write,
it raises :class:`UnavailableError` (HTTP 503 / gRPC UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pyarrow as pa

from quiver.ingest.spool import Position, Spool, SpoolFullError

__all__ = ["BackpressureError", "Intake", "UnavailableError"]


class BackpressureError(Exception):
    """Too much is waiting: the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class UnavailableError(BackpressureError):
    """The receiver cannot take data now (stopping, disk error); retryable."""


class Intake:
    """See the module's doc."""

    def __init__(self, spool: Spool, *, max_queued_batches: int, retry_after: float) -> None:
        self.spool = spool
        self.max_queued_batches = max_queued_batches
        self.retry_after = retry_after
        self.accepted_rows = 0
        self.rejected_items = 0  # refused item by item (answered as partial success)
        self.accepted_batches = 0
        # requests refused whole, by reason: backpressure (429 / RESOURCE_EXHAUSTED), or
        # unavailable (503 / UNAVAILABLE: stopping, disk error)
        self.refused_requests = {"backpressure": 0, "unavailable": 0}
        self._queue: asyncio.Queue[tuple[Position, pa.RecordBatch]] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._handed: Position | None = None  # the last batch handed to the pipeline

    @property
    def queued_batches(self) -> int:
        """Batches accepted and not yet handed to the pipeline."""
        return self._queue.qsize()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def accept(self, batch: pa.RecordBatch) -> None:
        """Make ``batch`` durable and queue it; see the module's doc for what it raises."""
        try:
            await self._accept(batch)
        except UnavailableError:
            self.refused_requests["unavailable"] += 1
            raise
        except BackpressureError:
            self.refused_requests["backpressure"] += 1
            raise

    async def _accept(self, batch: pa.RecordBatch) -> None:
        if self._stopping.is_set():
            raise UnavailableError("the receiver is shutting down", self.retry_after)
        if self._queue.qsize() >= self.max_queued_batches:
            raise BackpressureError(
                f"{self._queue.qsize()} batches wait for the pipeline (max_queued_batches "
                f"{self.max_queued_batches}); retry later",
                self.retry_after,
            )
        # shielded: a request cancelled while its batch is written (its client gone, its
        # deadline past) still hands the batch on, since the spool holds it: a later commit
        # would drop it from the spool without the sinks having seen it
        storing = asyncio.ensure_future(self._store(batch))
        storing.add_done_callback(_retrieve)
        await asyncio.shield(storing)

    async def _store(self, batch: pa.RecordBatch) -> None:
        try:
            position = await self.spool.append(batch)
        except SpoolFullError as exc:
            raise BackpressureError(f"{exc}; retry later", self.retry_after) from exc
        except OSError as exc:
            raise UnavailableError(
                f"the spool could not store the data: {exc.strerror or exc}", self.retry_after
            ) from exc
        self.accepted_rows += batch.num_rows
        self.accepted_batches += 1
        self._queue.put_nowait((position, batch))

    def stop(self) -> None:
        """Take nothing more; :meth:`batches` ends once the queue is empty."""
        self._stopping.set()

    async def replayed(self) -> AsyncIterator[pa.RecordBatch]:
        """What earlier runs left in the spool, uncommitted."""
        for position, batch in await asyncio.to_thread(lambda: list(self.spool.replay())):
            self._handed = position
            yield batch

    async def arriving(
        self, *, count: int | None = None, seconds: float | None = None
    ) -> AsyncIterator[pa.RecordBatch]:
        """Accepted batches as they come, until :meth:`stop` and the queue is empty; for a
        checkpoint, also after ``count`` batches or ``seconds`` after the first one."""
        stop = asyncio.ensure_future(self._stopping.wait())
        handed = 0
        deadline: float | None = None
        try:
            while count is None or handed < count:
                if self._queue.empty():
                    if self._stopping.is_set():
                        return
                    wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                    get = asyncio.ensure_future(self._queue.get())
                    await asyncio.wait({get, stop}, timeout=wait, return_when="FIRST_COMPLETED")
                    if not get.done():
                        get.cancel()
                        if deadline is not None and time.monotonic() >= deadline:
                            return
                        continue
                    position, batch = get.result()
                else:
                    position, batch = self._queue.get_nowait()
                self._handed = position
                handed += 1
                if deadline is None and seconds is not None:
                    deadline = time.monotonic() + seconds
                yield batch
                if deadline is not None and time.monotonic() >= deadline:
                    return
        finally:
            stop.cancel()

    def drain(self) -> list[pa.RecordBatch]:
        """Whatever is still queued (after the servers stopped), marked as handed on."""
        out = []
        while not self._queue.empty():
            position, batch = self._queue.get_nowait()
            self._handed = position
            out.append(batch)
        return out

    async def commit(self) -> None:
        """The sinks hold everything handed on: drop it from the spool."""
        if self._handed is not None:
            await asyncio.to_thread(self.spool.commit, self._handed)


def _retrieve(task: asyncio.Future[None]) -> None:
    """Mark the error of a store whose request was cancelled as seen (no one answers it)."""
    if not task.cancelled():
        task.exception()
