"""Mutations through the GraphQL engine reach a real webhook receiver through the dispatcher,
with a signature, a stable idempotency key, retries, a dead-letter table and redelivery after
a dispatcher stopped between delivery and its ledger row."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import signal
import sys
import time
from typing import Any

import orjson
import pytest

from tests.conftest import ChinookDb
from tests.observers.conftest import Receiver, Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")

SECRET = "s3cret"


def _hook(receiver: Receiver, **kw: Any) -> dict[str, Any]:
    return {
        "name": "bio-set",
        "entity": "Author",
        "on": ["update"],
        "when": "changed(bio) && bio != null && country == 'NZ'",
        "actions": [{"type": "webhook", "url": receiver.url, "secret": SECRET, "timeout": 5}],
        **kw,
    }


def _verify(headers: dict[str, str], body: bytes) -> None:
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-quiver-signature"] == f"sha256={expected}"


async def _seed(shop: Shop) -> None:
    await shop.mutate(
        'mutation { createAuthors(inputs: [{name: "A", email: "a@x"},'
        ' {name: "B", email: "b@x", country: "AU"}]) { id } }'
    )


async def test_a_mutation_is_delivered_signed_to_the_webhook(
    shop: Shop, receiver: Receiver
) -> None:
    dispatcher = await shop.dispatcher([_hook(receiver)])
    try:
        await _seed(shop)
        await shop.mutate('mutation { updateAuthors(where: {}, set: {bio: "hi"}) { id } }')
        await dispatcher.run_once()
        [got] = receiver.received  # B is in AU, the inserts are not updates
        _verify(got.headers, got.body)
        event = orjson.loads(got.body)
        assert event["entity"] == "Author" and event["operation"] == "update"
        assert event["after"]["name"] == "A" and event["after"]["bio"] == "hi"
        assert event["before"]["bio"] is None and event["changed_fields"] == ["bio"]
        assert got.headers["idempotency-key"] == f"{event['event_id']}:bio-set:webhook0"
        # Nothing is delivered twice once the ledger has it.
        assert await dispatcher.run_once() == 0
        assert len(receiver.received) == 1
        assert dispatcher.delivered == 1
    finally:
        await dispatcher.close()


async def test_a_false_condition_delivers_nothing_and_finishes_the_event(
    shop: Shop, receiver: Receiver
) -> None:
    dispatcher = await shop.dispatcher([_hook(receiver, when="bio == 'never'")])
    try:
        await _seed(shop)
        await shop.mutate('mutation { updateAuthors(where: {}, set: {bio: "hi"}) { id } }')
        assert await dispatcher.run_once() == 4  # two inserts, two updates
        assert await dispatcher.run_once() == 0
        assert receiver.received == []
    finally:
        await dispatcher.close()


async def test_server_errors_are_retried_then_dead_lettered_and_dlq_retry_delivers(
    shop: Shop, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503, 500]
    dispatcher = await shop.dispatcher([_hook(receiver)])
    try:
        await _seed(shop)
        await shop.mutate('mutation { updateAuthor(id: 1, set: {bio: "hi"}) { id } }')
        await dispatcher.run_once()
        assert len(receiver.received) == 3  # max_attempts
        keys = {r.headers["idempotency-key"] for r in receiver.received}
        assert len(keys) == 1
        [dead] = await dispatcher.store.dead_letters()
        assert dead.attempts == 3 and "500" in dead.error
        assert dead.idempotency_key == keys.pop()
        assert await dispatcher.run_once() == 0  # dead is final: no further delivery
        assert len(receiver.received) == 3
        await dispatcher.redeliver(dead)
        assert len(receiver.received) == 4
        last = receiver.received[-1]
        _verify(last.headers, last.body)
        assert last.headers["idempotency-key"] == dead.idempotency_key
        assert await dispatcher.store.dead_letters() == []
    finally:
        await dispatcher.close()


async def test_a_client_error_is_dead_lettered_without_retry(
    shop: Shop, receiver: Receiver
) -> None:
    receiver.statuses = [400]
    dispatcher = await shop.dispatcher([_hook(receiver)])
    try:
        await _seed(shop)
        await shop.mutate('mutation { updateAuthor(id: 1, set: {bio: "hi"}) { id } }')
        await dispatcher.run_once()
        assert len(receiver.received) == 1
        [dead] = await dispatcher.store.dead_letters()
        assert dead.attempts == 1 and "400" in dead.error
        assert await dispatcher.store.purge(dead.id) == 1
        assert await dispatcher.store.dead_letters() == []
    finally:
        await dispatcher.close()


async def test_a_dispatcher_stopped_before_its_ledger_write_redelivers_with_the_same_key(
    shop: Shop, receiver: Receiver
) -> None:
    first = await shop.dispatcher([_hook(receiver)])
    await _seed(shop)
    assert await first.run_once() == 2  # the inserts: finished, nothing to deliver
    await shop.mutate('mutation { updateAuthor(id: 1, set: {bio: "hi"}) { id } }')
    receiver.hold = True
    run = asyncio.create_task(first.run_once())
    await asyncio.wait_for(receiver.arrived.wait(), 10)
    run.cancel()  # the receiver has the event; the ledger does not
    with pytest.raises(asyncio.CancelledError):
        await run
    await first.close()
    receiver.hold = False
    receiver.release.set()
    second = await shop.dispatcher([_hook(receiver)])
    try:
        assert await second.run_once() == 1
        assert len(receiver.received) == 2
        a, b = receiver.received
        assert a.headers["idempotency-key"] == b.headers["idempotency-key"]
        assert a.body == b.body
        assert await second.run_once() == 0
    finally:
        await second.close()


async def test_changes_of_other_entities_and_operations_are_not_delivered(
    shop: Shop, receiver: Receiver
) -> None:
    hooks = [
        _hook(receiver, name="deleted", on=["delete"], when="name == 'B'"),
        _hook(receiver, name="books", entity="Book", on=["insert"], when="pages > 100"),
    ]
    dispatcher = await shop.dispatcher(hooks)
    try:
        await _seed(shop)
        await shop.mutate(
            'mutation { createBooks(inputs: [{authorId: 1, title: "T", pages: 50},'
            ' {authorId: 1, title: "U", pages: 500}]) { id } }'
        )
        await shop.mutate('mutation { deleteAuthors(where: {country: {eq: "AU"}}) { id } }')
        await dispatcher.run_once()
        events = sorted(
            (orjson.loads(r.body)["observer"], orjson.loads(r.body)["operation"])
            for r in receiver.received
        )
        assert events == [("books", "insert"), ("deleted", "delete")]
        book = next(orjson.loads(r.body) for r in receiver.received if b'"books"' in r.body)
        assert book["after"]["title"] == "U"
    finally:
        await dispatcher.close()


async def test_the_dispatcher_starts_after_a_writer_died_mid_transaction(
    shop: Shop, receiver: Receiver
) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("a rollback journal left behind is SQLite's")
    await _seed(shop)
    path = shop.url.removeprefix("sqlite:///")
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA cache_size = 1')\n"  # spill to the file: the journal is hot
        "c.execute('BEGIN IMMEDIATE')\n"
        "c.execute(\"UPDATE authors SET bio = 'half'\")\n"
        "c.execute('CREATE TABLE filler (b BLOB)')\n"
        "c.executemany('INSERT INTO filler VALUES (?)', [(b'x' * 4000,)] * 500)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n",
        path, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert writer.stdout is not None
    assert await asyncio.wait_for(writer.stdout.readline(), 30) == b"ready\n"
    writer.send_signal(signal.SIGKILL)
    await writer.wait()
    dispatcher = await shop.dispatcher([_hook(receiver, on=["insert"], when="")])
    try:
        assert await dispatcher.run_once() == 2
        assert len(receiver.received) == 2
        assert shop.runner.sql("SELECT COUNT(*) FROM authors WHERE bio = 'half'") == [(0,)]
    finally:
        await dispatcher.close()


async def test_ledger_rows_older_than_twice_the_lookback_are_pruned(
    shop: Shop, receiver: Receiver
) -> None:
    dispatcher = await shop.dispatcher([_hook(receiver)], lookback=3600)
    try:
        await _seed(shop)
        assert await dispatcher.run_once() == 2
        ledger = dispatcher.settings.ledger_table
        shop.runner.sql(
            f"UPDATE {ledger} SET updated_at = ? WHERE event_id = 1",
            ("2020-01-01T00:00:00.000000+00:00",),
        )
        assert await dispatcher.store.prune(3600) == 1
        rows = shop.runner.sql(f"SELECT event_id FROM {ledger} ORDER BY event_id")
        assert [r[0] for r in rows] == [2]
    finally:
        await dispatcher.close()


async def test_a_change_committed_after_a_later_one_is_still_delivered(
    shop: Shop, receiver: Receiver
) -> None:
    if shop.dialect == "sqlite":
        pytest.skip("SQLite commits one writing transaction at a time")
    dispatcher = await shop.dispatcher([_hook(receiver, on=["insert"], when="")])
    slow = ChinookDb(shop.dialect, shop.url)._connect()
    try:
        with slow.cursor() as cur:
            cur.execute("BEGIN" if shop.dialect == "postgresql" else "START TRANSACTION")
            cur.execute(
                "INSERT INTO quiver_change_log (entity, entity_key, operation, after_image,"
                " changed_fields, transaction_id) VALUES (%s, %s, %s, %s, %s, %s)",
                ("Author", '{"id": 99}', "insert", '{"id": 99, "name": "late"}', '["name"]', "t"),
            )
            await _seed(shop)  # larger ids, committed first
            await dispatcher.run_once()
            assert sorted(orjson.loads(r.body)["after"]["name"] for r in receiver.received) == [
                "A",
                "B",
            ]
            cur.execute("COMMIT")
        await dispatcher.run_once()
        late = orjson.loads(receiver.received[-1].body)
        assert late["after"]["name"] == "late" and len(receiver.received) == 3
        first_seen = min(orjson.loads(r.body)["event_id"] for r in receiver.received[:2])
        assert late["event_id"] < first_seen
    finally:
        slow.close()
        await dispatcher.close()


async def test_ordered_dispatch_delivers_in_change_order(shop: Shop, receiver: Receiver) -> None:
    dispatcher = await shop.dispatcher(
        [_hook(receiver, on=["insert"], when="")], ordered=True, concurrency=8
    )
    try:
        inputs = ", ".join(f'{{name: "n{i}", email: "{i}@x"}}' for i in range(12))
        await shop.mutate(f"mutation {{ createAuthors(inputs: [{inputs}]) {{ id }} }}")
        assert await dispatcher.run_once() == 12
        ids = [orjson.loads(r.body)["event_id"] for r in receiver.received]
        assert ids == sorted(ids) and len(ids) == 12
    finally:
        await dispatcher.close()


async def test_an_event_whose_dead_letter_cannot_be_written_stays_pending(
    shop: Shop, receiver: Receiver
) -> None:
    dispatcher = await shop.dispatcher([_hook(receiver)])
    try:
        await _seed(shop)
        await dispatcher.run_once()
        await shop.mutate('mutation { updateAuthor(id: 1, set: {bio: "hi"}) { id } }')
        receiver.statuses = [500, 500, 500]
        shop.runner.sql(f"DROP TABLE {dispatcher.settings.dead_letter_table}")
        with pytest.raises(Exception, match=dispatcher.settings.dead_letter_table):
            await dispatcher.run_once()
        assert len(receiver.received) == 3
        await dispatcher.store.ensure()
        assert await dispatcher.run_once() == 1  # still pending: delivered now
        assert len(receiver.received) == 4
        assert await dispatcher.store.dead_letters() == []
        assert await dispatcher.run_once() == 0
    finally:
        await dispatcher.close()


async def test_an_idle_dispatcher_on_postgresql_is_woken_by_the_writers_notify(
    shop: Shop, receiver: Receiver
) -> None:
    if shop.dialect != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    # Polling alone would take a minute: the event arrives long before.
    dispatcher = await shop.dispatcher([_hook(receiver, on=["insert"], when="")], poll_interval=60)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    try:
        await asyncio.sleep(1.0)  # the first scans found nothing: the lanes idle
        assert receiver.received == []
        started = time.monotonic()
        await _seed(shop)
        while len(receiver.received) < 2 and time.monotonic() - started < 10:
            await asyncio.sleep(0.01)
        assert len(receiver.received) == 2
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        await running
        await dispatcher.close()
