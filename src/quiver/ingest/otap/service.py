"""The OTAP gRPC services: ``ArrowTraces``, ``ArrowLogs`` and ``ArrowMetrics``, bidirectional
streams of ``BatchArrowRecords`` in and ``BatchStatus`` out.

Each BatchArrowRecords is decoded (its payloads read from their IPC streams, see
:mod:`quiver.ingest.otap.streams`), joined into rows of the telemetry layout, and made durable
in the spool through the :class:`~quiver.ingest.intake.Intake`; only then is it answered
``OK``. A batch that cannot be taken is answered with the specification's status codes and a
message, and the stream goes on: INVALID_ARGUMENT for data that can never be right (bad IPC
bytes, an unknown or unexpected payload type, a parent id with no parent),
RESOURCE_EXHAUSTED when too much waits for the pipeline, UNAVAILABLE while stopping or when
the disk refuses a write (the last two are retryable). Credentials are checked once, on the
stream's metadata (UNAUTHENTICATED ends the stream); a message that is not a
BatchArrowRecords at all ends it with INVALID_ARGUMENT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pyarrow as pa
from google.protobuf.message import DecodeError

from quiver.ingest.access import AuthConfig, authorized
from quiver.ingest.arrow_layout import SIGNALS, Signal
from quiver.ingest.intake import BackpressureError, Intake, UnavailableError
from quiver.ingest.otap.columns import OtapDataError, Payload
from quiver.ingest.otap.config import ArrowReceiverConfig
from quiver.ingest.otap.logs import decode_logs
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2
from quiver.ingest.otap.streams import IpcStreams, payload_name
from quiver.ingest.otap.traces import decode_spans

__all__ = ["SERVICES", "arrow_handlers", "decode_batch"]

#: Service and method of each signal's stream.
SERVICES: dict[Signal, tuple[str, str]] = {
    "traces": ("opentelemetry.proto.experimental.arrow.v1.ArrowTracesService", "ArrowTraces"),
    "logs": ("opentelemetry.proto.experimental.arrow.v1.ArrowLogsService", "ArrowLogs"),
    "metrics": ("opentelemetry.proto.experimental.arrow.v1.ArrowMetricsService", "ArrowMetrics"),
}

_S = otap_pb2.StatusCode
_DECODERS: dict[Signal, Callable[[dict[int, Payload]], pa.RecordBatch | None]] = {
    "traces": decode_spans,
    "logs": decode_logs,
}


def decode_batch(streams: IpcStreams, bar: otap_pb2.BatchArrowRecords) -> pa.RecordBatch | None:
    """The rows of one BatchArrowRecords (None: no items); OtapDataError if it is wrong."""
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
    decoder = _DECODERS.get(streams.signal)
    if decoder is None:
        raise OtapDataError(f"OTAP {streams.signal} are not decoded by this receiver")
    return decoder(tables)


class _Streams:
    """How many OTAP streams are open."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


def _status(batch_id: int, code: int, message: str = "") -> bytes:
    status = otap_pb2.BatchStatus(batch_id=batch_id, status_code=code, status_message=message)  # type: ignore[arg-type]
    data: bytes = status.SerializeToString()
    return data


def _handler(
    signal: Signal, intake: Intake, auth: AuthConfig | None, enabled: bool, streams: _Streams
) -> Callable[[AsyncIterator[bytes], grpc.aio.ServicerContext[Any, Any]], AsyncIterator[bytes]]:
    async def call(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        metadata = {
            k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
        }
        if not authorized(auth, metadata):
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing or wrong credentials: send the API key in the "
                f"{auth.api_key_header if auth else 'x-api-key'} metadata or "
                "authorization: Bearer <token>",
            )
        if not enabled or signal not in _DECODERS:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, f"this receiver does not take OTAP {signal}"
            )
        if streams.open >= streams.limit:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{streams.open} OTAP streams are open (arrow.max_streams); retry later",
            )
        streams.open += 1
        try:
            ipc_streams = IpcStreams(signal)
            async for body in requests:
                try:
                    bar = otap_pb2.BatchArrowRecords.FromString(body)
                except DecodeError as exc:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"the message is not a BatchArrowRecords: {exc}",
                    )
                yield await _answer(intake, ipc_streams, bar)
        finally:
            streams.open -= 1

    return call


async def _answer(intake: Intake, streams: IpcStreams, bar: otap_pb2.BatchArrowRecords) -> bytes:
    try:
        batch = decode_batch(streams, bar)
    except OtapDataError as exc:
        return _status(bar.batch_id, _S.INVALID_ARGUMENT, exc.message)
    if batch is not None:
        try:
            await intake.accept(batch)
        except UnavailableError as exc:
            return _status(bar.batch_id, _S.UNAVAILABLE, exc.message)
        except BackpressureError as exc:
            return _status(bar.batch_id, _S.RESOURCE_EXHAUSTED, exc.message)
    return _status(bar.batch_id, _S.OK)


def arrow_handlers(
    intake: Intake,
    cfg: ArrowReceiverConfig,
    auth: AuthConfig | None,
    signals: list[Signal],
) -> list[grpc.GenericRpcHandler]:
    """The generic handlers of the three OTAP services, for a grpc.aio server."""
    streams = _Streams(cfg.max_streams)
    handlers = []
    for signal in SIGNALS:
        service, method = SERVICES[signal]
        handler = grpc.stream_stream_rpc_method_handler(
            _handler(signal, intake, auth, signal in signals, streams)
        )
        handlers.append(grpc.method_handlers_generic_handler(service, {method: handler}))
    return handlers
