"""What a query serves writes back: every column of the type-matrix table
(``tests/graphql/type_matrix.py``), read through GraphQL and sent back unchanged, through
variables and through inline literals, by ``create`` and by ``update``, stores the same value,
read back as it was served; and ``where`` on the served value matches its row.

A column whose served form cannot be written back is left out of the mutation inputs; every
other one must round-trip exactly (never a database error, never a different stored value)."""

from __future__ import annotations

import decimal
import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
)
from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, Dialect
from tests.graphql import type_matrix as tm
from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: First key of the rows the tests write (the matrix's own rows have keys below 10).
BASE = 1000
#: Served values are sent back as JSON variables and as inline literals.
MODES = ("variables", "literals")
#: Served values refused on the way back, per database: field -> why (see docs/mutations.md).
REFUSED: dict[str, dict[str, str]] = {
    "postgresql": {
        # GraphQL's Float has no NaN or infinity (served as "NaN", "Infinity", "-Infinity").
        "Cell.f4": "non-finite Float",
        "Cell.f8": "non-finite Float",
        "Cell.af": "non-finite Float",
        "Extra.af4": "non-finite Float",
    },
    # A TIME beyond a time of day fails the query that serves it
    # (tests/graphql/test_stored_values.py): the extras hold the first and last times of a day.
    "mysql": {},
    "sqlite": {
        "Cell.r": "non-finite Float",
        # The row holds 11 characters in a VARCHAR(10): a write must fit the declared type.
        "Cell.vc": "longer than declared",
        # SQLite keeps any value in any column: a NUMERIC holding the text 'NaN' is served as
        # the Decimal "NaN", which SQLite's decimals cannot hold.
        "Extra.num": "non-finite Decimal",
        # Served as what the column holds, not as the field's type (9.5 for an Int): GraphQL
        # refuses it. (A number in a DateTime column, or text that is no Date in a Date
        # column, fails the query naming it: tests/graphql/test_sqlite_loose_values.py and
        # test_stored_values.py.)
        "Extra.i": "served as a non-integer",
    },
}


#: The tables written back: the shared type matrix, and ``extras`` beside it with the types
#: the matrix leaves out.
TABLES = (("Cell", "cells"), ("Extra", "extras"))

_PG_EXTRAS = [
    "CREATE TABLE {s}.extras (id integer PRIMARY KEY, t text, m8 macaddr8, bx box,"
    " pg polygon, ln line, ls lseg, pth path, cir circle, tsr tsrange, tstzr tstzrange,"
    " nr numrange, dr daterange, mr int4multirange, jb jsonb, j json, f8 double precision,"
    " apt point[], avb varbit[], atsr tsrange[], au uuid[], ad date[], ats timestamp[],"
    " abool boolean[], af4 real[], ajb jsonb[], ai2 smallint[], atm time[], adec numeric(5,2)[],"
    " abx box[], am8 macaddr8[], ach char(2)[], ai8r int8range[], anr numrange[])",
    "INSERT INTO {s}.extras VALUES (1, 'x', '08:00:2b:01:02:03:04:05', '(3,4),(1,2)',"
    " '((0,0),(1,1),(1,0))', '{{1,2,3}}', '[(0,0),(1,1)]', '[(0,0),(1,1),(2,0)]',"
    " '<(1,2),3>', '[2024-01-01 10:00,2024-01-02)', '[2024-01-01 10:00+02,)',"
    " '(1.5,2.25]', '[2024-01-01,2024-02-01)', '{{[1,3),[5,7)}}',"
    ' \'{{"big": 123456789012345678901234567890, "f": 1.000000000000000000001,'
    ' "e": 1e400, "s": "\u00e9"}}\','
    ' \'{{"big": 123456789012345678901234567890, "dup": 1, "f": 0.1}}\', -0.0,'
    " '{{\"(1,2)\",NULL}}', '{{101,\"\",1}}', '{{\"[2024-01-01,2024-01-02)\",empty}}',"
    " '{{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}}', '{{0001-01-01,9999-12-31,infinity}}',"
    " '{{\"0001-01-01 00:00:00\",-infinity,\"2024-01-02 03:04:05.5\"}}', '{{true,NULL,false}}',"
    " '{{1.5,NaN,-0}}', ARRAY['{{\"a\": 1e400}}'::jsonb, 'null'::jsonb, NULL], '{{-32768,32767}}',"
    " '{{23:59:59.999999,00:00}}', '{{999.99,-0.01,NULL}}', '{{\"(1,1),(0,0)\"}}',"
    " '{{08:00:2b:01:02:03:04:05}}', '{{\"a \",NULL}}', '{{\"[1,9223372036854775807)\"}}',"
    " '{{\"(,1.5]\"}}')",
    "INSERT INTO {s}.extras (id, t, f8, jb, j) VALUES (2, 'y', 0.1, '[]', '{{}}')",
    "INSERT INTO {s}.extras (id) VALUES (3)",
]
_MYSQL_EXTRAS = [
    "CREATE TABLE extras (id INT PRIMARY KEY, t TEXT, bit5 BIT(5), st SET('a', 'b', 'd'),"
    " j JSON, mp MULTIPOINT, pg POLYGON, gc GEOMETRYCOLLECTION, y YEAR, f FLOAT, dbl DOUBLE,"
    " d52 DECIMAL(5, 2), ti1 TINYINT(1), en ENUM('x', 'y z'), ch CHAR(2), vb VARBINARY(4),"
    " tm6 TIME(6), ts6 TIMESTAMP(6) NULL) CHARACTER SET utf8mb4",
    "INSERT INTO extras VALUES (1, 'x', b'10101', 'a,d', '{\"big\": 123456789012345678901234567890,"
    ' "f": 1.000000000000000000001, "s": "\u00e9"}\','
    " ST_GeomFromText('MULTIPOINT(1 2, 3 4)'), ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 0))'),"
    " ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1))'), 2024, -0.0, -0.0, -999.99, 2, 'y z',"
    " 'a', x'00ff', '00:00:00.000000', '2038-01-19 03:14:07.999999')",
    "INSERT INTO extras VALUES (2, 'y', b'0', '', '[1e300, -0.0]', NULL, NULL, NULL, 1901, 1e-45,"
    " 5e-324, 0, -1, 'x', '', x'', '23:59:59.999999', '1970-01-01 00:00:01.000000')",
    "INSERT INTO extras (id) VALUES (3)",
]
_SQLITE_EXTRAS = [
    "CREATE TABLE extras (id INTEGER PRIMARY KEY, t TEXT, loose, anyx ANY, str STRING,"
    " num NUMERIC, i INT, bo BOOLEAN, dtm DATETIME, dt DATE, js JSON, r REAL, bl BLOB)",
    "INSERT INTO extras VALUES (1, 'x', 'text', 42, '007', '1.50', '12', 2,"
    " '2024-01-02 03:04:05', '2024-02-29', '{\"big\": 123456789012345678901234567890}',"
    " -0.0, 'text in a blob')",
    "INSERT INTO extras VALUES (2, 'y', 'other', 1.5, 12, 'NaN', 9.5, 0,"
    " '2024-03-01 00:00:00', '2024-02-28', '[1e300]', 1e-320, 7)",
    "INSERT INTO extras (id) VALUES (3)",
]


#: Served values that are written back exactly but spelled otherwise when read again.
RESPELLED: dict[str, dict[str, str]] = {
    "postgresql": {},
    "mysql": {},
    # SQLite keeps the text of a timestamp; a written DateTime is stored with 6 digits of
    # fraction ("...05.678" comes back as "...05.678000", the same instant).
    "sqlite": {"Cell.ts": "fraction spelled with 6 digits"},
}


#: Served values ``where: {eq: ...}`` does not find yet (see the report in docs/mutations.md).
WHERE_MISSES: dict[str, set[str]] = {
    "postgresql": set(),
    # a Boolean column holding 2 or -1 (served true), a BLOB holding text (served as its Base64)
    "mysql": set(),
    "sqlite": set(),
}


@pytest_asyncio.fixture(params=DIALECTS)
async def cells(request: pytest.FixtureRequest, tmp_path_factory: Any) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    with tm.matrix_database(dialect, tmp_path_factory) as m:
        if dialect == "postgresql":
            assert m.schemas is not None
            for statement in _PG_EXTRAS:
                m.db.query(statement.format(s=m.schemas[0]))
        elif dialect == "mysql":
            for statement in _MYSQL_EXTRAS:
                m.db.query(statement)
        else:
            for statement in _SQLITE_EXTRAS:
                m.db.query(statement)
        reflected = await reflect_database(m.url, schemas=m.schemas)
        settings = QuiverSettings.model_validate({"database": {"url": m.url, "pool_max": 2}})
        engine = await GraphQLEngine.open(reflected, settings)
        try:
            yield Runner(engine, m.db)
        finally:
            await engine.close()


def _exact(body: bytes | str) -> Any:
    """JSON with every number an exact decimal, so 0.1 and 0.10000000000000001 differ."""
    return json.loads(body, parse_float=decimal.Decimal, parse_int=decimal.Decimal)


async def _rows(cells: Runner, field: str, where: str, table: str = "cells") -> dict[int, Any]:
    # MariaDB answers the JSON of a row holding only latin1 text in latin1, which the read
    # cannot decode: a utf8mb4 text field beside it keeps the answer utf8mb4.
    also = " t" if cells.dialect == "mysql" and field != "t" else ""
    prepared = cells.engine.prepare(
        f"{{ {table}(where: {where}, orderBy: {{id: ASC}}) {{ id {field}{also} }} }}"
    )
    outcome = await cells.engine.execute(prepared, None)
    body = _exact(outcome.body)
    assert outcome.kind == "data", body
    return {int(row["id"]): row[field] for row in body["data"][table]}


def _variable(value: Any) -> Any:
    """A served value as a variable: an exact decimal as the int or float it spells, or as
    itself where a double cannot hold it (as an embedding application may pass it)."""
    if isinstance(value, decimal.Decimal):
        if value == value.to_integral_value() and "E" not in str(value).upper():
            return int(value)
        number = float(value)
        return number if decimal.Decimal(repr(number)) == value else value
    if isinstance(value, list):
        return [_variable(v) for v in value]
    if isinstance(value, dict):
        return {k: _variable(v) for k, v in value.items()}
    return value


def _literal(value: Any, t: GraphQLInputType) -> str:
    """A served value as an inline GraphQL literal of the input type ``t``."""
    while isinstance(t, GraphQLNonNull):
        t = t.of_type
    if value is None:
        return "null"
    if isinstance(t, GraphQLEnumType):
        return str(value)
    if isinstance(value, list):
        item = t.of_type if isinstance(t, GraphQLList) else t
        return "[" + ", ".join(_literal(v, item) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_literal(v, t)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, decimal.Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _input_fields(cells: Runner, name: str) -> dict[str, Any]:
    t = cells.engine.graphql_schema.get_type(name)
    assert isinstance(t, GraphQLInputObjectType)
    return {n: f.type for n, f in t.fields.items()}


def _writable(cells: Runner, entity: str = "Cell") -> list[str]:
    served = tm.field_types(cells.engine.graphql_schema, entity)
    create = _input_fields(cells, f"{entity}CreateInput")
    return [n for n in served if n in create and n != "id"]


def _differences(field: str, what: str, got: dict[int, Any], want: dict[int, Any]) -> list[str]:
    return [
        f"{field}: {what} of row {key - BASE}: served {want[key]!r}, read back {got.get(key)!r}"
        for key in want
        if got.get(key) != want[key] or type(got.get(key)) is not type(want[key])
    ]


async def _write(
    cells: Runner, mode: str, document: str, values: dict[str, tuple[Any, Any]]
) -> tuple[str, Any]:
    """Run a mutation whose ``$name`` placeholders carry ``values`` (name -> (value, type)),
    as variables or spelled inline."""
    if mode == "variables":
        declared = ", ".join(f"${n}: {t}" for n, (_, t) in values.items())
        kind, body = await cells.raw(
            f"mutation({declared}) {{ {document} }}",
            {n: _variable(v) for n, (v, _) in values.items()},
        )
        return kind, body
    for n, (v, t) in sorted(values.items(), key=lambda item: -len(item[0])):
        document = document.replace(f"${n}", _literal(v, t))
    return await cells.raw(f"mutation {{ {document} }}")


@pytest.mark.parametrize("mode", MODES)
async def test_every_served_value_writes_back_by_create_and_update(
    cells: Runner, mode: str
) -> None:
    problems: list[str] = []
    for entity, table in TABLES:
        problems += await _write_back(cells, mode, entity, table)
    assert not problems, "\n".join(problems)


async def _write_back(cells: Runner, mode: str, entity: str, table: str) -> list[str]:
    create = _input_fields(cells, f"{entity}CreateInput")
    plural = table[0].upper() + table[1:]
    problems: list[str] = []
    for field in _writable(cells, entity):
        original = await _rows(cells, field, "{}", table)
        keys = sorted(original)
        want = {BASE + k: original[k] for k in keys}
        t = create[field]
        name = f"{entity}.{field}"
        # (1) create a row from each served value
        values = {f"v{k}": (original[k], t) for k in keys}
        inputs = ", ".join(f"{{id: {BASE + k}, {field}: $v{k}}}" for k in keys)
        kind, body = await _write(
            cells, mode, f"create{plural}(inputs: [{inputs}]) {{ id }}", values
        )
        if name in REFUSED[cells.dialect]:
            # refused as a whole, naming the value, and nothing written
            assert kind != "data", (name, body)
            assert body["errors"][0]["extensions"]["code"] in _REFUSALS, body
            continue
        if kind != "data":
            problems.append(f"{name}: create refused: {orjson.dumps(body['errors'][0])!r}")
            continue
        got = await _rows(cells, field, f"{{id: {{gte: {BASE}}}}}", table)
        if name in RESPELLED[cells.dialect]:
            await cells.raw(
                f"mutation {{ delete{plural}(where: {{id: {{gte: {BASE}}}}}) {{ id }} }}"
            )
            continue
        problems += _differences(name, "create", got, want)
        # (2) update each created row to the served value of the next row, then back
        for shift in (1, 0):
            moved = {BASE + k: original[keys[(i + shift) % len(keys)]] for i, k in enumerate(keys)}
            values = {f"v{key}": (v, t) for key, v in moved.items()}
            updates = " ".join(
                f"u{key}: update{entity}(id: {key}, set: {{{field}: $v{key}}}) {{ id }}"
                for key in moved
            )
            kind, body = await _write(cells, mode, updates, values)
            if kind != "data":
                problems.append(f"{name}: update refused: {orjson.dumps(body['errors'][0])!r}")
                break
            got = await _rows(cells, field, f"{{id: {{gte: {BASE}}}}}", table)
            problems += _differences(name, f"update (shift {shift})", got, moved)
        kind, body = await cells.raw(
            f"mutation {{ delete{plural}(where: {{id: {{gte: {BASE}}}}}) {{ id }} }}"
        )
        assert kind == "data", body
    return problems


#: The codes of a served value refused before anything is written.
_REFUSALS = ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED", "INVALID_VALUE")


def _eq_type(cells: Runner, entity: str, field: str) -> Any:
    where = _input_fields(cells, f"{entity}Where")
    filt = where[field]
    assert isinstance(filt, GraphQLInputObjectType)
    for op in ("eq", "contains"):
        if op in filt.fields:
            return op, filt.fields[op].type
    return None, None


@pytest.mark.parametrize("mode", MODES)
async def test_where_on_update_and_delete_matches_the_served_value(
    cells: Runner, mode: str
) -> None:
    problems: list[str] = []
    for entity, table in TABLES:
        plural = table[0].upper() + table[1:]
        for field in _writable(cells, entity):
            name = f"{entity}.{field}"
            op, t = _eq_type(cells, entity, field)
            if op is None:
                continue
            original = await _rows(cells, field, "{}", table)
            for key, value in original.items():
                if value is None:
                    continue
                if op == "contains":
                    # an array contains its own non-null elements
                    value = [v for v in value if v is not None]
                kind, body = await _write(
                    cells,
                    mode,
                    f"update{plural}(where: {{{field}: {{{op}: $v}}}}, set: {{}}) {{ id }}",
                    {"v": (value, t)},
                )
                if kind != "data" and name in REFUSED[cells.dialect]:
                    assert body["errors"][0]["extensions"]["code"] in _REFUSALS, body
                    continue
                if kind != "data":
                    problems.append(f"{name}: where {op} refused on row {key}: {body['errors'][0]}")
                    continue
                ids = [int(row["id"]) for row in body["data"][f"update{plural}"]]
                if key not in ids and name not in WHERE_MISSES[cells.dialect]:
                    problems.append(
                        f"{name}: where {op} {value!r} misses row {key} (matched {ids})"
                    )
    assert not problems, "\n".join(problems)


async def test_postgresql_text_arrays_refuse_what_their_type_does_not_read(cells: Runner) -> None:
    if cells.dialect != "postgresql":
        pytest.skip("PostgreSQL arrays")
    given = {"aiv": ["2 days 03:00:00", None], "abits": ["110", None], "arng": ["[2,9)", "empty"]}
    kind, body = await cells.raw(
        "mutation($v: CellSetInput!) { updateCell(id: 2, set: $v) { aiv abits arng } }",
        {"v": given},
    )
    assert kind == "data", body
    assert body["data"]["updateCell"] == given
    for field, wrong, code in (
        ("abits", ["10x"], "BAD_USER_INPUT"),
        ("abits", ["10"], "INVALID_VALUE"),  # bit(3) holds exactly 3 digits
        ("aiv", ["soon"], "INVALID_VALUE"),
        ("arng", ["[9,2)"], "INVALID_VALUE"),
    ):
        kind, body = await cells.raw(
            f"mutation($v: [String]) {{ updateCell(id: 2, set: {{{field}: $v}}) {{ id }} }}",
            {"v": wrong},
        )
        assert kind != "data", body
        assert body["errors"][0]["extensions"]["code"] == code, (field, wrong, body)
    kind, body = await cells.raw("{ cells(where: {id: {eq: 2}}) { aiv abits arng } }")
    assert body["data"]["cells"] == [given]


async def test_non_finite_decimals_are_written_where_the_column_holds_them(cells: Runner) -> None:
    # PostgreSQL's numeric holds NaN and the infinities (numeric(p,s): NaN only); MariaDB's
    # DECIMAL and SQLite hold none: refused before anything runs, in writes and filters alike.
    field = {"postgresql": "nFixed", "mysql": "decWide", "sqlite": "dec"}[cells.dialect]
    if cells.dialect == "postgresql":
        kind, body = await cells.raw(
            'mutation { updateCell(id: 2, set: {n: "-Infinity", nFixed: "NaN"}) { n nFixed } }'
        )
        assert kind == "data", body
        assert body["data"]["updateCell"] == {"n": "-Infinity", "nFixed": "NaN"}
        refused = {"Infinity": "INVALID_VALUE"}
    else:
        refused = {v: "BAD_USER_INPUT" for v in ("NaN", "Infinity", "-Infinity")}
    for value, code in refused.items():
        for document in (
            f"mutation($v: Decimal) {{ updateCell(id: 2, set: {{{field}: $v}}) {{ id }} }}",
            f"mutation($v: Decimal) {{ deleteCells(where: {{{field}: {{gt: $v}}}}) {{ id }} }}",
        ):
            if code == "INVALID_VALUE" and "delete" in document:
                continue  # PostgreSQL compares numeric(p,s) with an infinity
            kind, body = await cells.raw(document, {"v": value})
            assert kind != "data", body
            assert body["errors"][0]["extensions"]["code"] == code, (value, body)
    kind, body = await cells.raw("{ cells { id } }")
    assert len(body["data"]["cells"]) >= 3


async def test_postgresql_first_and_last_dates_are_themselves_not_infinities(
    cells: Runner,
) -> None:
    if cells.dialect != "postgresql":
        pytest.skip("PostgreSQL's driver sends Python's first and last dates as infinities")
    given = {
        "d": "9999-12-31",
        "ts": "9999-12-31T23:59:59.999999",
        "tstz": "2024-01-01T10:00:00+05:00",
    }
    kind, body = await cells.raw(
        "mutation($v: CellSetInput!) { updateCell(id: 5, set: $v) { d ts tstz } }", {"v": given}
    )
    assert kind == "data", body
    assert body["data"]["updateCell"] == {
        "d": "9999-12-31",
        "ts": "9999-12-31T23:59:59.999999",
        "tstz": "2024-01-01T05:00:00+00:00",
    }
    table = _table(cells)
    assert cells.sql(f"SELECT CAST(d AS TEXT), ts = 'infinity' FROM {table} WHERE id = 5") == [
        ("9999-12-31", False)
    ]
    for field, value in given.items():
        for op in ("eq", "in", "gte"):
            arg = "[$v]" if op == "in" else "$v"
            data = await cells.data(
                f"query($v: {'Date' if field == 'd' else 'DateTime'}!) {{"
                f" cells(where: {{{field}: {{{op}: {arg}}}}}) {{ id }} }}",
                {"v": value},
            )
            assert {"id": 5} in data["cells"], (field, op, data)
    kind, body = await cells.raw(
        'mutation { updateCell(id: 5, set: {ts: "0001-01-01T00:00:00+05:00"}) { id } }'
    )
    assert kind != "data", body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert "before the year 1" in body["errors"][0]["message"]


def _table(cells: Runner) -> str:
    schema = next(e for e in cells.engine.schema.entities if e.name == "Cell").db_schema
    return f"{schema}.cells" if schema else "cells"
