"""Every database connection Quiver opens, for every dialect, and what its failures mean.

* :func:`open_postgresql_pool`, :func:`open_mysql_pool`: asyncpg / asyncmy pools (the GraphQL
  engine's executor, :mod:`quiver.sql.database`).
* :func:`connect_postgresql`, :func:`connect_mysql`: one asyncpg / asyncmy connection.
* :func:`connect_adbc`: an ADBC DB-API connection to PostgreSQL or SQLite, which reads and
  writes Arrow batches directly (the pipeline's database source and sink).
* :func:`connect_sqlite`: a ``sqlite3`` DB-API connection.
* :func:`connect_mysql_bulk`: a PyMySQL DB-API connection that can ``LOAD DATA LOCAL INFILE``
  (the pipeline's database sink).

Each raises a typed error when the database cannot be reached or refuses the connection, and
:func:`database_error` sorts any driver exception the same way:

* :class:`RetryableError`: the server is unreachable, a timeout, the connection dropped, the
  server is starting up or out of connections, a deadlock or serialization failure;
* :class:`PermanentError`: refused credentials, an unknown database, a missing SQLite file, bad
  SQL, a missing table. Retrying cannot help; the message says which, with the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

from quiver.runtime.errors import ConfigError, PermanentError, QuiverError, RetryableError
from quiver.sql.sqlite_driver import sqlite3
from quiver.sql.url import DatabaseUrl

__all__ = [
    "CONNECT_TIMEOUT_S",
    "connect_adbc",
    "connect_duckdb",
    "connect_mysql",
    "connect_mysql_bulk",
    "connect_postgresql",
    "connect_sqlite",
    "connection_lost",
    "database_error",
    "open_mysql_pool",
    "open_postgresql_pool",
    "sqlite_path",
]

#: Seconds to wait for a server to accept a connection.
CONNECT_TIMEOUT_S = 10.0

_SERVER_FIX = "check that the server is running and that the host and port in the URL are right"
_LOST_FIX = (
    "check why the server ended the connection (a restart, a killed session, a network "
    "timeout), then run again"
)
_RERUN_FIX = (
    "nothing was written: check why the server ended the connection (a restart, a killed "
    "session, a network timeout), then run the pipeline again"
)
_BUSY_RERUN_FIX = (
    "nothing was written: run the pipeline again once the database is available (a deadlock, "
    "lock wait or serialization failure clears on its own)"
)
_CREDENTIALS_FIX = "check the user and password in the URL (or the ${VAR} it reads them from)"
_DATABASE_FIX = "create the database, or fix its name in the URL"
_SQL_FIX = "check the table and column names and the SQL against the database"
_SQLITE_FIX = "check the path in sqlite:///relative.db or sqlite:////absolute/path.db"


# -- opening ----------------------------------------------------------------------------------


async def open_postgresql_pool(
    url: DatabaseUrl,
    *,
    min_size: int,
    max_size: int,
    init: Callable[[Any], Awaitable[None]] | None = None,
    reset: Callable[[Any], Awaitable[None]] | None = None,
    server_settings: Mapping[str, str] | None = None,
) -> Any:
    """An asyncpg pool of ``min_size``..``max_size`` connections (``asyncpg.Pool``)."""
    import asyncpg

    args = _postgresql_args(url, server_settings)
    try:
        return await asyncpg.create_pool(
            **args,
            min_size=min(min_size, max_size),
            max_size=max_size,
            init=init,
            reset=reset,
        )
    except Exception as exc:
        raise _connect_error(exc, url) from exc


async def connect_postgresql(
    url: DatabaseUrl, *, server_settings: Mapping[str, str] | None = None
) -> Any:
    """One asyncpg connection (``asyncpg.Connection``)."""
    import asyncpg

    args = _postgresql_args(url, server_settings)
    try:
        return await asyncpg.connect(**args)
    except Exception as exc:
        raise _connect_error(exc, url) from exc


#: sslmode values, as libpq spells them (asyncpg takes the same words).
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def _postgresql_args(url: DatabaseUrl, server_settings: Mapping[str, str] | None) -> dict[str, Any]:
    """asyncpg's arguments for ``url``, its options (``?sslmode=require``) applied; an option
    it cannot apply is an error, never a setting silently dropped (TLS not required, ...)."""
    args: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.user or None,
        "password": url.password or None,
        "database": url.database,
        "timeout": CONNECT_TIMEOUT_S,
        "server_settings": {"application_name": "quiver", **(server_settings or {})},
    }
    for key, value in url.options:
        if key == "sslmode" and value in _SSL_MODES:
            args["ssl"] = value
        elif key == "application_name":
            args["server_settings"]["application_name"] = value
        elif key == "connect_timeout" and value.isdigit() and int(value) > 0:
            args["timeout"] = float(value)
        else:
            raise _unapplied_option(
                key, value, url, f"sslmode ({', '.join(_SSL_MODES)}), application_name"
            )
    return args


def _unapplied_option(key: str, value: str, url: DatabaseUrl, known: str) -> QuiverError:
    """The error of a URL option the connections cannot apply; ``known``: those they can,
    but for connect_timeout."""
    return ConfigError.one(
        f"the URL option {key}={value} is not one the server's connections apply",
        url.redacted(),
        f"give {known} or connect_timeout (seconds), or remove the option",
    )


async def open_mysql_pool(
    url: DatabaseUrl, *, min_size: int, max_size: int, session_sql: Sequence[str] = ()
) -> Any:
    """An asyncmy pool in autocommit mode; every connection first runs ``session_sql``."""
    import asyncmy

    try:
        return await asyncmy.create_pool(
            **_mysql_args(url),
            minsize=min(min_size, max_size),
            maxsize=max_size,
            autocommit=True,
            init_command="; ".join(session_sql) or None,
        )
    except Exception as exc:  # asyncmy raises OperationalError and plain OSError
        raise _connect_error(exc, url) from exc


async def connect_mysql(url: DatabaseUrl, *, autocommit: bool = False) -> Any:
    """One asyncmy connection (``asyncmy.Connection``), in a transaction unless ``autocommit``."""
    import asyncmy

    try:
        return await asyncmy.connect(**_mysql_args(url), autocommit=autocommit)
    except Exception as exc:
        raise _connect_error(exc, url) from exc


def connect_mysql_bulk(url: DatabaseUrl) -> Any:
    """A PyMySQL DB-API connection in a transaction that may send files the client wrote
    with ``LOAD DATA LOCAL INFILE`` (blocking: run it in a thread). The database sink loads
    through it; asyncmy cannot send local files."""
    import pymysql

    try:
        args = _mysql_args(url)
        args["database"] = args.pop("db")
        return pymysql.connect(**args, autocommit=False, local_infile=True)
    except Exception as exc:
        raise _connect_error(exc, url) from exc


#: ssl-mode values, as MySQL's and MariaDB's clients spell them (any case).
_MYSQL_SSL_MODES = ("DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


def _mysql_args(url: DatabaseUrl) -> dict[str, Any]:
    """asyncmy's (and PyMySQL's) arguments for ``url``, its options (``?ssl-mode=REQUIRED``)
    applied; an option they cannot apply is an error, never a setting silently dropped (TLS
    not required, ...)."""
    args: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.user or "root",
        "password": url.password,
        "db": url.database,
        "charset": "utf8mb4",
        "connect_timeout": CONNECT_TIMEOUT_S,
    }
    for key, value in url.options:
        name = key.lower().replace("_", "-")
        mode = value.upper().replace("-", "_")
        if name in ("ssl-mode", "sslmode") and mode in _MYSQL_SSL_MODES:
            if mode != "DISABLED":
                args["ssl"] = _mysql_tls(mode)
        elif name == "ssl" and value.lower() in ("true", "1", "false", "0"):
            if value.lower() in ("true", "1"):
                args["ssl"] = _mysql_tls("REQUIRED")
        elif name == "connect-timeout" and value.isdigit() and int(value) > 0:
            args["connect_timeout"] = float(value)
        else:
            raise _unapplied_option(
                key, value, url, f"ssl-mode ({', '.join(_MYSQL_SSL_MODES)}), ssl=true"
            )
    return args


def _mysql_tls(mode: str) -> Any:
    """The TLS context of an ssl-mode: REQUIRED encrypts without checking the certificate
    (as MySQL's client does), VERIFY_CA checks it against the system's authorities,
    VERIFY_IDENTITY also checks the host name."""
    import ssl

    context = ssl.create_default_context()
    if mode != "VERIFY_IDENTITY":
        context.check_hostname = False
    if mode == "REQUIRED":
        context.verify_mode = ssl.CERT_NONE
    return context


def connect_adbc(url: DatabaseUrl, base_dir: str = "", *, autocommit: bool = True) -> Any:
    """An ADBC DB-API connection to a PostgreSQL or SQLite URL (blocking: run it in a thread).

    A relative SQLite path is resolved against ``base_dir`` (a pipeline's folder).
    """
    try:
        if url.dialect == "sqlite":
            import adbc_driver_sqlite.dbapi as sqlite_dbapi

            return sqlite_dbapi.connect(sqlite_path(url, base_dir), autocommit=autocommit)
        if url.dialect != "postgresql":
            raise PermanentError.one(
                f"ADBC connects to PostgreSQL and SQLite, not {url.dialect}",
                url.redacted(),
                "use connect_mysql for MariaDB/MySQL",
            )
        import adbc_driver_postgresql.dbapi as pg_dbapi

        return pg_dbapi.connect(_postgresql_uri(url), autocommit=autocommit)
    except Exception as exc:
        raise _connect_error(exc, url) from exc


def _postgresql_uri(url: DatabaseUrl) -> str:
    auth = ""
    if url.user:
        auth = quote(url.user, safe="")
        if url.password:
            auth += ":" + quote(url.password, safe="")
        auth += "@"
    options = [*url.options]
    if not any(k == "connect_timeout" for k, _ in options):
        options.append(("connect_timeout", f"{CONNECT_TIMEOUT_S:g}"))
    query = "&".join(f"{quote(k)}={quote(v)}" for k, v in options)
    return f"postgresql://{auth}{url.host}:{url.port}/{quote(url.database, safe='')}?{query}"


def sqlite_path(url: DatabaseUrl, base_dir: str = "") -> str:
    """The SQLite file of ``url``; a relative path is resolved against ``base_dir``."""
    path = url.database
    if base_dir and path != ":memory:" and not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return path


def connect_duckdb() -> Any:
    """A new in-memory DuckDB database (``duckdb.DuckDBPyConnection``), private to its caller:
    the pipeline's SQL steps run their queries over Arrow batches in one."""
    import duckdb

    return duckdb.connect()


def connect_sqlite(
    url: DatabaseUrl,
    base_dir: str = "",
    *,
    mode: Literal["ro", "rw", "rwc"] = "rwc",
    isolation_level: Literal["DEFERRED", "IMMEDIATE", "EXCLUSIVE"] | None = "DEFERRED",
    check_same_thread: bool = True,
) -> sqlite3.Connection:
    """A ``sqlite3`` connection: ``ro`` reads an existing file, ``rw`` also writes it, ``rwc``
    creates it when missing. ``isolation_level=None`` is autocommit.

    A read-only connection that finds the transaction of a writer that died mid-write (a hot
    rollback journal, a WAL index to rebuild) opens the file once for writing, which rolls
    that transaction back, then reads; when the file is not writable it fails saying so.
    """
    path = sqlite_path(url, base_dir)
    if mode != "rwc" and path != ":memory:" and not os.path.isfile(path):
        raise PermanentError.one(
            f"the SQLite file {path!r} does not exist", url.redacted(), _SQLITE_FIX
        )

    def open_file(open_mode: str) -> sqlite3.Connection:
        return sqlite3.connect(
            f"file:{quote(path)}?mode={open_mode}",
            uri=True,
            timeout=CONNECT_TIMEOUT_S,
            isolation_level=isolation_level,
            check_same_thread=check_same_thread,
        )

    try:
        conn = open_file(mode)
        if mode == "ro" and path != ":memory:" and not _sqlite_readable(conn):
            conn.close()
            _roll_back_crashed_write(url, path, open_file)
            conn = open_file(mode)
            _sqlite_readable(conn, recovered=True)
        return conn
    except sqlite3.Error as exc:
        raise _connect_error(exc, url) from exc


#: The primary result code of every "attempt to write a readonly database" (its extended
#: codes: a hot rollback journal, a WAL index to rebuild, a lock the connection cannot take).
_SQLITE_READONLY = 8


def _sqlite_readable(conn: sqlite3.Connection, *, recovered: bool = False) -> bool:
    """Whether a read-only connection can read: ``False`` when its first read needs a write
    (a writer died mid-transaction and left a hot journal or a WAL index to rebuild). Any
    other failure (not a database, say) is left to the caller's first statement."""
    try:
        conn.execute("PRAGMA schema_version").fetchone()
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF != _SQLITE_READONLY:
            return True
        if recovered:
            conn.close()
            raise
        return False
    return True


def _roll_back_crashed_write(
    url: DatabaseUrl, path: str, open_file: Callable[[str], sqlite3.Connection]
) -> None:
    """Open ``path`` once for writing so that SQLite rolls back the transaction of a writer
    that died mid-write; a clear error when the file or its folder is not writable."""
    folder = os.path.dirname(os.path.abspath(path))
    journal = next(
        (path + s for s in ("-journal", "-wal") if os.path.exists(path + s)), path + "-journal"
    )
    what = (
        f"a process that wrote the SQLite file {path!r} died in the middle of a transaction and "
        f"left {os.path.basename(journal)!r} behind; a read-only connection cannot roll it back"
    )
    fix = (
        f"open the file once with write access to roll the transaction back, e.g. run "
        f"sqlite3 {path} 'pragma integrity_check' as the owner of the file and of {folder!r}, "
        "then run again"
    )
    if not (os.access(path, os.W_OK) and os.access(folder, os.W_OK)):
        raise PermanentError.one(
            f"{what}, and this process may not write the file or its folder", url.redacted(), fix
        )
    try:
        writer = open_file("rw")
        try:
            writer.execute("PRAGMA schema_version").fetchone()
        finally:
            writer.close()
    except sqlite3.Error as exc:
        raise PermanentError.one(
            f"{what}, and opening it for writing failed: {_first_line(exc)}", url.redacted(), fix
        ) from exc


# -- what a failure means ---------------------------------------------------------------------

#: MariaDB/MySQL error codes of connection trouble, lock waits and deadlocks.
_MYSQL_TRANSIENT = {1040, 1053, 1205, 1213, 1927, 2002, 2003, 2005, 2006, 2013}
#: ... of a connection that was open and is gone: server gone away, lost during a query,
#: killed (MariaDB's 1927), server shutdown; asyncmy says ``(0, 'Not connected')`` or
#: ``(0, '')`` once its socket is closed.
_MYSQL_LOST = {1053, 1927, 2006, 2013}
_MYSQL_CREDENTIALS = {1044, 1045, 1698}
_MYSQL_UNKNOWN_DATABASE = 1049

#: SQLSTATE classes and codes worth retrying: connection exceptions, insufficient resources,
#: operator intervention (shutdown, "cannot connect now"), serialization failure, deadlock.
_SQLSTATE_TRANSIENT_CLASSES = ("08", "53")
_SQLSTATE_TRANSIENT = {"57P01", "57P02", "57P03", "40001", "40P01"}

#: libpq's connection failures carry no SQLSTATE through ADBC: recognised by their text.
_LIBPQ_UNKNOWN_DATABASE = re.compile(r'database "[^"]*" does not exist')
_LIBPQ_CREDENTIALS = re.compile(
    r'password authentication failed|role "[^"]*" does not exist|no pg_hba\.conf entry'
    r"|authentication failed|password is required|no password supplied"
    r"|is not permitted to log in"
)
#: ... and a connection that was open and is gone (terminated, server restarted).
_LIBPQ_LOST = re.compile(
    r"server closed the connection unexpectedly|terminating connection"
    r"|no connection to the server|connection to server was lost|could not receive data"
    r"|could not send data|SSL SYSCALL error"
)


def database_error(
    exc: BaseException, url: DatabaseUrl, doing: str, *, in_transaction: bool = False
) -> QuiverError:
    """Map a driver exception raised while ``doing`` something onto a typed Quiver error.

    Connection trouble becomes a :class:`RetryableError`; refused credentials (a wrong user or
    password, a role that may not log in), an unknown database and bad SQL a
    :class:`PermanentError` that says how to fix it. Quiver errors pass through unchanged.
    Messages name the URL with its password hidden.

    A connection that was open and is gone says so ("the connection ... was lost"). With
    ``in_transaction`` the caller's transaction went with it: retrying the statement on that
    connection cannot work and would lose the earlier rows, so every failure is permanent and
    a lost connection says that nothing was written.
    """
    if isinstance(exc, QuiverError):
        return exc
    where = url.redacted()
    text = _first_line(exc)
    sqlstate = str(getattr(exc, "sqlstate", None) or "")
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    libpq = not sqlstate and code is None  # a failed connect through ADBC: only its text
    if connection_lost(exc):
        if in_transaction:
            return PermanentError.one(
                f"the connection to the database was lost while {doing} ({text}); the "
                "transaction was rolled back",
                where,
                _RERUN_FIX,
            )
        return RetryableError.one(
            f"the connection to the database was lost while {doing}: {text}", where, _LOST_FIX
        )
    if (
        code == _MYSQL_UNKNOWN_DATABASE
        or sqlstate == "3D000"
        or (libpq and _LIBPQ_UNKNOWN_DATABASE.search(text))
    ):
        return PermanentError.one(
            f"database {url.database!r} does not exist ({doing}): {text}", where, _DATABASE_FIX
        )
    if (
        code in _MYSQL_CREDENTIALS
        or sqlstate.startswith("28")
        or (libpq and _LIBPQ_CREDENTIALS.search(text))
    ):
        return PermanentError.one(
            f"the database refused the credentials while {doing}: {text}", where, _CREDENTIALS_FIX
        )
    if doing == "connecting" and _TLS_FAILURE.search(text):
        return PermanentError.one(f"the database connection's TLS failed: {text}", where, _TLS_FIX)
    if _is_transient(exc, url, text, sqlstate, code):
        if in_transaction:
            return PermanentError.one(
                f"database unavailable while {doing}: {text}; the transaction was rolled back",
                where,
                _BUSY_RERUN_FIX,
            )
        return RetryableError.one(f"database unavailable while {doing}: {text}", where, _SERVER_FIX)
    return PermanentError.one(f"database error while {doing}: {text}", where, _SQL_FIX)


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says that a connection which was open is gone (killed, terminated,
    the server restarted or went away), as opposed to one that could not be opened."""
    if isinstance(exc, QuiverError):
        return False
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code in _MYSQL_LOST:
        return True
    text = str(exc)
    if code == 0 and type(exc).__name__ in ("InterfaceError", "OperationalError"):
        return True  # asyncmy on a connection it already found closed
    sqlstate = str(getattr(exc, "sqlstate", None) or "")
    if sqlstate in ("57P01", "57P02", "08006", "08003", "08007"):
        return True  # terminated by an administrator, crash, connection failure / gone
    name = type(exc).__name__
    if name in ("ConnectionDoesNotExistError", "InterfaceError") and "closed" in text:
        return True  # asyncpg
    return bool(_LIBPQ_LOST.search(text))


#: What a driver says when the TLS the URL asks for fails: a server without TLS on that port,
#: or a certificate that fails the check.
_TLS_FAILURE = re.compile(r"\bSSL\b|\bTLS\b|certificate", re.IGNORECASE)
_TLS_FIX = (
    "the URL asks for TLS (sslmode= or ssl-mode=): enable TLS on the database server, or give "
    "the URL the mode the server allows (a certificate check needs the server's certificate "
    "signed by an authority this system trusts)"
)


def _connect_error(exc: BaseException, url: DatabaseUrl) -> QuiverError:
    if url.dialect == "sqlite" and not isinstance(exc, QuiverError):
        return PermanentError.one(
            f"cannot open the SQLite file {url.database!r}: {_first_line(exc)}",
            url.redacted(),
            _SQLITE_FIX,
        )
    return database_error(exc, url, "connecting")


def _is_transient(
    exc: BaseException, url: DatabaseUrl, text: str, sqlstate: str, code: int | None
) -> bool:
    if url.dialect == "sqlite":  # no server to lose: only a lock held by another writer passes
        return "database is locked" in text or "busy" in text.lower()
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return True
    if code in _MYSQL_TRANSIENT:
        return True
    if sqlstate in _SQLSTATE_TRANSIENT or sqlstate.startswith(_SQLSTATE_TRANSIENT_CLASSES):
        return True
    # ADBC and asyncpg report a failed connect as an OperationalError without a code.
    return type(exc).__name__ == "OperationalError" and (code is None or "connect" in text.lower())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError) and not text:
        return f"no answer within {CONNECT_TIMEOUT_S:g}s"
    return text.splitlines()[0] if text else type(exc).__name__
