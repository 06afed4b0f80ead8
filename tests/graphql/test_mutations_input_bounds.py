"""Values reach the table as sent, over HTTP, on every dialect: a value the column cannot hold
as given is refused with the field, the value and the column's type, never rounded or cut;
batches as large as ``mutations.max_rows`` allows are written whole or not at all."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

import quiver
from quiver.config.settings import QuiverSettings
from quiver.graphql.http import create_app
from quiver.schema.reflect import reflect_database
from quiver.sql.database import Transaction
from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql.conftest import asgi_client

pytestmark = pytest.mark.asyncio(loop_scope="session")

_DDL: dict[Dialect, tuple[str, ...]] = {
    "postgresql": (
        "CREATE TABLE items (id serial PRIMARY KEY, price numeric(6,2), small smallint,"
        " code varchar(5) UNIQUE, pos integer CHECK (pos > 0), opens time, meta jsonb, day date)",
        "CREATE TABLE pairs (a integer, b integer, note text, PRIMARY KEY (a, b))",
    ),
    "mysql": (
        "CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, price DECIMAL(6,2),"
        " small SMALLINT, code VARCHAR(5) UNIQUE, pos INT CHECK (pos > 0), opens TIME, meta JSON,"
        " day DATE)"
        " ENGINE=InnoDB",
        "CREATE TABLE pairs (a INT, b INT, note TEXT, PRIMARY KEY (a, b)) ENGINE=InnoDB",
    ),
    "sqlite": (
        "CREATE TABLE items (id INTEGER PRIMARY KEY, price NUMERIC(6,2), small SMALLINT,"
        " code VARCHAR(5) UNIQUE, pos INTEGER CHECK (pos > 0), opens TIME, meta JSON, day DATE)",
        "CREATE TABLE pairs (a INTEGER, b INTEGER, note TEXT, PRIMARY KEY (a, b))",
    ),
}

Client = tuple[httpx.AsyncClient, ChinookDb]


@pytest_asyncio.fixture(params=DIALECTS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    for statement in _DDL[dialect]:
        db.query(statement)
    app = create_app(
        await reflect_database(url), QuiverSettings.model_validate({"database": {"url": url}})
    )
    try:
        async with asgi_client(app) as c:
            yield c, db
    finally:
        db.close()


async def _post(c: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    r = await c.post(
        "/graphql",
        # json, not orjson: a test value may nest deeper than orjson writes
        content=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _error(body: dict[str, Any]) -> dict[str, Any]:
    assert body.get("data") is None, body
    assert len(body["errors"]) == 1, body
    error: dict[str, Any] = body["errors"][0]
    return error


_CREATE_ITEMS = "mutation($r: [ItemCreateInput!]!) { createItems(inputs: $r) { id } }"


async def test_a_batch_of_max_rows_rows_is_written_on_every_dialect(client: Client) -> None:
    c, db = client
    body = await _post(c, _CREATE_ITEMS, {"r": [{"pos": i + 1} for i in range(1000)]})
    assert "errors" not in body, body
    assert len(body["data"]["createItems"]) == 1000
    assert db.query("SELECT COUNT(*) FROM items") == [(1000,)]
    body = await _post(
        c,
        "mutation { updateItems(where: {}, set: {small: 7}) { id small } }",
        {},
    )
    assert "errors" not in body, body
    assert len(body["data"]["updateItems"]) == 1000
    body = await _post(c, "mutation { deleteItems(where: {}) { id } }", {})
    assert "errors" not in body, body
    assert db.query("SELECT COUNT(*) FROM items") == [(0,)]


async def test_a_batch_over_composite_keys_of_max_rows_rows_is_written(client: Client) -> None:
    c, db = client
    rows = [{"a": i // 10, "b": i % 10} for i in range(1000)]
    body = await _post(
        c, "mutation($r: [PairCreateInput!]!) { createPairs(inputs: $r) { a b } }", {"r": rows}
    )
    assert "errors" not in body, body
    assert body["data"]["createPairs"][999] == {"a": 99, "b": 9}
    assert db.query("SELECT COUNT(*) FROM pairs") == [(1000,)]


async def test_a_filter_of_a_thousand_alternatives_runs_on_every_dialect(client: Client) -> None:
    c, _ = client
    await _post(c, _CREATE_ITEMS, {"r": [{"pos": 1}, {"pos": 2}]})
    alternatives = [{"pos": {"eq": i}} for i in range(1000)]
    body = await _post(
        c,
        "query($w: ItemWhere!) { items(where: $w) { pos } }",
        {"w": {"or": alternatives}},
    )
    assert body == {"data": {"items": [{"pos": 1}, {"pos": 2}]}}


async def test_the_500th_bad_row_of_a_batch_writes_nothing_and_logs_nothing(
    client: Client,
) -> None:
    c, db = client
    rows = [{"pos": 1} for _ in range(600)]
    rows[499] = {"pos": 0}
    error = _error(await _post(c, _CREATE_ITEMS, {"r": rows}))
    assert error["extensions"]["code"] == "CHECK_VIOLATION"
    assert error["extensions"]["argumentPath"] == ["inputs", 499, "pos"]
    assert db.query("SELECT COUNT(*) FROM items") == [(0,)]
    assert db.query("SELECT COUNT(*) FROM quiver_change_log") == [(0,)]


@pytest.mark.parametrize(
    ("given", "field", "shown"),
    [
        ({"price": "1.239"}, "price", "3 digits after the decimal point"),
        ({"price": 1.005}, "price", "3 digits after the decimal point"),
        ({"price": "0.0000000001"}, "price", "10 digits after the decimal point"),
        ({"price": "12345.6"}, "price", "5 digits before the decimal point"),
        ({"price": 123456}, "price", "6 digits before the decimal point"),
        ({"small": 40000}, "small", "40000 is outside the range"),
        ({"code": "abcdef"}, "code", "6 characters long"),
        ({"code": "abcdef", "pos": 1, "small": 2}, "code", "6 characters long"),
        ({"opens": "10:00:00+05:00"}, "opens", "has an offset"),
    ],
)
async def test_a_value_the_column_would_change_is_refused_naming_field_and_value(
    client: Client, given: dict[str, Any], field: str, shown: str
) -> None:
    c, db = client
    for query, variables in (
        ("mutation($v: ItemCreateInput!) { createItem(input: $v) { id } }", {"v": given}),
        ("mutation($v: [ItemCreateInput!]!) { createItems(inputs: $v) { id } }", {"v": [given]}),
    ):
        error = _error(await _post(c, query, variables))
        assert error["extensions"]["code"] == "INVALID_VALUE", error
        assert error["extensions"]["field"] == field, error
        assert error["extensions"]["argumentPath"][-1] == field, error
        assert error["message"].startswith(f"Item.{field}: "), error
        if not (db.dialect == "postgresql" and field == "code"):
            # PostgreSQL checks a varchar's length itself: "value too long for type ..."
            assert shown in error["message"], error
    await _post(c, "mutation { createItem(input: {pos: 1}) { id } }", {})
    error = _error(
        await _post(
            c,
            "mutation($v: ItemSetInput!) { updateItems(where: {}, set: $v) { id } }",
            {"v": given},
        )
    )
    assert error["extensions"]["code"] == "INVALID_VALUE", error
    assert error["extensions"]["argumentPath"] == ["set", field], error
    assert db.query("SELECT price, small, code FROM items") == [(None, None, None)]


async def test_values_that_fit_are_kept_as_sent(client: Client) -> None:
    c, _ = client
    given = {"price": "1234.50", "small": -32768, "code": "abcde"}
    body = await _post(
        c,
        "mutation($v: ItemCreateInput!) { createItem(input: $v) { price small code } }",
        {"v": given},
    )
    item = body["data"]["createItem"]
    assert (Decimal(item.pop("price")), item) == (
        Decimal("1234.5"),
        {"small": -32768, "code": "abcde"},
    )
    body = await _post(c, 'mutation { createItem(input: {price: "1.2"}) { price } }', {})
    assert Decimal(body["data"]["createItem"]["price"]) == Decimal("1.2")


def _python_mutations(dialect: Dialect) -> list[Any]:
    mark = {"postgresql": "$1", "mysql": "%s", "sqlite": "?"}[dialect]

    @quiver.mutation(entity="Item")
    async def add_code(tx: Transaction, code: str) -> Any:
        rows = await tx.fetch_rows(f"INSERT INTO items (code) VALUES ({mark}) RETURNING id", [code])
        return rows[0][0]

    return [add_code]


@pytest_asyncio.fixture(params=DIALECTS)
async def python_client(request: pytest.FixtureRequest) -> AsyncIterator[Client]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    for statement in _DDL[dialect]:
        db.query(statement)
    app = quiver.create_app(url, mutations=_python_mutations(dialect))
    try:
        async with asgi_client(app) as c:
            yield c, db
    finally:
        db.close()


async def test_a_python_mutation_argument_with_nul_is_refused_before_it_runs(
    python_client: Client,
) -> None:
    c, db = python_client
    query = "mutation($c: String!) { addCode(code: $c) { id code } }"
    error = _error(await _post(c, query, {"c": "a\x00b"}))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argumentPath": ["code"]}, error
    assert error["path"] == ["addCode"] and "NUL" in error["message"], error
    assert db.query("SELECT COUNT(*) FROM items") == [(0,)]
    body = await _post(c, query, {"c": "ab"})
    assert body["data"]["addCode"]["code"] == "ab", body
    error = _error(await _post(c, query, {"c": "ab"}))
    assert error["extensions"]["code"] == "UNIQUE_VIOLATION", error
    assert error["path"] == ["addCode"], error


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def test_json_nested_too_deeply_is_refused_as_bad_input(client: Client) -> None:
    c, db = client
    query = "mutation($m: JSON) { createItem(input: {meta: $m}) { id } }"
    body = await _post(c, query, {"m": _nested(300)})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert "nested more than 200 levels" in body["errors"][0]["message"], body
    assert db.query("SELECT COUNT(*) FROM items") == [(0,)]


async def test_json_as_deep_as_the_database_keeps_is_written_and_logged(client: Client) -> None:
    c, db = client
    query = "mutation($m: JSON) { createItem(input: {meta: $m}) { id } }"
    # MariaDB's JSON keeps 31 levels, and the change log holds the value inside the row.
    deepest = 30 if db.dialect == "mysql" else 200
    body = await _post(c, query, {"m": _nested(deepest)})
    assert "errors" not in body, body
    assert db.query("SELECT COUNT(*) FROM quiver_change_log") == [(1,)]
    error = _error(await _post(c, query, {"m": _nested(deepest + 1)}))
    if db.dialect == "mysql":
        assert error["extensions"] == {
            "code": "INVALID_VALUE",
            "field": "meta",
            "argumentPath": ["input", "meta"],
        }, error
        assert "nests 31 levels deep, and MariaDB keeps at most 30" in error["message"], error
    else:
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert db.query("SELECT COUNT(*) FROM items") == [(1,)]


def _negated(levels: int) -> dict[str, Any]:
    where: dict[str, Any] = {"pos": {"eq": 1}}
    for _ in range(levels):
        where = {"not": where}
    return where


async def test_a_filter_nested_too_deeply_is_refused_alike_on_every_dialect(
    client: Client,
) -> None:
    c, db = client
    await _post(c, _CREATE_ITEMS, {"r": [{"pos": 1}, {"pos": 2}]})
    query = "mutation($w: ItemWhere!) { deleteItems(where: $w) { pos } }"
    body = await _post(c, query, {"w": _negated(30)})
    assert body == {"data": {"deleteItems": [{"pos": 1}]}}, body
    error = _error(await _post(c, query, {"w": _negated(60)}))
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "nests more than 32 levels" in error["message"], error
    assert db.query("SELECT pos FROM items") == [(2,)]


async def test_a_value_refused_before_the_write_names_entity_field_and_path(
    client: Client,
) -> None:
    c, _ = client
    query = "mutation($v: ItemCreateInput!) { createItem(input: $v) { id } }"
    error = _error(await _post(c, query, {"v": {"code": "a\x00b"}}))
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argumentPath": ["input", "code"]}
    assert error["message"].startswith("Item.code: strings cannot contain the NUL"), error
    # the first date Python has is written as itself, not as PostgreSQL's -infinity
    body = await _post(c, query, {"v": {"day": "0001-01-01"}})
    assert "errors" not in body, body


async def test_a_time_finer_than_microseconds_is_refused_not_cut(client: Client) -> None:
    c, db = client
    query = "mutation($v: ItemCreateInput!) { createItem(input: $v) { opens } }"
    body = await _post(c, query, {"v": {"opens": "10:00:00.1234567"}})
    assert "data" not in body, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert "more than 6 digits of a second" in error["message"], error
    # MariaDB's TIME keeps whole seconds (see below)
    fine = "10:00:00" if db.dialect == "mysql" else "10:00:00.123456"
    body = await _post(c, query, {"v": {"opens": fine}})
    assert "errors" not in body, body
    assert db.query("SELECT COUNT(*) FROM items") == [(1,)]


async def test_fractions_of_seconds_a_time_column_cannot_keep_are_refused(
    client: Client,
) -> None:
    c, db = client
    query = "mutation($v: ItemCreateInput!) { createItem(input: $v) { opens } }"
    body = await _post(c, query, {"v": {"opens": "10:00:00.5"}})
    if db.dialect == "mysql":
        # MariaDB's TIME, declared without a precision, keeps whole seconds (it would cut .5).
        error = _error(body)
        assert error["extensions"]["code"] == "INVALID_VALUE", error
        assert error["extensions"]["field"] == "opens", error
        assert "1 digit after the seconds' point and time keeps 0" in error["message"], error
        assert db.query("SELECT COUNT(*) FROM items") == [(0,)]
    else:
        assert body == {"data": {"createItem": {"opens": "10:00:00.500000"}}} or body == {
            "data": {"createItem": {"opens": "10:00:00.5"}}
        }, body
