"""PostgreSQL does not enforce the dimensions an array column declares: a value of several
dimensions is served as the one-dimension list its GraphQL type declares ([Int], [String]),
its elements in order, never as nested lists the type does not describe."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from graphql import GraphQLList, GraphQLNamedType, GraphQLNonNull, get_named_type
from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.graphql.test_statement_timeout import execute_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

STATEMENTS = [
    "CREATE TYPE pt AS (x int, y int)",
    "CREATE TABLE grid (id int PRIMARY KEY, a int[][], t text[], d date[], p pt[])",
    "INSERT INTO grid VALUES"
    " (1, '{{1,2},{3,4}}', '{{a,b},{c,NULL}}', '{{2024-01-02},{2024-03-04}}'),"
    " (2, '{5,6}', '{x}', '{2024-05-06}'), (3, NULL, '{}', NULL),"
    " (4, '{{{7},{8}},{{9},{10}}}', '{{{y}}}', '{}')",
    "UPDATE grid SET p = ARRAY[[ROW(1, 2)::pt], [ROW(3, 4)::pt]] WHERE id = 1",
    "UPDATE grid SET p = ARRAY[ROW(5, 6)::pt] WHERE id = 2",
]


@pytest.fixture
def grid(fresh_postgresql: Any) -> str:
    url = str(fresh_postgresql)
    execute_statements(url, STATEMENTS)
    return url


async def test_values_of_several_dimensions_are_served_as_declared_lists(grid: str) -> None:
    schema = await reflect_database(grid)
    engine = await GraphQLEngine.open(
        schema, QuiverSettings.model_validate({"database": {"url": grid}})
    )
    try:
        grid_type = engine.graphql_schema.get_type("Grid")
        assert grid_type is not None
        for name in ("a", "t", "d"):
            declared: Any = grid_type.fields[name].type  # type: ignore[attr-defined]
            if isinstance(declared, GraphQLNonNull):
                declared = declared.of_type
            assert isinstance(declared, GraphQLList), (name, declared)
            element = declared.of_type
            element = element.of_type if isinstance(element, GraphQLNonNull) else element
            assert isinstance(element, GraphQLNamedType), (name, declared)
            assert get_named_type(element) is element
        query = "{ grids(orderBy: {id: ASC}) { id a t d p } }"
        body = orjson.loads((await engine.execute(engine.prepare(query, None), None)).body)
        filtered = "{ grids(where: {a: {contains: [3]}}) { id a } }"
        found = orjson.loads((await engine.execute(engine.prepare(filtered, None), None)).body)
    finally:
        await engine.close()
    assert body == {
        "data": {
            "grids": [
                {
                    "id": 1,
                    "a": [1, 2, 3, 4],
                    "t": ["a", "b", "c", None],
                    "d": ["2024-01-02", "2024-03-04"],
                    "p": [{"x": 1, "y": 2}, {"x": 3, "y": 4}],
                },
                {"id": 2, "a": [5, 6], "t": ["x"], "d": ["2024-05-06"], "p": [{"x": 5, "y": 6}]},
                {"id": 3, "a": None, "t": [], "d": None, "p": None},
                {"id": 4, "a": [7, 8, 9, 10], "t": ["y"], "d": [], "p": None},
            ]
        }
    }, body
    assert found == {"data": {"grids": [{"id": 1, "a": [1, 2, 3, 4]}]}}


async def test_subscriptions_serve_values_of_several_dimensions_as_queries_do(
    fresh_postgresql: str, modules: Any
) -> None:
    """A change's images, logged by the triggers or by a mutation, or logged nested before
    the triggers served such values flat, are served as the query serves the row."""
    from tests.conftest import ChinookDb
    from tests.graphql.subscription_fixtures import serve_database, watching

    db = ChinookDb("postgresql", fresh_postgresql)
    try:
        db.query("CREATE TABLE grid (id int PRIMARY KEY, a int[][], t text[])")
        query = "subscription { gridChanged { op after { id a t } } }"
        async with serve_database(db, fresh_postgresql) as live:
            async with watching(live, modules, "Grid", query) as client:
                await live.sql("INSERT INTO grid VALUES (1, '{{1,2},{3,4}}', '{{a,b},{c,NULL}}')")
                # logged nested, as triggers installed before they logged such values flat did
                await live.sql(
                    "INSERT INTO quiver_change_log (entity, entity_key, operation, after_image,"
                    " changed_fields, transaction_id) VALUES ('Grid', '{\"id\": 2}', 'insert',"
                    ' \'{"id": 2, "a": [[5], [6]], "t": [["x"], [null]]}\', \'[]\', \'x\')'
                )
                payloads = await client.next_payloads(2)
                afters = [p["data"]["gridChanged"]["after"] for p in payloads]
                assert afters == [
                    {"id": 1, "a": [1, 2, 3, 4], "t": ["a", "b", "c", None]},
                    {"id": 2, "a": [5, 6], "t": ["x", None]},
                ]
                await live.sql("INSERT INTO grid VALUES (2, '{{5},{6}}', '{{x},{NULL}}')")
                [logged] = await client.next_payloads(1)
                assert logged["data"]["gridChanged"]["after"] == afters[1]
            engine = live.app.engine
            assert engine is not None
            query = "{ grids { id a t } }"
            body = orjson.loads((await engine.execute(engine.prepare(query, None), None)).body)
            assert body["data"]["grids"] == afters
    finally:
        db.close()
