"""What a column's declared type holds, checked before a value is written to it.

PostgreSQL and MariaDB round a decimal with more digits after the point than the column's
scale (``numeric(6,2)`` keeps ``1.239`` as ``1.24``) and drop the offset of a time of day
written to a ``time`` column; SQLite keeps any value in any column, whatever it declares. A
write must store the value as sent or be refused, the same way on every database, so the
declared type is read here: :func:`misfit` says why a value does not fit it as given.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any

__all__ = ["json_depth", "misfit"]

_DECIMAL = re.compile(r"(?:numeric|decimal|dec|fixed)\s*\(\s*(\d+)\s*(?:,\s*(-?\d+)\s*)?\)", re.I)
_TEXT = re.compile(
    r"(?:var)?char\s*\(\s*(\d+)\s*\)|character(?: varying)?\s*\(\s*(\d+)\s*\)"
    r"|n(?:ational )?(?:var)?char\s*\(\s*(\d+)\s*\)",
    re.I,
)
_INTEGER = re.compile(r"(tinyint|smallint|int2|mediumint|int|integer|int4|bigint|int8)\b", re.I)
#: The bits of the integer types whose range GraphQL's Int and BigInt do not already bound.
_BITS = {"tinyint": 8, "smallint": 16, "int2": 16, "mediumint": 24}
_WIDE = {"int": 32, "integer": 32, "int4": 32, "bigint": 64, "int8": 64}
_FRACTIONAL = re.compile(r"(?:datetime|timestamp|time)\s*(?:\(\s*(\d)\s*\))?", re.I)
_ZONED_TIME = re.compile(r"timetz|time\s*(?:\(\d+\)\s*)?with time zone", re.I)
_TIME = re.compile(r"time(?:\s*\(\d+\))?(?:\s+without time zone)?", re.I)


def misfit(db_type: str | None, value: Any, seconds_digits: int | None = None) -> str | None:
    """Why ``value`` cannot be written as given to a column declared ``db_type`` (None: it
    can, or the declared type says nothing about it). ``seconds_digits``: the digits after
    the seconds' point a time type declared without a precision keeps, when the database
    says (MariaDB: 0)."""
    if not db_type or value is None or isinstance(value, bool):
        return None
    declared = db_type.strip()
    if isinstance(value, decimal.Decimal | int):
        m = _DECIMAL.fullmatch(declared)
        if m is not None:
            return _decimal_misfit(declared, int(m.group(1)), int(m.group(2) or 0), value)
    if isinstance(value, int):
        return _integer_misfit(declared, value)
    if isinstance(value, str):
        m = _TEXT.fullmatch(declared)
        if m is not None:
            limit = int(next(g for g in m.groups() if g is not None))
            if len(value) > limit:
                return (
                    f"the text is {len(value)} characters long and {declared} holds at most"
                    f" {limit}: shorten it"
                )
        return None
    if isinstance(value, dt.datetime | dt.time):
        m = _FRACTIONAL.fullmatch(declared)
        digits = int(m.group(1)) if m is not None and m.group(1) else seconds_digits
        if m is not None and digits is not None:
            given = len(f"{value.microsecond:06d}".rstrip("0"))
            if given > digits:
                return (
                    f"{value.isoformat()} has {_digits(given)} after the seconds' point and"
                    f" {declared} keeps {digits}: the database would cut or round it; round"
                    " it before sending it"
                )
    zoned = isinstance(value, dt.time) and value.tzinfo is not None
    if zoned and _TIME.fullmatch(declared) and not _ZONED_TIME.fullmatch(declared):
        assert isinstance(value, dt.time)
        return (
            f"the time {value.isoformat()} has an offset, and the column ({declared}) keeps"
            " none: send the time of day without it"
        )
    return None


def _digits(count: int) -> str:
    return "1 digit" if count == 1 else f"{count} digits"


def _decimal_misfit(
    declared: str, precision: int, scale: int, value: decimal.Decimal | int
) -> str | None:
    d = decimal.Decimal(value)
    if not d.is_finite():
        return None
    exponent = d.normalize().as_tuple().exponent
    places = max(0, -exponent) if isinstance(exponent, int) else 0
    if places > scale:
        return (
            f"{value} has {_digits(places)} after the decimal point and {declared} keeps"
            f" {max(scale, 0)}: the database would round it; round it to {max(scale, 0)}"
            " places before sending it"
        )
    whole = len(str(abs(int(d)))) if abs(d) >= 1 else 0
    if whole > precision - scale:
        return (
            f"{value} has {_digits(whole)} before the decimal point and {declared} holds at"
            f" most {precision - scale}"
        )
    return None


def _integer_misfit(declared: str, value: int) -> str | None:
    m = _INTEGER.match(declared)
    if m is None:
        return None
    name = m.group(1).lower()
    unsigned = "unsigned" in declared.lower()
    bits = _BITS.get(name) or _WIDE.get(name)
    if bits is None or (name in _WIDE and not unsigned):
        return None
    low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if low <= value <= high:
        return None
    return f"{value} is outside the range of {declared} ({low} to {high})"


def json_depth(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (0 for a scalar, 1 for ``[1]``)."""
    level = [value]
    depth = 0
    while True:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers:
            return depth
        depth += 1
        level = [x for v in containers for x in (v.values() if isinstance(v, dict) else v)]
