"""The amqp receiver against RabbitMQ at 127.0.0.1:5672."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from quiver.ingest.amqp import AmqpReceiver
from quiver.pipeline.component import LINE_COLUMN, RunContext

from .conftest import build, unique
from .conftest import read_all as take

URL = "amqp://guest:guest@127.0.0.1:5672/"


@pytest_asyncio.fixture(loop_scope="function")
async def names() -> AsyncIterator[dict[str, str]]:
    """An exchange and queue names of one test, deleted afterwards."""
    import aio_pika

    n = {"exchange": unique("x"), "queue": unique("q")}
    yield n
    connection = await aio_pika.connect(URL)
    channel = await connection.channel()
    await channel.queue_delete(n["queue"])
    await channel.exchange_delete(n["exchange"])
    await connection.close()


async def publish(exchange: str, messages: list[tuple[str, bytes]]) -> None:
    import aio_pika

    connection = await aio_pika.connect(URL)
    channel = await connection.channel()
    ex = await channel.declare_exchange(exchange, "topic", durable=True)
    for key, body in messages:
        await ex.publish(aio_pika.Message(body), key)
    await connection.close()


def receiver(names: dict[str, str], **options: Any) -> AmqpReceiver:
    r: AmqpReceiver = build(
        AmqpReceiver,
        {**names, "idle_timeout": 0.5, "batch_seconds": 0.2, **options},
    )
    return r


async def prepare(names: dict[str, str], ctx: RunContext, **options: Any) -> None:
    """Declare and bind the queue, as a first run does."""
    r = receiver(names, idle_timeout=0.1, **options)
    await take(r, ctx)
    await r.close()


async def test_bindings_route_into_the_queue_and_acks_follow_the_commit(
    names: dict[str, str], run_ctx: RunContext
) -> None:
    opts = {"bindings": ["orders.*"], "metadata": ["routing_key"]}
    await prepare(names, run_ctx, **opts)
    await publish(
        names["exchange"],
        [("orders.eu", b'{"id": 1}'), ("orders.us", b'{"id": 2}'), ("stock.eu", b'{"id": 3}')],
    )
    first = receiver(names, **opts)
    rows = (await take(first, run_ctx)).drop_columns([LINE_COLUMN]).to_pylist()
    assert rows == [
        {"id": 1, "amqp_routing_key": "orders.eu"},
        {"id": 2, "amqp_routing_key": "orders.us"},
    ]
    await first.abort()  # a failed run hands them back
    await first.close()

    again = receiver(names, **opts)
    assert (await take(again, run_ctx)).num_rows == 2
    await again.commit()
    await again.close()
    assert again.acknowledged == 2

    after = receiver(names, **opts)
    assert (await take(after, run_ctx)).num_rows == 0
    await after.close()


async def test_a_closed_connection_without_commit_loses_nothing(
    names: dict[str, str], run_ctx: RunContext
) -> None:
    await prepare(names, run_ctx)
    await publish(names["exchange"], [("k", b'{"n": %d}' % i) for i in range(30)])
    killed = receiver(names, batch_messages=10)
    await take(killed, run_ctx)
    await killed.close()  # as a killed process: no commit, no abort
    again = receiver(names)
    assert sorted((await take(again, run_ctx)).column("n").to_pylist()) == list(range(30))
    await again.commit()
    await again.close()


async def test_bad_bodies_are_refused_and_dead_lettered(
    names: dict[str, str], run_ctx: RunContext
) -> None:
    import aio_pika

    dead = unique("dlx")
    opts = {"dead_letter_exchange": dead}
    connection = await aio_pika.connect(URL)
    channel = await connection.channel()
    dlx = await channel.declare_exchange(dead, "fanout", durable=True)
    dlq = await channel.declare_queue(unique("dlq"), durable=False, auto_delete=True)
    await dlq.bind(dlx)
    await prepare(names, run_ctx, **opts)
    await publish(names["exchange"], [("k", b'{"n": 1}'), ("k", b"not json"), ("k", b'{"n": 3}')])
    r = receiver(names, **opts)
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert table.column("n").to_pylist() == [1, 3]
    assert len(errors) == 1 and "unreadable json body" in errors[0].reason
    assert errors[0].row == {"body": "not json"}
    got = await dlq.get(timeout=5)
    assert got.body == b"not json"
    await channel.exchange_delete(dead)
    await connection.close()


async def test_a_commit_holds_for_a_consumer_that_comes_at_once(
    names: dict[str, str], run_ctx: RunContext
) -> None:
    await prepare(names, run_ctx)
    count = 400
    await publish(names["exchange"], [("k", b'{"n": %d}' % i) for i in range(count)])
    r = receiver(names, batch_messages=count, prefetch=count)
    assert sorted((await take(r, run_ctx)).column("n").to_pylist()) == list(range(count))
    await r.commit()
    await r.close()
    after = receiver(names)
    again = await take(after, run_ctx)
    await after.close()
    assert again.num_rows == 0, f"{again.num_rows} acknowledged message(s) were sent again"


async def test_a_refused_login_is_permanent_and_keeps_the_password_out(
    names: dict[str, str], run_ctx: RunContext
) -> None:
    from quiver.runtime.errors import PermanentError

    r = receiver(names, url="amqp://guest:not-the-password@127.0.0.1:5672/")
    with pytest.raises(PermanentError) as err:
        await take(r, run_ctx)
    await r.close()
    text = str(err.value) + "".join(d.fix or "" for d in err.value.details)
    assert "not-the-password" not in text
    assert "login" in text.lower() or "refused" in text.lower() or "access" in text.lower(), text
