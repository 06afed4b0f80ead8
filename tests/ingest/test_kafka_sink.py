"""The kafka sink against the Kafka-protocol broker (Tansu) started for the session, and its
round trip into the kafka receiver in every format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from quiver.ingest.kafka import KafkaReceiver
from quiver.ingest.sinks.kafka import KafkaSink
from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.runtime.errors import ConfigError, PermanentError, RetryableError

from ..pipeline.conftest import write_all
from ..pipeline.test_cli import quiver
from .conftest import KAFKA_SESSION, build, kafka_topic, plain, unique
from .conftest import read_all as take
from .telemetry_rows import example_rows


async def consume(servers: str, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of ``topic`` (each partition), read without a group."""
    import asyncio

    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, auto_offset_reset="earliest")
    await consumer.start()
    records: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + 15
        while len(records) < count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=300)
            for part in batches.values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


def kafka_sink(servers: str, **options: Any) -> KafkaSink:
    """A kafka sink; Tansu 0.6 (memory storage) grants no producer ids, so not idempotent."""
    sink: KafkaSink = build(
        KafkaSink, {"bootstrap_servers": [servers], "idempotent": False, **options}
    )
    return sink


def rows(n: int) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(range(n), pa.int64()),
            "team": pa.array(["red" if i % 2 else "blue" for i in range(n)]),
            "score": pa.array([i * 1.5 for i in range(n)]),
        }
    )


async def test_records_are_acknowledged_keyed_and_routed_by_field(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    base = unique("t")
    for team in ("red", "blue"):
        await kafka_topic(kafka_broker, f"{base}.{team}")
    sink = kafka_sink(kafka_broker, topic=base + ".{team}", key="id")
    await write_all(sink, [rows(6)], run_ctx)
    assert sink.published == 6
    red = await consume(kafka_broker, f"{base}.red", 3)
    blue = await consume(kafka_broker, f"{base}.blue", 3)
    assert [json.loads(r.value)["id"] for r in red] == [1, 3, 5]
    assert [json.loads(r.value)["id"] for r in blue] == [0, 2, 4]
    assert [r.key for r in red] == [b"1", b"3", b"5"]
    assert dict(red[0].headers)["content-type"] == b"application/json"


async def test_gzip_compressed_csv_messages_hold_every_row_of_a_key(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    sink = kafka_sink(kafka_broker, topic=topic, key="team", format="csv", compression="gzip")
    await write_all(sink, [rows(5)], run_ctx)
    records = await consume(kafka_broker, topic, 2)
    bodies = {r.key: r.value.decode() for r in records}
    assert bodies[b"blue"].splitlines() == [
        '"id","team","score"',
        '"0","blue","0.0"',
        '"2","blue","3.0"',
        '"4","blue","6.0"',
    ]
    assert len(bodies[b"red"].splitlines()) == 3


async def test_a_topic_naming_an_unknown_field_is_refused_before_sending(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    sink = kafka_sink(kafka_broker, **{"topic": "x.{colour}"})
    with pytest.raises(ConfigError, match="colour"):
        await sink.open(rows(1).schema, run_ctx)


async def test_an_empty_routing_field_fails_the_write_permanently(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    batch = pa.record_batch({"team": pa.array(["a", None])})
    sink = kafka_sink(kafka_broker, **{"topic": "x.{team}"})
    with pytest.raises(PermanentError, match="row 2: field 'team' is empty"):
        await write_all(sink, [batch], run_ctx)


async def test_an_unreachable_broker_is_a_retryable_error(run_ctx: RunContext) -> None:
    from .conftest import free_port

    sink = kafka_sink(f"127.0.0.1:{free_port()}", topic="t", timeout_seconds=2)
    with pytest.raises(RetryableError, match="Kafka unavailable"):
        await sink.open(rows(1).schema, run_ctx)


def test_an_unknown_sink_option_is_refused_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "source: {jsonl: {path: in.jsonl}}\nsink:\n  kafka:\n    topic: t\n    acks: 1\n"
    )
    done = quiver("validate", "p.yaml", cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "p.yaml:5" in out and "acks" in out


# ----------------------------------------------------------------------------- round trips

AVRO_SCHEMA = {
    "type": "record",
    "name": "Row",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "team", "type": "string"},
        {"name": "score", "type": "double"},
    ],
}


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "avro"])
async def test_rows_round_trip_through_kafka(
    fmt: str, kafka_broker: str, run_ctx: RunContext, tmp_path: Path
) -> None:
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    options: dict[str, Any] = {"format": fmt}
    if fmt == "avro":
        (tmp_path / "row.avsc").write_text(json.dumps(AVRO_SCHEMA))
        options["avro_schema"] = str(tmp_path / "row.avsc")
    sink = kafka_sink(kafka_broker, **{"topic": topic, **options})
    await write_all(sink, [rows(7), rows(3)], run_ctx)
    receiver: KafkaReceiver = build(
        KafkaReceiver,
        {
            "bootstrap_servers": [kafka_broker],
            "topics": [topic],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "idle_timeout": 1.5,
            "batch_seconds": 0.3,
            "schema": {"id": "int", "team": "str", "score": "float"},
            **options,
        },
    )
    table = await take(receiver, run_ctx)
    await receiver.commit()
    await receiver.close()
    got = table.drop_columns([LINE_COLUMN]) if LINE_COLUMN in table.column_names else table
    expected = pa.Table.from_batches([rows(7), rows(3)])
    assert got.select(["id", "team", "score"]).to_pylist() == expected.to_pylist()


@pytest.mark.parametrize("fmt", ["otlp_proto", "otlp_json"])
async def test_telemetry_round_trips_through_kafka(
    fmt: str, kafka_broker: str, run_ctx: RunContext
) -> None:
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    sent = example_rows()
    sink = kafka_sink(kafka_broker, **{"topic": topic, "format": fmt})
    await write_all(sink, [sent], run_ctx)
    receiver: KafkaReceiver = build(
        KafkaReceiver,
        {
            "bootstrap_servers": [kafka_broker],
            "topics": [topic],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "idle_timeout": 1.5,
            "batch_seconds": 0.3,
            "format": fmt,
        },
    )
    table = await take(receiver, run_ctx)
    await receiver.commit()
    await receiver.close()
    assert plain(table).to_pylist() == plain(pa.table(sent)).to_pylist()


def test_a_codec_whose_library_is_missing_is_named_by_validate(tmp_path: Path) -> None:
    pytest.importorskip("aiokafka")
    try:
        import cramjam  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("cramjam is installed: every codec is available")
    (tmp_path / "in.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "p.yaml").write_text(
        "source: {jsonl: {path: in.jsonl}}\nsink: {kafka: {topic: t, compression: zstd}}\n"
    )
    done = quiver("validate", "p.yaml", cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "compression zstd needs the cramjam package" in out
