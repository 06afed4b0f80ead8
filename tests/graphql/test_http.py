"""The GraphQL HTTP surface in process: media types, status codes, batching, APQ, limits,
health, metrics. The graphql-http audit suite runs against a real server in test_http_audit.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import GraphQLApp, create_app
from quiver.schema.reflect import reflect_database

GQL = "application/graphql-response+json"
JSON_CT = "application/json"


def settings_for(url: str, **graphql: Any) -> QuiverSettings:
    return QuiverSettings.model_validate(
        {"database": {"url": url, "pool_max": 2}, "graphql": graphql}
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sqlite_url(chinook_sqlite: Path) -> str:
    return f"sqlite:///{chinook_sqlite.absolute()}"


async def open_app(url: str, **graphql: Any) -> GraphQLApp:
    schema = await reflect_database(url)
    app = create_app(schema, settings_for(url, **graphql))
    await app.startup()
    return app


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app(sqlite_url: str) -> AsyncIterator[GraphQLApp]:
    app = await open_app(sqlite_url, max_batch=3, max_request_bytes=4096, max_depth=6)
    try:
        yield app
    finally:
        await app.shutdown()


async def post(
    client: httpx.AsyncClient, body: Any, accept: str | None = None, **headers: str
) -> httpx.Response:
    hdrs = {"content-type": "application/json", **headers}
    if accept is not None:
        hdrs["accept"] = accept
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.post("/graphql", content=content, headers=hdrs)


# ----- queries and media types -----
async def test_a_database_query_over_post_returns_the_rows(client: httpx.AsyncClient) -> None:
    r = await post(
        client,
        {
            "query": "query ($n: Int!) { artists(limit: $n, orderBy: {artistId: ASC}) { name } }",
            "variables": {"n": 2},
        },
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.json() == {"data": {"artists": [{"name": "AC/DC"}, {"name": "Accept"}]}}


async def test_get_with_url_parameters_runs_a_query(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/graphql",
        params={
            "query": "query A($id: Int!) { artist(artistId: $id) { name } }",
            "variables": json.dumps({"id": 1}),
            "operationName": "A",
        },
        headers={"accept": GQL},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == f"{GQL}; charset=utf-8"
    assert r.json() == {"data": {"artist": {"name": "AC/DC"}}}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON_CT),
        ("*/*", JSON_CT),
        ("application/json", JSON_CT),
        (GQL, GQL),
        (f"{GQL}, application/json;q=0.9", GQL),
        (f"application/json, {GQL};q=0.5", JSON_CT),
        ("application/*", GQL),
        (f"text/html, {GQL};q=0.9", GQL),
        ("application/json; charset=utf-8", JSON_CT),
    ],
)
async def test_accept_header_picks_the_response_media_type(
    client: httpx.AsyncClient, accept: str | None, expected: str
) -> None:
    r = await post(client, {"query": "{ __typename }"}, accept)
    assert r.status_code == 200
    assert r.headers["content-type"] == f"{expected}; charset=utf-8"
    assert r.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    "accept", ["text/plain", "application/json; charset=latin-1", "application/json;q=0"]
)
async def test_unacceptable_media_types_get_406(client: httpx.AsyncClient, accept: str) -> None:
    r = await post(client, {"query": "{ __typename }"}, accept)
    assert r.status_code == 406
    assert r.json()["errors"][0]["extensions"]["code"] == "NOT_ACCEPTABLE"


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/json; charset=utf-16", 415),
        ("application/json; charset=UTF-8", 200),
        ("Application/JSON", 200),
    ],
)
async def test_request_content_types(
    client: httpx.AsyncClient, content_type: str, status: int
) -> None:
    r = await post(client, {"query": "{ __typename }"}, **{"content-type": content_type})
    assert r.status_code == status
    if status == 415:
        assert r.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_post_without_content_type_is_415(client: httpx.AsyncClient) -> None:
    r = await client.post("/graphql", content=b'{"query": "{ __typename }"}')
    assert r.status_code == 415


# ----- status codes per media type -----
@pytest.mark.parametrize(
    ("query", "variables", "code"),
    [
        ("{", None, "GRAPHQL_PARSE_FAILED"),
        ("{ noSuchField }", None, "GRAPHQL_VALIDATION_FAILED"),
        ("query ($id: Int!) { artist(artistId: $id) { name } }", {"id": None}, "BAD_USER_INPUT"),
    ],
)
async def test_request_errors_are_400_with_graphql_response_json_and_200_with_json(
    client: httpx.AsyncClient, query: str, variables: Any, code: str
) -> None:
    body = {"query": query, "variables": variables}
    strict = await post(client, body, GQL)
    assert strict.status_code == 400
    assert "data" not in strict.json()
    assert strict.json()["errors"][0]["extensions"]["code"] == code
    legacy = await post(client, body, "application/json")
    assert legacy.status_code == 200
    assert legacy.json() == strict.json()


async def test_errors_carry_locations(client: httpx.AsyncClient) -> None:
    r = await post(client, {"query": "{\n  artists { nope }\n}"}, GQL)
    err = r.json()["errors"][0]
    assert err["locations"] == [{"line": 2, "column": 13}]
    assert "nope" in err["message"]


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (b'{ "not json', "not valid JSON"),
        (b"", "body is empty"),
        (b"42", "must be a JSON object"),
        ({"qeury": "{ __typename }"}, "query is missing"),
        ({"query": 1}, "query must be a string"),
        ({"query": "{ __typename }", "variables": "x"}, "variables must be a JSON object"),
        ({"query": "{ __typename }", "variables": [1]}, "variables must be a JSON object"),
        ({"query": "{ __typename }", "operationName": 0}, "operationName must be a string"),
        ({"query": "{ __typename }", "extensions": False}, "extensions must be a JSON object"),
        # nested past what a JSON reader follows (the app's bodies are at most 4,096 bytes)
        (
            b'{"query": "{ __typename }", "variables": {"v": ' + b"[" * 1800 + b"]" * 1800 + b"}}",
            "nested too deeply",
        ),
        (
            b'{"query": "{ __typename }", "variables": ' + b'{"":[' * 560 + b"]}" * 560 + b"}",
            "nested too deeply",
        ),
        (
            b'{"query": "{ __typename }", "extensions": ' + b"[" * 1800 + b"]" * 1800 + b"}",
            "nested too deeply",
        ),
        (b"[" * 2000 + b"]" * 2000, "nested too deeply"),
    ],
)
@pytest.mark.parametrize("accept", [GQL, "application/json"])
async def test_malformed_requests_are_400_with_a_clear_message(
    client: httpx.AsyncClient, body: Any, phrase: str, accept: str
) -> None:
    r = await post(client, body, accept)
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert phrase in err["message"]
    assert err["extensions"]["code"] == "BAD_REQUEST"


async def test_deeply_nested_variables_in_a_get_are_400(client: httpx.AsyncClient) -> None:
    variables = "[" * 1800 + "]" * 1800
    r = await client.get(
        "/graphql",
        params={"query": "{ __typename }", "variables": variables},
        headers={"accept": GQL},
    )
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_null_optional_parameters_are_accepted(client: httpx.AsyncClient) -> None:
    body = {"query": "{ __typename }", "variables": None, "operationName": None, "extensions": None}
    r = await post(client, body, GQL)
    assert r.status_code == 200
    assert r.json() == {"data": {"__typename": "Query"}}


async def test_mutation_over_get_is_405_with_allow(client: httpx.AsyncClient) -> None:
    r = await client.get("/graphql", params={"query": "mutation { __typename }"})
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


async def test_other_methods_are_405_with_allow(client: httpx.AsyncClient) -> None:
    r = await client.put("/graphql", content=b"{}")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, POST"


async def test_unknown_path_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404


async def test_operation_name_selects_the_operation(client: httpx.AsyncClient) -> None:
    doc = "query A { artist(artistId: 1) { name } } query B { artist(artistId: 2) { name } }"
    r = await post(client, {"query": doc, "operationName": "B"})
    assert r.json() == {"data": {"artist": {"name": "Accept"}}}
    missing = await post(client, {"query": doc}, GQL)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["extensions"]["code"] == "OPERATION_RESOLUTION_FAILURE"


# ----- limits -----
async def test_request_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    big = {"query": "{ __typename }", "extensions": {"pad": "x" * 5000}}
    r = await post(client, big)
    assert r.status_code == 413
    err = r.json()["errors"][0]
    assert err["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "graphql.max_request_bytes" in err["message"]


async def test_the_validation_limits_apply_over_http(client: httpx.AsyncClient) -> None:
    deep = (
        "{ artist(artistId: 1) { albums { artist { albums { artist { albums { title } } } } } } }"
    )
    r = await post(client, {"query": deep}, GQL)
    assert r.status_code == 400
    assert r.json()["errors"][0]["extensions"]["code"] == "DEPTH_LIMIT_EXCEEDED"


# ----- batching -----
async def test_a_batch_returns_one_result_per_operation_in_order(
    client: httpx.AsyncClient,
) -> None:
    batch = [
        {"query": "{ artist(artistId: 1) { name } }"},
        {"query": "{ nope }"},
        {"query": "{ __typename }", "variables": 3},
    ]
    r = await post(client, batch, GQL)
    assert r.status_code == 200
    out = r.json()
    assert out[0] == {"data": {"artist": {"name": "AC/DC"}}}
    assert out[1]["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "variables must be a JSON object" in out[2]["errors"][0]["message"]


async def test_a_batch_over_the_limit_is_rejected(client: httpx.AsyncClient) -> None:
    r = await post(client, [{"query": "{ __typename }"}] * 4)
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["extensions"]["code"] == "BATCH_LIMIT_EXCEEDED"
    assert "graphql.max_batch" in err["message"]


async def test_an_empty_batch_is_rejected(client: httpx.AsyncClient) -> None:
    assert (await post(client, [])).status_code == 400


# ----- automatic persisted queries -----
def apq(query: str) -> dict[str, Any]:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


async def test_apq_round_trip_as_apollo_clients_do_it(client: httpx.AsyncClient) -> None:
    query = "{ artist(artistId: 3) { name } }  # " + hashlib.sha1(b"apq1").hexdigest()
    first = await post(client, {"extensions": apq(query)})
    assert first.status_code == 200
    assert first.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    second = await post(client, {"query": query, "extensions": apq(query)})
    assert second.json() == {"data": {"artist": {"name": "Aerosmith"}}}
    # now the hash alone is enough, also over GET
    third = await client.get("/graphql", params={"extensions": json.dumps(apq(query))})
    assert third.status_code == 200
    assert third.json() == {"data": {"artist": {"name": "Aerosmith"}}}


async def test_apq_not_found_is_400_with_graphql_response_json(
    client: httpx.AsyncClient,
) -> None:
    r = await post(client, {"extensions": apq("{ unknownToTheServer }")}, GQL)
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"] == "PersistedQueryNotFound"


async def test_apq_hash_mismatch_is_rejected(client: httpx.AsyncClient) -> None:
    r = await post(client, {"query": "{ __typename }", "extensions": apq("{ other }")})
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["message"] == "provided sha does not match query"
    assert err["extensions"]["code"] == "BAD_REQUEST"


async def test_apq_unsupported_version_is_rejected(client: httpx.AsyncClient) -> None:
    ext = {"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}}
    r = await post(client, {"extensions": ext})
    assert r.status_code == 400
    assert r.json()["errors"][0]["message"] == "Unsupported persisted query version"


async def test_a_null_persisted_query_is_no_persisted_query(client: httpx.AsyncClient) -> None:
    r = await post(client, {"query": "{ __typename }", "extensions": {"persistedQuery": None}})
    assert r.status_code == 200
    assert r.json() == {"data": {"__typename": "Query"}}


async def test_invalid_documents_are_not_persisted(client: httpx.AsyncClient) -> None:
    query = "{ notAField }"
    await post(client, {"query": query, "extensions": apq(query)})
    r = await post(client, {"extensions": apq(query)})
    assert r.json()["errors"][0]["message"] == "PersistedQueryNotFound"


async def test_apq_disabled_answers_not_supported(sqlite_url: str) -> None:
    app = await open_app(sqlite_url, persisted_queries=False, graphiql=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://q"
        ) as c:
            r = await post(c, {"extensions": apq("{ __typename }")})
            assert r.json()["errors"][0] == {
                "message": "PersistedQueryNotSupported",
                "extensions": {"code": "PERSISTED_QUERY_NOT_SUPPORTED"},
            }
            # with GraphiQL off a browser gets JSON, not the page
            page = await c.get("/graphql", headers={"accept": "text/html"})
            assert page.status_code == 406
    finally:
        await app.shutdown()


# ----- GraphiQL, health, metrics -----
async def test_browsers_get_graphiql(client: httpx.AsyncClient) -> None:
    r = await client.get(
        "/graphql", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert "graphiql.min.js" in r.text
    assert '"./graphql"' in r.text  # the endpoint, relative to the page
    assert "unpkg.com" not in r.text and "https://" not in r.text


async def test_introspection_can_be_disabled(sqlite_url: str) -> None:
    app = await open_app(sqlite_url, introspection=False)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://q"
        ) as c:
            r = await post(c, {"query": "{ __schema { types { name } } }"}, GQL)
            assert r.status_code == 400
            assert r.json()["errors"][0]["extensions"]["code"] == "INTROSPECTION_DISABLED"
            ok = await post(c, {"query": "{ __typename }"}, GQL)
            assert ok.status_code == 200
    finally:
        await app.shutdown()


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).text == "ok\n"
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.text == "ready\n"


async def test_readiness_fails_when_the_database_is_gone(fresh_postgresql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(fresh_postgresql)
    try:
        await conn.execute("CREATE TABLE thing (id int PRIMARY KEY, name text)")
    finally:
        await conn.close()
    app = await open_app(fresh_postgresql)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://q"
        ) as c:
            assert (await c.get("/readyz")).status_code == 200
            admin = await asyncpg.connect(fresh_postgresql.rsplit("/", 1)[0] + "/test")
            try:
                name = fresh_postgresql.rsplit("/", 1)[1]
                await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            finally:
                await admin.close()
            r = await c.get("/readyz")
            assert r.status_code == 503
            assert r.text == "database unavailable\n"
            assert (await c.get("/healthz")).status_code == 200
    finally:
        await app.shutdown()


async def test_metrics_count_requests_and_errors_by_code(client: httpx.AsyncClient) -> None:
    await post(client, {"query": "{ __typename }"})
    await post(client, {"query": "{ nopeMetrics }"})
    r = await client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'quiver_graphql_requests_total{method="POST",result="data"}' in text
    assert 'quiver_graphql_errors_total{code="GRAPHQL_VALIDATION_FAILED"}' in text
    assert "quiver_graphql_request_duration_seconds_bucket" in text


async def test_internal_detail_never_reaches_the_client(sqlite_url: str, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "broken.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE thing (id INTEGER PRIMARY KEY, secret_name TEXT)")
    app = await open_app(f"sqlite:///{path}")
    try:
        with sqlite3.connect(path) as conn:
            conn.execute("DROP TABLE thing")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://q"
        ) as c:
            r = await post(c, {"query": "{ things { secretName } }"}, GQL)
            body = r.json()
            assert r.status_code == 200
            assert body["data"] is None
            err = body["errors"][0]
            assert err["extensions"]["code"] == "DATABASE_ERROR"
            assert "no such table" not in json.dumps(body)
    finally:
        await app.shutdown()


# ----- PostgreSQL -----
async def test_queries_over_http_on_postgresql(chinook_postgresql: str) -> None:
    app = await open_app(chinook_postgresql)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://q"
        ) as c:
            r = await post(
                c,
                [
                    {"query": "{ artist(artistId: 1) { name albums { title } } }"},
                    {"query": "{ artistsAggregate { count } }"},
                ],
                GQL,
            )
            assert r.status_code == 200
            first, second = r.json()
            assert first["data"]["artist"]["name"] == "AC/DC"
            assert {a["title"] for a in first["data"]["artist"]["albums"]} == {
                "For Those About To Rock We Salute You",
                "Let There Be Rock",
            }
            assert second == {"data": {"artistsAggregate": {"count": 275}}}
            assert (await c.get("/readyz")).status_code == 200
    finally:
        await app.shutdown()


# ----- the persisted-query store -----
def test_the_persisted_query_store_evicts_the_least_recently_used() -> None:
    from quiver.graphql.apq import ApqStore

    store = ApqStore(max_entries=2)
    store.put("a", "{ a }")
    store.put("b", "{ b }")
    assert store.get("a") == "{ a }"  # a is now the most recent
    store.put("c", "{ c }")
    assert store.get("b") is None
    assert store.get("a") == "{ a }"
    assert store.get("c") == "{ c }"
    assert len(store) == 2


async def test_a_browser_accept_header_on_post_gets_json(client: httpx.AsyncClient) -> None:
    r = await post(client, {"query": "{ __typename }"}, "text/html,application/xhtml+xml,*/*;q=0.8")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"


async def test_uppercase_apq_hashes_are_accepted(client: httpx.AsyncClient) -> None:
    query = "{ artist(artistId: 4) { name } }"
    ext = apq(query)
    ext["persistedQuery"]["sha256Hash"] = ext["persistedQuery"]["sha256Hash"].upper()
    r = await post(client, {"query": query, "extensions": ext})
    assert r.json() == {"data": {"artist": {"name": "Alanis Morissette"}}}
    again = await post(client, {"extensions": ext})
    assert again.json() == {"data": {"artist": {"name": "Alanis Morissette"}}}


def test_the_graphiql_page_escapes_the_endpoint() -> None:
    from quiver.graphql.graphiql import graphiql_page

    page = graphiql_page('/api/<b onclick="alert(1)">x').decode()
    assert "<b onclick" not in page
    assert '"./\\u003cb onclick=\\"alert(1)\\"\\u003ex"' in page  # in the script
    assert "./&lt;b onclick=&quot;alert(1)&quot;&gt;x/static/" in page  # in the asset URLs
