"""Arrow types of the catalog's fields, and batches made to match them.

Every stream a Flight client reads has the schema :func:`arrow_schema` gives, whatever the
database: Int is int32, BigInt int64, Float float64, Decimal decimal128 (precision and scale of
the column when the database states them: ``decimal128(p, s)`` up to 38 digits,
``decimal256(p, s)`` up to 76, exact text past that; ``decimal128(38, 10)`` when it does not),
DateTime timestamp[us, UTC], Date date32, Time
time64[us] (PostgreSQL's timetz utf8, with its offset), Base64 binary, everything else
(String, ID, UUID, JSON, enums) utf8; an array
column is a list of its element type. Nulls are kept.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from quiver.runtime.errors import ErrorDetail, PermanentError
from quiver.schema.ir import Field, Scalar

__all__ = [
    "arrow_schema",
    "arrow_type",
    "cast_exact",
    "conform_array",
    "conform_batch",
    "json_carrier",
]

_DECIMAL = re.compile(r"(?:numeric|decimal)\s*\(\s*(\d+)\s*(?:,\s*(-?\d+)\s*)?\)", re.IGNORECASE)
_DEFAULT_DECIMAL = pa.decimal128(38, 10)

_SCALARS: dict[Scalar, pa.DataType] = {
    Scalar.INT: pa.int32(),
    Scalar.BIGINT: pa.int64(),
    Scalar.FLOAT: pa.float64(),
    Scalar.BOOLEAN: pa.bool_(),
    Scalar.STRING: pa.string(),
    Scalar.ID: pa.string(),
    Scalar.UUID: pa.string(),
    Scalar.JSON: pa.string(),
    Scalar.DATETIME: pa.timestamp("us", tz="UTC"),
    Scalar.DATE: pa.date32(),
    Scalar.TIME: pa.time64("us"),
    Scalar.BASE64: pa.binary(),
}


def arrow_type(f: Field) -> pa.DataType:
    """The Arrow type a field's values travel as."""
    if f.enum_values is not None or _zoned_time(f):
        t: pa.DataType = pa.string()
    elif f.scalar == Scalar.DECIMAL:
        t = _decimal(f.db_type)
    else:
        t = _SCALARS[f.scalar]
    return pa.list_(t) if f.is_list else t


def _zoned_time(f: Field) -> bool:
    """Whether ``f`` is a time of day with a UTC offset (PostgreSQL ``timetz``): time64 has
    no offset, so it travels as its text (``10:00:00+02``)."""
    return f.scalar == Scalar.TIME and (f.db_type or "").lower() in (
        "timetz",
        "time with time zone",
    )


def _decimal(db_type: str | None) -> pa.DataType:
    """``decimal128(p, s)`` of a declared precision up to 38, ``decimal256(p, s)`` up to 76,
    exact text past that; a negative scale (PostgreSQL 15) widens to whole numbers, a scale
    above the precision to ``(s, s)``. Undeclared: :data:`_DEFAULT_DECIMAL`, and a value that
    does not fit it fails the stream with an error naming the column (never rounded)."""
    m = _DECIMAL.search(db_type or "")
    if m is None:
        return _DEFAULT_DECIMAL
    precision = int(m.group(1))
    scale = int(m.group(2) or 0)
    if scale < 0:
        precision, scale = precision - scale, 0
    precision = max(precision, scale, 1)
    if precision <= 38:
        return pa.decimal128(precision, scale)
    if precision <= 76:
        return pa.decimal256(precision, scale)
    return pa.string()


def arrow_schema(fields: Iterable[Field]) -> pa.Schema:
    """The schema of a stream of ``fields``, named by their API names."""
    return pa.schema([pa.field(f.name, arrow_type(f), nullable=f.nullable) for f in fields])


def conform_batch(
    batch: pa.RecordBatch, schema: pa.Schema, table: str | None = None
) -> pa.RecordBatch:
    """``batch`` with its columns cast to ``schema`` (the database's own types may differ);
    ``table``, named in the error of a value that cannot be cast, is where the rows are from."""
    if batch.schema.equals(schema):
        return batch
    columns = []
    for column, target in zip(batch.columns, schema, strict=True):
        try:
            columns.append(_conform(column, target.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            detail = ErrorDetail(
                f"column {target.name!r}{f' of table {table!r}' if table else ''} holds a"
                f" value that cannot be read as {target.type} "
                f"(the database gave {column.type}): {first}",
                target.name,
                "fix the stored value, or leave the column out of the ticket",
            )
            raise PermanentError([detail], code="STORED_VALUE") from None
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def cast_exact(column: pa.Array, target: pa.DataType) -> pa.Array:
    """``column`` cast to ``target``, failing when a value would change. An integer type
    casts to a decimal only of 19 + s digits or more (whatever its values), so integers go
    through the widest decimal, checked value by value."""
    if pa.types.is_integer(column.type) and pa.types.is_decimal(target):
        wide = pa.decimal128(38, 0) if pa.types.is_decimal128(target) else pa.decimal256(76, 0)
        return column.cast(wide, safe=True).cast(target, safe=True)
    return column.cast(target, safe=True)


def json_carrier(target: pa.DataType) -> pa.DataType:
    """The type ``target``'s values have in GraphQL's JSON: BigInt, Decimal, dates and times
    travel as strings there."""
    if pa.types.is_struct(target):
        return pa.struct([pa.field(f.name, json_carrier(f.type), f.nullable) for f in target])
    if pa.types.is_list(target):
        return pa.list_(json_carrier(target.value_type))
    if pa.types.is_int64(target) or pa.types.is_decimal(target) or pa.types.is_temporal(target):
        return pa.string()
    return target


def conform_array(column: pa.Array, target: pa.DataType) -> pa.Array:
    """``column`` cast to ``target``, field by field inside structs and lists."""
    if pa.types.is_struct(target) and pa.types.is_struct(column.type):
        children = [
            conform_array(column.field(i), target.field(i).type) for i in range(target.num_fields)
        ]
        return pa.StructArray.from_arrays(
            children, fields=list(target), mask=column.is_null() if column.null_count else None
        )
    if pa.types.is_list(target) and pa.types.is_list(column.type):
        values = conform_array(column.values, target.value_type)
        return pa.ListArray.from_arrays(
            column.offsets,
            values,
            type=target,
            mask=column.is_null() if column.null_count else None,
        )
    return _conform(column, target)


def _conform(column: pa.Array, target: pa.DataType) -> pa.Array:
    source = column.type
    if source.equals(target):
        return column
    if column.null_count == len(column):
        # Nothing to convert: SQLite types a column by its values, and one holding only NULLs
        # comes as int64 (or null), whose casts to decimal, date or binary fail.
        return pa.nulls(len(column), target)
    if pa.types.is_integer(source) and pa.types.is_decimal(target):
        # SQLite keeps whole numbers of a NUMERIC(p, s) column as integers.
        return cast_exact(column, target)
    if isinstance(source, pa.BaseExtensionType):  # ADBC's arrow.uuid and arrow.json
        uuid_like = pa.types.is_fixed_size_binary(source.storage_type)
        if uuid_like and pa.types.is_string(target):
            return pa.array([None if v is None else str(v) for v in column.to_pylist()], target)
        return _conform(column.storage, target)
    text = pa.types.is_string(source) or pa.types.is_large_string(source)
    if pa.types.is_timestamp(target) and target.tz is not None:
        if text:
            return pc.cast(_iso_text(column), pa.timestamp("us")).cast(target)
        if pa.types.is_timestamp(source) and source.tz is None:
            return column.cast(pa.timestamp("us")).cast(target)
    if pa.types.is_time(target) and text:
        return _time_of_text(column)
    if pa.types.is_boolean(target) and pa.types.is_integer(source):
        return pc.not_equal(column, 0)
    if (
        pa.types.is_fixed_size_binary(source)
        and source.byte_width == 16
        and pa.types.is_string(target)
    ):
        return pa.array(
            [None if v is None else str(uuid.UUID(bytes=v)) for v in column.to_pylist()], target
        )
    return column.cast(target)


def _iso_text(column: pa.Array) -> pa.Array:
    """ISO timestamps as pyarrow parses them: a space or ``T`` between date and time, a ``Z``
    or zero offset dropped (SQLite stores text)."""
    spaced = pc.replace_substring_regex(column, r"^(\d{4}-\d{2}-\d{2})T", r"\1 ")
    return pc.replace_substring_regex(spaced, r"(Z|[+-]00:?00)$", "")


def _time_of_text(column: pa.Array) -> pa.Array:
    """``HH:MM:SS[.ffffff]`` text as time64[us]."""
    stamp = pc.cast(pc.binary_join_element_wise("1970-01-01 ", column, ""), pa.timestamp("us"))
    return pc.cast(pc.cast(stamp, pa.int64()), pa.time64("us"))
