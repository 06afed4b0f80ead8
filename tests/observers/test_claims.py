"""Several dispatchers on one database: each event is claimed by one of them at a time, a
claim left by a dispatcher that died expires and is taken over, and two real ``quiver
observers run`` processes deliver every event once between them."""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from pathlib import Path

import orjson
import pytest
import yaml

from tests.graphql.servers import QUIVER
from tests.observers.conftest import Receiver, Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _hook(receiver: Receiver) -> dict[str, object]:
    return {
        "name": "created",
        "entity": "Author",
        "on": ["insert"],
        "actions": [{"type": "webhook", "name": "crm", "url": receiver.url, "timeout": 10}],
    }


async def _authors(shop: Shop, first: int, count: int) -> None:
    inputs = ", ".join(f'{{name: "n{i}", email: "{i}@x"}}' for i in range(first, first + count))
    await shop.mutate(f"mutation {{ createAuthors(inputs: [{inputs}]) {{ id }} }}")


async def test_a_batch_claimed_by_one_dispatcher_is_not_taken_by_another(
    shop: Shop, receiver: Receiver
) -> None:
    one = await shop.dispatcher([_hook(receiver)], batch_size=5)
    two = await shop.dispatcher([_hook(receiver)], batch_size=5)
    try:
        await _authors(shop, 0, 8)
        receiver.hold = True
        first = asyncio.create_task(one.run_once())
        while len(receiver.received) < 5:
            await asyncio.sleep(0.01)
        # The first holds five events (delivering them): the second gets the other three.
        second = asyncio.create_task(two.run_once())
        while len(receiver.received) < 8:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # nothing more arrives
        assert len(receiver.received) == 8
        receiver.hold = False
        receiver.release.set()
        assert await first == 5
        assert await second == 3
        assert await two.run_once() == 0
        keys = [r.headers["idempotency-key"] for r in receiver.received]
        assert len(keys) == 8 and len(set(keys)) == 8
        assert sorted(orjson.loads(r.body)["after"]["name"] for r in receiver.received) == sorted(
            f"n{i}" for i in range(8)
        )
        assert await one.store.claimed() == []  # released once the batches were done
    finally:
        await one.close()
        await two.close()


async def test_an_expired_claim_is_taken_over_and_a_live_one_is_not(
    shop: Shop, receiver: Receiver
) -> None:
    dead = await shop.dispatcher([_hook(receiver)])
    alive = await shop.dispatcher([_hook(receiver)])
    try:
        await _authors(shop, 0, 3)
        entities = ["Author"]
        # A dispatcher that died right after claiming: its claim lasts one more second.
        got = await dead.store.claim(entities, 3600, 2, "gone", "t-gone", time.time() + 1)
        assert [e.id for e in got] == [1, 2]
        assert await alive.run_once() == 1  # event 3 only: 1 and 2 are claimed
        assert [orjson.loads(r.body)["event_id"] for r in receiver.received] == [3]
        await asyncio.sleep(1.1)
        assert await alive.run_once() == 2  # expired: taken over
        ids = sorted(orjson.loads(r.body)["event_id"] for r in receiver.received)
        assert ids == [1, 2, 3]
    finally:
        await alive.close()
        await dead.close()


def _config(tmp_path: Path, shop: Shop, receiver: Receiver) -> str:
    path = tmp_path / "quiver.yaml"
    doc = {
        "database": {"url": shop.url},
        "observers": [_hook(receiver)],
        "dispatcher": {"poll_interval": 0.05, "batch_size": 10, "concurrency": 4},
    }
    path.write_text(yaml.safe_dump(doc))
    return str(path)


async def test_two_dispatcher_processes_deliver_every_event_once(
    shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    total = 300
    cfg = _config(tmp_path, shop, receiver)
    receiver.delay = 0.005  # both processes are busy at once
    for first in range(0, total, 100):
        await _authors(shop, first, 100)
    procs = [
        await asyncio.create_subprocess_exec(
            QUIVER, "observers", "run", "-c", cfg, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 120
        while len(receiver.received) < total and time.monotonic() < deadline:
            assert all(p.returncode is None for p in procs), "a dispatcher exited"
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything delivered twice arrives by now
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
        errors = [(await asyncio.wait_for(p.communicate(), 30))[1].decode() for p in procs]
    keys = collections.Counter(r.headers["idempotency-key"] for r in receiver.received)
    twice = {k: n for k, n in keys.items() if n > 1}
    assert len(keys) == total, errors
    assert twice == {}, errors
