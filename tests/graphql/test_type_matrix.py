"""Every column type of every database is served as valid UTF-8 JSON of its declared GraphQL
type, through the real HTTP app.

A table holds a column of each type (``tests/graphql/type_matrix.py``) at the edges of its range,
with non-finite numbers and nulls; it is reflected, queried over HTTP, and each value is checked
against the type the GraphQL schema declares for it. Exact values are compared with what an
independent driver reads with plain SQL.
"""

from __future__ import annotations

import base64
import decimal
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from graphql import GraphQLEnumType, GraphQLList, GraphQLNonNull
from quiver.config.settings import QuiverSettings
from quiver.graphql.http import create_app
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql import type_matrix as tm
from tests.graphql.conftest import Runner, asgi_client

pytestmark = pytest.mark.asyncio(loop_scope="session")


class Matrix:
    def __init__(self, client: httpx.AsyncClient, db: ChinookDb, app: Any, table: str) -> None:
        self.client = client
        self.db = db
        self.app = app
        self.dialect = db.dialect
        self.table = table

    @property
    def gql(self) -> Any:
        return self.app.engine.graphql_schema

    async def post(self, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
        body = {"query": query, "variables": variables or {}}
        return await self.client.post(
            "/graphql", content=orjson.dumps(body), headers={"content-type": "application/json"}
        )

    async def body(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        r = await self.post(query, variables)
        r.content.decode("utf-8")  # strict: raises on any byte sequence that is not UTF-8
        return orjson.loads(r.content)

    async def rows(self, query: str, variables: dict[str, Any] | None = None) -> list[Any]:
        body = await self.body(query, variables)
        assert "errors" not in body, body
        rows: list[Any] = body["data"]["cells"]
        return rows

    def sql(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self.dialect != "sqlite":
            text = text.replace("?", "%s")
        return self.db.query(text, params)


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=DIALECTS)
async def matrix(request: pytest.FixtureRequest, tmp_path_factory: Any) -> AsyncIterator[Matrix]:
    dialect: Dialect = request.param
    async with tm.served_matrix(dialect, tmp_path_factory) as (m, app, client):
        yield Matrix(client, m.db, app, m.table)


def _selection(types: dict[str, Any]) -> str:
    return " ".join(types)


async def test_every_column_type_is_valid_json_of_its_declared_type(matrix: Matrix) -> None:
    types = tm.field_types(matrix.gql, "Cell")
    r = await matrix.post(f"{{ cells(orderBy: {{id: ASC}}) {{ {_selection(types)} }} }}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    text = r.content.decode("utf-8")  # raises on invalid UTF-8
    body = orjson.loads(text)  # raises on invalid JSON (NaN, Inf, raw bytes)
    assert "errors" not in body, body
    rows = body["data"]["cells"]
    (count,) = matrix.sql(f"SELECT COUNT(*) FROM {matrix.table}")[0]
    assert len(rows) == count
    problems = [
        p
        for i, row in enumerate(rows)
        for name, t in types.items()
        for p in tm.type_problems(row[name], t, f"row {i} {name}")
    ]
    assert not problems, "\n".join(problems)
    # Every row's fields were served, and the all-null row is all null but its key.
    assert all(set(row) == set(types) for row in rows)
    assert all(v is None for k, v in rows[-1].items() if k != "id")


async def test_binary_columns_are_base64_of_the_stored_bytes(matrix: Matrix) -> None:
    types = tm.field_types(matrix.gql, "Cell")
    binary = [n for n, t in types.items() if _named(t) == "Base64" and not _is_list(t)]
    assert binary, "the matrix has binary columns"
    columns = {f.name: f.column for f in matrix.app.engine.catalog.fields["Cell"].values()}
    rows = await matrix.rows(f"{{ cells(orderBy: {{id: ASC}}) {{ id {' '.join(binary)} }} }}")
    for name in binary:
        truth = dict(matrix.sql(f"SELECT id, {columns[name]} FROM {matrix.table}"))
        for row in rows:
            stored = truth[row["id"]]
            served = row[name]
            assert (None if served is None else base64.b64decode(served)) == (
                None if stored is None else bytes(stored)
            ), (name, row["id"])


async def test_integer_and_boolean_columns_match_plain_sql(matrix: Matrix) -> None:
    types = tm.field_types(matrix.gql, "Cell")
    exact = [
        n
        for n, t in types.items()
        if _named(t) in ("Int", "BigInt") and n != "id" and not _is_list(t)
    ]
    columns = {f.name: f.column for f in matrix.app.engine.catalog.fields["Cell"].values()}
    rows = await matrix.rows(f"{{ cells(orderBy: {{id: ASC}}) {{ id {' '.join(exact)} }} }}")
    for name in exact:
        truth = dict(matrix.sql(f"SELECT id, {columns[name]} FROM {matrix.table}"))
        for row in rows:
            served = row[name]
            stored = truth[row["id"]]
            assert (None if served is None else int(served)) == stored, (name, row["id"])


async def test_binary_filters_take_base64(matrix: Matrix) -> None:
    name = {"postgresql": "bin", "mysql": "bl", "sqlite": "bl"}[matrix.dialect]
    rows = await matrix.rows(
        f"query($v: Base64) {{ cells(where: {{{name}: {{eq: $v}}}}) {{ id }} }}",
        {
            "v": base64.b64encode(
                b"\xff\x00" if matrix.dialect == "mysql" else b"\xff\x00\xfe"
            ).decode()
        },
    )
    assert [r["id"] for r in rows] == [1]
    body = await matrix.body(f'{{ cells(where: {{{name}: {{eq: "not base64!"}}}}) {{ id }} }}')
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "Base64" in body["errors"][0]["message"]


def _is_list(t: Any) -> bool:
    return isinstance(t.of_type if isinstance(t, GraphQLNonNull) else t, GraphQLList)


def _named(t: Any) -> str:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return "enum" if isinstance(t, GraphQLEnumType) else str(t.name)


# --------------------------------------------------------------------------------------------
# Arrays (PostgreSQL)
# --------------------------------------------------------------------------------------------

ARRAY_OPERATORS = [("contains", "@>"), ("containedBy", "<@"), ("overlaps", "&&")]


@pytest.mark.parametrize(("op", "sql_op"), ARRAY_OPERATORS)
@pytest.mark.parametrize(
    ("field", "gql_type", "sql_type", "values"),
    [
        ("ai", "Int", "integer[]", [[1], [1, 3], [3, 99], [], [99]]),
        ("at", "String", "text[]", [["a"], ["b c", "a"], ["zz"], []]),
        ("ab", "BigInt", "bigint[]", [["9223372036854775807"], ["-9223372036854775808", "1"]]),
    ],
)
async def test_array_filters_match_plain_sql(
    matrix: Matrix,
    op: str,
    sql_op: str,
    field: str,
    gql_type: str,
    sql_type: str,
    values: list[list[Any]],
) -> None:
    if matrix.dialect != "postgresql":
        pytest.skip("only PostgreSQL has array columns")
    query = f"query($v: [{gql_type}!]) {{ cells(where: {{{field}: {{{op}: $v}}}}) {{ id }} }}"
    for v in values:
        rows = await matrix.rows(query, {"v": v})
        params = [int(x) for x in v] if gql_type == "BigInt" else v
        truth = matrix.sql(
            f"SELECT id FROM {matrix.table} WHERE {field} {sql_op} ?::{sql_type} ORDER BY id",
            (params,),
        )
        assert sorted(r["id"] for r in rows) == [t[0] for t in truth], (field, op, v)


async def test_arrays_are_lists_of_their_element_type(matrix: Matrix) -> None:
    if matrix.dialect != "postgresql":
        pytest.skip("only PostgreSQL has array columns")
    types = tm.field_types(matrix.gql, "Cell")
    assert str(types["ai"]) == "[Int]"
    assert str(types["ab"]) == "[BigInt]"
    assert str(types["abin"]) == "[Base64]"
    assert str(types["ae"]) == "[Mood]"
    rows = await matrix.rows("{ cells(orderBy: {id: ASC}) { id ai ab an abin ae af } }")
    truth = {r[0]: r[1:] for r in matrix.sql(f"SELECT id, ai, ab, abin FROM {matrix.table}")}
    first = rows[0]
    assert first["ai"] == truth[1][0] == [1, None, 3]
    assert [int(x) for x in first["ab"]] == truth[1][1]
    assert [base64.b64decode(x) for x in first["abin"]] == [bytes(b) for b in truth[1][2]]
    assert first["an"] == ["1.5", "NaN"]
    assert first["ae"] == ["happy", "in_progress", "_1st"]
    assert first["af"] == ["NaN", 1.5, "Infinity"]
    assert rows[1]["ai"] == [] and rows[-1]["ai"] is None


# --------------------------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------------------------


async def test_enum_columns_are_graphql_enums_with_valid_value_names(matrix: Matrix) -> None:
    if matrix.dialect == "sqlite":
        pytest.skip("SQLite has no enum type")
    enum_type = tm.field_types(matrix.gql, "Cell")["e"]
    assert isinstance(enum_type, GraphQLEnumType)
    names = {name: v.value for name, v in enum_type.values.items()}
    expected = {"happy": "happy", "in_progress": "in progress", "_1st": "1st", "true_": "true"}
    assert expected.items() <= names.items()
    rows = await matrix.rows("{ cells(orderBy: {id: ASC}) { id e } }")
    truth = dict(matrix.sql(f"SELECT id, e FROM {matrix.table}"))
    back = {v: k for k, v in names.items()}
    assert {r["id"]: r["e"] for r in rows} == {
        i: None if v is None else back[v] for i, v in truth.items()
    }


@pytest.mark.parametrize("value", ["in_progress", "_1st", "true_", "happy"])
async def test_enum_filters_match_plain_sql(matrix: Matrix, value: str) -> None:
    if matrix.dialect == "sqlite":
        pytest.skip("SQLite has no enum type")
    enum_type = tm.field_types(matrix.gql, "Cell")["e"]
    stored = enum_type.values[value].value
    for op, sql_op in (("eq", "= ?"), ("neq", "<> ?"), ("in", "IN (?)")):
        literal = await matrix.rows(f"{{ cells(where: {{e: {{{op}: {value}}}}}) {{ id }} }}")
        var_type = f"[{enum_type.name}!]" if op == "in" else f"{enum_type.name}!"
        variable = await matrix.rows(
            f"query($v: {var_type}) {{ cells(where: {{e: {{{op}: $v}}}}) {{ id }} }}",
            {"v": [value] if op == "in" else value},
        )
        truth = matrix.sql(f"SELECT id FROM {matrix.table} WHERE e {sql_op} ORDER BY id", (stored,))
        assert sorted(r["id"] for r in literal) == [t[0] for t in truth], op
        assert sorted(r["id"] for r in variable) == [t[0] for t in truth], op


async def test_a_wrong_enum_value_is_a_validation_error(matrix: Matrix) -> None:
    if matrix.dialect == "sqlite":
        pytest.skip("SQLite has no enum type")
    enum_name = tm.field_types(matrix.gql, "Cell")["e"].name
    body = await matrix.body("{ cells(where: {e: {eq: sad}}) { id } }")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "sad" in error["message"] and enum_name in error["message"]
    body = await matrix.body(
        f"query($v: {enum_name}) {{ cells(where: {{e: {{eq: $v}}}}) {{ id }} }}", {"v": "sad"}
    )
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "sad" in error["message"]
    # The database's spelling is not a GraphQL value either: the API's name is.
    body = await matrix.body('{ cells(where: {e: {eq: "in progress"}}) { id } }')
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


# --------------------------------------------------------------------------------------------
# Numbers beyond a database's range
# --------------------------------------------------------------------------------------------

DECIMAL_COLUMN = {"postgresql": "n", "mysql": "decWide", "sqlite": "n"}
FLOAT_COLUMN = {"postgresql": "f8", "mysql": "dbl", "sqlite": "dbl"}
HUGE = ["1e999999", "-1e999999", "1e-999999", "1E+131072"]


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("op", ["eq", "neq", "gt", "gte", "lt", "lte", "in", "nin"])
async def test_decimals_beyond_the_range_compare_or_are_refused(
    matrix: Matrix, value: str, op: str
) -> None:
    field = DECIMAL_COLUMN[matrix.dialect]
    column = matrix.app.engine.catalog.fields["Cell"][field].column
    arg = f"[{value}]" if op in ("in", "nin") else value
    literal = await matrix.body(f"{{ cells(where: {{{field}: {{{op}: {arg}}}}}) {{ id }} }}")
    gql_type = "[Decimal!]" if op in ("in", "nin") else "Decimal"
    variable = await matrix.body(
        f"query($v: {gql_type}) {{ cells(where: {{{field}: {{{op}: $v}}}}) {{ id }} }}",
        {"v": [value] if op in ("in", "nin") else value},
    )
    stored = {
        i: None if v is None else decimal.Decimal(str(v))
        for i, v in matrix.sql(f"SELECT id, {column} FROM {matrix.table}")
    }
    x = decimal.Decimal(value)
    compare: Callable[[decimal.Decimal], bool] = {
        "eq": lambda v: v == x,
        "neq": lambda v: v != x,
        "gt": lambda v: v > x,
        "gte": lambda v: v >= x,
        "lt": lambda v: v < x,
        "lte": lambda v: v <= x,
        "in": lambda v: v == x,
        "nin": lambda v: v != x,
    }[op]
    if matrix.dialect == "sqlite" and op in ("eq", "neq", "in", "nin"):
        # SQLite compares decimals as doubles: 1e-999999 is 0.0 there, documented.
        x = decimal.Decimal(float(x))
    truth = sorted(i for i, v in stored.items() if v is not None and v.is_finite() and compare(v))
    for body in (literal, variable):
        if matrix.dialect == "postgresql":
            error = body["errors"][0]
            assert error["extensions"]["code"] == "BAD_USER_INPUT", body
            assert "numeric" in error["message"] and "digits" in error["message"]
        else:
            assert "errors" not in body, body
            assert sorted(r["id"] for r in body["data"]["cells"]) == truth


@pytest.mark.parametrize("op", ["eq", "gt", "lt", "in"])
async def test_floats_beyond_the_double_range_are_refused(matrix: Matrix, op: str) -> None:
    field = FLOAT_COLUMN[matrix.dialect]
    arg = "[1e999]" if op == "in" else "-1e999"
    body = await matrix.body(f"{{ cells(where: {{{field}: {{{op}: {arg}}}}}) {{ id }} }}")
    error = body["errors"][0]
    assert error["extensions"]["code"] in ("BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"), body
    assert "finite" in error["message"] or "Float" in error["message"]


SINGLE_COLUMN = {"postgresql": "f4", "mysql": "f"}


@pytest.mark.parametrize("value", ["1e308", "-1e39", "3.5e38"])
@pytest.mark.parametrize("op", ["eq", "gte", "lt", "in"])
async def test_floats_beyond_a_single_precision_column_are_refused(
    matrix: Matrix, op: str, value: str
) -> None:
    # PostgreSQL failed to convert them to real (DATABASE_ERROR); MariaDB made them its
    # largest FLOAT, which a stored value may equal.
    if matrix.dialect == "sqlite":
        pytest.skip("SQLite's floats are all doubles")
    field = SINGLE_COLUMN[matrix.dialect]
    arg = f"[{value}]" if op == "in" else value
    body = await matrix.body(f"{{ cells(where: {{{field}: {{{op}: {arg}}}}}) {{ id }} }}")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    assert "single-precision" in error["message"]
    within = await matrix.body(f"{{ cells(where: {{{field}: {{lt: 3.4e38}}}}) {{ id }} }}")
    assert "errors" not in within, within


@pytest.mark.parametrize("op", ["eq", "neq", "gt", "in"])
async def test_mariadb_text_a_column_character_set_cannot_hold_is_bad_user_input(
    matrix: Matrix, op: str
) -> None:
    # A latin1 column compared with 😀: MariaDB refuses the mix of collations.
    if matrix.dialect != "mysql":
        pytest.skip("MariaDB's columns of another character set")
    arg = '["a", "😀"]' if op == "in" else '"😀"'
    body = await matrix.body(f"{{ cells(where: {{latin: {{{op}: {arg}}}}}) {{ id }} }}")
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", body
    assert "character set" in error["message"]
    fits = await matrix.body('{ cells(where: {latin: {eq: "café"}}) { id } }')
    assert fits == {"data": {"cells": [{"id": 1}]}}


# --------------------------------------------------------------------------------------------
# Long texts in pattern operators
# --------------------------------------------------------------------------------------------

LONG = "x" * 200_000


@pytest.mark.parametrize(
    ("op", "text", "like"),
    [
        ("contains", "é", "%é%"),
        ("startsWith", "line", "line%"),
        ("endsWith", "c", "%c"),
        ("endsWith", "", "%"),
        ("contains", LONG, None),
        ("startsWith", "abc" + LONG, None),
        ("endsWith", LONG + "abc", None),
    ],
)
async def test_substring_operators_take_texts_of_any_length(
    matrix: Matrix, op: str, text: str, like: str | None
) -> None:
    field = "t" if op != "endsWith" else "c"
    rows = await matrix.rows(
        f"query($v: String) {{ cells(where: {{{field}: {{{op}: $v}}}}) {{ id }} }}", {"v": text}
    )
    column = "t" if op != "endsWith" else "c"
    truth = (
        matrix.sql(f"SELECT id FROM {matrix.table} WHERE {column} LIKE ? ORDER BY id", (like,))
        if like is not None
        else []
    )
    assert sorted(r["id"] for r in rows) == [t[0] for t in truth]
    negated = await matrix.rows(
        f"query($v: String) {{ cells(where: {{not: {{{field}: {{{op}: $v}}}}}}) {{ id }} }}",
        {"v": text},
    )
    every = [t[0] for t in matrix.sql(f"SELECT id FROM {matrix.table}")]
    assert sorted(r["id"] for r in negated) == sorted(set(every) - {t[0] for t in truth})


@pytest.mark.parametrize("op", ["like", "ilike"])
async def test_a_long_like_pattern_is_answered_or_refused_with_the_limit(
    matrix: Matrix, op: str
) -> None:
    body = await matrix.body(
        f"query($v: String) {{ cells(where: {{t: {{{op}: $v}}}}) {{ id }} }}",
        {"v": "%" + LONG + "%"},
    )
    if matrix.dialect == "sqlite":
        error = body["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", body
        assert "50000 bytes" in error["message"] and "contains" in error["message"]
    else:
        assert body == {"data": {"cells": []}}


# --------------------------------------------------------------------------------------------
# Every served value is also an input that finds its row
# --------------------------------------------------------------------------------------------


async def test_each_served_value_filters_back_to_its_row(matrix: Matrix) -> None:
    """``eq`` with the value a field was served as finds the row it came from (the output
    form is a valid input and compares equal in the database)."""
    where = matrix.gql.get_type("CellWhere").fields
    types = tm.field_types(matrix.gql, "Cell")
    rows = await matrix.rows(f"{{ cells(orderBy: {{id: ASC}}) {{ {' '.join(types)} }} }}")
    failures: list[str] = []
    for name in types:
        if "eq" not in where[name].type.fields:
            continue  # JSON and arrays have no equality
        input_type = str(where[name].type.fields["eq"].type)
        for row in rows:
            value = row[name]
            if value is None or value in tm.NON_FINITE or value in tm.INFINITE_DATES:
                continue
            body = await matrix.body(
                f"query($v: {input_type}) {{ cells(where: {{{name}: {{eq: $v}}}}) {{ id }} }}",
                {"v": value},
            )
            found = [r["id"] for r in (body.get("data") or {}).get("cells") or []]
            # 0001-01-01 too, which PostgreSQL's driver would send as -infinity
            if row["id"] not in found:
                failures.append(f"{name} = {value!r} (row {row['id']}): {body}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("value", ["infinity", "-infinity"])
async def test_infinite_dates_filter_on_postgresql_and_are_refused_elsewhere(
    matrix: Matrix, value: str
) -> None:
    field = {"postgresql": "ts", "mysql": "dtm", "sqlite": "dtm"}[matrix.dialect]
    for op in ("eq", "gte", "in"):
        arg = f'["{value}"]' if op == "in" else f'"{value}"'
        body = await matrix.body(f"{{ cells(where: {{{field}: {{{op}: {arg}}}}}) {{ id }} }}")
        if matrix.dialect != "postgresql":
            assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
            assert "only PostgreSQL" in body["errors"][0]["message"]
            continue
        sql_op = {"eq": "=", "gte": ">=", "in": "="}[op]
        truth = matrix.sql(
            f"SELECT id FROM {matrix.table} WHERE ts {sql_op} ?::timestamp ORDER BY id", (value,)
        )
        assert "errors" not in body, body
        assert sorted(r["id"] for r in body["data"]["cells"]) == [t[0] for t in truth]


async def test_every_field_sorts_groups_and_aggregates_as_declared(matrix: Matrix) -> None:
    order_fields = matrix.gql.get_type("CellOrderBy").fields
    for name in order_fields:
        body = await matrix.body(f"{{ cells(orderBy: {{{name}: DESC}}) {{ id }} }}")
        assert "errors" not in body, (name, body)
        assert len(body["data"]["cells"]) == len(matrix.sql(f"SELECT id FROM {matrix.table}"))
    aggregate = matrix.gql.get_type("CellAggregate").fields
    parts = []
    for kind in ("sum", "avg", "min", "max"):
        if kind in aggregate:
            inner = aggregate[kind].type.of_type
            parts.append(f"{kind} {{ {' '.join(inner.fields)} }}")
    body = await matrix.body(f"{{ cellsAggregate {{ count {' '.join(parts)} }} }}")
    assert "errors" not in body, body
    result = body["data"]["cellsAggregate"]
    problems = []
    for kind in ("sum", "avg", "min", "max"):
        if kind in aggregate:
            inner = aggregate[kind].type.of_type
            for fname, fdef in inner.fields.items():
                problems += tm.type_problems(result[kind][fname], fdef.type, f"{kind}.{fname}")
    assert not problems, "\n".join(problems)
    keys = matrix.gql.get_type("CellGroupKey").fields
    for name in matrix.gql.get_type("CellField").values:
        body = await matrix.body(
            f"{{ cellsAggregate {{ groupBy(fields: [{name}]) {{ count keys {{ {name} }} }} }} }}"
        )
        assert "errors" not in body, (name, body)
        for group in body["data"]["cellsAggregate"]["groupBy"]:
            assert not tm.type_problems(group["keys"][name], keys[name].type, name), group


async def test_a_sum_of_int_beyond_32_bits_is_a_bigint(chinook_runner: Runner) -> None:
    data = await chinook_runner.data("{ tracksAggregate { sum { bytes milliseconds } } }")
    (total_bytes, total_ms), *_ = chinook_runner.sql(
        "SELECT SUM(bytes), SUM(milliseconds) FROM track"
    )
    assert int(total_bytes) > 2**31  # beyond Int: the reason the sum is a BigInt
    assert data["tracksAggregate"]["sum"] == {
        "bytes": str(int(total_bytes)),
        "milliseconds": str(int(total_ms)),
    }
    sum_type = chinook_runner.engine.graphql_schema.get_type("TrackSumFields")
    assert str(sum_type.fields["bytes"].type) == "BigInt"  # type: ignore[union-attr]


@pytest.mark.parametrize("stored", [2**40, -(2**31) - 1, "'abc'", "x'ff'"])
async def test_a_sqlite_int_column_holding_what_int_cannot_carry_says_so(
    fresh_sqlite: str, stored: Any
) -> None:
    db = ChinookDb("sqlite", fresh_sqlite)
    try:
        db.query("CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER)")
        db.query(f"INSERT INTO counters VALUES (1, 7), (2, {stored})")
        reflected = await reflect_database(fresh_sqlite)
        settings = QuiverSettings.model_validate({"database": {"url": fresh_sqlite}})
        app = create_app(reflected, settings)
        async with asgi_client(app) as client:
            ok = await client.post("/graphql", json={"query": "{ counter(id: 1) { n } }"})
            assert ok.json() == {"data": {"counter": {"n": 7}}}
            bad = await client.post("/graphql", json={"query": "{ counters { id n } }"})
    finally:
        db.close()
    body = orjson.loads(bad.content)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "DATABASE_ERROR"
    assert "not a 32-bit integer" in error["message"] and "BIGINT" in error["message"]
    assert body["data"] is None


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
async def test_json_holding_an_escaped_lone_surrogate_is_served_as_whole_characters(
    request: pytest.FixtureRequest, dialect: Dialect
) -> None:
    # PostgreSQL's json (not jsonb) and SQLite keep "\ud800" as written: valid JSON syntax,
    # but no character, and readers that check Unicode (orjson) refuse the whole response.
    url = str(request.getfixturevalue(f"fresh_{dialect}"))
    db = ChinookDb(dialect, url)
    try:
        db.query("CREATE TABLE docs (id INTEGER PRIMARY KEY, j JSON, t TEXT)")
        db.query(
            r"""INSERT INTO docs VALUES (1, '{"a": "\ud800x", "b": ["\uDC00"]}', 'ok'),"""
            r""" (2, '["\ud83d\ude00", "\\ud800", "\\\ud800"]', '\ud800')"""
        )
        reflected = await reflect_database(url)
        app = create_app(reflected, QuiverSettings.model_validate({"database": {"url": url}}))
        async with asgi_client(app) as client:
            r = await client.post("/graphql", json={"query": "{ docs { id j t } }"})
    finally:
        db.close()
    body = orjson.loads(r.content)  # raises on a lone surrogate
    assert body == {
        "data": {
            "docs": [
                {"id": 1, "j": {"a": "\ufffdx", "b": ["\ufffd"]}, "t": "ok"},
                # A pair is one character; an escaped backslash is no escape of a surrogate.
                {"id": 2, "j": ["\U0001f600", "\\ud800", "\\\ufffd"], "t": "\\ud800"},
            ]
        }
    }


async def test_an_array_of_a_checked_domain_refuses_a_value_outside_it(
    fresh_postgresql: str,
) -> None:
    # PostgreSQL casts contains: [0] to the column's type, and the domain's CHECK refuses it.
    db = ChinookDb("postgresql", fresh_postgresql)
    try:
        db.query("CREATE DOMAIN positive AS integer CHECK (VALUE > 0)")
        db.query("CREATE TABLE bins (id integer PRIMARY KEY, sizes positive[])")
        db.query("INSERT INTO bins VALUES (1, '{1,2}'), (2, '{3}')")
        reflected = await reflect_database(fresh_postgresql)
        settings = QuiverSettings.model_validate({"database": {"url": fresh_postgresql}})
        app = create_app(reflected, settings)
        async with asgi_client(app) as client:
            refused = await client.post(
                "/graphql", json={"query": "{ bins(where: {sizes: {contains: [0]}}) { id } }"}
            )
            found = await client.post(
                "/graphql", json={"query": "{ bins(where: {sizes: {overlaps: [2, 3]}}) { id } }"}
            )
    finally:
        db.close()
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "positive" in error["message"]
    assert found.json() == {"data": {"bins": [{"id": 1}, {"id": 2}]}}
