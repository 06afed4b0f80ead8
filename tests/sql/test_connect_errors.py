"""How driver errors are sorted: a refused login is permanent and points at the credentials
whatever the driver; a connection lost mid-way says so, and is permanent inside a transaction."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog
from quiver.runtime.errors import PermanentError, RetryableError
from quiver.sql.connect import (
    connect_adbc,
    connect_mysql,
    connect_mysql_bulk,
    connect_postgresql,
    database_error,
    open_postgresql_pool,
)
from quiver.sql.url import parse_database_url

PG = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL = "mysql://root@127.0.0.1:3306/mysql"


PASSWORD = "right-pw"


@pytest.fixture(scope="module")
def password_postgresql() -> Iterator[str]:
    """A private PostgreSQL server that checks passwords (scram-sha-256) on a free port: the
    shared server of this machine trusts every local login, so it cannot refuse a password.
    Yields its URL with the right password."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("needs PostgreSQL's initdb and pg_ctl")
    as_root = os.geteuid() == 0  # the server refuses to run as root: run it as postgres
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    folder = Path(tempfile.mkdtemp(prefix="quiver-pgauth-"))
    if as_root:
        shutil.chown(folder, "postgres")
    (folder / "pw").write_text(PASSWORD + "\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = folder / "data"
    subprocess.run(
        [
            *run_as,
            initdb,
            "-N",
            "-A",
            "scram-sha-256",
            "--pwfile",
            str(folder / "pw"),
            "-U",
            "postgres",
            "-D",
            str(data),
        ],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


async def _asyncpg_pool(url: str) -> Any:
    return await open_postgresql_pool(parse_database_url(url), min_size=1, max_size=1)


async def _close(conn: Any) -> None:
    result = conn.close()
    if asyncio.iscoroutine(result):
        await result


@pytest.mark.parametrize(
    "opener",
    [
        pytest.param(lambda url: _adbc(url), id="adbc"),
        pytest.param(lambda url: _asyncpg(url), id="asyncpg"),
        pytest.param(lambda url: _asyncpg_pool(url), id="asyncpg-pool"),
    ],
)
async def test_a_wrong_postgresql_password_is_refused_at_once_pointing_at_the_credentials(
    opener: Any, password_postgresql: str
) -> None:
    wrong = password_postgresql.replace(PASSWORD, "wrong-pw")
    with pytest.raises(PermanentError) as err:
        await opener(wrong)
    detail = err.value.details[0]
    assert "refused the credentials" in detail.message
    assert "password authentication failed" in detail.message
    assert "user and password" in detail.fix and "server is running" not in detail.fix
    assert "wrong-pw" not in str(err.value) and "***" in detail.where
    await _close(await opener(password_postgresql))  # the right password gets in


async def test_a_pipeline_with_a_wrong_password_fails_without_a_single_retry(
    password_postgresql: str, tmp_path: Path
) -> None:
    wrong = password_postgresql.replace(PASSWORD, "wrong-pw")
    (tmp_path / "in.csv").write_text("id\n1\n")
    (tmp_path / "pipeline.yaml").write_text(
        'source: {csv: {path: in.csv}}\nsink: {database: {url: "${DB}", table: t}}\n'
    )
    log = io.StringIO()
    spec = load_pipeline(tmp_path / "pipeline.yaml", {"DB": wrong}, environ={})
    with pytest.raises(PermanentError, match="refused the credentials"):
        await PipelineEngine(compile_plan(spec), log=RunLog("t", "json", stream=log)).run()
    assert "retrying" not in log.getvalue() and "wrong-pw" not in log.getvalue()


@pytest_asyncio.fixture(loop_scope="function")
async def pg_role_without_login() -> AsyncIterator[str]:
    """A PostgreSQL role that exists but may not log in: the server refuses it."""
    role = f"nologin_{uuid.uuid4().hex[:8]}"
    admin = await connect_postgresql(parse_database_url(PG))
    await admin.execute(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        yield role
    finally:
        await admin.execute(f'DROP ROLE "{role}"')
        await admin.close()


@pytest_asyncio.fixture(loop_scope="function")
async def mysql_user_with_password() -> AsyncIterator[str]:
    """A MariaDB user whose password is ``right-pw``."""
    user = f"pw_{uuid.uuid4().hex[:8]}"
    admin = await connect_mysql(parse_database_url(MYSQL), autocommit=True)
    async with admin.cursor() as cur:
        await cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'right-pw'")
    try:
        yield user
    finally:
        async with admin.cursor() as cur:
            await cur.execute(f"DROP USER '{user}'@'%'")
        admin.close()


async def _adbc(url: str) -> Any:
    return await asyncio.to_thread(connect_adbc, parse_database_url(url))


async def _asyncpg(url: str) -> Any:
    return await connect_postgresql(parse_database_url(url))


@pytest.mark.parametrize("opener", [_adbc, _asyncpg], ids=["adbc", "asyncpg"])
async def test_a_role_that_may_not_log_in_is_refused_at_once_pointing_at_the_credentials(
    opener: Any, pg_role_without_login: str
) -> None:
    url = PG.replace("//postgres@", f"//{pg_role_without_login}:s3cret-pw@")
    with pytest.raises(PermanentError) as err:
        await opener(url)
    detail = err.value.details[0]
    assert "refused the credentials" in detail.message
    assert "not permitted to log in" in detail.message
    assert "user and password" in detail.fix and "server is running" not in detail.fix
    assert "s3cret-pw" not in str(err.value) and "***" in detail.where


async def _asyncmy(url: str) -> Any:
    return await connect_mysql(parse_database_url(url))


async def _pymysql(url: str) -> Any:
    return await asyncio.to_thread(connect_mysql_bulk, parse_database_url(url))


@pytest.mark.parametrize("opener", [_asyncmy, _pymysql], ids=["asyncmy", "pymysql"])
async def test_a_wrong_mariadb_password_is_refused_pointing_at_the_credentials(
    opener: Any, mysql_user_with_password: str
) -> None:
    url = MYSQL.replace("//root@", f"//{mysql_user_with_password}:wrong-pw@").replace(
        "/mysql",
        "/information_schema",  # a database every user may open
    )
    with pytest.raises(PermanentError) as err:
        await opener(url)
    detail = err.value.details[0]
    assert "refused the credentials" in detail.message
    assert "user and password" in detail.fix
    assert "wrong-pw" not in str(err.value) and "***" in detail.where
    conn = await opener(url.replace("wrong-pw", "right-pw"))  # the right one gets in
    conn.close()


async def _terminated_postgresql_error() -> BaseException:
    """The error asyncpg raises on a connection the server terminated."""
    url = parse_database_url(PG)
    victim = await connect_postgresql(url)
    admin = await connect_postgresql(url)
    try:
        pid = await victim.fetchval("SELECT pg_backend_pid()")
        await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        await asyncio.sleep(0.1)
        with pytest.raises(Exception) as err:
            await victim.fetchval("SELECT 1")
        return err.value
    finally:
        await admin.close()
        victim.terminate()


async def _killed_mariadb_error() -> BaseException:
    """The error asyncmy raises on a connection MariaDB killed."""
    url = parse_database_url(MYSQL)
    victim = await connect_mysql(url, autocommit=True)
    admin = await connect_mysql(url, autocommit=True)
    try:
        async with victim.cursor() as cur:
            await cur.execute("SELECT CONNECTION_ID()")
            (victim_id,) = await cur.fetchone()
        async with admin.cursor() as cur:
            await cur.execute(f"KILL {victim_id}")
        with pytest.raises(Exception) as err:
            async with victim.cursor() as cur:
                await cur.execute("SELECT 1")
        return err.value
    finally:
        admin.close()
        victim.close()


@pytest.mark.parametrize(
    ("url", "lose"),
    [(PG, _terminated_postgresql_error), (MYSQL, _killed_mariadb_error)],
    ids=["postgresql", "mariadb"],
)
async def test_a_lost_connection_says_so_and_is_permanent_inside_a_transaction(
    url: str, lose: Any
) -> None:
    exc = await lose()
    where = parse_database_url(url.replace("@", ":pw@"))

    outside = database_error(exc, where, "reading rows")
    assert isinstance(outside, RetryableError)  # a fresh connection may read again
    assert "connection to the database was lost while reading rows" in outside.details[0].message
    assert outside.details[0].where == where.redacted() and "pw@" not in str(outside)

    inside = database_error(exc, where, "loading rows", in_transaction=True)
    assert isinstance(inside, PermanentError)  # the transaction is gone with the connection
    assert "rolled back" in inside.details[0].message
    assert "nothing was written" in inside.details[0].fix


async def test_a_deadlock_inside_a_transaction_is_permanent_and_says_to_run_again() -> None:
    """Two real transactions waiting on each other's row: the server picks one to fail."""
    url = parse_database_url(PG)
    table = f"deadlock_{uuid.uuid4().hex[:8]}"
    a, b = await connect_postgresql(url), await connect_postgresql(url)
    try:
        await a.execute(f"CREATE TABLE {table} (id int primary key, n int)")
        await a.execute(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        await a.execute(f"UPDATE {table} SET n = 1 WHERE id = 1")
        await b.execute(f"UPDATE {table} SET n = 1 WHERE id = 2")
        results = await asyncio.gather(
            a.execute(f"UPDATE {table} SET n = 2 WHERE id = 2"),
            b.execute(f"UPDATE {table} SET n = 2 WHERE id = 1"),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        assert len(failures) == 1, results
        await ta.rollback()
        await tb.rollback()
    finally:
        await a.execute(f"DROP TABLE IF EXISTS {table}")
        await a.close()
        await b.close()

    outside = database_error(failures[0], url, "writing")
    assert isinstance(outside, RetryableError)
    inside = database_error(failures[0], url, "loading rows", in_transaction=True)
    assert isinstance(inside, PermanentError)
    assert "deadlock" in inside.details[0].message and "rolled back" in inside.details[0].message
    assert "run the pipeline again" in inside.details[0].fix
    assert "server is running" not in inside.details[0].fix
