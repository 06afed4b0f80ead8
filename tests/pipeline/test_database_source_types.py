"""What the database source reads of every column type equals what GraphQL serves for the same
column, on every dialect, for a ``table`` and a ``query`` alike.

Each database gets the table of ``tests/graphql/type_matrix.py``: a column of every type it
offers, at the edges of each type's range, with nulls. The table is served by the real GraphQL
app and read by the source; each value the source reads, turned into the JSON GraphQL would give
it (a date's ISO text, bytes in base64), must equal the value served, or be the Arrow value the
connector documentation promises where the two differ (MariaDB's TIME is a duration, spatial
values are WKT). PostgreSQL's infinite dates have no Arrow form: reading them is refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import pytest_asyncio

from graphql import GraphQLEnumType, GraphQLList, GraphQLNonNull
from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sources.database import DatabaseSource, write_cursor_state
from quiver.runtime.errors import PermanentError
from tests.conftest import DIALECTS, Dialect
from tests.graphql import type_matrix as tm

from .conftest import build, read_all

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: PostgreSQL rows holding ``infinity`` or ``-infinity`` dates: read by the query form only
#: with the rows that have none.
_PG_INFINITE_ROW = 3


class Served:
    """The matrix table of one database, as GraphQL serves it."""

    def __init__(self, dialect: Dialect, url: str, table: str, rows: list[dict[str, Any]]) -> None:
        self.dialect = dialect
        self.url = url
        self.table = table
        self.rows = rows
        self.types: dict[str, Any] = {}  # column -> GraphQL type
        self.fields: dict[str, str] = {}  # column -> GraphQL field


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=DIALECTS)
async def served(request: pytest.FixtureRequest, tmp_path_factory: Any) -> AsyncIterator[Served]:
    dialect: Dialect = request.param
    async with tm.served_matrix(dialect, tmp_path_factory) as (m, app, client):
        types = tm.field_types(app.engine.graphql_schema, "Cell")
        query = f"{{ cells(orderBy: {{id: ASC}}) {{ {' '.join(types)} }} }}"
        out = Served(dialect, m.url, m.table, await _post(client, query))
        for f in app.engine.catalog.fields["Cell"].values():
            if f.name in types:
                out.types[f.column] = types[f.name]
                out.fields[f.column] = f.name
        yield out


async def _post(client: httpx.AsyncClient, query: str) -> list[dict[str, Any]]:
    r = await client.post(
        "/graphql",
        content=orjson.dumps({"query": query}),
        headers={"content-type": "application/json"},
    )
    body = orjson.loads(r.content)
    assert "errors" not in body, body
    rows: list[dict[str, Any]] = body["data"]["cells"]
    return rows


async def _read(served: Served, ctx: RunContext, **options: Any) -> list[dict[str, Any]]:
    source = build(DatabaseSource, {"url": served.url, **options})
    table = await read_all(source, ctx)
    return sorted(table.drop_columns([LINE_COLUMN]).to_pylist(), key=lambda row: row["id"])


def _named(t: Any) -> Any:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return t


def _is_list(t: Any) -> bool:
    while isinstance(t, GraphQLNonNull):
        t = t.of_type
    return isinstance(t, GraphQLList)


def _mysql_type(served: Served, column: str) -> str:
    for line in tm.MYSQL_COLUMNS.split(","):
        words = line.split()
        if words and words[0] == column:
            return words[1].upper()
    return ""


def _agrees(dialect: str, column: str, db_type: str, scalar: str, read: Any, serve: Any) -> bool:
    """Whether ``read`` (what the source read, as Python) is ``serve`` (what GraphQL served)."""
    if scalar == "JSON" and read is not None:
        return bool((orjson.loads(read) if isinstance(read, str) else read) == serve)
    if read is None or serve is None:
        return read is None and serve is None
    if isinstance(read, str) and read == serve:
        return True
    if isinstance(read, int) and isinstance(serve, str):  # BigInt, ID, PostgreSQL's oid
        return str(read) == serve
    if dialect == "sqlite" and isinstance(read, str):
        # A query reads SQLite's stored text as it is (a table reads its declared type).
        kinds: dict[str, type[dt.date] | type[dt.time]] = {
            "Date": dt.date,
            "DateTime": dt.datetime,
            "Time": dt.time,
        }
        read = kinds[scalar].fromisoformat(read)
    if dialect == "sqlite" and scalar == "Decimal" and isinstance(read, float):
        return bool(decimal.Decimal(serve) == decimal.Decimal(repr(read)))
    if dialect == "sqlite" and scalar == "Boolean" and isinstance(read, int):
        return bool(read) is serve
    if scalar == "Base64":
        return bool(base64.b64decode(serve) == read)
    if scalar == "Boolean":
        return bool(read is serve)
    if scalar == "Decimal":
        if isinstance(read, str):
            return bool(read == serve)
        return bool(decimal.Decimal(serve) == read)
    if scalar == "Float":
        number = float(serve)  # "NaN" and "Infinity" as strings
        if isinstance(read, float) and math.isnan(read):
            return math.isnan(number)
        if db_type in ("real", "float"):
            # Single precision: the double read is the one the column holds, which GraphQL
            # serves in the fewest digits single precision tells apart.
            return bool(np.float32(number) == np.float32(read) and float(np.float32(read)) == read)
        return bool(number == read)
    if scalar == "Date":
        return bool(dt.date.fromisoformat(serve) == read)
    if scalar == "DateTime":
        when = dt.datetime.fromisoformat(serve)
        if read.tzinfo is not None and when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        if dialect == "mysql" and read.tzinfo is None:
            when = when.replace(tzinfo=None)
        return bool(when == read)
    if scalar == "Time":
        if isinstance(read, dt.timedelta):  # MariaDB TIME: a duration
            return bool(dt.time.fromisoformat(serve) == (dt.datetime.min + read).time())
        return bool(dt.time.fromisoformat(serve) == read)
    if scalar == "Int":
        return bool(read == serve)
    return bool(read == serve)


def _differences(served: Served, read: list[dict[str, Any]]) -> list[str]:
    """Every value the source read that is not what GraphQL served for it."""
    problems = []
    wanted = {row[served.fields["id"]]: row for row in served.rows}
    assert read and all(row["id"] in wanted for row in read)
    for row in read:
        for column, t in served.types.items():
            scalar = _named(t)
            value, serve = row[column], wanted[row["id"]][served.fields[column]]
            if isinstance(scalar, GraphQLEnumType):
                # An enum is served by its GraphQL name; the source reads the stored label.
                labels = {v.value: k for k, v in scalar.values.items()}
                value = (
                    [labels.get(v, v) for v in value]
                    if isinstance(value, list)
                    else labels.get(value, value)
                )
                ok = value == serve or (value is None and serve is None)
            elif served.dialect == "mysql" and _mysql_type(served, column) in ("GEOMETRY", "POINT"):
                # Spatial values: GraphQL serves GeoJSON, the source reads WKT.
                ok = (value is None and serve is None) or (
                    isinstance(value, str) and value.startswith(serve["type"].upper())
                )
            else:
                db_type = _pg_type(column) if served.dialect == "postgresql" else ""
                if served.dialect == "mysql":
                    db_type = _mysql_type(served, column).lower()
                name = scalar.name
                if _is_list(t):
                    ok = (value is None and serve is None) or (
                        value is not None
                        and serve is not None
                        and len(value) == len(serve)
                        and all(
                            _agrees(served.dialect, column, db_type, name, v, s)
                            for v, s in zip(value, serve, strict=True)
                        )
                    )
                else:
                    ok = _agrees(served.dialect, column, db_type, name, value, serve)
            if not ok:
                problems.append(f"row {row['id']} {column}: read {value!r}, served {serve!r}")
    return problems


def _pg_type(column: str) -> str:
    for part in tm.PG_COLUMNS.split(","):
        words = part.split()
        if words and words[0] == column:
            return words[1]
    return ""


async def test_a_table_is_read_as_graphql_serves_it(served: Served, run_ctx: RunContext) -> None:
    if served.dialect == "postgresql":
        # The matrix holds infinite dates, which the table form refuses (below): the rows
        # without them are read by the query form.
        pytest.skip("the PostgreSQL matrix holds infinite dates")
    if served.dialect == "sqlite":
        # A table's declared DECIMAL column holding a REAL is refused (tested beside the
        # database round trip): the query form reads the stored values.
        pytest.skip("the SQLite matrix stores decimals as REAL")
    read = await _read(served, run_ctx, table=served.table)
    assert len(read) == len(served.rows)
    assert not _differences(served, read), "\n".join(_differences(served, read))


async def test_a_query_is_read_as_graphql_serves_it(served: Served, run_ctx: RunContext) -> None:
    query = f"SELECT * FROM {served.table}"
    if served.dialect == "postgresql":
        query += f" WHERE id <> {_PG_INFINITE_ROW}"
    read = await _read(served, run_ctx, query=query)
    assert len(read) == len(served.rows) - (served.dialect == "postgresql")
    assert not _differences(served, read), "\n".join(_differences(served, read))


async def test_a_query_needing_no_other_reading_runs_as_written(
    served: Served, run_ctx: RunContext
) -> None:
    source = build(DatabaseSource, {"url": served.url, "query": f"SELECT id FROM {served.table}"})
    read = await read_all(source, run_ctx)
    assert sorted(read.column("id").to_pylist()) == sorted(r["id"] for r in served.rows)


async def test_infinite_postgresql_dates_are_refused_naming_column_value_and_fix(
    served: Served, run_ctx: RunContext
) -> None:
    if served.dialect != "postgresql":
        pytest.skip("only PostgreSQL has infinite dates")
    with pytest.raises(PermanentError) as table_error:
        await _read(served, run_ctx, table=served.table)
    text = str(table_error.value)
    assert "column 'd' holds infinity at record " in text
    assert "which no Arrow date32[day] holds" in text
    assert 'CASE WHEN isfinite("d") THEN "d" END' in text
    query = f"SELECT id, tstz, ts FROM {served.table} WHERE id = {_PG_INFINITE_ROW}"
    with pytest.raises(PermanentError) as query_error:
        await _read(served, run_ctx, query=query)
    assert "column 'tstz' holds infinity at record 1" in str(query_error.value)
    query = f"SELECT id, ts FROM {served.table} WHERE id = {_PG_INFINITE_ROW}"
    with pytest.raises(PermanentError) as query_error:
        await _read(served, run_ctx, query=query)
    assert "column 'ts' holds -infinity at record 1" in str(query_error.value)
    # The fix given reads them.
    mapped = (
        f'SELECT id, CASE WHEN isfinite("d") THEN "d" END AS "d", CAST(ts AS text) AS ts'
        f" FROM {served.table} WHERE id = {_PG_INFINITE_ROW}"
    )
    assert await _read(served, run_ctx, query=mapped) == [
        {"id": _PG_INFINITE_ROW, "d": None, "ts": "-infinity"}
    ]


async def test_an_incremental_read_reads_past_the_cursor_through_the_same_reads(
    served: Served, run_ctx: RunContext
) -> None:
    query = f"SELECT * FROM {served.table}"
    if served.dialect == "postgresql":
        query += f" WHERE id <> {_PG_INFINITE_ROW}"
    options = {"query": query, "incremental": {"column": "id", "state": "cursor.json"}}
    first = await _read(served, run_ctx, **options)
    write_cursor_state(os.path.join(run_ctx.base_dir, "cursor.json"), "id", first[0]["id"])
    later = await read_all(build(DatabaseSource, {"url": served.url, **options}), run_ctx)
    rows = sorted(later.drop_columns([LINE_COLUMN]).to_pylist(), key=lambda row: row["id"])
    assert rows == first[1:]
    assert not _differences(served, rows)
