"""OTLP/gRPC: status codes as the specification names them, with their details, and the receiver
staying up after every bad call."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext

from tests.ingest.conftest import Receiver
from tests.ingest.sdk_clients import send_traces, span_exporter
from tests.ingest.test_otlp_http import rows_of, span, trace_request

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def call(
    rec: Receiver, method: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()
) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{rec.grpc_port}") as channel:
        export = channel.unary_unary(method)
        reply: bytes = export(body, timeout=10, metadata=metadata)
        return reply


def failure(
    rec: Receiver, method: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()
) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(rec, method, body, metadata)
    return caught.value


def details(error: grpc.RpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    raise AssertionError("no grpc-status-details-bin in the trailers")


def test_a_malformed_message_is_invalid_argument_with_a_bad_request_detail(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver()
    error = failure(rec, TRACES, b"\xff\xff\xff garbage")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid ExportTraceServiceRequest protobuf message" in error.details()
    assert "Content-Type" not in error.details()  # an HTTP header: no fix over gRPC
    [detail] = details(error).details
    assert detail.Is(error_details_pb2.BadRequest.DESCRIPTOR)
    ok = call(rec, TRACES, trace_request(span("after")).SerializeToString())
    assert not ExportTraceServiceResponse.FromString(ok).HasField("partial_success")
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["after"]


def test_rejected_spans_come_back_in_partial_success(receiver: Callable[..., Receiver]) -> None:
    rec = receiver()
    body = trace_request(span("good"), span("bad", trace_id=b"")).SerializeToString()
    reply = ExportTraceServiceResponse.FromString(call(rec, TRACES, body))
    assert reply.partial_success.rejected_spans == 1
    assert "trace_id is missing" in reply.partial_success.error_message
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["good"]


def test_a_full_spool_is_resource_exhausted_with_retry_info(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(spool={"max_bytes": 1}, retry_after_seconds=3)
    call(rec, TRACES, trace_request(span("taken")).SerializeToString())
    error = failure(rec, TRACES, trace_request(span("refused")).SerializeToString())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    [detail] = details(error).details
    info = error_details_pb2.RetryInfo()
    assert detail.Unpack(info)
    assert info.retry_delay.seconds == 3
    alone = dict(error.trailing_metadata() or ())["google.rpc.retryinfo-bin"]
    assert error_details_pb2.RetryInfo.FromString(alone) == info
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["taken"]


def test_the_sdk_exporter_waits_the_delay_the_receiver_asks_for(
    receiver: Callable[..., Receiver],
) -> None:
    """The Python SDK's gRPC exporter reads RetryInfo from its own trailer: told to wait 30
    seconds, longer than its 5 second timeout, it gives up at once, where its own backoff
    (1, 2 seconds ...) would have retried until the timeout."""
    rec = receiver(spool={"max_bytes": 1}, retry_after_seconds=30)
    call(rec, TRACES, trace_request(span("taken")).SerializeToString())
    exporter = span_exporter("grpc", rec.grpc_port, timeout=5)
    spans = [ReadableSpan("refused", context=SpanContext(1, 2, is_remote=False))]
    started = time.monotonic()
    assert exporter.export(spans) == SpanExportResult.FAILURE
    assert time.monotonic() - started < 2
    exporter.shutdown()
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["taken"]


def test_a_signal_not_taken_is_unimplemented(receiver: Callable[..., Receiver]) -> None:
    rec = receiver(signals=["traces"])
    error = failure(rec, LOGS, b"")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "does not take logs" in error.details()
    rec.stop()


def test_an_oversize_message_is_refused_and_the_receiver_stays_up(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(grpc={"max_message_bytes": 200})
    many = trace_request(*[span(f"s{i}", span_id=bytes([9] * 7 + [i + 1])) for i in range(20)])
    error = failure(rec, TRACES, many.SerializeToString())
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    call(rec, TRACES, trace_request(span("small")).SerializeToString())
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["small"]


def test_gzip_compressed_exports_of_both_sdk_exporters_are_read(
    receiver: Callable[..., Receiver],
) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression

    rec = receiver()
    by_grpc = send_traces("grpc", rec.grpc_port, compression=grpc.Compression.Gzip)
    by_http = send_traces("http", rec.http_port, compression=Compression.Gzip)
    written = {r["span_id"] for r in rows_of(rec.stop(), "traces")}
    assert written == {s.span_id for s in [*by_grpc, *by_http]}
