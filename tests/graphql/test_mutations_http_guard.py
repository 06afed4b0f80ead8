"""A hostile or unauthenticated client over HTTP: the auth hook and every request limit apply
to mutations as to queries, and a refused request writes nothing; an authenticated caller is
the actor of the change rows its mutation writes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

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

KEY = "k" * 32


class Client:
    def __init__(self, http: httpx.AsyncClient, db: ChinookDb) -> None:
        self.http = http
        self.db = db

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, key: str | None = KEY
    ) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        body = orjson.dumps({"query": query, "variables": variables or {}})
        return await self.http.post("/graphql", content=body, headers=headers)

    def count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM authors")[0][0])


@pytest_asyncio.fixture(params=DIALECTS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    for statement in bookshop_statements(dialect):
        db.query(statement)
    settings = QuiverSettings.model_validate(
        {
            "database": {"url": url},
            "auth": {"api_keys": [{"name": "shop-admin", "key": KEY}]},
            "graphql": {
                "max_depth": 4,
                "max_aliases": 3,
                "max_request_bytes": 4000,
                "max_cost": 1000,
            },
            "mutations": {"max_rows": 5},
        }
    )
    app = create_app(await reflect_database(url), settings)
    try:
        async with asgi_client(app) as http:
            yield Client(http, db)
    finally:
        db.close()


CREATE = 'mutation { createAuthor(input: {name: "Ann", email: "a@x"}) { id } }'


async def test_without_a_valid_key_nothing_is_written(client: Client) -> None:
    for key in (None, "wrong-key-wrong-key-wrong-key-00"):
        r = await client.post(CREATE, key=key)
        assert r.status_code == 401, r.text
        assert r.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert client.count() == 0


async def test_the_key_holder_is_the_actor_of_the_change_rows(client: Client) -> None:
    r = await client.post(CREATE)
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    rows = client.db.query("SELECT actor, operation, entity_key FROM quiver_change_log")
    assert [(actor, op) for actor, op, _ in rows] == [("shop-admin", "insert")]
    key = rows[0][2]
    assert (json.loads(key) if isinstance(key, str | bytes) else key) == {"id": 1}


async def test_depth_alias_cost_and_size_limits_refuse_a_mutation_before_any_write(
    client: Client,
) -> None:
    deep = (
        'mutation { createBook(input: {authorId: 1, title: "T"})'
        " { author { books { author { books { id } } } } } }"
    )
    aliased = (
        "mutation { "
        + " ".join(
            f'a{i}: createAuthor(input: {{name: "N{i}", email: "n{i}@x"}}) {{ id }}'
            for i in range(4)
        )
        + " }"
    )
    big = 'mutation($b: String) { createAuthor(input: {name: "B", email: "b@x", bio: $b}) { id } }'
    await client.post(CREATE)
    for query, variables, code in (
        (deep, None, "DEPTH_LIMIT_EXCEEDED"),
        (aliased, None, "ALIAS_LIMIT_EXCEEDED"),
        (big, {"b": "x" * 5000}, None),
        (
            # Each list field is costed at 100 rows: 2 x (1 + 100 x 5) > 1000.
            "mutation { deleteAuthors(where: {}) { id name email country bio }"
            ' updateAuthors(where: {}, set: {bio: "x"}) { id name email country bio } }',
            None,
            "COST_LIMIT_EXCEEDED",
        ),
    ):
        r = await client.post(query, variables)
        if code is None:
            assert r.status_code == 413, r.text
        else:
            codes = [e["extensions"]["code"] for e in r.json()["errors"]]
            assert any(c.startswith(code) for c in codes), r.text
    assert client.count() == 1
    assert client.db.query("SELECT bio FROM authors") == [(None,)]
    assert client.db.query("SELECT COUNT(*) FROM books") == [(0,)]


async def test_a_batch_beyond_max_rows_writes_nothing(client: Client) -> None:
    inputs = [{"name": f"N{i}", "email": f"n{i}@x"} for i in range(6)]
    r = await client.post(
        "mutation($i: [AuthorCreateInput!]!) { createAuthors(inputs: $i) { id } }", {"i": inputs}
    )
    assert r.json()["errors"][0]["extensions"]["code"] == "TOO_MANY_ROWS", r.text
    assert client.count() == 0
    r = await client.post(
        "mutation($i: [AuthorCreateInput!]!) { createAuthors(inputs: $i) { id } }",
        {"i": inputs[:5]},
    )
    assert "errors" not in r.json(), r.text
    await client.post(CREATE)  # six rows now: where {} matches one more than the limit
    r = await client.post("mutation { deleteAuthors(where: {}) { id } }")
    assert r.json()["errors"][0]["extensions"]["code"] == "TOO_MANY_ROWS", r.text
    assert client.count() == 6
