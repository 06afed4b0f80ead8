"""Connection pools that run one statement and hand back the JSON the database built.

``fetch_json(text, params)`` returns the first column of the first row as UTF-8 bytes (or None),
without decoding it: the engine splices those bytes into the HTTP response. The pools and
connections themselves are opened by :mod:`quiver.sql.connect`.

Two bounds hold on every database:

* waiting for a connection: a :class:`~quiver.sql.gate.ConnectionGate` admits as many
  statements as the pool holds, keeps ``pool_reserved`` connections for statements the caller
  marks ``cheap`` and refuses one that waited ``pool_timeout_ms`` with
  :class:`DatabaseBusyError`;
* running: the database's own statement timeout (PostgreSQL ``statement_timeout``, with JIT
  compilation off because the server cannot interrupt it; MariaDB ``max_statement_time``;
  SQLite a progress handler), and a client-side deadline a little later that cancels the
  statement from outside (asyncpg's cancel request, MariaDB ``KILL QUERY``, SQLite
  ``interrupt()``) and answers :class:`StatementTimeoutError` without waiting for the server.

``transaction()`` holds one connection for a unit of writes::

    async with database.transaction() as tx:
        keys = await tx.fetch_rows("INSERT ... RETURNING id", params)
        body = await tx.fetch_json("SELECT ...", params)

It commits when the block ends and rolls back when it raises, so a failed statement leaves
nothing of the unit behind. A write refused because of its values raises
:class:`ConstraintError` (what it broke: :class:`quiver.sql.violations.Violation`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import decimal
import logging
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, NoReturn, Protocol, TypeVar

from quiver.runtime.errors import PermanentError, QuiverError
from quiver.sql.connect import (
    connect_mysql,
    connect_sqlite,
    open_mysql_pool,
    open_postgresql_pool,
)
from quiver.sql.dialects import STORED_MARK, Dialect, dialect_for
from quiver.sql.gate import ADMITTED, IN_RESERVE, ConnectionGate, SlowStatements
from quiver.sql.iso_forms import INFINITE, ISO_PARSERS, WITH_INFINITY
from quiver.sql.sqlite_driver import sqlite3
from quiver.sql.url import DatabaseUrl, parse_database_url
from quiver.sql.violations import (
    Violation,
    mysql_violation,
    postgresql_violation,
    sqlite_violation,
)

log = logging.getLogger("quiver.sql")

__all__ = [
    "ConstraintError",
    "Database",
    "DatabaseBusyError",
    "DatabaseError",
    "ParameterError",
    "QueryTooComplexError",
    "RaisedError",
    "StatementTimeoutError",
    "StoredValueError",
    "Transaction",
    "driver_params",
    "open_database",
    "stored_refusal",
]

_T = TypeVar("_T")


class DatabaseError(QuiverError):
    """The database rejected or failed a statement."""


class StatementTimeoutError(DatabaseError):
    """A statement ran past the configured per-statement timeout."""


class DatabaseBusyError(DatabaseError):
    """No connection the statement may use came free within ``pool_timeout_ms``."""


def _timed_out() -> StatementTimeoutError:
    return StatementTimeoutError.one(  # type: ignore[return-value]
        "the statement ran past its time limit", "database", "raise database.statement_timeout_ms"
    )


def _client_deadline(timeout_ms: int) -> float | None:
    """Seconds after which the client cancels a statement itself: a little after the server's
    own timeout, which reports first whenever the server can interrupt the statement."""
    if not timeout_ms:
        return None
    return timeout_ms / 1000 * 1.1 + 0.1


class _Gated:
    """What every pool shares: the gate in front of its connections."""

    gate: ConnectionGate
    #: Statement texts estimated cheap that ran long: they run as expensive.
    slow: SlowStatements = SlowStatements(None)

    async def _admit(self, cheap: bool) -> None:
        if not await self.gate.enter(cheap):
            raise self._busy(cheap)

    async def _enter(self, text: str, cheap: bool) -> int:
        """Admit a statement of ``text`` (see :meth:`ConnectionGate.enter`). One that waited as
        cheap while its text proved slow gives the slot back, to wait again as expensive."""
        admitted = await self.gate.enter(cheap)
        if not admitted:
            raise self._busy(cheap)
        if cheap and not self.slow.cheap(text, cheap):
            self.gate.leave(cheap)
            raise _MovedOut
        return admitted

    def _busy(self, cheap: bool) -> DatabaseBusyError:
        gate = self.gate
        kind = "a cheap" if cheap else "an expensive"
        return DatabaseBusyError.one(  # type: ignore[return-value]
            f"every database connection {kind} query may use stayed busy for "
            f"{gate.wait_s:g} s ({gate.size} in the pool, {gate.reserved} kept for cheap "
            "queries)",
            "database",
            "retry shortly; if it persists raise database.pool_max or "
            "database.pool_timeout_ms, or ask for fewer rows",
        )


class _MovedOut(Exception):  # noqa: N818 (not an error: the statement runs again)
    """A cheap statement on a connection kept for cheap ones held it past
    ``slow_statement_ms``: it gave the connection up, to run again as expensive."""


def _reserve_limit(slow: SlowStatements, admitted: int, timeout: float | None) -> float | None:
    """Seconds a statement admitted as ``admitted`` may run before it gives its connection up
    (:class:`_MovedOut`): ``slow.after_s`` on a connection kept for cheap statements, when
    that is shorter than its own time limit; else None."""
    after = slow.after_s
    if admitted != IN_RESERVE or after is None or (timeout is not None and timeout <= after):
        return None
    return after


class QueryTooComplexError(DatabaseError):
    """The database refused the statement's size or depth, or a value overflowed in it."""


class ParameterError(DatabaseError):
    """A value could not be bound as a parameter of this database."""


class StoredValueError(DatabaseError):
    """A stored value the field's GraphQL type cannot carry (SQLite lets any column hold
    any value; MariaDB's TIME, dates and ENUMs hold values beyond their scalar's): its
    message names the value and the fix, and may be shown to clients."""


class ConstraintError(DatabaseError):
    """A write refused because of the values written: a unique, foreign key, NOT NULL or CHECK
    constraint, or a value the column's type cannot hold. ``violation`` says which."""

    violation: Violation = Violation("value", "")

    @classmethod
    def of(cls, violation: Violation) -> ConstraintError:
        err = cls.one(violation.message, "database")
        assert isinstance(err, ConstraintError)
        err.violation = violation
        return err


class RaisedError(DatabaseError):
    """SQL code refused the statement on purpose (PostgreSQL ``RAISE EXCEPTION``, MariaDB
    ``SIGNAL``): its message is written for the client."""


#: What the last SQL function that refused a value said, per thread (SQLite drops the text
#: of an exception raised in a user function).
_refused = threading.local()


def _not_int(value: object) -> None:
    """Called by the SQLite output of Int fields for a value that is not a 32-bit integer."""
    _refuse(
        f"an Int field holds {value!r}, which is not a 32-bit integer (SQLite lets an INTEGER"
        " column hold any value)",
        _INT_FIX,
    )


#: The fix a refusal names, per SQL function (quiver_not_int, quiver_stored).
_INT_FIX = (
    "declare the column BIGINT (a BigInt field) for 64-bit integers, or correct the stored value"
)
_STORED_FIX = (
    "store a value of the field's type, or serve the column through a view that converts it"
)


def _stored(value: object, scalar: str) -> None:
    """Called by the SQLite output of a field for a stored value of a storage class its
    GraphQL type cannot carry (a BLOB in a Float column, an integer in a Date column)."""
    if isinstance(value, bytes):
        shown = f"a BLOB x'{value[:16].hex()}'" + ("..." if len(value) > 16 else "")
    elif isinstance(value, str):
        shown = f"the text {value[:40]!r}"
    else:
        shown = f"the {'real' if isinstance(value, float) else 'integer'} {value!r}"
    _refuse(
        f"a {scalar} field holds {shown}, which is not a {scalar} (SQLite lets any column hold"
        " any value)",
        _STORED_FIX,
    )


#: The fix a refusal of a value the column's type allows but the field's scalar does not
#: carry names (quiver_form, :func:`stored_refusal`).
_FORM_FIX = (
    "correct the stored value, or serve the column through a view that casts it to text (a"
    " String field)"
)


def _form(value: bytes | None, scalar: str) -> None:
    """Called by the SQLite output of a Date, DateTime, Time or UUID field for stored text
    not in the form SQLite's date functions write (or a UUID's canonical text): None when the
    text is of the scalar's form (any ISO 8601 form the scalar reads), else a refusal."""
    if value is None:
        return None
    try:
        text = value.decode()
        if scalar not in WITH_INFINITY or text not in INFINITE:
            ISO_PARSERS[scalar](text)
    except ValueError:  # UnicodeDecodeError too
        shown = value[:40].decode(errors="replace")
        _refuse(
            f"a {scalar} field holds the text {shown!r}, which is not a {scalar} (SQLite lets"
            " any column hold any text)",
            _FORM_FIX,
        )
    return None


#: What a marked value (:data:`~quiver.sql.dialects.STORED_MARK`) is, by its kind.
_MARKED = {
    "time": (
        "the MariaDB TIME {value!r}, which is not a {type}: a time of day is 00:00:00 to"
        " 23:59:59.999999, and a TIME is a duration (-838:59:59 to 838:59:59)"
    ),
    "date": (
        "the MariaDB date {value!r}, which is not a {type}: its year, month or day is zero"
        " (MariaDB stores such dates unless sql_mode has NO_ZERO_DATE and NO_ZERO_IN_DATE, and"
        " year 0 always; ISO 8601 dates, and the {type} scalar, start at year 1)"
    ),
    "endofday": (
        "the PostgreSQL time {value!r}, which is not a {type}: a time of day is 00:00:00 to"
        " 23:59:59.999999 (PostgreSQL also takes 24:00:00, the end of a day; write it as the"
        " next day's 00:00:00)"
    ),
    "year": (
        "the PostgreSQL value {value!r}, which is not a {type}: its year is before 1 or after"
        " 9999 (PostgreSQL stores dates from 4713 BC; ISO 8601 dates, and the {type} scalar,"
        ' have years 1 to 9999, and "infinity" and "-infinity")'
    ),
    "enum": (
        "MariaDB's ENUM error value '' (the empty string a write outside strict mode stores for"
        " a value not in the list), which is not a value of {type}"
    ),
}
_MARK_START = b'"' + STORED_MARK.encode()


def stored_refusal(body: bytes) -> StoredValueError | None:
    """The refusal of the first value a field's scalar cannot carry that the database served
    marked in ``body`` (the JSON of a statement whose plan has such fields), or None."""
    at = body.find(_MARK_START)
    if at < 0:
        return None
    start = at + len(_MARK_START)
    end = body.find(b'"', start)
    kind, _, rest = body[start:end].decode(errors="replace").partition(":")
    shown, _, value = rest.partition(":")
    what = _MARKED.get(kind, "{value!r}, which is not a {type}").format(value=value, type=shown)
    article = "an" if shown[:1].lower() in "aeiou" else "a"
    err = StoredValueError.one(f"{article} {shown} field holds {what}", "database", _FORM_FIX)
    assert isinstance(err, StoredValueError)
    return err


def _int_sum(high: int | None, low: int | None) -> str | None:
    """The exact sum of 64-bit integers as the text of its digits, from the sums of their
    high (arithmetic shift by 32) and low 32 bits: SQLite's SUM fails past 2**63."""
    if high is None or low is None:
        return None
    return str((high << 32) + low)


def _refuse(message: str, fix: str) -> NoReturn:
    """Refuse a value inside a SQLite function: SQLite keeps only that the call failed, so
    the message and its fix are left for the statement's error (:data:`_refused`)."""
    _refused.message = message
    _refused.fix = fix
    raise ValueError(message)


class Transaction(Protocol):
    """Statements on the one connection of an open transaction."""

    async def fetch_rows(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...
    async def fetch_json(self, text: str, params: Sequence[Any]) -> bytes | None: ...


class Database(Protocol):
    dialect: Dialect
    gate: ConnectionGate

    async def fetch_json(
        self,
        text: str,
        params: Sequence[Any],
        *,
        cheap: bool = False,
        pieces: Sequence[str] | None = None,
    ) -> bytes | None: ...
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...


def _json_bytes(value: Any) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return _whole_characters(value)
    return _whole_characters(value.encode() if isinstance(value, str) else str(value).encode())


#: A JSON string escape: a UTF-16 surrogate pair, a lone surrogate, or any other.
_ESCAPE = re.compile(
    rb"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    rb"|u[dD][89a-fA-F][0-9a-fA-F]{2}|.)",
    re.DOTALL,
)


def _whole_characters(raw: bytes) -> bytes:
    """JSON text the database built, each escaped UTF-16 surrogate without its pair written
    as U+FFFD: PostgreSQL's json and SQLite keep a string's ``"\\ud800"`` as given, which
    JSON readers that check Unicode (orjson, serde) refuse."""
    # One byte is found with memchr, about 12 times as fast as the escapes' three bytes: most
    # answers hold no escape at all.
    if b"\\" not in raw or (b"\\ud" not in raw and b"\\uD" not in raw):
        return raw
    return _ESCAPE.sub(_lone_surrogate_replaced, raw)


def _lone_surrogate_replaced(m: re.Match[bytes]) -> bytes:
    escape = m.group(0)
    return b"\\ufffd" if len(escape) == 6 and escape[2:3] in b"dD" else escape


async def open_database(
    url: str,
    *,
    pool_min: int = 1,
    pool_max: int = 10,
    statement_timeout_ms: int = 30_000,
    pool_timeout_ms: int = 5_000,
    pool_reserved: int = 0,
    postgresql_settings: Mapping[str, str] | None = None,
    coalesce_max: int = 1,
    slow_statement_ms: int | None = None,
) -> Database:
    """Open a pool for ``url``. An unreachable database raises a RetryableError, refused
    credentials or an unknown database a PermanentError (see :mod:`quiver.sql.connect`).

    At most ``pool_max`` statements run at once; ``pool_reserved`` of the connections are kept
    for statements run with ``cheap=True``; a statement that waits ``pool_timeout_ms`` for a
    connection raises :class:`DatabaseBusyError`. A text run with ``cheap=True`` whose statement
    held its connection for more than ``slow_statement_ms`` runs as expensive for a while
    (:class:`~quiver.sql.gate.SlowStatements`), and one on a connection kept for cheap
    statements gives it up past that time, to run again as expensive. ``postgresql_settings``
    are more settings of each PostgreSQL session (``plan_cache_mode``, ...); other databases
    ignore them.

    On PostgreSQL, ``coalesce_max`` above 1 runs up to that many cheap statements of one text
    that wait while another of it runs as one statement (see :class:`_Coalesced`); only
    statements given with their ``pieces`` are coalesced.
    """
    parsed = parse_database_url(url)
    gate = ConnectionGate(pool_max, pool_reserved, pool_timeout_ms / 1000)
    db: _Postgres | _MySQL | _Sqlite
    if parsed.dialect == "postgresql":
        db = await _Postgres.open(
            parsed, pool_min, gate, statement_timeout_ms, postgresql_settings or {}
        )
        db.coalesce_max = coalesce_max
    elif parsed.dialect == "mysql":
        db = await _MySQL.open(parsed, pool_min, gate, statement_timeout_ms)
    else:
        db = await _Sqlite.open(parsed, gate, statement_timeout_ms)
    if slow_statement_ms is not None:
        db.slow = SlowStatements(slow_statement_ms / 1000)
    return db


async def _keep_session(conn: Any) -> None:
    """Pool release hook: the engine only runs SELECTs and never changes session state, so
    skip asyncpg's default reset query (one round trip per statement saved)."""
    del conn


class _Postgres(_Gated):
    dialect = dialect_for("postgresql")

    def __init__(self, pool: Any, gate: ConnectionGate, timeout_ms: int) -> None:
        self.pool = pool
        self.gate = gate
        self.deadline_s = _client_deadline(timeout_ms)
        #: Releases of connections whose statement was cancelled, still under way.
        self._releasing: set[asyncio.Task[None]] = set()
        #: Connections taken from the pool and kept between statements: taking one back is a
        #: list pop, where the pool's acquire and release cost about 15 µs a statement.
        #: Statements and transactions take these first, so the pool always has a connection
        #: for what the gate admits (held connections never outnumber admitted statements plus
        #: these, and the pool is only asked when none is kept).
        self._kept: list[Any] = []
        #: Most statements one coalesced statement runs; 1: none is coalesced.
        self.coalesce_max = 1
        #: What coalescing knows of each statement text (see :meth:`fetch_json`).
        self._coalesced: dict[str, _Coalesced] = {}
        #: Coalesced statements under way.
        self._batches: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls,
        url: DatabaseUrl,
        pool_min: int,
        gate: ConnectionGate,
        timeout_ms: int,
        settings: Mapping[str, str],
    ) -> _Postgres:
        async def init(conn: Any) -> None:
            # JSON arrives as raw bytes: no decoding, the engine passes it through.
            await conn.set_type_codec(
                "json",
                encoder=lambda v: v,
                decoder=lambda v: v,
                schema="pg_catalog",
                format="binary",
            )

        pool = await open_postgresql_pool(
            url,
            min_size=pool_min,
            max_size=gate.size,
            init=init,
            reset=_keep_session,
            # JIT compilation cannot be interrupted: with it, a statement with a large filter
            # ran many times past statement_timeout while the server compiled it.
            server_settings={**settings, "statement_timeout": str(timeout_ms), "jit": "off"},
        )
        return cls(pool, gate, timeout_ms)

    async def fetch_json(
        self,
        text: str,
        params: Sequence[Any],
        *,
        cheap: bool = False,
        pieces: Sequence[str] | None = None,
    ) -> bytes | None:
        """The statement's JSON. A cheap statement given with ``pieces`` (its text cut at its
        placeholders) that finds another of its text running waits for it to return, and then
        runs with every other one that waited meanwhile as one statement (at most
        ``coalesce_max`` of them; more waiting start another at once): each statement of
        PostgreSQL costs its backend about as much to start as a lookup by key to run, and
        the client one round trip. A statement that finds none of its text running waits one
        turn of the event loop, so that the requests read in the same turn as its own reach
        theirs, and runs with those of its text; alone if there are none."""
        cheap = self.slow.cheap(text, cheap)
        if pieces is None or not cheap or self.coalesce_max < 2:
            return await self._fetch_one(text, params, cheap, self.deadline_s)
        group = self._coalesced.get(text)
        if group is None:
            group = self._coalescing(text, pieces, len(params))
        if group.broken:
            return await self._fetch_one(text, params, cheap, self.deadline_s)
        loop = asyncio.get_running_loop()
        if not group.running:
            # One turn of the event loop first: the requests read in the same turn as this one
            # ask for the statement meanwhile, and run with it (alone if none did).
            group.running = 1
            try:
                await asyncio.sleep(0)
                if not group.waiting:
                    return await self._fetch_one(text, params, cheap, self.deadline_s)
                joined: asyncio.Future[bytes | None] = loop.create_future()
                until = None if self.deadline_s is None else loop.time() + self.deadline_s
                group.waiting.insert(0, (params, joined, until))
            finally:
                group.running -= 1
                if group.waiting:
                    self._start_batch(group)
            return await joined
        waiter: asyncio.Future[bytes | None] = loop.create_future()
        deadline = None if self.deadline_s is None else loop.time() + self.deadline_s
        group.waiting.append((params, waiter, deadline))
        if len(group.waiting) >= self.coalesce_max:
            self._start_batch(group)
        elif group.timer is None:
            # A slow statement of the text does not hold the others back: those waiting for
            # it go on their own after a few milliseconds.
            group.timer = loop.call_later(_COALESCE_WAIT_S, self._start_batch, group)
        return await waiter  # a client that goes away cancels only its own waiter

    def _coalescing(self, text: str, pieces: Sequence[str], n_params: int) -> _Coalesced:
        known = self._coalesced
        if len(known) >= _COALESCED_TEXTS:
            for key in [k for k, g in known.items() if not g.running and not g.waiting]:
                del known[key]
        group = known[text] = _Coalesced(text, tuple(pieces))
        # fewer than two requests' values fit in one statement: nothing to gather
        group.broken = len(pieces) != n_params + 1 or n_params > _MAX_VALUES // 2
        return group

    def _start_batch(self, group: _Coalesced) -> None:
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        if not group.waiting:
            return
        # A statement takes at most _MAX_VALUES values: so many requests of the text at once.
        cap = min(self.coalesce_max, _MAX_VALUES // max(group.n_params, 1))
        members, group.waiting = group.waiting[:cap], group.waiting[cap:]
        group.running += 1
        task = asyncio.get_running_loop().create_task(self._run_batch(group, members))
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _run_batch(self, group: _Coalesced, members: list[_Waiting]) -> None:
        import asyncpg

        try:
            live = [m for m in members if not m[1].done()]
            if len(live) == 1:
                await self._answer(group.text, *live[0])
            elif live:
                # Each request keeps the time limit it had alone, counted from its arrival: the
                # coalesced statement gets half of what the most hurried one has left, so that
                # a statement slow for one request's values leaves the others time to run alone.
                deadlines = [d for _, _, d in live if d is not None]
                budget = None
                if deadlines:
                    budget = max((min(deadlines) - asyncio.get_running_loop().time()) / 2, 0.0)
                try:
                    values = await self._fetch_many(group, [p for p, _, _ in live], budget)
                except DatabaseBusyError:
                    for _, w, _ in live:  # each waited as long as alone: no second wait
                        if not w.done():
                            w.set_exception(self._busy(True))
                except Exception as exc:
                    # One request's value the column's type cannot read fails the whole
                    # statement: each runs alone, so that only its own request has the error.
                    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate[:2] in ("42", "0A"):
                        group.broken = True  # the statement itself cannot be coalesced
                        log.debug("statement not coalesced: %s", exc)
                    await asyncio.gather(*(self._answer(group.text, *m) for m in live))
                else:
                    for (_, w, _), value in zip(live, values, strict=True):
                        if not w.done():
                            w.set_result(value)
        except BaseException:
            for _, w, _ in members:
                w.cancel()  # closing: nothing answers them any more
            raise
        finally:
            group.running -= 1
            if group.waiting:
                self._start_batch(group)

    async def _answer(
        self,
        text: str,
        params: Sequence[Any],
        waiter: asyncio.Future[bytes | None],
        deadline: float | None,
    ) -> None:
        timeout = None
        if deadline is not None:
            timeout = max(deadline - asyncio.get_running_loop().time(), 0.0)
        try:
            value = await self._fetch_one(text, params, True, timeout)
        except Exception as exc:
            if not waiter.done():
                waiter.set_exception(exc)
        else:
            if not waiter.done():
                waiter.set_result(value)

    async def _fetch_many(
        self, group: _Coalesced, params: list[Sequence[Any]], timeout: float | None
    ) -> list[bytes | None]:
        """Run the statements of ``group.text`` with each of ``params`` as one statement,
        cancelled after ``timeout`` seconds."""
        if timeout is not None and timeout <= 0:
            raise _timed_out()
        admitted = await self._enter(group.text, True)
        # Past it on a reserved connection, each request runs again alone (and as expensive).
        reserve_limit = _reserve_limit(self.slow, admitted, timeout)
        try:
            kept = self._kept
            conn = kept.pop() if kept and _usable(kept[-1]) else await self._connection()
        except BaseException:
            self.gate.leave(True)
            raise
        settled = False
        started = time.monotonic()
        try:
            if group.types is None:
                prepared = await conn.prepare(group.text, timeout=self.deadline_s)
                quote = self.dialect.quote_ident
                group.types = tuple(
                    f"{quote(t.schema)}.{quote(t.name)}" for t in prepared.get_parameters()
                )
            rows = await conn.fetch(
                group.statement(len(params)),
                *[_pg_param(p) for one in params for p in one],
                timeout=timeout if reserve_limit is None else reserve_limit,
            )
            settled = True
        except TimeoutError:
            self._release_later(conn, True)
            conn = None
            if reserve_limit is not None:
                self.slow.ran(group.text, math.inf)
                raise _MovedOut from None
            raise _timed_out() from None
        except Exception as exc:
            import asyncpg

            settled = isinstance(exc, asyncpg.PostgresError)
            raise
        finally:
            self.slow.ran(group.text, time.monotonic() - started)
            if conn is not None:
                await self._put_back(conn, settled, True)
        values: list[bytes | None] = [None] * len(params)
        answered = [False] * len(params)
        for i, value in rows:  # as fetchval: the first column of the first row
            if not answered[i]:
                answered[i] = True
                values[i] = _json_bytes(value)
        return values

    async def _fetch_one(
        self, text: str, params: Sequence[Any], cheap: bool, timeout: float | None
    ) -> bytes | None:
        """One statement, cancelled after ``timeout`` seconds (``None``: never). A cheap one
        that holds a connection kept for cheap statements past ``slow_statement_ms`` gives it
        up and starts again as expensive."""
        try:
            return await self._fetch_admitted(text, params, cheap, timeout)
        except _MovedOut:
            return await self._fetch_admitted(text, params, False, timeout)

    async def _fetch_admitted(
        self, text: str, params: Sequence[Any], cheap: bool, timeout: float | None
    ) -> bytes | None:
        if timeout is not None and timeout <= 0:
            raise _timed_out()
        admitted = await self._enter(text, cheap)
        reserve_limit = _reserve_limit(self.slow, admitted, timeout)
        try:
            # The gate admits no more statements than the pool holds: a connection is kept or
            # free (asyncpg's own acquire timeout would cost a task per statement).
            kept = self._kept
            conn = kept.pop() if kept and _usable(kept[-1]) else await self._connection()
        except BaseException as exc:
            self.gate.leave(cheap)
            import asyncpg

            if isinstance(exc, asyncpg.PostgresError | OSError):
                raise DatabaseError.one(str(exc), "database") from exc
            raise
        # Kept for the next statement only once the server has answered this one: a connection
        # left mid-statement (cancelled, a driver error) goes back to the pool, which waits for
        # it or closes it.
        settled = False
        started = time.monotonic()
        try:
            value = await conn.fetchval(
                text,
                *[_pg_param(p) for p in params],
                timeout=timeout if reserve_limit is None else reserve_limit,
            )
            settled = True
        except TimeoutError:
            # asyncpg has asked the server to cancel the statement: answer now, and hand the
            # connection (and its slot) back once the server has let go of it.
            self._release_later(conn, cheap)
            conn = None
            if reserve_limit is not None:
                self.slow.ran(text, math.inf)
                raise _MovedOut from None
            raise _timed_out() from None
        except Exception as exc:
            import asyncpg

            settled = isinstance(exc, asyncpg.PostgresError)
            mapped = _pg_error(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        finally:
            if cheap:
                self.slow.ran(text, time.monotonic() - started)
            if conn is not None:
                await self._put_back(conn, settled, cheap)
        if value is None:
            return None
        return _whole_characters(value if isinstance(value, bytes) else str(value).encode())

    async def _put_back(self, conn: Any, settled: bool, cheap: bool) -> None:
        """Keep ``conn`` for the next statement if the server answered its last one, else hand
        it back to the pool (which opens a new one when asked), and free its slot."""
        try:
            if settled:  # closed meanwhile: _connection() hands it back to the pool
                self._kept.append(conn)
            else:
                await self.pool.release(conn)
        finally:
            self.gate.leave(cheap)

    async def _connection(self) -> Any:
        """A kept connection the server has not closed, or one from the pool."""
        kept = self._kept
        while kept:
            conn = kept.pop()
            if _usable(conn):
                return conn
            await self.pool.release(conn)
        return await self.pool.acquire()

    def _release_later(self, conn: Any, cheap: bool) -> None:
        async def release() -> None:
            try:
                await self.pool.release(conn, timeout=_RELEASE_TIMEOUT_S)
            finally:
                self.gate.leave(cheap)

        task = asyncio.get_running_loop().create_task(release())
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        await self._admit(False)
        try:
            try:
                conn = await self._connection()  # the gate admitted it: one is kept or free
            except Exception as exc:
                raise _pg_error(exc) from exc
            try:
                tx = conn.transaction()
                await tx.start()
                try:
                    yield _PostgresTransaction(conn)
                except BaseException:
                    await tx.rollback()
                    raise
                try:
                    await tx.commit()
                except Exception as exc:
                    raise _pg_error(exc, writing=True) from exc
            finally:
                await self.pool.release(conn)
        finally:
            self.gate.leave(False)

    async def ping(self) -> None:
        await self.fetch_json("SELECT 1", (), cheap=True)

    async def close(self) -> None:
        if self._batches:
            await asyncio.wait(self._batches, timeout=_RELEASE_TIMEOUT_S)
        if self._releasing:
            await asyncio.wait(self._releasing, timeout=_RELEASE_TIMEOUT_S)
        kept, self._kept = self._kept, []
        for conn in kept:
            await self.pool.release(conn)
        await self.pool.close()


#: A request waiting for a coalesced statement: its parameters and where its answer goes.
#: A request waiting to run coalesced: its values, its answer, when its time runs out (loop
#: time; None: no time limit).
_Waiting = tuple[Sequence[Any], "asyncio.Future[bytes | None]", float | None]

#: Statement texts whose coalesced forms are kept at most (the idle ones are forgotten then).
_COALESCED_TEXTS = 512
#: Seconds requests wait for a running statement of their text before they run without it.
_COALESCE_WAIT_S = 0.005
#: Values one statement may carry (asyncpg's limit; PostgreSQL's protocol allows 65,535).
_MAX_VALUES = 32767


class _Coalesced:
    """One statement text's requests on PostgreSQL: how many of its statements run, the
    requests waiting to run together, and its coalesced forms.

    The form of ``n`` requests (``SELECT 1 + $1 ...`` with pieces ``["SELECT 1 + ", " ..."]``)::

        SELECT "__batch".i, "__q".v
        FROM (VALUES (0, $1::"pg_catalog"."int4"), (1, $2::"pg_catalog"."int4")) AS "__batch"(i, p1)
        LEFT JOIN LATERAL (SELECT 1 + ("__batch".p1) ...) AS "__q"(v) ON true

    Each parameter is cast to the type PostgreSQL gave it in the statement alone (read once
    from the prepared statement), so every expression reads the same type as it did: the
    answers are the statement's own, row ``i`` for request ``i`` (a request without a row
    answers NULL, as ``fetchval`` does). The placeholders are replaced where the compiler put
    them (``pieces``), never found by a scan of the text: quoted names and string literals
    stay as they are. The planner names its tables ``t<n>``, never ``__batch``.
    """

    __slots__ = (
        "broken",
        "n_params",
        "pieces",
        "running",
        "statements",
        "text",
        "timer",
        "types",
        "waiting",
    )

    def __init__(self, text: str, pieces: tuple[str, ...]) -> None:
        self.text = text
        self.pieces = pieces
        #: Values each request gives.
        self.n_params = len(pieces) - 1
        self.running = 0
        self.waiting: list[_Waiting] = []
        #: Starts the waiting requests if the running statement has not returned meanwhile.
        self.timer: asyncio.TimerHandle | None = None
        #: Each parameter's type, quoted for a cast (read once from the prepared statement).
        self.types: tuple[str, ...] | None = None
        #: The coalesced form by number of requests.
        self.statements: dict[int, str] = {}
        #: PostgreSQL refused the coalesced form: each request runs alone.
        self.broken = False

    def statement(self, n: int) -> str:
        text = self.statements.get(n)
        if text is None:
            types = self.types
            assert types is not None
            k = len(types)
            rows = ", ".join(
                "("
                + ", ".join([str(r), *(f"${r * k + j + 1}::{t}" for j, t in enumerate(types))])
                + ")"
                for r in range(n)
            )
            names = ", ".join(["i", *(f"p{j + 1}" for j in range(k))])
            inner = self.pieces[0] + "".join(
                f'("__batch".p{j + 1}){piece}' for j, piece in enumerate(self.pieces[1:])
            )
            text = (
                f'SELECT "__batch".i, "__q".v FROM (VALUES {rows}) AS "__batch"({names})'
                f' LEFT JOIN LATERAL ({inner}) AS "__q"(v) ON true'
            )
            self.statements[n] = text
        return text


def driver_params(dialect: str, params: Sequence[Any]) -> list[Any]:
    """``params`` as the dialect's drivers take them (aware datetimes in UTC, SQLite's text
    dates and times, ...), for statements run outside :class:`Database`."""
    convert = {"postgresql": _pg_param, "mysql": _mysql_param, "sqlite": _sqlite_param}[dialect]
    return [convert(p) for p in params]


#: Seconds a cancelled statement's connection may take to come back before it is closed.
_RELEASE_TIMEOUT_S = 30.0


def _usable(conn: Any) -> bool:
    """Whether a pooled asyncpg connection is still open (the pool takes back, by itself, one
    whose server went away: using it then raises)."""
    import asyncpg

    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


class _PostgresTransaction:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch_rows(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            rows = await self.conn.fetch(text, *[_pg_param(p) for p in params])
        except Exception as exc:
            raise _pg_error(exc, writing=True) from exc
        return [tuple(r) for r in rows]

    async def fetch_json(self, text: str, params: Sequence[Any]) -> bytes | None:
        try:
            value = await self.conn.fetchval(text, *[_pg_param(p) for p in params])
        except Exception as exc:
            raise _pg_error(exc, writing=True) from exc
        return _json_bytes(value)


#: The SQLSTATE of a statement nested past PostgreSQL's limits (statement too complex, stack
#: depth limit exceeded).
_PG_TOO_DEEP = frozenset({"54001"})
#: What SQLite says of the same: its parser's stack (an SQLite older than 3.49), its
#: expression depth (1000).
_SQLITE_TOO_DEEP = ("parser stack overflow", "Expression tree is too large")
#: MariaDB/MySQL error numbers of the same: too high level of nesting for select, thread
#: stack overrun.
_MYSQL_TOO_DEEP = frozenset({1473, 1436})


def _too_deep(database: str) -> Exception:
    return QueryTooComplexError.one(
        f"the query nests relations more deeply than {database} can run in one statement",
        "database",
        "nest fewer levels in one query (lower graphql.max_depth to refuse such queries before "
        "they reach the database)",
    )


def _pg_error(exc: Exception, *, writing: bool = False) -> Exception:
    """An asyncpg failure as the DatabaseError it means (anything else unchanged). While
    ``writing``, a number out of its column's range is the value's fault, not the query's."""
    import asyncpg

    if isinstance(exc, asyncpg.QueryCanceledError):
        return StatementTimeoutError.one(
            f"the statement was cancelled: {exc}",
            "database",
            "raise database.statement_timeout_ms",
        )
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError):
        return ParameterError.one(str(exc), "database")
    # A value read from text that its type cannot hold (value "1e400" is out of range for type
    # money; invalid octet value in "macaddr" value: "2024-13-45") is the value's fault, a
    # violation as below; an overflow of the query's arithmetic quotes nothing.
    if isinstance(exc, asyncpg.NumericValueOutOfRangeError) and not writing and '"' not in str(exc):
        return QueryTooComplexError.one(
            "a sum or average overflowed the database's numbers",
            "database",
            "aggregate fewer rows, or cast the column to numeric in a view",
        )
    if isinstance(exc, asyncpg.RaiseError):
        return RaisedError.one(str(getattr(exc, "message", "") or exc), "database")
    if isinstance(exc, asyncpg.PostgresError) and exc.sqlstate in _PG_TOO_DEEP:
        return _too_deep("PostgreSQL")
    if isinstance(exc, asyncpg.PostgresError):
        violation = postgresql_violation(exc)
        if violation is not None:
            return ConstraintError.of(violation)
        return DatabaseError.one(str(exc), "database")
    if isinstance(exc, asyncpg.DataError | OverflowError | UnicodeError):
        if writing:
            return ConstraintError.of(Violation("value", str(exc)))
        return ParameterError.one(str(exc), "parameter")
    return exc


def _pg_param(v: Any) -> Any:
    # timestamp columns take naive values; an aware one becomes UTC (what timestamptz stores).
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(v, list):
        return [_pg_param(x) for x in v]
    return v


def _mysql_param(v: Any) -> Any:
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, list):
        return [_mysql_param(x) for x in v]
    if isinstance(v, dt.datetime) and v.tzinfo is not None:
        return v.astimezone(dt.UTC).replace(tzinfo=None)
    return v


class _MySQL(_Gated):
    dialect = dialect_for("mysql")

    def __init__(self, pool: Any, url: DatabaseUrl, gate: ConnectionGate, timeout_ms: int) -> None:
        self.pool = pool
        self.url = url
        self.gate = gate
        self.deadline_s = _client_deadline(timeout_ms)

    @classmethod
    async def open(
        cls, url: DatabaseUrl, pool_min: int, gate: ConnectionGate, timeout_ms: int
    ) -> _MySQL:
        init = list(cls.dialect.extra_session_sql)
        init.append("SET SESSION time_zone = '+00:00'")
        # Strict whatever the server's default: a value a column cannot hold is refused,
        # never cut, clamped or zeroed with only a warning.
        init.append(
            "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''),"
            " 'STRICT_ALL_TABLES')"
        )
        if timeout_ms:
            init.append(f"SET SESSION max_statement_time = {timeout_ms / 1000:.3f}")
        pool = await open_mysql_pool(url, min_size=pool_min, max_size=gate.size, session_sql=init)
        return cls(pool, url, gate, timeout_ms)

    async def fetch_json(
        self,
        text: str,
        params: Sequence[Any],
        *,
        cheap: bool = False,
        pieces: Sequence[str] | None = None,  # statements run one by one here
    ) -> bytes | None:
        cheap = self.slow.cheap(text, cheap)
        try:
            return await self._fetch_admitted(text, params, cheap)
        except _MovedOut:
            # A cheap statement held a connection kept for cheap ones too long: it starts
            # again as expensive (see SlowStatements).
            return await self._fetch_admitted(text, params, False)

    async def _fetch_admitted(self, text: str, params: Sequence[Any], cheap: bool) -> bytes | None:
        from asyncmy.errors import MySQLError

        admitted = await self._enter(text, cheap)
        reserve_limit = _reserve_limit(self.slow, admitted, self.deadline_s)
        deadline = self.deadline_s if reserve_limit is None else reserve_limit
        started = time.monotonic()
        try:
            async with self.pool.acquire() as conn:
                kill: list[asyncio.Task[None]] = []
                timer = None
                if deadline is not None:
                    timer = asyncio.get_running_loop().call_later(
                        deadline, self._kill_soon, conn.thread_id(), kill
                    )
                try:
                    async with conn.cursor() as cur:
                        await cur.execute(text, [_mysql_param(p) for p in params])
                        row = await cur.fetchone()
                except BaseException as exc:
                    _discard_unless_in_step(conn, exc)
                    raise
                finally:
                    if timer is not None:
                        timer.cancel()
                    if kill:  # never let the KILL reach the connection's next statement
                        await asyncio.wait(kill)
        except MySQLError as exc:
            code = exc.args[0] if exc.args else 0
            # max_statement_time / max_execution_time exceeded, or our KILL QUERY
            if code in (1969, 3024, 1317):
                if reserve_limit is not None:
                    self.slow.ran(text, math.inf)
                    raise _MovedOut from None
                raise _timed_out() from None
            raise _mysql_error(exc) from exc
        except UnicodeDecodeError as exc:
            raise _undecodable(exc) from None
        except (UnicodeError, OverflowError) as exc:
            raise ParameterError.one(str(exc), "parameter") from None
        finally:
            if cheap:
                self.slow.ran(text, time.monotonic() - started)
            self.gate.leave(cheap)
        if row is None or row[0] is None:
            return None
        value = row[0]
        return _whole_characters(value if isinstance(value, bytes) else str(value).encode())

    def _kill_soon(self, thread_id: int, tasks: list[asyncio.Task[None]]) -> None:
        """The client-side deadline passed: stop the statement from another connection."""
        tasks.append(asyncio.get_running_loop().create_task(self._kill_query(thread_id)))

    async def _kill_query(self, thread_id: int) -> None:
        try:
            conn = await connect_mysql(self.url, autocommit=True)
        except QuiverError as exc:
            log.warning("could not cancel a statement past its deadline: %s", exc)
            return
        try:
            async with conn.cursor() as cur:
                await cur.execute(f"KILL QUERY {int(thread_id)}")
        except Exception as exc:  # the statement may have ended meanwhile
            log.debug("KILL QUERY %d: %s", thread_id, exc)
        finally:
            conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        await self._admit(False)
        try:
            async with self.pool.acquire() as conn:
                await conn.begin()
                try:
                    yield _MySQLTransaction(conn)
                except BaseException:
                    # A statement that left the connection out of step with the server closed
                    # it (which rolls back): the pool drops it.
                    if conn.connected:
                        await conn.rollback()
                    raise
                try:
                    await conn.commit()
                except Exception as exc:
                    raise _mysql_error(exc, writing=True) from exc
        finally:
            self.gate.leave(False)

    async def ping(self) -> None:
        # A pooled connection answers SELECT 1 after its database was dropped: the served
        # database itself must be there.
        if not self.url.database:
            await self.fetch_json("SELECT 1", (), cheap=True)
            return
        found = await self.fetch_json(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = "
            f"CONVERT(X'{self.url.database.encode().hex()}' USING utf8mb4)",
            (),
            cheap=True,
        )
        if found is None:
            raise PermanentError.one(
                f"the database {self.url.database!r} does not exist",
                self.url.redacted(),
                "create it, or point the URL at another database",
            )

    async def close(self) -> None:
        self.pool.close()
        await self.pool.wait_closed()


def _discard_unless_in_step(conn: Any, exc: BaseException) -> bool:
    """Close ``conn`` (the pool then drops it) unless ``exc`` is the server's answer to the
    statement: an error raised while reading a reply (text that is not UTF-8, a packet out of
    sequence, a cancelled read) leaves the rest of the reply unread, and the next statement
    on the connection would read it. True when it was closed."""
    from asyncmy.errors import MySQLError

    code = exc.args[0] if isinstance(exc, MySQLError) and exc.args else None
    # Server error numbers start at 1000; 2000-2999 are the client library's own.
    if isinstance(code, int) and code >= 1000 and not 2000 <= code < 3000:
        return False
    conn.close()
    return True


def _undecodable(exc: UnicodeDecodeError) -> DatabaseError:
    return DatabaseError.one(  # type: ignore[return-value]
        f"the database sent text that is not UTF-8: {exc}",
        "database",
        "reflect the schema again so columns of other character sets are converted to UTF-8",
    )


class _MySQLTransaction:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetch_rows(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            async with self.conn.cursor() as cur:
                await cur.execute(text, [_mysql_param(p) for p in params])
                rows = await cur.fetchall()
        except Exception as exc:
            _discard_unless_in_step(self.conn, exc)
            if isinstance(exc, UnicodeDecodeError):
                raise _undecodable(exc) from exc
            raise _mysql_error(exc, writing=True) from exc
        return [tuple(r) for r in rows or ()]

    async def fetch_json(self, text: str, params: Sequence[Any]) -> bytes | None:
        rows = await self.fetch_rows(text, params)
        return _json_bytes(rows[0][0]) if rows else None


def _mysql_error(exc: Exception, *, writing: bool = False) -> Exception:
    """An asyncmy failure as the DatabaseError it means (anything else unchanged)."""
    from asyncmy.errors import MySQLError

    if isinstance(exc, MySQLError):
        code = exc.args[0] if exc.args else 0
        if code in (1969, 3024):  # max_statement_time / max_execution_time exceeded
            return StatementTimeoutError.one(
                "the statement ran past its time limit",
                "database",
                "raise database.statement_timeout_ms",
            )
        if code in _MYSQL_TOO_DEEP:
            return _too_deep("MariaDB/MySQL")
        if code == 1644:  # SIGNAL SQLSTATE '45000'
            return RaisedError.one(str(exc.args[1]) if len(exc.args) > 1 else str(exc), "database")
        if code in (1267, 1270, 1271) and not writing:
            # Illegal mix of collations: a text given to compare with a column of another
            # character set holds a character that set has not (😀 for an ascii column).
            said = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
            return ParameterError.one(
                f"a text given holds a character the column's character set cannot hold ({said})",
                "parameter",
                "give text of that character set, or convert the column to utf8mb4",
            )
        violation = mysql_violation(exc) if writing else None
        if violation is not None:
            return ConstraintError.of(violation)
        return DatabaseError.one(str(exc), "database")
    if isinstance(exc, UnicodeError | OverflowError):
        return ParameterError.one(str(exc), "parameter")
    return exc


def _deliver(job: _SqliteJob, result: Any, failed: bool) -> None:
    """On the event loop: a worker finished ``job``; answer with its result unless the
    deadline (or a refusal) answered first."""
    if job.timer is not None:
        job.timer.cancel()
    if job.answer.done():
        return
    if failed:
        job.answer.set_exception(result)
    else:
        job.answer.set_result(result)


def _sqlite_param(v: Any) -> Any:
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        return v.isoformat(sep=" ")
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, list):
        return [_sqlite_param(x) for x in v]
    return v


def _sqlite_params(params: Sequence[Any]) -> list[Any]:
    return [_sqlite_param(p) for p in params]


class _SqliteTransaction:
    def __init__(self, db: _Sqlite) -> None:
        self.db = db

    async def fetch_rows(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db.writer, self.db._rows, text, params)

    async def fetch_json(self, text: str, params: Sequence[Any]) -> bytes | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.db.writer, self.db._run, text, params)


def _lower(value: bytes | str | None) -> str | None:
    """Text lower-cased as Python does it (SQLite's lower() folds A-Z only), from its bytes:
    each sequence that is not UTF-8 becomes U+FFFD, as the text is served."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return value.lower() if isinstance(value, str) else value


def _real_json(value: float | None) -> str | None:
    """A real as JSON: the shortest text that reads back as the same double (SQLite's own
    JSON keeps 15 digits), infinities as the strings "Infinity" and "-Infinity"."""
    if value is None or value != value:  # SQLite stores NaN as NULL
        return None
    if value in (math.inf, -math.inf):
        return '"Infinity"' if value > 0 else '"-Infinity"'
    return repr(float(value))


def _utf8(raw: bytes) -> bytes:
    """The JSON text SQLite built, as UTF-8: each sequence of a TEXT value that is not UTF-8
    (SQLite stores text of any bytes) becomes U+FFFD, as a decoder replaces it."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raw = raw.decode("utf-8", "replace").encode("utf-8")
    return _whole_characters(raw)


def _base64(value: bytes | str | float | None) -> str | None:
    """Standard Base64 of a BLOB (text is encoded as UTF-8 first, numbers as their text)."""
    if value is None:
        return None
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
    return base64.b64encode(raw).decode("ascii")


def _unbase64(value: str | None) -> bytes | str | None:
    """The BLOB a Base64 text stands for (the text itself when it is not Base64)."""
    if not isinstance(value, str):
        return value
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return value


class _SqliteJob:
    """One statement for the SQLite worker threads, and what the event loop knows of it."""

    __slots__ = ("answer", "cheap", "params", "queued_at", "running", "started", "text", "timer")

    def __init__(
        self, text: str, params: Sequence[Any], cheap: bool, answer: asyncio.Future[bytes | None]
    ) -> None:
        self.text = text
        self.params = params
        self.cheap = cheap
        self.answer = answer
        self.queued_at = time.monotonic()
        self.started: float | None = None  # set by the worker that takes it
        #: The connection running it, once a worker has it (to interrupt it)
        self.running: list[sqlite3.Connection] = []
        self.timer: asyncio.TimerHandle | None = None


class _Sqlite(_Gated):
    """SQLite in worker threads, one connection per thread, read-only by default.

    The threads take statements from two queues, as a pool of connections would: ``gate.size
    - gate.reserved`` threads take cheap statements first and expensive ones after them, the
    other ``gate.reserved`` threads only cheap ones. A statement still queued after
    ``gate.wait_s`` is refused (busy); one running past the client-side deadline is
    interrupted and answered at once.
    """

    dialect = dialect_for("sqlite")

    def __init__(self, url: DatabaseUrl, gate: ConnectionGate, timeout_ms: int) -> None:
        self.url = url
        self.gate = gate
        self.timeout_ms = timeout_ms
        self.local = threading.local()
        self.connections: list[sqlite3.Connection] = []
        self.lock = threading.Lock()
        self.deadline_s = _client_deadline(timeout_ms)
        self.ready = threading.Condition()
        self.cheap_jobs: deque[_SqliteJob] = deque()
        self.expensive_jobs: deque[_SqliteJob] = deque()
        self.closing = False
        self.threads = [
            threading.Thread(
                target=self._work,
                args=(i >= gate.size - gate.reserved,),
                name=f"quiver-sqlite-{i}",
                daemon=True,
            )
            for i in range(gate.size)
        ]
        for thread in self.threads:
            thread.start()
        #: Transactions run on this one thread, one at a time.
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quiver-sqlite-write")
        self.write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: DatabaseUrl, gate: ConnectionGate, timeout_ms: int) -> _Sqlite:
        db = cls(url, gate, timeout_ms)
        try:
            await db.ping()
        except QuiverError:
            await db.close()
            raise
        return db

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = connect_sqlite(
                self.url, mode="rw", isolation_level=None, check_same_thread=False
            )
            for stmt in self.dialect.extra_session_sql:
                conn.execute(stmt)
            conn.create_function("quiver_lower", 1, _lower, deterministic=True)
            conn.create_function("quiver_base64", 1, _base64, deterministic=True)
            conn.create_function("quiver_unbase64", 1, _unbase64, deterministic=True)
            conn.create_function("quiver_real", 1, _real_json, deterministic=True)
            conn.create_function("quiver_not_int", 1, _not_int, deterministic=True)
            conn.create_function("quiver_stored", 2, _stored, deterministic=True)
            conn.create_function("quiver_form", 2, _form, deterministic=True)
            conn.create_function("quiver_int_sum", 2, _int_sum, deterministic=True)
            conn.execute("PRAGMA foreign_keys = ON")
            self.local.conn = conn
            with self.lock:
                self.connections.append(conn)
        return conn

    def _run(
        self,
        text: str,
        params: Sequence[Any],
        running: list[sqlite3.Connection] | None = None,
        timeout_s: float | None = None,
    ) -> bytes | None:

        def fetch(conn: sqlite3.Connection) -> Any:
            # Text as its bytes: SQLite keeps the bytes a TEXT value was given, UTF-8 or not,
            # and its JSON carries them as they are.
            conn.text_factory = bytes
            try:
                return conn.execute(text, _sqlite_params(params)).fetchone()
            finally:
                conn.text_factory = str

        row = self._guarded(fetch, running, timeout_s)
        if row is None or row[0] is None:
            return None
        value = row[0]
        return _utf8(value) if isinstance(value, bytes) else str(value).encode()

    def _rows(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows = self._guarded(lambda conn: conn.execute(text, _sqlite_params(params)).fetchall())
        return [tuple(r) for r in rows]

    def _guarded(
        self,
        work: Callable[[sqlite3.Connection], _T],
        running: list[sqlite3.Connection] | None = None,
        timeout_s: float | None = None,
    ) -> _T:
        """``work`` on this thread's connection, within the time limit (``timeout_s`` when
        given), its failures typed; the connection goes into ``running`` so that a late
        statement can be interrupted."""
        conn = self._connection()
        if running is not None:
            running.append(conn)
        if timeout_s is None and self.timeout_ms:
            timeout_s = self.timeout_ms / 1000
        deadline = time.monotonic() + timeout_s if timeout_s is not None else None
        if deadline is not None:
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            return work(conn)
        except sqlite3.IntegrityError as exc:
            violation = sqlite_violation(exc)
            name = getattr(exc, "sqlite_errorname", "")
            # RAISE(ABORT, ...) in a trigger: SQLITE_CONSTRAINT_TRIGGER where the module reports
            # extended codes; otherwise a constraint failure whose text SQLite did not write
            if name == "SQLITE_CONSTRAINT_TRIGGER" or (
                violation is None and name == "SQLITE_CONSTRAINT"
            ):
                raise RaisedError.one(str(exc), "database") from None
            if violation is None:
                raise DatabaseError.one(str(exc), "database") from exc
            raise ConstraintError.of(violation) from None
        except sqlite3.OperationalError as exc:
            refused = getattr(_refused, "message", None)
            if refused is not None and "user-defined function" in str(exc):
                _refused.message = None
                raise StoredValueError.one(
                    refused, "database", getattr(_refused, "fix", None) or _STORED_FIX
                ) from None
            if "interrupted" in str(exc):
                raise StatementTimeoutError.one(
                    "the statement ran past its time limit",
                    "database",
                    "raise database.statement_timeout_ms",
                ) from None
            if any(m in str(exc) for m in _SQLITE_TOO_DEEP):
                raise _too_deep("SQLite") from None
            if "too many" in str(exc):  # terms, columns, arguments or variables
                raise QueryTooComplexError.one(
                    f"the query is too large for SQLite: {exc}",
                    "database",
                    "ask for fewer fields or values in one query",
                ) from None
            if "integer overflow" in str(exc):
                raise QueryTooComplexError.one(
                    "a sum overflowed SQLite's 64-bit integers", "database", "aggregate fewer rows"
                ) from None
            raise DatabaseError.one(str(exc), "database") from exc
        except (OverflowError, UnicodeError, sqlite3.ProgrammingError) as exc:
            raise ParameterError.one(str(exc), "parameter") from None
        except sqlite3.Error as exc:
            raise DatabaseError.one(str(exc), "database") from exc
        finally:
            if deadline is not None:
                conn.set_progress_handler(None, 0)

    async def fetch_json(
        self,
        text: str,
        params: Sequence[Any],
        *,
        cheap: bool = False,
        pieces: Sequence[str] | None = None,  # statements run one by one here
    ) -> bytes | None:
        cheap = self.slow.cheap(text, cheap)
        try:
            return await self._fetch_queued(text, params, cheap)
        except _MovedOut:
            # A cheap statement held a thread kept for cheap ones too long: it starts again
            # as expensive (see SlowStatements).
            return await self._fetch_queued(text, params, False)

    async def _fetch_queued(self, text: str, params: Sequence[Any], cheap: bool) -> bytes | None:
        loop = asyncio.get_running_loop()
        job = _SqliteJob(text, params, cheap, loop.create_future())
        with self.ready:
            if self.closing:
                raise DatabaseError.one("the database is closed", "database")
            (self.cheap_jobs if cheap else self.expensive_jobs).append(job)
            self.ready.notify_all()
        first = self.gate.wait_s
        if self.deadline_s is not None:
            first = min(first, self.deadline_s)
        job.timer = loop.call_later(first, self._check, job)
        try:
            return await job.answer
        except asyncio.CancelledError:
            self._unqueue(job)
            raise

    def _unqueue(self, job: _SqliteJob) -> bool:
        """Take a job that no worker has started off its queue (True), else leave it (False)."""
        with self.ready:
            if job.started is not None:
                return False
            (self.cheap_jobs if job.cheap else self.expensive_jobs).remove(job)
            return True

    def _check(self, job: _SqliteJob) -> None:
        """On the event loop: refuse a job queued too long, interrupt one running too long."""
        if job.answer.done():
            return
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        started = job.started
        if started is None:
            due = job.queued_at + self.gate.wait_s
            if now < due:
                job.timer = loop.call_later(due - now, self._check, job)
            elif self._unqueue(job):
                job.answer.set_exception(self._busy(job.cheap))
                return
            else:
                started = job.started
        if started is None or self.deadline_s is None:
            return
        due = started + self.deadline_s
        if now < due:
            job.timer = loop.call_later(due - now, self._check, job)
            return
        # The progress handler did not stop it (a long sort, a slow function): interrupt it
        # and answer now; its thread takes the next statement when this one ends.
        for conn in job.running:
            conn.interrupt()
        job.answer.set_exception(_timed_out())

    def _work(self, only_cheap: bool) -> None:
        """A worker thread: run queued statements until the database closes."""
        while True:
            with self.ready:
                while True:
                    if self.closing:
                        return
                    if self.cheap_jobs:
                        job = self.cheap_jobs.popleft()
                        break
                    if not only_cheap and self.expensive_jobs:
                        job = self.expensive_jobs.popleft()
                        break
                    self.ready.wait()
                started = job.started = time.monotonic()
            # On a thread kept for cheap statements, one runs for at most slow_statement_ms.
            admitted = IN_RESERVE if only_cheap else ADMITTED
            timeout_s = self.timeout_ms / 1000 if self.timeout_ms else None
            reserve_limit = _reserve_limit(self.slow, admitted, timeout_s)
            try:
                if job.cheap and not self.slow.cheap(job.text, True):
                    raise _MovedOut  # its text proved slow while it waited: wait as expensive
                result: Any = self._run(job.text, job.params, job.running, reserve_limit)
                failed = False
            except _MovedOut as exc:
                result, failed = exc, True
            except StatementTimeoutError as exc:
                result, failed = exc, True
                if reserve_limit is not None:
                    result = _MovedOut()
                    self.slow.ran(job.text, math.inf)
            except BaseException as exc:
                result, failed = exc, True
            if job.cheap:
                self.slow.ran(job.text, time.monotonic() - started)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                job.answer.get_loop().call_soon_threadsafe(_deliver, job, result, failed)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """SQLite has one writer: transactions take turns on one thread and its connection,
        which holds the write lock from BEGIN IMMEDIATE to the end."""
        loop = asyncio.get_running_loop()

        def run(statement: str) -> None:
            self._guarded(lambda conn: conn.execute(statement))

        async with self.write_lock:
            await loop.run_in_executor(self.writer, run, "BEGIN IMMEDIATE")
            try:
                yield _SqliteTransaction(self)
            except BaseException:
                await loop.run_in_executor(self.writer, run, "ROLLBACK")
                raise
            try:
                await loop.run_in_executor(self.writer, run, "COMMIT")
            except BaseException:
                await loop.run_in_executor(self.writer, run, "ROLLBACK")
                raise

    async def ping(self) -> None:
        await self.fetch_json("SELECT 1", (), cheap=True)

    async def close(self) -> None:
        with self.ready:
            self.closing = True
            self.ready.notify_all()
        for thread in self.threads:
            await asyncio.to_thread(thread.join)
        self.writer.shutdown(wait=True)
        with self.lock:
            for conn in self.connections:
                conn.close()
            self.connections.clear()
