"""How many rows the entities hold and how many children a parent row has, read once.

The GraphQL cost limit counts every unlimited list by its expected length. A fixed guess (100
rows a list) makes ``{ customers { orders { lines { product { title } } } } }`` cost millions
on a database with two customers; :func:`read_statistics` reads, when the server starts:

* the rows of each table: counted when the table is small (at most :data:`SAMPLE_ROWS`), else
  the database's own estimate (PostgreSQL ``pg_class.reltuples``, MariaDB
  ``information_schema.TABLES.TABLE_ROWS``; SQLite ``sqlite_stat1`` where ``ANALYZE`` has run,
  else the table's largest rowid, read without a scan);
* the fan-out of each to-many relation: child rows per distinct parent key, from PostgreSQL's
  ``pg_stats.n_distinct`` where ``ANALYZE`` has run, else from the first
  :data:`SAMPLE_ROWS` child rows.

Views are not read (counting one may run an arbitrary query): their lists keep the default
size. Statistics that cannot be read are logged and left out, never fatal: a list without them
counts the default size.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from quiver.schema.ir import Entity, Schema
from quiver.sql.connect import connect_mysql, connect_postgresql, connect_sqlite
from quiver.sql.dialects import Dialect, dialect_for
from quiver.sql.url import DatabaseUrl, parse_database_url

__all__ = ["SAMPLE_ROWS", "Statistics", "read_statistics"]

log = logging.getLogger("quiver.schema.statistics")

#: Rows counted (or sampled for distinct keys) at most per table: reading stays cheap.
SAMPLE_ROWS = 100_000

_Query = Callable[[str, Sequence[Any]], Awaitable[list[tuple[Any, ...]]]]


@dataclass(frozen=True)
class Statistics:
    """Rows per entity and children per parent row for each to-many relation (API names)."""

    #: entity name -> rows
    rows: dict[str, int] = field(default_factory=dict)
    #: (entity name, relation name) -> rows of the target per row of the entity (at least 1)
    fanout: dict[tuple[str, str], int] = field(default_factory=dict)


async def read_statistics(url: str, schema: Schema) -> Statistics:
    """The statistics of ``schema``'s tables in the database at ``url`` (see the module docs).

    Never raises for a database that cannot answer: what could not be read is left out.
    """
    db = parse_database_url(url)
    try:
        if db.dialect == "postgresql":
            return await _read_postgresql(db, schema)
        if db.dialect == "mysql":
            return await _read_mysql(db, schema)
        return await asyncio.to_thread(_read_sqlite, db, schema)
    except Exception as exc:  # statistics only refine an estimate: serve without them
        log.warning("could not read table statistics (lists count their default size): %s", exc)
        return Statistics()


async def _read_postgresql(db: DatabaseUrl, schema: Schema) -> Statistics:
    conn = await connect_postgresql(db, server_settings={"application_name": "quiver-statistics"})
    try:

        async def query(text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in await conn.fetch(text, *params)]

        default_schema = await conn.fetchval("SELECT current_schema()")
        rows = await query(
            "SELECT n.nspname, c.relname, c.reltuples::float8 FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname = ANY($1::text[])",
            [_schemas(schema, default_schema)],
        )
        estimates = {(r[0], r[1]): float(r[2]) for r in rows}
        distinct = {
            (r[0], r[1], r[2]): float(r[3])
            for r in await query(
                "SELECT schemaname, tablename, attname, n_distinct FROM pg_stats"
                " WHERE schemaname = ANY($1::text[])",
                [_schemas(schema, default_schema)],
            )
        }
        return await _collect(
            dialect_for("postgresql"),
            schema,
            lambda e: estimates.get((e.db_schema or default_schema, e.source)),
            lambda e, col: distinct.get((e.db_schema or default_schema, e.source, col)),
            query,
        )
    finally:
        await conn.close()


def _schemas(schema: Schema, default: str) -> list[str]:
    return sorted({e.db_schema or default for e in schema.entities})


async def _read_mysql(db: DatabaseUrl, schema: Schema) -> Statistics:
    conn = await connect_mysql(db, autocommit=True)
    try:

        async def query(text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            async with conn.cursor() as cur:
                # without parameters the text is sent as it is: a % in a table's name (written
                # into the text) is no placeholder
                await cur.execute(text, list(params) if params else None)
                return [tuple(r) for r in await cur.fetchall()]

        tables = await query(
            "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
            [db.database],
        )
        estimates = {_text(r[0]): float(r[1] or 0) for r in tables}
        return await _collect(
            dialect_for("mysql"),
            schema,
            lambda e: estimates.get(e.source),
            lambda e, col: None,
            query,
        )
    finally:
        conn.close()


def _read_sqlite(db: DatabaseUrl, schema: Schema) -> Statistics:
    conn = connect_sqlite(db, mode="ro")
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

        async def query(text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in conn.execute(text, list(params)).fetchall()]

        analyzed = _sqlite_analyzed(conn)

        def estimate(e: Entity) -> float | None:
            if e.source not in tables:
                return None
            if e.source in analyzed:
                return analyzed[e.source]
            ident = dialect_for("sqlite").quote_ident(e.source)
            try:  # the largest rowid: one step down the table's b-tree, not a scan
                (top,) = conn.execute(f"SELECT max(rowid) FROM {ident}").fetchone()
                return float(top or 0)
            except Exception:  # a WITHOUT ROWID table, or a column named rowid: counted
                (count,) = conn.execute(f"SELECT count(*) FROM {ident}").fetchone()
                return float(count)

        return asyncio.run(
            _collect(dialect_for("sqlite"), schema, estimate, lambda e, col: None, query)
        )
    finally:
        conn.close()


def _sqlite_analyzed(conn: Any) -> dict[str, float]:
    """Rows per table as ``ANALYZE`` recorded them (``sqlite_stat1``), where it has run: the
    table's own entry, else its largest index's (a partial index holds fewer rows)."""
    try:
        found = conn.execute("SELECT tbl, idx, stat FROM sqlite_stat1").fetchall()
    except Exception:  # never analyzed: no such table
        return {}
    own: dict[str, float] = {}
    indexed: dict[str, float] = {}
    for table, index, stat in found:
        first = str(stat or "").split(" ", 1)[0]
        if not first.isdigit():
            continue
        if index is None:
            own[str(table)] = float(first)
        else:
            indexed[str(table)] = max(indexed.get(str(table), 0.0), float(first))
    return indexed | own


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _collect(
    dialect: Dialect,
    schema: Schema,
    estimate: Callable[[Entity], float | None],
    n_distinct: Callable[[Entity, str], float | None],
    query: _Query,
) -> Statistics:
    """Rows of every base table and fan-out of every to-many relation between base tables.

    ``estimate`` is the database's row estimate of an entity's table (None: not a base table);
    ``n_distinct`` the database's distinct-value statistic of one column, if it keeps one.
    """
    stats = Statistics()
    entities = {e.name: e for e in schema.entities}
    for e in schema.entities:
        guess = estimate(e)
        if guess is None:
            continue
        try:
            stats.rows[e.name] = await _rows(dialect, e, guess, query)
        except Exception as exc:
            log.warning("could not count the rows of %s: %s", e.source, exc)
    for e in schema.entities:
        for r in e.relations:
            child = entities.get(r.target)
            if r.kind != "many" or child is None or child.name not in stats.rows:
                continue
            try:
                fanout = await _fanout(dialect, child, r.target_columns, stats, n_distinct, query)
            except Exception as exc:
                log.warning("could not read the fan-out of %s.%s: %s", e.name, r.name, exc)
                continue
            stats.fanout[(e.name, r.name)] = fanout
    return stats


def _table(dialect: Dialect, e: Entity) -> str:
    if e.db_schema:
        return f"{dialect.quote_ident(e.db_schema)}.{dialect.quote_ident(e.source)}"
    return dialect.quote_ident(e.source)


async def _rows(dialect: Dialect, e: Entity, guess: float, query: _Query) -> int:
    """The table's rows: counted up to SAMPLE_ROWS, beyond that the database's estimate."""
    (counted,) = (
        await query(
            f"SELECT count(*) FROM (SELECT 1 AS one FROM {_table(dialect, e)}"
            f" LIMIT {SAMPLE_ROWS + 1}) AS sampled",
            (),
        )
    )[0]
    counted = int(counted)
    if counted <= SAMPLE_ROWS:
        return counted
    return max(counted, math.ceil(guess))


async def _fanout(
    dialect: Dialect,
    child: Entity,
    columns: Sequence[str],
    stats: Statistics,
    n_distinct: Callable[[Entity, str], float | None],
    query: _Query,
) -> int:
    """Child rows per distinct parent key (at least 1)."""
    rows = stats.rows[child.name]
    if rows == 0:
        return 1
    if len(columns) == 1:
        known = n_distinct(child, columns[0])
        if known is not None and known != 0:
            # PostgreSQL: a negative n_distinct is a fraction of the rows
            distinct = -known * rows if known < 0 else known
            return max(1, math.ceil(rows / max(distinct, 1)))
    cols = ", ".join(dialect.quote_ident(c) for c in columns)
    not_null = " AND ".join(f"{dialect.quote_ident(c)} IS NOT NULL" for c in columns)
    sampled, distinct_keys = (
        await query(
            f"SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT {cols} FROM (SELECT {cols}"
            f" FROM {_table(dialect, child)} WHERE {not_null} LIMIT {SAMPLE_ROWS}) AS a) AS b)"
            f" FROM (SELECT 1 AS one FROM {_table(dialect, child)} WHERE {not_null}"
            f" LIMIT {SAMPLE_ROWS}) AS c",
            (),
        )
    )[0]
    return max(1, math.ceil(int(sampled) / max(int(distinct_keys), 1)))
