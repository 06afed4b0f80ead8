"""Fault injection (slow, run by hand with ``-m slow -s``): a writer inserts 10,000 rows
through Quiver mutations while the ``quiver observers run`` process is killed with SIGKILL at
random points 20 times and started again. Afterwards every event reached the webhook receiver
at least once, and every duplicate carried the same idempotency key and the same body.

    .venv/bin/pytest -m slow -s -n 0 tests/observers/test_fault.py -k postgresql
"""

from __future__ import annotations

import asyncio
import collections
import random
import signal
import time
from pathlib import Path

import orjson
import pytest
import yaml

from tests.graphql.servers import QUIVER
from tests.observers.conftest import Receiver, Shop

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

ROWS = 10_000
BATCH = 50  # rows per mutation
KILLS = 20


async def _write(shop: Shop) -> None:
    for first in range(0, ROWS, BATCH):
        inputs = ", ".join(
            f'{{name: "n{i}", email: "{i}@x"}}' for i in range(first, min(ROWS, first + BATCH))
        )
        await shop.mutate(f"mutation {{ createAuthors(inputs: [{inputs}]) {{ id }} }}")


async def _start(cfg: str, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            QUIVER, "observers", "run", "-c", cfg, "--lease", "1", stdout=out, stderr=out
        )


async def test_every_event_survives_twenty_sigkills_of_the_dispatcher(
    shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    cfg = tmp_path / "quiver.yaml"
    hook = {
        "name": "created",
        "entity": "Author",
        "on": ["insert"],
        "actions": [{"type": "webhook", "name": "hook", "url": receiver.url, "timeout": 10}],
    }
    settings = {"poll_interval": 0.05, "batch_size": 100, "concurrency": 16}
    doc = {"database": {"url": shop.url}, "observers": [hook], "dispatcher": settings}
    cfg.write_text(yaml.safe_dump(doc))
    log = tmp_path / "dispatcher.log"
    rng = random.Random()
    started = time.monotonic()
    proc = await _start(str(cfg), log)
    writer = asyncio.create_task(_write(shop))
    kills = 0
    try:
        while kills < KILLS:
            await asyncio.sleep(rng.uniform(0.1, 1.5))
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
            kills += 1
            proc = await _start(str(cfg), log)
        await writer
        written = time.monotonic() - started
        deadline = time.monotonic() + 600
        keys: set[str] = set()
        while time.monotonic() < deadline:
            keys = {r.headers["idempotency-key"] for r in receiver.received}
            if len(keys) >= ROWS:
                break
            assert proc.returncode is None, log.read_text()[-2000:]
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # late duplicates arrive
        elapsed = time.monotonic() - started
    finally:
        writer.cancel()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    logged = shop.runner.sql("SELECT id FROM quiver_change_log WHERE entity = 'Author'")
    assert len(logged) == ROWS
    bodies: dict[str, set[bytes]] = collections.defaultdict(set)
    for r in receiver.received:
        bodies[r.headers["idempotency-key"]].add(r.body)
    expected = {f"{row[0]}:created:hook" for row in logged}
    assert set(bodies) == expected  # every event at least once, nothing else
    assert all(len(b) == 1 for b in bodies.values())  # a duplicate is the same delivery
    for key, (body,) in bodies.items():
        assert f"{orjson.loads(body)['event_id']}:created:hook" == key
    duplicates = len(receiver.received) - len(bodies)
    print(
        f"\n[{shop.dialect}] {ROWS} events, {kills} SIGKILLs: {len(receiver.received)} deliveries,"
        f" {duplicates} duplicates ({duplicates / ROWS:.2%}); writer done after {written:.1f}s,"
        f" all delivered after {elapsed:.1f}s"
    )
