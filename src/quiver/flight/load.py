"""DoPut: bulk load Arrow batches into one table, all or nothing.

The stream's columns must be fields of the table (API or column names) whose values cast to the
field's Arrow type; a non-null field must be present. Anything else is refused before a row is
written. The rows go in one transaction: ADBC's bulk ingest for PostgreSQL and SQLite, batched
INSERTs for MariaDB. A failure part-way rolls everything back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from quiver.flight.arrow_types import arrow_type
from quiver.flight.pool import ConnectionPool
from quiver.flight.tickets import TicketError
from quiver.runtime.errors import QuiverError
from quiver.schema.ir import Entity, Field
from quiver.sql.connect import connect_adbc, connect_mysql_bulk, database_error
from quiver.sql.dialects import MYSQL

__all__ = ["load_table"]


def _refuse(message: str, fix: str) -> TicketError:
    return TicketError.one(message, "DoPut schema", fix)  # type: ignore[return-value]


def _target_fields(entity: Entity, schema: pa.Schema) -> list[Field]:
    fields: list[Field] = []
    for name in schema.names:
        f = entity.field(name) or entity.field_by_column(name)
        if f is None:
            names = ", ".join(x.name for x in entity.fields)
            raise _refuse(f"{entity.name} has no column {name!r}", f"send only: {names}")
        if f in fields:
            raise _refuse(f"{name!r} is sent twice", "send each column once")
        fields.append(f)
    given = {f.name for f in fields}
    missing = [f.name for f in entity.fields if not f.nullable and f.name not in given]
    if missing and not entity.primary_key:
        raise _refuse(f"the non-null columns {missing} are missing", "send a value for them")
    for name in missing:
        f = entity.field(name)
        if f is not None and f.column not in entity.primary_key:
            raise _refuse(f"the non-null column {name!r} is missing", "send a value for it")
    return fields


def _checked(batch: pa.RecordBatch, fields: list[Field]) -> pa.RecordBatch:
    arrays = []
    for column, f in zip(batch.columns, fields, strict=True):
        target = arrow_type(f)
        try:
            arrays.append(column.cast(target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise _refuse(
                f"column {f.name!r} is {column.type}, which does not convert to {target}: "
                f"{str(exc).splitlines()[0]}",
                f"send {f.name} as {target}",
            ) from None
        if not f.nullable and arrays[-1].null_count:
            raise _refuse(f"column {f.name!r} holds nulls; it is not nullable", "send values")
    return pa.RecordBatch.from_arrays(arrays, names=[f.column for f in fields])


def load_table(entity: Entity, pool: ConnectionPool, reader: pa.RecordBatchReader) -> int:
    """Write every batch of ``reader`` into ``entity``'s table in one transaction; the rows
    written. Nothing is written when any batch is refused or the database fails."""
    fields = _target_fields(entity, reader.schema)
    target = pa.schema([pa.field(f.column, arrow_type(f)) for f in fields])
    if pool.arrow_native:
        return _load_adbc(entity, pool, reader, fields, target)
    return _load_mysql(entity, pool, reader, fields)


def _load_adbc(
    entity: Entity,
    pool: ConnectionPool,
    reader: pa.RecordBatchReader,
    fields: list[Field],
    target: pa.Schema,
) -> int:
    count = 0
    refused: list[QuiverError] = []
    stored = _sqlite_storage if pool.url.dialect == "sqlite" else None

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal count
        for batch in reader:
            try:
                checked = _checked(batch, fields)
            except QuiverError as err:
                refused.append(err)
                raise
            count += checked.num_rows
            yield stored(checked) if stored else checked

    if stored is not None:
        target = stored(pa.RecordBatch.from_pylist([], schema=target)).schema

    conn = connect_adbc(pool.url, pool.base_dir, autocommit=False)
    try:
        with conn.cursor() as cursor:
            stream = pa.RecordBatchReader.from_batches(target, batches())
            cursor.adbc_ingest(
                entity.source, stream, mode="append", db_schema_name=entity.db_schema
            )
        conn.commit()
    except QuiverError:
        conn.rollback()
        raise
    except Exception as exc:
        conn.rollback()
        if refused:
            raise refused[0] from None
        raise database_error(exc, pool.url, f"loading {entity.name}", in_transaction=True) from None
    finally:
        conn.close()
    return count


def _sqlite_storage(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch as SQLite stores it: decimals as reals, times as ISO text (what Quiver reads)."""
    arrays = []
    for column in batch.columns:
        t = column.type
        if pa.types.is_decimal(t):
            column = column.cast(pa.float64())
        elif pa.types.is_timestamp(t):
            column = pc.strftime(column, "%Y-%m-%d %H:%M:%S")
        elif pa.types.is_date(t) or pa.types.is_time(t):
            column = column.cast(pa.string())
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _load_mysql(
    entity: Entity, pool: ConnectionPool, reader: pa.RecordBatchReader, fields: list[Field]
) -> int:
    quote = MYSQL.quote_ident
    table = quote(entity.source)
    if entity.db_schema:
        table = f"{quote(entity.db_schema)}.{table}"
    names = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    statement = f"INSERT INTO {table} ({names}) VALUES ({marks})"
    conn = connect_mysql_bulk(pool.url)
    count = 0
    try:
        with conn.cursor() as cursor:
            for batch in reader:
                checked = _checked(batch, fields)
                rows = list(zip(*(c.to_pylist() for c in checked.columns), strict=True))
                if rows:
                    cursor.executemany(statement, rows)
                count += checked.num_rows
        conn.commit()
    except QuiverError:
        conn.rollback()
        raise
    except Exception as exc:
        conn.rollback()
        raise database_error(exc, pool.url, f"loading {entity.name}", in_transaction=True) from None
    finally:
        conn.close()
    return count
