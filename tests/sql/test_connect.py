"""Opening connections for every dialect, and what a failure to connect says."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import pytest

from quiver.runtime.errors import PermanentError, QuiverError, RetryableError
from quiver.sql.connect import (
    connect_adbc,
    connect_mysql,
    connect_postgresql,
    connect_sqlite,
    database_error,
    open_mysql_pool,
    open_postgresql_pool,
)
from quiver.sql.database import open_database
from quiver.sql.sqlite_driver import sqlite3
from quiver.sql.url import DatabaseUrl, parse_database_url
from tests.conftest import create_empty_database, drop_database

PG = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL = "mysql://root@127.0.0.1:3306/mysql"


def url(text: str) -> DatabaseUrl:
    return parse_database_url(text)


async def _adbc(u: DatabaseUrl) -> Any:
    return connect_adbc(u)


async def _pg_pool(u: DatabaseUrl) -> Any:
    return await open_postgresql_pool(u, min_size=1, max_size=1)


async def _mysql_pool(u: DatabaseUrl) -> Any:
    return await open_mysql_pool(u, min_size=1, max_size=1)


async def _close(conn: Any) -> None:
    result = conn.close()
    if isinstance(result, Awaitable):
        await result
    if hasattr(conn, "wait_closed"):
        await conn.wait_closed()


Opener = Callable[[DatabaseUrl], Awaitable[Any]]

#: Every way to reach a server, with the dialect it speaks.
SERVER_OPENERS: list[tuple[str, str, Opener]] = [
    ("asyncpg", "postgresql", connect_postgresql),
    ("asyncpg pool", "postgresql", _pg_pool),
    ("adbc", "postgresql", _adbc),
    ("asyncmy", "mysql", connect_mysql),
    ("asyncmy pool", "mysql", _mysql_pool),
]
SERVER_URLS = {"postgresql": PG, "mysql": MYSQL}
ids = [name for name, _, _ in SERVER_OPENERS]


@pytest.mark.parametrize(("name", "dialect", "opener"), SERVER_OPENERS, ids=ids)
async def test_each_server_driver_opens_a_connection(
    name: str, dialect: str, opener: Opener
) -> None:
    conn = await opener(url(SERVER_URLS[dialect]))
    await _close(conn)


@pytest.mark.parametrize(("name", "dialect", "opener"), SERVER_OPENERS, ids=ids)
async def test_an_unreachable_port_is_retryable_and_says_what_to_check(
    name: str, dialect: str, opener: Opener
) -> None:
    target = url(SERVER_URLS[dialect].replace(":5432/", ":1/").replace(":3306/", ":1/"))
    with pytest.raises(RetryableError) as err:
        await opener(target)
    detail = err.value.details[0]
    assert "unavailable while connecting" in detail.message
    assert "server is running" in detail.fix and "port" in detail.fix
    assert detail.where == target.redacted()


@pytest.mark.parametrize(("name", "dialect", "opener"), SERVER_OPENERS, ids=ids)
async def test_a_wrong_database_name_is_permanent_and_names_the_database(
    name: str, dialect: str, opener: Opener
) -> None:
    target = url(SERVER_URLS[dialect].rsplit("/", 1)[0] + "/no_such_db_quiver")
    with pytest.raises(PermanentError) as err:
        await opener(target)
    detail = err.value.details[0]
    assert "'no_such_db_quiver' does not exist" in detail.message
    assert "create the database" in detail.fix


@pytest.mark.parametrize(("name", "dialect", "opener"), SERVER_OPENERS, ids=ids)
async def test_an_unknown_user_is_permanent_and_points_at_the_credentials(
    name: str, dialect: str, opener: Opener
) -> None:
    user = "//root@" if dialect == "mysql" else "//postgres@"
    target = url(SERVER_URLS[dialect].replace(user, "//nobody_quiver:s3cret@"))
    with pytest.raises(PermanentError) as err:
        await opener(target)
    detail = err.value.details[0]
    assert "refused the credentials" in detail.message
    assert "user and password" in detail.fix
    assert "s3cret" not in str(err.value)
    assert "***" in detail.where


def test_sqlite_opens_through_adbc_and_sqlite3(tmp_path: Path) -> None:
    target = url("sqlite:///data.db")
    conn = connect_sqlite(target, str(tmp_path))
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.commit()
    conn.close()
    adbc = connect_adbc(target, str(tmp_path))
    cur = adbc.cursor()
    cur.execute("SELECT count(*) FROM t")
    assert cur.fetchone() == (0,)
    cur.close()
    adbc.close()
    assert (tmp_path / "data.db").is_file()


def test_a_missing_sqlite_file_is_permanent_when_it_may_not_be_created(tmp_path: Path) -> None:
    with pytest.raises(PermanentError) as err:
        connect_sqlite(url("sqlite:///missing.db"), str(tmp_path), mode="ro")
    assert "does not exist" in err.value.details[0].message
    assert "sqlite:///" in err.value.details[0].fix
    assert not (tmp_path / "missing.db").exists()


def test_a_sqlite_file_in_a_missing_folder_is_permanent(tmp_path: Path) -> None:
    target = url("sqlite:///no/such/folder/x.db")
    with pytest.raises(PermanentError, match="cannot open the SQLite file"):
        connect_adbc(target, str(tmp_path))
    with pytest.raises(PermanentError, match="cannot open the SQLite file"):
        connect_sqlite(target, str(tmp_path))


def test_a_relative_sqlite_path_is_resolved_against_the_base_folder(tmp_path: Path) -> None:
    connect_sqlite(url("sqlite:///here.db"), str(tmp_path)).close()
    assert (tmp_path / "here.db").is_file()


async def test_bad_sql_is_permanent_and_says_to_check_the_sql() -> None:
    target = url(PG)
    conn = await connect_postgresql(target)
    try:
        with pytest.raises(Exception) as raised:
            await conn.fetch("SELEC 1")
    finally:
        await conn.close()
    error = database_error(raised.value, target, "running the query")
    assert isinstance(error, PermanentError)
    assert "database error while running the query" in error.details[0].message
    assert "SQL" in error.details[0].fix


async def test_a_mysql_syntax_error_is_permanent() -> None:
    target = url(MYSQL)
    conn = await connect_mysql(target)
    try:
        with pytest.raises(Exception) as raised:
            async with conn.cursor() as cur:
                await cur.execute("SELEC 1")
    finally:
        conn.close()
    assert isinstance(database_error(raised.value, target, "querying"), PermanentError)


def test_quiver_errors_pass_through_the_mapping_unchanged() -> None:
    original = RetryableError.one("x")
    assert database_error(original, url(PG), "anything") is original


def test_a_sqlite_syntax_error_is_permanent(tmp_path: Path) -> None:
    conn = connect_sqlite(url("sqlite:///s.db"), str(tmp_path))
    try:
        with pytest.raises(sqlite3.Error) as raised:
            conn.execute("SELEC 1")
    finally:
        conn.close()
    assert isinstance(database_error(raised.value, url("sqlite:///s.db"), "q"), PermanentError)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("postgresql://postgres@127.0.0.1:1/test", RetryableError),
        ("mysql://root@127.0.0.1:1/test", RetryableError),
        ("postgresql://postgres@127.0.0.1:5432/no_such_db_quiver", PermanentError),
    ],
)
async def test_the_graphql_pools_open_through_the_same_errors(
    text: str, kind: type[QuiverError]
) -> None:
    with pytest.raises(kind):
        await open_database(text)


async def test_a_graphql_pool_on_a_missing_sqlite_file_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="does not exist"):
        await open_database(f"sqlite:///{tmp_path}/missing.db")


def test_each_duckdb_connection_is_a_database_of_its_own() -> None:
    from quiver.sql.connect import connect_duckdb

    first, second = connect_duckdb(), connect_duckdb()
    first.execute("CREATE TABLE t AS SELECT 42 AS answer")
    assert first.execute("SELECT answer FROM t").fetchall() == [(42,)]
    assert second.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 't'"
    ).fetchall() == [(0,)]


async def test_postgresql_url_options_are_applied_by_the_servers_connections() -> None:
    admin = await connect_postgresql(url(PG))
    try:
        server_ssl = await admin.fetchval("SHOW ssl")
    finally:
        await admin.close()
    conn = await connect_postgresql(url(f"{PG}?sslmode=disable&application_name=probe"))
    try:
        assert await conn.fetchval("SELECT current_setting('application_name')") == "probe"
        assert not await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await conn.close()
    if server_ssl == "off":  # TLS required of a server without it: refused, not plaintext
        with pytest.raises(PermanentError, match="TLS failed"):
            await connect_postgresql(url(f"{PG}?sslmode=require"))
    pool_url = url(f"{PG}?sslmode=disable&connect_timeout=3")
    pool = await open_postgresql_pool(pool_url, min_size=1, max_size=1)
    await pool.close()


@pytest.mark.parametrize("option", ["sslmode=bogus", "target_session_attrs=read-write"])
async def test_a_postgresql_url_option_the_connections_cannot_apply_is_refused(
    option: str,
) -> None:
    with pytest.raises(QuiverError, match=option.split("=")[0]):
        await connect_postgresql(url(f"{PG}?{option}"))
    with pytest.raises(QuiverError, match=option.split("=")[0]):
        await open_postgresql_pool(url(f"{PG}?{option}"), min_size=1, max_size=1)


async def test_mysql_url_options_are_applied_by_the_servers_connections() -> None:
    plain = await connect_mysql(url(f"{MYSQL}?ssl-mode=DISABLED&connect_timeout=3"))
    try:
        async with plain.cursor() as cur:
            await cur.execute("SHOW VARIABLES LIKE 'have_ssl'")
            (_, have_ssl) = await cur.fetchone()
            await cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            (_, cipher) = await cur.fetchone()
        assert cipher == ""
    finally:
        plain.close()
    if have_ssl != "YES":  # TLS required of a server without it: refused, not plaintext
        for option in ("ssl-mode=REQUIRED", "ssl=true", "ssl_mode=verify_identity"):
            with pytest.raises(PermanentError, match="TLS failed"):
                await connect_mysql(url(f"{MYSQL}?{option}"))
            with pytest.raises(PermanentError, match="TLS failed"):
                await open_mysql_pool(url(f"{MYSQL}?{option}"), min_size=1, max_size=1)


@pytest.mark.parametrize("option", ["ssl-mode=bogus", "foo=1", "charset=latin1"])
async def test_a_mysql_url_option_the_connections_cannot_apply_is_refused(option: str) -> None:
    with pytest.raises(QuiverError, match=option.split("=")[0]):
        await connect_mysql(url(f"{MYSQL}?{option}"))
    with pytest.raises(QuiverError, match=option.split("=")[0]):
        await open_mysql_pool(url(f"{MYSQL}?{option}"), min_size=1, max_size=1)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_the_readiness_check_fails_once_the_served_database_is_dropped(
    dialect: Literal["postgresql", "mysql"],
) -> None:
    """A pooled MariaDB connection answers SELECT 1 after its database was dropped: the
    check asks for the served database itself."""
    served = create_empty_database(dialect)
    db = await open_database(served, pool_min=1, pool_max=2)
    try:
        await db.ping()
        drop_database(served)
        with pytest.raises(QuiverError):
            await db.ping()
    finally:
        await db.close()
        drop_database(served)
