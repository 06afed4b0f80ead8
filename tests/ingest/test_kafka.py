"""The kafka receiver against a Kafka-protocol broker (Tansu) started for the session."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from quiver.ingest.kafka import KafkaReceiver
from quiver.pipeline.component import LINE_COLUMN, RunContext

from .conftest import KAFKA_SESSION, build, kafka_produce, kafka_topic, unique
from .conftest import read_all as take


def receiver(servers: str, **options: Any) -> KafkaReceiver:
    r: KafkaReceiver = build(
        KafkaReceiver,
        {
            "bootstrap_servers": [servers],
            "session_timeout": KAFKA_SESSION,
            "idle_timeout": 1.5,
            "batch_seconds": 0.3,
            **options,
        },
    )
    return r


async def test_offsets_are_committed_only_after_commit(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    topic, group = unique("t"), unique("g")
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [b'{"n": %d}' % i for i in range(25)])
    opts = {"topics": [topic], "group_id": group, "metadata": ["topic", "offset", "timestamp"]}

    first = receiver(kafka_broker, **opts)
    table = await take(first, run_ctx)
    assert table.column("n").to_pylist() == list(range(25))
    assert table.column("kafka_offset").to_pylist() == list(range(25))
    assert set(table.column("kafka_topic").to_pylist()) == {topic}
    stamps = table.column("kafka_timestamp")
    assert stamps.type == pa.timestamp("ms", "UTC") and stamps.null_count == 0
    await first.abort()
    await first.close()

    again = receiver(kafka_broker, **opts)
    assert (await take(again, run_ctx)).column("n").to_pylist() == list(range(25))
    await again.commit()
    await again.close()

    await kafka_produce(kafka_broker, topic, [b'{"n": 25}'])
    after = receiver(kafka_broker, **opts)
    assert (await take(after, run_ctx)).column("n").to_pylist() == [25]
    await after.commit()
    await after.close()


async def test_csv_values_typed_by_the_schema(kafka_broker: str, run_ctx: RunContext) -> None:
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [b"id,name\n1,ann\n2,bob\n", b"id,name\n3,\n"])
    r = receiver(
        kafka_broker, topics=[topic], group_id=unique("g"), format="csv", schema={"id": "int"}
    )
    table = await take(r, run_ctx)
    await r.commit()
    await r.close()
    assert table.drop_columns([LINE_COLUMN]).to_pylist() == [
        {"id": 1, "name": "ann"},
        {"id": 2, "name": "bob"},
        {"id": 3, "name": None},
    ]


async def test_avro_values_with_a_schema_file(
    kafka_broker: str, run_ctx: RunContext, tmp_path: Path
) -> None:
    import io

    import fastavro

    schema = {
        "type": "record",
        "name": "Reading",
        "fields": [{"name": "sensor", "type": "string"}, {"name": "value", "type": "double"}],
    }
    (tmp_path / "reading.avsc").write_text(json.dumps(schema))
    parsed = fastavro.parse_schema(schema)

    def encode(record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, record)
        return out.getvalue()

    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(
        kafka_broker,
        topic,
        [encode({"sensor": "a", "value": 1.5}), b"\x07junk", encode({"sensor": "b", "value": 2.0})],
    )
    r = receiver(
        kafka_broker,
        topics=[topic],
        group_id=unique("g"),
        format="avro",
        avro_schema="reading.avsc",
    )
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert table.drop_columns([LINE_COLUMN]).to_pylist() == [
        {"sensor": "a", "value": 1.5},
        {"sensor": "b", "value": 2.0},
    ]
    assert len(errors) == 1 and "unreadable avro body" in errors[0].reason


async def test_otlp_records_become_telemetry_rows_and_bad_ones_are_rejected(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    """Records as the Collector's Kafka exporter writes them (no signal header): the
    receiver's `signal` says what they hold; a record that is no request is rejected."""
    from .telemetry_rows import span_request

    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    first, second = span_request(4, services=2), span_request(3, services=1)
    await kafka_produce(
        kafka_broker,
        topic,
        [first.SerializeToString(), b"\xff\xff not protobuf", second.SerializeToString()],
    )
    r = receiver(
        kafka_broker,
        topics=[topic],
        group_id=unique("g"),
        format="otlp_proto",
        signal="traces",
        metadata=["offset", "key"],
    )
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert table.num_rows == 7
    assert set(table.column("signal").to_pylist()) == {"traces"}
    assert table.column("kafka_offset").to_pylist() == [0] * 4 + [2] * 3
    assert table.column("kafka_key").null_count == 7
    assert len(errors) == 1 and "unreadable otlp_proto record" in errors[0].reason
    assert r.acknowledged == 2 and r.rejected == 1


async def test_otlp_json_items_with_bad_ids_are_left_out_and_reported(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    import orjson

    from .otlp_payloads import LOGS

    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    doc = orjson.loads(orjson.dumps(LOGS))
    records = doc["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
    records.append({**records[0], "traceId": "abcd"})  # 2 bytes: not a trace id
    await kafka_produce(kafka_broker, topic, [orjson.dumps(doc)])
    r = receiver(
        kafka_broker, topics=[topic], group_id=unique("g"), format="otlp_json", signal="logs"
    )
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert table.num_rows == len(records) - 1
    assert len(errors) == 1 and "trace_id is 2 bytes" in errors[0].reason


async def test_a_commit_holds_for_the_next_member_at_once(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    """The offsets commit is answered by the broker: a run of the group started right after
    close() reads none of the committed records again."""
    topic, group = unique("t"), unique("g")
    await kafka_topic(kafka_broker, topic)
    count = 500
    await kafka_produce(kafka_broker, topic, [b'{"n": %d}' % i for i in range(count)])
    opts = {"topics": [topic], "group_id": group, "batch_messages": count}
    r = receiver(kafka_broker, **opts)
    assert (await take(r, run_ctx)).column("n").to_pylist() == list(range(count))
    await r.commit()
    await r.close()
    after = receiver(kafka_broker, **opts, idle_timeout=1.5)
    again = await take(after, run_ctx)
    await after.close()
    assert again.num_rows == 0, f"{again.num_rows} committed record(s) were read again"


async def test_a_member_that_left_hands_its_partitions_over_within_the_session_timeout(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    """The group's session timeout is the receiver's `session_timeout`: a run that follows one
    that left gets its partitions a second or so after, not after the 10 s of the default."""
    topic, group = unique("t"), unique("g")
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [b'{"n": 1}'])
    opts = {"topics": [topic], "group_id": group, "max_messages": 1}
    first = receiver(kafka_broker, **opts)
    assert (await take(first, run_ctx)).num_rows == 1
    await first.abort()
    await first.close()
    started = time.monotonic()
    again = receiver(kafka_broker, **opts)
    assert (await take(again, run_ctx)).num_rows == 1
    took = time.monotonic() - started
    await again.commit()
    await again.close()
    assert took < 6 * KAFKA_SESSION, f"the next member got its partitions after {took:.1f}s"
