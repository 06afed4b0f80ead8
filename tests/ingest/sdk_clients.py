"""Real OpenTelemetry SDK clients sending traces, metrics and logs through its OTLP exporters
(gRPC or HTTP), returning what they sent so the tests compare it with what the sink wrote."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

Transport = Literal["grpc", "http"]


@dataclass
class SentSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    kind: str


def _exporters(transport: Transport, port: int, **kw: Any) -> dict[str, Any]:
    if transport == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        common = {"endpoint": f"127.0.0.1:{port}", "insecure": "credentials" not in kw, **kw}
        return {
            "traces": OTLPSpanExporter(**common),
            "metrics": OTLPMetricExporter(**common),
            "logs": OTLPLogExporter(**common),
        }
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HttpLogExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    base = kw.pop("base", f"http://127.0.0.1:{port}")
    return {
        "traces": HttpSpanExporter(endpoint=f"{base}/v1/traces", **kw),
        "metrics": HttpMetricExporter(endpoint=f"{base}/v1/metrics", **kw),
        "logs": HttpLogExporter(endpoint=f"{base}/v1/logs", **kw),
    }


def span_exporter(transport: Transport, port: int, **kw: Any) -> Any:
    return _exporters(transport, port, **kw)["traces"]


def send_traces(
    transport: Transport, port: int, service: str = "checkout", **kw: Any
) -> list[SentSpan]:
    """Three spans of one trace (a server span with two children, one failing)."""
    exporter = span_exporter(transport, port, **kw)
    results: list[SpanExportResult] = []
    original = exporter.export

    def export(spans: Any) -> SpanExportResult:
        result: SpanExportResult = original(spans)
        results.append(result)
        return result

    exporter.export = export
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.tracer", "1.2.3")
    sent: list[SentSpan] = []
    with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.status_code", 200)
        root.add_event("cache miss", {"key": "cart:7"})
        with tracer.start_as_current_span("load cart") as child:
            child.set_attribute("items", [1, 2])
        with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT) as failing:
            failing.set_status(StatusCode.ERROR, "card declined")
    for span in [root, child, failing]:
        ctx = span.get_span_context()
        parent = span.parent  # type: ignore[attr-defined]
        sent.append(
            SentSpan(
                span.name,  # type: ignore[attr-defined]
                f"{ctx.trace_id:032x}",
                f"{ctx.span_id:016x}",
                f"{parent.span_id:016x}" if parent is not None else None,
                span.kind.name.lower(),  # type: ignore[attr-defined]
            )
        )
    provider.shutdown()
    assert results and all(r == SpanExportResult.SUCCESS for r in results), results
    return sent


def send_metrics(transport: Transport, port: int, service: str = "checkout", **kw: Any) -> None:
    """A counter (3 + 4 = 7, attribute route=/cart), a histogram of 5 and 15, a gauge of 2.5."""
    exporter = _exporters(transport, port, **kw)["metrics"]
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": service}), metric_readers=[reader]
    )
    meter = provider.get_meter("shop.meter")
    counter = meter.create_counter("requests", unit="1", description="requests served")
    counter.add(3, {"route": "/cart"})
    counter.add(4, {"route": "/cart"})
    histogram = meter.create_histogram("latency", unit="ms")
    histogram.record(5)
    histogram.record(15)
    gauge = meter.create_gauge("temperature")
    gauge.set(2.5)
    provider.shutdown()  # collects and exports once


def send_logs(transport: Transport, port: int, service: str = "checkout", **kw: Any) -> None:
    """Two log records: a warning with a string body and an error with a map body."""
    from opentelemetry._logs import SeverityNumber

    exporter = _exporters(transport, port, **kw)["logs"]
    provider = LoggerProvider(resource=Resource.create({"service.name": service}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("shop.logger")
    logger.emit(
        body="disk almost full",
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        attributes={"disk": "/var"},
    )
    logger.emit(
        body={"order": 7, "ok": False},
        severity_number=SeverityNumber.ERROR,
        severity_text="ERROR",
        event_name="order.failed",
    )
    provider.shutdown()


__all__ = [
    "InMemoryMetricReader",
    "SentSpan",
    "send_logs",
    "send_metrics",
    "send_traces",
    "span_exporter",
]
