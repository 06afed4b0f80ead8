"""Opening the dispatcher of a configuration: its database, its checked observers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quiver.config.settings import QuiverSettings
from quiver.observers.actions.job import JobAction
from quiver.observers.catalog import Locate, Observer, build_observers
from quiver.observers.condition import Kind
from quiver.observers.dispatcher import DEFAULT_LANES, DEFAULT_LEASE, Dispatcher
from quiver.observers.jobqueue import DEFAULT_JOBS_TABLE, JobQueue, SqlJobQueue
from quiver.observers.redisqueue import (
    RedisJobQueue,
    default_key_prefix,
    redact_redis_url,
    redis_url_problem,
)
from quiver.observers.store import DispatchStore
from quiver.runtime.errors import ConfigError
from quiver.schema.ir import Entity, Scalar, Schema
from quiver.sql.database import open_database

__all__ = [
    "attach_job_queues",
    "check_observers",
    "comparison_kinds",
    "configured_job_queue",
    "load_schema",
    "open_dispatcher",
    "open_job_queue",
    "open_store",
]


async def load_schema(settings: QuiverSettings) -> Schema:
    """The schema the observers are checked against: the compiled file, or the database."""
    if settings.schema_file:
        from quiver.schema.ir import load_schema_file

        return load_schema_file(settings.schema_file)
    from quiver.schema.reflect import reflect_database

    return await reflect_database(
        _url(settings), schemas=settings.database.schemas or None, names=settings.names
    )


def _url(settings: QuiverSettings) -> str:
    if not settings.database.url:
        raise ConfigError.one(
            "no database for the observers",
            "database.url",
            "set database.url in quiver.yaml or pass --db",
        )
    return settings.database.url


def check_observers(
    settings: QuiverSettings,
    schema: Schema,
    declared: Sequence[Any] = (),
    locate: Locate | None = None,
) -> list[Observer]:
    """The observers of ``settings`` (and ``declared``), checked against ``schema``;
    ``locate`` places problems in the settings file (see :func:`setting_locator`)."""
    fields = {e.name: [f.name for f in e.fields] for e in schema.entities}
    kinds = {e.name: comparison_kinds(e) for e in schema.entities}
    return build_observers(settings.observers, fields, declared, locate, kinds)


#: How values of each scalar compare in a condition (see :func:`typed_condition`).
_KINDS: dict[Scalar, Kind] = {
    Scalar.INT: "number",
    Scalar.BIGINT: "number",
    Scalar.FLOAT: "number",
    Scalar.DECIMAL: "number",
    Scalar.DATETIME: "instant",
    Scalar.DATE: "date",
    Scalar.UUID: "uuid",
}


def comparison_kinds(entity: Entity) -> dict[str, Kind]:
    """How each field of ``entity`` compares in an observer's condition (enums and text: as
    they are; lists, JSON and binary have no order; a JSON field may hold the JSON null)."""
    kinds: dict[str, Kind] = {}
    for f in entity.fields:
        if f.holds_json_null:
            kinds[f.name] = "json"
        elif f.is_list or f.scalar in (Scalar.JSON, Scalar.BASE64):
            kinds[f.name] = "unordered"
        elif f.enum_values is None and f.scalar in _KINDS:
            kinds[f.name] = _KINDS[f.scalar]
    return kinds


async def open_store(settings: QuiverSettings) -> DispatchStore:
    """The ledger and dead-letter tables of the settings' database, created when missing
    (no observer is checked: the dead-letter commands work whatever the observers say)."""
    db = settings.database
    database = await open_database(
        _url(settings),
        pool_min=1,
        pool_max=max(2, min(db.pool_max, settings.dispatcher.concurrency + 1)),
        statement_timeout_ms=db.statement_timeout_ms,
        pool_timeout_ms=db.pool_timeout_ms,
        # The scans' plans must not depend on statistics (a change log just created has
        # none, and autovacuum may be off): without them the planner expects a handful of
        # unfinished rows, and sorts every one of the window to claim the first few. With
        # sorts last resort, a scan reads the change log in id order and stops at the batch's
        # end; generic plans spare planning each statement anew. The dispatcher's own writes
        # (claims, ledger, dead letters) commit without waiting for the WAL flush: a server
        # crash can lose the last few, and then their events are delivered again (at least
        # once, with the same idempotency key), never lost; the change log is the writers'.
        postgresql_settings={
            "plan_cache_mode": "force_generic_plan",
            "enable_sort": "off",
            "synchronous_commit": "off",
        },
    )
    d = settings.dispatcher
    store = DispatchStore(
        database, settings.mutations.change_log_table, d.ledger_table, d.dead_letter_table
    )
    try:
        await store.ensure()
    except BaseException:
        await database.close()
        raise
    return store


async def open_dispatcher(
    settings: QuiverSettings,
    declared: Sequence[Any] = (),
    schema: Schema | None = None,
    locate: Locate | None = None,
    *,
    lease: float = DEFAULT_LEASE,
    lanes: int = DEFAULT_LANES,
) -> Dispatcher:
    """A dispatcher over the settings' database, its tables created when missing; it
    claims each batch of events for ``lease`` seconds (renewed while it works)."""
    if schema is None:
        schema = await load_schema(settings)
    observers = check_observers(settings, schema, declared, locate)
    store = await open_store(settings)
    try:
        await attach_job_queues(store, observers)
    except BaseException:
        await store.db.close()
        raise
    listen = settings.database.url if store.dialect.name == "postgresql" else None
    return Dispatcher(
        store, observers, settings.dispatcher, lease=lease, lanes=lanes, listen=listen
    )


async def attach_job_queues(store: DispatchStore, observers: Sequence[Observer]) -> None:
    """Give every ``job`` action its queue: a table of the store's database, created when
    missing, or Redis, which must answer (else a :class:`~quiver.runtime.errors.QuiverError`
    saying which URL, and nothing is left open)."""
    tables: dict[str, SqlJobQueue] = {}
    redis: dict[tuple[str, str], RedisJobQueue] = {}
    try:
        for observer in observers:
            for bound in observer.actions:
                if not isinstance(bound.action, JobAction):
                    continue
                cfg = bound.action.cfg
                prefix = cfg.queue_prefix()
                if cfg.queue is None or prefix is None:
                    if cfg.table not in tables:
                        tables[cfg.table] = SqlJobQueue(store.db, cfg.table)
                        await tables[cfg.table].ensure()
                    bound.action.attach(tables[cfg.table])
                    continue
                if (cfg.queue, prefix) not in redis:
                    where = f"observer {observer.name}, action {bound.name}: queue"
                    queue = RedisJobQueue(cfg.queue, prefix, where)
                    redis[cfg.queue, prefix] = queue
                    await queue.ensure()
                bound.action.attach(redis[cfg.queue, prefix], owned=True)
    except BaseException:
        for queue in redis.values():
            await queue.close()
        raise


def open_job_queue(
    store: DispatchStore, table: str, url: str | None, key_prefix: str | None, where: str
) -> JobQueue:
    """The queue ``quiver jobs`` works on: Redis at ``url`` (its keys under ``key_prefix``,
    default ``quiver:jobs:<table>``), else the table of the store's database."""
    if url is None:
        return SqlJobQueue(store.db, table)
    problem = redis_url_problem(url)
    if problem is not None:
        raise ConfigError.one(problem[0], where, problem[1])
    return RedisJobQueue(url, key_prefix or default_key_prefix(table), where)


def configured_job_queue(settings: QuiverSettings, table: str) -> tuple[str, str | None] | None:
    """The Redis URL and key prefix the configuration's ``job`` actions of ``table`` name
    (None: the database); two different queues are an error, as a worker works on one."""
    found: dict[tuple[str, str | None], str] = {}
    for i, observer in enumerate(settings.observers):
        for j, action in enumerate(observer.actions):
            if action.get("type") != "job" or action.get("table", DEFAULT_JOBS_TABLE) != table:
                continue
            url, prefix = action.get("queue"), action.get("key_prefix")
            if isinstance(url, str):
                key = (url, prefix if isinstance(prefix, str) else None)
                found.setdefault(key, f"observers[{i}].actions[{j}]")
    if len(found) > 1:
        shown = ", ".join(
            f"{redact_redis_url(u)} {p or default_key_prefix(table)} ({w})"
            for (u, p), w in found.items()
        )
        raise ConfigError.one(
            f"the job actions of table {table!r} name {len(found)} queues: {shown}",
            "--queue",
            "pass --queue URL (and --key-prefix) to say which one this command works on",
        )
    return next(iter(found), None)
