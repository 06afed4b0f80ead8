"""The HTTP surface end to end on every dialect: batches, GET with variables, persisted
queries.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import create_app
from quiver.schema.reflect import reflect_database
from tests.conftest import ChinookDb
from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http_client(chinook_db: ChinookDb) -> AsyncIterator[tuple[httpx.AsyncClient, Runner]]:
    schema = await reflect_database(chinook_db.url)
    settings = QuiverSettings.model_validate(
        {"database": {"url": chinook_db.url, "pool_max": 2}, "graphql": {"max_batch": 10}}
    )
    app = create_app(schema, settings)
    await app.startup()
    try:
        assert app.engine is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://quiver") as client:
            yield client, Runner(app.engine, chinook_db)
    finally:
        await app.shutdown()


async def _post(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await client.post(
        "/graphql", content=orjson.dumps(body), headers={"content-type": "application/json"}
    )


async def test_a_batch_mixing_good_and_bad_operations_answers_each_in_order(
    http_client: tuple[httpx.AsyncClient, Runner],
) -> None:
    client, runner = http_client
    genre = "query($n: Int!) { genre(genreId: $n) { name } }"
    r = await _post(
        client,
        [
            {"query": genre, "variables": {"n": 2}},
            {"query": "{ nope }"},
            {"query": "{ genres(limit: 1) { name"},
            {"query": genre, "variables": {"n": "x"}},
            {"query": genre},
            {
                "query": "query A { genres(limit: 1) { name } }"
                " query B { genre(genreId: 3) { name } }",
                "operationName": "B",
            },
            {"query": "{ genres(limit: -1) { name } }"},
            {"query": genre, "variables": {"n": 999999}},
        ],
    )
    assert r.status_code == 200, r.text
    out = r.json()
    names = dict(runner.sql("SELECT genre_id, name FROM genre WHERE genre_id IN (2, 3)"))
    assert out[0] == {"data": {"genre": {"name": names[2]}}}
    assert out[1]["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert out[2]["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert out[3]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$n" in out[3]["errors"][0]["message"]
    assert "was not provided" in out[4]["errors"][0]["message"]
    assert out[5] == {"data": {"genre": {"name": names[3]}}}
    assert out[6]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert out[7] == {"data": {"genre": None}}
    assert len(out) == 8


async def test_one_failing_operation_does_not_sink_its_batch(
    http_client: tuple[httpx.AsyncClient, Runner], request: pytest.FixtureRequest
) -> None:
    _, runner = http_client
    client, _ = http_client
    r = await _post(
        client,
        [
            {"query": "{ genre(genreId: 1) { name } }"},
            {
                "query": "query($b: BigInt) { scalarSamples(where: {big: {eq: $b}}) { id } }",
                "variables": {"b": "99999999999999999999"},
            },
            {"query": "{ genre(genreId: 2) { name } }"},
        ],
    )
    assert r.status_code == 200, r.text
    out = r.json()
    names = dict(runner.sql("SELECT genre_id, name FROM genre WHERE genre_id IN (1, 2)"))
    assert out[0] == {"data": {"genre": {"name": names[1]}}}
    assert out[2] == {"data": {"genre": {"name": names[2]}}}


async def test_get_with_variables_of_scalar_and_input_object_type(
    http_client: tuple[httpx.AsyncClient, Runner],
) -> None:
    client, runner = http_client
    query = (
        "query($n: Int!, $w: GenreWhere, $o: [GenreOrderBy!]) {"
        " genres(limit: $n, where: $w, orderBy: $o) { genreId name } }"
    )
    variables = {"n": 3, "w": {"name": {"startsWith": "R"}}, "o": [{"name": "DESC"}]}
    r = await client.get(
        "/graphql", params={"query": query, "variables": orjson.dumps(variables).decode()}
    )
    assert r.status_code == 200, r.text
    rows = runner.sql("SELECT genre_id, name FROM genre")
    expected = sorted((x for x in rows if x[1].startswith("R")), key=lambda x: x[1], reverse=True)
    assert r.json() == {"data": {"genres": [{"genreId": g, "name": n} for g, n in expected[:3]]}}
    r = await client.get("/graphql", params={"query": query, "variables": '{"n": 2'})
    assert r.status_code == 400 and "variables" in r.json()["errors"][0]["message"]
    r = await client.get("/graphql", params={"query": query, "variables": "[1]"})
    assert r.status_code == 400 and "variables" in r.json()["errors"][0]["message"]


async def test_automatic_persisted_queries_round_trip_over_post_and_get(
    http_client: tuple[httpx.AsyncClient, Runner],
) -> None:
    client, runner = http_client
    # A document unique to this test run, so no other test has registered its hash.
    query = f"{{ genres(limit: 2) {{ name }} marker: __typename }} # {id(runner)}-{runner.dialect}"
    digest = hashlib.sha256(query.encode()).hexdigest()
    ext = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    names = [r[0] for r in runner.sql("SELECT name FROM genre ORDER BY genre_id LIMIT 2")]
    expected = {"data": {"genres": [{"name": n} for n in names], "marker": "Query"}}

    r = await _post(client, {"extensions": ext})
    assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    r = await _post(client, {"query": query + " ", "extensions": ext})
    assert r.status_code == 400 and "sha" in r.json()["errors"][0]["message"]
    r = await _post(client, {"extensions": ext})
    assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    r = await _post(client, {"query": query, "extensions": ext})
    assert r.json() == expected
    r = await _post(client, {"extensions": ext})
    assert r.json() == expected
    r = await client.get("/graphql", params={"extensions": orjson.dumps(ext).decode()})
    assert r.status_code == 200 and r.json() == expected
    r = await _post(client, [{"extensions": ext}, {"query": query}])
    assert r.json() == [expected, expected]

    bad = f"{{ genres {{ nope }} }} # {id(runner)}-{runner.dialect}"
    bad_ext = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(bad.encode()).hexdigest()}
    }
    r = await _post(client, {"query": bad, "extensions": bad_ext})
    assert r.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    r = await _post(client, {"extensions": bad_ext})
    assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
