"""OTLP/JSON and protobuf records of one request give the same Parquet rows (kafka receiver,
Kafka-protocol broker): every AnyValue kind, 64-bit integers as strings and numbers, the
doubles JSON has no number for, base64 bytes, arrays, kvlists, empty values, enums as names
and numbers, upper-case hex ids and unknown fields (ignored, as the specification says)."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from quiver.ingest.kafka import KafkaReceiver
from quiver.pipeline.component import LINE_COLUMN, RunContext

from .conftest import KAFKA_SESSION, build, kafka_produce, kafka_topic, unique
from .conftest import read_all as take
from .test_sink_pipelines import run

VALUES: dict[str, Any] = {
    "s": {"stringValue": "h\u00e9llo"},
    "b": {"boolValue": True},
    "int_text": {"intValue": "-9223372036854775808"},
    "int_number": {"intValue": 42},
    "d": {"doubleValue": 1.5},
    "nan": {"doubleValue": "NaN"},
    "inf": {"doubleValue": "Infinity"},
    "ninf": {"doubleValue": "-Infinity"},
    "bytes": {"bytesValue": "AAE="},
    "array": {"arrayValue": {"values": [{"intValue": "1"}, {"doubleValue": "NaN"}, {}]}},
    "kvlist": {"kvlistValue": {"values": [{"key": "k", "value": {"doubleValue": "-Infinity"}}]}},
    "empty": {},
    "unknown": {"stringValue": "x", "futureKind": 1},
}
EXPECTED = {
    "s": "h\u00e9llo",
    "b": "true",
    "int_text": "-9223372036854775808",
    "int_number": "42",
    "d": "1.5",
    "nan": "NaN",
    "inf": "Infinity",
    "ninf": "-Infinity",
    "bytes": "AAE=",
    "array": '[1,"NaN",null]',
    "kvlist": '{"k":"-Infinity"}',
    "empty": None,
    "unknown": "x",
}
TRACE, SPAN = "5B8EFFF798038103D269B633813FC60C", "EEE19B7EC3C1B174"


def attributes() -> list[dict[str, Any]]:
    return [{"key": k, "value": copy.deepcopy(v)} for k, v in VALUES.items()]


def request(signal: str) -> dict[str, Any]:
    resource = {"attributes": attributes(), "futureField": True}
    if signal == "traces":
        span = {
            "traceId": TRACE,
            "spanId": SPAN,
            "name": "op",
            "kind": "SPAN_KIND_SERVER",
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": 1700000000000000001,
            "attributes": attributes(),
            "status": {"code": 2},
            "futureField": {"x": 1},
        }
        return {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    records = [
        {
            "timeUnixNano": "1700000000000000000",
            "severityNumber": "SEVERITY_NUMBER_WARN" if i % 2 else 13,
            "body": copy.deepcopy(value),
            "attributes": attributes(),
            "traceId": TRACE,
            "spanId": SPAN,
        }
        for i, value in enumerate(VALUES.values())
    ]
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]}


def as_proto(signal: str, doc: dict[str, Any]) -> bytes:
    """The same request as protobuf, by the proto3 JSON mapping (ids as base64 there)."""
    text = json.dumps(doc)
    for hex_id in (TRACE, SPAN):
        text = text.replace(hex_id, base64.b64encode(bytes.fromhex(hex_id)).decode())
    message = ExportTraceServiceRequest() if signal == "traces" else ExportLogsServiceRequest()
    json_format.Parse(text, message, ignore_unknown_fields=True)
    return cast(bytes, message.SerializeToString())


async def rows(kafka_broker: str, folder: Path, fmt: str, signal: str, body: bytes) -> pa.Table:
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [body])
    result = await run(
        folder,
        """
source:
  kafka:
    bootstrap_servers: ["${K}"]
    topics: ["${T}"]
    group_id: "${G}"
    session_timeout: 1
    format: "${F}"
    signal: "${S}"
    max_messages: 1
sink: {parquet: {path: "${F}.parquet"}}
""",
        K=kafka_broker,
        T=topic,
        G=unique("g"),
        F=fmt,
        S=signal,
    )
    assert result.status == "ok", result.error
    table = pq.read_table(folder / f"{fmt}.parquet")
    return table.drop_columns([c for c in table.column_names if c == LINE_COLUMN])


@pytest.mark.parametrize("signal", ["traces", "logs"])
async def test_otlp_json_and_protobuf_give_the_same_rows_with_every_value_kind(
    kafka_broker: str, tmp_path: Path, signal: str
) -> None:
    doc = request(signal)
    from_json = await rows(kafka_broker, tmp_path, "otlp_json", signal, json.dumps(doc).encode())
    from_proto = await rows(kafka_broker, tmp_path, "otlp_proto", signal, as_proto(signal, doc))
    assert from_json.schema == from_proto.schema
    assert str(from_json.to_pylist()) == str(from_proto.to_pylist())  # NaN != NaN
    assert dict(from_json.column("attributes")[0].as_py()) == EXPECTED
    assert dict(from_json.column("resource_attributes")[0].as_py()) == EXPECTED
    assert from_json.column("trace_id")[0].as_py() == TRACE.lower()
    if signal == "logs":
        assert from_json.column("body").to_pylist() == list(EXPECTED.values())
        assert from_json.column("severity_number").to_pylist() == [13] * len(VALUES)


async def test_bytes_that_are_not_base64_are_refused_not_dropped(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    """The protobuf JSON parser drops the characters base64 has not and keeps the rest: a
    bytesValue of "!!" became empty bytes. It is a rejected record now, naming the field."""
    doc = request("logs")
    bad = copy.deepcopy(doc)
    bad["resourceLogs"][0]["scopeLogs"][0]["logRecords"][2]["body"] = {"bytesValue": "AAE=!!"}
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [json.dumps(bad).encode(), json.dumps(doc).encode()])
    r: KafkaReceiver = build(
        KafkaReceiver,
        {
            "bootstrap_servers": [kafka_broker],
            "topics": [topic],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "format": "otlp_json",
            "signal": "logs",
            "max_messages": 2,
            "batch_seconds": 0.3,
        },
    )
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert table.num_rows == len(VALUES)
    assert len(errors) == 1
    assert "logRecords[2].body.bytesValue: 'AAE=!!' is not base64" in errors[0].reason
