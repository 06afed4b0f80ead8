"""Values as the text the file sinks write: every type in its shortest exact form.

A decimal column holds its values at the column's scale (``decimal(38, 9)`` keeps nine
places), but ``202099.64`` read from text is written back as ``202099.64``, never
``202099.640000000`` nor ``2.0209964E+5``: trailing zeros after the point are dropped, the
point too when nothing follows it, and no exponent is ever used. Floats are written as the
shortest text that reads back to the same float (``0.1``, ``56244``); integers, dates and times
as Arrow writes them. The CSV and JSON Lines sinks share these rules, computed column-wise.

A decimal read from text keeps its text: a text source (CSV, JSON Lines) that converts a column
to a decimal type keeps the text of each value in an internal column beside it
(:func:`decimals_from_text`), and the text sinks write that text back, ``310.00`` or
``56244.0`` as it was read, for every row whose value still equals it
(:func:`with_kept_decimal_text`); a value a step changed is written in its shortest exact form.
Only text in plain notation (``-12.50``, never ``1.25E+1``) is kept.

Durations and intervals, which no text format has a type for, are written as ISO 8601
durations (:func:`iso_duration`): ``PT90000.5S``, ``P1M2DT0.000000003S``.

Timestamps are RFC 3339 text in every text sink (:func:`timestamp_texts`), at top level and
nested in lists, structs and maps (:func:`timestamps_as_text`): ``T`` between date and time,
every digit of the column's unit, and a zoned column's UTC offset as ``+01:00``, or ``Z`` for a
column in UTC (``2024-01-01T12:00:00.000000Z``); a timestamp without a zone has no offset.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any

import numpy as np
import pyarrow as pa

from quiver.pipeline import kernels as pc
from quiver.pipeline.component import KEPT_TEXT_PREFIX, kept_text_column

__all__ = [
    "HUGE_EXPONENT",
    "decimal_misfit",
    "decimal_text",
    "decimals_from_text",
    "duration_texts",
    "durations_from_texts",
    "iso_duration",
    "kept_text",
    "plain_decimal",
    "refuse_huge_exponents",
    "scalar_texts",
    "timestamp_text",
    "timestamp_texts",
    "timestamps_as_text",
    "with_kept_decimal_text",
    "without_decimal_text",
]

_PLAIN = r"^-?[0-9]+(\.[0-9]+)?$"


def plain_decimal(value: decimal.Decimal) -> str:
    """One decimal in its shortest exact form, without an exponent (``1E+3`` -> ``1000``)."""
    if not value.is_finite():
        return str(value)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _has_exponent(text: pa.Array) -> bool:
    """Whether Arrow wrote any value of ``text`` with an exponent (one pass over its bytes)."""
    data = text.buffers()[2] if len(text) else None
    if data is None:
        return False
    offsets = np.frombuffer(text.buffers()[1], np.int32)[text.offset : text.offset + len(text) + 1]
    used = np.frombuffer(data, np.uint8)[int(offsets[0]) : int(offsets[-1])]
    return bool((used == ord("E")).any())


def decimal_text(column: pa.Array) -> pa.Array:
    """A decimal column as strings in their shortest exact form (see the module's text)."""
    text = pc.cast(column, pa.string())
    if _has_exponent(text):
        # Arrow writes very small or scaled values with an exponent: rare, so value by value
        values = column.to_pylist()
        return pa.array([None if v is None else plain_decimal(v) for v in values], pa.string())
    if column.type.scale <= 0:
        return text
    # with a positive scale Arrow always writes the point: zeros after it, then a bare point
    return pc.ascii_rtrim(pc.ascii_rtrim(text, "0"), ".")


def scalar_texts(column: pa.Array) -> pa.Array:
    """A column of numbers, booleans, dates, times, durations or intervals as strings in their
    shortest exact form."""
    if pa.types.is_decimal(column.type):
        return decimal_text(column)
    if pa.types.is_duration(column.type) or pa.types.is_interval(column.type):
        return duration_texts(column)
    if pa.types.is_timestamp(column.type):
        return timestamp_texts(column)
    return pc.cast(column, pa.string())


def timestamp_texts(column: pa.Array) -> pa.Array:
    """A timestamp column as RFC 3339 text (see the module's text): Arrow writes
    ``2024-01-01 13:00:00.000000+0100``, which becomes ``2024-01-01T13:00:00.000000+01:00``.

    A zoned value whose local time that form cannot hold is written in UTC, ``Z``, the same
    instant: an offset of seconds (local mean time, e.g. Paris's +00:09:21 before 1911, which
    Arrow writes as ``+0009``), a local date past year 9999 (``10000-01-01``, which no reader
    takes), or a local time past the range of nanosecond timestamps."""
    text = _rfc3339(column)
    zone = column.type.tz
    if zone is None or zone in _UTC_ZONES or len(column) == column.null_count:
        return text
    danger, edge = _danger(column)
    if not pc.any(danger).as_py() and (edge is None or not pc.any(edge).as_py()):
        return text
    in_utc = _rfc3339(column.cast(pa.timestamp(column.type.unit, "UTC")))
    return pc.if_else(_local_time_lost(column, danger, edge), in_utc, text)


def _rfc3339(column: pa.Array) -> pa.Array:
    text = pc.replace_substring(pc.cast(column, pa.string()), " ", "T", max_replacements=1)
    if column.type.tz is None:
        return text
    return pc.replace_substring_regex(text, r"([+-]\d{2})(\d{2})$", r"\1:\2")


#: Zones whose offset is always zero: their values' text never loses a local time.
_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "Z", "+00:00", "utc"})
#: Seconds since 1970 from which every zone of the tz database has offsets of whole minutes
#: (Liberia's -00:44:30 ended on 1972-01-07), and from which a local date can pass 9999-12-31.
_WHOLE_MINUTES_FROM = int(dt.datetime(1972, 1, 8, tzinfo=dt.UTC).timestamp())
_LOCAL_PAST_9999_FROM = int(dt.datetime(9999, 12, 30, tzinfo=dt.UTC).timestamp())
#: How far from the end of their range nanosecond values can have no local time (a day).
_NS_MARGIN = 86_400 * 10**9
_PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _danger(column: pa.Array) -> tuple[pa.Array, pa.Array | None]:
    """Where a value of ``column`` (zoned) may have a local time its text cannot hold, and,
    for nanoseconds, where it lies within a day of the end of the range (its local time may
    be past that end: Arrow then wraps it around silently)."""
    per = _PER_SECOND[column.type.unit]
    counts = column.cast(pa.int64())
    danger = pc.less(counts, _WHOLE_MINUTES_FROM * per)
    edge = None
    if column.type.unit == "ns":  # year 9999 is past the range, whose ends come first
        high = 2**63 - 1 - _NS_MARGIN
        edge = pc.fill_null(
            pc.or_(pc.greater(counts, high), pc.less(counts, pa.scalar(-high, pa.int64()))),
            False,
        )
    else:
        danger = pc.or_(danger, pc.greater(counts, _LOCAL_PAST_9999_FROM * per))
    return pc.fill_null(danger, False), edge


def _local_time_lost(column: pa.Array, danger: pa.Array, edge: pa.Array | None) -> pa.Array:
    """Where the text of a zoned ``column`` would not hold its value's local time, among the
    values :func:`_danger` found doubtful (``danger``, ``edge``)."""
    # the local times of the values at the range's ends are not computed (they would wrap)
    safe = column if edge is None else pc.if_else(edge, pa.scalar(0, column.type), column)
    local = pc.local_timestamp(safe)
    minute = 60 * _PER_SECOND[column.type.unit]
    offset = pc.subtract(local.cast(pa.int64()), safe.cast(pa.int64()))
    odd = pc.not_equal(pc.subtract(offset, pc.multiply(pc.divide(offset, minute), minute)), 0)
    lost = pc.and_(danger, pc.fill_null(pc.or_(odd, pc.greater(pc.year(local), 9999)), False))
    return lost if edge is None else pc.or_(lost, edge)


def timestamp_text(value: dt.datetime) -> str:
    """One Python timestamp as RFC 3339 text, as :func:`timestamp_texts` writes a column's: its
    offset as ``+01:00``, ``Z`` in UTC. A Python value no longer knows its column's unit: its
    fraction has six digits, or none when it is zero."""
    text = value.isoformat()
    zone = value.tzinfo
    if zone is not None and (zone is dt.UTC or str(getattr(zone, "key", zone)) == "UTC"):
        text = text.removesuffix("+00:00") + "Z"
    return text


def _holds_timestamp(t: pa.DataType) -> bool:
    if pa.types.is_timestamp(t):
        return True
    if pa.types.is_dictionary(t):
        return _holds_timestamp(t.value_type)
    return any(_holds_timestamp(t.field(i).type) for i in range(t.num_fields))


def _rebased(column: Any) -> tuple[pa.Array, int, int]:
    """The offsets of a list or map array counted from its first value, that value's index in
    the child, and how many values the array uses (a slice uses part of its child)."""
    offsets = column.offsets
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    if start:
        offsets = pc.subtract(offsets, pa.scalar(start, offsets.type))
    return offsets, start, end - start


def timestamps_as_text(column: pa.Array) -> pa.Array:
    """``column`` with each timestamp in it, at any depth of lists, structs and maps, replaced
    by its RFC 3339 text (:func:`timestamp_texts`); a column without timestamps as it is."""
    t = column.type
    if not _holds_timestamp(t):
        return column
    if pa.types.is_timestamp(t):
        return timestamp_texts(column)
    if pa.types.is_dictionary(t):
        return timestamps_as_text(column.dictionary_decode())
    nulls = column.is_null() if column.null_count else None
    if pa.types.is_map(t):
        offsets, start, count = _rebased(column)
        keys = timestamps_as_text(column.keys.slice(start, count))
        items = timestamps_as_text(column.items.slice(start, count))
        return pa.MapArray.from_arrays(offsets, keys, items, mask=nulls)
    if pa.types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        children = [timestamps_as_text(column.field(i)) for i in range(t.num_fields)]
        return pa.StructArray.from_arrays(
            children,
            fields=[
                pa.field(f.name, c.type, f.nullable) for f, c in zip(fields, children, strict=True)
            ],
            mask=nulls,
        )
    if pa.types.is_fixed_size_list(t):
        size = t.list_size
        values = timestamps_as_text(column.values.slice(column.offset * size, len(column) * size))
        return pa.FixedSizeListArray.from_arrays(values, t.list_size, mask=nulls)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        kind = pa.ListArray if pa.types.is_list(t) else pa.LargeListArray
        offsets, start, count = _rebased(column)
        values = timestamps_as_text(column.values.slice(start, count))
        return kind.from_arrays(offsets, values, mask=nulls)
    return column  # list views, unions: written as Python values


#: Nanoseconds in one unit of an Arrow duration.
_NANOSECONDS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def duration_texts(column: pa.Array) -> pa.Array:
    """A duration or interval column as ISO 8601 durations (:func:`iso_duration`); nulls stay
    null."""
    if pa.types.is_duration(column.type):
        unit = _NANOSECONDS[column.type.unit]
        counts = column.cast(pa.int64()).to_pylist()
        texts = [None if c is None else _iso(0, 0, c * unit) for c in counts]
    else:
        texts = [None if v is None else iso_duration(v) for v in column.to_pylist()]
    return pa.array(texts, pa.string())


def _seconds(nanoseconds: int) -> str:
    """``nanoseconds`` as exact decimal seconds, without trailing zeros: ``0.000000003``."""
    sign = "-" if nanoseconds < 0 else ""
    whole, fraction = divmod(abs(nanoseconds), 10**9)
    return f"{sign}{whole}.{fraction:09d}".rstrip("0").rstrip(".") if fraction else f"{sign}{whole}"


def _iso(months: int, days: int, nanoseconds: int) -> str:
    date = (f"{months}M" if months else "") + (f"{days}D" if days else "")
    time = f"T{_seconds(nanoseconds)}S" if nanoseconds or not date else ""
    return f"P{date}{time}"


_ISO_DURATION = re.compile(r"P(?:(-?\d+)M)?(?:(-?\d+)D)?(?:T(-?\d+)(?:\.(\d{1,9}))?S)?")


def _iso_parts(text: str) -> tuple[int, int, int]:
    """(months, days, nanoseconds) of an ISO 8601 duration as :func:`iso_duration` writes it;
    ValueError for other text."""
    m = _ISO_DURATION.fullmatch(text)
    if m is None or text == "P" or text.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as PT90000.5S")
    months, days, whole, fraction = m.groups()
    nanoseconds = 0
    if whole is not None:
        nanoseconds = abs(int(whole)) * 10**9 + int((fraction or "").ljust(9, "0"))
        nanoseconds = -nanoseconds if whole.startswith("-") else nanoseconds
    return int(months or 0), int(days or 0), nanoseconds


def durations_from_texts(values: list[Any], t: pa.DataType) -> pa.Array:
    """ISO 8601 durations (as :func:`duration_texts` writes them; None for null) back into a
    duration or interval column of type ``t``. ValueError for text that is not such a
    duration, or that the type cannot hold exactly (months in a duration, a fraction finer
    than its unit)."""
    parts = [None if v is None else _iso_parts(v) for v in values]
    if pa.types.is_interval(t):
        return pa.array([None if p is None else pa.MonthDayNano(p) for p in parts], t)
    unit = _NANOSECONDS[t.unit]
    counts: list[int | None] = []
    for p, v in zip(parts, values, strict=True):
        if p is None:
            counts.append(None)
            continue
        months, days, nanoseconds = p
        if months or days or nanoseconds % unit:
            raise ValueError(f"{v!r} is not a whole number of {t.unit} without months or days")
        counts.append(nanoseconds // unit)
    return pa.array(counts, pa.int64()).cast(t)


def iso_duration(value: Any) -> str:
    """An Arrow interval (``MonthDayNano``) or a duration (``timedelta``) as an ISO 8601
    duration: ``P1M2DT0.000000003S``; a duration in seconds alone (``PT90000.5S``), its days
    being exact, not calendar days; zero as ``PT0S``. Each part that is negative carries its own
    sign (``P-1M2DT-0.5S``), as an interval's parts may differ in sign."""
    if isinstance(value, pa.MonthDayNano):
        return _iso(value.months, value.days, value.nanoseconds)
    nanoseconds = getattr(value, "value", None)  # a pandas Timedelta holds nanoseconds
    if not isinstance(nanoseconds, int):
        assert isinstance(value, dt.timedelta)
        micro = (value.days * 86_400 + value.seconds) * 10**6 + value.microseconds
        nanoseconds = micro * 1000
    return _iso(0, 0, nanoseconds)


def decimals_from_text(
    rows: pa.Table, types: dict[str, pa.DataType], decimal_point: str = "."
) -> pa.Table:
    """``rows`` with its text columns named in ``types`` cast to those decimal types, and the
    text of each kept in an internal column (see the module's text).

    Raises ``pyarrow.ArrowInvalid`` when a value is not a decimal of its type: the caller reads
    the values its own way then (and :func:`without_decimal_text` keeps the shape).
    """
    for name, kind in types.items():
        at = rows.schema.get_field_index(name)
        if at < 0:
            continue
        text = rows.column(at)
        if decimal_point != ".":
            text = pc.replace_substring(text, decimal_point, ".")
        try:
            values = pc.cast(text, kind)
        except pa.ArrowInvalid:
            text = pc.utf8_trim(text, " \t")  # the blanks Arrow's CSV reader allows around numbers
            values = pc.cast(text, kind)
        rows = rows.set_column(at, pa.field(name, kind), values)
        rows = rows.append_column(pa.field(kept_text_column(name), pa.string()), kept_text(text))
    return rows


def decimal_misfit(text: str, kind: pa.Decimal128Type | pa.Decimal256Type) -> str:
    """Why the text ``text`` is not a value of the decimal type ``kind``, with what to do: too
    many digits after the point for its scale, too many before it for its precision, or (no
    decimal number at all) just that it is not one."""
    try:
        value = decimal.Decimal(text.strip(" \t"))
    except decimal.InvalidOperation:
        value = decimal.Decimal("nan")
    if not value.is_finite():
        return f"{text!r} is not a valid {kind}"
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    kept = len(digits)
    while kept > 1 and digits[kept - 1] == 0:  # trailing zeros need no room
        kept -= 1
        exponent += 1
    zero = not any(digits)
    places = 0 if zero else max(0, -exponent)  # digits after the point
    whole = 0 if zero else max(0, kept + exponent)  # digits before it
    scale = max(places, kind.scale)
    precision = max(whole, kind.precision - kind.scale) + scale
    fix = (
        f"declare decimal({precision},{scale})"
        if precision <= _MAX_DECIMAL_DIGITS
        else "no decimal type holds it: declare the column str to keep its text"
    )
    if places > kind.scale:
        return (
            f"{text!r} has {places} digits after the point, more than the {kind.scale} of "
            f"{kind}: {fix}, or round the values in the file"
        )
    room = kind.precision - kind.scale
    if whole > room:
        return (
            f"{text!r} has {whole} digits before the point, more than the {room} of {kind}: {fix}"
        )
    return f"{text!r} is not a valid {kind}"


_MAX_DECIMAL_DIGITS = 76  # decimal256


def refuse_huge_exponents(text: pa.Array | pa.ChunkedArray) -> None:
    """Raise ``pyarrow.ArrowInvalid`` when a value of the decimal ``text`` has an exponent of
    1000 or more (``1e-1000000000``): no decimal type holds one, and Arrow's cast of such text
    to a decimal crashes the process (pyarrow 26) instead of refusing it. The caller then
    reads the values one by one (:func:`quiver.pipeline.json_text.json_array`)."""
    if pc.any(pc.match_substring_regex(text, HUGE_EXPONENT)).as_py():
        raise pa.ArrowInvalid("a decimal text has an exponent of 1000 or more")


#: A decimal text's exponent of 1000 or more (see :func:`refuse_huge_exponents`).
HUGE_EXPONENT = r"[eE][+-]?0*[1-9][0-9]{3,}"


def kept_text(text: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The text of decimal values as kept beside them: plain notation only, else null."""
    return pc.if_else(pc.match_substring_regex(text, _PLAIN), text, pa.scalar(None, pa.string()))


def without_decimal_text(rows: pa.Table, names: list[str]) -> pa.Table:
    """``rows`` with an empty kept-text column for each decimal column of ``names`` it has:
    the shape :func:`decimals_from_text` gives, for rows whose text was not kept."""
    for name in names:
        if name in rows.schema.names:
            rows = rows.append_column(
                pa.field(kept_text_column(name), pa.string()), pa.nulls(rows.num_rows, pa.string())
            )
    return rows


def with_kept_decimal_text(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with each decimal column that has kept text replaced by the text to write:
    the text it was read from where the value still equals it, else the shortest exact form.
    The kept-text columns are dropped; a batch without them is returned as it is."""
    names = batch.schema.names
    kept = [n for n in names if n.startswith(KEPT_TEXT_PREFIX)]
    if not kept:
        return batch
    columns = dict(zip(names, batch.columns, strict=True))
    for internal in kept:
        name = internal[len(KEPT_TEXT_PREFIX) :]
        column = columns.get(name)
        text = columns[internal]
        if column is None or not pa.types.is_decimal(column.type) or text.null_count == len(text):
            continue
        if not pa.types.is_string(text.type):  # e.g. a query's string_view
            text = text.cast(pa.string())
        try:
            same = pc.fill_null(pc.equal(pc.cast(text, column.type), column), False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue  # the column's scale changed under the text: shortest form
        columns[name] = pc.if_else(same, text, decimal_text(column))
    return pa.RecordBatch.from_arrays(
        [c for n, c in columns.items() if n not in kept],
        names=[n for n in names if n not in kept],
    )
