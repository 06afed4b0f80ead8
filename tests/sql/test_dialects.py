"""Identifier quoting: one implementation, in the dialects, checked against the real databases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from quiver.runtime.errors import ConfigError
from quiver.sql.connect import connect_mysql, connect_postgresql, connect_sqlite
from quiver.sql.dialects import (
    DUCKDB,
    MYSQL,
    POSTGRESQL,
    SQLITE,
    Dialect,
    IdentifierError,
    dialect_for,
    split_table_name,
)
from quiver.sql.url import parse_database_url

DIALECTS = [POSTGRESQL, MYSQL, SQLITE, DUCKDB]

#: Names every dialect must keep as one identifier, exactly as written.
HOSTILE = [
    'we"ird',
    "back`tick",
    "it's",
    "dot.ted",
    "sp ace",
    "größe",
    "名前",
    "100%",
    "semi;colon -- comment",
    "a]b[",
    "UPPER",
]


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_quote_inside_a_name_is_doubled(dialect: Dialect) -> None:
    q = dialect.quote_char
    assert dialect.quote_ident(f"a{q}b") == f"{q}a{q}{q}b{q}"
    assert dialect.quote_ident("a.b") == f"{q}a.b{q}"


def test_each_dialect_quotes_with_its_own_character() -> None:
    assert POSTGRESQL.quote_ident("x") == '"x"'
    assert SQLITE.quote_ident("x") == '"x"'
    assert DUCKDB.quote_ident("x") == '"x"'
    assert MYSQL.quote_ident("x") == "`x`"
    assert dialect_for("duckdb") is DUCKDB


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
def test_a_qualified_table_name_is_quoted_part_by_part(dialect: Dialect) -> None:
    q = dialect.quote_char
    assert dialect.quote_table("sales.orders") == f"{q}sales{q}.{q}orders{q}"
    assert dialect.quote_table("orders") == f"{q}orders{q}"
    assert split_table_name("db.sales.orders") == ("db", "sales", "orders")


@pytest.mark.parametrize("dialect", DIALECTS, ids=lambda d: d.name)
@pytest.mark.parametrize("name", ["", "nul\x00byte"])
def test_an_empty_name_or_a_nul_is_refused_with_a_fix(dialect: Dialect, name: str) -> None:
    with pytest.raises(IdentifierError) as err:
        dialect.quote_ident(name)
    assert isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)
    assert err.value.details[0].fix


@pytest.mark.parametrize("name", ["", ".orders", "sales.", "a..b"])
def test_a_table_name_with_an_empty_part_is_refused(name: str) -> None:
    with pytest.raises(IdentifierError, match="table name") as err:
        POSTGRESQL.quote_table(name)
    assert "schema.table" in err.value.details[0].fix


@pytest.mark.parametrize("name", ["emoji😀", "trailing "])
def test_names_mariadb_cannot_hold_are_refused_before_reaching_it(name: str) -> None:
    with pytest.raises(IdentifierError, match="MariaDB/MySQL") as err:
        MYSQL.quote_ident(name)
    assert "rename" in err.value.details[0].fix
    assert POSTGRESQL.quote_ident(name).startswith('"')  # the others hold them


# -- against the real databases ---------------------------------------------------------------

Run = Callable[[str], Awaitable[list[tuple[Any, ...]]]]


@pytest_asyncio.fixture(params=["postgresql", "mysql", "sqlite", "duckdb"], loop_scope="function")
async def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Dialect, Run]]:
    """A scratch schema, database or file of one dialect, and a function running SQL in it."""
    name = f"q_{uuid.uuid4().hex[:10]}"
    kind: str = request.param
    if kind == "postgresql":
        conn = await connect_postgresql(parse_database_url("postgresql://postgres@127.0.0.1/test"))
        await conn.execute(f'CREATE SCHEMA "{name}"')
        await conn.execute(f'SET search_path TO "{name}"')

        async def run_pg(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in await conn.fetch(sql)]

        try:
            yield POSTGRESQL, run_pg
        finally:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
            await conn.close()
    elif kind == "mysql":
        conn = await connect_mysql(
            parse_database_url("mysql://root@127.0.0.1:3306/mysql"), autocommit=True
        )
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            await cur.execute(f"USE `{name}`")

        async def run_my(sql: str) -> list[tuple[Any, ...]]:
            async with conn.cursor() as cur:
                await cur.execute(sql)
                return [tuple(r) for r in await cur.fetchall()]

        try:
            yield MYSQL, run_my
        finally:
            await run_my(f"DROP DATABASE `{name}`")
            conn.close()
    elif kind == "sqlite":
        lite = connect_sqlite(parse_database_url(f"sqlite:///{tmp_path}/{name}.db"))

        async def run_lite(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in lite.execute(sql).fetchall()]

        try:
            yield SQLITE, run_lite
        finally:
            lite.close()
    else:
        import duckdb

        duck = duckdb.connect()

        async def run_duck(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in duck.execute(sql).fetchall()]

        try:
            yield DUCKDB, run_duck
        finally:
            duck.close()


async def test_hostile_names_stay_one_identifier_in_every_database(
    database: tuple[Dialect, Run],
) -> None:
    dialect, run = database
    q = dialect.quote_ident
    table = q('tab"le `x` ü.名')
    columns = ", ".join(f"{q(n)} INTEGER" for n in HOSTILE)
    await run(f"CREATE TABLE {table} ({columns})")
    values = ", ".join(str(i) for i in range(len(HOSTILE)))
    await run(f"INSERT INTO {table} VALUES ({values})")
    for i, name in enumerate(HOSTILE):
        assert await run(f"SELECT {q(name)} FROM {table}") == [(i,)], name
    # A dotted name is one identifier; a qualified one is two.
    assert await run(f"SELECT t.{q('dot.ted')} FROM {table} AS t") == [(HOSTILE.index("dot.ted"),)]


async def test_a_name_with_sql_after_its_quote_cannot_end_the_identifier(
    database: tuple[Dialect, Run],
) -> None:
    dialect, run = database
    qc = dialect.quote_char
    sneaky = f"x{qc}; DROP TABLE keep; --"
    await run(f"CREATE TABLE keep ({dialect.quote_ident(sneaky)} INTEGER)")
    await run("INSERT INTO keep VALUES (1)")
    assert await run(f"SELECT {dialect.quote_ident(sneaky)} FROM keep") == [(1,)]
