"""A statement that runs past ``database.statement_timeout_ms`` becomes a clear GraphQL error,
within a small margin of the configured time on every database, even when the server cannot
interrupt the statement itself."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from quiver.sql.database import StatementTimeoutError
from quiver.sql.url import parse_database_url

pytestmark = pytest.mark.asyncio(loop_scope="session")

SLOW_VIEWS = {
    "postgresql": "CREATE VIEW slow_view AS SELECT 1 AS id, pg_sleep(2)::text AS note",
    "mysql": "CREATE VIEW slow_view AS SELECT 1 AS id, CAST(SLEEP(2) AS CHAR) AS note",
    "sqlite": (
        "CREATE VIEW slow_view AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
        " WHERE x < 500000000) SELECT 1 AS id, CAST(COUNT(*) AS TEXT) AS note FROM c"
    ),
}


#: Seconds a timed-out statement may take beyond its timeout before the client hears of it
#: (generous: the machine running the tests may be busy; the failures this guards against were
#: late by many seconds).
MARGIN_S = 2.0

#: A table whose rows make a filter of many ``contains`` tests slow to run on every database:
#: 20,000 rows of 1,600 characters each.
LONG_TEXT_ROWS = {
    "postgresql": [
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)",
        "INSERT INTO notes SELECT g, repeat(md5(g::text), 50) FROM generate_series(1, 20000) g",
        "ANALYZE notes",
    ],
    "mysql": [
        "CREATE TABLE notes (id int PRIMARY KEY, body longtext NOT NULL)",
        "INSERT INTO notes SELECT seq, REPEAT(MD5(seq), 50) FROM seq_1_to_20000",
    ],
    "sqlite": [
        "CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)",
        "INSERT INTO notes WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g"
        " WHERE x < 20000) SELECT x, printf('%.*c', 1600, 'a') || x FROM g",
    ],
}


def execute_statements(url: str, statements: list[str]) -> None:
    parsed = parse_database_url(url)
    if parsed.dialect == "sqlite":
        with sqlite3.connect(parsed.database) as lite:
            for ddl in statements:
                lite.execute(ddl)
    elif parsed.dialect == "postgresql":
        import psycopg

        with psycopg.connect(
            host=parsed.host, port=parsed.port, user=parsed.user, dbname=parsed.database
        ) as pg:
            for ddl in statements:
                pg.execute(ddl)
    else:
        import pymysql

        conn = pymysql.connect(
            host=parsed.host, port=parsed.port, user=parsed.user, database=parsed.database
        )
        try:
            with conn.cursor() as cur:
                for ddl in statements:
                    cur.execute(ddl)
            conn.commit()
        finally:
            conn.close()


def _create_view(url: str) -> None:
    execute_statements(url, [SLOW_VIEWS[parse_database_url(url).dialect]])


async def _open(url: str, timeout_ms: int) -> GraphQLEngine:
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate(
        {"database": {"url": url, "statement_timeout_ms": timeout_ms, "pool_max": 2}}
    )
    return await GraphQLEngine.open(schema, settings)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def empty_database(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"fresh_{request.param}")


async def test_slow_statement_is_cancelled_with_a_timeout_error(empty_database: Any) -> None:
    url = str(empty_database)
    _create_view(url)
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate(
        {"database": {"url": url, "statement_timeout_ms": 200, "pool_max": 2}}
    )
    engine = await GraphQLEngine.open(schema, settings)
    try:
        outcome = await engine.execute(engine.prepare("{ slowViews { id note } }", None), None)
        body = orjson.loads(outcome.body)
        assert outcome.kind == "field_error", body
        assert body["data"] is None
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "STATEMENT_TIMEOUT"
        assert error["path"] == ["slowViews"]
        assert "time limit" in error["message"]
        # The pool still works after a cancelled statement.
        outcome = await engine.execute(engine.prepare("{ __typename }", None), None)
        assert outcome.kind == "data"
    finally:
        await engine.close()


async def test_a_pathological_filter_ends_within_the_timeout(empty_database: Any) -> None:
    url = str(empty_database)
    execute_statements(url, LONG_TEXT_ROWS[parse_database_url(url).dialect])
    needles = ", ".join(f'{{body: {{contains: "{i:04d}zz{i}"}}}}' for i in range(300))
    query = f"{{ notes(where: {{or: [{needles}]}}) {{ id }} }}"
    engine = await _open(url, 1000)
    try:
        prepared = engine.prepare(query, None)
        started = time.monotonic()
        outcome = await engine.execute(prepared, None)
        elapsed = time.monotonic() - started
    finally:
        await engine.close()
    body = orjson.loads(outcome.body)
    assert [e["extensions"]["code"] for e in body.get("errors", ())] == ["STATEMENT_TIMEOUT"]
    assert elapsed < 1.0 + MARGIN_S, f"answered after {elapsed:.2f} s"


async def test_postgresql_sessions_run_without_jit(fresh_postgresql: str) -> None:
    """JIT compilation cannot be interrupted: with it, a large filter ran far past the
    statement timeout while the server compiled it."""
    execute_statements(fresh_postgresql, ["CREATE TABLE t (id int PRIMARY KEY)"])
    engine = await _open(fresh_postgresql, 1000)
    try:
        database: Any = engine.database
        settings = [
            await database.pool.fetchval(f"SHOW {name}") for name in ("jit", "statement_timeout")
        ]
    finally:
        await engine.close()
    assert settings == ["off", "1s"]


#: A function the server's timeout cannot stop: it swallows the cancellation and goes on
#: sleeping until five seconds have passed (as a JIT compilation or an extension might).
STUBBORN_POSTGRESQL = [
    """CREATE FUNCTION stubborn() RETURNS int LANGUAGE plpgsql AS $$
    DECLARE until timestamptz := clock_timestamp() + interval '5 seconds';
    BEGIN
      WHILE clock_timestamp() < until LOOP
        BEGIN
          PERFORM pg_sleep(0.05);
        EXCEPTION WHEN query_canceled THEN NULL;
        END;
      END LOOP;
      RETURN 1;
    END $$""",
    "CREATE VIEW stubborn_view AS SELECT stubborn() AS id",
]


async def test_postgresql_answers_at_the_deadline_when_the_server_cannot_stop(
    fresh_postgresql: str,
) -> None:
    execute_statements(fresh_postgresql, STUBBORN_POSTGRESQL)
    engine = await _open(fresh_postgresql, 500)
    try:
        prepared = engine.prepare("{ stubbornViews { id } }", None)
        started = time.monotonic()
        outcome = await engine.execute(prepared, None)
        elapsed = time.monotonic() - started
        body = orjson.loads(outcome.body)
        assert [e["extensions"]["code"] for e in body["errors"]] == ["STATEMENT_TIMEOUT"]
        assert elapsed < 0.5 + MARGIN_S, f"answered after {elapsed:.2f} s"
        # The connection comes back to the pool once the server lets go of it.
        outcome = await engine.execute(engine.prepare("{ __typename }", None), None)
        assert outcome.kind == "data"
    finally:
        await engine.close()


async def test_mariadb_kills_a_statement_its_own_timeout_does_not_cover(fresh_mysql: str) -> None:
    execute_statements(fresh_mysql, ["CREATE TABLE t (id int PRIMARY KEY)"])
    engine = await _open(fresh_mysql, 500)
    try:
        started = time.monotonic()
        with pytest.raises(StatementTimeoutError):
            # max_statement_time is lifted for this one statement: only KILL QUERY stops it.
            await engine.database.fetch_json(
                "SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(5)", ()
            )
        elapsed = time.monotonic() - started
        assert elapsed < 0.5 + MARGIN_S, f"answered after {elapsed:.2f} s"
        assert await engine.database.fetch_json("SELECT 'ok'", ()) == b"ok"
    finally:
        await engine.close()
