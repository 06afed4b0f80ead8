"""The dispatch ledger and the dead-letter table, beside the change log in the same database.

The ledger has one row per event, observer and action (``delivered`` or ``dead``, with its
attempts and last error), and one row per event with observer and action ``*`` once every
action the event called for has a final outcome. A scan reads the change rows of the last
``lookback`` seconds that have no such ``*`` row, in id order: a row committed late with a
smaller id is still found, and a dispatcher stopped at any point finds again every event it
had not finished, skipping the actions the ledger already records.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from quiver.observers.event import Event, Job
from quiver.sql.changelog import ensure_change_log, json_value
from quiver.sql.database import Database, DatabaseError
from quiver.sql.dialects import Dialect

__all__ = [
    "EVENT_DONE",
    "ClaimedBatch",
    "DeadLetterRow",
    "DispatchStore",
    "claims_table",
    "placeholders",
]

EVENT_DONE = "*"

_CLAIMS_DDL = {
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS {t} (event_id BIGINT PRIMARY KEY, owner TEXT NOT NULL,"
        " token TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)"
    ),
    "mysql": (
        "CREATE TABLE IF NOT EXISTS {t} (event_id BIGINT PRIMARY KEY, owner VARCHAR(200) NOT NULL,"
        " token VARCHAR(64) NOT NULL, expires_at DOUBLE NOT NULL) ENGINE=InnoDB"
    ),
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS {t} (event_id INTEGER PRIMARY KEY, owner TEXT NOT NULL,"
        " token TEXT NOT NULL, expires_at REAL NOT NULL)"
    ),
}
# Taking over a claim only when it expired; parameters: the claim time (once, or thrice).
_CLAIM_UPSERT = {
    "postgresql": "ON CONFLICT (event_id) DO UPDATE SET owner = EXCLUDED.owner,"
    " token = EXCLUDED.token, expires_at = EXCLUDED.expires_at WHERE k.expires_at < ?",
    "sqlite": "ON CONFLICT (event_id) DO UPDATE SET owner = excluded.owner,"
    " token = excluded.token, expires_at = excluded.expires_at WHERE k.expires_at < ?",
    "mysql": "ON DUPLICATE KEY UPDATE owner = IF(expires_at < ?, VALUES(owner), owner),"
    " token = IF(expires_at < ?, VALUES(token), token),"
    " expires_at = IF(expires_at < ?, VALUES(expires_at), expires_at)",
}
# Rows another dispatcher's claim transaction holds are skipped, not waited for; the claim
# upsert decides in the end. PostgreSQL locks the candidates as it reads them (only the change
# rows: FOR UPDATE OF c), so a second dispatcher reads the rows after them. MariaDB locks them
# by key after a plain read: a locking range scan of the change log would take gap locks that
# make the writers' inserts wait.
_LOCK_CANDIDATES = {"postgresql": " FOR UPDATE OF c SKIP LOCKED"}
_LOCK_BY_KEY = {"mysql": " FOR UPDATE SKIP LOCKED"}


def claims_table(ledger_table: str) -> str:
    """The table of the dispatchers' claims on events, beside the ledger ``ledger_table``."""
    return f"{ledger_table}_claims"[:63]


_LEDGER_DDL = {
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS {t} (event_id BIGINT NOT NULL, observer TEXT NOT NULL,"
        " action TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,"
        " last_error TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (event_id, observer, action))"
    ),
    "mysql": (
        "CREATE TABLE IF NOT EXISTS {t} (event_id BIGINT NOT NULL, observer VARCHAR(120) NOT NULL,"
        " action VARCHAR(120) NOT NULL, status VARCHAR(10) NOT NULL, attempts INT NOT NULL,"
        " last_error TEXT, updated_at VARCHAR(40) NOT NULL,"
        " PRIMARY KEY (event_id, observer, action)) ENGINE=InnoDB"
    ),
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS {t} (event_id INTEGER NOT NULL, observer TEXT NOT NULL,"
        " action TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,"
        " last_error TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (event_id, observer, action))"
    ),
}
_DLQ_DDL = {
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS {t} (id BIGSERIAL PRIMARY KEY, event_id BIGINT NOT NULL,"
        " observer TEXT NOT NULL, action TEXT NOT NULL, idempotency_key TEXT NOT NULL,"
        " payload TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL,"
        " failed_at TEXT NOT NULL)"
    ),
    "mysql": (
        "CREATE TABLE IF NOT EXISTS {t} (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
        " event_id BIGINT NOT NULL, observer VARCHAR(120) NOT NULL, action VARCHAR(120) NOT NULL,"
        " idempotency_key VARCHAR(300) NOT NULL, payload LONGTEXT NOT NULL, error TEXT NOT NULL,"
        " attempts INT NOT NULL, failed_at VARCHAR(40) NOT NULL) ENGINE=InnoDB"
    ),
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " event_id INTEGER NOT NULL, observer TEXT NOT NULL, action TEXT NOT NULL,"
        " idempotency_key TEXT NOT NULL, payload TEXT NOT NULL, error TEXT NOT NULL,"
        " attempts INTEGER NOT NULL, failed_at TEXT NOT NULL)"
    ),
}
# The earliest changed_at a scan reads; the one parameter is the lookback in seconds.
_CUTOFF = {
    "postgresql": "now() - (CAST(? AS double precision) * interval '1 second')",
    "mysql": "CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND",
    "sqlite": "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
}
_UPSERT = {
    "postgresql": "ON CONFLICT (event_id, observer, action) DO UPDATE SET status = EXCLUDED.status,"
    " attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,"
    " updated_at = EXCLUDED.updated_at",
    "sqlite": "ON CONFLICT (event_id, observer, action) DO UPDATE SET status = excluded.status,"
    " attempts = excluded.attempts, last_error = excluded.last_error,"
    " updated_at = excluded.updated_at",
    "mysql": "ON DUPLICATE KEY UPDATE status = VALUES(status), attempts = VALUES(attempts),"
    " last_error = VALUES(last_error), updated_at = VALUES(updated_at)",
}


@dataclass(frozen=True)
class ClaimedBatch:
    """The events a scan claimed, the (observer, action) pairs the ledger records for each,
    and whether more may be pending: the scan found a whole batch of candidates, or lost
    some to another claim. When not, a scan right away would find nothing new."""

    events: list[Event]
    finished: dict[int, set[tuple[str, str]]]
    more: bool


@dataclass(frozen=True)
class DeadLetterRow:
    id: int
    event_id: int
    observer: str
    action: str
    idempotency_key: str
    payload: Mapping[str, Any]
    error: str
    attempts: int
    failed_at: str

    def job(self) -> Job:
        return Job(self.event_id, self.observer, self.action, self.payload)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _json(value: Any) -> Any:
    """A JSON column's value, its numbers exact (see :func:`json_value`)."""
    return json_value(value)


_EVENT_COLUMNS = (
    "c.id, c.entity, c.entity_key, c.operation, c.before_image, c.after_image,"
    " c.changed_fields, c.actor, c.tenant_id, c.transaction_id, c.changed_at"
)


# PostgreSQL claims a batch in two statements of fixed text (prepared once), each committed
# by itself: _PG_CLAIM takes the candidates (unfinished, unclaimed or with an expired claim,
# locked as they are read so that a second dispatcher skips them) and upserts their claims,
# taking over only expired ones: RETURNING names the events claimed (returned with how many
# candidates there were). _PG_CLAIMED then reads
# those change rows with their ledger rows ("observer\naction") as one JSON array; being a
# statement of its own, it sees every ledger row committed before the claims were taken.
# _PG_CLAIM parameters: $1 lowest id - 1, $2 entities, $3 lookback seconds, $4 now, $5 limit,
# $6 owner, $7 token, $8 expiry.
_PG_CLAIM = (
    "WITH cand AS (SELECT c.id FROM {changes} c WHERE c.id > $1 AND c.entity = ANY($2::text[])"
    " AND {changed_at} >= now() - ($3::double precision * interval '1 second')"
    " AND (SELECT count(*) FROM {ledger} l WHERE l.event_id = c.id AND l.observer = '*'"
    " AND l.action = '*') = 0"
    " AND (SELECT count(*) FROM {claims} k WHERE k.event_id = c.id"
    " AND k.expires_at >= $4::double precision) = 0"
    " ORDER BY c.id LIMIT $5::int FOR UPDATE OF c SKIP LOCKED),"
    " mine AS (INSERT INTO {claims} AS k (event_id, owner, token, expires_at)"
    " SELECT id, $6::text, $7::text, $8::double precision FROM cand"
    " ON CONFLICT (event_id) DO UPDATE SET owner = EXCLUDED.owner, token = EXCLUDED.token,"
    " expires_at = EXCLUDED.expires_at WHERE k.expires_at < $4::double precision"
    " RETURNING event_id)"
    " SELECT json_build_array((SELECT count(*) FROM cand), (SELECT json_agg(event_id) FROM mine))"
)
# The ledger and claims are looked up by key for each candidate (count(*) = 0, not NOT EXISTS,
# which the planner turns into a join: without statistics it guesses that one ledger row
# matches and joins every candidate with a scan of the whole ledger).
# The window's condition: for a scan from an id (above most of the window's rows), one the
# planner cannot answer from the changed_at index, so that it reads the ids in order from
# there instead of the whole window's index entries (without statistics it picks the latter).
_PG_WINDOW = {True: "c.changed_at", False: "(c.changed_at + interval '0 seconds')"}
_PG_CLAIMED = (
    "SELECT json_agg(json_build_array(c.id, c.entity, c.entity_key, c.operation,"
    " c.before_image, c.after_image, c.changed_fields, c.actor, c.tenant_id, c.transaction_id,"
    " to_char(c.changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'),"
    " ARRAY(SELECT l.observer || chr(10) || l.action FROM {ledger} l"
    " WHERE l.event_id = c.id)) ORDER BY c.id)"
    " FROM {changes} c WHERE c.id = ANY($1::bigint[])"
)
# A batch's ledger rows and the end of its claims (token $1, or NULL) in one statement; the
# claims are looked up by their events' ids (the key), not by their token (no index).
_PG_RECORD = (
    "WITH gone AS (DELETE FROM {claims} WHERE event_id = ANY($2::bigint[]) AND token = $1::text)"
    " INSERT INTO {ledger} (event_id, observer, action, status, attempts, last_error,"
    " updated_at) SELECT e, o, a, s, n, NULL, $7::text FROM unnest($2::bigint[], $3::text[],"
    " $4::text[], $5::text[], $6::int[]) AS r (e, o, a, s, n) {upsert}"
)


def _events(rows: Sequence[tuple[Any, ...]]) -> list[Event]:
    return [
        Event(
            id=int(r[0]),
            entity=r[1],
            key=_json(r[2]),
            operation=r[3],
            before=_json(r[4]),
            after=_json(r[5]),
            changed_fields=tuple(_json(r[6]) or ()),
            actor=r[7],
            tenant_id=r[8],
            transaction_id=r[9],
            changed_at=_text_time(r[10]),
        )
        for r in rows
    ]


def placeholders(dialect: Dialect, text: str) -> str:
    """``text`` with its ``?`` placeholders in the dialect's spelling."""
    pieces = text.split("?")
    out = [pieces[0]]
    for n, piece in enumerate(pieces[1:], start=1):
        out.append(dialect.placeholder(n))
        out.append(piece)
    return "".join(out)


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _text_time(value: Any) -> str:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return str(value.isoformat(timespec="microseconds"))
    return str(value)


class DispatchStore:
    """Reads the change log and writes the ledger and dead-letter tables of one database."""

    def __init__(
        self,
        db: Database,
        change_log_table: str,
        ledger_table: str,
        dead_letter_table: str,
    ) -> None:
        self.db = db
        self.dialect: Dialect = db.dialect
        self.changes = self.dialect.quote_ident(change_log_table)
        self.ledger = self.dialect.quote_ident(ledger_table)
        self.dlq = self.dialect.quote_ident(dead_letter_table)
        self._change_log_table = change_log_table
        self.claims = self.dialect.quote_ident(claims_table(ledger_table))
        self._claim_texts: dict[bool, str] = {}  # by whether the scan reads the whole window
        self._claimed_text = ""
        self._record_text: str | None = None

    def _text(self, text: str) -> str:
        return placeholders(self.dialect, text)

    async def _run(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.db.transaction() as tx:
            return await tx.fetch_rows(self._text(text), list(params))

    async def ensure(self) -> None:
        """Create the change log (with an index on ``changed_at`` for the scans), ledger and
        dead-letter tables when missing."""
        for attempt in range(3):
            try:
                await self._ensure()
                return
            except DatabaseError:
                # Two dispatchers starting at once: PostgreSQL's CREATE TABLE IF NOT EXISTS
                # can fail in the one that loses the race; the tables exist the next time.
                if attempt == 2:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _ensure(self) -> None:
        name = self.dialect.name
        async with self.db.transaction() as tx:
            await ensure_change_log(tx, self.dialect, self._change_log_table)
            index = self.dialect.quote_ident(f"{self._change_log_table}_changed_at")
            await tx.fetch_rows(
                f"CREATE INDEX IF NOT EXISTS {index} ON {self.changes} (changed_at)", []
            )
            await tx.fetch_rows(_LEDGER_DDL[name].format(t=self.ledger), [])
            await tx.fetch_rows(_DLQ_DDL[name].format(t=self.dlq), [])
            await tx.fetch_rows(_CLAIMS_DDL[name].format(t=self.claims), [])

    async def pending(self, entities: Sequence[str], lookback: float, limit: int) -> list[Event]:
        """Change rows of ``entities`` from the last ``lookback`` seconds not yet finished."""
        if not entities:
            return []
        where, params = self._unfinished(entities, lookback)
        rows = await self._run(
            f"SELECT {_EVENT_COLUMNS} FROM {self.changes} c WHERE {where} ORDER BY c.id LIMIT ?",
            [*params, limit],
        )
        return _events(rows)

    async def claim(
        self,
        entities: Sequence[str],
        lookback: float,
        limit: int,
        owner: str,
        token: str,
        until: float,
    ) -> list[Event]:
        """Like :meth:`pending`, but only events no other dispatcher holds a live claim on,
        each claimed for ``owner`` under ``token`` until ``until`` (seconds since the epoch),
        in one transaction. Two dispatchers never hold a live claim on one event; a claim
        left by a dispatcher that died expires and is taken over."""
        batch = await self.claim_batch(entities, lookback, limit, owner, token, until)
        return batch.events

    async def claim_batch(
        self,
        entities: Sequence[str],
        lookback: float,
        limit: int,
        owner: str,
        token: str,
        until: float,
        after: int = 0,
    ) -> ClaimedBatch:
        """:meth:`claim`, with :meth:`finished_among` of the claimed events read in the same
        transaction (only change rows with an id above ``after``; 0: all), and whether more
        events may be pending (see :class:`ClaimedBatch`)."""
        if not entities:
            return ClaimedBatch([], {}, more=False)
        now = time.time()
        if self.dialect.name == "postgresql":
            return await self._claim_postgresql(
                entities, lookback, limit, owner, token, until, after, now
            )
        where, params = self._unfinished(entities, lookback)
        if after > 0:
            where, params = f"c.id > ? AND {where}", [after, *params]
        name = self.dialect.name
        async with self.db.transaction() as tx:
            rows = await tx.fetch_rows(
                self._text(
                    f"SELECT {_EVENT_COLUMNS} FROM {self.changes} c WHERE {where}"
                    f" AND NOT EXISTS (SELECT 1 FROM {self.claims} k WHERE k.event_id = c.id"
                    " AND k.expires_at >= ?) ORDER BY c.id LIMIT ?" + _LOCK_CANDIDATES.get(name, "")
                ),
                [*params, now, limit],
            )
            if not rows:
                return ClaimedBatch([], {}, more=False)
            ids = [int(r[0]) for r in rows]
            if name in _LOCK_BY_KEY:
                locked = await tx.fetch_rows(
                    self._text(
                        f"SELECT id FROM {self.changes} WHERE id IN ({_marks(ids)})"
                        f"{_LOCK_BY_KEY[name]}"
                    ),
                    ids,
                )
                held = {int(r[0]) for r in locked}
                ids = [i for i in ids if i in held]
                if not ids:
                    return ClaimedBatch([], {}, more=True)
            values = ", ".join("(?, ?, ?, ?)" for _ in ids)
            upsert = _CLAIM_UPSERT[name]
            await tx.fetch_rows(
                self._text(
                    f"INSERT INTO {self.claims}{'' if name == 'mysql' else ' AS k'}"
                    f" (event_id, owner, token, expires_at) VALUES {values} {upsert}"
                ),
                [
                    *(v for i in ids for v in (i, owner, token, until)),
                    *([now] * upsert.count("?")),
                ],
            )
            mine = await tx.fetch_rows(
                self._text(
                    f"SELECT event_id FROM {self.claims} WHERE event_id IN ({_marks(ids)})"
                    " AND token = ?"
                ),
                [*ids, token],
            )
            claimed = sorted(int(r[0]) for r in mine)
            finished: dict[int, set[tuple[str, str]]] = {i: set() for i in claimed}
            if claimed:
                for r in await tx.fetch_rows(
                    self._text(
                        f"SELECT event_id, observer, action FROM {self.ledger}"
                        f" WHERE event_id IN ({_marks(claimed)})"
                    ),
                    claimed,
                ):
                    finished[int(r[0])].add((r[1], r[2]))
        events = [e for e in _events(rows) if e.id in finished]
        return ClaimedBatch(events, finished, more=len(rows) >= limit or len(events) < len(rows))

    async def _claim_postgresql(
        self,
        entities: Sequence[str],
        lookback: float,
        limit: int,
        owner: str,
        token: str,
        until: float,
        after: int,
        now: float,
    ) -> ClaimedBatch:
        """:meth:`claim_batch` in two round trips (see _PG_CLAIM)."""
        if not self._claim_texts:
            names = {"changes": self.changes, "claims": self.claims, "ledger": self.ledger}
            for whole, column in _PG_WINDOW.items():
                self._claim_texts[whole] = _PG_CLAIM.format(changed_at=column, **names)
            self._claimed_text = _PG_CLAIMED.format(**names)
        answer = await self.db.fetch_json(
            self._claim_texts[after <= 0],
            [after, list(entities), float(lookback), now, limit, owner, token, until],
        )
        candidates, ids = orjson.loads(answer or b"[0, null]")
        more = candidates >= limit or len(ids or ()) < candidates
        if not ids:
            return ClaimedBatch([], {}, more=more)
        doc = await self.db.fetch_json(self._claimed_text, [tuple(ids)])
        if doc is None:
            return ClaimedBatch([], {}, more=more)
        rows = json_value(doc)
        finished: dict[int, set[tuple[str, str]]] = {}
        for r in rows:
            done = finished[int(r[0])] = set()
            for pair in r[11]:
                observer, _, action = pair.partition("\n")
                done.add((observer, action))
        return ClaimedBatch(_events(rows), finished, more=more)

    async def renew(self, token: str, until: float) -> None:
        """Extend the claims taken under ``token`` to ``until``."""
        await self._run(f"UPDATE {self.claims} SET expires_at = ? WHERE token = ?", [until, token])

    async def release(self, token: str) -> None:
        """Drop the claims taken under ``token``: their unfinished events are free at once."""
        await self._run(f"DELETE FROM {self.claims} WHERE token = ?", [token])

    async def release_owner(self, owner: str) -> None:
        """Drop every claim of the dispatcher ``owner`` (it stops)."""
        await self._run(f"DELETE FROM {self.claims} WHERE owner = ?", [owner])

    async def claimed(self) -> list[tuple[int, str, float]]:
        """Every claim: event id, owner, expiry."""
        rows = await self._run(
            f"SELECT event_id, owner, expires_at FROM {self.claims} ORDER BY event_id"
        )
        return [(int(r[0]), str(r[1]), float(r[2])) for r in rows]

    async def finished_among(self, event_ids: Sequence[int]) -> dict[int, set[tuple[str, str]]]:
        """:meth:`finished` of several events in one query."""
        out: dict[int, set[tuple[str, str]]] = {i: set() for i in event_ids}
        if not event_ids:
            return out
        rows = await self._run(
            f"SELECT event_id, observer, action FROM {self.ledger}"
            f" WHERE event_id IN ({_marks(event_ids)})",
            list(event_ids),
        )
        for r in rows:
            out.setdefault(int(r[0]), set()).add((r[1], r[2]))
        return out

    def _unfinished(self, entities: Sequence[str], lookback: float) -> tuple[str, list[Any]]:
        """The condition (on change rows ``c``) of :meth:`pending` and :meth:`backlog`."""
        name = self.dialect.name
        span: Any = f"-{lookback} seconds" if name == "sqlite" else lookback
        if name == "mysql":
            span = max(1, int(lookback))
        marks = ", ".join("?" for _ in entities)
        where = (
            f"c.entity IN ({marks}) AND c.changed_at >= {_CUTOFF[name]}"
            f" AND NOT EXISTS (SELECT 1 FROM {self.ledger} l WHERE l.event_id = c.id"
            " AND l.observer = ? AND l.action = ?)"
        )
        return where, [*entities, span, EVENT_DONE, EVENT_DONE]

    async def backlog(self, entities: Sequence[str], lookback: float) -> int:
        """How many change rows of ``entities`` from the last ``lookback`` seconds are not
        yet finished: what :meth:`pending` would return without a limit."""
        if not entities:
            return 0
        where, params = self._unfinished(entities, lookback)
        rows = await self._run(f"SELECT COUNT(*) FROM {self.changes} c WHERE {where}", params)
        return int(rows[0][0])

    async def dead_letter_count(self) -> int:
        rows = await self._run(f"SELECT COUNT(*) FROM {self.dlq}")
        return int(rows[0][0])

    async def finished(self, event_id: int) -> set[tuple[str, str]]:
        """(observer, action) pairs of the event the ledger records as delivered or dead."""
        rows = await self._run(
            f"SELECT observer, action FROM {self.ledger} WHERE event_id = ?", [event_id]
        )
        return {(r[0], r[1]) for r in rows}

    async def record(self, job: Job, status: str, attempts: int, error: str | None = None) -> None:
        await self._run(
            self._upsert(),
            self._ledger_row(job.event_id, job.observer, job.action, status, attempts, error),
        )

    async def record_many(
        self, outcomes: Sequence[tuple[int, str, str, str, int]], release: str | None = None
    ) -> None:
        """Ledger rows (event id, observer, action, status, attempts) in one transaction,
        which also drops the claims taken under the token ``release`` if given (on
        PostgreSQL only those of the outcomes' events: give every claimed event one)."""
        if not outcomes and release is None:
            return
        stamp = _now()
        if self.dialect.name == "postgresql":
            if self._record_text is None:
                self._record_text = _PG_RECORD.format(
                    claims=self.claims, ledger=self.ledger, upsert=_UPSERT["postgresql"]
                )
            await self.db.fetch_json(
                self._record_text,
                # Tuples: taken as arrays as they are, never converted value by value.
                [release, *(tuple(column) for column in zip(*outcomes, strict=True)), stamp]
                if outcomes
                else [release, (), (), (), (), (), stamp],
            )
            return
        async with self.db.transaction() as tx:
            if release is not None:
                await tx.fetch_rows(
                    self._text(f"DELETE FROM {self.claims} WHERE token = ?"), [release]
                )
            for first in range(0, len(outcomes), 500):
                chunk = outcomes[first : first + 500]
                values = ", ".join("(?, ?, ?, ?, ?, NULL, ?)" for _ in chunk)
                await tx.fetch_rows(
                    self._text(
                        f"INSERT INTO {self.ledger} (event_id, observer, action, status,"
                        f" attempts, last_error, updated_at) VALUES {values}"
                        f" {_UPSERT[self.dialect.name]}"
                    ),
                    [v for row in chunk for v in (*row, stamp)],
                )

    def _upsert(self) -> str:
        return (
            f"INSERT INTO {self.ledger} (event_id, observer, action, status, attempts,"
            f" last_error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) {_UPSERT[self.dialect.name]}"
        )

    @staticmethod
    def _ledger_row(
        event_id: int, observer: str, action: str, status: str, attempts: int, error: str | None
    ) -> list[Any]:
        return [event_id, observer, action, status, attempts, error, _now()]

    async def finish(self, event_id: int) -> None:
        """Mark the event done: every action it called for has a final outcome."""
        await self._run(
            self._upsert(), self._ledger_row(event_id, EVENT_DONE, EVENT_DONE, "done", 0, None)
        )

    async def dead_letter(self, job: Job, error: str, attempts: int) -> None:
        """Move a job to the dead-letter table and record it as dead, in one transaction."""
        async with self.db.transaction() as tx:
            await tx.fetch_rows(
                self._text(
                    f"INSERT INTO {self.dlq} (event_id, observer, action, idempotency_key,"
                    " payload, error, attempts, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    job.event_id,
                    job.observer,
                    job.action,
                    job.idempotency_key,
                    job.body().decode(),
                    error,
                    attempts,
                    _now(),
                ],
            )
            await tx.fetch_rows(
                self._text(self._upsert()),
                self._ledger_row(job.event_id, job.observer, job.action, "dead", attempts, error),
            )

    async def dead_letters(self, limit: int = 100) -> list[DeadLetterRow]:
        rows = await self._run(
            "SELECT id, event_id, observer, action, idempotency_key, payload, error, attempts,"
            f" failed_at FROM {self.dlq} ORDER BY id LIMIT ?",
            [limit],
        )
        return [self._dead(r) for r in rows]

    async def dead_letter_by_id(self, dead_id: int) -> DeadLetterRow | None:
        rows = await self._run(
            "SELECT id, event_id, observer, action, idempotency_key, payload, error, attempts,"
            f" failed_at FROM {self.dlq} WHERE id = ?",
            [dead_id],
        )
        return self._dead(rows[0]) if rows else None

    @staticmethod
    def _dead(r: tuple[Any, ...]) -> DeadLetterRow:
        return DeadLetterRow(
            int(r[0]), int(r[1]), r[2], r[3], r[4], _json(r[5]), r[6], int(r[7]), r[8]
        )

    async def redelivered(self, row: DeadLetterRow, attempts: int) -> None:
        """A dead letter delivered after all: drop it and record the delivery."""
        async with self.db.transaction() as tx:
            await tx.fetch_rows(self._text(f"DELETE FROM {self.dlq} WHERE id = ?"), [row.id])
            await tx.fetch_rows(
                self._text(self._upsert()),
                self._ledger_row(
                    row.event_id,
                    row.observer,
                    row.action,
                    "delivered",
                    row.attempts + attempts,
                    None,
                ),
            )

    async def retry_failed(self, row: DeadLetterRow, error: str, attempts: int) -> None:
        await self._run(
            f"UPDATE {self.dlq} SET error = ?, attempts = ?, failed_at = ? WHERE id = ?",
            [error, row.attempts + attempts, _now(), row.id],
        )

    async def prune(self, lookback: float) -> int:
        """Delete ledger rows last written more than twice ``lookback`` ago: their events are
        outside every scan's window, so nothing reads them again. How many were deleted."""
        cutoff = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2 * lookback)).isoformat(
            timespec="microseconds"
        )
        count = await self._run(
            f"SELECT COUNT(*) FROM {self.ledger} WHERE updated_at < ?", [cutoff]
        )
        await self._run(f"DELETE FROM {self.ledger} WHERE updated_at < ?", [cutoff])
        # Claims of dispatchers that died, expired long ago.
        await self._run(f"DELETE FROM {self.claims} WHERE expires_at < ?", [time.time() - 3600])
        return int(count[0][0])

    async def purge(self, dead_id: int | None = None) -> int:
        """Delete one dead letter (or all); how many were deleted. Their ledger rows stay
        ``dead``, so they are never delivered again."""
        where, params = ("WHERE id = ?", [dead_id]) if dead_id is not None else ("", [])
        count = await self._run(f"SELECT COUNT(*) FROM {self.dlq} {where}", params)
        await self._run(f"DELETE FROM {self.dlq} {where}", params)
        return int(count[0][0])
