"""Bulk exports: one table's rows, planned from the catalog and streamed as Arrow batches.

:func:`plan_export` checks every name in an :class:`ExportTicket` against the catalog and builds
``SELECT <columns> FROM <table> WHERE <filter>`` from the fragment tree: the filter is the
GraphQL ``<Entity>Where`` input, coerced by graphql-core and planned by the GraphQL planner, so
every value is a parameter. :func:`stream_export` runs it on a pooled connection and hands out
a RecordBatchReader: ADBC's own Arrow batches for PostgreSQL and SQLite, unbuffered fetches made
into batches for MariaDB. On PostgreSQL the filter's values are sent as escaped string
constants (:func:`pg_inline`), not bind parameters: with parameters libpq reads the whole
result before ADBC hands out a first batch. The whole result is never held; a reader closed
early cancels the query and drops its connection.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from graphql.utilities import coerce_input_value

from graphql import GraphQLError, GraphQLInputObjectType, GraphQLSchema
from quiver.flight.arrow_types import arrow_schema, arrow_type, conform_batch
from quiver.flight.pool import ConnectionPool
from quiver.flight.tickets import ExportTicket, TicketError
from quiver.graphql.planner import PlanError, RowRestriction, plan_filter
from quiver.runtime.errors import ErrorDetail, PermanentError, QuiverError
from quiver.schema.catalog import Catalog
from quiver.schema.ir import Entity, Field, Scalar
from quiver.sql.arrow_reads import (
    bit_number,
    end_of_day_column,
    infinite_time_column,
    non_finite_numeric_column,
    template_parts,
)
from quiver.sql.connect import database_error
from quiver.sql.database import driver_params
from quiver.sql.dialects import SQLITE, Dialect
from quiver.sql.fragment import Fragment, Ident, compile_sql, ident, join, param, sql

__all__ = [
    "ExportPlan",
    "find_entity",
    "pg_inline",
    "pg_literal",
    "plan_export",
    "plan_key_range",
    "plan_rows",
    "read_row",
    "sqlite_typed",
    "stream_export",
]

_PG_BATCH_HINT = "adbc.postgresql.batch_size_hint_bytes"
#: ADBC's first PostgreSQL batch: the rows of the first message or two the server sends, so
#: it leaves as soon as the query yields rows ...
_PG_FIRST_BYTES = 2 << 10
#: ... and the following ones of about this size (or batch_rows), read as such by the driver:
#: the hint is raised once the first batch is out.
_SEND_BYTES = 1 << 20

log = logging.getLogger("quiver.flight")


@dataclass(frozen=True)
class ExportPlan:
    """What an export reads: its entity and fields, the stream's schema, the SQL to run."""

    entity: Entity
    fields: tuple[Field, ...]
    schema: pa.Schema
    sql: str
    params: tuple[Any, ...]
    #: Indexes of decimal columns read as scaled bigints (PostgreSQL; see _scaled_decimals).
    scaled: frozenset[int] = frozenset()


def find_entity(catalog: Catalog, name: str) -> Entity:
    """The entity ``name`` stands for: its type name, its table, or its list field."""
    if name in catalog.entities:
        return catalog.entities[name]
    root = catalog.root_fields.get(name)
    if root is not None:
        return root.entity
    lowered = name.lower()
    for e in catalog.entities.values():
        if e.source.lower() == lowered or e.name.lower() == lowered:
            return e
    known = ", ".join(sorted(catalog.entities)[:20])
    raise TicketError.one(
        f"there is no table or type {name!r}",
        "ticket table",
        f"name one of the exportable types ({known}); ListFlights lists them all",
    )


def _field(entity: Entity, name: str, where: str) -> Field:
    f = entity.field(name) or entity.field_by_column(name)
    if f is None:
        lowered = name.lower()
        f = next((x for x in entity.fields if x.column.lower() == lowered), None)
    if f is None:
        names = ", ".join(x.name for x in entity.fields)
        raise TicketError.one(
            f"{entity.name} has no column {name!r}", where, f"the columns are: {names}"
        )
    return f


def plan_export(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    ticket: ExportTicket,
    restrict: RowRestriction | None = None,
) -> ExportPlan:
    """Check ``ticket`` against the catalog and build its statement (nothing runs); with
    ``restrict`` (a role's row filters) only the rows it shows are read, and the ticket's
    relation filters test only related rows it shows."""
    entity = find_entity(catalog, ticket.table)
    if ticket.columns:
        seen: dict[str, Field] = {}
        for name in ticket.columns:
            f = _field(entity, name, "ticket columns")
            if f.name in seen:  # as Flight SQL refuses a column selected twice
                said = repr(name) if name == f.name else f"{name!r} (the field {f.name!r})"
                raise TicketError.one(
                    f"the ticket names the column {said} twice",
                    "ticket columns",
                    "name each column once (by its field name or its column name)",
                )
            seen[f.name] = f
        fields = tuple(seen.values())
    else:
        fields = entity.fields
    where = _coerced_where(entity, graphql_schema, ticket)
    return plan_rows(
        catalog,
        graphql_schema,
        dialect,
        entity,
        fields,
        where,
        limit=ticket.limit,
        restrict=restrict,
    )


def plan_rows(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    entity: Entity,
    fields: tuple[Field, ...],
    where: dict[str, Any],
    *,
    limit: int | None = None,
    by_key: bool = False,
    restrict: RowRestriction | None = None,
) -> ExportPlan:
    """The statement reading ``fields`` of the rows of ``entity`` that ``where`` (a coerced
    ``<Entity>Where`` input) keeps, at most ``limit``; with ``by_key`` in primary key order,
    as a GraphQL list without ``orderBy`` is; with ``restrict`` (a role's row filters) only
    the rows it shows, related rows included."""
    alias = "t0"
    table, condition = _rows_of(catalog, graphql_schema, dialect, entity, alias, where, restrict)
    schema = arrow_schema(fields)
    scaled = _scaled_decimals(dialect, fields, schema)
    columns = join(
        ", ",
        (
            sql(
                *(
                    (
                        "CASE WHEN ",
                        ident(alias, f.column),
                        f" = 'NaN' THEN CAST('{_SCALED_NAN}' AS bigint) ELSE CAST(",
                        ident(alias, f.column),
                        f" * {10 ** schema.field(i).type.scale}",
                    )
                    if i in scaled
                    else _read_as(dialect, f, ident(alias, f.column))
                ),
                " AS bigint) END" if i in scaled else "",
                " AS ",
                ident(f.name),
            )
            for i, f in enumerate(fields)
        ),
    )
    statement = sql("SELECT ", columns, " FROM ", table, f" AS {alias}")
    if condition is not None:
        statement = sql(statement, " WHERE ", condition)
    if by_key and entity.primary_key:
        keys = (sql(ident(alias, column), " ASC") for column in entity.primary_key)
        statement = sql(statement, " ORDER BY ", join(", ", keys))
    if limit is not None:
        statement = sql(statement, " LIMIT ", param(limit))
    text, params = _compiled(statement, dialect)
    return ExportPlan(entity, fields, schema, text, params, scaled)


def _read_as(dialect: Dialect, f: Field, column: Ident) -> tuple[Any, ...]:
    """How the export reads ``f``: its text when the dialect's Arrow reader would hand out a
    String column of its type in the database's binary form, a composite's JSON text; a
    single-precision float as the double it is."""
    tpl = None
    travels = arrow_type(f)
    if pa.types.is_list(travels):  # an array: as its elements travel
        travels = travels.value_type
    text = pa.types.is_string(travels) or f.scalar == Scalar.JSON
    if f.composite is not None:
        tpl = (
            dialect.arrow_composite_list if f.is_list else dialect.arrow_composite_output
        ) or None
    elif text and f.enum_values is None and not f.composite:
        tpl = dialect.arrow_text_of(f.db_type, is_list=f.is_list)
    elif f.scalar == Scalar.FLOAT and not f.is_list:
        # MariaDB prints a FLOAT in the fewest digits that single precision tells apart
        # (3.40282e38), another double than the one it holds; as DOUBLE it is exact.
        tpl = dialect.key_output_of(f.db_type)
    return template_parts(tpl, column)


def _rows_of(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    entity: Entity,
    alias: str,
    where: dict[str, Any],
    restrict: RowRestriction | None,
) -> tuple[Fragment | Ident, Fragment | None]:
    """The table of ``entity`` and the condition of the rows ``where`` keeps of it (None:
    all), as ``restrict`` shows them."""
    try:
        condition = plan_filter(catalog, graphql_schema, dialect, entity, alias, where, restrict)
        if restrict is not None:
            allowed = restrict(entity, alias)
            if allowed is not None:
                condition = sql("(", condition, ") AND ", allowed) if condition else allowed
    except PlanError as err:
        raise TicketError.one(err.message, "ticket filter", "fix the filter value") from None
    table = ident(entity.db_schema, entity.source) if entity.db_schema else ident(entity.source)
    return table, condition


def _compiled(statement: Fragment, dialect: Dialect) -> tuple[str, tuple[Any, ...]]:
    text, slots = compile_sql(statement, dialect)
    try:
        return text, tuple(slot.value({}) for slot in slots)
    except PlanError as err:  # values are checked as they are read (e.g. a NUL in text)
        raise TicketError.one(err.message, "ticket filter", "fix the filter value") from None


def plan_key_range(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    ticket: ExportTicket,
    key: Field,
    restrict: RowRestriction | None = None,
) -> tuple[str, tuple[Any, ...]]:
    """``SELECT min(key), max(key)`` over the rows ``ticket`` exports (its filter and the
    role's row filters): the statement and its parameters."""
    entity = find_entity(catalog, ticket.table)
    where = _coerced_where(entity, graphql_schema, ticket)
    alias = "t0"
    table, condition = _rows_of(catalog, graphql_schema, dialect, entity, alias, where, restrict)
    column = ident(alias, key.column)
    statement = sql("SELECT min(", column, "), max(", column, ") FROM ", table, f" AS {alias}")
    if condition is not None:
        statement = sql(statement, " WHERE ", condition)
    return _compiled(statement, dialect)


def read_row(pool: ConnectionPool, text: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
    """The first row of a small query run on a pooled connection (None: no row); on
    PostgreSQL the values go as constants, as an export's do."""
    lease = pool.acquire()
    try:
        values = driver_params(pool.url.dialect, params)
        if pool.url.dialect == "postgresql" and values:
            text, values = pg_inline(text, values), []
        cursor = lease.connection.cursor()
        try:
            cursor.execute(text, values or None)
            row = cursor.fetchone()
        finally:
            cursor.close()
    except QuiverError:
        lease.broken = True
        raise
    except Exception as exc:
        lease.broken = True
        raise database_error(exc, pool.url, "reading the key range of an export") from None
    finally:
        pool.release(lease)
    return None if row is None else tuple(row)


def _scaled_decimals(
    dialect: Dialect, fields: Sequence[Field], schema: pa.Schema
) -> frozenset[int]:
    """PostgreSQL ``numeric(p, s)`` columns with p <= 18 read as ``col * 10^s`` in a bigint:
    ADBC hands numerics out as text, and parsing text into decimals costs more than the rest
    of an export; a scaled integer becomes a decimal128 without parsing (:func:`_unscale`)."""
    if dialect.name != "postgresql":
        return frozenset()
    return frozenset(
        i
        for i, (f, target) in enumerate(zip(fields, schema, strict=True))
        if f.scalar == Scalar.DECIMAL
        and pa.types.is_decimal128(target.type)
        and target.type.precision <= 18
        and target.type.scale >= 0
    )


#: What a scaled ``numeric(p, s)`` (p <= 18) reads NaN as: no value of such a column scales to
#: it (they stay below 10^18), and a bigint cannot hold NaN.
_SCALED_NAN = -(2**63)


def _stored_nan(name: str, arrow: pa.DataType) -> PermanentError:
    detail = ErrorDetail(
        f"column {name!r} holds NaN, which {arrow} cannot hold",
        name,
        "filter those rows out, or export the column through a view that maps NaN to NULL "
        "(NULLIF(column, 'NaN'))",
    )
    return PermanentError([detail], code="STORED_VALUE")


def _finite_numerics(batch: pa.RecordBatch, plan: ExportPlan) -> pa.RecordBatch:
    """``batch`` (as the PostgreSQL driver read it), failing when a numeric column (or an
    array of them) read as text holds NaN, Infinity or -Infinity, which no Arrow decimal
    holds."""
    texts = [
        f.name
        for f, target in zip(batch.schema, plan.schema, strict=True)
        if (f.metadata or {}).get(b"POSTGRESQL:type") in (b"numeric", b"_numeric")
        and not pa.types.is_integer(f.type)  # a scaled decimal (see _unscale)
    ]
    found = non_finite_numeric_column(batch, texts) if texts else None
    if found is not None:
        arrow = plan.schema.field(found.column).type
        detail = ErrorDetail(
            f"column {found.column!r} holds {found.value}, which {arrow} cannot hold",
            found.column,
            "filter those rows out, or export the column through a view that maps them to NULL "
            "(NULLIF(column, 'NaN'))",
        )
        raise PermanentError([detail], code="STORED_VALUE")
    return batch


def _unscale(batch: pa.RecordBatch, plan: ExportPlan) -> pa.RecordBatch:
    """The scaled bigint columns of ``plan`` as the decimal128 values they stand for: the
    same integer, sign-extended to 128 bits, under the decimal's scale; NaN (read as
    :data:`_SCALED_NAN`) fails the stream."""
    if not plan.scaled:
        return batch
    columns = list(batch.columns)
    for i in plan.scaled:
        column = columns[i]
        if not pa.types.is_int64(column.type):
            continue
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        low = column.fill_null(0).to_numpy(zero_copy_only=False)
        if (low == _SCALED_NAN).any():
            raise _stored_nan(batch.schema.names[i], plan.schema.field(i).type)
        words = np.empty((len(low), 2), dtype=np.int64)
        words[:, 0] = low
        words[:, 1] = low >> 63
        validity = column.is_valid().buffers()[1] if column.null_count else None
        columns[i] = pa.Array.from_buffers(
            plan.schema.field(i).type,
            len(low),
            [validity, pa.py_buffer(words)],  # the array keeps words alive
            null_count=column.null_count,
        )
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _coerced_where(
    entity: Entity, graphql_schema: GraphQLSchema, ticket: ExportTicket
) -> dict[str, Any]:
    if not ticket.where:
        return {}
    where = _named(entity, ticket.where, ticket.text_values)
    where_type = graphql_schema.get_type(f"{entity.name}Where")
    assert isinstance(where_type, GraphQLInputObjectType)
    problems: list[str] = []

    def on_error(path: Sequence[str | int], invalid: Any, error: GraphQLError) -> None:
        at = ".".join(str(p) for p in path)
        problems.append(f"{at}: {error.message}" if at else error.message)

    coerced = coerce_input_value(where, where_type, on_error)
    if problems:
        raise TicketError.one(
            "the filter does not fit the table: " + "; ".join(problems[:5]),
            "ticket filter",
            "compare columns of the table with values of their type",
        )
    return dict(coerced)


def _named(entity: Entity, where: Any, text_values: bool) -> Any:
    """``where`` with column names made field names (and compact text values typed), inside
    ``and`` / ``or`` / ``not`` too; relation filters and unknown keys are left to coercion."""
    if not isinstance(where, dict):
        return where
    out: dict[str, Any] = {}
    for key, value in where.items():
        if key in ("and", "or") and isinstance(value, list):
            out[key] = [_named(entity, v, text_values) for v in value]
        elif key == "not":
            out[key] = _named(entity, value, text_values)
        elif entity.relation(key) is not None:
            out[key] = value
        else:
            f = _field(entity, key, "ticket filter")
            if text_values and isinstance(value, dict):
                value = {op: _typed_text(f, v) for op, v in value.items()}
            out[f.name] = value
    return out


def _typed_text(f: Field, value: Any) -> Any:
    """A compact-form value, read as its field's scalar would be written in JSON."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if f.scalar == Scalar.INT:
        return int(text) if text.lstrip("-").isdigit() else text
    if f.scalar == Scalar.FLOAT:
        try:
            return float(text)
        except ValueError:
            return text
    if f.scalar == Scalar.BOOLEAN:
        return {"true": True, "false": False}.get(text.lower(), text)
    return value


def stream_export(plan: ExportPlan, pool: ConnectionPool, batch_rows: int) -> pa.RecordBatchReader:
    """A reader of ``plan``'s rows in batches of at most ``batch_rows``, read as it goes."""
    batches = _adbc_batches if pool.arrow_native else _mysql_batches
    return pa.RecordBatchReader.from_batches(plan.schema, batches(plan, pool, batch_rows))


def _adbc_batches(
    plan: ExportPlan, pool: ConnectionPool, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    lease = pool.acquire()
    done = False
    cursor = None
    try:
        cursor = lease.connection.cursor()
        postgresql = pool.url.dialect == "postgresql"
        if postgresql:
            # A first batch of a few rows: it leaves as soon as the query yields them, not
            # after 16 MiB (the driver's default).
            cursor.adbc_statement.set_options(**{_PG_BATCH_HINT: str(_PG_FIRST_BYTES)})
        text, params = plan.sql, driver_params(pool.url.dialect, plan.params)
        if postgresql and params:
            # With bind parameters libpq loads the whole result before the first batch;
            # without them ADBC streams it (COPY). The values go as escaped constants.
            text, params = pg_inline(text, params), []
        sqlite = pool.url.dialect == "sqlite"
        if sqlite:
            text = sqlite_typed(text, plan.schema)
        try:
            cursor.execute(text, params or None)
            reader = cursor.fetch_record_batch()
        except Exception as exc:
            lease.broken = True
            raise database_error(exc, pool.url, "starting an export") from None
        driver: Iterator[pa.RecordBatch] = iter(reader)
        if postgresql:
            driver = _then_larger(driver, cursor, batch_rows)
        else:
            driver = _gathered(_without_first_row(driver) if sqlite else driver, batch_rows)
        for batch in driver:
            batch = _unscale(_finite_numerics(batch, plan) if postgresql else batch, plan)
            for start in range(0, batch.num_rows, batch_rows):
                conformed = conform_batch(
                    batch.slice(start, batch_rows), plan.schema, plan.entity.source
                )
                yield _finite_times(conformed, plan.entity.source) if postgresql else conformed
        done = True
    finally:
        if not done:
            lease.broken = True
            if cursor is not None:
                _cancel(cursor)
        if cursor is not None:
            try:
                cursor.close()
            except Exception:
                lease.broken = True
        pool.release(lease)


def _finite_times(batch: pa.RecordBatch, table: str) -> pa.RecordBatch:
    """``batch``, failing when a date or timestamp column holds PostgreSQL's ``infinity`` or
    ``-infinity``, which no Arrow date or timestamp holds, or a time column PostgreSQL's
    ``24:00:00``, which no Arrow time holds (a time64 is less than a day)."""
    late = end_of_day_column(batch)
    if late is not None:
        detail = ErrorDetail(
            f"column {late!r} of table {table!r} holds the time 24:00:00, which time64[us] (a"
            " time of day, 00:00:00 to 23:59:59.999999) cannot hold",
            late,
            "store the next day's 00:00:00 instead, filter those rows out, or export the column"
            " through a view that casts it to text",
        )
        raise PermanentError([detail], code="STORED_VALUE")
    found = infinite_time_column(batch)
    if found is not None:
        detail = ErrorDetail(
            f"column {found.column!r} holds infinity or -infinity, which {found.arrow} cannot hold",
            found.column,
            "filter those rows out, or export the column through a view that maps them to dates",
        )
        raise PermanentError([detail], code="STORED_VALUE")
    return batch


def sqlite_typed(text: str, schema: pa.Schema) -> str:
    """``text`` behind a first row that gives each column the type ADBC's SQLite driver is to
    read it as (dropped by :func:`_without_first_row`). The driver types a column by the values
    of its first batch, and a column whose first batch holds only NULLs would be int64, failing
    on the first real or text value after it: a float reads as a double (integers convert),
    bytes as binary, and decimals, times and text as text (every stored value converts
    exactly; decimals are then read from their digits)."""
    typed: list[str] = []
    read: list[str] = []
    for target in schema:
        t = target.type
        column = SQLITE.quote_ident(target.name)
        if pa.types.is_integer(t) or pa.types.is_boolean(t):
            typed.append("0")
        elif pa.types.is_floating(t):
            typed.append("0.5")
        elif pa.types.is_binary(t):
            typed.append("X''")
        else:
            # As text SQLite writes it (a real keeps 15 digits; the driver's own conversion
            # keeps 7).
            typed.append("''")
            column = f"CAST({column} AS TEXT)"
        read.append(column)
    return f"SELECT {', '.join(typed)} UNION ALL SELECT {', '.join(read)} FROM ({text}) AS rows_"


def _without_first_row(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield batch.slice(1)
        break
    yield from batches


_PG_SLOT = re.compile(r'"(?:[^"]|"")*"|\'(?:[^\']|\'\')*\'|\$(\d+)')


def pg_inline(text: str, params: Sequence[Any]) -> str:
    """``text`` with each ``$n`` (outside quoted names and strings) replaced by the literal of
    ``params[n - 1]``: an untyped escaped string constant, which PostgreSQL types from where it
    stands as it types a parameter (``E'...'``, so ``standard_conforming_strings`` does not
    matter)."""

    def slot(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return m.group(0)
        return pg_literal(params[int(m.group(1)) - 1])

    return _PG_SLOT.sub(slot, text)


def pg_literal(value: Any) -> str:
    """A PostgreSQL string constant holding ``value``'s text (``NULL`` for None).

    Sound only on a connection whose ``client_encoding`` is UTF8 (the Flight pool forces it:
    :func:`quiver.flight.pool.utf8_client`); text holding NUL is refused."""
    if value is None:
        return "NULL"
    return _quoted(_pg_text(value))


def _quoted(text: str) -> str:
    if "\x00" in text:
        raise TicketError.one(
            "a filter value holds a NUL character",
            "ticket filter",
            "PostgreSQL text cannot hold one: leave it out of the value",
        )
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _pg_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return "{" + ",".join(_pg_element(v) for v in value) + "}"
    if isinstance(value, dict):
        return orjson.dumps(value).decode()
    return str(value)


def _pg_element(value: Any) -> str:
    """One element of an array constant: NULL, or double-quoted with ``\\`` escapes."""
    if value is None:
        return "NULL"
    text = _pg_text(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _then_larger(
    batches: Iterator[pa.RecordBatch], cursor: Any, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """The driver's first (small) batch, then its batch size hint raised to
    :data:`_SEND_BYTES` for the rest: the driver builds the larger batches itself, no batch is
    gathered and copied here. The hint is read as each row arrives, so it takes effect on the
    batch being read."""
    for batch in batches:
        yield batch
        break
    else:
        return
    try:
        cursor.adbc_statement.set_options(**{_PG_BATCH_HINT: str(_SEND_BYTES)})
    except Exception:  # a driver that refuses it keeps its small batches: slower, still right
        log.debug("raising the batch size hint of an export failed", exc_info=True)
        yield from _gathered(batches, batch_rows)
        return
    yield from batches


def _gathered(batches: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The first batch as it comes (the client sees data early), then the small batches the
    driver hands out gathered into ones of about :data:`_SEND_BYTES` or ``batch_rows`` rows:
    fewer, larger messages for the same rows."""
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    first = True
    for batch in batches:
        if first:
            first = False
            yield batch
            continue
        pending.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
        if rows >= batch_rows or size >= _SEND_BYTES:
            yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)
            pending, rows, size = [], 0, 0
    if pending:
        yield pending[0] if len(pending) == 1 else pa.concat_batches(pending)


def _cancel(cursor: Any) -> None:
    try:
        cursor.adbc_cancel()
    except Exception:
        log.debug("cancelling an export's query failed", exc_info=True)


def _mysql_batches(
    plan: ExportPlan, pool: ConnectionPool, batch_rows: int
) -> Iterator[pa.RecordBatch]:
    import pymysql.cursors

    lease = pool.acquire()
    done = False
    cursor = lease.connection.cursor(pymysql.cursors.SSCursor)
    try:
        try:
            cursor.execute(plan.sql, driver_params("mysql", plan.params))
        except Exception as exc:
            lease.broken = True
            raise database_error(exc, pool.url, "starting an export") from None
        while True:
            rows = cursor.fetchmany(batch_rows)
            if not rows:
                break
            yield _batch_of_rows(rows, plan.schema, plan.entity.source)
        cursor.close()
        done = True
    finally:
        if not done:
            # An unbuffered result left half read would be drained row by row: the connection
            # is closed instead, which ends the query on the server.
            result = getattr(cursor, "_result", None)
            if result is not None:
                result.unbuffered_active = False
            lease.broken = True
        pool.release(lease)


def _batch_of_rows(
    rows: Sequence[tuple[Any, ...]], schema: pa.Schema, table: str
) -> pa.RecordBatch:
    columns = list(zip(*rows, strict=True))
    arrays = []
    for values, target in zip(columns, schema, strict=True):
        try:
            arrays.append(_array(list(values), target.type))
        except _NotATimeOfDayError as exc:
            detail = ErrorDetail(
                f"column {target.name!r} of table {table!r} holds {exc}, which {target.type}"
                " (a time of day) cannot hold",
                target.name,
                "filter those rows out, or export the column through a view that casts it",
            )
            raise PermanentError([detail], code="STORED_VALUE") from None
        except _NotADateError as exc:
            detail = ErrorDetail(
                f"column {target.name!r} of table {table!r} holds the MariaDB date {exc}, which"
                f" {target.type} cannot hold: its year, month or day is zero (ISO 8601 dates,"
                " and Arrow readers, start at year 1)",
                target.name,
                "correct the stored value, filter those rows out, or export the column through"
                " a view that casts it to text",
            )
            raise PermanentError([detail], code="STORED_VALUE") from None
    return conform_batch(pa.RecordBatch.from_arrays(arrays, names=schema.names), schema, table)


def _array(values: list[Any], target: pa.DataType) -> pa.Array:
    if pa.types.is_time(target):
        values = [_time_of(v) for v in values]
    elif pa.types.is_timestamp(target) or pa.types.is_date(target):
        # PyMySQL hands out the text of a date Python cannot hold (a zero year, month or
        # day: 0000-00-00, 2020-00-15, 0000-01-01)
        found = next((v for v in values if isinstance(v, str)), None)
        if found is not None:
            raise _NotADateError(repr(found))
        if pa.types.is_timestamp(target):
            return pa.array(values, type=pa.timestamp("us"))
    elif pa.types.is_boolean(target):  # BOOLEAN (TINYINT(1)) or BIT(1), its bytes
        values = [None if v is None else bool(bit_number(v)) for v in values]
    try:
        return pa.array(values, type=target)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(values)


class _NotADateError(ValueError):
    """A MariaDB date with a zero year, month or day, which no Arrow date holds."""


class _NotATimeOfDayError(ValueError):
    """A MariaDB TIME (a duration, -838:59:59 to 838:59:59) that is no time of day."""


def _time_of(value: Any) -> Any:
    if isinstance(value, dt.timedelta):
        if not dt.timedelta(0) <= value < dt.timedelta(days=1):
            sign = "-" if value < dt.timedelta(0) else ""
            seconds = abs(value).total_seconds()
            raise _NotATimeOfDayError(
                f"{sign}{int(seconds // 3600)}:{int(seconds % 3600 // 60):02}:{seconds % 60:09.6f}"
            )
        return (dt.datetime.min + value).time()
    return value
