"""The traces view that keeps span attributes encoded (quiver.ingest.otlp.wire) converts to
exactly the rows of the real ExportTraceServiceRequest, and refuses what the real one does."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from quiver.ingest.otlp.convert import convert_request
from quiver.ingest.otlp.decode import BadRequestError, decode_body
from quiver.ingest.otlp.wire import TracesRequest


def kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))  # type: ignore[arg-type]


def request() -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    for r in range(2):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend([kv("service.name", string_value=f"svc{r}")])
        for s in range(2):
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = f"scope{s}", "1"
            ss.scope.attributes.extend([kv("lib", bool_value=True)])
            for i in range(5):
                span = Span(
                    trace_id=bytes([r + 1] * 16),
                    span_id=bytes([0] * 7 + [i + 1]),
                    parent_span_id=b"" if i == 0 else bytes([0] * 7 + [i]),
                    name=f"op{i}",
                    # 9: a kind the specification does not name
                    kind=Span.SpanKind.ValueType(i if i < 4 else 9),
                    flags=256 + i,
                    trace_state="k=v" if i == 2 else "",
                    start_time_unix_nano=1_765_000_000_000_000_000 + i,
                    end_time_unix_nano=1_765_000_000_000_000_000 + i * 1000 if i else 0,
                    status=Status(
                        code=Status.StatusCode.ValueType(i % 3),
                        message="bad" if i % 3 == 2 else "",
                    ),
                    dropped_attributes_count=i,
                )
                span.attributes.extend(
                    [
                        kv("s", string_value="x"),
                        kv("i", int_value=i),
                        kv("d", double_value=1.5),
                        kv("b", bytes_value=b"\x00\x01"),
                        kv("e"),
                    ]
                )
                if i % 2:
                    event = span.events.add(name="ev", time_unix_nano=5)
                    event.attributes.extend([kv("x", int_value=1)])
                    link = span.links.add(trace_id=bytes([9] * 16), span_id=bytes([8] * 8))
                    link.attributes.extend([kv("y", string_value="z")])
                ss.spans.append(span)
            # an impossible span: rejected alone, in both views
            ss.spans.append(Span(trace_id=bytes(16), span_id=bytes([1] * 8), name="zero"))
    return req


def test_the_encoded_view_converts_to_the_same_rows() -> None:
    body = request().SerializeToString()
    wire = decode_body("traces", body, json=False)
    assert isinstance(wire, TracesRequest)
    real = ExportTraceServiceRequest.FromString(body)
    a, b = convert_request("traces", wire), convert_request("traces", real)
    assert a.batch is not None and b.batch is not None
    assert a.batch.equals(b.batch)
    assert a.accepted == b.accepted == 20 and a.rejected == b.rejected == 4
    assert a.reasons == b.reasons
    assert "trace_id is all zeros" in a.error_message
    assert sorted(set(a.batch.column("span_kind").to_pylist())) == [
        "9",
        "client",
        "internal",
        "server",
        "unspecified",
    ]


def test_an_attribute_that_is_not_utf8_is_a_bad_request() -> None:
    req = request()
    span = req.resource_spans[0].scope_spans[0].spans[0]
    span.attributes.add(key="ok", value=AnyValue(string_value="placeholder"))
    body = req.SerializeToString().replace(b"placeholder", b"\xff\xfe\xfdceholder")
    with pytest.raises(BadRequestError, match="span attribute is not a valid KeyValue"):
        convert_request("traces", decode_body("traces", body, json=False))
