"""Limits whose arithmetic would overflow 64 bits still answer with the limit's own error.

A cost or depth too large for a 64-bit integer (a huge ``first``, fifty nested lists, a chain
of fragments each spreading the next several times) is reported as COST_LIMIT_EXCEEDED or
DEPTH_LIMIT_EXCEEDED with a number JSON can carry, over HTTP as well as in process.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
import pytest_asyncio

from graphql import parse, specified_rules, validate
from quiver.config.settings import GraphQLSettings
from quiver.graphql.http import GraphQLApp
from quiver.graphql.limits import MAX_REPORTED_COST, validation_rules
from tests.graphql.test_http import open_app

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: The largest integer JSON carries exactly (JavaScript's Number.MAX_SAFE_INTEGER).
JSON_SAFE = 2**53 - 1


def nested_lists(levels: int) -> str:
    """``levels`` nested unlimited lists: artists → albums → artist → albums → …"""
    body = "name" if levels % 2 else "title"
    for i in range(levels - 1):
        body = ("albums { " if i % 2 == 0 else "artist { ") + body + " }"
    return "{ artists { " + body + " } }"


def fragment_chain(length: int, spreads: int = 5) -> str:
    frags = ["fragment F0 on Artist { artistId name }"]
    for i in range(1, length):
        frags.append(f"fragment F{i} on Artist {{ {' '.join([f'...F{i - 1}'] * spreads)} }}")
    spread = f"...F{length - 1}"
    return "{ artists { " + spread + " } }\n" + "\n".join(frags)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app(chinook_sqlite: Path) -> AsyncIterator[GraphQLApp]:
    app = await open_app(f"sqlite:///{chinook_sqlite.absolute()}", max_depth=100)
    try:
        yield app
    finally:
        await app.shutdown()


async def _post(app: GraphQLApp, query: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://quiver") as client:
        return await client.post(
            "/graphql",
            json={"query": query},
            headers={"accept": "application/graphql-response+json"},
        )


@pytest.mark.parametrize(
    "query",
    [
        "{ artists(limit: 99999999999999999999) { name albums { title } } }",
        nested_lists(50),
        fragment_chain(40),
    ],
    ids=["huge-limit", "fifty-levels", "forty-fragments"],
)
async def test_a_cost_beyond_64_bits_is_a_cost_limit_error(app: GraphQLApp, query: str) -> None:
    r = await _post(app, query)
    assert r.status_code == 400, r.text
    body = orjson.loads(r.content)
    errors = [e for e in body["errors"] if e["extensions"]["code"] == "COST_LIMIT_EXCEEDED"]
    assert len(errors) == 1, body
    ext = errors[0]["extensions"]
    assert ext["limit"] == 50_000
    assert 50_000 < ext["cost"] <= JSON_SAFE
    assert "graphql.max_cost" in errors[0]["message"]


async def test_fifty_levels_are_refused_for_depth_with_the_default_limit(
    chinook_sqlite: Path,
) -> None:
    app = await open_app(f"sqlite:///{chinook_sqlite.absolute()}")
    try:
        r = await _post(app, nested_lists(50))
    finally:
        await app.shutdown()
    assert r.status_code == 400, r.text
    codes = {e["extensions"]["code"] for e in orjson.loads(r.content)["errors"]}
    assert codes == {"DEPTH_LIMIT_EXCEEDED", "COST_LIMIT_EXCEEDED"}


async def test_a_saturated_cost_says_it_is_at_least_the_cap() -> None:
    from graphql import build_schema

    schema = build_schema("type Query { a(first: Int): [A!]! } type A { id: Int! a: [A!]! }")
    query = "{ a(first: 2000000000) { " + "a { " * 8 + "id" + " }" * 10
    rules = list(specified_rules) + validation_rules(GraphQLSettings())
    (error,) = validate(schema, parse(query), rules)
    assert error.extensions == {
        "code": "COST_LIMIT_EXCEEDED",
        "limit": 50_000,
        "cost": MAX_REPORTED_COST,
    }
    assert f"at least {MAX_REPORTED_COST}" in error.message


async def test_a_variable_row_count_beyond_64_bits_is_a_cost_limit_error(app: GraphQLApp) -> None:
    # Int variables are 32-bit, but each level multiplies: 2e9 ** 3 overflows 64 bits.
    query = (
        "query ($n: Int) { artists(limit: $n) { albums(limit: $n) { tracks(limit: $n)"
        " { name } } } }"
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://quiver") as client:
        r = await client.post("/graphql", json={"query": query, "variables": {"n": 2_000_000_000}})
    assert r.status_code == 200, r.text
    (error,) = orjson.loads(r.content)["errors"]
    assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert error["extensions"]["cost"] <= JSON_SAFE


@pytest.mark.parametrize(
    "query",
    [
        "{ artists(limit: 1) { " + " name" * 2000 + " } }",
        "{ artists(limit: 1) { ...F0 } }\n"
        + "\n".join(f"fragment F{i} on Artist {{ ...F{i + 1} }}" for i in range(1800))
        + "\nfragment F1800 on Artist { name }",
    ],
    ids=["one-field-2000-times", "1800-chained-fragments"],
)
async def test_a_document_too_large_to_validate_says_what_to_send_instead(
    app: GraphQLApp, query: str
) -> None:
    r = await _post(app, query)
    assert r.status_code == 400, r.text
    (error,) = orjson.loads(r.content)["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "too complex to validate" in error["message"]
    assert "smaller document" in error["message"]


async def test_a_document_over_the_token_limit_is_refused_before_it_is_read_further(
    app: GraphQLApp,
) -> None:
    # 25,000 aliased root fields (850 kB): reading and validating them took seconds of the
    # event loop before the alias limit refused them.
    query = "{ " + " ".join(f"a{i}: artists(limit: 1) {{ name }}" for i in range(25_000)) + " }"
    started = time.monotonic()
    r = await _post(app, query)
    assert time.monotonic() - started < 2.0
    assert r.status_code == 400, r.text
    (error,) = orjson.loads(r.content)["errors"]
    assert error["extensions"] == {"code": "TOKEN_LIMIT_EXCEEDED", "limit": 15_000}
    assert "graphql.max_tokens" in error["message"]


@pytest.mark.parametrize(
    "query",
    [
        "{ artists(first: 99999999999999999999) { name } }",  # lists take limit, not first
        "{ artist(artistId: 1, limit: 2000000000) { name } }",  # one row takes neither
    ],
)
async def test_a_row_count_argument_the_field_does_not_take_is_not_costed(
    app: GraphQLApp, query: str
) -> None:
    r = await _post(app, query)
    errors = r.json()["errors"]
    assert [e["extensions"]["code"] for e in errors] == ["GRAPHQL_VALIDATION_FAILED"], errors
    assert errors[0]["message"].startswith("Unknown argument"), errors
