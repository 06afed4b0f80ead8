"""The OpenTelemetry SDK's own OTLP exporters (gRPC and HTTP) send traces, metrics and logs; the
Parquet sink holds one row per span, data point and log record with every field in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from tests.ingest.conftest import Receiver, plain
from tests.ingest.sdk_clients import Transport, send_logs, send_metrics, send_traces


def rows(table: pa.Table, signal: str) -> list[dict[str, Any]]:
    """The rows of one signal, times as integers of nanoseconds (nulls as None)."""
    return [r for r in plain(table).to_pylist() if r["signal"] == signal]


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_traces_metrics_and_logs_reach_the_sink_row_by_row(
    transport: Transport, receiver: Callable[..., Receiver]
) -> None:
    rec = receiver()
    port = rec.grpc_port if transport == "grpc" else rec.http_port
    sent = send_traces(transport, port)
    send_metrics(transport, port)
    send_logs(transport, port)
    table = rec.stop()

    spans = {r["span_id"]: r for r in rows(table, "traces")}
    assert set(spans) == {s.span_id for s in sent}
    for s in sent:
        row = spans[s.span_id]
        assert (row["trace_id"], row["parent_span_id"], row["span_name"]) == (
            s.trace_id,
            s.parent_span_id,
            s.name,
        )
        assert row["span_kind"] == s.kind
        assert row["service_name"] == "checkout"
        assert row["scope_name"] == "shop.tracer" and row["scope_version"] == "1.2.3"
        assert row["duration_ns"] == row["end_time"] - row["time"] > 0
    root = next(spans[s.span_id] for s in sent if s.parent_span_id is None)
    assert dict(root["attributes"]) == {"http.status_code": "200"}
    assert [(e["name"], dict(e["attributes"])) for e in root["events"]] == [
        ("cache miss", {"key": "cart:7"})
    ]
    load = next(r for r in spans.values() if r["span_name"] == "load cart")
    assert dict(load["attributes"]) == {"items": "[1,2]"}
    charge = next(r for r in spans.values() if r["span_name"] == "charge")
    assert (charge["status_code"], charge["status_message"]) == ("error", "card declined")
    assert dict(charge["resource_attributes"])["service.name"] == "checkout"

    metrics = rows(table, "metrics")
    by_name = {r["metric_name"]: r for r in metrics}
    assert set(by_name) == {"requests", "latency", "temperature"}
    requests = by_name["requests"]
    assert (requests["metric_type"], requests["value_int"], requests["is_monotonic"]) == (
        "sum",
        7,
        True,
    )
    assert requests["aggregation_temporality"] == "cumulative"
    assert dict(requests["attributes"]) == {"route": "/cart"}
    assert requests["metric_unit"] == "1" and requests["metric_description"] == "requests served"
    latency = by_name["latency"]
    assert (latency["metric_type"], latency["count"], latency["sum"]) == ("histogram", 2, 20.0)
    assert (latency["min"], latency["max"]) == (5.0, 15.0)
    assert sum(latency["bucket_counts"]) == 2
    assert len(latency["bucket_counts"]) == len(latency["explicit_bounds"]) + 1
    assert (by_name["temperature"]["metric_type"], by_name["temperature"]["value_double"]) == (
        "gauge",
        2.5,
    )

    logs = sorted(rows(table, "logs"), key=lambda r: r["severity_number"])
    assert [(r["severity_text"], r["severity_number"], r["body"]) for r in logs] == [
        ("WARN", 13, "disk almost full"),
        ("ERROR", 17, '{"order":7,"ok":false}'),
    ]
    assert dict(logs[0]["attributes"]) == {"disk": "/var"}
    assert logs[1]["event_name"] == "order.failed"
    assert all(r["service_name"] == "checkout" and r["scope_name"] == "shop.logger" for r in logs)
    assert table.num_rows == 3 + 3 + 2


def test_both_receivers_feed_one_sink(receiver: Callable[..., Receiver]) -> None:
    rec = receiver()
    by_grpc = send_traces("grpc", rec.grpc_port, service="a")
    by_http = send_traces("http", rec.http_port, service="b")
    table = rec.stop()
    written = {(r["service_name"], r["span_id"]) for r in rows(table, "traces")}
    assert written == {("a", s.span_id) for s in by_grpc} | {("b", s.span_id) for s in by_http}
