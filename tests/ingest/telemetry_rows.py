"""Rows of the telemetry layout for the sink tests: the specification's example requests
(traces, metrics, logs) and generated spans, converted as the OTLP receivers convert them."""

from __future__ import annotations

import os
from typing import Any

import orjson
import pyarrow as pa
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from quiver.ingest.arrow_layout import Signal
from quiver.ingest.otlp.convert import Request, convert_request
from quiver.ingest.otlp.decode import decode_body

from .otlp_payloads import LOGS, METRICS, TRACES

__all__ = ["example_rows", "rows_of", "span_request"]


def rows_of(signal: Signal, request: Request) -> pa.RecordBatch:
    batch = convert_request(signal, request).batch
    assert batch is not None
    return batch


def example_rows() -> pa.RecordBatch:
    """The rows of the example traces, metrics and logs requests, in one batch."""
    examples: list[tuple[Signal, dict[str, Any]]] = [
        ("traces", TRACES),
        ("metrics", METRICS),
        ("logs", LOGS),
    ]
    batches = [
        rows_of(signal, decode_body(signal, orjson.dumps(doc), json=True))
        for signal, doc in examples
    ]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def span_request(spans: int, services: int = 3) -> ExportTraceServiceRequest:
    """``spans`` spans with distinct random ids, spread over ``services`` resources."""
    request = ExportTraceServiceRequest()
    per = -(-spans // services)
    made = 0
    for s in range(services):
        rs = request.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", f"svc-{s}"
        ss = rs.scope_spans.add()
        ss.scope.name = "test"
        for _ in range(min(per, spans - made)):
            span = ss.spans.add()
            span.trace_id = os.urandom(16)
            span.span_id = os.urandom(8)
            span.name = f"op-{made}"
            span.kind = 2
            span.start_time_unix_nano = 1_700_000_000_000_000_000 + made
            span.end_time_unix_nano = 1_700_000_000_000_001_000 + made
            attr = span.attributes.add()
            attr.key, attr.value.int_value = "n", made
            made += 1
    return request
