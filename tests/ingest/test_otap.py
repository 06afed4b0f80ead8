"""OTAP (OpenTelemetry Arrow) on the OTLP/gRPC port: spans, metrics and logs made by the
OpenTelemetry SDK, encoded as OTAP streams and as OTLP, reach the Parquet sink as identical
rows; every BatchArrowRecords is answered with its batch_id and status code; bad payloads are
refused with a message and the stream and receiver go on."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, StatusCode

from quiver.ingest.otap.encode import OtapEncoder
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2
from tests.ingest.certs import make_pki
from tests.ingest.conftest import Receiver, plain
from tests.ingest.test_otlp_http import span, trace_request

TRACES = "/opentelemetry.proto.experimental.arrow.v1.ArrowTracesService/ArrowTraces"
LOGS = "/opentelemetry.proto.experimental.arrow.v1.ArrowLogsService/ArrowLogs"
METRICS = "/opentelemetry.proto.experimental.arrow.v1.ArrowMetricsService/ArrowMetrics"
OTLP_TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
OTLP_LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
OTLP_METRICS = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
_T = otap_pb2.ArrowPayloadType
_S = otap_pb2.StatusCode


def stream(
    rec: Receiver,
    bars: Iterable[otap_pb2.BatchArrowRecords | bytes],
    method: str = TRACES,
    metadata: tuple[tuple[str, str], ...] = (),
) -> list[otap_pb2.BatchStatus]:
    """Send ``bars`` on one OTAP stream; the BatchStatus answers."""
    bodies = [b if isinstance(b, bytes) else b.SerializeToString() for b in bars]
    with grpc.insecure_channel(f"127.0.0.1:{rec.grpc_port}") as channel:
        call = channel.stream_stream(method)
        replies = call(iter(bodies), timeout=30, metadata=metadata)
        return [otap_pb2.BatchStatus.FromString(r) for r in replies]


def sdk_traces() -> ExportTraceServiceRequest:
    """Spans of two traces made by the SDK: attributes of every kind, events with
    attributes, a link, an error status, nested spans."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "deployment.environment": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.tracer", "1.2.3")
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as root:
        root.set_attributes(
            {"http.method": "GET", "http.status_code": 200, "ratio": 0.25, "cached": True}
        )
        root.set_attribute("tags", ["a", "b"])
        root.add_event("cart loaded", {"items": 3, "note": "x"})
        root.add_event("priced")
        for i in range(4):
            with tracer.start_as_current_span(f"db query {i}", kind=SpanKind.CLIENT) as child:
                child.set_attribute("db.rows", i)
                child.set_attribute("db.statement", "select 1" if i % 2 else "select 2")
                if i == 3:
                    child.set_status(StatusCode.ERROR, "timeout")
    linked = root.get_span_context()
    with tracer.start_as_current_span(
        "background", links=[Link(linked, {"reason": "follows"})]
    ) as other:
        other.set_attribute("ratio", 1.0)
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def sdk_logs() -> ExportLogsServiceRequest:
    from opentelemetry._logs import SeverityNumber

    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("shop.logger")
    logger.emit(
        body="disk almost full",
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        attributes={"disk": "/var", "free": 0.5},
    )
    logger.emit(body={"order": 7, "ok": False}, severity_number=SeverityNumber.ERROR)
    logger.emit(body=42, attributes={"n": 1})
    provider.shutdown()
    return encode_logs(exporter.get_finished_logs())


def canonical(table: pa.Table) -> list[dict[str, Any]]:
    """Rows with attribute maps as dicts (an OTAP sender may order attributes its own way),
    sorted by span id / time."""

    def unmap(value: Any) -> Any:
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            return dict(value)
        if isinstance(value, list):
            return [unmap(v) for v in value]
        if isinstance(value, dict):
            return {k: unmap(v) for k, v in value.items()}
        return value

    rows = [unmap(r) for r in plain(table).to_pylist()]
    for row in rows:
        for name in ("attributes", "resource_attributes", "scope_attributes"):
            row[name] = dict(row[name] or [])
    return sorted(rows, key=lambda r: (r["span_id"] or "", r["time"] or 0, r["body"] or ""))


def test_sdk_spans_through_otap_and_otlp_make_identical_parquet_rows(
    receiver: Callable[..., Receiver],
) -> None:
    request = sdk_traces()
    via_otlp, via_otap = receiver(arrow={}), receiver(arrow={})
    with grpc.insecure_channel(f"127.0.0.1:{via_otlp.grpc_port}") as channel:
        channel.unary_unary(OTLP_TRACES)(request.SerializeToString(), timeout=10)
    encoder = OtapEncoder()
    answers = stream(via_otap, [encoder.traces(request)])
    assert [(a.batch_id, a.status_code) for a in answers] == [(0, _S.OK)]
    otlp_rows, otap_rows = canonical(via_otlp.stop()), canonical(via_otap.stop())
    assert len(otap_rows) == 6
    assert otap_rows == otlp_rows
    error = next(r for r in otap_rows if r["status_code"] == "error")
    assert error["status_message"] == "timeout"
    root = next(r for r in otap_rows if r["span_name"] == "GET /cart")
    assert root["attributes"]["tags"] == '["a","b"]'
    assert root["attributes"]["ratio"] == "0.25"
    assert [e["name"] for e in root["events"]] == ["cart loaded", "priced"]
    background = next(r for r in otap_rows if r["span_name"] == "background")
    assert background["links"][0]["span_id"] == root["span_id"]


def test_sdk_logs_through_otap_and_otlp_make_identical_parquet_rows(
    receiver: Callable[..., Receiver],
) -> None:
    request = sdk_logs()
    via_otlp, via_otap = receiver(arrow={}), receiver(arrow={})
    with grpc.insecure_channel(f"127.0.0.1:{via_otlp.grpc_port}") as channel:
        channel.unary_unary(OTLP_LOGS)(request.SerializeToString(), timeout=10)
    answers = stream(via_otap, [OtapEncoder().logs(request)], LOGS)
    assert [a.status_code for a in answers] == [_S.OK]
    otlp_rows, otap_rows = canonical(via_otlp.stop()), canonical(via_otap.stop())
    assert len(otap_rows) == 3
    assert otap_rows == otlp_rows
    assert {r["body"] for r in otap_rows} == {"disk almost full", '{"order":7,"ok":false}', "42"}


def test_later_batches_of_a_stream_reuse_the_schema_sent_once(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={})
    encoder = OtapEncoder()
    bars = [
        encoder.traces(trace_request(span(f"s{i}", span_id=bytes([i + 1]) * 8))) for i in range(5)
    ]
    first, later = bars[0].arrow_payloads[0].record, bars[1].arrow_payloads[0].record
    assert ipc.MessageReader.open_stream(pa.py_buffer(first)).read_next_message().type == "schema"
    assert ipc.MessageReader.open_stream(pa.py_buffer(later)).read_next_message().type != "schema"
    answers = stream(rec, bars)
    assert [(a.batch_id, a.status_code) for a in answers] == [(i, _S.OK) for i in range(5)]
    assert sorted(plain(rec.stop()).column("span_name").to_pylist()) == [f"s{i}" for i in range(5)]


def good_bar(batch_id: int = 0, name: str = "good") -> otap_pb2.BatchArrowRecords:
    bar = OtapEncoder().traces(trace_request(span(name)))
    bar.batch_id = batch_id
    return bar


def test_bad_ipc_bytes_are_invalid_argument_and_the_stream_goes_on(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={})
    bad = otap_pb2.BatchArrowRecords(batch_id=7)
    bad.arrow_payloads.add(schema_id="x", type=_T.SPANS, record=b"\xff\xff\xff\xff\x10\x00garbage")
    truncated = good_bar(8)
    payload = truncated.arrow_payloads[0]
    payload.record = payload.record[: len(payload.record) // 2]
    answers = stream(rec, [bad, truncated, good_bar(9)])
    assert [(a.batch_id, a.status_code) for a in answers] == [
        (7, _S.INVALID_ARGUMENT),
        (8, _S.INVALID_ARGUMENT),
        (9, _S.OK),
    ]
    assert "SPANS: the Arrow IPC data cannot be read" in answers[0].status_message
    assert "arrow_payloads[0]" in answers[1].status_message
    assert plain(rec.stop()).column("span_name").to_pylist() == ["good"]


END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


def test_a_payload_ending_with_the_end_of_stream_marker_ends_its_ipc_stream(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={})
    encoder = OtapEncoder()
    ending = encoder.traces(trace_request(span("ending")))
    for payload in ending.arrow_payloads:
        payload.record += END_OF_STREAM  # what closing an IPC stream writer adds
    without_schema = encoder.traces(trace_request(span("refused")))
    without_schema.batch_id = 1
    anew = good_bar(2, "anew")  # its payloads begin with their Schema messages
    answers = stream(rec, [ending, without_schema, anew])
    assert sorted((a.batch_id, a.status_code) for a in answers) == [
        (0, _S.OK),
        (1, _S.INVALID_ARGUMENT),
        (2, _S.OK),
    ]
    [refused] = [a for a in answers if a.batch_id == 1]
    assert refused.status_message == (
        "arrow_payloads[0]: SPANS: its IPC stream ended with an end-of-stream marker; a new one "
        "must begin with a Schema message"
    )
    rows = plain(rec.stop()).column("span_name").to_pylist()
    assert sorted(rows) == ["anew", "ending"]


def test_bytes_after_an_end_of_stream_marker_are_invalid_argument_never_dropped(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={})
    bar = good_bar(5, "hidden")
    for payload in bar.arrow_payloads:
        payload.record = END_OF_STREAM + payload.record
    [answer] = stream(rec, [bar])
    assert answer.status_code == _S.INVALID_ARGUMENT
    assert "bytes after the IPC end-of-stream marker" in answer.status_message
    rec.stop()


def test_delta_dictionaries_past_max_stream_bytes_are_refused_and_a_new_ipc_stream_goes_on(
    receiver: Callable[..., Receiver],
) -> None:
    """Delta dictionaries add up for the life of an IPC stream: a sender adding to them
    without end is refused once they pass arrow.max_stream_bytes, rather than filling the
    receiver's memory."""
    rec = receiver(arrow={"max_stream_bytes": 1 << 20})
    first = good_bar().arrow_payloads[0]
    spans = ipc.open_stream(first.record).read_all().combine_chunks().to_batches()[0]
    sink = io.BytesIO()
    writer = ipc.new_stream(
        sink, spans.schema, options=ipc.IpcWriteOptions(emit_dictionary_deltas=True)
    )
    names: list[str] = []
    bars = []
    for i in range(8):  # 200 KB of new span names a batch
        names += [f"{i}.{j}." + "n" * 2000 for j in range(100)]
        name = pa.DictionaryArray.from_arrays(pa.array([len(names) - 1], pa.uint16()), names)
        writer.write_batch(spans.set_column(spans.schema.get_field_index("name"), "name", name))
        bar = otap_pb2.BatchArrowRecords(batch_id=i)
        bar.arrow_payloads.add(schema_id="deltas", type=_T.SPANS, record=sink.getvalue())
        sink.seek(0)
        sink.truncate()
        bars.append(bar)
    answers = {a.batch_id: a for a in stream(rec, [*bars, good_bar(8, "anew")])}
    codes = [answers[i].status_code for i in range(9)]
    assert codes == [_S.OK] * 5 + [_S.INVALID_ARGUMENT] * 3 + [_S.OK], codes
    assert "over the 1,048,576 of arrow.max_stream_bytes" in answers[5].status_message
    assert len(plain(rec.stop()).column("span_name").to_pylist()) == 6


def test_an_unknown_or_foreign_payload_type_is_invalid_argument(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={})
    unknown = good_bar(1)
    unknown.arrow_payloads.add(schema_id="z", type=99, record=b"x")
    foreign = good_bar(2)
    foreign.arrow_payloads.add(schema_id="z", type=_T.LOG_ATTRS, record=b"x")
    answers = stream(rec, [unknown, foreign, good_bar(3)])
    assert [a.status_code for a in answers] == [_S.INVALID_ARGUMENT, _S.INVALID_ARGUMENT, _S.OK]
    assert "payload type 99 is not a payload type of traces" in answers[0].status_message
    assert "LOG_ATTRS is not a payload type of traces" in answers[1].status_message
    assert plain(rec.stop()).num_rows == 1


def ipc_stream(batch: pa.RecordBatch) -> bytes:
    sink = io.BytesIO()
    with ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def test_attributes_whose_parent_id_matches_no_span_are_invalid_argument(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={})
    bar = good_bar(4)
    attrs = pa.record_batch(
        {
            "parent_id": pa.array([0, 41], pa.uint16()),
            "key": pa.array(["a", "b"]),
            "type": pa.array([1, 1], pa.uint8()),
            "str": pa.array(["x", "y"]),
        }
    )
    for payload in bar.arrow_payloads:
        if payload.type == _T.SPAN_ATTRS:
            bar.arrow_payloads.remove(payload)
    bar.arrow_payloads.add(schema_id="a", type=_T.SPAN_ATTRS, record=ipc_stream(attrs))
    answers = stream(rec, [bar, good_bar(5, "after")])
    assert answers[0].status_code == _S.INVALID_ARGUMENT
    assert "SPAN_ATTRS row 1: parent_id 41 matches no SPANS id" in answers[0].status_message
    assert answers[1].status_code == _S.OK
    assert plain(rec.stop()).column("span_name").to_pylist() == ["after"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"\x81" * 3000 + b"\x00", id="arrays"),
        pytest.param(b"\xa1\x61k" * 3000 + b"\x00", id="maps"),
        pytest.param(b"\xc0" * 3000 + b"\x00", id="tags"),
        pytest.param(b"\x9f" * 3000 + b"\x00", id="indefinite-arrays"),
    ],
)
def test_a_cbor_value_nested_too_deeply_is_invalid_argument(
    receiver: Callable[..., Receiver], value: bytes
) -> None:
    """An attribute value of type array or map is CBOR; one nested thousands of levels deep
    is the sender's mistake, named as such, not an internal error of the receiver."""
    rec = receiver(arrow={})
    bar = good_bar(4)
    attrs = pa.record_batch(
        {
            "parent_id": pa.array([0], pa.uint16()),
            "key": pa.array(["deep"]),
            "type": pa.array([6], pa.uint8()),  # array: its value is CBOR in "ser"
            "ser": pa.array([value], pa.binary()),
        }
    )
    for payload in bar.arrow_payloads:
        if payload.type == _T.SPAN_ATTRS:
            bar.arrow_payloads.remove(payload)
    bar.arrow_payloads.add(schema_id="a", type=_T.SPAN_ATTRS, record=ipc_stream(attrs))
    answers = stream(rec, [bar, good_bar(5, "after")])
    assert answers[0].status_code == _S.INVALID_ARGUMENT, answers[0].status_message
    assert "SPAN_ATTRS.ser: not valid CBOR (arrays, maps and tags nested more than 100" in (
        answers[0].status_message
    )
    assert answers[1].status_code == _S.OK
    assert plain(rec.stop()).column("span_name").to_pylist() == ["after"]


def test_an_unknown_schema_id_is_shown_by_its_beginning(receiver: Callable[..., Receiver]) -> None:
    rec = receiver(arrow={})
    encoder = OtapEncoder()
    encoder.traces(trace_request(span("first")))  # later batches of the stream have no schema
    later = encoder.traces(trace_request(span("later")))
    later.arrow_payloads[0].schema_id = "s" * 1_000_000
    [answer] = stream(rec, [later])
    assert answer.status_code == _S.INVALID_ARGUMENT
    assert "(schema_id '" + "s" * 40 + "'… was not seen" in answer.status_message
    assert len(answer.status_message) < 1_000
    rec.stop()


def test_a_required_column_missing_is_named(receiver: Callable[..., Receiver]) -> None:
    rec = receiver(arrow={})
    spans = pa.record_batch({"name": pa.array(["no ids"])})
    bar = otap_pb2.BatchArrowRecords(batch_id=1)
    bar.arrow_payloads.add(schema_id="s", type=_T.SPANS, record=ipc_stream(spans))
    [answer] = stream(rec, [bar])
    assert answer.status_code == _S.INVALID_ARGUMENT
    assert "SPANS: the required column 'trace_id' is missing" in answer.status_message
    rec.stop()


def test_a_message_that_is_not_a_batch_ends_the_stream_but_not_the_receiver(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={})
    with pytest.raises(grpc.RpcError) as caught:
        stream(rec, [b"\xff\xff\xff not protobuf"])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a BatchArrowRecords" in (caught.value.details() or "")
    assert [a.status_code for a in stream(rec, [good_bar()])] == [_S.OK]
    assert plain(rec.stop()).num_rows == 1


def test_a_stream_without_credentials_is_unauthenticated(receiver: Callable[..., Receiver]) -> None:
    rec = receiver(arrow={}, auth={"api_keys": ["k1"]})
    with pytest.raises(grpc.RpcError) as caught:
        stream(rec, [good_bar()])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    answers = stream(rec, [good_bar()], metadata=(("x-api-key", "k1"),))
    assert [a.status_code for a in answers] == [_S.OK]
    assert plain(rec.stop()).num_rows == 1


def test_without_the_arrow_option_otap_is_unimplemented(receiver: Callable[..., Receiver]) -> None:
    rec = receiver()
    with pytest.raises(grpc.RpcError) as caught:
        stream(rec, [good_bar()])
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    rec.stop()


def test_a_full_spool_is_resource_exhausted_per_batch(receiver: Callable[..., Receiver]) -> None:
    rec = receiver(arrow={}, spool={"max_bytes": 1})
    [taken] = stream(rec, [good_bar(1, "taken")])
    [refused] = stream(rec, [good_bar(2, "refused")])
    assert (taken.status_code, refused.status_code) == (_S.OK, _S.RESOURCE_EXHAUSTED)
    assert refused.batch_id == 2
    assert "retry later" in refused.status_message
    assert plain(rec.stop()).column("span_name").to_pylist() == ["taken"]


def sdk_metrics() -> ExportMetricsServiceRequest:
    """A counter, an up-down counter, a histogram and a gauge made by the SDK, with
    attributes."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"service.name": "checkout"})
    )
    meter = provider.get_meter("shop.meter", "0.1")
    orders = meter.create_counter("orders", unit="1", description="orders placed")
    orders.add(3, {"region": "eu"})
    orders.add(4, {"region": "us"})
    meter.create_up_down_counter("queue.depth").add(-2)
    latency = meter.create_histogram("latency", unit="ms")
    for value in (5, 20, 300):
        latency.record(value, {"route": "/cart"})
    meter.create_gauge("temperature").set(2.5, {"room": "a"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return encode_metrics(data)


def test_sdk_metrics_through_otap_and_otlp_make_identical_parquet_rows(
    receiver: Callable[..., Receiver],
) -> None:
    request = sdk_metrics()
    via_otlp, via_otap = receiver(arrow={}), receiver(arrow={})
    with grpc.insecure_channel(f"127.0.0.1:{via_otlp.grpc_port}") as channel:
        channel.unary_unary(OTLP_METRICS)(request.SerializeToString(), timeout=10)
    answers = stream(via_otap, [OtapEncoder().metrics(request)], METRICS)
    assert [a.status_code for a in answers] == [_S.OK]

    def rows(table: pa.Table) -> list[dict[str, Any]]:
        return sorted(
            canonical(table), key=lambda r: (r["metric_name"], sorted(r["attributes"].items()))
        )

    otlp_rows, otap_rows = rows(via_otlp.stop()), rows(via_otap.stop())
    assert len(otap_rows) == 5
    assert otap_rows == otlp_rows
    latency = next(r for r in otap_rows if r["metric_name"] == "latency")
    assert (latency["metric_type"], latency["count"], latency["sum"]) == ("histogram", 3, 325.0)
    depth = next(r for r in otap_rows if r["metric_name"] == "queue.depth")
    assert (depth["value_int"], depth["is_monotonic"]) == (-2, False)


def test_data_points_of_a_metric_that_is_not_there_are_invalid_argument(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={})
    bar = OtapEncoder().metrics(sdk_metrics())
    for payload in bar.arrow_payloads:
        if payload.type == _T.UNIVARIATE_METRICS:
            bar.arrow_payloads.remove(payload)
            break
    [answer] = stream(rec, [bar], METRICS)
    assert answer.status_code == _S.INVALID_ARGUMENT
    assert "without a UNIVARIATE_METRICS payload" in answer.status_message
    rec.stop()


def test_arrow_without_a_grpc_listener_is_a_config_error() -> None:
    from pydantic import ValidationError

    from quiver.ingest.otlp.config import OtlpSourceConfig

    with pytest.raises(ValidationError, match="arrow \\(OTAP\\) is served on the gRPC listener"):
        OtlpSourceConfig.model_validate({"http": {}, "arrow": {}})


def test_randomly_corrupted_payloads_are_refused_with_a_message_never_a_crash(
    receiver: Callable[..., Receiver],
) -> None:
    import random

    request = sdk_traces()
    rng = random.Random(13)
    bars = []
    for batch_id in range(150):
        bar = OtapEncoder().traces(request)
        bar.batch_id = batch_id
        payload = bar.arrow_payloads[rng.randrange(len(bar.arrow_payloads))]
        record = bytearray(payload.record)
        for _ in range(rng.randint(1, 4)):
            record[rng.randrange(len(record))] = rng.randrange(256)
        payload.record = bytes(record)
        bars.append(bar)
    rec = receiver(arrow={})
    answers = stream(rec, bars)
    assert sorted(a.batch_id for a in answers) == list(range(150))
    codes = {a.status_code for a in answers}
    assert codes <= {_S.OK, _S.INVALID_ARGUMENT}
    assert _S.INVALID_ARGUMENT in codes
    assert all(a.status_message for a in answers if a.status_code != _S.OK)
    assert [a.status_code for a in stream(rec, [good_bar(500, "after")])] == [_S.OK]
    assert "after" in plain(rec.stop()).column("span_name").to_pylist()


def test_otap_over_tls_with_a_bearer_token(
    receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    rec = receiver(grpc={"tls": tls}, arrow={}, auth={"bearer_tokens": ["t-1"]})
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    body = good_bar(3, "over tls").SerializeToString()
    with grpc.secure_channel(f"localhost:{rec.grpc_port}", credentials) as channel:
        call = channel.stream_stream(TRACES)
        replies = list(call(iter([body]), timeout=30, metadata=(("authorization", "Bearer t-1"),)))
    [status] = [otap_pb2.BatchStatus.FromString(r) for r in replies]
    assert (status.batch_id, status.status_code) == (3, _S.OK)
    with pytest.raises(grpc.RpcError):
        stream(rec, [good_bar()])  # plaintext to a TLS port
    assert plain(rec.stop()).column("span_name").to_pylist() == ["over tls"]


def test_a_stop_with_a_stream_still_open_keeps_what_was_acknowledged(
    receiver: Callable[..., Receiver],
) -> None:
    import threading

    rec = receiver(arrow={}, stop_seconds=1)
    release = threading.Event()

    def bodies() -> Iterable[bytes]:
        yield good_bar(1, "acknowledged").SerializeToString()
        release.wait(30)  # the client keeps its stream open

    with grpc.insecure_channel(f"127.0.0.1:{rec.grpc_port}") as channel:
        replies = channel.stream_stream(TRACES)(bodies(), timeout=60)
        first = otap_pb2.BatchStatus.FromString(next(replies))
        assert (first.batch_id, first.status_code) == (1, _S.OK)
        table = rec.stop()  # the open stream is cut after stop_seconds
        release.set()
    assert table.column("span_name").to_pylist() == ["acknowledged"]


def test_quasi_delta_parent_ids_follow_equal_keys_even_through_duplicate_dictionary_entries() -> (
    None
):
    from quiver.ingest.otap.service import decode_batch
    from quiver.ingest.otap.streams import IpcStreams

    spans = pa.record_batch(
        {
            "id": pa.array([0, 1, 1], pa.uint16()),  # delta: ids 0, 1, 2
            "start_time_unix_nano": pa.array([1, 2, 3], pa.timestamp("ns")),
            "trace_id": pa.array([b"\x01" * 16] * 3, pa.binary(16)),
            "span_id": pa.array([bytes([i + 1]) * 8 for i in range(3)], pa.binary(8)),
            "name": pa.array(["a", "b", "c"]),
        }
    )
    keys = pa.DictionaryArray.from_arrays(
        pa.array([0, 1, 0], pa.uint8()), pa.array(["k", "k"])
    )  # one key written as two dictionary entries
    attrs = pa.record_batch(
        {
            "parent_id": pa.array([0, 1, 1], pa.uint16()),  # quasi-delta: spans 0, 1, 2
            "key": keys,
            "type": pa.array([1, 1, 1], pa.uint8()),
            "str": pa.array(["v", "v", "v"]),
        }
    )
    bar = otap_pb2.BatchArrowRecords(batch_id=1)
    bar.arrow_payloads.add(schema_id="s", type=_T.SPANS, record=ipc_stream(spans))
    bar.arrow_payloads.add(schema_id="a", type=_T.SPAN_ATTRS, record=ipc_stream(attrs))
    batch = decode_batch(IpcStreams("traces"), bar)
    assert batch is not None
    assert batch.column("attributes").to_pylist() == [[("k", "v")]] * 3


def test_an_id_column_marked_plain_is_taken_as_it_is() -> None:
    from quiver.ingest.otap.service import decode_batch
    from quiver.ingest.otap.streams import IpcStreams

    spans = pa.record_batch(
        {
            "id": pa.array([0, 1], pa.uint16()),
            "start_time_unix_nano": pa.array([1, 2], pa.timestamp("ns")),
            "trace_id": pa.array([b"\x01" * 16] * 2, pa.binary(16)),
            "span_id": pa.array([b"\x01" * 8, b"\x02" * 8], pa.binary(8)),
            "name": pa.array(["a", "b"]),
        }
    )
    plain_ids = pa.field("parent_id", pa.uint16(), metadata={"encoding": "plain"})
    attrs = pa.RecordBatch.from_arrays(
        [
            pa.array([1, 1], pa.uint16()),  # both rows belong to span 1 (no deltas)
            pa.array(["k", "k"]),
            pa.array([1, 1], pa.uint8()),
            pa.array(["x", "x"]),
        ],
        schema=pa.schema(
            [plain_ids, ("key", pa.string()), ("type", pa.uint8()), ("str", pa.string())]
        ),
    )
    bar = otap_pb2.BatchArrowRecords(batch_id=1)
    bar.arrow_payloads.add(schema_id="s", type=_T.SPANS, record=ipc_stream(spans))
    bar.arrow_payloads.add(schema_id="a", type=_T.SPAN_ATTRS, record=ipc_stream(attrs))
    batch = decode_batch(IpcStreams("traces"), bar)
    assert batch is not None
    assert batch.column("attributes").to_pylist() == [[], [("k", "x"), ("k", "x")]]


def test_a_span_with_a_time_past_2262_is_left_out_and_named_in_an_ok_status(
    receiver: Callable[..., Receiver],
) -> None:
    """OTLP's unsigned 0xFFFFFFFFFFFFFFFF comes as the Timestamp -1 from a sender that casts it
    (the Go implementation does): that span alone is left out, the batch answered OK with the
    reason, and the other spans stored, as OTLP's partial_success does."""
    rec = receiver(arrow={})
    spans = pa.record_batch(
        {
            "start_time_unix_nano": pa.array([1_700_000_000_000_000_000, -1], pa.timestamp("ns")),
            "trace_id": pa.array([b"\x01" * 16] * 2, pa.binary(16)),
            "span_id": pa.array([b"\x02" * 8, b"\x03" * 8], pa.binary(8)),
            "name": pa.array(["kept", "late"]),
        }
    )
    bar = otap_pb2.BatchArrowRecords(batch_id=3)
    bar.arrow_payloads.add(schema_id="s", type=_T.SPANS, record=ipc_stream(spans))
    [answer] = stream(rec, [bar])
    assert (answer.batch_id, answer.status_code) == (3, _S.OK)
    assert answer.status_message == (
        "1 rejected: SPANS row 1: start_time_unix_nano is -1 (18446744073709551615 as OTLP's "
        "unsigned time), which is past 2262-04-11T23:47:16.854775807Z, the latest a nanosecond "
        "timestamp holds (times are nanoseconds since 1970-01-01 UTC)"
    )
    assert plain(rec.stop()).column("span_name").to_pylist() == ["kept"]
