"""OTLP/HTTP: the specification's JSON payloads, protobuf and gzip bodies, and every bad request
answered with the status code the specification names and a Status saying what is wrong,
while the receiver stays up and keeps exactly the good data."""

from __future__ import annotations

import contextlib
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.ingest import otlp_payloads as payloads
from tests.ingest.conftest import Receiver, plain

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}


def post(rec: Receiver, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{rec.http_url}{path}", content=body, headers=headers, timeout=10)


def json_status(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/json"
    message: str = response.json()["message"]
    return message


def proto_status(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/x-protobuf"
    return str(status_pb2.Status.FromString(response.content).message)


def trace_request(*spans: Span, service: str = "svc") -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    attr = rs.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", service
    rs.scope_spans.add().spans.extend(spans)
    return request


def span(name: str, trace_id: bytes = b"\x01" * 16, span_id: bytes = b"\x02" * 8) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        name=name,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_500_000_000,
    )


def rows_of(table: Any, signal: str) -> list[dict[str, Any]]:
    return [r for r in plain(table).to_pylist() if r["signal"] == signal]


def test_the_specifications_json_payloads_are_read_field_by_field(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver()
    for path, doc in (
        ("/v1/traces", payloads.TRACES),
        ("/v1/metrics", payloads.METRICS),
        ("/v1/logs", payloads.LOGS),
    ):
        response = post(rec, path, orjson.dumps(doc), JSON)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {}  # partial_success left unset on full success
    table = rec.stop()

    [s] = rows_of(table, "traces")
    assert (s["trace_id"], s["span_id"], s["parent_span_id"]) == (
        payloads.TRACE_ID.lower(),
        payloads.SPAN_ID.lower(),
        payloads.PARENT_ID,
    )
    assert (s["span_kind"], s["status_code"], s["status_message"]) == ("server", "error", "boom")
    assert (s["time"], s["end_time"], s["duration_ns"]) == (
        payloads.T0,
        payloads.T1,
        payloads.T1 - payloads.T0,
    )
    assert dict(s["attributes"]) == {
        "my.span.attr": "some value",
        "retries": "3",
        "ratio": "0.5",
        "cached": "true",
        "tags": '["a",2]',
        "user": '{"id":"u1"}',
    }
    assert dict(s["resource_attributes"]) == {"service.name": "my.service", "host.cpus": "8"}
    assert (s["service_name"], s["scope_name"], s["scope_version"]) == (
        "my.service",
        "my.library",
        "1.0.0",
    )
    assert dict(s["scope_attributes"]) == {"my.scope": "x"}
    assert [(lk["trace_id"], lk["span_id"]) for lk in s["links"]] == [
        (payloads.TRACE_ID.lower(), payloads.PARENT_ID)
    ]

    m = {r["metric_name"]: r for r in rows_of(table, "metrics")}
    assert m["my.counter"]["value_double"] == 5.0
    assert (m["my.counter"]["aggregation_temporality"], m["my.counter"]["is_monotonic"]) == (
        "delta",
        True,
    )
    assert (m["my.counter"]["start_time"], m["my.counter"]["time"]) == (payloads.T0, payloads.T1)
    [exemplar] = m["my.counter"]["exemplars"]
    assert exemplar == {
        "time": payloads.T0,
        "value_double": None,
        "value_int": 4,
        "trace_id": payloads.TRACE_ID.lower(),
        "span_id": payloads.SPAN_ID.lower(),
        "filtered_attributes": [("user", "u1")],
    }
    assert m["my.gauge"]["exemplars"] == [] and m["my.summary"]["exemplars"] is None
    assert (m["my.gauge"]["metric_type"], m["my.gauge"]["value_int"]) == ("gauge", 10)
    hist = m["my.histogram"]
    assert (hist["count"], hist["sum"], hist["bucket_counts"], hist["explicit_bounds"]) == (
        3,
        3.0,
        [1, 1, 1],
        [1.0, 2.0],
    )
    assert hist["aggregation_temporality"] == "cumulative"
    expo = m["my.exponential"]
    assert (expo["scale"], expo["zero_count"], expo["positive_offset"]) == (2, 1, -1)
    assert expo["positive_bucket_counts"] == [2, 1] and expo["negative_bucket_counts"] == []
    summary = m["my.summary"]
    assert (summary["count"], summary["sum"]) == (10, 55.5)
    assert summary["quantile_values"] == [
        {"quantile": 0.5, "value": 5.0},
        {"quantile": 0.99, "value": 9.9},
    ]

    logs = rows_of(table, "logs")
    assert [(r["severity_number"], r["body"]) for r in logs] == [
        (10, "Example log record"),
        (17, "{}"),
    ]
    assert (logs[0]["trace_id"], logs[0]["span_id"], logs[0]["severity_text"]) == (
        payloads.TRACE_ID.lower(),
        payloads.SPAN_ID.lower(),
        "Information",
    )
    assert (logs[0]["time"], logs[0]["observed_time"]) == (payloads.T0, payloads.T1)
    assert logs[1]["trace_id"] is None and logs[1]["time"] is None


def test_protobuf_and_gzip_bodies_are_answered_in_protobuf(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver()
    plain_body = trace_request(span("plain")).SerializeToString()
    zipped = gzip.compress(trace_request(span("zipped", span_id=b"\x03" * 8)).SerializeToString())
    first = post(rec, "/v1/traces", plain_body, PROTOBUF)
    second = post(rec, "/v1/traces", zipped, {**PROTOBUF, "content-encoding": "gzip"})
    for response in (first, second):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-protobuf"
        reply = ExportTraceServiceResponse.FromString(response.content)
        assert not reply.HasField("partial_success")
    assert sorted(r["span_name"] for r in rows_of(rec.stop(), "traces")) == ["plain", "zipped"]


@pytest.mark.parametrize("encoding", ["deflate", "zlib"])
def test_zlib_bodies_are_read_under_both_names_the_collector_sends(
    receiver: Callable[..., Receiver], encoding: str
) -> None:
    """The Collector's OTLP/HTTP exporter with ``compression: zlib`` or ``deflate`` sends the
    zlib format under that name."""
    rec = receiver()
    body = zlib.compress(trace_request(span(encoding)).SerializeToString())
    response = post(rec, "/v1/traces", body, {**PROTOBUF, "content-encoding": encoding})
    assert response.status_code == 200, proto_status(response)
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == [encoding]


def test_a_gzip_body_of_several_members_is_read_whole(
    receiver: Callable[..., Receiver],
) -> None:
    """Concatenated gzip members (RFC 1952) are one body: a protobuf message sent in parts
    is the concatenation of the parts, so every span of every member is kept."""
    rec = receiver()
    first = trace_request(span("first")).SerializeToString()
    second = trace_request(span("second", span_id=b"\x03" * 8)).SerializeToString()
    body = gzip.compress(first) + gzip.compress(second)
    response = post(rec, "/v1/traces", body, {**PROTOBUF, "content-encoding": "gzip"})
    assert response.status_code == 200, proto_status(response)
    assert sorted(r["span_name"] for r in rows_of(rec.stop(), "traces")) == ["first", "second"]


def _zstd(data: bytes) -> bytes:
    return bytes(pa.Codec("zstd").compress(data, asbytes=True))


def test_a_large_body_is_decoded_while_other_requests_are_answered(
    receiver: Callable[..., Receiver],
) -> None:
    """Decoding a large OTLP/JSON body takes a second or more: it happens beside the event
    loop, which answers a small request sent meanwhile before the large one is done."""
    rec = receiver(http={"max_body_bytes": 64 << 20})
    spans = ",".join(
        f'{{"traceId": "{i + 1:032x}", "spanId": "{i + 1:016x}", "name": "big",'
        f' "attributes": [{{"key": "k", "value": {{"stringValue": "{i:0>40}"}}}}]}}'
        for i in range(60_000)
    )
    big = f'{{"resourceSpans": [{{"scopeSpans": [{{"spans": [{spans}]}}]}}]}}'.encode()
    finished: list[str] = []

    def send_big() -> None:
        response = httpx.post(f"{rec.http_url}/v1/traces", content=big, headers=JSON, timeout=120)
        assert response.status_code == 200, response.text
        finished.append("big")

    sender = threading.Thread(target=send_big)
    sender.start()
    time.sleep(0.3)  # the large body is in and being decoded
    small = post(rec, "/v1/traces", trace_request(span("small")).SerializeToString(), PROTOBUF)
    assert small.status_code == 200
    finished.append("small")
    sender.join()
    assert finished == ["small", "big"]
    names = [r["span_name"] for r in rows_of(rec.stop(), "traces")]
    assert names.count("big") == 60_000 and names.count("small") == 1


def test_zstd_bodies_are_read_whole_and_bounded(receiver: Callable[..., Receiver]) -> None:
    """``Content-Encoding: zstd`` (as the Collector takes it): several frames are one body,
    corrupt or trailing bytes are a 400, and a small body that decompresses past the limit
    is a 413."""
    rec = receiver(http={"max_body_bytes": 4000})
    first = trace_request(span("first")).SerializeToString()
    second = trace_request(span("second", span_id=b"\x03" * 8)).SerializeToString()
    zstd = {**PROTOBUF, "content-encoding": "zstd"}
    response = post(rec, "/v1/traces", _zstd(first) + _zstd(second), zstd)
    assert response.status_code == 200, proto_status(response)
    for body, status, said in [
        (b"not zstd", 400, "not valid zstd data"),
        (_zstd(first) + b"trailing", 400, "not valid zstd data"),
        (_zstd(first)[:-4], 400, "not valid zstd data"),
        (b"", 400, "zstd body is truncated"),
        (_zstd(b"\x00" * 500_000), 413, "larger than 4,000 bytes once decompressed"),
    ]:
        response = post(rec, "/v1/traces", body, zstd)
        assert response.status_code == status, (body[:20], proto_status(response))
        assert said in proto_status(response)
    assert sorted(r["span_name"] for r in rows_of(rec.stop(), "traces")) == ["first", "second"]


def test_spans_with_impossible_ids_are_rejected_one_by_one_with_partial_success(
    receiver: Callable[..., Receiver], capfd: pytest.CaptureFixture[str]
) -> None:
    rec = receiver()
    request = trace_request(
        span("good"),
        span("short trace id", trace_id=b"\x01" * 15),
        span("zero span id", span_id=bytes(8)),
    )
    response = post(rec, "/v1/traces", request.SerializeToString(), PROTOBUF)
    assert response.status_code == 200
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert partial.rejected_spans == 2
    assert "spans[1]: trace_id is 15 bytes" in partial.error_message
    assert "spans[2]: span_id is all zeros" in partial.error_message

    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "abcd"}, {}]}]}]}
    response = post(rec, "/v1/logs", orjson.dumps(logs), JSON)
    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    table = rec.stop()
    assert [r["span_name"] for r in rows_of(table, "traces")] == ["good"]
    assert len(rows_of(table, "logs")) == 1
    assert "OTLP receivers refused 3 item(s)" in capfd.readouterr().err


def test_an_id_of_the_wrong_length_is_shown_in_part_in_partial_success(
    receiver: Callable[..., Receiver],
) -> None:
    """The reason names the length and the first bytes: the answer to a request of huge ids
    is not larger than the request."""
    rec = receiver()
    huge = [span(f"huge {i}", trace_id=bytes([i + 1]) * 2_000_000) for i in range(3)]
    body = trace_request(*huge).SerializeToString()
    response = post(rec, "/v1/traces", body, PROTOBUF)
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert (response.status_code, partial.rejected_spans) == (200, 3)
    assert "spans[0]: trace_id is 2000000 bytes ('" + "01" * 16 + "…'); it must be 16" in (
        partial.error_message
    )
    assert len(response.content) < 1_000
    rec.stop()


@pytest.mark.parametrize(
    ("path", "item"),
    [
        ("/v1/traces", {"traceId": "zz" * 500_000, "spanId": "02" * 8}),
        ("/v1/logs", {"body": {"bytesValue": "!" * 1_000_000}}),
    ],
)
def test_a_huge_bad_value_is_shown_by_its_beginning_in_the_400(
    receiver: Callable[..., Receiver], path: str, item: dict[str, Any]
) -> None:
    rec = receiver()
    if path == "/v1/traces":
        doc = {"resourceSpans": [{"scopeSpans": [{"spans": [item]}]}]}
    else:
        doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [item]}]}]}
    response = post(rec, path, orjson.dumps(doc), JSON)
    assert response.status_code == 400
    assert "…" in json_status(response)
    assert len(response.content) < 2_000
    rec.stop()


def test_a_link_or_exemplar_id_of_the_wrong_length_rejects_its_span_or_data_point(
    receiver: Callable[..., Receiver],
) -> None:
    """Link and exemplar ids may be left out, but one given is held to its length as the
    span's own are: it could never name a span."""
    rec = receiver()
    linked = span("bad link")
    linked.links.add(trace_id=b"\x01" * 16, span_id=b"\x05" * 8)
    linked.links.add(trace_id=b"\x01\x02", span_id=b"\x05" * 8)
    unlinked = span("link without ids", span_id=b"\x03" * 8)
    unlinked.links.add()
    response = post(
        rec, "/v1/traces", trace_request(linked, unlinked).SerializeToString(), PROTOBUF
    )
    partial = ExportTraceServiceResponse.FromString(response.content).partial_success
    assert (response.status_code, partial.rejected_spans) == (200, 1)
    assert "spans[0]: links[1].trace_id is 2 bytes ('0102'); it must be 16" in (
        partial.error_message
    )

    point = {"asInt": "1", "exemplars": [{"asInt": "1", "spanId": "0203"}]}
    plain_point = {"asInt": "2", "exemplars": [{"asDouble": 0.5}]}
    metrics = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {"metrics": [{"name": "m", "gauge": {"dataPoints": [point, plain_point]}}]}
                ]
            }
        ]
    }
    response = post(rec, "/v1/metrics", orjson.dumps(metrics), JSON)
    partial_json = response.json()["partialSuccess"]
    assert (response.status_code, partial_json["rejectedDataPoints"]) == (200, "1")
    assert (
        "data_points[0]: exemplars[0].span_id is 2 bytes ('0203'); it must be 8"
        in (partial_json["errorMessage"])
    )
    table = rec.stop()
    assert [r["span_name"] for r in rows_of(table, "traces")] == ["link without ids"]
    assert [r["value_int"] for r in rows_of(table, "metrics")] == [2]


def test_a_string_holding_a_quote_and_a_colon_is_not_taken_for_a_key(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver()
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": 'a":b'}}]}]}]}
    response = post(rec, "/v1/logs", orjson.dumps(doc), JSON)
    assert response.status_code == 200, response.text
    assert [r["body"] for r in rows_of(rec.stop(), "logs")] == ['a":b']


BAD_REQUESTS = [
    pytest.param(
        "/v1/traces",
        b"\xff\xff\xff garbage",
        PROTOBUF,
        400,
        "; send Content-Type: application/json for OTLP/JSON",
        id="malformed-protobuf",
    ),
    pytest.param("/v1/traces", b"{not json", JSON, 400, "not valid JSON", id="malformed-json"),
    pytest.param("/v1/traces", b"[1, 2]", JSON, 400, "must be a JSON object", id="json-array"),
    pytest.param(
        "/v1/logs",
        b"null",
        JSON,
        400,
        "the body must be a JSON object (an ExportLogsServiceRequest), not null",
        id="json-null",
    ),
    pytest.param(
        "/v1/logs",
        b'"text"',
        JSON,
        400,
        "the body must be a JSON object (an ExportLogsServiceRequest), not a string",
        id="json-string",
    ),
    pytest.param(
        "/v1/traces",
        orjson.dumps(
            {
                "resourceSpans": [
                    {"scopeSpans": [{"spans": [{"traceId": "not-hex!", "spanId": ""}]}]}
                ]
            }
        ),
        JSON,
        400,
        "resourceSpans[0].scopeSpans[0].spans[0].traceId: 'not-hex!' is not a hex string",
        id="id-not-hex",
    ),
    pytest.param(
        "/v1/metrics",
        orjson.dumps({"resourceMetrics": [{"scopeMetrics": "nope"}]}),
        JSON,
        400,
        "resourceMetrics[0].scopeMetrics: 'nope' is not an array",
        id="json-wrong-shape",
    ),
    pytest.param(
        "/v1/logs",
        b"hello",
        {"content-type": "text/plain"},
        415,
        "Content-Type 'text/plain'",
        id="wrong-content-type",
    ),
    pytest.param(
        "/v1/logs",
        b"x",
        {**PROTOBUF, "content-encoding": "br"},
        415,
        "Content-Encoding 'br'",
        id="unsupported-encoding",
    ),
    pytest.param(
        "/v1/logs",
        b"not gzip",
        {**PROTOBUF, "content-encoding": "gzip"},
        400,
        "not valid gzip data",
        id="corrupt-gzip",
    ),
    pytest.param(
        "/v1/traces",
        gzip.compress(trace_request(span("lost")).SerializeToString()) + b"trailing",
        {**PROTOBUF, "content-encoding": "gzip"},
        400,
        "the body has 8 bytes after its gzip data",
        id="bytes-after-gzip",
    ),
    pytest.param(
        "/v1/traces",
        zlib.compress(trace_request(span("lost")).SerializeToString()) + b"trailing",
        {**PROTOBUF, "content-encoding": "deflate"},
        400,
        "the body has 8 bytes after its deflate data",
        id="bytes-after-deflate",
    ),
    pytest.param(
        "/v1/traces",
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "'
        + b"01" * 16
        + b'", "spanId": "'
        + b"02" * 8
        + b'", "name": "lost"}]}]}], "resourceSpans": []}',
        JSON,
        400,
        "key 'resourceSpans' appears twice in one JSON object (the object at line 1 column 1)",
        id="duplicate-key-at-the-top",
    ),
    pytest.param(
        "/v1/logs",
        b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [\n'
        b'  {"body": {"stringValue": "a"}, "body" : {"stringValue": "b"}}]}]}]}',
        JSON,
        400,
        "key 'body' appears twice in one JSON object (the object at line 2 column 3)",
        id="duplicate-key-in-a-log-record",
    ),
    pytest.param(
        "/v1/logs",
        b'{"resourceLogs": [], "future": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        JSON,
        400,
        "the body nests JSON objects and arrays too deeply to be read",
        id="json-nested-too-deep-in-an-unknown-field",
    ),
    pytest.param(
        "/v1/traces",
        b'{"resourceSpans": [{"future": ' + b'{"a": ' * 1000 + b"1" + b"}" * 1000 + b"}]}",
        JSON,
        400,
        "the body nests JSON objects and arrays too deeply to be read",
        id="json-nested-too-deep-in-a-trace",
    ),
    pytest.param("/v1/nothing", b"", PROTOBUF, 404, "no OTLP endpoint at /v1/nothing", id="path"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_the_specified_status_and_the_receiver_stays_up(
    receiver: Callable[..., Receiver],
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    rec = receiver()
    response = post(rec, path, body, headers)
    assert response.status_code == status, response.text
    text = (
        json_status(response)
        if "json" in response.headers["content-type"]
        else proto_status(response)
    )
    assert message in text
    ok = post(rec, "/v1/traces", trace_request(span("after")).SerializeToString(), PROTOBUF)
    assert ok.status_code == 200
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["after"]


def test_get_is_405_with_allow_post(receiver: Callable[..., Receiver]) -> None:
    rec = receiver()
    response = httpx.get(f"{rec.http_url}/v1/traces")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "OTLP/HTTP takes POST" in proto_status(response)
    rec.stop()


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("POST", "/v1/nothing", 404, "no OTLP endpoint at /v1/nothing"),
        ("POST", "/v1/traces/", 404, "no OTLP endpoint at /v1/traces/; use /v1/traces"),
        ("PUT", "/v1/traces", 405, "PUT is not allowed; OTLP/HTTP takes POST"),
        ("GET", "/v1/logs", 405, "GET is not allowed; OTLP/HTTP takes POST"),
    ],
)
@pytest.mark.parametrize("content_type", ["application/json", "application/x-protobuf"])
def test_404_and_405_answer_in_the_content_type_of_the_request(
    receiver: Callable[..., Receiver],
    method: str,
    path: str,
    status: int,
    message: str,
    content_type: str,
) -> None:
    rec = receiver()
    response = httpx.request(
        method, f"{rec.http_url}{path}", content=b"{}", headers={"content-type": content_type}
    )
    assert response.status_code == status
    assert response.headers["content-type"] == content_type
    if content_type == "application/json":
        body = response.json()
        assert body["code"] == (5 if status == 404 else 12)
        text = body["message"]
        assert not body.get("details")  # nothing is wrong with the body
    else:
        text = proto_status(response)
        assert not status_pb2.Status.FromString(response.content).details
    assert text.startswith(message)
    served = "/v1/traces, /v1/metrics or /v1/logs" if status == 404 else "takes POST"
    assert served in text
    if status == 405:
        assert response.headers["allow"] == "POST"
    rec.stop()


@pytest.mark.parametrize("content_type", ["application/json", "application/x-protobuf"])
def test_only_answers_about_the_body_carry_a_bad_request_detail(
    receiver: Callable[..., Receiver], content_type: str
) -> None:
    rec = receiver(signals=["logs"], http={"max_body_bytes": 100})
    json = content_type == "application/json"
    ct = {"content-type": content_type}

    def details(response: httpx.Response) -> list[str]:
        if json:
            return [d["@type"].rsplit(".", 1)[-1] for d in response.json().get("details", [])]
        status = status_pb2.Status.FromString(response.content)
        return [d.type_url.rsplit(".", 1)[-1] for d in status.details]

    answers = {
        404: post(rec, "/v1/traces", b"{}", ct),  # a signal this receiver does not take
        415: post(rec, "/v1/logs", b"{}", {**ct, "content-encoding": "br"}),
        400: post(rec, "/v1/logs", b"\x00not otlp", ct),
        413: post(rec, "/v1/logs", b"{" + b" " * 200 + b"}", ct),
    }
    assert {code: r.status_code for code, r in answers.items()} == {c: c for c in answers}
    assert {code: details(r) for code, r in answers.items()} == {
        404: [],
        415: [],
        400: ["BadRequest"],
        413: ["BadRequest"],
    }
    rec.stop()


def test_oversize_bodies_are_413_before_and_after_decompression(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(http={"max_body_bytes": 1000})
    big = trace_request(
        *[span(f"s{i}", span_id=bytes([1, 2, 3, 4, 5, 6, 7, i + 1])) for i in range(40)]
    )
    raw = big.SerializeToString()
    assert len(raw) > 1000
    response = post(rec, "/v1/traces", raw, PROTOBUF)
    assert response.status_code == 413
    assert "over the 1,000 accepted" in proto_status(response)
    bomb = gzip.compress(b"\x00" * 500_000)
    assert len(bomb) < 1000
    response = post(rec, "/v1/traces", bomb, {**PROTOBUF, "content-encoding": "gzip"})
    assert response.status_code == 413
    assert "larger than 1,000 bytes once decompressed" in proto_status(response)
    small = post(rec, "/v1/traces", trace_request(span("fits")).SerializeToString(), PROTOBUF)
    assert small.status_code == 200
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["fits"]


def test_a_full_spool_answers_429_with_retry_after_and_keeps_what_it_took(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(spool={"max_bytes": 1}, retry_after_seconds=7)
    first = post(rec, "/v1/traces", trace_request(span("taken")).SerializeToString(), PROTOBUF)
    assert first.status_code == 200
    second = post(rec, "/v1/traces", trace_request(span("refused")).SerializeToString(), PROTOBUF)
    assert second.status_code == 429
    assert second.headers["retry-after"] == "7"
    assert "max_bytes 1" in proto_status(second)
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["taken"]


def test_signals_not_taken_are_404(receiver: Callable[..., Receiver]) -> None:
    rec = receiver(signals=["logs"])
    response = post(rec, "/v1/traces", trace_request(span("x")).SerializeToString(), PROTOBUF)
    assert response.status_code == 404
    assert "does not take traces" in proto_status(response)
    assert rec.stop().num_rows == 0


def test_data_points_of_a_metric_without_a_name_are_rejected_and_charset_is_accepted(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver()
    doc = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {"gauge": {"dataPoints": [{"asInt": "1"}, {"asInt": "2"}]}},
                            {"name": "kept", "gauge": {"dataPoints": [{"asDouble": 0.5}]}},
                        ]
                    }
                ]
            }
        ]
    }
    headers = {"content-type": "application/json; charset=utf-8"}
    response = post(rec, "/v1/metrics", orjson.dumps(doc), headers)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedDataPoints"] == "2"
    assert "metrics[0]: the metric has no name" in partial["errorMessage"]
    assert [r["metric_name"] for r in rows_of(rec.stop(), "metrics")] == ["kept"]


def test_a_body_that_stalls_is_408_and_the_connection_closed(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(http={"read_timeout_seconds": 0.5})
    body = trace_request(span("a")).SerializeToString()
    with socket.create_connection(("127.0.0.1", rec.http_port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body[:5]
        )
        answer = read_until_closed(sock)
    head, _, content = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), head
    assert b"connection: close" in head.lower()
    message = status_pb2.Status.FromString(content).message
    assert message.startswith("the body sent nothing for 0.5 seconds after 5 bytes"), message
    # the receiver goes on, and nothing of the stalled request was taken
    response = post(rec, "/v1/traces", trace_request(span("b")).SerializeToString(), PROTOBUF)
    assert response.status_code == 200
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["b"]


@pytest.mark.parametrize(
    "sent",
    [b"", b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"],
    ids=["nothing", "headers unfinished"],
)
def test_a_connection_that_does_not_finish_its_headers_is_closed(
    receiver: Callable[..., Receiver], sent: bytes
) -> None:
    rec = receiver(http={"read_timeout_seconds": 0.5})
    with socket.create_connection(("127.0.0.1", rec.http_port), timeout=10) as sock:
        sock.sendall(sent)
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        assert time.monotonic() - started < 5


def test_a_kept_alive_connection_outlives_the_header_timeout_while_each_request_is_prompt(
    receiver: Callable[..., Receiver],
) -> None:
    """The header timeout counts from the connection's opening or its previous answer: four
    requests 0.8 s apart on one connection take longer than the timeout, and each is taken."""
    rec = receiver(http={"read_timeout_seconds": 2})
    names = ["a", "b", "c", "d"]
    with socket.create_connection(("127.0.0.1", rec.http_port), timeout=10) as sock:
        for name in names:
            body = trace_request(span(name)).SerializeToString()
            sock.sendall(
                b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            time.sleep(0.8)
    assert sorted(r["span_name"] for r in rows_of(rec.stop(), "traces")) == names


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_headers_over_a_mebibyte_are_431_and_the_connection_closed(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver()
    with socket.create_connection(("127.0.0.1", rec.http_port), timeout=10) as sock:
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nX-Padding: ")
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for _ in range(64):  # never ends its header: 64 MiB if nothing stops it
                sock.sendall(b"a" * (1 << 20))
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    body = trace_request(span("after")).SerializeToString()
    near = {**PROTOBUF, "x-padding": "a" * 900_000}  # large, within the limit
    assert post(rec, "/v1/traces", body, near).status_code == 200
    assert [r["span_name"] for r in rows_of(rec.stop(), "traces")] == ["after"]
