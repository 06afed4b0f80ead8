"""Database fixtures shared by every test: the Chinook demo database and empty databases.

Each pytest process (each xdist worker) makes its own databases with a random suffix and drops
them when it ends, even after a failure, so tests never see each other's data:

- ``chinook_sqlite`` (Path), ``chinook_postgresql`` / ``chinook_mysql`` (URL): the demo database,
  session-scoped and shared by the session's tests; treat it as read-only.
- ``chinook_db``: the same, parametrized over ``sqlite``, ``postgresql`` and ``mysql``, as a
  :class:`ChinookDb` whose ``query`` runs plain SQL through a driver Quiver does not use
  (sqlite3, psycopg 3, PyMySQL) so expectations are computed independently of Quiver.
- ``fresh_sqlite`` / ``fresh_postgresql`` / ``fresh_mysql``: the URL of a new, empty database for
  one test that writes.

The servers default to the local ones (``postgresql://postgres@127.0.0.1:5432/test``,
``mysql://root@127.0.0.1:3306/test``); ``QUIVER_TEST_POSTGRESQL_URL`` and
``QUIVER_TEST_MYSQL_URL`` point them elsewhere (the database named there is only used to
connect; the fixtures create their own).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import threading
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn
from urllib.parse import quote

import pytest

from quiver.demo import chinook
from quiver.sql.url import DatabaseUrl, parse_database_url

Dialect = Literal["sqlite", "postgresql", "mysql"]
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgresql", "mysql")

POSTGRESQL_ADMIN_URL = os.environ.get(
    "QUIVER_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
MYSQL_ADMIN_URL = os.environ.get("QUIVER_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")

# Every `quiver serve` a test starts also starts Arrow Flight: on an ephemeral port, so that
# servers started side by side (and a Quiver already serving on this machine) never contend
# for the default 8815. Tests of Flight's own port give it explicitly.
os.environ.setdefault("QUIVER_FLIGHT_PORT", "0")

#: How to start each local service when it is down.
START_COMMANDS = {
    "postgresql": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mysql": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


def _unique_name() -> str:
    return f"quiver_t_{uuid.uuid4().hex[:12]}"


def run_isolated(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` to completion in a thread of its own, clear of pytest-asyncio's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


def _service_down(name: str, db: DatabaseUrl, exc: Exception) -> NoReturn:
    reason = " ".join(str(exc).split())
    pytest.fail(
        f"{name} is not reachable at {db.host}:{db.port} ({reason}); "
        f"start it with: {START_COMMANDS[db.dialect]}",
        pytrace=False,
    )


def _with_database(admin: DatabaseUrl, database: str) -> str:
    auth = quote(admin.user, safe="") + (
        f":{quote(admin.password, safe='')}" if admin.password else ""
    )
    return f"{admin.dialect}://{auth}@{admin.host}:{admin.port}/{database}"


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def _pg_connect(db: DatabaseUrl) -> Any:
    import psycopg

    try:
        return psycopg.connect(
            host=db.host,
            port=db.port,
            user=db.user or None,
            password=db.password or None,
            dbname=db.database,
            autocommit=True,
            connect_timeout=5,
        )
    except psycopg.OperationalError as exc:
        error = exc
    _service_down("PostgreSQL", db, error)


def _pg_create() -> str:
    admin = parse_database_url(POSTGRESQL_ADMIN_URL)
    name = _unique_name()
    with _pg_connect(admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return _with_database(admin, name)


def _pg_drop(url: str) -> None:
    admin = parse_database_url(POSTGRESQL_ADMIN_URL)
    name = parse_database_url(url).database
    with _pg_connect(admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------
# MariaDB / MySQL
# --------------------------------------------------------------------------------------------


def _mysql_connect(db: DatabaseUrl, *, database: str | None = None) -> Any:
    import pymysql

    try:
        return pymysql.connect(
            host=db.host,
            port=db.port,
            user=db.user or "root",
            password=db.password,
            database=database,
            charset="utf8mb4",
            autocommit=True,
            connect_timeout=5,
        )
    except pymysql.err.OperationalError as exc:
        error = exc
    _service_down("MariaDB", db, error)


def _mysql_create() -> str:
    admin = parse_database_url(MYSQL_ADMIN_URL)
    name = _unique_name()
    with _mysql_connect(admin) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return _with_database(admin, name)


def _mysql_drop(url: str) -> None:
    admin = parse_database_url(MYSQL_ADMIN_URL)
    name = parse_database_url(url).database
    with _mysql_connect(admin) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.absolute()}"


def create_empty_database(dialect: Literal["postgresql", "mysql"]) -> str:
    """Create a new, empty database on the local server; returns its URL.

    For fixtures of a wider scope than ``fresh_*``; pair it with :func:`drop_database`.
    """
    return _pg_create() if dialect == "postgresql" else _mysql_create()


def drop_database(url: str) -> None:
    """Drop a database made by :func:`create_empty_database` (no error if it is gone)."""
    if parse_database_url(url).dialect == "postgresql":
        _pg_drop(url)
    else:
        _mysql_drop(url)


# --------------------------------------------------------------------------------------------
# The Chinook fixtures
# --------------------------------------------------------------------------------------------


@dataclass
class ChinookDb:
    """The Chinook database of one dialect, with an independent SQL connection.

    ``query`` takes the driver's own placeholders: ``?`` for SQLite, ``%s`` for PostgreSQL
    (psycopg) and MariaDB (PyMySQL). It runs in autocommit mode and is safe to call from
    several threads.
    """

    dialect: Dialect
    url: str
    _conn: Any = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def query(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            if self._conn is None:
                self._conn = self._connect()
            if self.dialect == "sqlite":
                return [tuple(r) for r in self._conn.execute(sql, tuple(params)).fetchall()]
            with self._conn.cursor() as cur:
                cur.execute(sql, tuple(params) if params else None)
                if cur.description is None:
                    return []
                return [tuple(r) for r in cur.fetchall()]

    def _connect(self) -> Any:
        db = parse_database_url(self.url)
        if self.dialect == "sqlite":
            return sqlite3.connect(db.database, isolation_level=None, check_same_thread=False)
        if self.dialect == "postgresql":
            return _pg_connect(db)
        return _mysql_connect(db, database=db.database)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


@pytest.fixture(scope="session")
def chinook_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite demo database, built for this session (a fraction of a second)."""
    return chinook.ensure_sqlite(tmp_path_factory.mktemp("chinook") / "chinook.sqlite")


@pytest.fixture(scope="session")
def chinook_postgresql() -> Iterator[str]:
    """URL of a new PostgreSQL database with the demo data loaded."""
    url = _pg_create()
    try:
        run_isolated(chinook.load_postgresql(url))
        yield url
    finally:
        _pg_drop(url)


@pytest.fixture(scope="session")
def chinook_mysql() -> Iterator[str]:
    """URL of a new MariaDB database with the demo data loaded."""
    url = _mysql_create()
    try:
        run_isolated(chinook.load_mysql(url))
        yield url
    finally:
        _mysql_drop(url)


@pytest.fixture(scope="session", params=DIALECTS)
def chinook_db(request: pytest.FixtureRequest) -> Iterator[ChinookDb]:
    """The demo database in each dialect in turn (test ids end in ``[sqlite]`` etc.)."""
    dialect: Dialect = request.param
    if dialect == "sqlite":
        url = _sqlite_url(request.getfixturevalue("chinook_sqlite"))
    else:
        url = request.getfixturevalue(f"chinook_{dialect}")
    db = ChinookDb(dialect, url)
    try:
        yield db
    finally:
        db.close()


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> str:
    """URL of a new, empty SQLite database file."""
    path = tmp_path / f"{_unique_name()}.sqlite"
    sqlite3.connect(path).close()
    return _sqlite_url(path)


@pytest.fixture
def fresh_postgresql() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    url = _pg_create()
    try:
        yield url
    finally:
        _pg_drop(url)


@pytest.fixture
def fresh_mysql() -> Iterator[str]:
    """URL of a new, empty MariaDB database, dropped after the test."""
    url = _mysql_create()
    try:
        yield url
    finally:
        _mysql_drop(url)
