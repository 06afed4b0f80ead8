"""What a broken or hostile producer sends, through the real brokers (Mosquitto, RabbitMQ,
NATS JetStream, Kafka) and the WebSocket receiver: JSON nested thousands of levels deep,
integers of thousands of digits, bytes that are not UTF-8, bodies past ``max_message_bytes``.
Each such message is a rejected row whose reason says what is wrong; the receiver goes on,
the messages around it reach the sink once, and the refused one is settled: a later run of
the same queue, durable consumer, session or group is not sent it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import orjson
import pyarrow as pa
import pytest

from quiver.ingest.kafka import KafkaReceiver
from quiver.ingest.websocket import WebSocketReceiver
from quiver.pipeline.component import RunContext
from quiver.pipeline.json_text import MAX_JSON_DEPTH

from .conftest import (
    FAST,
    KAFKA_SESSION,
    Channel,
    build,
    eventually,
    kafka_produce,
    kafka_topic,
    unique,
)
from .conftest import read_all as take
from .test_message_bodies import reasons


def nested(levels: int, inner: bytes = b"1") -> bytes:
    """A JSON value of ``levels`` arrays in each other around ``inner``."""
    return b"[" * levels + inner + b"]" * levels


async def test_poison_messages_are_refused_once_and_the_good_ones_around_them_arrive_once(
    channel: Channel, run_ctx: RunContext
) -> None:
    poison = [
        b'{"id": "\xff\xfe"}',  # not UTF-8
        b'{"id": ',  # not JSON
        b"42",  # not an object
        b"",  # empty
        b"id,name\n1,ann\n",  # CSV sent to a json receiver
        b'{"id": 9, "id": 10}',  # a key twice
        b'{"a": ' + nested(5_000) + b"}",  # deeper than the decoder can go
        b'{"a": ' + nested(900) + b"}",  # deeper than the limit, not the decoder
        b'{"id": ' + b"9" * 5_000 + b"}",  # more digits than an integer is read with
        b'{"id": 7, "pad": "' + b"x" * 30_000 + b'"}',  # past max_message_bytes
    ]
    good = [orjson.dumps({"id": n}) for n in range(len(poison) + 1)]
    bodies = [b for pair in zip(good, [*poison, None], strict=True) for b in pair if b is not None]
    await channel.publish(bodies)

    rows, errors = await channel.read(run_ctx, max_message_bytes=20_000)
    assert rows == [{"id": n} for n in range(len(good))]  # in order, none twice
    found = reasons(errors)  # bodies not read first, then records not fitting, by batch
    assert len(found) == len(poison)
    assert {r for r in found if "is a int" in r or "appears twice" in r} == {
        next(
            r
            for r in found
            if r.startswith("record ") and r.endswith("is a int, not a JSON object")
        ),
        next(r for r in found if "key 'id' appears twice in one JSON object" in r),
    }
    assert set(found) >= {
        "unreadable json body: not UTF-8 text: byte 0xff at line 1 column 9; send JSON as UTF-8",
        "unreadable json body: Expecting value: line 1 column 8 (char 7)",
        "unreadable json body: the body is empty (a json body is an object or an array)",
        "unreadable json body: Expecting value: line 1 column 1 (char 0)",
        "unreadable json body: it nests objects and arrays 5001 levels deep, more than the 128 a "
        "JSON document may have",
        "unreadable json body: it nests objects and arrays 901 levels deep, more than the 128 a "
        "JSON document may have",
        "unreadable json body: an integer of 5000 digits is longer than a JSON integer may be "
        "(4300 digits); send it as a string to keep it",
        "the body is 30020 bytes, more than max_message_bytes (20000); it was not read (nor "
        "kept in the rejects file): raise max_message_bytes to take it",
    }
    (too_large,) = [e for e in errors if "max_message_bytes" in e.reason]
    assert too_large.row == {"body": ""}  # the body past the limit is not kept

    # settled: neither the good messages nor the refused ones come again
    assert await channel.read(run_ctx) == ([], [])


async def test_json_as_deep_as_allowed_is_read_and_brackets_in_strings_do_not_count(
    channel: Channel, run_ctx: RunContext
) -> None:
    brackets = "[" * 5_000 + "{" * 5_000
    deepest = b'{"id": 1, "a": ' + nested(MAX_JSON_DEPTH - 1) + b"}"  # the limit, with the record
    await channel.publish([deepest, orjson.dumps({"id": 2, "text": brackets})])
    rows, errors = await channel.read(run_ctx, schema={"id": "int", "a": "json", "text": "str"})
    assert errors == []
    assert [r["id"] for r in rows] == [1, 2]
    assert orjson.loads(rows[0]["a"]) == orjson.loads(nested(MAX_JSON_DEPTH - 1))
    assert rows[1]["text"] == brackets


async def test_deep_json_lines_are_refused_naming_the_body(
    channel: Channel, run_ctx: RunContext
) -> None:
    await channel.publish([b'{"id": 1}\n{"a": ' + nested(3_000) + b"}\n", b'{"id": 2}'])
    rows, errors = await channel.read(run_ctx, format="jsonl")
    assert rows == [{"id": 2}]
    assert reasons(errors) == [
        "unreadable jsonl body: it nests objects and arrays 3001 levels deep, more than the 128 a "
        "JSON document may have"
    ]


async def test_a_record_past_max_message_bytes_is_refused_in_otlp_formats_too(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [b"\x0a" * 5_000, b"garbage, not protobuf"])
    r: KafkaReceiver = build(
        KafkaReceiver,
        {
            "bootstrap_servers": [kafka_broker],
            "topics": [topic],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "format": "otlp_proto",
            "max_message_bytes": 1_000,
            **FAST,
            "idle_timeout": 1.5,
        },
    )
    assert (await take(r, run_ctx)).num_rows == 0
    errors = r.take_errors()
    await r.commit()
    await r.close()
    too_large, garbage = reasons(errors)
    assert too_large.startswith("the body is 5000 bytes, more than max_message_bytes (1000);")
    assert garbage.startswith(
        "unreadable otlp_proto record: the body is not a valid ExportTraceServiceRequest "
        "protobuf message"
    )


async def test_a_websocket_message_too_large_closes_its_client_and_is_logged(
    run_ctx: RunContext, tmp_path: Path
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosedError

    r: WebSocketReceiver = build(
        WebSocketReceiver, {"port": 0, "batch_seconds": 0.2, "max_message_bytes": 10_000}
    )
    stream = r.batches(run_ctx)
    batches: list[pa.RecordBatch] = []

    async def read() -> None:
        async for b in stream:
            batches.append(b)

    reading = asyncio.ensure_future(read())
    await eventually(lambda: r._server is not None)
    async with (
        connect(f"ws://127.0.0.1:{r.port}/") as big,
        connect(f"ws://127.0.0.1:{r.port}/") as other,
    ):
        await big.send('{"n": 1}')
        await big.send('{"n": 2, "pad": "' + "x" * 20_000 + '"}')
        with pytest.raises(ConnectionClosedError):
            await big.recv()
        assert big.close_code == 1009
        await other.send('{"n": 3}\n{"a": ' + "[" * 3_000 + "]" * 3_000 + "}")
        await other.send('{"n": 4}')
        await eventually(lambda: sum(b.num_rows for b in batches) == 2 and r.rejected == 1)
        r.drain()
        await reading
        errors = r.take_errors()
        await r.commit()
        assert orjson.loads(await other.recv()) == {"rejected": [1]}
        assert orjson.loads(await other.recv()) == {"acked": 2}
    await r.close()
    assert pa.Table.from_batches(batches).column("n").to_pylist() == [1, 4]
    assert "more than the 128 a JSON document may have" in errors[0].reason
    logs: list[tuple[str, str]] = run_ctx.logs  # type: ignore[attr-defined]
    closed = [m for level, m in logs if "larger than max_message_bytes (10000)" in m]
    assert len(closed) == 1 and "its message 2 is larger" in closed[0]


async def test_a_websocket_text_message_that_is_not_utf8_closes_its_client_and_is_logged(
    run_ctx: RunContext,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosedError

    r: WebSocketReceiver = build(WebSocketReceiver, {"port": 0, "batch_seconds": 0.2})
    stream = cast("AsyncGenerator[pa.RecordBatch, None]", r.batches(run_ctx))
    reading = asyncio.ensure_future(anext(stream))
    await eventually(lambda: r._server is not None)
    async with connect(f"ws://127.0.0.1:{r.port}/") as ws:
        await ws.send(b'{"n": "\xff"}', text=True)
        with pytest.raises(ConnectionClosedError):
            await ws.recv()
        assert ws.close_code == 1007
    async with connect(f"ws://127.0.0.1:{r.port}/") as ws:
        await ws.send(b'{"n": "\xff"}')  # binary: the decoder refuses it as a rejected row
        await ws.send('{"n": 2}')
        batch = await asyncio.wait_for(reading, 10)
        r.drain()
        await stream.aclose()
        errors = r.take_errors()
        await r.commit()
        assert orjson.loads(await ws.recv()) == {"rejected": [1]}
    await r.close()
    assert batch.column("n").to_pylist() == [2]
    assert "not UTF-8 text: byte 0xff at line 1 column 8" in errors[0].reason
    logs: list[tuple[str, str]] = run_ctx.logs  # type: ignore[attr-defined]
    (closed,) = [m for level, m in logs if level == "warning" and "(code 1007" in m]
    assert "its message 1 broke the WebSocket protocol" in closed
