"""Values as the text the file sinks write: every type in its shortest exact form.

A decimal column holds its values at the column's scale (``decimal(38, 9)`` keeps nine
places), but ``202099.64`` read from text is written back as ``202099.64``, never
``202099.640000000`` nor ``2.0209964E+5``: trailing zeros after the point are dropped, the
point too when nothing follows it, and no exponent is ever used. Floats are written as the
shortest text that reads back to the same float (``0.1``, ``56244``); integers, dates and times
as Arrow writes them. The CSV and JSON Lines sinks share these rules, computed column-wise.
"""

from __future__ import annotations

import decimal

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["decimal_text", "plain_decimal", "scalar_texts"]

_TRAILING_ZEROS = r"(\.[0-9]*?)0+$"
_BARE_POINT = r"\.$"


def plain_decimal(value: decimal.Decimal) -> str:
    """One decimal in its shortest exact form, without an exponent (``1E+3`` -> ``1000``)."""
    if not value.is_finite():
        return str(value)
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def decimal_text(column: pa.Array) -> pa.Array:
    """A decimal column as strings in their shortest exact form (see the module's text)."""
    text = pc.cast(column, pa.string())
    if len(text) and pc.any(pc.match_substring(text, "E")).as_py():
        # Arrow writes very small or scaled values with an exponent: rare, so value by value
        values = column.to_pylist()
        return pa.array([None if v is None else plain_decimal(v) for v in values], pa.string())
    if column.type.scale <= 0:
        return text
    text = pc.replace_substring_regex(text, _TRAILING_ZEROS, r"\1")
    text = pc.replace_substring_regex(text, _BARE_POINT, "")
    return pc.if_else(pc.equal(text, "-0"), pa.scalar("0"), text)


def scalar_texts(column: pa.Array) -> pa.Array:
    """A column of numbers, booleans, dates or times as strings in their shortest exact form."""
    if pa.types.is_decimal(column.type):
        return decimal_text(column)
    return pc.cast(column, pa.string())
