"""Every column type of every database is served as valid UTF-8 JSON of its declared GraphQL
type, through the real HTTP app.

A table holds a column of each type (``tests/graphql/type_matrix.py``) at the edges of its range,
with non-finite numbers and nulls; it is reflected, queried over HTTP, and each value is checked
against the type the GraphQL schema declares for it. Exact values are compared with what an
independent driver reads with plain SQL.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from graphql import GraphQLEnumType, GraphQLList, GraphQLNonNull
from quiver.config.settings import QuiverSettings
from quiver.graphql.http import create_app
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb, Dialect, create_empty_database, drop_database
from tests.graphql import type_matrix as tm

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
    schemas: list[str] | None = None
    table = "cells"
    if dialect == "sqlite":
        url = tm.build_sqlite(tmp_path_factory.mktemp("matrix") / "matrix.sqlite")
    else:
        url = create_empty_database(dialect)
    db = ChinookDb(dialect, url)
    try:
        if dialect == "postgresql":
            schema = f"m_{uuid.uuid4().hex[:8]}"
            schemas = [schema]
            table = f"{schema}.cells"
            for statement in tm.pg_statements(schema):
                db.query(statement)
        elif dialect == "mysql":
            for statement in tm.mysql_statements():
                db.query(statement)
        reflected = await reflect_database(url, schemas=schemas)
        settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
        app = create_app(reflected, settings)
        await app.startup()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://quiver") as client:
                yield Matrix(client, db, app, table)
        finally:
            await app.shutdown()
    finally:
        db.close()
        if dialect != "sqlite":
            drop_database(url)


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
