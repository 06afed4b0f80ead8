"""The tables Quiver keeps in the served database for itself, which the API never serves.

They are the change log and its writers mark, the observers' ledger, its claims and the
dead letters (named by ``mutations.change_log_table`` and ``dispatcher.*_table``), and the job
queue tables of ``job`` actions (``quiver_jobs`` unless an action names another).
"""

from __future__ import annotations

from quiver.config.settings import QuiverSettings
from quiver.observers.jobqueue import DEFAULT_JOBS_TABLE
from quiver.observers.store import claims_table
from quiver.schema.ir import Schema
from quiver.sql.changelog import writers_table

__all__ = ["own_tables", "without_own_tables"]


def own_tables(settings: QuiverSettings) -> frozenset[str]:
    """The names of the tables Quiver writes for itself under ``settings``."""
    log = settings.mutations.change_log_table
    dispatcher = settings.dispatcher
    names = {
        log,
        writers_table(log),
        dispatcher.ledger_table,
        claims_table(dispatcher.ledger_table),
        dispatcher.dead_letter_table,
        DEFAULT_JOBS_TABLE,
    }
    for observer in settings.observers:
        for action in observer.actions:
            table = action.get("table")
            if action.get("type") == "job" and isinstance(table, str):
                names.add(table)
    return frozenset(names)


def without_own_tables(schema: Schema, settings: QuiverSettings) -> Schema:
    """``schema`` without the entities of Quiver's own tables, nor relations to them."""
    own = own_tables(settings)
    dropped = {e.name for e in schema.entities if e.source in own}
    if not dropped:
        return schema
    entities = tuple(
        e.model_copy(update={"relations": tuple(r for r in e.relations if r.target not in dropped)})
        for e in schema.entities
        if e.name not in dropped
    )
    return schema.model_copy(update={"entities": entities})
