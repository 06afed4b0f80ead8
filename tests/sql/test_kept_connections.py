"""PostgreSQL statements keep their connections between runs (no pool round trip a statement):
transactions still find one, a connection the server dropped is replaced, and close lets go
of every one."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg

from quiver.sql.database import DatabaseError, open_database


async def test_statements_and_transactions_share_a_small_pool_without_waiting(
    fresh_postgresql: str,
) -> None:
    database = await open_database(fresh_postgresql, pool_max=2, pool_timeout_ms=2_000)
    try:

        async def statement(i: int) -> bytes | None:
            return await database.fetch_json("SELECT to_json($1::int)", [i])

        async def transaction(i: int) -> bytes | None:
            async with database.transaction() as tx:
                return await tx.fetch_json("SELECT to_json($1::int)", [i])

        for _ in range(3):
            runs = [statement(i) if i % 3 else transaction(i) for i in range(30)]
            answers = await asyncio.wait_for(asyncio.gather(*runs), 10)
            assert answers == [str(i).encode() for i in range(30)]
        # Both connections kept by statements: a transaction takes one of them.
        await asyncio.gather(statement(1), statement(2))
        assert await asyncio.wait_for(transaction(7), 5) == b"7"
    finally:
        await asyncio.wait_for(database.close(), 10)


async def test_a_connection_the_server_dropped_is_replaced(fresh_postgresql: str) -> None:
    database = await open_database(fresh_postgresql, pool_max=1)
    admin = await asyncpg.connect(fresh_postgresql)
    try:
        pid = int(await database.fetch_json("SELECT to_json(pg_backend_pid())", []) or b"0")
        await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.2)
        try:  # asyncpg has seen the connection close by now: the pool opens another one
            again: bytes | int | None = await database.fetch_json(
                "SELECT to_json(pg_backend_pid())", []
            )
        except DatabaseError:  # or the statement found out, and the next one gets a new one
            again = await database.fetch_json("SELECT to_json(pg_backend_pid())", [])
        again = int(again or b"0")
        assert again not in (0, pid)
    finally:
        await admin.close()
        await asyncio.wait_for(database.close(), 10)


async def test_close_hands_back_the_kept_connections(fresh_postgresql: str) -> None:
    database = await open_database(fresh_postgresql, pool_max=3)
    admin = await asyncpg.connect(fresh_postgresql)
    try:
        await asyncio.gather(
            *(database.fetch_json("SELECT to_json(pg_sleep(0.05) IS NULL)", []) for _ in range(3))
        )
        name = await admin.fetchval("SELECT current_database()")
        count = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
        assert await admin.fetchval(count, name) == 3
        await asyncio.wait_for(database.close(), 10)
        for _ in range(50):
            if await admin.fetchval(count, name) == 0:
                break
            await asyncio.sleep(0.1)
        assert await admin.fetchval(count, name) == 0
    finally:
        await admin.close()


async def test_a_statement_cancelled_midway_leaves_the_next_ones_working(
    fresh_postgresql: str,
) -> None:
    database = await open_database(fresh_postgresql, pool_max=1)
    try:
        for _ in range(3):
            slow = asyncio.ensure_future(
                database.fetch_json("SELECT to_json(pg_sleep(2) IS NULL)", [])
            )
            await asyncio.sleep(0.2)
            slow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slow
            answer = await asyncio.wait_for(database.fetch_json("SELECT to_json(7)", []), 10)
            assert answer == b"7"
    finally:
        await asyncio.wait_for(database.close(), 10)
