"""Mutations over HTTP: POST runs them, GET refuses them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import create_app
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql.conftest import asgi_client
from tests.graphql.mutation_fixtures import bookshop_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(params=DIALECTS)
async def client(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[httpx.AsyncClient, ChinookDb]]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    for statement in bookshop_statements(dialect):
        db.query(statement)
    app = create_app(
        await reflect_database(url), QuiverSettings.model_validate({"database": {"url": url}})
    )
    try:
        async with asgi_client(app) as c:
            yield c, db
    finally:
        db.close()


async def test_a_mutation_posted_writes_and_answers_the_row(
    client: tuple[httpx.AsyncClient, ChinookDb],
) -> None:
    c, db = client
    body = {
        "query": "mutation($i: AuthorCreateInput!) { createAuthor(input: $i) { name country } }",
        "variables": {"i": {"name": "Ann", "email": "a@x"}},
    }
    r = await c.post(
        "/graphql", content=orjson.dumps(body), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200
    assert r.json() == {"data": {"createAuthor": {"name": "Ann", "country": "NZ"}}}
    assert db.query("SELECT name FROM authors") == [("Ann",)]
    r = await c.get("/graphql", params={"query": "mutation { deleteAuthors(where: {}) { id } }"})
    assert r.status_code == 405
    assert db.query("SELECT name FROM authors") == [("Ann",)]
    r = await c.post(
        "/graphql",
        content=orjson.dumps({"query": body["query"], "variables": body["variables"]}),
        headers={"content-type": "application/json"},
    )
    assert r.json()["data"] is None
    assert r.json()["errors"][0]["extensions"]["code"] == "UNIQUE_VIOLATION"
