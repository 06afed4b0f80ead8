"""The dispatch ledger and the dead-letter table, beside the change log in the same database.

The ledger has one row per event, observer and action (``delivered`` or ``dead``, with its
attempts and last error), and one row per event with observer and action ``*`` once every
action the event called for has a final outcome. A scan reads the change rows of the last
``lookback`` seconds that have no such ``*`` row, in id order: a row committed late with a
smaller id is still found, and a dispatcher stopped at any point finds again every event it
had not finished, skipping the actions the ledger already records.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from quiver.observers.event import Event, Job
from quiver.sql.changelog import ensure_change_log
from quiver.sql.database import Database
from quiver.sql.dialects import Dialect

__all__ = ["EVENT_DONE", "DeadLetterRow", "DispatchStore"]

EVENT_DONE = "*"

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
    if value is None or isinstance(value, dict | list):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value)
    return orjson.loads(value)


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

    def _text(self, text: str) -> str:
        """``?`` placeholders in the dialect's spelling."""
        pieces = text.split("?")
        out = [pieces[0]]
        for n, piece in enumerate(pieces[1:], start=1):
            out.append(self.dialect.placeholder(n))
            out.append(piece)
        return "".join(out)

    async def _run(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.db.transaction() as tx:
            return await tx.fetch_rows(self._text(text), list(params))

    async def ensure(self) -> None:
        """Create the change log (with an index on ``changed_at`` for the scans), ledger and
        dead-letter tables when missing."""
        name = self.dialect.name
        async with self.db.transaction() as tx:
            await ensure_change_log(tx, self.dialect, self._change_log_table)
            index = self.dialect.quote_ident(f"{self._change_log_table}_changed_at")
            await tx.fetch_rows(
                f"CREATE INDEX IF NOT EXISTS {index} ON {self.changes} (changed_at)", []
            )
            await tx.fetch_rows(_LEDGER_DDL[name].format(t=self.ledger), [])
            await tx.fetch_rows(_DLQ_DDL[name].format(t=self.dlq), [])

    async def pending(self, entities: Sequence[str], lookback: float, limit: int) -> list[Event]:
        """Change rows of ``entities`` from the last ``lookback`` seconds not yet finished."""
        if not entities:
            return []
        where, params = self._unfinished(entities, lookback)
        rows = await self._run(
            "SELECT c.id, c.entity, c.entity_key, c.operation, c.before_image, c.after_image,"
            " c.changed_fields, c.actor, c.tenant_id, c.transaction_id, c.changed_at"
            f" FROM {self.changes} c WHERE {where} ORDER BY c.id LIMIT ?",
            [*params, limit],
        )
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
        return int(count[0][0])

    async def purge(self, dead_id: int | None = None) -> int:
        """Delete one dead letter (or all); how many were deleted. Their ledger rows stay
        ``dead``, so they are never delivered again."""
        where, params = ("WHERE id = ?", [dead_id]) if dead_id is not None else ("", [])
        count = await self._run(f"SELECT COUNT(*) FROM {self.dlq} {where}", params)
        await self._run(f"DELETE FROM {self.dlq} {where}", params)
        return int(count[0][0])
