"""JSON, JSON lines and CSV bodies read alike by every broker receiver (Mosquitto, RabbitMQ,
NATS JetStream, Kafka): a UTF-8 byte order mark is no content, and a body the decoder cannot
read (empty JSON, a CSV row of too many fields or not UTF-8, a bad JSON line) is a rejected
row with its reason, never a failed run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import pytest_asyncio

from quiver.ingest.amqp import AmqpReceiver
from quiver.ingest.kafka import KafkaReceiver
from quiver.ingest.mqtt import MqttReceiver
from quiver.ingest.nats import NatsReceiver
from quiver.pipeline.component import LINE_COLUMN, RowError, RunContext

from .conftest import (
    FETCH_WAIT,
    KAFKA_SESSION,
    build,
    js_publish,
    kafka_produce,
    kafka_topic,
    mqtt_publish,
    unique,
)
from .conftest import read_all as take
from .test_amqp import URL
from .test_amqp import publish as amqp_publish

FAST = {"idle_timeout": 1.0, "batch_seconds": 0.2}
Deliver = Callable[[list[bytes], dict[str, Any]], Awaitable[tuple[pa.Table, list[RowError]]]]


async def _read(r: Any, ctx: RunContext) -> tuple[pa.Table, list[RowError]]:
    table = await take(r, ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    return table, errors


@pytest_asyncio.fixture(params=["mqtt", "amqp", "nats", "kafka"], loop_scope="function")
async def deliver(
    request: pytest.FixtureRequest, run_ctx: RunContext, tmp_path: Path
) -> AsyncIterator[Deliver]:
    """Publish bodies to the broker of the parameter and read them with its receiver."""
    kind = request.param
    cleanup: list[Callable[[], Awaitable[None]]] = []

    async def send(bodies: list[bytes], options: dict[str, Any]) -> tuple[pa.Table, list[Any]]:
        if kind == "mqtt":
            prefix = unique("m")
            opts: dict[str, object] = {
                "topics": [f"{prefix}/#"],
                "client_id": unique("c"),
                "topic_field": None,
            }
            first: MqttReceiver = build(MqttReceiver, {**opts, "idle_timeout": 0.2})
            await take(first, run_ctx)  # the broker keeps the session's messages from now on
            await first.close()
            mqtt_publish([(f"{prefix}/a", b) for b in bodies])
            return await _read(build(MqttReceiver, {**opts, **FAST, **options}), run_ctx)
        if kind == "amqp":
            names = {"exchange": unique("x"), "queue": unique("q")}
            cleanup.append(lambda: _amqp_delete(names))
            opts = {**names, "bindings": ["k"]}
            first_a: AmqpReceiver = build(AmqpReceiver, {**opts, "idle_timeout": 0.1})
            await take(first_a, run_ctx)
            await first_a.close()
            await amqp_publish(names["exchange"], [("k", b) for b in bodies])
            return await _read(build(AmqpReceiver, {**opts, **FAST, **options}), run_ctx)
        if kind == "nats":
            import nats

            stream, prefix = unique("S"), unique("subj")
            nc = await nats.connect("nats://127.0.0.1:4222")
            await nc.jetstream().add_stream(name=stream, subjects=[f"{prefix}.>"])

            async def drop() -> None:
                await nc.jetstream().delete_stream(stream)
                await nc.close()

            cleanup.append(drop)
            await js_publish(f"{prefix}.a", bodies)
            opts = {
                "subject": f"{prefix}.>",
                "stream": stream,
                "durable": unique("d"),
                "fetch_wait": FETCH_WAIT,
            }
            receiver = build(NatsReceiver, {**opts, "subject_field": None, **FAST, **options})
            return await _read(receiver, run_ctx)
        servers = request.getfixturevalue("kafka_broker")
        topic = unique("t")
        await kafka_topic(servers, topic)
        await kafka_produce(servers, topic, bodies)
        opts = {
            "bootstrap_servers": [servers],
            "topics": [topic],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
        }
        receiver_k = build(KafkaReceiver, {**opts, **FAST, "idle_timeout": 1.5, **options})
        return await _read(receiver_k, run_ctx)

    yield send
    for step in cleanup:
        await step()


async def _amqp_delete(names: dict[str, str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(URL)
    channel = await connection.channel()
    await channel.queue_delete(names["queue"])
    await channel.exchange_delete(names["exchange"])
    await connection.close()


BOM = b"\xef\xbb\xbf"


async def test_csv_bodies_with_a_byte_order_mark_a_huge_field_or_bad_rows(
    deliver: Deliver,
) -> None:
    huge = "x" * 200_000
    table, errors = await deliver(
        [
            BOM + b"id,name\n1,ann\n",
            b"id,name\n2," + huge.encode() + b"\n",
            b"id,name\n3,bo,extra\n",
            b"id,name\n4,\xff\n",
        ],
        {"format": "csv", "schema": {"id": "int"}},
    )
    assert table.drop_columns([LINE_COLUMN]).to_pylist() == [
        {"id": 1, "name": "ann"},
        {"id": 2, "name": huge},
    ]
    assert [e.reason.split(": ")[1] for e in errors] == ["unreadable csv body"] * 2


async def test_json_bodies_with_a_byte_order_mark_empty_or_a_bad_line(deliver: Deliver) -> None:
    table, errors = await deliver(
        [BOM + b'{"id": 1}', b"", b'{"id": 2}', b" \n"], {"format": "json"}
    )
    assert table.drop_columns([LINE_COLUMN]).to_pylist() == [{"id": 1}, {"id": 2}]
    assert [e.reason.split(": ", 1)[1] for e in errors] == [
        "unreadable json body: the body is empty (a json body is an object or an array)"
    ] * 2

    table, errors = await deliver(
        [BOM + b'{"id": 1}\n{"id": 2}', b'{"id": 3}\n{"id": 4'], {"format": "jsonl"}
    )
    assert table.column("id").to_pylist() == [1, 2]
    assert [e.reason.split(": ", 1)[1] for e in errors] == [
        "unreadable jsonl body: Expecting ',' delimiter: line 2 column 9"
    ]
