"""Fault test (slow, run by hand with ``-m slow``): writers commit changes out of id order while
the subscriber is killed and comes back with its last cursor, again and again; in the end every
committed change was delivered exactly once."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import orjson
import pytest

from tests.conftest import ChinookDb, Dialect
from tests.graphql.subscription_fixtures import LiveServer, NodeClient, live_server, node_modules

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

WATCH = """
subscription ($after: String) {
  authorChanged(after: $after, where: {country: {eq: "FR"}}) { id cursor after { name } }
}
"""


async def mutations(live: LiveServer, worker: int, count: int) -> None:
    for n in range(count):
        await live.data(
            "mutation ($i: AuthorCreateInput!) { createAuthor(input: $i) { id } }",
            {"i": {"name": f"m{worker}-{n}", "email": f"m{worker}-{n}@x.org", "country": "FR"}},
        )
        await asyncio.sleep(random.uniform(0, 0.01))


def slow_transactions(dialect: Dialect, url: str, worker: int, count: int) -> None:
    """Transactions that take a change id, then wait before committing (or rolling back)."""
    import time

    db = ChinookDb(dialect, url)
    try:
        for n in range(count):
            image = {"id": -1, "name": f"s{worker}-{n}", "email": "-", "country": "FR"}
            db.query("BEGIN")
            db.query(
                "INSERT INTO quiver_change_log (entity, entity_key, operation, after_image,"
                " changed_fields, transaction_id) VALUES ('Author', '{}', 'insert', %s, '[]', %s)",
                (orjson.dumps(image).decode(), f"s{worker}-{n}"),
            )
            time.sleep(random.uniform(0, 0.4))
            db.query("ROLLBACK" if n % 7 == 3 else "COMMIT")
    finally:
        db.close()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_no_committed_change_is_lost_across_kills_and_out_of_order_commits(
    dialect: Dialect, request: pytest.FixtureRequest
) -> None:
    modules: Path = node_modules()
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    async with live_server(dialect, url, database={"pool_max": 8}) as live:
        delivered: list[int] = []
        cursor: str | None = None
        # the change log exists, and the first client starts before any write
        client = await NodeClient.start(modules, live.url, WATCH, {"after": cursor})
        await client.connected()
        await live.active(1)
        writers = [
            *(asyncio.create_task(mutations(live, w, 150)) for w in range(3)),
            *(asyncio.to_thread(slow_transactions, dialect, url, w, 40) for w in range(3)),
        ]
        done = asyncio.ensure_future(asyncio.gather(*writers))
        kills = 0
        while True:
            finished = done.done()
            await asyncio.sleep(random.uniform(0.2, 0.8) if not finished else 3)
            await client.kill()  # SIGKILL; what it printed before is still in the pipe
            assert client.proc.stdout is not None
            for line in (await asyncio.wait_for(client.proc.stdout.read(), 20)).splitlines():
                event = orjson.loads(line)
                if event["event"] == "next":
                    change = event["payload"]["data"]["authorChanged"]
                    delivered.append(int(change["id"]))
                    cursor = change["cursor"]
                else:
                    assert event["event"] == "closed", event
            kills += 1
            if finished:
                break
            client = await NodeClient.start(modules, live.url, WATCH, {"after": cursor})
            await client.connected()  # node takes a while to start on a busy machine
        await done
        committed = [
            int(r[0])
            for r in await live.sql(
                "SELECT id FROM quiver_change_log WHERE entity = 'Author' ORDER BY id"
            )
        ]
        assert kills > 5
        assert len(committed) > 450
        assert sorted(delivered) == committed  # every one, once
