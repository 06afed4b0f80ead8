"""A busy pool answers quickly: a bounded wait for a connection, then 503 DATABASE_BUSY with
Retry-After, and connections kept for cheap queries so slow ones cannot starve them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import GraphQLApp, create_app
from quiver.schema.reflect import reflect_database
from quiver.sql.gate import ADMITTED, IN_RESERVE, ConnectionGate, SlowStatements
from tests.graphql.test_statement_timeout import execute_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

SLEEP = {
    "postgresql": "CREATE VIEW slow_view AS SELECT 1 AS id, pg_sleep(4)::text AS note",
    "mysql": "CREATE VIEW slow_view AS SELECT 1 AS id, CAST(SLEEP(4) AS CHAR) AS note",
}
SLOW = "{ slowViews { id note } }"  # cost 201: expensive
TRIVIAL = "{ item(id: 1) { id } }"  # cost 2: cheap


@pytest.fixture(params=["postgresql", "mysql"])
def database(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"fresh_{request.param}")
    execute_statements(url, ["CREATE TABLE items (id int PRIMARY KEY)", SLEEP[request.param]])
    execute_statements(url, ["INSERT INTO items VALUES (1)"])
    return url


async def _app(url: str, **database: Any) -> GraphQLApp:
    settings = QuiverSettings.model_validate(
        {
            "database": {"url": url, "pool_max": 4, "pool_timeout_ms": 500, **database},
            "graphql": {"cheap_cost": 10},
        }
    )
    app = create_app(await reflect_database(url), settings)
    await app.startup()
    return app


async def _timed(client: httpx.AsyncClient, query: str, delay: float = 0) -> tuple[float, Any]:
    await asyncio.sleep(delay)
    started = time.monotonic()
    r = await client.post("/graphql", json={"query": query})
    return time.monotonic() - started, r


async def test_slow_queries_cannot_make_a_cheap_one_wait(database: str) -> None:
    app = await _app(database, pool_reserved=1)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://q") as client:
            results = await asyncio.gather(
                *(_timed(client, SLOW) for _ in range(6)), _timed(client, TRIVIAL, delay=0.2)
            )
    finally:
        await app.shutdown()
    *slow, (trivial_s, trivial) = results
    # The cheap query took the reserved connection at once instead of queueing behind 4 s sleeps.
    assert trivial.status_code == 200, trivial.text
    assert orjson.loads(trivial.content) == {"data": {"item": {"id": 1}}}
    assert trivial_s < 2.0, f"the cheap query waited {trivial_s:.2f} s"
    # Three slow queries held the three unreserved connections; the other three waited
    # pool_timeout_ms and were told to come back.
    answered = [r for _, r in slow if r.status_code == 200]
    busy = [(s, r) for s, r in slow if r.status_code == 503]
    assert len(answered) == 3 and len(busy) == 3, [r.status_code for _, r in slow]
    for waited, r in busy:
        assert r.headers["retry-after"] == "1"
        (error,) = orjson.loads(r.content)["errors"]
        assert error["extensions"]["code"] == "DATABASE_BUSY"
        assert "database.pool_timeout_ms" in error["message"] or "busy" in error["message"]
        assert waited < 2.0, f"told busy only after {waited:.2f} s"


async def test_without_reserved_connections_a_cheap_query_is_told_busy(database: str) -> None:
    app = await _app(database, pool_reserved=0)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://q") as client:
            *_, (waited, trivial) = await asyncio.gather(
                *(_timed(client, SLOW) for _ in range(4)), _timed(client, TRIVIAL, delay=0.2)
            )
    finally:
        await app.shutdown()
    assert trivial.status_code == 503, trivial.text
    assert waited < 2.0


async def test_reserved_connections_must_leave_some_for_the_rest() -> None:
    with pytest.raises(ValueError, match="pool_reserved"):
        QuiverSettings.model_validate({"database": {"pool_max": 2, "pool_reserved": 2}})
    assert (
        QuiverSettings.model_validate({"database": {"pool_max": 10}}).database.reserved_connections
        == 2
    )


async def test_the_gate_keeps_reserved_slots_from_expensive_statements() -> None:
    gate = ConnectionGate(2, 1, 0.2)
    assert await gate.enter(cheap=False) == ADMITTED  # the one unreserved slot
    expensive = asyncio.ensure_future(gate.enter(cheap=False))
    await asyncio.sleep(0)
    assert not expensive.done()  # only the reserved slot is left
    assert await gate.enter(cheap=True) == IN_RESERVE  # cheap takes the reserved slot
    gate.leave(cheap=False)
    await asyncio.sleep(0)
    assert not expensive.done()  # the cheap one holds a slot: the last free one stays reserved
    gate.leave(cheap=True)
    assert await expensive == ADMITTED  # now a slot beyond the reserve is free
    assert gate.free == 1
    # a wait that outlasts wait_s is refused, and leaves no slot taken
    assert not await gate.enter(cheap=False)
    assert gate.free == 1
    gate.leave(cheap=False)
    assert gate.free == 2


async def test_cheap_statements_filling_the_pool_do_not_open_the_reserve_to_expensive_ones() -> (
    None
):
    gate = ConnectionGate(3, 1, 0.1)
    assert await gate.enter(cheap=True) == ADMITTED
    assert await gate.enter(cheap=True) == ADMITTED
    # No expensive statement holds a slot, yet the one slot left is the reserve.
    assert not await gate.enter(cheap=False)
    assert await gate.enter(cheap=True) == IN_RESERVE


async def test_the_gate_refuses_after_its_wait() -> None:
    gate = ConnectionGate(1, 0, 0.05)
    assert await gate.enter(cheap=True)
    assert not await gate.enter(cheap=True)
    gate.leave(cheap=True)
    assert gate.free == 1
    assert await gate.enter(cheap=True)


async def test_sqlite_keeps_a_thread_for_cheap_statements(fresh_sqlite: str) -> None:
    from quiver.sql.database import DatabaseBusyError, StatementTimeoutError, open_database

    db = await open_database(
        fresh_sqlite, pool_max=2, pool_reserved=1, pool_timeout_ms=300, statement_timeout_ms=1500
    )
    busy_loop = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000)"
        " SELECT count(*) FROM c"
    )
    try:
        slow = asyncio.ensure_future(db.fetch_json(busy_loop, ()))
        await asyncio.sleep(0.1)  # the one thread expensive statements may use is taken
        started = time.monotonic()
        with pytest.raises(DatabaseBusyError):
            await db.fetch_json("SELECT 'queued'", ())
        assert time.monotonic() - started < 1.2
        started = time.monotonic()
        assert await db.fetch_json("SELECT 'cheap'", (), cheap=True) == b"cheap"
        assert time.monotonic() - started < 1.0
        with pytest.raises(StatementTimeoutError):
            await slow
    finally:
        await db.close()


#: A view slow to read on every database (past a 1 s statement timeout), whose one-row page is
#: estimated cheap: a view's list counts the default size, and ``limit: 1`` makes it one row.
SLOW_ONE_ROW = {
    "postgresql": "CREATE VIEW slow_view AS SELECT 1 AS id, pg_sleep(3)::text AS note",
    "mysql": "CREATE VIEW slow_view AS SELECT 1 AS id, CAST(SLEEP(3) AS CHAR) AS note",
    "sqlite": (
        "CREATE VIEW slow_view AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
        " WHERE x < 2000000000) SELECT 1 AS id, CAST(COUNT(*) AS TEXT) AS note FROM c"
    ),
}
SLOW_BUT_CHEAP = "{ slowViews(limit: 1) { id note } }"  # cost 3: cheap on paper


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def slow_one_row(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"fresh_{request.param}")
    execute_statements(
        url, ["CREATE TABLE items (id int PRIMARY KEY)", SLOW_ONE_ROW[request.param]]
    )
    execute_statements(url, ["INSERT INTO items VALUES (1)"])
    return url


async def _slow_but_cheap_app(url: str) -> GraphQLApp:
    """Four connections, one kept for cheap queries; statements stop after 1 s, and a cheap
    one gives a reserved connection up after 0.3 s. No coalescing: each statement has a
    connection of its own, on PostgreSQL too."""
    return await _app(
        url, pool_reserved=1, statement_timeout_ms=1000, slow_statement_ms=300, coalesce=False
    )


async def test_a_query_estimated_cheap_that_ran_long_no_longer_takes_the_reserved_connections(
    slow_one_row: str,
) -> None:
    app = await _slow_but_cheap_app(slow_one_row)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://q") as client:
            # Its first run shows it slow: it ran past its time limit.
            _, first = await _timed(client, SLOW_BUT_CHEAP)
            (error,) = orjson.loads(first.content)["errors"]
            assert error["extensions"]["code"] == "STATEMENT_TIMEOUT"
            results = await asyncio.gather(
                *(_timed(client, SLOW_BUT_CHEAP) for _ in range(6)),
                _timed(client, TRIVIAL, delay=0.2),
            )
    finally:
        await app.shutdown()
    *slow, (trivial_s, trivial) = results
    # From then on it runs as expensive: at most the three unreserved connections at once, and
    # the trivial query still finds the reserved one free.
    assert trivial.status_code == 200, trivial.text
    assert orjson.loads(trivial.content) == {"data": {"item": {"id": 1}}}
    assert trivial_s < 0.45, f"the cheap query waited {trivial_s:.2f} s"
    assert sorted(r.status_code for _, r in slow) == [200, 200, 200, 503, 503, 503]


async def test_a_query_estimated_cheap_gives_up_a_reserved_connection_it_holds_too_long(
    slow_one_row: str,
) -> None:
    app = await _slow_but_cheap_app(slow_one_row)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://q") as client:
            # Never seen before: all six are run as cheap, and one takes the reserved connection.
            results = await asyncio.gather(
                *(_timed(client, SLOW_BUT_CHEAP) for _ in range(6)),
                _timed(client, TRIVIAL, delay=0.2),
                _timed(client, TRIVIAL, delay=0.6),
            )
    finally:
        await app.shutdown()
    *slow, (trivial_s, trivial), (later_s, later) = results
    # After slow_statement_ms the one on the reserved connection gave it up (and the two that
    # waited behind it, now known slow, let it pass), so the trivial query waited at most that;
    # waiting again as expensive, they do not take the reserved connection back while cheap
    # statements hold the others, so a later trivial query finds it free at once.
    for waited, r, most in ((trivial_s, trivial, 0.45), (later_s, later, 0.25)):
        assert r.status_code == 200, r.text
        assert orjson.loads(r.content) == {"data": {"item": {"id": 1}}}
        assert waited < most, f"the cheap query waited {waited:.2f} s"
    codes = sorted(
        "BUSY"
        if r.status_code == 503
        else orjson.loads(r.content)["errors"][0]["extensions"]["code"]
        for _, r in slow
    )
    # Those that kept their connections ran to their time limit; the others were told busy.
    assert set(codes) <= {"BUSY", "STATEMENT_TIMEOUT"}, codes
    assert codes.count("STATEMENT_TIMEOUT") >= 3, codes


async def test_slow_statements_are_remembered_up_to_their_number() -> None:
    slow = SlowStatements(0.5, size=2)
    assert slow.cheap("a", True)
    slow.ran("a", 0.4)  # not long: still cheap
    assert slow.cheap("a", True)
    slow.ran("a", 0.6)
    assert not slow.cheap("a", True)
    assert not slow.cheap("b", False)  # estimated expensive stays expensive
    slow.ran("b", 1.0)
    slow.ran("c", 1.0)  # the oldest is forgotten
    assert slow.cheap("a", True) and not slow.cheap("c", True)
    assert SlowStatements(None).cheap("a", True)


async def test_a_statement_slow_once_is_cheap_again_after_a_while() -> None:
    slow = SlowStatements(0.5, remember_s=0.2)
    slow.ran("a", 0.6)  # a lock wait, a cold cache
    assert not slow.cheap("a", True)
    await asyncio.sleep(0.25)
    assert slow.cheap("a", True)
