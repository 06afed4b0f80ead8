"""The rabbitmq source and sink against the real broker at 127.0.0.1:5672."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any, cast

import orjson
import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.rabbitmq import RabbitMqSink
from quiver.pipeline.sources.rabbitmq import RabbitMqSource
from quiver.runtime.errors import PermanentError, RetryableError

from ..conftest import AMQP_URL, ScratchQueue, build, free_port, write_all

FAST = {"idle_timeout": 0.5, "batch_seconds": 0.2}


def people(n: int) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": list(range(1, n + 1)),
            "name": [f"p{i}" for i in range(1, n + 1)],
            LINE_COLUMN: pa.array(range(1, n + 1), pa.int64()),
        }
    )


def source_for(q: ScratchQueue, **options: Any) -> RabbitMqSource:
    source: RabbitMqSource = build(RabbitMqSource, {"queue": q.name, **FAST, **options})
    return source


async def test_published_rows_come_back_in_batches_by_count(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    sink = build(RabbitMqSink, {"routing_key": rabbit_queue.name})
    await write_all(sink, [people(10)], run_ctx)
    assert sink.published == 10 and await rabbit_queue.depth() == 10

    source = source_for(rabbit_queue, batch_messages=4)
    batches = [b async for b in source.batches(run_ctx)]
    await source.commit()
    assert [b.num_rows for b in batches] == [4, 4, 2]
    table = pa.Table.from_batches(batches)
    assert table.column("id").to_pylist() == list(range(1, 11))
    assert table.column(LINE_COLUMN).to_pylist() == list(range(1, 11))
    assert source.acknowledged == 10
    assert await rabbit_queue.depth() == 0


async def test_messages_are_acknowledged_only_after_commit(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    await rabbit_queue.publish(*(orjson.dumps({"n": i}) for i in range(5)))
    source = source_for(rabbit_queue)
    assert sum([b.num_rows async for b in source.batches(run_ctx)]) == 5
    await source.abort()  # a sink failed: nothing may be lost
    assert await rabbit_queue.depth() == 5

    again = source_for(rabbit_queue)
    assert sum([b.num_rows async for b in again.batches(run_ctx)]) == 5
    await again.commit()
    assert await rabbit_queue.depth() == 0


async def test_batch_is_handed_on_after_batch_seconds(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    await rabbit_queue.publish(b'{"n": 1}', b'{"n": 2}', b'{"n": 3}')
    source = source_for(rabbit_queue, batch_messages=1000, batch_seconds=0.3, idle_timeout=2)
    started = time.monotonic()
    stream = cast(AsyncGenerator[pa.RecordBatch, None], source.batches(run_ctx))
    first = await anext(stream)
    waited = time.monotonic() - started
    assert first.num_rows == 3 and 0.25 <= waited < 1.5
    await stream.aclose()
    await source.commit()


async def test_max_messages_bounds_a_run(rabbit_queue: ScratchQueue, run_ctx: RunContext) -> None:
    await rabbit_queue.publish(*(orjson.dumps({"n": i}) for i in range(7)))
    source = source_for(rabbit_queue, max_messages=5, batch_messages=2)
    assert [b.num_rows async for b in source.batches(run_ctx)] == [2, 2, 1]
    await source.commit()
    assert await rabbit_queue.depth() == 2


async def test_unreadable_message_is_dead_lettered_and_the_rest_flow(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    await rabbit_queue.publish(b'{"n": 1}', b"not json", b'[{"n": 2}, {"n": 3}]', b'{"n": "x"}')
    source = source_for(rabbit_queue, schema={"n": "int"})
    batches = [b async for b in source.batches(run_ctx)]
    await source.commit()
    assert pa.Table.from_batches(batches).column("n").to_pylist() == [1, 2, 3]
    assert source.rejected == 2
    assert sorted(await rabbit_queue.drain(rabbit_queue.dead_letters)) == [
        b"not json",
        b'{"n": "x"}',
    ]
    warnings = [m for level, m in run_ctx.logs if level == "warning"]  # type: ignore[attr-defined]
    assert any("unreadable json body" in m for m in warnings)
    assert any("record" in m and "'x'" in m for m in warnings)


async def test_csv_messages_round_trip_with_several_rows_each(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    sink = build(
        RabbitMqSink, {"routing_key": rabbit_queue.name, "format": "csv", "rows_per_message": 4}
    )
    await write_all(sink, [people(10)], run_ctx)
    assert await rabbit_queue.depth() == 3
    source = source_for(rabbit_queue, format="csv")
    table = pa.Table.from_batches([b async for b in source.batches(run_ctx)])
    await source.commit()
    assert table.column("name").to_pylist() == [f"p{i}" for i in range(1, 11)]


async def test_jsonl_and_headerless_csv_bodies(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    await rabbit_queue.publish(b'{"a": 1}\n{"a": 2}\n')
    source = source_for(rabbit_queue, format="jsonl")
    assert [b.num_rows async for b in source.batches(run_ctx)] == [2]
    await source.commit()
    await rabbit_queue.publish(b"1;x\n2;y\n")
    source = source_for(rabbit_queue, format="csv", delimiter=";", columns=["id", "code"])
    table = pa.Table.from_batches([b async for b in source.batches(run_ctx)])
    await source.commit()
    assert table.column("code").to_pylist() == ["x", "y"]


async def test_message_properties_become_columns_on_request(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    import aio_pika

    await rabbit_queue.channel.default_exchange.publish(
        aio_pika.Message(b'[{"a": 1}, {"a": 2}]', message_id="m-1", correlation_id="c-9"),
        rabbit_queue.name,
    )
    source = source_for(
        rabbit_queue, metadata=["routing_key", "message_id", "correlation_id", "redelivered"]
    )
    table = pa.Table.from_batches([b async for b in source.batches(run_ctx)])
    await source.commit()
    assert table.column("amqp_message_id").to_pylist() == ["m-1", "m-1"]
    assert table.column("amqp_correlation_id").to_pylist() == ["c-9", "c-9"]
    assert table.column("amqp_routing_key").to_pylist() == [rabbit_queue.name] * 2
    assert table.column("amqp_redelivered").to_pylist() == [False, False]


async def test_missing_queue_is_permanent_with_a_fix(run_ctx: RunContext) -> None:
    source = build(RabbitMqSource, {"queue": "no-such-queue-here", **FAST})
    with pytest.raises(PermanentError) as err:
        _ = [b async for b in source.batches(run_ctx)]
    assert "declare: true" in err.value.details[0].fix


async def test_retried_write_reconnects_and_skips_confirmed_messages(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    sink = build(RabbitMqSink, {"routing_key": rabbit_queue.name})
    batch = people(4)
    await sink.open(batch.schema, run_ctx)
    await sink.write(batch)
    await sink._connection.close()  # the connection drops (e.g. the broker restarted)
    # the write failed after the broker confirmed three messages: its confirm of the last
    # message was lost, so the engine sees an error and retries the batch
    sink._progress = (id(batch), {0, 1, 2})
    await sink.write(batch)  # the engine retries the same batch
    await sink.commit()
    assert await rabbit_queue.depth() == 5  # four messages and one duplicate, nothing lost
    bodies = await rabbit_queue.drain()
    assert [orjson.loads(b)["id"] for b in bodies] == [1, 2, 3, 4, 4]


async def test_a_later_batch_reusing_a_written_batchs_id_is_published_whole(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    # CPython hands a freed batch's id() to the next object: confirmed-message progress must
    # not survive a write that succeeded, or the next batch would be skipped as a retry.
    sink = build(RabbitMqSink, {"routing_key": rabbit_queue.name})
    batch = people(3)
    await sink.open(batch.schema, run_ctx)
    await sink.write(batch)
    await sink.write(batch)  # a new write of an object with the same id()
    await sink.commit()
    assert sink.published == 6
    bodies = await rabbit_queue.drain()
    assert sorted(orjson.loads(b)["id"] for b in bodies) == [1, 1, 2, 2, 3, 3]


async def test_unroutable_publish_fails_instead_of_vanishing(run_ctx: RunContext) -> None:
    sink = build(RabbitMqSink, {"exchange": "amq.direct", "routing_key": "nobody-listens"})
    with pytest.raises(PermanentError, match="publishing"):
        await write_all(sink, [people(1)], run_ctx)


async def test_unreachable_broker_is_retryable(run_ctx: RunContext) -> None:
    url = f"amqp://guest:secret@127.0.0.1:{free_port()}/"
    sink = build(RabbitMqSink, {"url": url, "routing_key": "q"})
    with pytest.raises(RetryableError) as err:
        await write_all(sink, [people(1)], run_ctx)
    assert "secret" not in str(err.value)


def test_default_url_is_the_local_broker() -> None:
    source = build(RabbitMqSource, {"queue": "q"})
    assert source.cfg.url == AMQP_URL


async def test_json_nested_too_deeply_is_dead_lettered_and_the_rest_flow(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    deep = b'{"a": ' + b"[" * 900 + b"]" * 900 + b"}"
    await rabbit_queue.publish(b'{"n": 1}', deep, b"[" * 5000 + b"]" * 5000, b'{"n": 2}')
    source = source_for(rabbit_queue)
    batches = [b async for b in source.batches(run_ctx)]
    await source.commit()
    assert pa.Table.from_batches(batches).column("n").to_pylist() == [1, 2]
    assert source.rejected == 2
    assert len(await rabbit_queue.drain(rabbit_queue.dead_letters)) == 2
    warnings = [m for level, m in run_ctx.logs if level == "warning"]  # type: ignore[attr-defined]
    assert sum("more than the 128 a JSON document may have" in m for m in warnings) == 2
