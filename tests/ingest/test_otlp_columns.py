"""Logs and metrics converted column by column (quiver.ingest.otlp.convert) give exactly the
rows and rejections of the row-by-row conversion they replaced (otlp_convert_reference): for
the specification's example payloads, real opentelemetry-sdk output and hostile inputs."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from quiver.ingest.arrow_layout import Signal
from quiver.ingest.otlp import convert
from quiver.ingest.otlp.decode import BadRequestError, decode_body

from . import otlp_convert_reference as reference
from .otlp_payloads import LOGS, METRICS


def same(signal: Signal, request: Any, real: Any = None) -> convert.Conversion:
    """``request`` converted now and as before (``real``: the request as the real message
    class, when ``request`` is a view of :mod:`quiver.ingest.otlp.wire`)."""
    new = convert.convert_request(signal, request)
    old = reference.convert_request(signal, request if real is None else real)
    assert (new.accepted, new.rejected, new.reasons) == (old.accepted, old.rejected, old.reasons)
    if old.batch is None:
        assert new.batch is None
    else:
        assert new.batch is not None
        assert new.batch.schema == old.batch.schema
        assert new.batch.to_pylist() == old.batch.to_pylist()
    return new


def kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))  # type: ignore[arg-type]


@pytest.mark.parametrize(("signal", "doc"), [("logs", LOGS), ("metrics", METRICS)])
def test_the_specification_examples_convert_to_the_same_rows(signal: Signal, doc: Any) -> None:
    out = same(signal, decode_body(signal, orjson.dumps(doc), json=True))
    assert out.accepted > 0 and out.batch is not None


def sdk_metrics() -> ExportMetricsServiceRequest:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create({"service.name": "shop"}), metric_readers=[reader]
    )
    meter = provider.get_meter("shop.meter", "2.0")
    counter = meter.create_counter("requests", unit="1", description="requests served")
    updown = meter.create_up_down_counter("queue")
    histogram = meter.create_histogram("latency", unit="ms")
    gauge = meter.create_gauge("temperature")
    for i in range(20):
        counter.add(i, {"route": f"/r{i % 3}", "ok": i % 2 == 0})
        updown.add(-i, {"q": "a"})
        histogram.record(i * 1.5, {"route": f"/r{i % 3}"})
        gauge.set(i / 4, {"room": f"{i % 2}"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    request: ExportMetricsServiceRequest = encode_metrics(data)
    return request


def sdk_logs() -> ExportLogsServiceRequest:
    from opentelemetry._logs import SeverityNumber

    exporter = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("shop.logger")
    for i in range(30):
        logger.emit(
            body="disk almost full" if i % 3 else {"order": i, "ok": False, "tags": [1, "x"]},
            severity_number=SeverityNumber.WARN if i % 2 else SeverityNumber.ERROR,
            severity_text="WARN" if i % 2 else "ERROR",
            attributes={"disk": "/var", "i": i, "f": i / 2, "b": b"\x00\xff"},
            event_name="order.failed" if i % 5 == 0 else None,
        )
    provider.shutdown()
    request: ExportLogsServiceRequest = encode_logs(exporter.get_finished_logs())
    return request


def test_opentelemetry_sdk_metrics_convert_to_the_same_rows() -> None:
    request = sdk_metrics()
    out = same("metrics", request)
    kinds = set(out.batch.column("metric_type").to_pylist()) if out.batch else set()
    assert kinds == {"sum", "histogram", "gauge"}
    # and the same through the protobuf bytes the exporter sends
    body = request.SerializeToString()
    same("metrics", decode_body("metrics", body, json=False), request.FromString(body))


def test_opentelemetry_sdk_logs_convert_to_the_same_rows() -> None:
    request = sdk_logs()
    out = same("logs", request)
    assert out.accepted == 30
    body = request.SerializeToString()
    same("logs", decode_body("logs", body, json=False), request.FromString(body))


def hostile_logs() -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for r in range(2):
        rl = request.resource_logs.add()
        rl.resource.attributes.extend([kv("service.name", string_value=f"s{r}")])
        for s in range(2):
            sl = rl.scope_logs.add()
            sl.scope.name = f"scope{s}"
            for i in range(12):
                log = sl.log_records.add(
                    time_unix_nano=i, severity_number=i % 25, severity_text="" if i % 2 else "x"
                )
                if i % 4 == 1:
                    log.trace_id = bytes([1] * 15)  # too short: rejected
                elif i % 4 == 2:
                    log.span_id = bytes([2] * 9)  # too long: rejected
                elif i % 4 == 3:
                    log.trace_id, log.span_id = bytes(16), bytes(8)  # zeros: kept for logs
                if i % 3 == 0:
                    log.body.kvlist_value.values.extend([kv("k", int_value=i)])
                elif i % 3 == 1:
                    log.body.bytes_value = b"\xff\x00"
                log.attributes.extend([kv(f"k{j}", int_value=j) for j in range(i * 50)])
    return request


def test_hostile_logs_give_the_same_rows_and_rejections() -> None:
    request = hostile_logs()
    out = same("logs", request)
    assert (out.rejected, out.accepted) == (2 * 2 * 6, 2 * 2 * 6)
    body = request.SerializeToString()  # the view that keeps attributes encoded: the same
    out = same("logs", decode_body("logs", body, json=False), request.FromString(body))
    assert out.rejected == 2 * 2 * 6 and out.accepted == 2 * 2 * 6


def hostile_metrics() -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    sm = rm.scope_metrics.add()
    nameless = sm.metrics.add()
    nameless.gauge.data_points.add(as_int=1)
    nameless.gauge.data_points.add(as_double=2.0)
    sm.metrics.add(name="empty")  # no data at all: no rows
    sm.metrics.add(name="no-points").sum.SetInParent()
    g = sm.metrics.add(name="g")
    p = g.gauge.data_points.add(time_unix_nano=5)  # neither int nor double
    p.attributes.extend([kv(f"a{j}", string_value="v" * j) for j in range(2000)])
    e = g.gauge.data_points.add(as_int=3).exemplars.add(as_double=1.0, trace_id=b"\x01" * 3)
    e.filtered_attributes.extend([kv("x", bool_value=True)])
    h = sm.metrics.add(name="h", unit="ms").histogram
    h.aggregation_temporality = 7  # a temporality the specification does not name
    h.data_points.add(count=3, bucket_counts=[1, 2], explicit_bounds=[1.0], min=0.5)
    x = sm.metrics.add(name="x").exponential_histogram
    xp = x.data_points.add(count=2, scale=-3, zero_count=1, sum=4.0)
    xp.positive.offset, xp.negative.offset = 2, -1
    xp.positive.bucket_counts.extend([1, 0, 1])
    q = sm.metrics.add(name="q").summary.data_points.add(count=4, sum=10.0)
    q.quantile_values.add(quantile=0.5, value=2.0)
    sm.metrics.add(name="s").sum.data_points.add(as_int=-(2**63))
    return request


def test_hostile_metrics_give_the_same_rows_and_rejections() -> None:
    out = same("metrics", hostile_metrics())  # the nameless metric's two points, and the
    assert out.rejected == 3 and out.accepted == 5  # point whose exemplar has a 3-byte id


def test_items_holding_values_past_int64_give_the_same_rows_and_rejections() -> None:
    """Times past 2262 and counts past int64 reject their items, beside items rejected for
    their ids (whose reason stays the id), in the real message and the encoded view alike."""
    logs = hostile_logs()
    for i, log in enumerate(logs.resource_logs[1].scope_logs[0].log_records):
        if i % 3 == 0:  # 0 and 3 have good ids; 6 and 9 are rejected for theirs already
            log.observed_time_unix_nano = 2**63 + i
    out = same("logs", logs)
    assert (out.rejected, out.accepted) == (2 * 2 * 6 + 2, 2 * 2 * 6 - 2)
    body = logs.SerializeToString()
    same("logs", decode_body("logs", body, json=False), logs.FromString(body))

    metrics = hostile_metrics()
    sm = metrics.resource_metrics[0].scope_metrics[0]
    sm.metrics[3].gauge.data_points.add(as_int=4, start_time_unix_nano=2**64 - 1)
    sm.metrics[4].histogram.data_points.add(count=1, bucket_counts=[1, 2**63])
    sm.metrics[5].exponential_histogram.data_points.add().negative.bucket_counts.extend([2**64 - 1])
    sm.metrics[6].summary.data_points.add(count=2**63)
    late = sm.metrics[7].sum.data_points.add(as_int=1)
    late.exemplars.add(as_int=1, time_unix_nano=2**63)
    out = same("metrics", metrics)
    assert (out.rejected, out.accepted) == (3 + 5, 5)


@pytest.mark.parametrize("signal", ["logs", "metrics"])
def test_an_empty_request_has_no_rows(signal: Signal) -> None:
    request = ExportLogsServiceRequest() if signal == "logs" else ExportMetricsServiceRequest()
    assert same(signal, request).batch is None


@pytest.mark.parametrize("text", [b"scope0", b"k10", b"/var", b"disk almost full"])
def test_invalid_utf8_is_refused_like_before(text: bytes) -> None:
    """Invalid UTF-8 in a scope name, an attribute key, an attribute value or a body: the
    real message refuses the request, and so does the view that keeps attributes encoded."""
    logs = hostile_logs()
    logs.resource_logs[0].scope_logs[0].log_records[0].attributes.extend(
        [kv("disk", string_value="/var")]
    )
    logs.resource_logs[0].scope_logs[0].log_records[1].body.string_value = "disk almost full"
    body = bytearray(logs.SerializeToString())
    body[body.index(text)] = 0xFF
    with pytest.raises(Exception):  # noqa: B017 - the real parser's own error
        ExportLogsServiceRequest.FromString(bytes(body))
    with pytest.raises(BadRequestError, match="not a valid ExportLogsServiceRequest"):
        convert.convert_request("logs", decode_body("logs", bytes(body), json=False))
