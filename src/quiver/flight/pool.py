"""A small pool of blocking database connections for Flight streams.

PostgreSQL and SQLite connections are ADBC's (Arrow-native); MariaDB's are PyMySQL's. A first
connect costs a noticeable fraction of a second, so connections are kept between streams; one
whose stream ended early or failed is closed instead of returned, and a replacement is opened
in the background when none is left idle.

At most ``max_open`` connections are open at once (``flight.max_connections``): a stream that
finds them all in use waits up to ``wait_s`` for one (``flight.connection_timeout_ms``), then
is refused as retryable (Flight UNAVAILABLE) rather than opening one more, so that clients
reading many endpoints at once cannot use up the database's connections.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

from quiver.runtime.errors import RetryableError
from quiver.sql.connect import connect_adbc, connect_mysql_bulk
from quiver.sql.dialects import Dialect, dialect_for
from quiver.sql.url import DatabaseUrl

__all__ = ["ConnectionPool", "Lease", "flight_dialect"]

log = logging.getLogger("quiver.flight")


@dataclass
class Lease:
    """A connection lent to one stream; set ``broken`` to have it closed on release."""

    connection: Any
    broken: bool = False


def utf8_client(url: DatabaseUrl) -> DatabaseUrl:
    """``url`` with PostgreSQL's ``client_encoding`` set to UTF8 (over the URL's own and
    ``PGCLIENTENCODING``): exports inline their filter values as escaped string constants,
    which is only sound when the server reads the query text as UTF-8. In client encodings
    such as SJIS or BIG5 a byte after a multibyte lead byte can be a backslash or a quote."""
    if url.dialect != "postgresql":
        return url
    options = tuple((k, v) for k, v in url.options if k != "client_encoding")
    return replace(url, options=(*options, ("client_encoding", "UTF8")))


def flight_dialect(dialect: Dialect) -> Dialect:
    """The dialect Flight plans statements in: the database's, but on SQLite ``ilike`` folds
    case with SQLite's ``lower()``. Flight reads SQLite through ADBC, whose connections cannot
    call the Python function (``quiver_lower``) that Quiver's own SQLite connections fold case
    with: ``lower()`` folds the letters A-Z only."""
    if dialect.name == "sqlite":
        return replace(dialect, ilike="lower({}) LIKE lower({}) ESCAPE '!'")
    return dialect


class ConnectionPool:
    """At most ``size`` idle and ``max_open`` open connections to ``url``, opened on demand."""

    def __init__(
        self,
        url: DatabaseUrl,
        size: int,
        base_dir: str = "",
        *,
        max_open: int | None = None,
        wait_s: float = 30.0,
    ) -> None:
        self.url = utf8_client(url)
        self.size = size
        self.max_open = max(size, max_open or size)
        self.wait_s = wait_s
        #: one permit per connection lent out: idle connections are reused before one is
        #: opened, so connections lent plus idle never exceed max_open
        self._permits = threading.BoundedSemaphore(self.max_open)
        self.base_dir = base_dir
        self.arrow_native = url.dialect in ("postgresql", "sqlite")
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        self._warming = False
        self.open_count = 0

    def _connect(self) -> Any:
        if self.arrow_native:
            conn = connect_adbc(self.url, self.base_dir)
            # The session Quiver's own connections have (SQLite: LIKE case-sensitive, as on
            # PostgreSQL and as the MariaDB dialect makes it).
            statements = dialect_for(self.url.dialect).extra_session_sql
            if statements:
                with conn.cursor() as cursor:
                    for statement in statements:
                        cursor.execute(statement)
            return conn
        conn = connect_mysql_bulk(self.url)
        conn.autocommit(True)
        return conn

    def acquire(self) -> Lease:
        """A connection for one stream: an idle one, else a new one while fewer than
        ``max_open`` are open; waits up to ``wait_s`` when all are in use."""
        if not self._permits.acquire(timeout=self.wait_s):
            raise RetryableError.one(
                f"all {self.max_open} database connections of the Flight server are in use"
                f" by other streams; none came free within {self.wait_s:g} s",
                "flight.max_connections",
                "retry later, read fewer endpoints or streams at once, or raise"
                " flight.max_connections (within the database's own connection limit)",
            )
        try:
            with self._lock:
                if self._idle:
                    return Lease(self._idle.pop())
            conn = self._connect()
        except BaseException:
            self._permits.release()
            raise
        with self._lock:
            self.open_count += 1
        return Lease(conn)

    def release(self, lease: Lease) -> None:
        try:
            if not lease.broken:
                with self._lock:
                    if not self._closed and len(self._idle) < self.size:
                        self._idle.append(lease.connection)
                        return
            self._close(lease.connection)
        finally:
            self._permits.release()
        if lease.broken:
            self._replace()

    def _replace(self) -> None:
        """Open a connection in the background when a broken one leaves the pool empty (a
        stream the client left early closes its connection): the next stream does not wait
        for a connect."""
        with self._lock:
            if self._closed or self._idle or self._warming:
                return
            self._warming = True

        def run() -> None:
            try:
                self.warm()
            finally:
                with self._lock:
                    self._warming = False

        threading.Thread(target=run, name="quiver-flight-warm", daemon=True).start()

    def _close(self, conn: Any) -> None:
        with self._lock:
            self.open_count -= 1
        with contextlib.suppress(Exception):  # a connection already gone has nothing to free
            conn.close()

    def warm(self) -> None:
        """Open one connection ahead of the first stream (a first connect costs a noticeable
        fraction of a second); a failure is left for that stream to report."""
        try:
            self.release(self.acquire())
        except Exception:  # the first stream meets the same error, with its fix
            log.debug("opening a first Flight connection failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._close(conn)
