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
        "f4": "non-finite Float",
        "f8": "non-finite Float",
        "af": "non-finite Float",
    },
    "mysql": {},
    "sqlite": {
        "r": "non-finite Float",
        # The row holds 11 characters in a VARCHAR(10): a write must fit the declared type.
        "vc": "longer than declared",
    },
}


@pytest_asyncio.fixture(params=DIALECTS)
async def cells(request: pytest.FixtureRequest, tmp_path_factory: Any) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    with tm.matrix_database(dialect, tmp_path_factory) as m:
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


async def _rows(cells: Runner, field: str, where: str) -> dict[int, Any]:
    # MariaDB answers the JSON of a row holding only latin1 text in latin1, which the read
    # cannot decode: a utf8mb4 text field beside it keeps the answer utf8mb4.
    also = " t" if cells.dialect == "mysql" and field != "t" else ""
    prepared = cells.engine.prepare(
        f"{{ cells(where: {where}, orderBy: {{id: ASC}}) {{ id {field}{also} }} }}"
    )
    outcome = await cells.engine.execute(prepared, None)
    body = _exact(outcome.body)
    assert outcome.kind == "data", body
    return {int(row["id"]): row[field] for row in body["data"]["cells"]}


def _variable(value: Any) -> Any:
    """A served value as a JSON variable (an exact decimal as the number it spells)."""
    if isinstance(value, decimal.Decimal):
        integral = value == value.to_integral_value() and "E" not in str(value).upper()
        return int(value) if integral else float(value)
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


def _writable(cells: Runner) -> list[str]:
    served = tm.field_types(cells.engine.graphql_schema, "Cell")
    create = _input_fields(cells, "CellCreateInput")
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
    create = _input_fields(cells, "CellCreateInput")
    problems: list[str] = []
    for field in _writable(cells):
        original = await _rows(cells, field, "{}")
        keys = sorted(original)
        want = {BASE + k: original[k] for k in keys}
        t = create[field]
        # (1) create a row from each served value
        values = {f"v{k}": (original[k], t) for k in keys}
        inputs = ", ".join(f"{{id: {BASE + k}, {field}: $v{k}}}" for k in keys)
        kind, body = await _write(cells, mode, f"createCells(inputs: [{inputs}]) {{ id }}", values)
        if field in REFUSED[cells.dialect]:
            # refused as a whole, naming the value, and nothing written
            assert kind != "data", (field, body)
            assert body["errors"][0]["extensions"]["code"] in _REFUSALS, body
            continue
        if kind != "data":
            problems.append(f"{field}: create refused: {orjson.dumps(body['errors'][0])!r}")
            continue
        got = await _rows(cells, field, f"{{id: {{gte: {BASE}}}}}")
        problems += _differences(field, "create", got, want)
        # (2) update each created row to the served value of the next row, then back
        for shift in (1, 0):
            moved = {BASE + k: original[keys[(i + shift) % len(keys)]] for i, k in enumerate(keys)}
            values = {f"v{key}": (v, t) for key, v in moved.items()}
            updates = " ".join(
                f"u{key}: updateCell(id: {key}, set: {{{field}: $v{key}}}) {{ id }}"
                for key in moved
            )
            kind, body = await _write(cells, mode, updates, values)
            if kind != "data":
                problems.append(f"{field}: update refused: {orjson.dumps(body['errors'][0])!r}")
                break
            got = await _rows(cells, field, f"{{id: {{gte: {BASE}}}}}")
            problems += _differences(field, f"update (shift {shift})", got, moved)
        kind, body = await cells.raw(
            f"mutation {{ deleteCells(where: {{id: {{gte: {BASE}}}}}) {{ id }} }}"
        )
        assert kind == "data", body
    assert not problems, "\n".join(problems)


#: The codes of a served value refused before anything is written.
_REFUSALS = ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED", "INVALID_VALUE")


def _eq_type(cells: Runner, field: str) -> Any:
    where = _input_fields(cells, "CellWhere")
    filt = where[field]
    assert isinstance(filt, GraphQLInputObjectType)
    op = "eq" if "eq" in filt.fields else "equals" if "equals" in filt.fields else None
    return op, (filt.fields[op].type if op else None)


@pytest.mark.parametrize("mode", MODES)
async def test_where_on_update_and_delete_matches_the_served_value(
    cells: Runner, mode: str
) -> None:
    problems: list[str] = []
    for field in _writable(cells):
        op, t = _eq_type(cells, field)
        if op is None:
            continue
        original = await _rows(cells, field, "{}")
        for key, value in original.items():
            if value is None:
                continue
            values = {"v": (value, t)}
            kind, body = await _write(
                cells,
                mode,
                f"updateCells(where: {{{field}: {{{op}: $v}}}}, set: {{}}) {{ id }}",
                values,
            )
            if kind != "data" and field in REFUSED[cells.dialect]:
                assert body["errors"][0]["extensions"]["code"] in _REFUSALS, body
                continue
            if kind != "data":
                problems.append(f"{field}: where {op} refused on row {key}: {body['errors'][0]}")
                continue
            ids = [int(row["id"]) for row in body["data"]["updateCells"]]
            if key not in ids:
                problems.append(f"{field}: where {op} {value!r} misses row {key} (matched {ids})")
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
