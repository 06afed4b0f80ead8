"""PostgreSQL composite columns are written from the JSON object they are served as, nested
composites too, in any schema: a create and an update read back the same object and the change
log records it. An attribute the type does not have, or a value that is no object, is
BAD_USER_INPUT naming the field; a value an attribute's type cannot hold INVALID_VALUE; and
nothing is written. A compiled schema.json keeps the attributes, so a server started from it
writes composites as well."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.authoring import compile_app
from quiver.schema.ir import Attribute, Composite, Schema, load_schema_file
from quiver.schema.reflect import reflect_database
from tests.graphql.test_statement_timeout import execute_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

DDL = [
    "CREATE SCHEMA kinds",
    "CREATE SCHEMA shop",
    "CREATE TYPE kinds.point2 AS (x integer, y integer)",
    "CREATE TYPE shop.box AS (label text, corner kinds.point2, weight numeric(5,2))",
    # A NOT NULL domain beside the composite: the composite is read without a row of the table.
    "CREATE DOMAIN shop.code AS text NOT NULL",
    "CREATE TYPE shop.route AS (name text, stops kinds.point2[])",
    "CREATE TYPE shop.cargo AS (tag text, boxes shop.box[])",
    "CREATE TABLE shop.parcel (id integer PRIMARY KEY, ref shop.code DEFAULT 'p',"
    " spot kinds.point2, box shop.box, boxes shop.box[], route shop.route,"
    " spots kinds.point2[], cargo shop.cargo)",
]

BOX = {"label": "crate", "corner": {"x": 1, "y": 2}, "weight": 1.5}
CHANGE_LOG = "parcel_log"


def _settings(url: str) -> QuiverSettings:
    return QuiverSettings.model_validate(
        {"database": {"url": url, "pool_max": 2}, "mutations": {"change_log_table": CHANGE_LOG}}
    )


async def _run(schema: Schema, url: str, query: str, variables: dict[str, Any]) -> Any:
    engine = await GraphQLEngine.open(schema, _settings(url))
    try:
        outcome = await engine.execute(engine.prepare(query, None), variables)
    finally:
        await engine.close()
    return orjson.loads(outcome.body)


async def _reflected(url: str) -> Schema:
    execute_statements(url, DDL)
    return await reflect_database(url, schemas=["shop"])


CREATE = "mutation($i: ParcelCreateInput!) { createParcel(input: $i) { id spot box } }"
UPDATE = "mutation($s: ParcelSetInput!) { updateParcel(id: 1, set: $s) { spot box } }"


async def test_reflection_keeps_the_attributes_of_composites_nested_and_in_other_schemas(
    fresh_postgresql: str,
) -> None:
    schema = await _reflected(fresh_postgresql)
    parcel = schema.entity("Parcel")
    assert parcel is not None
    point = Composite(
        db_schema="kinds",
        name="point2",
        attributes=(
            Attribute(name="x", db_type="integer"),
            Attribute(name="y", db_type="integer"),
        ),
    )
    box = Composite(
        db_schema="shop",
        name="box",
        attributes=(
            Attribute(name="label", db_type="text"),
            Attribute(name="corner", db_type="kinds.point2", composite=point),
            Attribute(name="weight", db_type="numeric(5,2)"),
        ),
    )
    fields = {f.name: f for f in parcel.fields}
    assert (fields["spot"].composite, fields["spot"].db_type) == (point, "point2")
    assert fields["box"].composite == box
    assert (fields["boxes"].composite, fields["boxes"].is_list) == (box, True)
    assert (fields["spots"].composite, fields["spots"].is_list) == (point, True)
    cargo = fields["cargo"].composite
    assert cargo is not None and cargo.attribute("boxes") == Attribute(
        name="boxes", db_type="shop.box[]", composite=box, is_list=True
    )
    assert all(f.composite_array is None for f in parcel.fields)
    assert fields["id"].composite is None and fields["ref"].composite is None
    assert Schema.from_json(schema.to_json()) == schema


async def test_composites_are_written_from_the_json_they_are_served_as(
    fresh_postgresql: str,
) -> None:
    schema = await _reflected(fresh_postgresql)
    made = await _run(
        schema, fresh_postgresql, CREATE, {"i": {"id": 1, "spot": {"x": 3, "y": 4}, "box": BOX}}
    )
    assert made == {"data": {"createParcel": {"id": 1, "spot": {"x": 3, "y": 4}, "box": BOX}}}, made
    # Attributes left out are null; so is a nested composite given as null.
    changed = await _run(
        schema, fresh_postgresql, UPDATE, {"s": {"spot": {"y": 9}, "box": {"corner": None}}}
    )
    empty_box = {"label": None, "corner": None, "weight": None}
    assert changed == {"data": {"updateParcel": {"spot": {"x": None, "y": 9}, "box": empty_box}}}, (
        changed
    )
    cleared = await _run(schema, fresh_postgresql, UPDATE, {"s": {"spot": None, "box": None}})
    assert cleared == {"data": {"updateParcel": {"spot": None, "box": None}}}, cleared
    many = await _run(
        schema,
        fresh_postgresql,
        "mutation($i: [ParcelCreateInput!]!) { createParcels(inputs: $i) { id box } }",
        {"i": [{"id": 2, "box": {"corner": {"x": -1}}}, {"id": 3, "box": {}}]},
    )
    assert many == {
        "data": {
            "createParcels": [
                {"id": 2, "box": {**empty_box, "corner": {"x": -1, "y": None}}},
                {"id": 3, "box": empty_box},
            ]
        }
    }, many
    read = await _run(schema, fresh_postgresql, "{ parcels(orderBy: {id: ASC}) { id } }", {})
    assert read == {"data": {"parcels": [{"id": 1}, {"id": 2}, {"id": 3}]}}


async def test_the_change_log_records_composites_as_served(fresh_postgresql: str) -> None:
    schema = await _reflected(fresh_postgresql)
    await _run(schema, fresh_postgresql, CREATE, {"i": {"id": 1, "box": BOX}})
    await _run(schema, fresh_postgresql, UPDATE, {"s": {"box": {"label": "bag"}}})
    images = _log(fresh_postgresql)
    assert images == [
        ("insert", None, BOX),
        ("update", BOX, {"label": "bag", "corner": None, "weight": None}),
    ]


def _log(url: str, name: str = "box") -> list[tuple[str, Any, Any]]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f"SELECT operation, before_image, after_image FROM {CHANGE_LOG} ORDER BY id"
        ).fetchall()
    return [
        (op, None if before is None else before[name], after[name]) for op, before, after in rows
    ]


@pytest.mark.parametrize(
    ("box", "code", "said"),
    [
        (
            {"label": "crate", "wieght": 2},
            "BAD_USER_INPUT",
            "Parcel.box: box has no attribute 'wieght'; its attributes are label, corner,"
            " weight; did you mean 'weight'?",
        ),
        (
            {"corner": {"x": 1, "z": 2}},
            "BAD_USER_INPUT",
            "Parcel.box.corner: point2 has no attribute 'z'; its attributes are x, y",
        ),
        ("crate", "BAD_USER_INPUT", 'Parcel.box: "crate" is not an object of the attributes'),
        ([1, 2], "BAD_USER_INPUT", "Parcel.box: [1,2] is not an object of the attributes"),
        ({"corner": 5}, "BAD_USER_INPUT", "Parcel.box.corner: 5 is not an object"),
        (
            {"corner": {"x": "left"}},
            "INVALID_VALUE",
            "Parcel.box: the value does not fit the column's type; the database said: invalid"
            ' input syntax for type integer: "left"',
        ),
        (
            {"weight": 12345},
            "INVALID_VALUE",
            "Parcel.box: the value is outside the range of the column's type; the database"
            " said: numeric field overflow",
        ),
    ],
)
async def test_a_value_that_is_no_object_of_the_type_is_refused(
    fresh_postgresql: str, box: Any, code: str, said: str
) -> None:
    schema = await _reflected(fresh_postgresql)
    body = await _run(schema, fresh_postgresql, CREATE, {"i": {"id": 1, "box": box}})
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    assert said in error["message"], error
    assert error["extensions"]["argumentPath"] == ["input", "box"], error
    assert body["data"] is None
    read = await _run(schema, fresh_postgresql, "{ parcels { id } }", {})
    assert read == {"data": {"parcels": []}}


@pytest.mark.parametrize(
    ("spot", "code", "said"),
    [
        ({"x": 5, "Y": 6}, "BAD_USER_INPUT", "Parcel.spot: point2 has no attribute 'Y'"),
        (7, "BAD_USER_INPUT", "Parcel.spot: 7 is not an object of the attributes of point2 (x, y)"),
        ({"x": 1.5}, "INVALID_VALUE", "Parcel.spot: the value does not fit the column's type"),
    ],
)
async def test_an_update_the_type_cannot_hold_writes_nothing(
    fresh_postgresql: str, spot: Any, code: str, said: str
) -> None:
    schema = await _reflected(fresh_postgresql)
    await _run(schema, fresh_postgresql, CREATE, {"i": {"id": 1, "spot": {"x": 1, "y": 2}}})
    body = await _run(schema, fresh_postgresql, UPDATE, {"s": {"spot": spot}})
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    assert said in error["message"], error
    read = await _run(schema, fresh_postgresql, "{ parcels { spot } }", {})
    assert read == {"data": {"parcels": [{"spot": {"x": 1, "y": 2}}]}}


ARRAYS = "id boxes spots route cargo"
CREATE_ARRAYS = f"mutation($i: ParcelCreateInput!) {{ createParcel(input: $i) {{ {ARRAYS} }} }}"
UPDATE_ARRAYS = f"mutation($s: ParcelSetInput!) {{ updateParcel(id: 1, set: $s) {{ {ARRAYS} }} }}"
EMPTY_BOX = {"label": None, "corner": None, "weight": None}


async def test_arrays_of_composites_are_written_from_the_json_lists_they_are_served_as(
    fresh_postgresql: str,
) -> None:
    schema = await _reflected(fresh_postgresql)
    given = {
        "id": 1,
        "boxes": [BOX, None, {"corner": {"y": 7}}, {}],
        "spots": [{"x": 1, "y": 2}, None],
        "route": {"name": "east", "stops": [{"x": 3}, None, {"x": 4, "y": 5}]},
        "cargo": {"tag": "t", "boxes": [None, BOX]},
    }
    made = await _run(schema, fresh_postgresql, CREATE_ARRAYS, {"i": given})
    served = {
        "id": 1,
        "boxes": [BOX, None, {**EMPTY_BOX, "corner": {"x": None, "y": 7}}, EMPTY_BOX],
        "spots": [{"x": 1, "y": 2}, None],
        "route": {"name": "east", "stops": [{"x": 3, "y": None}, None, {"x": 4, "y": 5}]},
        "cargo": {"tag": "t", "boxes": [None, BOX]},
    }
    assert made == {"data": {"createParcel": served}}, made
    # An empty list is an empty array, null is NULL, inside a composite as well.
    changed = await _run(
        schema,
        fresh_postgresql,
        UPDATE_ARRAYS,
        {"s": {"boxes": [], "spots": None, "route": {"stops": []}, "cargo": {"boxes": None}}},
    )
    emptied = {
        "id": 1,
        "boxes": [],
        "spots": None,
        "route": {"name": None, "stops": []},
        "cargo": {"tag": None, "boxes": None},
    }
    assert changed == {"data": {"updateParcel": emptied}}, changed
    # What a query serves is written back as it is, and read back equal.
    again = await _run(schema, fresh_postgresql, UPDATE_ARRAYS, {"s": served | {"id": 1}})
    assert again == {"data": {"updateParcel": served}}, again
    read = await _run(schema, fresh_postgresql, "{ parcels { " + ARRAYS + " } }", {})
    assert read == {"data": {"parcels": [served]}}, read
    copied = await _run(schema, fresh_postgresql, CREATE_ARRAYS, {"i": served | {"id": 2}})
    assert copied == {"data": {"createParcel": served | {"id": 2}}}, copied


async def test_the_change_log_records_arrays_of_composites_as_served(
    fresh_postgresql: str,
) -> None:
    schema = await _reflected(fresh_postgresql)
    await _run(schema, fresh_postgresql, CREATE_ARRAYS, {"i": {"id": 1, "boxes": [BOX, None]}})
    await _run(schema, fresh_postgresql, UPDATE_ARRAYS, {"s": {"boxes": []}})
    assert _log(fresh_postgresql, "boxes") == [
        ("insert", None, [BOX, None]),
        ("update", [BOX, None], []),
    ]


@pytest.mark.parametrize(
    ("given", "code", "said"),
    [
        (
            {"boxes": [BOX, None, BOX, {"label": "x", "wieght": 2}]},
            "BAD_USER_INPUT",
            "Parcel.boxes[3]: box has no attribute 'wieght'; its attributes are label, corner,"
            " weight; did you mean 'weight'?",
        ),
        (
            {"boxes": [{}, {"corner": {"x": 1, "z": 2}}]},
            "BAD_USER_INPUT",
            "Parcel.boxes[1].corner: point2 has no attribute 'z'; its attributes are x, y",
        ),
        (
            {"boxes": [BOX, "crate"]},
            "BAD_USER_INPUT",
            'Parcel.boxes[1]: "crate" is not an object of the attributes of box (label, corner,'
            " weight)",
        ),
        (
            {"spots": [[{"x": 1}], [{"x": 2}]]},
            "BAD_USER_INPUT",
            "Parcel.spots[0]: a list inside the list: arrays of the composite type point2 are"
            " written one dimension deep",
        ),
        (
            {"route": {"stops": {"x": 1}}},
            "BAD_USER_INPUT",
            'Parcel.route.stops: {"x":1} is not a list of objects of the attributes of point2'
            " (x, y)",
        ),
        (
            {"cargo": {"boxes": [None, {"corner": {"y": 1, "Y": 2}}]}},
            "BAD_USER_INPUT",
            "Parcel.cargo.boxes[1].corner: point2 has no attribute 'Y'; its attributes are x, y;"
            " did you mean 'y'?",
        ),
        (
            {"boxes": [BOX, {"corner": {"x": "left"}}]},
            "INVALID_VALUE",
            # (an update of the one field says "nothing was written. The database said")
            (
                "Parcel.boxes: the value does not fit the column's type;",
                'said: invalid input syntax for type integer: "left"',
            ),
        ),
        (
            {"route": {"stops": [{"x": 1.5}]}},
            "INVALID_VALUE",
            "Parcel.route: the value does not fit the column's type",
        ),
        (
            {"spot": {"x": 1}, "boxes": [{"weight": 12345}]},
            "INVALID_VALUE",
            "Parcel.boxes: the value is outside the range of the column's type; the database"
            " said: numeric field overflow",
        ),
    ],
)
async def test_an_array_of_composites_that_is_no_list_of_objects_of_the_type_is_refused(
    fresh_postgresql: str, given: dict[str, Any], code: str, said: str | tuple[str, ...]
) -> None:
    parts = said if isinstance(said, tuple) else (said,)
    schema = await _reflected(fresh_postgresql)
    body = await _run(schema, fresh_postgresql, CREATE_ARRAYS, {"i": {"id": 1, **given}})
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    assert all(p in error["message"] for p in parts), error
    assert body["data"] is None
    # An update is refused the same way, and writes nothing.
    await _run(schema, fresh_postgresql, CREATE_ARRAYS, {"i": {"id": 1, "boxes": [BOX]}})
    body = await _run(schema, fresh_postgresql, UPDATE_ARRAYS, {"s": given})
    [error] = body["errors"]
    assert error["extensions"]["code"] == code, error
    assert all(p in error["message"] for p in parts), error
    read = await _run(schema, fresh_postgresql, "{ parcels { " + ARRAYS + " } }", {})
    unchanged = {"id": 1, "boxes": [BOX], "spots": None, "route": None, "cargo": None}
    assert read == {"data": {"parcels": [unchanged]}}, read


async def test_a_composite_is_written_from_a_literal_of_the_document(
    fresh_postgresql: str,
) -> None:
    schema = await _reflected(fresh_postgresql)
    made = await _run(
        schema,
        fresh_postgresql,
        'mutation { createParcel(input: {id: 1, box: {label: "crate", corner: {x: 1, y: 2},'
        " weight: 1.5}}) { box } }",
        {},
    )
    assert made == {"data": {"createParcel": {"box": BOX}}}, made


APP = """
import quiver

@quiver.type(source="parcel", key="id", db_schema="shop")
class Parcel:
    id: int
    box: quiver.JSON | None
    boxes: quiver.JSON | None
"""


async def _compiled(url: str, tmp_path: Path) -> Schema:
    """The schema a server loads from the schema.json compiled of APP over the database."""
    execute_statements(url, DDL)
    (tmp_path / "app.py").write_text(APP)
    result = await compile_app(tmp_path / "app.py", extend_db=url)
    assert result.schema is not None, result.lines()
    (tmp_path / "schema.json").write_text(result.schema.to_json())
    return load_schema_file(tmp_path / "schema.json")


async def test_a_server_of_the_compiled_schema_writes_composites(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    compiled = await _compiled(fresh_postgresql, tmp_path)
    parcel = compiled.entity("Parcel")
    assert parcel is not None
    box = parcel.field("box")
    assert box is not None and box.composite is not None
    assert [a.name for a in box.composite.attributes] == ["label", "corner", "weight"]
    made = await _run(compiled, fresh_postgresql, CREATE, {"i": {"id": 1, "box": BOX}})
    assert made == {"data": {"createParcel": {"id": 1, "spot": None, "box": BOX}}}, made
    body = await _run(compiled, fresh_postgresql, CREATE, {"i": {"id": 2, "box": {"lable": 1}}})
    [error] = body["errors"]
    assert "box has no attribute 'lable'" in error["message"], error


async def test_a_server_of_the_compiled_schema_writes_arrays_of_composites(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    compiled = await _compiled(fresh_postgresql, tmp_path)
    parcel = compiled.entity("Parcel")
    assert parcel is not None
    # Declared as one JSON value, the field still writes the column's array.
    boxes = parcel.field("boxes")
    assert boxes is not None and boxes.composite is not None
    assert (boxes.is_list, boxes.composite_array) == (False, True)
    assert '"composite_array": true' in (tmp_path / "schema.json").read_text()
    create = "mutation($i: ParcelCreateInput!) { createParcel(input: $i) { id boxes } }"
    made = await _run(compiled, fresh_postgresql, create, {"i": {"id": 1, "boxes": [BOX, None]}})
    assert made == {"data": {"createParcel": {"id": 1, "boxes": [BOX, None]}}}, made
    read = await _run(compiled, fresh_postgresql, "{ parcels { boxes } }", {})
    assert read == {"data": {"parcels": [{"boxes": [BOX, None]}]}}, read
    body = await _run(compiled, fresh_postgresql, create, {"i": {"id": 2, "boxes": BOX}})
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "Parcel.boxes: {" in error["message"], error
    assert "is not a list of objects of the attributes of box" in error["message"], error


async def test_an_array_of_composites_is_written_from_a_literal_of_the_document(
    fresh_postgresql: str,
) -> None:
    schema = await _reflected(fresh_postgresql)
    made = await _run(
        schema,
        fresh_postgresql,
        'mutation { createParcel(input: {id: 1, boxes: [{label: "crate", corner: {x: 1, y: 2},'
        " weight: 1.5}, null], route: {stops: [{x: 3}]}}) { boxes route } }",
        {},
    )
    route = {"name": None, "stops": [{"x": 3, "y": None}]}
    assert made == {"data": {"createParcel": {"boxes": [BOX, None], "route": route}}}, made
