"""Avro message bodies, type by type, through real brokers: every primitive, complex and
logical type arrives as the Arrow type its schema says, with its exact value, and reaches
Parquet so; schemas with no Arrow form are refused before a message is taken; bodies that do
not fit are rejected rows with their reason."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quiver.ingest.nats import NatsReceiver
from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.runtime.errors import PermanentError

from .conftest import (
    FETCH_WAIT,
    KAFKA_SESSION,
    build,
    js_publish,
    kafka_produce,
    kafka_topic,
    unique,
)
from .conftest import read_all as take
from .test_kafka_sink import consume
from .test_sink_pipelines import run

UTC = dt.UTC

TYPES: list[tuple[str, Any, pa.DataType]] = [
    ("nothing", "null", pa.null()),
    ("flag", "boolean", pa.bool_()),
    ("small", "int", pa.int32()),
    ("big", "long", pa.int64()),
    ("single", "float", pa.float32()),
    ("double", "double", pa.float64()),
    ("raw", "bytes", pa.binary()),
    ("text", "string", pa.string()),
    (
        "inner",
        {
            "type": "record",
            "name": "Inner",
            "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": ["null", "string"]}],
        },
        pa.struct([("x", pa.int32()), ("y", pa.string())]),
    ),
    ("color", {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}, pa.string()),
    ("items", {"type": "array", "items": "long"}, pa.list_(pa.int64())),
    ("tags", {"type": "map", "values": "double"}, pa.map_(pa.string(), pa.float64())),
    ("four", {"type": "fixed", "name": "Four", "size": 4}, pa.binary(4)),
    ("maybe_first", ["null", "long"], pa.int64()),
    ("maybe_last", ["string", "null"], pa.string()),
    (
        "amount",
        {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4},
        pa.decimal128(20, 4),
    ),
    (
        "wide",
        {
            "type": "fixed",
            "name": "Wide",
            "size": 32,
            "logicalType": "decimal",
            "precision": 60,
            "scale": 2,
        },
        pa.decimal256(60, 2),
    ),
    ("id", {"type": "string", "logicalType": "uuid"}, pa.string()),
    ("day", {"type": "int", "logicalType": "date"}, pa.date32()),
    ("at_ms", {"type": "int", "logicalType": "time-millis"}, pa.time32("ms")),
    ("at_us", {"type": "long", "logicalType": "time-micros"}, pa.time64("us")),
    ("ts_ms", {"type": "long", "logicalType": "timestamp-millis"}, pa.timestamp("ms", "UTC")),
    ("ts_us", {"type": "long", "logicalType": "timestamp-micros"}, pa.timestamp("us", "UTC")),
    ("ts_ns", {"type": "long", "logicalType": "timestamp-nanos"}, pa.timestamp("ns", "UTC")),
    ("lt_ms", {"type": "long", "logicalType": "local-timestamp-millis"}, pa.timestamp("ms")),
    ("lt_us", {"type": "long", "logicalType": "local-timestamp-micros"}, pa.timestamp("us")),
]
SCHEMA = {
    "type": "record",
    "name": "Reading",
    "fields": [{"name": n, "type": t} for n, t, _ in TYPES],
}
#: written with the logical types off: the values are what travels on the wire
WIRE = fastavro.parse_schema(
    json.loads(json.dumps(SCHEMA).replace('"logicalType"', '"ignoredType"'))
)


def _unscaled(value: int, size: int | None = None) -> bytes:
    length = size or max(1, (value.bit_length() + 8) // 8)
    return value.to_bytes(length, "big", signed=True)


def wire(**values: Any) -> bytes:
    record = {
        "nothing": None,
        "flag": False,
        "small": 0,
        "big": 0,
        "single": 0.0,
        "double": 0.0,
        "raw": b"",
        "text": "",
        "inner": {"x": 0, "y": None},
        "color": "RED",
        "items": [],
        "tags": {},
        "four": b"\0\0\0\0",
        "maybe_first": None,
        "maybe_last": None,
        "amount": _unscaled(0),
        "wide": _unscaled(0, 32),
        "id": str(uuid.UUID(int=0)),
        "day": 0,
        "at_ms": 0,
        "at_us": 0,
        "ts_ms": 0,
        "ts_us": 0,
        "ts_ns": 0,
        "lt_ms": 0,
        "lt_us": 0,
        **values,
    }
    out = io.BytesIO()
    fastavro.schemaless_writer(out, WIRE, record)
    return out.getvalue()


FIRST = wire()  # the nullable fields null: the columns keep their schema's types anyway
SECOND = wire(
    flag=True,
    small=-(2**31),
    big=2**63 - 1,
    single=float("inf"),
    double=float("nan"),
    raw=b"\x00\xff",
    text="h\u00e9llo \u2603 \U0001f600",
    inner={"x": 2**31 - 1, "y": "\u00e9"},
    color="GREEN",
    items=[-(2**63), 2**63 - 1],
    tags={"a": -0.0, "b": 1e308},
    four=b"abcd",
    maybe_first=-(2**63),
    maybe_last="x",
    amount=_unscaled(-12345678901234567890),
    wide=_unscaled(10**59 - 1, 32),
    id="12345678-1234-5678-1234-567812345678",
    day=-719162,  # 0001-01-01
    at_ms=86_399_999,
    at_us=86_399_999_999,
    ts_ms=2**62,  # far past year 9999: no Python datetime holds it
    ts_us=-(2**62),
    ts_ns=1_700_000_000_123_456_789,
    lt_ms=1_700_000_000_123,
    lt_us=1_700_000_000_123_456,
)


def check_typed(table: pa.Table) -> None:
    for name, _, kind in TYPES:
        assert table.schema.field(name).type == kind, name
    first, second = (
        {n: table.column(n)[i] for n in table.column_names if n != LINE_COLUMN} for i in (0, 1)
    )
    assert all(not v.is_valid for n, v in first.items() if n in ("maybe_first", "maybe_last"))
    values = {n: v.as_py() for n, v in second.items() if not n.startswith(("ts_", "lt_"))}
    assert values["flag"] is True and values["small"] == -(2**31) and values["big"] == 2**63 - 1
    assert values["single"] == float("inf") and values["double"] != values["double"]
    assert values["raw"] == b"\x00\xff" and values["text"] == "h\u00e9llo \u2603 \U0001f600"
    assert values["inner"] == {"x": 2**31 - 1, "y": "\u00e9"} and values["color"] == "GREEN"
    assert values["items"] == [-(2**63), 2**63 - 1]
    assert values["tags"] == [("a", -0.0), ("b", 1e308)] and values["four"] == b"abcd"
    assert values["maybe_first"] == -(2**63) and values["maybe_last"] == "x"
    assert values["amount"] == decimal.Decimal("-1234567890123456.7890")
    assert values["wide"] == decimal.Decimal("9" * 57 + ".99")
    assert values["id"] == "12345678-1234-5678-1234-567812345678"
    assert values["day"] == dt.date(1, 1, 1)
    assert values["at_ms"] == dt.time(23, 59, 59, 999_000)
    assert values["at_us"] == dt.time(23, 59, 59, 999_999)
    stamps = [n for n in table.column_names if n.startswith(("ts_", "lt_"))]
    counts = {n: table.column(n).cast(pa.int64())[1].as_py() for n in stamps}
    assert counts["ts_ms"] == 2**62 and counts["ts_us"] == -(2**62)
    assert counts["ts_ns"] == 1_700_000_000_123_456_789
    assert counts["lt_ms"] == 1_700_000_000_123 and counts["lt_us"] == 1_700_000_000_123_456


async def test_every_avro_type_reaches_parquet_exact_and_as_its_schema_says(
    kafka_broker: str, tmp_path: Path
) -> None:
    """Types come from the schema, not from the first message (whose unions are null); a
    timestamp past year 9999 is exact instead of failing the run."""
    (tmp_path / "reading.avsc").write_text(json.dumps(SCHEMA))
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [FIRST, SECOND])
    result = await run(
        tmp_path,
        """
source:
  kafka:
    bootstrap_servers: ["${K}"]
    topics: ["${T}"]
    group_id: "${G}"
    session_timeout: 1
    format: avro
    avro_schema: reading.avsc
    max_messages: 2
sink: {parquet: {path: out.parquet}}
""",
        K=kafka_broker,
        T=topic,
        G=unique("g"),
    )
    assert result.status == "ok", result.error
    check_typed(pq.read_table(tmp_path / "out.parquet"))


async def test_a_duration_is_an_interval_of_months_days_and_nanoseconds(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    schema = {
        "type": "record",
        "name": "Wait",
        "fields": [
            {
                "name": "took",
                "type": {"type": "fixed", "name": "Dur", "size": 12, "logicalType": "duration"},
            },
        ],
    }
    Path(run_ctx.base_dir, "wait.avsc").write_text(json.dumps(schema))
    stream, prefix = js_stream
    body = (
        (14).to_bytes(4, "little") + (3).to_bytes(4, "little") + (4_000_001).to_bytes(4, "little")
    )
    await js_publish(f"{prefix}.a", [body])
    r: NatsReceiver = build(
        NatsReceiver,
        {
            "subject": f"{prefix}.>",
            "stream": stream,
            "durable": unique("d"),
            "fetch_wait": FETCH_WAIT,
            "format": "avro",
            "avro_schema": "wait.avsc",
            "idle_timeout": 1.0,
            "batch_seconds": 0.2,
        },
    )
    table = await take(r, run_ctx)
    await r.commit()
    await r.close()
    assert table.schema.field("took").type == pa.month_day_nano_interval()
    assert table.column("took")[0].as_py() == pa.MonthDayNano([14, 3, 4_000_001_000_000])


def schema_problems(schema: dict[str, Any], ctx: RunContext) -> list[str]:
    """What a receiver reading bodies written with ``schema`` says of it before a run."""
    Path(ctx.base_dir, "r.avsc").write_text(json.dumps(schema))
    r: NatsReceiver = build(
        NatsReceiver, {"subject": "s", "format": "avro", "avro_schema": "r.avsc"}
    )
    return [p.render() for p in r.check(ctx)]


def test_a_union_of_several_types_is_refused_naming_the_field(
    run_ctx: RunContext,
) -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "ok", "type": ["null", "long"]},
            {"name": "either", "type": ["null", "long", "string"]},
            {
                "name": "deep",
                "type": {
                    "type": "record",
                    "name": "D",
                    "fields": [{"name": "v", "type": ["int", "string"]}],
                },
            },
            {
                "name": "huge",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 90},
            },
            {
                "name": "chain",
                "type": {
                    "type": "record",
                    "name": "Node",
                    "fields": [{"name": "next", "type": ["null", "Node"]}],
                },
            },
        ],
    }
    problems = schema_problems(schema, run_ctx)
    assert len(problems) == 4, problems
    assert "field 'either' is a union of several types" in problems[0]
    assert "declare the top-level field `json` in `schema:`" in problems[0]
    assert "field 'deep.v' is a union" in problems[1]
    assert "field 'huge': decimal(90, 0) has no Arrow type" in problems[2]
    assert "field 'chain.next' holds its own record type 'Node'" in problems[3]


def test_schema_naming_a_field_the_avro_schema_has_not_is_refused(
    run_ctx: RunContext, tmp_path: Path
) -> None:
    (tmp_path / "reading.avsc").write_text(json.dumps(SCHEMA))
    r: NatsReceiver = build(
        NatsReceiver,
        {
            "subject": "s",
            "format": "avro",
            "avro_schema": "reading.avsc",
            "schema": {"flag": "str", "flags": "int", "nats_subject": "str"},
        },
    )
    (problem,) = [p.render() for p in r.check(run_ctx)]
    assert "schema: 'flags' not in the Avro schema" in problem
    assert "its fields: nothing, flag, small" in problem


async def test_a_union_declared_json_keeps_each_value_as_json_text(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "n", "type": "long"},
            {
                "name": "either",
                "type": ["null", "long", "string", {"type": "array", "items": "int"}],
            },
        ],
    }
    Path(run_ctx.base_dir, "r.avsc").write_text(json.dumps(schema))
    parsed = fastavro.parse_schema(schema)
    bodies = []
    for n, value in enumerate([None, 7, "seven", [1, 2]]):
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, {"n": n, "either": value})
        bodies.append(out.getvalue())
    stream, prefix = js_stream
    await js_publish(f"{prefix}.a", bodies)
    r: NatsReceiver = build(
        NatsReceiver,
        {
            "subject": f"{prefix}.>",
            "stream": stream,
            "durable": unique("d"),
            "fetch_wait": FETCH_WAIT,
            "format": "avro",
            "avro_schema": "r.avsc",
            "schema": {"either": "json"},
            "subject_field": None,
            "idle_timeout": 1.0,
            "batch_seconds": 0.2,
        },
    )
    table = await take(r, run_ctx)
    await r.commit()
    await r.close()
    assert table.drop_columns([LINE_COLUMN]).to_pylist() == [
        {"n": 0, "either": None},
        {"n": 1, "either": "7"},
        {"n": 2, "either": "seven"},
        {"n": 3, "either": "[1,2]"},
    ]


async def test_bodies_that_do_not_fit_the_schema_are_rejected_with_their_reason(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    """Truncated, written with another (evolved) schema, a timestamp Python cannot hold:
    each is a rejected row or an exact value, and the receiver goes on."""
    Path(run_ctx.base_dir, "reading.avsc").write_text(json.dumps(SCHEMA))
    evolved = fastavro.parse_schema(
        {"type": "record", "name": "Old", "fields": [{"name": "flag", "type": "string"}]}
    )
    out = io.BytesIO()
    fastavro.schemaless_writer(out, evolved, {"flag": "yes"})
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [SECOND[:-3], out.getvalue(), SECOND, b""])
    from quiver.ingest.kafka import KafkaReceiver

    r: KafkaReceiver = build(
        KafkaReceiver,
        {
            "bootstrap_servers": [kafka_broker],
            "topics": [topic],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "format": "avro",
            "avro_schema": "reading.avsc",
            "max_messages": 4,
            "batch_seconds": 0.3,
        },
    )
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert table.num_rows == 1 and table.column("ts_ms").cast(pa.int64())[0].as_py() == 2**62
    assert len(errors) == 3, errors
    for error in errors:
        assert "unreadable avro body" in error.reason
        assert "written with another schema" in error.reason or "byte(s) left" in error.reason
    # the rejects keep a binary body whole (base64), a text one as it is
    assert errors[0].row == {"body_base64": base64.b64encode(SECOND[:-3]).decode()}
    assert errors[1].row == {"body": out.getvalue().decode()}


def container(schema: dict[str, Any], rows: list[dict[str, Any]], codec: str = "null") -> bytes:
    """An Avro object container file of ``rows`` written with ``schema``."""
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), rows, codec=codec)
    return out.getvalue()


async def test_container_files_of_another_schema_are_rejected(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    money = {
        "type": "record",
        "name": "M",
        "fields": [
            {
                "name": "v",
                "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2},
            },
            {"name": "at", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        ],
    }
    other = {"type": "record", "name": "M", "fields": [{"name": "v", "type": "string"}]}
    at = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    stream, prefix = js_stream
    await js_publish(
        f"{prefix}.a",
        [
            container(money, [{"v": decimal.Decimal("1.25"), "at": None}]),
            container(other, [{"v": "x"}]),
            container(money, [{"v": decimal.Decimal("-3.50"), "at": at}]),
        ],
    )
    r: NatsReceiver = build(
        NatsReceiver,
        {
            "subject": f"{prefix}.>",
            "stream": stream,
            "durable": unique("d"),
            "fetch_wait": FETCH_WAIT,
            "format": "avro",
            "subject_field": None,
            "idle_timeout": 1.0,
            "batch_seconds": 0.2,
        },
    )
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert table.schema.field("v").type == pa.decimal128(9, 2)
    assert table.schema.field("at").type == pa.timestamp("us", "UTC")
    assert table.drop_columns([LINE_COLUMN]).to_pylist() == [
        {"v": decimal.Decimal("1.25"), "at": None},
        {"v": decimal.Decimal("-3.50"), "at": at},
    ]
    assert len(errors) == 1 and "schema of other fields or types" in errors[0].reason


async def test_rows_read_from_avro_are_written_back_byte_for_byte(
    kafka_broker: str, tmp_path: Path
) -> None:
    """kafka (avro) -> kafka sink (avro, the same schema): every type written as it was read."""
    (tmp_path / "reading.avsc").write_text(json.dumps(SCHEMA))
    source, target = unique("t"), unique("t")
    await kafka_topic(kafka_broker, source)
    await kafka_topic(kafka_broker, target)
    await kafka_produce(kafka_broker, source, [FIRST, SECOND])
    result = await run(
        tmp_path,
        """
source:
  kafka:
    bootstrap_servers: ["${K}"]
    topics: ["${S}"]
    group_id: "${G}"
    session_timeout: 1
    format: avro
    avro_schema: reading.avsc
    max_messages: 2
sink:
  kafka:
    bootstrap_servers: ["${K}"]
    topic: "${T}"
    format: avro
    avro_schema: reading.avsc
    idempotent: false
""",
        K=kafka_broker,
        S=source,
        T=target,
        G=unique("g"),
    )
    assert result.status == "ok", result.error
    records = await consume(kafka_broker, target, 2)
    assert sorted(r.value for r in records) == sorted([FIRST, SECOND])


async def test_several_rows_a_message_are_a_container_file_keeping_the_logical_types(
    kafka_broker: str, tmp_path: Path, run_ctx: RunContext
) -> None:
    (tmp_path / "reading.avsc").write_text(json.dumps(SCHEMA))
    source, target = unique("t"), unique("t")
    await kafka_topic(kafka_broker, source)
    await kafka_topic(kafka_broker, target)
    await kafka_produce(kafka_broker, source, [FIRST, SECOND])
    result = await run(
        tmp_path,
        """
source:
  kafka:
    bootstrap_servers: ["${K}"]
    topics: ["${S}"]
    group_id: "${G}"
    session_timeout: 1
    format: avro
    avro_schema: reading.avsc
    max_messages: 2
    batch_seconds: 2
sink:
  kafka:
    bootstrap_servers: ["${K}"]
    topic: "${T}"
    format: avro
    avro_schema: reading.avsc
    rows_per_message: 2
    idempotent: false
""",
        K=kafka_broker,
        S=source,
        T=target,
        G=unique("g"),
    )
    assert result.status == "ok", result.error
    from quiver.ingest.kafka import KafkaReceiver

    r: KafkaReceiver = build(
        KafkaReceiver,
        {
            "bootstrap_servers": [kafka_broker],
            "topics": [target],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "format": "avro",  # no avro_schema: each body carries its own
            "idle_timeout": 1.5,
        },
    )
    table = await take(r, run_ctx)
    await r.commit()
    await r.close()
    check_typed(table)


async def test_arrow_values_reach_avro_exactly_or_fail_the_run_clearly(
    kafka_broker: str, tmp_path: Path
) -> None:
    """A map column, a 60-digit decimal and a timestamp past year 9999 are written exactly;
    a timestamp finer than the schema's unit fails the run naming the row and field."""
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "tags", "type": {"type": "map", "values": "long"}},
            {"name": "wide", "type": SCHEMA["fields"][16]["type"]},  # type: ignore[index]
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    (tmp_path / "r.avsc").write_text(json.dumps(schema))
    wide = decimal.Decimal("9" * 57 + ".99")
    table = pa.table(
        {
            "tags": pa.array([[("a", 1), ("b", -(2**63))]], pa.map_(pa.string(), pa.int64())),
            "wide": pa.array([wide], pa.decimal256(60, 2)),
            "at": pa.array([2**62], pa.timestamp("ms", "UTC")),
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    pipeline = """
source: {parquet: {path: rows.parquet}}
sink:
  kafka:
    bootstrap_servers: ["${K}"]
    topic: "${T}"
    format: avro
    avro_schema: r.avsc
    idempotent: false
"""
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    result = await run(tmp_path, pipeline, K=kafka_broker, T=topic)
    assert result.status == "ok", result.error
    (record,) = await consume(kafka_broker, topic, 1)
    plain = fastavro.parse_schema(
        json.loads(json.dumps(schema).replace('"logicalType"', '"ignoredType"'))
    )
    assert fastavro.schemaless_reader(io.BytesIO(record.value), plain, None) == {
        "tags": {"a": 1, "b": -(2**63)},
        "wide": _unscaled(10**59 - 1, 32),
        "at": 2**62,
    }

    fine = table.set_column(2, "at", pa.array([1_500], pa.timestamp("us", "UTC")))
    pq.write_table(fine, tmp_path / "rows.parquet")
    with pytest.raises(PermanentError) as failed:
        await run(tmp_path, pipeline, K=kafka_broker, T=topic)
    assert "row 1: the timestamp has a finer fraction than the schema's ms" in str(failed.value)


def test_arrays_of_items_taking_no_bytes_are_refused_naming_the_field(
    run_ctx: RunContext,
) -> None:
    """A block count is all such an array writes: a body of a few bytes could make the
    decoder loop billions of times."""
    empty = {"type": "record", "name": "Empty", "fields": [{"name": "n", "type": "null"}]}
    schema = {
        "type": "record",
        "name": "R",
        "fields": [
            {"name": "ok", "type": {"type": "array", "items": ["null", "long"]}},
            {"name": "nulls", "type": {"type": "array", "items": "null"}},
            {"name": "empties", "type": ["null", {"type": "array", "items": empty}]},
            {
                "name": "deep",
                "type": {
                    "type": "record",
                    "name": "D",
                    "fields": [
                        {
                            "name": "v",
                            "type": {
                                "type": "map",
                                "values": {
                                    "type": "array",
                                    "items": {"type": "fixed", "name": "Z", "size": 0},
                                },
                            },
                        }
                    ],
                },
            },
            {"name": "again", "type": {"type": "array", "items": "Empty"}},
        ],
    }
    problems = schema_problems(schema, run_ctx)
    assert len(problems) == 4, problems
    assert "field 'nulls' is an array whose items take no bytes" in problems[0]
    assert "field 'empties' is an array" in problems[1]
    assert "field 'deep.v{}' is an array" in problems[2]
    assert "field 'again' is an array" in problems[3]

    (problem,) = schema_problems(empty, run_ctx)
    assert "the record takes no bytes" in problem


async def test_container_bombs_are_rejected_and_the_receiver_goes_on(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    text = {"type": "record", "name": "T", "fields": [{"name": "s", "type": "string"}]}
    nulls = {
        "type": "record",
        "name": "T",
        "fields": [{"name": "xs", "type": {"type": "array", "items": "null"}}],
    }
    bomb = container(text, [{"s": "x" * 20_000_000}], "deflate")
    assert len(bomb) < 50_000  # a small message, 20 MB once decompressed
    stream, prefix = js_stream
    await js_publish(
        f"{prefix}.a",
        [
            container(text, [{"s": "a"}, {"s": "b"}], "deflate"),
            bomb,
            container(text, [{"s": "y" * 300_000}], "bzip2"),
            container(nulls, [{"xs": [None, None]}], "null"),
            container(text, [{"s": "c"}], "xz"),
        ],
    )
    r: NatsReceiver = build(
        NatsReceiver,
        {
            "subject": f"{prefix}.>",
            "stream": stream,
            "durable": unique("d"),
            "fetch_wait": FETCH_WAIT,
            "format": "avro",
            "subject_field": None,
            "max_message_bytes": 200_000,
            "idle_timeout": 1.0,
            "batch_seconds": 0.2,
        },
    )
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert table.column("s").to_pylist() == ["a", "b", "c"]
    reasons = [e.reason.split(": ", 1)[1] for e in errors]
    assert (
        reasons[:2]
        == [
            "unreadable avro body: an Avro container whose blocks decompress to more than "
            "max_message_bytes (200000) bytes: send fewer records per message, or raise "
            "max_message_bytes"
        ]
        * 2
    )
    assert "field 'xs' is an array whose items take no bytes" in reasons[2]
