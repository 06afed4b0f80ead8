"""Queries answered by a coalesced PostgreSQL statement (``database.coalesce``) answer, byte for
byte, what they answer alone: every shape the planner gives a root field, rows found and not,
null fields, lists, aggregates and connections with their cursors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from quiver.sql.database import _Postgres

pytestmark = pytest.mark.asyncio(loop_scope="session")

SCHEMA = """
CREATE TABLE shelf (id int PRIMARY KEY, name text);
CREATE TABLE book (
    id int PRIMARY KEY, shelf_id int REFERENCES shelf (id), title text NOT NULL, pages int,
    cost money
);
INSERT INTO shelf SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE 'shelf ' || g END
    FROM generate_series(1, 6) g;
INSERT INTO book SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 1 + g % 6 END, 'book ' || g,
    CASE WHEN g % 4 = 0 THEN NULL ELSE g * 10 END, g * 1.5
    FROM generate_series(1, 40) g;
"""

#: Each document with the variables of the requests that run it at once.
SHAPES: list[tuple[str, list[dict[str, Any]]]] = [
    (
        "query($id: Int!) { shelf(id: $id) { name books { title pages } } }",
        [{"id": i} for i in (1, 2, 3, 99, 4, 2, 6, 0)],
    ),
    (
        "query($id: Int!) { book(id: $id) { title pages cost shelf { name } } }",
        [{"id": i} for i in (7, 8, 1, 3, 41, 12, 7)],
    ),
    (
        "query($n: Int, $lim: Int) { books(where: {pages: {gt: $n}}, limit: $lim,"
        " orderBy: [{pages: DESC_NULLS_LAST}]) { id title shelf { id } } }",
        [{"n": n, "lim": lim} for n, lim in ((100, 3), (390, 5), (1000, 2), (0, 1), (50, 10))],
    ),
    (
        "query($n: Int) { booksAggregate(where: {pages: {gt: $n}}) {"
        " count sum { pages } avg { pages } max { title } } }",
        [{"n": n} for n in (100, 1000, 0, 390, 250)],
    ),
    (
        "query($f: Int, $a: String) { booksConnection(first: $f, after: $a) {"
        " edges { cursor node { id title } } pageInfo { hasNextPage endCursor } } }",
        [{"f": f} for f in (1, 2, 3, 5, 40)],
    ),
    (
        "query($a: Int!, $b: Int!) { one: shelf(id: $a) { name } two: book(id: $b) { title } }",
        [{"a": a, "b": b} for a, b in ((1, 2), (3, 99), (99, 5), (2, 7))],
    ),
]


@pytest_asyncio.fixture(loop_scope="session")
async def engines(fresh_postgresql: str) -> AsyncIterator[tuple[GraphQLEngine, GraphQLEngine]]:
    """Engines over one database: coalescing on, and off."""
    admin = await asyncpg.connect(fresh_postgresql)
    try:
        await admin.execute(SCHEMA)
    finally:
        await admin.close()
    schema = await reflect_database(fresh_postgresql)
    opened: list[GraphQLEngine] = []
    try:
        for coalesce in (True, False):
            settings = QuiverSettings.model_validate(
                {
                    "database": {"url": fresh_postgresql, "coalesce": coalesce},
                    "graphql": {"cursor_secret": "same on both"},
                }
            )
            opened.append(await GraphQLEngine.open(schema, settings))
        yield opened[0], opened[1]
    finally:
        for engine in opened:
            await engine.close()


async def _bodies(engine: GraphQLEngine, query: str, requests: list[dict[str, Any]]) -> list[Any]:
    prepared = engine.prepare(query, None)
    outcomes = await asyncio.gather(*(engine.execute(prepared, v) for v in requests))
    return [(o.kind, o.body) for o in outcomes]


def _coalesced(engine: GraphQLEngine) -> int:
    """How many statement texts have been coalesced so far."""
    return sum(1 for g in cast("_Postgres", engine.database)._coalesced.values() if g.statements)


@pytest.mark.parametrize(("query", "requests"), SHAPES)
async def test_coalesced_queries_answer_what_they_answer_alone(
    engines: tuple[GraphQLEngine, GraphQLEngine], query: str, requests: list[dict[str, Any]]
) -> None:
    together, alone = engines
    before = _coalesced(together)
    answers = await _bodies(together, query, requests)
    expected = [(await _bodies(alone, query, [v]))[0] for v in requests]
    assert answers == expected
    assert all(kind == "data" for kind, _ in answers)
    assert _coalesced(together) > before  # they did run together
    assert _coalesced(alone) == 0  # database.coalesce: false


async def test_a_connection_page_after_a_cursor_answers_as_alone(
    engines: tuple[GraphQLEngine, GraphQLEngine],
) -> None:
    together, alone = engines
    query = SHAPES[4][0]
    first = await _bodies(alone, query, [{"f": n} for n in (1, 3, 6, 9)])
    cursors = [
        orjson.loads(body)["data"]["booksConnection"]["pageInfo"]["endCursor"] for _, body in first
    ]
    requests = [{"f": 4, "a": c} for c in cursors]
    answers = await _bodies(together, query, requests)
    assert answers == [(await _bodies(alone, query, [v]))[0] for v in requests]


async def test_a_value_its_column_cannot_read_fails_only_its_own_query(
    engines: tuple[GraphQLEngine, GraphQLEngine],
) -> None:
    together, alone = engines
    query = "query($c: String) { books(where: {cost: {gt: $c}}, limit: 2) { id cost } }"
    requests = [{"c": c} for c in ("$1.00", "$3.00", "abc", "$50.00", "12.5")]
    answers = await _bodies(together, query, requests)
    assert answers == [(await _bodies(alone, query, [v]))[0] for v in requests]
    assert [kind for kind, _ in answers] == ["data", "data", "field_error", "data", "data"]
    assert b"'abc' is not a valid money value" in answers[2][1]
