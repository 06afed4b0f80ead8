"""MariaDB spatial columns are written from the GeoJSON they are served as: a create and an
update read back the same geometry; a value that is not a GeoJSON geometry is BAD_USER_INPUT
naming the field, one the column's type does not take INVALID_VALUE, and nothing is written."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.graphql.test_statement_timeout import execute_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

POINT = {"type": "Point", "coordinates": [4.9, 52.37]}
LINE = {"type": "LineString", "coordinates": [[0, 0], [1, 1], [2, 0]]}
POLYGON = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 4], [0, 0]]]}


async def _run(url: str, query: str, variables: dict[str, Any]) -> Any:
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        outcome = await engine.execute(engine.prepare(query, None), variables)
    finally:
        await engine.close()
    return orjson.loads(outcome.body)


CREATE = "mutation($i: PlaceCreateInput!) { createPlace(input: $i) { id at shape } }"


async def test_geometries_are_written_from_the_geojson_they_are_served_as(
    fresh_mysql: str,
) -> None:
    execute_statements(
        fresh_mysql, ["CREATE TABLE place (id INT PRIMARY KEY, at POINT, shape GEOMETRY)"]
    )
    made = await _run(fresh_mysql, CREATE, {"i": {"id": 1, "at": POINT, "shape": LINE}})
    assert made == {"data": {"createPlace": {"id": 1, "at": POINT, "shape": LINE}}}
    changed = await _run(
        fresh_mysql,
        "mutation($s: JSON) { updatePlace(id: 1, set: {shape: $s}) { shape } }",
        {"s": POLYGON},
    )
    assert changed == {"data": {"updatePlace": {"shape": POLYGON}}}, changed
    read = await _run(fresh_mysql, "{ places { id at shape } }", {})
    assert read == {"data": {"places": [{"id": 1, "at": POINT, "shape": POLYGON}]}}


@pytest.mark.parametrize(
    ("value", "code", "said"),
    [
        ("a point", "BAD_USER_INPUT", "is not a GeoJSON geometry"),
        ({"type": "Circle", "coordinates": [0, 0]}, "BAD_USER_INPUT", "is not a GeoJSON geometry"),
        (LINE, "INVALID_VALUE", "Incorrect POINT value"),
        ({"type": "Point", "coordinates": ["a"]}, "INVALID_VALUE", "Incorrect GeoJSON format"),
    ],
)
async def test_a_value_that_is_no_geometry_of_the_column_is_refused(
    fresh_mysql: str, value: Any, code: str, said: str
) -> None:
    execute_statements(fresh_mysql, ["CREATE TABLE place (id INT PRIMARY KEY, at POINT)"])
    body = await _run(
        fresh_mysql,
        "mutation($i: PlaceCreateInput!) { createPlace(input: $i) { id } }",
        {"i": {"id": 1, "at": value}},
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    assert said in error["message"], error
    assert (await _run(fresh_mysql, "{ places { id } }", {}))["data"] == {"places": []}
