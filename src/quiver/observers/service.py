"""Opening the dispatcher of a configuration: its database, its checked observers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from quiver.config.settings import QuiverSettings
from quiver.observers.actions.job import JobAction
from quiver.observers.catalog import Locate, Observer, build_observers
from quiver.observers.dispatcher import DEFAULT_LANES, DEFAULT_LEASE, Dispatcher
from quiver.observers.jobqueue import SqlJobQueue
from quiver.observers.store import DispatchStore
from quiver.runtime.errors import ConfigError
from quiver.schema.ir import Schema
from quiver.sql.database import open_database

__all__ = ["attach_job_queues", "check_observers", "load_schema", "open_dispatcher", "open_store"]


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
    return build_observers(settings.observers, fields, declared, locate)


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
        # end; generic plans spare planning each statement anew.
        postgresql_settings={"plan_cache_mode": "force_generic_plan", "enable_sort": "off"},
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
    return Dispatcher(store, observers, settings.dispatcher, lease=lease, lanes=lanes)


async def attach_job_queues(store: DispatchStore, observers: Sequence[Observer]) -> None:
    """Give every ``job`` action its queue: a table of the store's database, created when
    missing."""
    queues: dict[str, SqlJobQueue] = {}
    for observer in observers:
        for bound in observer.actions:
            if isinstance(bound.action, JobAction):
                table = bound.action.cfg.table
                if table not in queues:
                    queues[table] = SqlJobQueue(store.db, table)
                    await queues[table].ensure()
                bound.action.attach(queues[table])
