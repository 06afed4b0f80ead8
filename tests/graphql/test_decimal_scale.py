"""A NUMERIC(p, s) column is served with its s decimals on every database ("1.90", "10.00"),
in lists, in min/max/sum aggregates and through keyset pages ordered by it: SQLite keeps a
real or an integer in such a column, and served "1.9" and "10" where PostgreSQL and MariaDB
serve "1.90" and "10.00"."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.graphql.test_statement_timeout import execute_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

ROWS = "INSERT INTO item VALUES (1, 1234.50), (2, 1.9), (3, 10), (4, -0.5), (5, NULL)"
TABLE = "CREATE TABLE item (id INTEGER PRIMARY KEY, price NUMERIC(6, 2))"


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def database(request: pytest.FixtureRequest) -> Any:
    url = str(request.getfixturevalue(f"fresh_{request.param}"))
    execute_statements(url, [TABLE, ROWS])
    return url


async def _query(url: str, query: str) -> Any:
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        outcome = await engine.execute(engine.prepare(query, None), {})
    finally:
        await engine.close()
    body = orjson.loads(outcome.body)
    assert "errors" not in body, body
    return body["data"]


async def test_decimals_are_served_with_the_columns_scale(database: str) -> None:
    data = await _query(
        database,
        "{ items { id price } itemsAggregate { min { price } max { price } sum { price } } }",
    )
    assert [i["price"] for i in data["items"]] == ["1234.50", "1.90", "10.00", "-0.50", None]
    assert data["itemsAggregate"] == {
        "min": {"price": "-0.50"},
        "max": {"price": "1234.50"},
        "sum": {"price": "1245.90"},
    }


async def test_keyset_pages_ordered_by_a_decimal_see_every_row_once(database: str) -> None:
    seen: list[str] = []
    after = "null"
    for _ in range(6):
        data = await _query(
            database,
            "{ itemsConnection(first: 2, after: " + after + ", orderBy: [{price: ASC}],"
            " where: {price: {isNull: false}}) { edges { cursor node { price } } } }",
        )
        edges = data["itemsConnection"]["edges"]
        if not edges:
            break
        seen += [e["node"]["price"] for e in edges]
        after = orjson.dumps(edges[-1]["cursor"]).decode()
    assert seen == ["-0.50", "1.90", "10.00", "1234.50"]
