"""Making a batch match a schema fixed earlier: the first file of a glob, the first object of a
listing, the first batch a sink was opened with, the columns a script's earlier batches had.

Columns are matched by name and put in the schema's order; a column of another type is cast
(text to a time of day included, which Arrow cannot cast itself). What cannot be matched is a
:class:`SchemaMismatchError` that says which columns differ, from what, where, and how to fix it::

    batch = conform(batch, schema, where="in/b.csv", origin="the first file")
"""

from __future__ import annotations

import re
from typing import Literal, TypeVar

import pyarrow as pa

from quiver.pipeline import kernels as pc
from quiver.pipeline.value_text import durations_from_texts, refuse_huge_exponents
from quiver.runtime.errors import PermanentError

__all__ = ["MissingColumns", "SchemaMismatchError", "cast_column", "conform"]

#: What a column of the schema that the batch lacks becomes: an error, or a column of nulls.
MissingColumns = Literal["error", "null"]

Data = TypeVar("Data", pa.RecordBatch, pa.Table)
Column = TypeVar("Column", pa.Array, pa.ChunkedArray)

_CAST_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError)
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}(\.\d{1,9})?$")
_DAY_NS = 86_400 * 1_000_000_000


class SchemaMismatchError(PermanentError):
    """A batch whose columns or column types do not match the schema fixed earlier. When a
    value did not convert, ``__cause__`` is the Arrow error saying which."""


def conform(
    data: Data,
    schema: pa.Schema,
    *,
    where: str,
    origin: str,
    missing: MissingColumns = "error",
    fix_columns: str = "give every batch the same columns (select or rename them in a processor)",
    fix_types: str = "give every batch the same column types (cast them in a processor)",
) -> Data:
    """``data`` (a RecordBatch or a Table) with exactly ``schema``: its columns matched by name,
    in the schema's order, cast to the schema's types.

    ``origin`` names what the schema came from for the message ("the first file"); ``where``
    is where the mismatch is (a file, an object, a step). A column ``data`` has and the schema
    has not is always an error; a column the schema has and ``data`` has not is one unless
    ``missing`` is ``"null"``. Raises :class:`SchemaMismatchError` with ``fix_columns`` or
    ``fix_types`` as the fix.
    """
    if data.schema.equals(schema, check_metadata=True):
        return data
    names = data.schema.names
    lacking = [n for n in schema.names if n not in names]
    extra = [n for n in names if schema.get_field_index(n) < 0]
    if extra or (lacking and missing == "error"):
        parts = [f"missing {lacking}"] if lacking and missing == "error" else []
        parts += [f"extra {extra}"] if extra else []
        raise SchemaMismatchError.one(
            f"columns differ from those of {origin}: {', '.join(parts)}", where, fix_columns
        )
    columns: list[pa.Array | pa.ChunkedArray] = []
    for field in schema:
        index = data.schema.get_field_index(field.name)
        if index < 0:
            columns.append(_nulls(data, field.type))
            continue
        column = data.column(index)
        try:
            columns.append(cast_column(column, field.type))
        except _CAST_ERRORS as exc:
            raise SchemaMismatchError.one(
                f"column types differ from those of {origin}: '{field.name}' is {column.type} "
                f"here but {field.type} there, and a value does not convert ({exc})",
                where,
                fix_types,
            ) from exc
    try:
        if isinstance(data, pa.Table):
            return pa.Table.from_arrays(columns, schema=schema)
        return pa.RecordBatch.from_arrays(columns, schema=schema)
    except _CAST_ERRORS as exc:  # e.g. nulls in a column the schema declares not null
        raise SchemaMismatchError.one(
            f"the batch does not fit the schema of {origin}: {exc}", where, fix_types
        ) from exc


def cast_column(column: Column, kind: pa.DataType) -> Column:
    """``column`` as ``kind``; text becomes a time of day (``HH:MM:SS[.fraction]``) and an
    ISO 8601 duration (``PT90000.5S``, ``P1M2DT0.5S``, as the text sinks write them) a duration
    or interval too. A value that does not convert raises the Arrow error naming it."""
    if column.type == kind:
        return column
    parse = None
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        if pa.types.is_time(kind):
            parse = _parse_times
        elif pa.types.is_duration(kind) or pa.types.is_interval(kind):
            parse = _parse_durations
        elif pa.types.is_decimal(kind):
            refuse_huge_exponents(column)
        elif pa.types.is_timestamp(kind) and kind.unit == "ns":
            parse = _parse_nanosecond_timestamps
    if parse is not None:
        if isinstance(column, pa.ChunkedArray):
            return pa.chunked_array([parse(c, kind) for c in column.chunks], kind)
        return parse(column, kind)
    return column.cast(kind)


_FRACTION = re.compile(r"^(.*?[T ]\d\d:\d\d:\d\d)\.(\d{1,9})(.*)$", re.S)
_NS_PER_S = 1_000_000_000


def _parse_nanosecond_timestamps(text: pa.Array, kind: pa.DataType) -> pa.Array:
    """ISO 8601 text as a nanosecond timestamp. Arrow's parser multiplies the whole seconds
    by 10**9 before it adds the fraction, which overflows in the last second before the
    least value (``1677-09-21T00:12:43.145224193``): such text is read as seconds and a
    fraction, joined without overflow."""
    try:
        return text.cast(kind)
    except pa.ArrowInvalid as exc:
        failure = exc
    values = text.to_pylist()
    bases: list[str | None] = []
    fractions: list[int] = []
    for value in values:
        m = _FRACTION.match(value) if value is not None else None
        bases.append(m[1] + m[3] if m else value)
        fractions.append(int(m[2].ljust(9, "0")) if m else 0)
    try:
        seconds = pa.array(bases, pa.string()).cast(pa.timestamp("s", kind.tz)).cast(pa.int64())
    except pa.ArrowInvalid:
        raise failure from None
    counts: list[int | None] = []
    for value, second, fraction in zip(values, seconds.to_pylist(), fractions, strict=True):
        count = None if second is None else second * _NS_PER_S + fraction
        if count is not None and not -(2**63) <= count < 2**63:
            raise pa.ArrowInvalid(f"invalid value '{value}': beyond {kind}")
        counts.append(count)
    return pa.array(counts, pa.int64()).cast(kind)


def _parse_durations(text: pa.Array, kind: pa.DataType) -> pa.Array:
    values = text.to_pylist()
    try:
        return durations_from_texts(values, kind)
    except (ValueError, OverflowError) as exc:
        failure = exc
    for value in values:  # name the first value that does not convert
        try:
            durations_from_texts([value], kind)
        except ValueError as exc:
            if not isinstance(exc, pa.ArrowInvalid):
                raise pa.ArrowInvalid(str(exc)) from None
            raise pa.ArrowInvalid(f"{value!r} does not fit {kind}") from None
        except OverflowError:
            raise pa.ArrowInvalid(f"{value!r} does not fit {kind}") from None
    raise pa.ArrowInvalid(str(failure))


def _nulls(data: pa.RecordBatch | pa.Table, kind: pa.DataType) -> pa.Array:
    return pa.nulls(data.num_rows, kind)


def _parse_times(text: pa.Array, kind: pa.DataType) -> pa.Array:
    ok = pc.match_substring_regex(text, _TIME.pattern)
    if not pc.all(pc.or_kleene(ok, pc.is_null(text))).as_py():
        bad = text.filter(pc.invert(pc.fill_null(ok, True)))[0].as_py()
        raise pa.ArrowInvalid(f"{bad!r} is not a valid time (HH:MM:SS[.fraction])")

    def part(start: int, stop: int) -> pa.Array:
        return pc.cast(pc.utf8_slice_codeunits(text, start, stop), pa.int64())

    fraction = pc.utf8_rpad(pc.utf8_slice_codeunits(text, 9, 18), 9, "0")
    nanos = pc.add(
        pc.multiply(
            pc.add(pc.multiply(pc.add(pc.multiply(part(0, 2), 60), part(3, 5)), 60), part(6, 8)),
            1_000_000_000,
        ),
        pc.cast(fraction, pa.int64()),
    )
    if pc.any(pc.greater_equal(nanos, _DAY_NS)).as_py():
        bad = text.filter(pc.fill_null(pc.greater_equal(nanos, _DAY_NS), False))[0].as_py()
        raise pa.ArrowInvalid(f"{bad!r} is not a valid time of day")
    return pc.cast(pc.cast(nanos, pa.time64("ns")), kind, safe=False)
