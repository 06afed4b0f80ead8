"""DoPut: bulk load Arrow batches into one table, all or nothing.

The stream's columns must be fields of the table (API or column names) whose Arrow types
convert to the field's without changing a value (:func:`_refusal`); a non-null field must be
present. Anything else is refused before a row is written, each refused column named with its
Arrow type and the table column's type. The rows go in one transaction: ADBC's bulk ingest for
PostgreSQL and SQLite, batched INSERTs for MariaDB. A failure part-way rolls everything back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from quiver.flight.arrow_types import arrow_type, cast_exact
from quiver.flight.pool import ConnectionPool
from quiver.flight.tickets import TicketError
from quiver.flight.violations import violation
from quiver.runtime.errors import ErrorDetail, QuiverError
from quiver.schema.ir import Entity, Field, Scalar
from quiver.sql.connect import connect_adbc, connect_mysql_bulk, database_error
from quiver.sql.dialects import MYSQL, POSTGRESQL

__all__ = ["load_table"]


def _refuse(message: str, fix: str) -> TicketError:
    return TicketError.one(message, "DoPut schema", fix)  # type: ignore[return-value]


def _target_fields(entity: Entity, schema: pa.Schema) -> list[Field]:
    if not schema.names:
        names = ", ".join(x.name for x in entity.fields)
        raise _refuse("the stream has no columns", f"send columns of {entity.name}: {names}")
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


#: Table column types whose values are instants (a time zone, or UTC, is part of them).
_ZONED = {
    "postgresql": re.compile(r"\s*(timestamptz|timestamp\s*(\(\d+\))?\s+with\s+time\s+zone)"),
    "mysql": re.compile(r"\s*timestamp\b"),
}
#: Decimal digits of the largest value of each integer type.
_INT_DIGITS = {8: 3, 16: 5, 32: 10, 64: 19}


def _unsigned(t: pa.DataType) -> bool:
    return bool(pa.types.is_unsigned_integer(t))


def _refusal(source: pa.DataType, target: pa.DataType, f: Field, dialect: str) -> str | None:
    """Why a stream column of Arrow type ``source`` may not be loaded into ``f`` (of Arrow type
    ``target``), or None when every value converts to the same value. Conversions within a
    kind (integers, decimals, floats, times, text, bytes) are let through and checked value by
    value as each batch is cast (an int64 that does not fit an int32 fails the load); across
    kinds only integers become decimals or floats (checked the same way)."""
    if source.equals(target) or pa.types.is_null(source):
        return None
    if pa.types.is_dictionary(source):
        return _refusal(source.value_type, target, f, dialect)
    if pa.types.is_list(target):
        if pa.types.is_list(source) or pa.types.is_large_list(source):
            return _refusal(source.value_type, target.value_type, f, dialect)
        return "a single value is not a list"
    integer = pa.types.is_integer(source)
    if pa.types.is_integer(target):
        if integer:
            return None
        if pa.types.is_floating(source) or pa.types.is_decimal(source):
            return "a fractional number would be truncated to a whole one"
    elif pa.types.is_floating(target):
        if pa.types.is_floating(source) or integer:
            return None
        if pa.types.is_decimal(source):
            return "an exact decimal would be rounded to a binary floating-point number"
    elif pa.types.is_decimal(target):
        if pa.types.is_decimal(source):
            return None
        if integer:
            digits = _INT_DIGITS[source.bit_width] + (1 if _unsigned(source) else 0)
            return None if digits <= 76 else "its values do not fit"
        if pa.types.is_floating(source):
            return (
                "a binary floating-point value would be rounded to the column's scale "
                "(0.1 is not exactly one tenth)"
            )
    elif pa.types.is_string(target):
        if pa.types.is_string(source) or pa.types.is_large_string(source):
            return None
        if pa.types.is_string_view(source):
            return None
        return "it is not text: loading it would store its printed form"
    elif pa.types.is_binary(target):
        if pa.types.is_binary(source) or pa.types.is_large_binary(source):
            return None
        if pa.types.is_fixed_size_binary(source):
            return None
    elif pa.types.is_timestamp(target):
        if pa.types.is_timestamp(source):
            zoned = _ZONED.get(dialect)
            if source.tz is None and zoned is not None and zoned.match(f.db_type or ""):
                return (
                    "a timestamp without a time zone does not say which instant it is, and "
                    "the column holds instants"
                )
            return None
    elif pa.types.is_date(target):
        if pa.types.is_date(source):
            return None
    elif pa.types.is_time(target):
        if pa.types.is_time(source):
            return None
    elif pa.types.is_boolean(target) and pa.types.is_boolean(source):
        return None
    return "its values would change type"


def _check_schema(entity: Entity, schema: pa.Schema, fields: list[Field], dialect: str) -> None:
    """Refuse, all together, the stream columns whose values would change on the way in."""
    details: list[ErrorDetail] = []
    for column, f in zip(schema, fields, strict=True):
        target = arrow_type(f)
        why = _refusal(column.type, target, f, dialect)
        if why is None:
            continue
        declared = f" {f.db_type}" if f.db_type else ""
        details.append(
            ErrorDetail(
                f"column {column.name!r} is {column.type} in the stream, and "
                f"{entity.source}.{f.column} is{declared} (Arrow {target}): {why}",
                f"DoPut column {column.name}",
                f"send {column.name} as {target}"
                + (
                    " with its time zone (UTC if the times are UTC)"
                    if pa.types.is_timestamp(target)
                    else ""
                ),
            )
        )
    if details:
        raise TicketError(details)


#: Column types holding single-precision floats (Quiver streams them as float64).
_SINGLE = {"postgresql": re.compile(r"float4$"), "mysql": re.compile(r"float\b")}


def _single_precision(values: pa.Array) -> pa.Array:
    """``values`` (float64) as float32, failing when one would be rounded (NaN and the
    infinities are kept)."""
    narrow = values.cast(pa.float32())
    changed = pc.and_kleene(
        pc.not_equal(narrow.cast(pa.float64()), values), pc.invert(pc.is_nan(values))
    )
    index = pc.index(changed, True).as_py()
    if index is not None and index >= 0:
        raise pa.ArrowInvalid(
            f"{values[index]} is not a single-precision float (it would be rounded to "
            f"{narrow[index]})"
        )
    return values


def _held_as_real(values: pa.Array) -> pa.Array:
    """``values`` (decimals), failing when one would change as the double SQLite stores it
    (more than 15 significant digits, such as 1234567890123456.78)."""
    back = values.cast(pa.float64()).cast(values.type)
    index = pc.index(pc.not_equal(back, values), True).as_py()
    if index is not None and index >= 0:
        raise pa.ArrowInvalid(
            f"{values[index]} would be stored as the double {back[index]} (SQLite keeps a "
            "decimal as a REAL of about 15 significant digits)"
        )
    return values


def _checked(batch: pa.RecordBatch, fields: list[Field], dialect: str) -> pa.RecordBatch:
    arrays = []
    single = _SINGLE.get(dialect)
    for column, f in zip(batch.columns, fields, strict=True):
        target = arrow_type(f)
        try:
            arrays.append(cast_exact(column, target))
            if single is not None and single.match(f.db_type or "") and not f.is_list:
                _single_precision(arrays[-1])
            if dialect == "sqlite" and pa.types.is_decimal(target):
                _held_as_real(arrays[-1])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise _refuse(
                f"column {f.name!r} is {column.type}, and a value of it would change as "
                f"{target}: {str(exc).splitlines()[0]}",
                f"send {f.name} as {target}, with values the column holds unchanged",
            ) from None
        if not f.nullable and arrays[-1].null_count:
            raise _refuse(f"column {f.name!r} holds nulls; it is not nullable", "send values")
    return pa.RecordBatch.from_arrays(arrays, names=[f.column for f in fields])


def load_table(
    entity: Entity,
    pool: ConnectionPool,
    reader: pa.RecordBatchReader,
    abandoned: Callable[[], bool] = lambda: False,
) -> int:
    """Write every batch of ``reader`` into ``entity``'s table in one transaction; the rows
    written. Nothing is written when any batch is refused, the database fails, or
    ``abandoned()`` says, once the batches have ended, that the client left before finishing
    its stream (a reader whose client disconnects ends as a complete one does)."""
    fields = _target_fields(entity, reader.schema)
    _check_schema(entity, reader.schema, fields, pool.url.dialect)
    target = pa.schema([pa.field(f.column, arrow_type(f)) for f in fields])
    if pool.arrow_native:
        return _load_adbc(entity, pool, reader, fields, target, abandoned)
    return _load_mysql(entity, pool, reader, fields, abandoned)


def _load_adbc(
    entity: Entity,
    pool: ConnectionPool,
    reader: pa.RecordBatchReader,
    fields: list[Field],
    target: pa.Schema,
    abandoned: Callable[[], bool],
) -> int:
    count = 0
    refused: list[QuiverError] = []
    stored = _sqlite_storage if pool.url.dialect == "sqlite" else None

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal count
        for batch in reader:
            try:
                checked = _checked(batch, fields, pool.url.dialect)
            except QuiverError as err:
                refused.append(err)
                raise
            count += checked.num_rows
            yield stored(checked) if stored else checked

    if stored is not None:
        target = stored(pa.RecordBatch.from_pylist([], schema=target)).schema

    if stored is None:
        conn = connect_adbc(pool.url, pool.base_dir, autocommit=False)
        transaction = conn
    else:
        # SQLite checks references only with foreign_keys on (as Quiver's own connections
        # have it), a setting that cannot change inside a transaction: set it first.
        conn = connect_adbc(pool.url, pool.base_dir, autocommit=True)
        with conn.cursor() as cursor:
            cursor.execute("PRAGMA foreign_keys = ON")
        transaction = conn.adbc_connection
        transaction.set_autocommit(False)
    staged = pool.url.dialect == "postgresql" and not all(map(_pg_copies_as_is, fields))
    with (
        _all_or_nothing(conn, pool, entity, refused, transaction=transaction, abandoned=abandoned),
        conn.cursor() as cursor,
    ):
        _refuse_a_view(cursor, entity, pool.url.dialect)
        stream = pa.RecordBatchReader.from_batches(target, batches())
        if staged:
            _ingest_pg_staged(cursor, entity, fields, stream)
        else:
            cursor.adbc_ingest(
                entity.source, stream, mode="append", db_schema_name=entity.db_schema
            )
    return count


#: Whether the relation a load names is a view (PostgreSQL: a view or a materialized view), per
#: dialect; its parameters are those of :func:`_relation`.
_IS_VIEW = {
    "postgresql": "SELECT relkind IN ('v', 'm') FROM pg_class WHERE oid = to_regclass($1)",
    "mysql": "SELECT TABLE_TYPE = 'VIEW' FROM information_schema.TABLES"
    " WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
    "sqlite": "SELECT type = 'view' FROM sqlite_master WHERE name = ?",
}


def _relation(entity: Entity, dialect: str) -> tuple[str | None, ...]:
    """The parameters of :data:`_IS_VIEW` naming ``entity``'s table."""
    if dialect == "postgresql":
        quote = POSTGRESQL.quote_ident
        table = quote(entity.source)
        return (f"{quote(entity.db_schema)}.{table}" if entity.db_schema else table,)
    if dialect == "mysql":
        return (entity.db_schema, entity.source)
    return (entity.source,)


def _refuse_a_view(cursor: Any, entity: Entity, dialect: str) -> None:
    """Refuse a load whose target is a view, before a row is written: the database would
    refuse it with a message that does not say why (PostgreSQL, SQLite), or write through it
    into the tables it reads (MariaDB's updatable views)."""
    cursor.execute(_IS_VIEW[dialect], _relation(entity, dialect))
    found = cursor.fetchone()
    if found is None or not found[0]:
        return
    name = f"{entity.db_schema}.{entity.source}" if entity.db_schema else entity.source
    raise TicketError.one(
        f"{entity.name} is the database view {name!r}, not a table: a view cannot be loaded;"
        " nothing was written",
        f"DoPut {entity.name}",
        "load the table the view reads from instead: DoPut loads tables only",
    )


#: PostgreSQL column types whose binary COPY form is that of the Arrow type Quiver streams
#: them as (:func:`arrow_type`), so ADBC's ingestion writes them as they are.
_PG_AS_IS = {
    pa.int32(): {"int4"},
    pa.int64(): {"int8"},
    pa.float64(): {"float8"},
    pa.bool_(): {"bool"},
    pa.string(): {"text", "varchar", "bpchar", "json"},
    pa.binary(): {"bytea"},
    pa.date32(): {"date"},
    pa.time64("us"): {"time"},
    pa.timestamp("us", tz="UTC"): {"timestamp", "timestamptz"},
}


def _pg_copies_as_is(f: Field) -> bool:
    """Whether ADBC's binary COPY of ``f``'s Arrow values is what its column reads: an int4
    for an int2 column or text for a uuid, inet or jsonb one is not (PostgreSQL refuses it,
    or reads other values)."""
    t = arrow_type(f)
    t = t.value_type if pa.types.is_list(t) else t
    if f.enum_values is not None or pa.types.is_decimal(t):
        return True
    return (f.db_type or "") in _PG_AS_IS.get(t, set())


_COLUMN_TYPES = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute AS a
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped
"""


def _pg_cast(f: Field, column: str, declared: str) -> str:
    """``column`` of the staging table as a value of ``f``'s column (of type ``declared``):
    a composite (or array of composites) from the JSON text the export streams it as."""
    if f.composite is None:
        return f"CAST({column} AS {declared})"
    json = f"CAST({column} AS json)"
    if f.is_list:
        element = declared.removesuffix("[]")
        item = f"({column})[i]"
        record = f"json_populate_record(NULL::{element}, CAST({item} AS json))"
        value = (
            f"ARRAY(SELECT CASE WHEN {item} IS NULL THEN NULL ELSE {record} END "
            f"FROM generate_subscripts({column}, 1) AS i ORDER BY i)"
        )
    elif f.composite_array:
        element = declared.removesuffix("[]")
        value = (
            f"ARRAY(SELECT json_populate_record(NULL::{element}, e.v) FROM "
            f"json_array_elements({json}) WITH ORDINALITY AS e(v, n) ORDER BY e.n)"
        )
    else:
        value = f"json_populate_record(NULL::{declared}, {json})"
    return f"CASE WHEN {column} IS NULL THEN NULL ELSE {value} END"


def _ingest_pg_staged(
    cursor: Any, entity: Entity, fields: list[Field], stream: pa.RecordBatchReader
) -> None:
    """Ingest ``stream`` into a temporary table of its own Arrow types, then insert its rows
    into ``entity``'s table, each value cast to its column's type by PostgreSQL: through
    the type's input function for text (uuid, inet, jsonb, money, geometric types),
    range-checked for narrower numbers (an int4 into int2)."""
    quote = POSTGRESQL.quote_ident
    table = quote(entity.source)
    if entity.db_schema:
        table = f"{quote(entity.db_schema)}.{table}"
    cursor.execute(_COLUMN_TYPES, (table,))
    declared = dict(cursor.fetchall())
    stage = "quiver_load_stage"
    cursor.execute(f"DROP TABLE IF EXISTS pg_temp.{stage}")
    cursor.adbc_ingest(stage, stream, mode="create", temporary=True)
    names = ", ".join(quote(f.column) for f in fields)
    casts = ", ".join(_pg_cast(f, quote(f.column), declared[f.column]) for f in fields)
    cursor.execute(f"INSERT INTO {table} ({names}) SELECT {casts} FROM pg_temp.{stage}")
    cursor.execute(f"DROP TABLE pg_temp.{stage}")


@contextmanager
def _all_or_nothing(
    conn: Any,
    pool: ConnectionPool,
    entity: Entity,
    refused: list[QuiverError],
    locate: Callable[[str, str], int | None] | None = None,
    *,
    transaction: Any = None,
    abandoned: Callable[[], bool] = lambda: False,
) -> Iterator[None]:
    """Commit what the block wrote, or roll all of it back and raise what went wrong: the
    refusal of a batch (``refused``), the constraint the database says a row violates (the
    row found by ``locate`` when the database does not say it), the client's leaving before
    the end of its stream (``abandoned``), or the database's error. ``transaction``
    (``conn`` unless given) commits and rolls back; ``conn`` is closed."""
    tx = conn if transaction is None else transaction
    try:
        yield
        if abandoned():
            raise TicketError.one(
                "the client left before the end of its stream; nothing was written",
                "DoPut",
                "send the whole stream again and finish it (done_writing) before closing",
            )
        tx.commit()
    except QuiverError:
        tx.rollback()
        raise
    except Exception as exc:
        tx.rollback()
        if refused:
            raise refused[0] from None
        violated = violation(exc, pool.url.dialect, entity, locate)
        if violated is not None:
            raise violated from None
        raise database_error(exc, pool.url, f"loading {entity.name}", in_transaction=True) from None
    finally:
        conn.close()


_LENGTH = re.compile(r"\(\s*(\d+)\s*\)")


def _too_long(entity: Entity, batch: pa.RecordBatch, column: str) -> int | None:
    """The index in ``batch`` of the first value of ``column`` longer than its declared
    length (``varchar(40)``), or None."""
    f = entity.field_by_column(column)
    length = _LENGTH.search(f.db_type or "") if f is not None else None
    if f is None or length is None or f.column not in batch.schema.names:
        return None
    values = batch.column(f.column)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return None
    over = pc.greater(pc.utf8_length(values), int(length.group(1)))
    index = pc.index(over, True).as_py()
    return None if index is None or index < 0 else int(index)


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


def _mysql_value(f: Field) -> str:
    """The placeholder of ``f``'s value in the INSERT: the text an export reads a BIT or
    spatial column as becomes a value of the column again."""
    tpl = MYSQL.arrow_text_to(f.db_type) if f.scalar in (Scalar.STRING, Scalar.JSON) else None
    return "%s" if tpl is None else tpl.format("%s")


def _load_mysql(
    entity: Entity,
    pool: ConnectionPool,
    reader: pa.RecordBatchReader,
    fields: list[Field],
    abandoned: Callable[[], bool],
) -> int:
    quote = MYSQL.quote_ident
    table = quote(entity.source)
    if entity.db_schema:
        table = f"{quote(entity.db_schema)}.{table}"
    names = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(_mysql_value(f) for f in fields)
    statement = f"INSERT INTO {table} ({names}) VALUES ({marks})"
    conn = connect_mysql_bulk(pool.url)
    count = 0
    current: list[pa.RecordBatch] = []

    def locate(code: str, column: str) -> int | None:
        """The row (in the stream) of the value MariaDB found too long."""
        if code != "VALUE_TOO_LONG" or not current:
            return None
        index = _too_long(entity, current[-1], column)
        return None if index is None else count + index + 1

    with (
        _all_or_nothing(conn, pool, entity, [], locate, abandoned=abandoned),
        conn.cursor() as cursor,
    ):
        _refuse_a_view(cursor, entity, pool.url.dialect)
        # Strict whatever the server's default (a value the column cannot hold is refused,
        # never cut or zeroed with a warning), and times in UTC, as they were sent.
        cursor.execute(
            "SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''),"
            " 'STRICT_ALL_TABLES')"
        )
        cursor.execute("SET SESSION time_zone = '+00:00'")
        for batch in reader:
            checked = _checked(batch, fields, pool.url.dialect)
            current[:] = [checked]
            rows = list(zip(*(c.to_pylist() for c in checked.columns), strict=True))
            if rows:
                cursor.executemany(statement, rows)
            count += checked.num_rows
    return count
