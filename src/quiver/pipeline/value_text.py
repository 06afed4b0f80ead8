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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["decimal_text", "plain_decimal", "scalar_texts"]


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
    """A column of numbers, booleans, dates or times as strings in their shortest exact form."""
    if pa.types.is_decimal(column.type):
        return decimal_text(column)
    return pc.cast(column, pa.string())
