"""The job queue: jobs the ``job`` action enqueues and ``quiver jobs work`` runs.

:class:`JobQueue` is what the action and the worker need of a queue; :class:`SqlJobQueue`
keeps it in a table of the observed database (one row per job, its idempotency key unique, so
an action delivered twice enqueues one job). A worker claims due jobs for a lease (skipping
rows another worker holds on PostgreSQL and MariaDB; SQLite's write lock makes the claim
exclusive), runs them, then marks them done, due again later, or dead. A job whose worker died
is claimed again once its lease expired: a job runs at least once.

==============  ===============================================================
id              increasing number of the job
name            the registered job function to run
idempotency_key the enqueuing action's key (event id, observer, action): unique
payload         JSON document handed to the function
event           JSON event document of the enqueuing action (for the DLQ)
event_id        the event, observer and action that enqueued it
status          ``queued``, ``running``, ``done`` or ``dead``
attempts        runs started so far
run_after       when it is due (seconds since the epoch)
lease_until     when a running job's claim expires (seconds since the epoch)
owner           the worker that claimed it last
last_error      the last failure
==============  ===============================================================
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from quiver.observers.store import placeholders
from quiver.sql.changelog import json_text, json_value
from quiver.sql.database import Database, Transaction

__all__ = [
    "DEFAULT_JOBS_TABLE",
    "STATUSES",
    "JobQueue",
    "JobRow",
    "NewJob",
    "SqlJobQueue",
    "job_row",
]

DEFAULT_JOBS_TABLE = "quiver_jobs"

_DDL = {
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS {t} (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL,"
        " idempotency_key TEXT NOT NULL UNIQUE, payload TEXT NOT NULL, event TEXT NOT NULL,"
        " event_id BIGINT NOT NULL, observer TEXT NOT NULL, action TEXT NOT NULL,"
        " status TEXT NOT NULL, attempts INTEGER NOT NULL, run_after DOUBLE PRECISION NOT NULL,"
        " lease_until DOUBLE PRECISION, owner TEXT, last_error TEXT,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"
    ),
    "mysql": (
        "CREATE TABLE IF NOT EXISTS {t} (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
        " name VARCHAR(200) NOT NULL, idempotency_key VARCHAR(300) NOT NULL UNIQUE,"
        " payload LONGTEXT NOT NULL, event LONGTEXT NOT NULL, event_id BIGINT NOT NULL,"
        " observer VARCHAR(120) NOT NULL, action VARCHAR(120) NOT NULL,"
        " status VARCHAR(10) NOT NULL, attempts INT NOT NULL, run_after DOUBLE NOT NULL,"
        " lease_until DOUBLE, owner VARCHAR(200), last_error TEXT,"
        " created_at VARCHAR(40) NOT NULL, updated_at VARCHAR(40) NOT NULL) ENGINE=InnoDB"
    ),
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " name TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, payload TEXT NOT NULL,"
        " event TEXT NOT NULL, event_id INTEGER NOT NULL, observer TEXT NOT NULL,"
        " action TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,"
        " run_after REAL NOT NULL, lease_until REAL, owner TEXT, last_error TEXT,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL)"
    ),
}
_INSERT_NEW = {
    "postgresql": "ON CONFLICT (idempotency_key) DO NOTHING",
    "sqlite": "ON CONFLICT (idempotency_key) DO NOTHING",
    "mysql": "ON DUPLICATE KEY UPDATE id = id",
}
# Due rows another worker is claiming are skipped: a second worker claims the rows after them.
_SKIP_LOCKED = {"postgresql": " FOR UPDATE SKIP LOCKED"}
_COLUMNS = (
    "id, name, idempotency_key, payload, event, event_id, observer, action, status, attempts,"
    " run_after, last_error"
)
STATUSES = ("queued", "running", "done", "dead")


@dataclass(frozen=True)
class NewJob:
    """A job to enqueue."""

    name: str
    idempotency_key: str
    payload: Mapping[str, Any] | list[Any] | str | int | float | bool | None
    event: Mapping[str, Any]
    event_id: int
    observer: str
    action: str


@dataclass(frozen=True)
class JobRow:
    """A job as the queue holds it."""

    id: int
    name: str
    idempotency_key: str
    payload: Any
    event: Mapping[str, Any]
    event_id: int
    observer: str
    action: str
    status: str
    attempts: int
    run_after: float
    last_error: str | None


class JobQueue(Protocol):
    """What the ``job`` action and the worker need of a queue."""

    async def ensure(self) -> None: ...

    async def enqueue(self, job: NewJob) -> None:
        """Add ``job`` unless a job of its idempotency key exists already; a dead job of that
        key is queued again (``quiver dlq retry``)."""
        ...

    async def claim(
        self, names: Sequence[str], limit: int, owner: str, lease: float
    ) -> list[JobRow]:
        """Up to ``limit`` due jobs of ``names``, each counted as one more attempt and held
        by ``owner`` for ``lease`` seconds."""
        ...

    async def done(self, job: JobRow) -> None: ...

    async def retry_later(self, job: JobRow, error: str, delay: float) -> None: ...

    async def bury(self, job: JobRow, error: str) -> None:
        """Mark the job dead (its dead letter is written by the worker)."""
        ...

    async def jobs(self, status: str | None, limit: int) -> list[JobRow]: ...

    async def close(self) -> None: ...


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


class SqlJobQueue:
    """The queue as a table of a database Quiver already uses (see the module's text)."""

    def __init__(self, db: Database, table: str = DEFAULT_JOBS_TABLE) -> None:
        self.db = db
        self.dialect = db.dialect
        self.table = self.dialect.quote_ident(table)
        self.table_name = table

    def _text(self, text: str) -> str:
        return placeholders(self.dialect, text)

    async def _run(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self.db.transaction() as tx:
            return await tx.fetch_rows(self._text(text), list(params))

    async def ensure(self) -> None:
        name = self.dialect.name
        if name not in _DDL:
            raise ValueError(f"no job queue for {name}")
        index = self.dialect.quote_ident(f"{self.table_name}_due")
        async with self.db.transaction() as tx:
            await tx.fetch_rows(_DDL[name].format(t=self.table), [])
            await tx.fetch_rows(
                f"CREATE INDEX IF NOT EXISTS {index} ON {self.table} (status, run_after)", []
            )

    async def enqueue(self, job: NewJob) -> None:
        now = time.time()
        stamp = _now()
        async with self.db.transaction() as tx:
            await tx.fetch_rows(
                self._text(
                    f"UPDATE {self.table} SET status = 'queued', attempts = 0, run_after = ?,"
                    " last_error = NULL, updated_at = ? WHERE idempotency_key = ?"
                    " AND status = 'dead'"
                ),
                [now, stamp, job.idempotency_key],
            )
            await tx.fetch_rows(
                self._text(
                    f"INSERT INTO {self.table} (name, idempotency_key, payload, event, event_id,"
                    " observer, action, status, attempts, run_after, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?) "
                    + _INSERT_NEW[self.dialect.name]
                ),
                [
                    job.name,
                    job.idempotency_key,
                    json_text(job.payload).decode(),
                    json_text(job.event).decode(),
                    job.event_id,
                    job.observer,
                    job.action,
                    now,
                    stamp,
                    stamp,
                ],
            )

    async def claim(
        self, names: Sequence[str], limit: int, owner: str, lease: float
    ) -> list[JobRow]:
        if not names:
            return []
        now = time.time()
        due = (
            f"name IN ({_marks(names)}) AND ((status = 'queued' AND run_after <= ?)"
            " OR (status = 'running' AND lease_until < ?))"
        )
        name = self.dialect.name
        async with self.db.transaction() as tx:
            if name == "mysql":
                ids = await self._lock_by_key(tx, due, [*names, now, now], limit)
            else:
                rows = await tx.fetch_rows(
                    self._text(
                        f"SELECT id FROM {self.table} WHERE {due} ORDER BY id LIMIT ?"
                        + _SKIP_LOCKED.get(name, "")
                    ),
                    [*names, now, now, limit],
                )
                ids = [int(r[0]) for r in rows]
            if not ids:
                return []
            # The rows are locked (PostgreSQL, MariaDB) or the database is (SQLite): no other
            # worker claims them before this transaction ends. Updated by key only, one key
            # at a time on MariaDB (whose optimizer may scan a small table for an IN list,
            # waiting on the rows another worker holds).
            claim = (
                f"UPDATE {self.table} SET status = 'running', attempts = attempts + 1,"
                " lease_until = ?, owner = ?, updated_at = ? WHERE id "
            )
            stamp = _now()
            if name == "mysql":
                for i in ids:
                    await tx.fetch_rows(self._text(claim + "= ?"), [now + lease, owner, stamp, i])
            else:
                await tx.fetch_rows(
                    self._text(claim + f"IN ({_marks(ids)})"), [now + lease, owner, stamp, *ids]
                )
            claimed = await tx.fetch_rows(
                self._text(
                    f"SELECT {_COLUMNS} FROM {self.table} WHERE id IN ({_marks(ids)})"
                    " AND owner = ? AND status = 'running' AND lease_until = ? ORDER BY id"
                ),
                [*ids, owner, now + lease],
            )
        return [job_row(r) for r in claimed]

    async def _lock_by_key(
        self, tx: Transaction, due: str, params: list[Any], limit: int
    ) -> list[int]:
        """MariaDB: due ids read without locks (a locking range scan takes gap locks that
        deadlock with other workers), then locked one key at a time, skipping the rows
        another worker holds and those no longer due; up to ``limit`` of them."""
        rows = await tx.fetch_rows(
            self._text(f"SELECT id FROM {self.table} WHERE {due} ORDER BY id LIMIT ?"),
            [*params, 4 * limit],
        )
        ids: list[int] = []
        for (candidate,) in rows:
            locked = await tx.fetch_rows(
                self._text(
                    f"SELECT id FROM {self.table} WHERE id = ? AND {due} FOR UPDATE SKIP LOCKED"
                ),
                [candidate, *params],
            )
            if locked:
                ids.append(int(candidate))
                if len(ids) == limit:
                    break
        return ids

    async def done(self, job: JobRow) -> None:
        await self._run(
            f"UPDATE {self.table} SET status = 'done', lease_until = NULL, updated_at = ?"
            " WHERE id = ?",
            [_now(), job.id],
        )

    async def retry_later(self, job: JobRow, error: str, delay: float) -> None:
        await self._run(
            f"UPDATE {self.table} SET status = 'queued', run_after = ?, lease_until = NULL,"
            " last_error = ?, updated_at = ? WHERE id = ?",
            [time.time() + delay, error, _now(), job.id],
        )

    async def bury(self, job: JobRow, error: str) -> None:
        await self._run(
            f"UPDATE {self.table} SET status = 'dead', lease_until = NULL, last_error = ?,"
            " updated_at = ? WHERE id = ?",
            [error, _now(), job.id],
        )

    async def jobs(self, status: str | None, limit: int) -> list[JobRow]:
        where, params = ("WHERE status = ?", [status]) if status else ("", [])
        rows = await self._run(
            f"SELECT {_COLUMNS} FROM {self.table} {where} ORDER BY id LIMIT ?", [*params, limit]
        )
        return [job_row(r) for r in rows]

    async def close(self) -> None:
        await self.db.close()


def job_row(r: Sequence[Any]) -> JobRow:
    """A job from its fields in :class:`JobRow`'s order, its JSON read exactly."""
    return JobRow(
        id=int(r[0]),
        name=str(r[1]),
        idempotency_key=str(r[2]),
        payload=json_value(r[3]),
        event=json_value(r[4]),
        event_id=int(r[5]),
        observer=str(r[6]),
        action=str(r[7]),
        status=str(r[8]),
        attempts=int(r[9]),
        run_after=float(r[10]),
        last_error=r[11],
    )
