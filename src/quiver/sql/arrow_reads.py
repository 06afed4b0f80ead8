"""How columns are read into Arrow so that each value is the one the database holds.

ADBC's PostgreSQL driver hands out several types in their binary wire form (inet, cidr,
macaddr, bit, geometric types, ranges, timetz, xml), money as its integer count of cents and
``infinity`` dates as dates 30,000 years ago; MariaDB's single-precision FLOATs arrive rounded
to 6 digits, wider BITs and spatial values as bytes. The Flight export (from the catalog's
column types) and the pipeline's database source (from a result's own column types) both read
such columns through the same templates of :class:`~quiver.sql.dialects.Dialect`
(``arrow_text_output``, ``arrow_composite_output``, ``key_output``), built here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from quiver.sql.dialects import MYSQL, POSTGRESQL

__all__ = [
    "InfiniteTime",
    "NonFiniteNumeric",
    "bit_number",
    "end_of_day_column",
    "infinite_time_column",
    "mysql_read_template",
    "non_finite_numeric_column",
    "pg_read_template",
    "read_through",
    "template_parts",
]


def template_parts(tpl: str | None, column: Any) -> tuple[Any, ...]:
    """``tpl`` with each ``{}`` replaced by ``column`` (a fragment or quoted SQL), as parts."""
    if tpl is None:
        return (column,)
    parts: list[Any] = []
    for i, text in enumerate(tpl.split("{}")):
        parts.extend((column, text) if i else (text,))
    return tuple(parts)


#: PostgreSQL types ADBC reads into another Arrow type than their value: money as its cents,
#: interval as Arrow's month_day_nano (which no sink writes as PostgreSQL's text does); in
#: arrays too.
_PG_TEXT_TYPES = frozenset({"money", "interval"})


def _opaque_binary(t: pa.DataType) -> bool:
    return isinstance(t, pa.OpaqueType) and pa.types.is_binary(t.storage_type)


def _typname(f: pa.Field) -> str:
    return str((f.metadata or {}).get(b"POSTGRESQL:type", b"").decode())


def pg_read_template(f: pa.Field) -> str | None:
    """How a column of a PostgreSQL result whose ADBC field is ``f`` is read as its value (a
    ``{}`` template), or None when ADBC's reading already is the value."""
    t = f.type
    typname = _typname(f)
    if pa.types.is_struct(t):
        return POSTGRESQL.arrow_composite_output
    if pa.types.is_list(t) and pa.types.is_struct(t.value_type):
        return POSTGRESQL.arrow_composite_list
    if pa.types.is_list(t):
        element = _typname(t.value_field)
        if _opaque_binary(t.value_type) or element in _PG_TEXT_TYPES:
            # xml[] has no template of its own (the export converts xml): its text[] cast
            tpl = POSTGRESQL.arrow_text_of(element or "unknown", is_list=True)
            return tpl or POSTGRESQL.arrow_text_list
        return None
    if _opaque_binary(t) and typname.startswith("_"):
        # an array of a type the driver has no name for (a range), named by pg_type
        return POSTGRESQL.arrow_text_of(typname[1:], is_list=True)
    if _opaque_binary(t) or typname in _PG_TEXT_TYPES:
        # xml's binary form is its text, which the export converts itself.
        return POSTGRESQL.arrow_text_of(typname or "unknown") or POSTGRESQL.text_cast
    return None


def bit_number(value: Any) -> Any:
    """A MariaDB/MySQL BIT value as its number: the driver hands it out as big-endian bytes
    (``b"\\x00"``, which Python's ``bool`` takes for true); other values as they are."""
    return int.from_bytes(value, "big") if isinstance(value, bytes | bytearray) else value


def mysql_read_template(type_code: int, length: int | None) -> str | None:
    """How a column of a MariaDB/MySQL result (its type code and length in the cursor's
    description) is read as its value, or None when the driver's reading already is."""
    from asyncmy.constants import FIELD_TYPE as T

    if type_code == T.FLOAT:
        return MYSQL.key_output_of("float")
    if type_code == T.BIT:
        return MYSQL.arrow_text_of(f"bit({length or 1})")
    if type_code == T.GEOMETRY:
        return MYSQL.arrow_text_of("geometry")
    return None


def read_through(
    query: str, names: Sequence[str], templates: Sequence[str | None], quote: Any
) -> str:
    """``query`` unchanged when no column needs a template, otherwise wrapped so each column
    is read through its own: ``SELECT q."a", CAST(q."c" AS text) AS "c" FROM (query) AS q``."""
    if all(tpl is None for tpl in templates):
        return query
    columns = []
    for name, tpl in zip(names, templates, strict=True):
        column = f"q.{quote(name)}"
        expr = "".join(template_parts(tpl, column))
        columns.append(column if tpl is None else f"{expr} AS {quote(name)}")
    return f"SELECT {', '.join(columns)} FROM ({query}) AS q"


def _scalar(arrow: pa.DataType, fmt: str, value: int) -> pa.Scalar:
    """A scalar built from its bytes: converting a Python value (``pa.scalar``, or a Python
    value given to a compute function) imports pandas, when installed, the first time."""
    return pa.Array.from_buffers(arrow, 1, [None, pa.py_buffer(struct.pack(fmt, value))])[0]


#: Before PostgreSQL's earliest date and time (4713 BC): ADBC's reading of ``infinity`` and
#: ``-infinity``, which overflows as it moves PostgreSQL's epoch (2000) to Arrow's (1970).
_PG_EARLIEST = {
    pa.date32(): _scalar(pa.int32(), "<i", -2_440_588),
    pa.timestamp("us"): _scalar(pa.int64(), "<q", -210_866_803_200_000_000),
    pa.timestamp("us", tz="UTC"): _scalar(pa.int64(), "<q", -210_866_803_200_000_000),
}


#: The raw values ADBC reads PostgreSQL's ``infinity`` and ``-infinity`` as, per Arrow type.
_PG_INFINITE = {
    pa.date32(): {-2_147_472_692: "infinity", -2_147_472_691: "-infinity"},
    pa.timestamp("us"): {
        -9_222_425_352_054_775_809: "infinity",
        -9_222_425_352_054_775_808: "-infinity",
    },
}
_PG_INFINITE[pa.timestamp("us", tz="UTC")] = _PG_INFINITE[pa.timestamp("us")]


@dataclass(frozen=True)
class InfiniteTime:
    """A date or timestamp column of a batch holding an infinite value, at row ``index``."""

    column: str
    arrow: pa.DataType
    index: int
    value: str  # infinity or -infinity (or both, when the driver's reading is not known)


def infinite_time_column(batch: pa.RecordBatch) -> InfiniteTime | None:
    """The first date or timestamp column (or array of them) of a PostgreSQL ``batch`` read by
    ADBC that holds ``infinity`` or ``-infinity``, which no Arrow date or timestamp holds (read
    as is, they would be dates 30,000 years ago); None when there is none."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        values = column
        if pa.types.is_list(column.type):  # an array of dates or timestamps: its elements
            values = pc.list_flatten(column)
        earliest = _PG_EARLIEST.get(values.type)
        if earliest is None or values.null_count == len(values):
            continue
        raw = values.cast(earliest.type)
        before = pc.indices_nonzero(pc.less(raw, earliest))
        if len(before):
            index = before[0].as_py()
            value = _PG_INFINITE[values.type].get(raw[index].as_py(), "infinity or -infinity")
            if values is not column:
                index = pc.list_parent_indices(column)[index].as_py()
            return InfiniteTime(name, column.type, index, value)
    return None


#: A day in microseconds: PostgreSQL's time and time[] hold 24:00:00, ADBC reads it as this.
_DAY_US = 86_400_000_000


def end_of_day_column(batch: pa.RecordBatch) -> str | None:
    """The first time64[us] column (or array of them) of a PostgreSQL ``batch`` read by ADBC
    that holds ``24:00:00``, which no Arrow time holds (a time64 is less than a day; readers
    show it as 00:00:00); None when there is none."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        values = pc.list_flatten(column) if pa.types.is_list(column.type) else column
        if not pa.types.is_time64(values.type) or values.null_count == len(values):
            continue
        if pc.any(pc.greater_equal(values.cast(pa.int64()), _DAY_US)).as_py():
            return str(name)
    return None


#: How ADBC's PostgreSQL driver writes a numeric's NaN and infinities (as C does), and how
#: PostgreSQL (and GraphQL) spell them.
_PG_NUMERIC_SPECIALS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


@dataclass(frozen=True)
class NonFiniteNumeric:
    """A ``numeric(p, s)`` column of a batch holding NaN (or, unconstrained, an infinity) at
    row ``index``, which no Arrow decimal holds."""

    column: str
    index: int
    value: str  # as PostgreSQL spells it: NaN, Infinity or -Infinity


def non_finite_numeric_column(
    batch: pa.RecordBatch, decimal_columns: Sequence[str]
) -> NonFiniteNumeric | None:
    """The first of ``decimal_columns`` (PostgreSQL numerics, or arrays of them, read by ADBC
    as text, to become Arrow decimals) of ``batch`` holding NaN, Infinity or -Infinity; None
    when none does."""
    for name in decimal_columns:
        column = values = batch.column(name)
        if pa.types.is_list(column.type):  # an array of numerics: its elements
            values = pc.list_flatten(column)
        if isinstance(values.type, pa.BaseExtensionType):
            values = values.storage
        special = pc.is_in(values, pa.array(list(_PG_NUMERIC_SPECIALS), values.type))
        found = pc.indices_nonzero(pc.fill_null(special, False))
        if len(found):
            at = found[0].as_py()
            value = _PG_NUMERIC_SPECIALS[values[at].as_py()]
            if pa.types.is_list(column.type):
                at = pc.list_parent_indices(column)[at].as_py()
            return NonFiniteNumeric(name, at, value)
    return None
