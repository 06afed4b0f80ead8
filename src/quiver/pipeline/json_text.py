"""Values as JSON text, for sinks writing JSON and for nested columns in text formats."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

__all__ = ["json_default", "json_strings"]


def json_default(value: Any) -> Any:
    """How values orjson does not know are written as JSON: exact decimals as strings, bytes
    as base64, sets as lists."""
    import base64
    import decimal

    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def json_strings(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value of ``array`` (lists, structs, maps...) as its JSON text; nulls stay null."""
    import orjson

    values = array.to_pylist()
    return pa.array(
        [
            None if v is None else orjson.dumps(v, default=json_default).decode("utf-8")
            for v in values
        ],
        pa.string(),
    )
