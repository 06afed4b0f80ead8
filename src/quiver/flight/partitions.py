"""Parallel reads: an export ticket split into tickets of disjoint ranges of an integer key.

GetFlightInfo of an export ticket asking for ``partitions`` (or the server's
``flight.partitions``) answers one endpoint per partition. Each partition's ticket is the
export ticket itself with one more condition in its filter (the same ``<Entity>Where`` input,
so the same planner, parameters and row filters): ``key < b1`` (and the rows whose key is
null), ``b1 <= key < b2``, ..., ``key >= bN``. The ranges are open at both ends, so they
cover every integer exactly once whatever is written between GetFlightInfo and the reads.

The bounds split the key's range over the rows the ticket reads (``min`` and ``max`` under
its filter); on PostgreSQL the column's histogram bounds (``pg_stats``, kept by ``ANALYZE``)
inside that range place them so each partition holds about as many rows, elsewhere (or
without statistics) the range is cut into equal widths.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from graphql import GraphQLSchema
from quiver.flight.export import find_entity, plan_key_range, read_row
from quiver.flight.pool import ConnectionPool
from quiver.flight.tickets import ExportTicket, TicketError
from quiver.graphql.planner import RowRestriction
from quiver.schema.catalog import Catalog
from quiver.schema.ir import Entity, Field, Scalar
from quiver.sql.dialects import Dialect
from quiver.sql.fragment import compile_sql, param, sql

__all__ = ["partition_export", "partition_key", "split_points", "split_ticket"]

_INTEGERS = frozenset({Scalar.INT, Scalar.BIGINT})
_BOUND = re.compile(r"-?\d+")


def partition_key(entity: Entity, name: str = "") -> Field | None:
    """The integer field partitions of ``entity`` split: ``name`` (which must be one), else
    the single-column integer primary key; None when the table has none."""
    if name:
        f = entity.field(name) or entity.field_by_column(name)
        if f is None or f.scalar not in _INTEGERS or f.is_list:
            integers = [x.name for x in entity.fields if x.scalar in _INTEGERS and not x.is_list]
            raise TicketError.one(
                f"{entity.name} has no integer field {name!r} to split into partitions",
                "ticket partitionBy",
                "name one of its integer fields ("
                + (", ".join(integers) or "it has none")
                + "), preferably an indexed one, or leave partitionBy out",
            )
        return f
    if len(entity.primary_key) != 1:
        return None
    f = entity.field_by_column(entity.primary_key[0])
    if f is None or f.scalar not in _INTEGERS or f.is_list:
        return None
    return f


def split_points(low: int, high: int, count: int, bounds: Sequence[int] = ()) -> list[int]:
    """At most ``count - 1`` increasing points in ``(low, high]`` cutting ``[low, high]`` into
    ``count`` ranges of about as many rows: at equal ranks of ``bounds`` (a histogram's
    bounds, each range between two of them holding about as many rows) when they lie inside
    often enough, else at equal widths."""
    if count <= 1 or high <= low:
        return []
    inside = sorted({b for b in bounds if low < b < high})
    if len(inside) >= count - 1:
        ranks = [low, *inside, high]
        picked = [ranks[round(i * (len(ranks) - 1) / count)] for i in range(1, count)]
    else:
        width = high - low + 1
        picked = [low + width * i // count for i in range(1, count)]
    points: list[int] = []
    for p in picked:
        if low < p <= high and (not points or p > points[-1]):
            points.append(p)
    return points


def split_ticket(
    ticket: ExportTicket, key: Field | None, points: Sequence[int]
) -> list[ExportTicket]:
    """One ticket per range the ``points`` cut the integers into, in key order: ``ticket``
    with the range's condition added to its filter (and without its partitions option). The
    first range also holds the rows whose key is null."""
    base = replace(ticket, partitions=None, partition_by="")
    if key is None or not points:
        return [base]
    name = key.name
    ranges: list[dict[str, Any]] = []
    first: dict[str, Any] = {name: {"lt": points[0]}}
    if key.nullable:
        first = {"or": [first, {name: {"isNull": True}}]}
    ranges.append(first)
    for lo, hi in itertools.pairwise(points):
        ranges.append({name: {"gte": lo, "lt": hi}})
    ranges.append({name: {"gte": points[-1]}})
    return [
        replace(base, where={"and": [ticket.where, part]} if ticket.where else part)
        for part in ranges
    ]


def partition_export(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    pool: ConnectionPool,
    ticket: ExportTicket,
    count: int,
    restrict: RowRestriction | None = None,
) -> list[ExportTicket]:
    """The tickets of up to ``count`` endpoints whose rows together are ``ticket``'s, each row
    in exactly one; one ticket when the table has no integer key to split, the ticket has a
    ``limit`` (a limit per partition would read more rows), or its rows span one key."""
    entity = find_entity(catalog, ticket.table)
    key = partition_key(entity, ticket.partition_by)
    if key is None or count <= 1 or ticket.limit is not None:
        return split_ticket(ticket, key, ())
    text, params = plan_key_range(catalog, graphql_schema, dialect, ticket, key, restrict)
    row = read_row(pool, text, params)
    if row is None or row[0] is None or row[1] is None:
        return split_ticket(ticket, key, ())
    low, high = int(row[0]), int(row[1])
    bounds = _histogram(pool, dialect, entity, key) if pool.url.dialect == "postgresql" else []
    return split_ticket(ticket, key, split_points(low, high, count, bounds))


def _histogram(pool: ConnectionPool, dialect: Dialect, entity: Entity, key: Field) -> list[int]:
    """The histogram bounds PostgreSQL keeps for the key column (empty before ``ANALYZE``);
    those of the whole inheritance tree first, as the export reads it."""
    schema = param(entity.db_schema) if entity.db_schema else sql("current_schema()")
    statement = sql(
        "SELECT histogram_bounds::text FROM pg_catalog.pg_stats WHERE schemaname = ",
        schema,
        " AND tablename = ",
        param(entity.source),
        " AND attname = ",
        param(key.column),
        " ORDER BY inherited DESC LIMIT 1",
    )
    text, slots = compile_sql(statement, dialect)
    row = read_row(pool, text, [slot.value({}) for slot in slots])
    if row is None or not row[0]:
        return []
    return [int(b) for b in _BOUND.findall(str(row[0]))]
