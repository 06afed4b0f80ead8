"""The column type names of pipeline files (``int``, ``decimal(10,2)``, ``timestamp(ms, UTC)``)
and their Arrow types."""

from __future__ import annotations

import re

import pyarrow as pa

from quiver.runtime.errors import ConfigError
from quiver.runtime.hints import did_you_mean

__all__ = ["epoch_unit", "parse_type"]


_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "str": pa.string(),
    "string": pa.string(),
    "text": pa.string(),
    "large_string": pa.large_string(),
    "int": pa.int64(),
    "long": pa.int64(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "int16": pa.int16(),
    "int8": pa.int8(),
    "uint64": pa.uint64(),
    "uint32": pa.uint32(),
    "uint16": pa.uint16(),
    "uint8": pa.uint8(),
    "float": pa.float64(),
    "double": pa.float64(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "date64": pa.date64(),
    "datetime": pa.timestamp("us"),
    "timestamp": pa.timestamp("us"),
    "datetimetz": pa.timestamp("us", tz="UTC"),
    "time": pa.time64("us"),
    "duration": pa.duration("us"),
    "interval": pa.month_day_nano_interval(),
    "decimal": pa.decimal128(38, 9),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
}
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_TIMESTAMP = re.compile(r"timestamp\(\s*(s|ms|us|ns)\s*(?:,\s*([^)]+?)\s*)?\)")
_TIME = re.compile(r"time\(\s*(s|ms|us|ns)\s*\)")
_DURATION = re.compile(r"duration\(\s*(s|ms|us|ns)\s*\)")
_MAP = re.compile(r"map\s*<(.*)>", re.I | re.S)


def _top_level_split(text: str) -> list[str]:
    """``text`` cut at its commas outside parentheses and angle brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "(<":
            depth += 1
        elif ch in ")>":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_type(name: str, where: str, *, maps: bool = False) -> pa.DataType:
    """The Arrow type for a type name used in pipeline files (``int``, ``decimal(10,2)``...);
    with ``maps``, also ``map<key type, value type>`` (the JSON Lines source reads maps)."""
    key = name.strip().lower()
    if key in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[key]
    if m := _MAP.fullmatch(name.strip()):
        if not maps:
            raise ConfigError.one(
                f"the map type {name!r} is read by the jsonl source only",
                where,
                "declare the column str to read the map's JSON text",
            )
        parts = _top_level_split(m[1])
        if len(parts) != 2:
            raise ConfigError.one(
                f"invalid map type {name!r}", where, "write it map<key type, value type>"
            )
        key_type = parse_type(parts[0].strip(), where, maps=True)
        if pa.types.is_nested(key_type):
            raise ConfigError.one(
                f"invalid map type {name!r}: a map's keys cannot be {key_type}",
                where,
                "use a key type that is not a list, map or struct (str, int, ...)",
            )
        return pa.map_(key_type, parse_type(parts[1].strip(), where, maps=True))
    if m := _DECIMAL.fullmatch(key):
        precision, scale = int(m[1]), int(m[2])
        if not 1 <= precision <= 76 or scale > precision:
            raise ConfigError.one(
                f"invalid decimal type {name!r}",
                where,
                "precision must be 1..76 and scale at most the precision",
            )
        return (
            pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        )
    if m := _TIMESTAMP.fullmatch(name.strip()):
        return pa.timestamp(m[1], tz=m[2])
    if m := _TIME.fullmatch(key):
        return pa.time32(m[1]) if m[1] in ("s", "ms") else pa.time64(m[1])
    if m := _DURATION.fullmatch(key):
        return pa.duration(m[1])
    hint = did_you_mean(key, _SIMPLE_TYPES)
    raise ConfigError.one(
        f"unknown type {name!r}",
        where,
        (hint + " " if hint else "")
        + "use one of: str, int, int32, uint8, float, bool, date, datetime, time, "
        "time(unit), decimal, decimal(p,s), timestamp(unit[, tz]), duration(unit), interval, "
        "binary" + (", map<key type, value type>" if maps else ""),
    )


def epoch_unit(name: str) -> str:
    """What a number in a column of the type ``name`` counts when the column holds times: the
    unit written in ``timestamp(ms)``, else seconds (``timestamp``, ``datetime``: epoch
    seconds, as JSON APIs mean them)."""
    if m := _TIMESTAMP.fullmatch(name.strip()):
        return m[1]
    return "s"
