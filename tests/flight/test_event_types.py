"""observer_events of every column type (the type-matrix table, ``tests/graphql/type_matrix.py``),
written by GraphQL mutations: the images as JSON text equal what GraphQL serves for the same rows,
and as Arrow structs hold the same values in the field's Arrow type, or the stream fails with
STORED_VALUE naming the change and the field."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime as dt
import decimal
import json
import math
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.ir import Schema
from tests.conftest import DIALECTS, Dialect
from tests.flight.conftest import reflect, start
from tests.graphql import type_matrix as tm

#: Values no Arrow type of their field holds (the export refuses them as well): PostgreSQL's
#: unconstrained numeric past decimal128(38, 10) and NaN, infinite dates; SQLite's 1e100.
_UNREPRESENTABLE = {
    "postgresql": ["n = NULL", "an = NULL", "d = NULL", "ts = NULL", "tstz = NULL"],
    "mysql": [],
    "sqlite": ["n = NULL"],
}
#: A JSON field's value whose numbers and strings must keep their JSON spelling.
_JSON = '{"s": "text", "f": 1.5, "big": 123456789012345678901234567890}'
_JSON_FIELD = {"postgresql": "jb", "mysql": "j", "sqlite": "j"}


def _exact(text: str | bytes) -> Any:
    return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)


class Matrix:
    def __init__(self, m: tm.MatrixDatabase, dialect: Dialect, schema: Schema) -> None:
        self.m = m
        self.dialect = dialect
        self.schema = schema

    def run(self, query: str) -> Any:
        """``query`` through a GraphQL engine with the change log on; the exact answer."""

        async def go() -> Any:
            settings = QuiverSettings.model_validate(
                {"database": {"url": self.m.url, "pool_max": 2}}
            )
            engine = await GraphQLEngine.open(self.schema, settings)
            try:
                outcome = await engine.execute(engine.prepare(query), None)
            finally:
                await engine.close()
            body = _exact(outcome.body)
            assert outcome.kind == "data", body
            return body["data"]

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, go()).result()

    def served(self) -> dict[Any, dict[str, Any]]:
        names = [f.name for f in self.entity.fields if not _composite(f.db_type)]
        rows = self.run(f"{{ cells(orderBy: {{id: ASC}}) {{ {' '.join(names)} }} }}")["cells"]
        return {row["id"]: row for row in rows}

    @property
    def entity(self) -> Any:
        return next(e for e in self.schema.entities if e.name == "Cell")


def _composite(db_type: str | None) -> bool:
    return (db_type or "").endswith("pair")


@pytest.fixture(params=DIALECTS)
def matrix(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Matrix]:
    dialect: Dialect = request.param
    with tm.matrix_database(dialect, tmp_path_factory) as m:
        m.db.query(f"UPDATE {m.table} SET {_JSON_FIELD[dialect]} = '{_JSON}' WHERE id = 1")
        schema = reflect(m.url) if m.schemas is None else _reflect(m.url, m.schemas)
        yield Matrix(m, dialect, schema)


def _reflect(url: str, schemas: list[str]) -> Schema:
    from quiver.schema.reflect import reflect_database

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, reflect_database(url, schemas=schemas)).result()


def _events(matrix: Matrix, images: str) -> pa.Table:
    handle = start(matrix.m.url, matrix.schema)
    try:
        with flight.FlightClient(handle.location) as client:
            ticket = {
                "observer_events": {"entity": "Cell", "since": "2020-01-01", "images": images}
            }
            return client.do_get(flight.Ticket(orjson.dumps(ticket))).read_all()
    finally:
        handle.stop()


def test_json_images_are_what_graphql_serves(matrix: Matrix) -> None:
    matrix.run('mutation { updateCells(where: {}, set: {t: "x"}) { id } }')
    served = matrix.served()
    table = _events(matrix, "json")
    problems = []
    for row in table.to_pylist():
        after = _exact(row["after"])
        for name, value in served[after["id"]].items():
            if after.get(name) != value or type(after.get(name)) is not type(value):
                problems.append(
                    f"{after['id']} {name}: event {after.get(name)!r}, served {value!r}"
                )
    assert not problems, "\n".join(problems)


def test_struct_images_hold_the_served_values_in_arrow_types(matrix: Matrix) -> None:
    table = matrix.m.table
    for assignment in _UNREPRESENTABLE[matrix.dialect]:
        matrix.m.db.query(f"UPDATE {table} SET {assignment}")
    matrix.run('mutation { updateCells(where: {}, set: {t: "x"}) { id } }')
    served = matrix.served()
    events = _events(matrix, "struct")
    after_type = events.schema.field("after").type
    problems = []
    for row in events.to_pylist():
        after = row["after"]
        for name, value in served[after["id"]].items():
            arrow = after_type.field(name).type
            if not _same(after[name], value, arrow, _is_json(matrix, name)):
                problems.append(
                    f"{after['id']} {name} ({arrow}): event {after[name]!r}, served {value!r}"
                )
    assert not problems, "\n".join(problems)


def _is_json(matrix: Matrix, name: str) -> bool:
    f = matrix.entity.field(name)
    return f is not None and f.scalar.value == "JSON"


def _same(got: Any, served: Any, arrow: pa.DataType, as_json: bool) -> bool:
    """Whether the Arrow value ``got`` is the GraphQL value ``served`` (exact JSON)."""
    if served is None:  # GraphQL serves a JSON field's JSON null as null too
        return got is None or (as_json and got == "null")
    if pa.types.is_list(arrow):
        return (
            isinstance(got, list)
            and len(got) == len(served)
            and all(
                _same(g, s, arrow.value_type, as_json) for g, s in zip(got, served, strict=True)
            )
        )
    if as_json:
        return isinstance(got, str) and _exact(got) == served
    if pa.types.is_floating(arrow):
        if isinstance(served, str):  # "NaN", "Infinity"
            return bool((math.isnan(got) and served == "NaN") or got == float(served))
        return bool(got == float(served))
    if pa.types.is_decimal(arrow):
        return bool(got == decimal.Decimal(served))
    if pa.types.is_integer(arrow):
        return bool(got == int(served))
    if pa.types.is_binary(arrow):
        return bool(base64.b64encode(got).decode() == served)
    if pa.types.is_timestamp(arrow):
        when = dt.datetime.fromisoformat(served.replace("Z", "+00:00"))
        return bool(got == (when if when.tzinfo else when.replace(tzinfo=dt.UTC)))
    if pa.types.is_date(arrow):
        return bool(got == dt.date.fromisoformat(served))
    if pa.types.is_time(arrow):
        return bool(got == dt.time.fromisoformat(served))
    if isinstance(served, dict | list):  # geometry, composites: their JSON text
        return isinstance(got, str) and _exact(got) == served
    return bool(got == served)


def test_a_json_null_is_its_json_text_and_sql_null_is_null_or_absent(matrix: Matrix) -> None:
    for assignment in _UNREPRESENTABLE[matrix.dialect]:
        matrix.m.db.query(f"UPDATE {matrix.m.table} SET {assignment}")
    selected = matrix.run("{ cells(where: {j: {isNull: true}}) { id } }")["cells"]
    sql_null = {row["id"] for row in selected}
    matrix.run('mutation { updateCells(where: {}, set: {t: "x"}) { id } }')
    served = matrix.served()
    json_null = {k for k, row in served.items() if row["j"] is None} - sql_null
    assert sql_null and json_null, (sql_null, json_null)
    for row in _events(matrix, "struct").to_pylist():
        after = row["after"]
        if after["id"] in sql_null | json_null:
            assert after["j"] == ("null" if after["id"] in json_null else None), after
    for row in _events(matrix, "json").to_pylist():
        after = _exact(row["after"])
        assert "__jsonNulls" not in after, after
        if after["id"] in sql_null:
            assert "j" not in after, after
        elif after["id"] in json_null:
            assert "j" in after and after["j"] is None, after


def test_a_value_no_arrow_type_holds_fails_naming_the_change_and_field(matrix: Matrix) -> None:
    if matrix.dialect == "mysql":
        pytest.skip("every MariaDB value has an Arrow type")
    field = "n"  # PostgreSQL: 1e100 and NaN in numeric; SQLite: 1e100 in NUMERIC
    matrix.run('mutation { updateCell(id: 1, set: {t: "x"}) { id } }')
    handle = start(matrix.m.url, matrix.schema)
    try:
        with flight.FlightClient(handle.location) as client:
            ticket = {"observer_events": {"entity": "Cell", "since": "2020-01-01"}}
            with pytest.raises(flight.FlightServerError) as caught:
                client.do_get(flight.Ticket(orjson.dumps(ticket))).read_all()
    finally:
        handle.stop()
    message = str(caught.value)
    assert "STORED_VALUE" in message, message
    assert f"before.{field}" in message and "Traceback" not in message, message
    assert '"images": "json"' in message, message
