"""SQLite lets any column hold a value of any storage class. For every affinity (INTEGER, REAL,
NUMERIC, TEXT, BLOB, none) and declared type holding each storage class (integer, real, text,
blob, null), what is served is valid JSON of the field's declared GraphQL type, or a clear error
on that field naming the value: never invalid JSON, never the database's "JSON cannot hold
BLOB values".
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import create_app
from quiver.schema.reflect import reflect_database
from tests.graphql import type_matrix as tm
from tests.graphql.conftest import asgi_client

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: column -> declared type ("" for none)
COLUMNS = {
    "ai": "INTEGER",
    "ar": "REAL",
    "an": "NUMERIC",
    "at": "TEXT",
    "ab": "BLOB",
    "untyped": "",
    "bi": "BIGINT",
    "dec": "DECIMAL(10, 2)",
    "bo": "BOOLEAN",
    "vc": "VARCHAR(10)",
    "d": "DATE",
    "dtm": "DATETIME",
    "tm": "TIME",
    "uu": "UUID",
    "j": "JSON",
}
#: row id -> (storage class, the value stored in every column)
STORED: dict[int, tuple[str, Any]] = {
    1: ("integer", 5),
    2: ("real", 1.5),
    3: ("text", "abc"),
    4: ("blob", b"\xff\x00\xfe"),
    5: ("null", None),
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(tmp_path_factory: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    path: Path = tmp_path_factory.mktemp("loose") / "loose.sqlite"
    conn = sqlite3.connect(path)
    cols = ", ".join(f"{name} {decl}".strip() for name, decl in COLUMNS.items())
    conn.execute(f"CREATE TABLE cells (id INTEGER PRIMARY KEY, {cols})")
    marks = ", ".join("?" * (len(COLUMNS) + 1))
    for row, (_, value) in STORED.items():
        conn.execute(f"INSERT INTO cells VALUES ({marks})", [row, *([value] * len(COLUMNS))])
    conn.commit()
    conn.close()
    url = f"sqlite:///{path.absolute()}"
    reflected = await reflect_database(url)
    app = create_app(reflected, QuiverSettings.model_validate({"database": {"url": url}}))
    async with asgi_client(app) as c:
        yield c, app


def _stored_class(column: str, row: int) -> str:
    with sqlite3.connect(":memory:") as conn:
        conn.execute(f"CREATE TABLE t (x {COLUMNS[column]})")
        conn.execute("INSERT INTO t VALUES (?)", (STORED[row][1],))
        cls: str = conn.execute("SELECT typeof(x) FROM t").fetchone()[0]
        return cls


@pytest.mark.parametrize("row", list(STORED))
async def test_every_affinity_holding_every_storage_class_is_served_as_declared(
    client: tuple[httpx.AsyncClient, Any], row: int
) -> None:
    http, app = client
    types = tm.field_types(app.engine.graphql_schema, "Cell")
    failures: list[str] = []
    for column in COLUMNS:
        r = await http.post(
            "/graphql",
            content=orjson.dumps(
                {"query": f"{{ cells(where: {{id: {{eq: {row}}}}}) {{ {column} }} }}"}
            ),
            headers={"content-type": "application/json"},
        )
        r.content.decode("utf-8")
        body = orjson.loads(r.content)
        stored = _stored_class(column, row)
        where = f"{column} {COLUMNS[column] or '(none)'} holding {stored}"
        if "errors" in body:
            message = body["errors"][0]["message"]
            # A clear refusal names the value and the field's type.
            if "holds" not in message or "(SQLite lets" not in message:
                failures.append(f"{where}: {message}")
            continue
        value = body["data"]["cells"][0][column]
        if stored == "real" and _named(types[column]) == "Int":
            continue  # a fractional real in an Int column is served as stored (documented)
        failures += tm.type_problems(value, types[column], where)
        if stored == "blob" and _named(types[column]) in ("String", "Base64"):
            assert value == "/wD+", (where, value)  # Base64 of the stored bytes
    assert not failures, "\n".join(failures)


def _named(t: Any) -> str:
    while hasattr(t, "of_type"):
        t = t.of_type
    return str(t.name)


async def test_a_blob_in_an_untyped_column_is_served_with_the_rest_of_the_list(
    client: tuple[httpx.AsyncClient, Any],
) -> None:
    http, _ = client
    r = await http.post(
        "/graphql",
        content=orjson.dumps({"query": "{ cells { id untyped at vc } }"}),
        headers={"content-type": "application/json"},
    )
    body = orjson.loads(r.content)
    assert "errors" not in body, body
    assert [c["untyped"] for c in body["data"]["cells"]] == ["5", "1.5", "abc", "/wD+", None]


async def test_text_that_is_not_utf8_is_served_and_filtered_as_utf8_with_replacements(
    tmp_path: Path,
) -> None:
    # SQLite keeps the bytes a TEXT value is given: x'ff' is no UTF-8, x'eda080' a surrogate.
    path = tmp_path / "bytes.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, t TEXT, vc VARCHAR(10), untyped, j JSON,"
            " d DATE)"
        )
        bad = "CAST(x'61ff62' AS TEXT)"
        conn.execute(
            f"INSERT INTO notes VALUES (1, {bad}, CAST(x'eda080' AS TEXT), {bad},"
            f" CAST(x'7b2261223a22ff227d' AS TEXT), {bad}), (2, 'ok', 'é', NULL, '[]', NULL)"
        )
    url = f"sqlite:///{path.absolute()}"
    app = create_app(
        await reflect_database(url), QuiverSettings.model_validate({"database": {"url": url}})
    )
    async with asgi_client(app) as http:
        # text that is no Date is refused (see tests/graphql/test_stored_values.py)
        refused = await http.post(
            "/graphql",
            content=orjson.dumps({"query": "{ notes { d } }"}),
            headers={"content-type": "application/json"},
        )
        r = await http.post(
            "/graphql",
            content=orjson.dumps({"query": "{ notes { id t vc untyped j } }"}),
            headers={"content-type": "application/json"},
        )
        # ilike folds case in Python, which is handed the text's bytes.
        folded = await http.post(
            "/graphql",
            content=orjson.dumps(
                {"query": '{ notes(where: {t: {ilike: "A%B"}, vc: {ilike: "%"}}) { id } }'}
            ),
            headers={"content-type": "application/json"},
        )
    assert orjson.loads(folded.content) == {"data": {"notes": [{"id": 1}]}}
    assert "a Date field holds the text 'a\ufffdb'" in refused.content.decode("utf-8")
    body = orjson.loads(r.content.decode("utf-8"))  # strict: raises on bytes that are not UTF-8
    assert body == {
        "data": {
            "notes": [
                {
                    "id": 1,
                    "t": "a\ufffdb",
                    "vc": "\ufffd\ufffd\ufffd",
                    "untyped": "a\ufffdb",
                    "j": {"a": "\ufffd"},
                },
                {"id": 2, "t": "ok", "vc": "é", "untyped": None, "j": []},
            ]
        }
    }


async def test_a_boolean_column_holding_text_says_so_instead_of_serving_false(
    tmp_path: Path,
) -> None:
    # SQLite reads the text 'true' as the number 0: it was served as false.
    path = tmp_path / "flags.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE flags (id INTEGER PRIMARY KEY, on_ BOOLEAN)")
        conn.execute("INSERT INTO flags VALUES (1, 1), (2, 0), (3, NULL), (4, 'true')")
    url = f"sqlite:///{path.absolute()}"
    app = create_app(
        await reflect_database(url), QuiverSettings.model_validate({"database": {"url": url}})
    )
    async with asgi_client(app) as http:
        kept = await http.post("/graphql", json={"query": "{ flags(where: {id: {lt: 4}}) { on } }"})
        text = await http.post("/graphql", json={"query": "{ flags { id on } }"})
    assert kept.json() == {"data": {"flags": [{"on": True}, {"on": False}, {"on": None}]}}
    error = text.json()["errors"][0]
    assert error["extensions"]["code"] == "DATABASE_ERROR"
    assert "a Boolean field holds the text 'true'" in error["message"]
