"""A statement that runs past ``database.statement_timeout_ms`` becomes a clear GraphQL error."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
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


def _create_view(url: str) -> None:
    parsed = parse_database_url(url)
    ddl = SLOW_VIEWS[parsed.dialect]
    if parsed.dialect == "sqlite":
        with sqlite3.connect(parsed.database) as conn:
            conn.execute(ddl)
    elif parsed.dialect == "postgresql":
        import psycopg

        with psycopg.connect(
            host=parsed.host, port=parsed.port, user=parsed.user, dbname=parsed.database
        ) as conn:
            conn.execute(ddl)
    else:
        import pymysql

        conn = pymysql.connect(
            host=parsed.host, port=parsed.port, user=parsed.user, database=parsed.database
        )
        try:
            with conn.cursor() as cur:
                cur.execute(ddl)
            conn.commit()
        finally:
            conn.close()


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
