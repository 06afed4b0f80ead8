"""A value the rows cannot hold (a time past 2262-04-11T23:47:16.854775807Z, the latest a
nanosecond timestamp holds; a histogram count past 2**63 - 1) rejects only its span, log record
or data point, answered in partial_success naming the field and the value, and the other items
of the request are stored: over OTLP/HTTP in protobuf and in OTLP/JSON (read directly and the
general way), and over OTLP/gRPC."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.ingest.conftest import Receiver
from tests.ingest.test_otlp_grpc import call
from tests.ingest.test_otlp_http import JSON, PROTOBUF, post, rows_of

LATE = 2**64 - 1  # 0xFFFFFFFFFFFFFFFF
JUST_PAST = 2**63  # one nanosecond past the latest timestamp
LATEST = 2**63 - 1  # 2262-04-11T23:47:16.854775807Z: held
T = 1_700_000_000_000_000_000
PAST_2262 = (
    "which is past 2262-04-11T23:47:16.854775807Z, the latest a nanosecond timestamp holds "
    "(times are nanoseconds since 1970-01-01 UTC)"
)
PAST_INT64 = "more than 9223372036854775807, the largest count a row holds (int64)"


@dataclass
class Case:
    """A request of one item kept and one refused (the second), and the refusal's reason."""

    name: str
    signal: str
    request: Any
    reason: str


def spans(name: str, **bad: Any) -> ExportTraceServiceRequest:
    events = bad.pop("events", [])
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    ids = {"trace_id": b"\x01" * 16}
    # the latest time a row holds is kept
    scope.spans.add(name=f"kept {name}", span_id=b"\x02" * 8, start_time_unix_nano=T, **ids)
    scope.spans[0].end_time_unix_nano = LATEST
    refused = scope.spans.add(name=f"refused {name}", span_id=b"\x03" * 8, **ids, **bad)
    for time in events:
        refused.events.add(name="e", time_unix_nano=time)
    return request


def logs(name: str, **bad: Any) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.log_records.extend(
        [
            LogRecord(body=AnyValue(string_value=f"kept {name}"), time_unix_nano=T),
            LogRecord(body=AnyValue(string_value=f"refused {name}"), **bad),
        ]
    )
    return request


def metrics(name: str, kind: str, **bad: Any) -> ExportMetricsServiceRequest:
    """A metric ``name`` of type ``kind`` with a good data point and ``bad`` one."""
    exemplar_time = bad.pop("exemplar_time", None)
    sides = {side: bad.pop(side) for side in ("positive", "negative") if side in bad}
    request = ExportMetricsServiceRequest()
    metric: Metric = request.resource_metrics.add().scope_metrics.add().metrics.add(name=name)
    data = getattr(metric, kind)
    data.data_points.add(time_unix_nano=T)
    point = data.data_points.add(**bad)
    if exemplar_time is not None:
        point.exemplars.add(time_unix_nano=exemplar_time, as_int=1)
    for side, counts in sides.items():
        getattr(point, side).bucket_counts.extend(counts)
    return request


def where(signal: str, field: str) -> str:
    """The reason's beginning: the refused item (the second of its scope) and its field."""
    item = {
        "traces": "resource_spans[0].scope_spans[0].spans[1]",
        "logs": "resource_logs[0].scope_logs[0].log_records[1]",
        "metrics": "resource_metrics[0].scope_metrics[0].metrics[0].data_points[1]",
    }[signal]
    return f"{item}: {field}"


CASES = [
    Case(
        "span start",
        "traces",
        spans("span start", start_time_unix_nano=LATE, end_time_unix_nano=T),
        f"{where('traces', 'start_time_unix_nano')} is 18446744073709551615, {PAST_2262}",
    ),
    Case(  # start after end: the start is named
        "span start after end",
        "traces",
        spans("span start after end", start_time_unix_nano=JUST_PAST, end_time_unix_nano=1),
        f"{where('traces', 'start_time_unix_nano')} is 9223372036854775808, {PAST_2262}",
    ),
    Case(
        "span end",
        "traces",
        spans("span end", start_time_unix_nano=T, end_time_unix_nano=JUST_PAST),
        f"{where('traces', 'end_time_unix_nano')} is 9223372036854775808, {PAST_2262}",
    ),
    Case(
        "event time",
        "traces",
        spans("event time", start_time_unix_nano=T, events=[T, LATE]),
        f"{where('traces', 'events[1].time_unix_nano')} is 18446744073709551615, {PAST_2262}",
    ),
    Case(
        "log time",
        "logs",
        logs("log time", time_unix_nano=LATE),
        f"{where('logs', 'time_unix_nano')} is 18446744073709551615, {PAST_2262}",
    ),
    Case(
        "observed time",
        "logs",
        logs("observed time", time_unix_nano=T, observed_time_unix_nano=JUST_PAST),
        f"{where('logs', 'observed_time_unix_nano')} is 9223372036854775808, {PAST_2262}",
    ),
    Case(
        "gauge start",
        "metrics",
        metrics("gauge start", "gauge", start_time_unix_nano=LATE, as_int=1),
        f"{where('metrics', 'start_time_unix_nano')} is 18446744073709551615, {PAST_2262}",
    ),
    Case(
        "sum time",
        "metrics",
        metrics("sum time", "sum", time_unix_nano=JUST_PAST, as_double=1.0),
        f"{where('metrics', 'time_unix_nano')} is 9223372036854775808, {PAST_2262}",
    ),
    Case(
        "exemplar time",
        "metrics",
        metrics("exemplar time", "histogram", time_unix_nano=T, exemplar_time=LATE),
        f"{where('metrics', 'exemplars[0].time_unix_nano')} is 18446744073709551615, {PAST_2262}",
    ),
    Case(
        "histogram count",
        "metrics",
        metrics("histogram count", "histogram", time_unix_nano=T, count=LATE),
        f"{where('metrics', 'count')} is 18446744073709551615, {PAST_INT64}",
    ),
    Case(
        "bucket count",
        "metrics",
        metrics("bucket count", "histogram", count=1, bucket_counts=[1, JUST_PAST]),
        f"{where('metrics', 'bucket_counts[1]')} is 9223372036854775808, {PAST_INT64}",
    ),
    Case(
        "zero count",
        "metrics",
        metrics("zero count", "exponential_histogram", zero_count=LATE),
        f"{where('metrics', 'zero_count')} is 18446744073709551615, {PAST_INT64}",
    ),
    Case(
        "negative bucket count",
        "metrics",
        metrics("negative bucket count", "exponential_histogram", negative=[2, LATE]),
        f"{where('metrics', 'negative.bucket_counts[1]')} is 18446744073709551615, {PAST_INT64}",
    ),
    Case(
        "summary count",
        "metrics",
        metrics("summary count", "summary", count=JUST_PAST),
        f"{where('metrics', 'count')} is 9223372036854775808, {PAST_INT64}",
    ),
]

_ID_KEYS = frozenset({"traceId", "spanId", "trace_id", "span_id"})


def otlp_json(request: Any, field_names: bool) -> bytes:
    """``request`` as OTLP/JSON: lowerCamelCase keys (or the proto field names, which only the
    general way reads), hex ids, 64-bit integers as strings."""
    doc = json_format.MessageToDict(request, preserving_proto_field_name=field_names)

    def hex_ids(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                hex_ids(item)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key in _ID_KEYS:
                    node[key] = base64.b64decode(value).hex()
                else:
                    hex_ids(value)

    hex_ids(doc)
    return orjson.dumps(doc)


_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}
_GRPC = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
_RESPONSES: dict[str, Any] = {
    "traces": ExportTraceServiceResponse,
    "metrics": ExportMetricsServiceResponse,
    "logs": ExportLogsServiceResponse,
}
_REJECTED = {
    "traces": "rejected_spans",
    "metrics": "rejected_data_points",
    "logs": "rejected_log_records",
}


def send(rec: Receiver, transport: str, case: Case) -> tuple[int, str]:
    """Send ``case``'s request; the partial_success of the answer: rejected, error_message."""
    if transport == "grpc":
        reply = _RESPONSES[case.signal].FromString(
            call(rec, _GRPC[case.signal], case.request.SerializeToString())
        )
    elif transport == "http-protobuf":
        response = post(rec, _PATHS[case.signal], case.request.SerializeToString(), PROTOBUF)
        assert response.status_code == 200, response.content
        reply = _RESPONSES[case.signal].FromString(response.content)
    else:
        body = otlp_json(case.request, field_names=transport == "http-json-field-names")
        response = post(rec, _PATHS[case.signal], body, JSON)
        assert response.status_code == 200, response.text
        reply = json_format.Parse(response.content, _RESPONSES[case.signal]())
    partial = reply.partial_success
    return getattr(partial, _REJECTED[case.signal]), partial.error_message


def kept(table: Any, signal: str) -> list[str]:
    """What names each stored item: the span name, the log body, the metric name."""
    column = {"traces": "span_name", "logs": "body", "metrics": "metric_name"}[signal]
    return sorted(str(row[column]) for row in rows_of(table, signal))


@pytest.mark.parametrize(
    "transport", ["http-protobuf", "http-json", "http-json-field-names", "grpc"]
)
def test_a_value_past_int64_rejects_only_its_item_naming_the_field_and_the_value(
    receiver: Callable[..., Receiver], transport: str
) -> None:
    rec = receiver()
    for case in CASES:
        rejected, message = send(rec, transport, case)
        assert (rejected, message) == (1, f"1 rejected: {case.reason}"), case.name
    table = rec.stop()
    assert kept(table, "traces") == sorted(f"kept {c.name}" for c in CASES if c.signal == "traces")
    assert kept(table, "logs") == sorted(f"kept {c.name}" for c in CASES if c.signal == "logs")
    assert kept(table, "metrics") == sorted(c.name for c in CASES if c.signal == "metrics")
    assert {r["end_time"] for r in rows_of(table, "traces")} == {LATEST}


def test_every_item_past_int64_is_counted_and_the_first_reasons_named(
    receiver: Callable[..., Receiver],
) -> None:
    """Rejections among many items: each counted, the first three named, the rest kept."""
    rec = receiver()
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(10):
        scope.spans.append(
            Span(
                trace_id=b"\x01" * 16,
                span_id=bytes([2, i + 1]) * 4,
                name=f"span {i}",
                start_time_unix_nano=LATE - i if i % 2 else T + i,
            )
        )
    scope.spans[0].end_time_unix_nano = T - 1  # ends before it starts: kept as it is
    rejected, message = send(rec, "http-protobuf", Case("many", "traces", request, ""))
    assert rejected == 5
    assert message.startswith(f"5 rejected: {where('traces', 'start_time_unix_nano')} is ")
    assert message.endswith("; and 2 more")
    table = rec.stop()
    assert kept(table, "traces") == [f"span {i}" for i in range(0, 10, 2)]
    assert rows_of(table, "traces")[0]["duration_ns"] == -1
