"""The OTAP gRPC services: ``ArrowTraces``, ``ArrowLogs`` and ``ArrowMetrics``, bidirectional
streams of ``BatchArrowRecords`` in and ``BatchStatus`` out.

Each BatchArrowRecords is decoded (its payloads read from their IPC streams, see
:mod:`quiver.ingest.otap.streams`), joined into rows of the telemetry layout, and made durable
in the spool through the :class:`~quiver.ingest.intake.Intake`; only then is it answered
``OK``. Batches are decoded in their order and stored several at a time, so answers may come
out of order, as the specification allows. A batch that cannot be taken is answered with the
specification's status codes and a message, and the stream goes on: INVALID_ARGUMENT for data
that can never be right (bad IPC bytes, an unknown or unexpected payload type, a parent id
with no parent), RESOURCE_EXHAUSTED when too much waits for the pipeline, UNAVAILABLE while
stopping or when the disk refuses a write (the last two are retryable). Credentials are
checked once, on the stream's metadata (UNAUTHENTICATED ends the stream); a message that is
not a BatchArrowRecords at all ends it with INVALID_ARGUMENT. With tenancy, the stream's
metadata claims its tenant (a claim refused ends the stream) and each batch is answered
UNAUTHENTICATED / PERMISSION_DENIED / INVALID_ARGUMENT when its rows' tenants are refused, and
RESOURCE_EXHAUSTED when a tenant is over its rate limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pyarrow as pa
from google.protobuf.message import DecodeError

from quiver.ingest.access import AuthConfig, admit_grpc_call, grpc_metadata
from quiver.ingest.arrow_layout import SIGNALS, Signal
from quiver.ingest.intake import BackpressureError, Intake, UnavailableError
from quiver.ingest.otap.columns import OtapDataError, Payload, Rejections
from quiver.ingest.otap.config import ArrowReceiverConfig
from quiver.ingest.otap.logs import decode_logs
from quiver.ingest.otap.metrics import decode_metrics
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2
from quiver.ingest.otap.streams import IpcStreams, payload_name
from quiver.ingest.otap.traces import decode_spans
from quiver.ingest.tenancy import Tenancy, TenantError, TenantIntake

__all__ = ["SERVICES", "arrow_handlers", "decode_batch"]

#: Service and method of each signal's stream.
SERVICES: dict[Signal, tuple[str, str]] = {
    "traces": ("opentelemetry.proto.experimental.arrow.v1.ArrowTracesService", "ArrowTraces"),
    "logs": ("opentelemetry.proto.experimental.arrow.v1.ArrowLogsService", "ArrowLogs"),
    "metrics": ("opentelemetry.proto.experimental.arrow.v1.ArrowMetricsService", "ArrowMetrics"),
}

_S = otap_pb2.StatusCode
_IN_FLIGHT = 16  # batches of one stream being stored at once
_DECODERS: dict[Signal, Callable[[dict[int, Payload], Rejections], pa.RecordBatch | None]] = {
    "traces": decode_spans,
    "logs": decode_logs,
    "metrics": decode_metrics,
}


def decode_batch(
    streams: IpcStreams, bar: otap_pb2.BatchArrowRecords, rejected: Rejections | None = None
) -> pa.RecordBatch | None:
    """The rows of one BatchArrowRecords (None: no items); OtapDataError if it is wrong.
    Items holding a value the rows cannot (a time past 2262, a count past int64) are left
    out, counted and named in ``rejected``."""
    tables: dict[int, Payload] = {}
    for i, payload in enumerate(bar.arrow_payloads):
        kind = int(payload.type)
        if kind in tables:
            raise OtapDataError(
                f"arrow_payloads[{i}]: a second {payload_name(kind)} payload in one batch"
            )
        try:
            table = streams.decode(kind, payload.schema_id, payload.record)
        except OtapDataError as exc:
            raise OtapDataError(f"arrow_payloads[{i}]: {exc.message}") from exc
        if table is not None:
            tables[kind] = table
    try:
        return _DECODERS[streams.signal](tables, Rejections() if rejected is None else rejected)
    except (pa.ArrowException, ValueError, TypeError, KeyError, IndexError) as exc:
        raise OtapDataError(f"the payload tables cannot be joined: {exc}") from exc


class _Streams:
    """How many OTAP streams are open, and what each may hold."""

    def __init__(self, limit: int, max_stream_bytes: int) -> None:
        self.limit = limit
        self.max_stream_bytes = max_stream_bytes
        self.open = 0


def _status(batch_id: int, code: int, message: str = "") -> bytes:
    status = otap_pb2.BatchStatus(batch_id=batch_id, status_code=code, status_message=message)  # type: ignore[arg-type]
    data: bytes = status.SerializeToString()
    return data


def _handler(
    signal: Signal,
    intake: Intake,
    auth: AuthConfig | None,
    enabled: bool,
    streams: _Streams,
    tenancy: Tenancy | None,
) -> Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext[Any, Any]], AsyncIterator[bytes]]:
    async def call(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        caller = await admit_grpc_call(context, auth, enabled, signal)
        taking: Intake | TenantIntake = intake
        if tenancy is not None:
            try:
                claim = tenancy.claim(caller, grpc_metadata(context))
            except TenantError as exc:
                await context.abort(grpc.StatusCode[exc.grpc_code], exc.message)
            taking = TenantIntake(intake, tenancy, claim, signal)
        if streams.open >= streams.limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{streams.open} OTAP streams are open (arrow.max_streams); retry later",
            )
        streams.open += 1
        try:
            answers: asyncio.Queue[bytes | str | None] = asyncio.Queue()
            ipc_streams = IpcStreams(signal, streams.max_stream_bytes)
            reader = asyncio.create_task(_read(requests, ipc_streams, taking, answers))
            try:
                while (answer := await answers.get()) is not None:
                    if isinstance(answer, str):
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, answer)
                        return
                    yield answer
                await reader
            finally:
                reader.cancel()
        finally:
            streams.open -= 1

    return call


async def _read(
    requests: AsyncIterator[bytes],
    streams: IpcStreams,
    intake: Intake | TenantIntake,
    answers: asyncio.Queue[bytes | str | None],
) -> None:
    """Decode the batches of a stream in order (their IPC streams depend on it) and store
    each in a task of its own, up to ``_IN_FLIGHT`` at once: their spool writes share one
    fsync, and their BatchStatus answers go out as they complete (OTAP allows any order).
    A message that is not a BatchArrowRecords puts its error (a str) in ``answers``; the
    end of the stream, None."""
    slots = asyncio.Semaphore(_IN_FLIGHT)
    stores: set[asyncio.Task[None]] = set()

    async def store(batch_id: int, batch: pa.RecordBatch, rejected: Rejections) -> None:
        try:
            answers.put_nowait(await _store(intake, batch_id, batch, rejected))
        finally:
            slots.release()

    try:
        async for body in requests:
            try:
                bar = otap_pb2.BatchArrowRecords.FromString(body)
            except DecodeError as exc:
                answers.put_nowait(f"the message is not a BatchArrowRecords: {exc}")
                return
            rejected = Rejections()
            try:
                batch = decode_batch(streams, bar, rejected)
            except OtapDataError as exc:
                answers.put_nowait(_status(bar.batch_id, _S.INVALID_ARGUMENT, exc.message))
                continue
            except Exception as exc:  # a bug of ours: answer it, keep the stream
                message = f"the batch could not be decoded: {type(exc).__name__}: {exc}"
                answers.put_nowait(_status(bar.batch_id, _S.INTERNAL, message))
                continue
            if batch is None:
                intake.rejected_items += rejected.count
                answers.put_nowait(_status(bar.batch_id, _S.OK, rejected.message))
                continue
            await slots.acquire()
            task = asyncio.create_task(store(bar.batch_id, batch, rejected))
            stores.add(task)
            task.add_done_callback(stores.discard)
        if stores:
            await asyncio.gather(*stores)
    finally:
        answers.put_nowait(None)


async def _store(
    intake: Intake | TenantIntake, batch_id: int, batch: pa.RecordBatch, rejected: Rejections
) -> bytes:
    """Make ``batch`` durable; its BatchStatus (OK naming the ``rejected`` items, left out)."""
    try:
        await intake.accept(batch)
    except TenantError as exc:
        return _status(batch_id, _S.Value(exc.grpc_code), exc.message)
    except UnavailableError as exc:
        return _status(batch_id, _S.UNAVAILABLE, exc.message)
    except BackpressureError as exc:
        return _status(batch_id, _S.RESOURCE_EXHAUSTED, exc.message)
    intake.rejected_items += rejected.count
    return _status(batch_id, _S.OK, rejected.message)


def arrow_handlers(
    intake: Intake,
    cfg: ArrowReceiverConfig,
    auth: AuthConfig | None,
    signals: list[Signal],
    tenancy: Tenancy | None = None,
) -> list[grpc.GenericRpcHandler]:
    """The generic handlers of the three OTAP services, for a grpc.aio server."""
    streams = _Streams(cfg.max_streams, cfg.max_stream_bytes)
    handlers = []
    for signal in SIGNALS:
        service, method = SERVICES[signal]
        handler = grpc.stream_stream_rpc_method_handler(
            _handler(signal, intake, auth, signal in signals, streams, tenancy)
        )
        handlers.append(grpc.method_handlers_generic_handler(service, {method: handler}))
    return handlers
