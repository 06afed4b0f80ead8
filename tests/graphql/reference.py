"""Reference evaluation of filters in Python, over rows of Chinook read with plain SQL.

The edge-case tests compare the engine's answers with these, never with Quiver itself.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

from tests.graphql.conftest import Runner

__all__ = ["SAMPLE_COLUMNS", "holds", "sample_rows", "track_rows"]


SAMPLE_COLUMNS = {
    "id": "id",
    "flag": "flag",
    "big": "big",
    "ratio": "ratio",
    "amount": "amount",
    "day": "day",
    "atTime": "at_time",
    "created": "created",
    "uid": "uid",
    "doc": "doc",
    "label": "label",
}


def _norm(column: str, value: Any) -> Any:
    """A value read by a driver, as the Python value the reference compares."""
    if value is None:
        return None
    if column == "flag":
        return bool(value)
    if column in ("big", "id"):
        return int(value)
    if column == "ratio":
        return float(value)
    if column == "amount":
        return Decimal(str(value))
    if column == "day":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    if column == "at_time":
        if isinstance(value, dt.timedelta):
            return (dt.datetime.min + value).time()
        return value if isinstance(value, dt.time) else dt.time.fromisoformat(str(value))
    if column == "created":
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=None)
        return dt.datetime.fromisoformat(str(value).replace(" ", "T")[:19])
    if column == "uid":
        return str(value).lower()
    return value


def sample_rows(runner: Runner) -> list[dict[str, Any]]:
    """Every row of ``scalar_sample`` by field name, as Python values, in key order."""
    cols = ", ".join(SAMPLE_COLUMNS.values())
    rows = runner.sql(f"SELECT {cols} FROM scalar_sample ORDER BY id")
    return [
        {f: _norm(c, v) for (f, c), v in zip(SAMPLE_COLUMNS.items(), r, strict=True)} for r in rows
    ]


def _like_regex(pattern: str, fold: bool) -> re.Pattern[str]:
    out: list[str] = []
    chars = iter(pattern)
    for c in chars:
        if c == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif c == "%":
            out.append(".*")
        elif c == "_":
            out.append(".")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if fold else 0))


def holds(value: Any, op: str, arg: Any) -> bool:
    """Whether ``value`` passes the filter operator ``op`` with argument ``arg``."""
    if op == "isNull":
        return bool((value is None) == arg)
    if op == "nin" and not arg:
        return True  # an empty nin is no condition: null rows pass too
    if value is None:
        return False
    match op:
        case "eq":
            return bool(value == arg)
        case "neq":
            return bool(value != arg)
        case "gt":
            return bool(value > arg)
        case "gte":
            return bool(value >= arg)
        case "lt":
            return bool(value < arg)
        case "lte":
            return bool(value <= arg)
        case "in":
            return value in arg
        case "nin":
            return value not in arg
        case "like":
            return _like_regex(arg, False).fullmatch(value) is not None
        case "ilike":
            return _like_regex(arg, True).fullmatch(value) is not None
        case "startsWith":
            return bool(value.startswith(arg))
        case "endsWith":
            return bool(value.endswith(arg))
        case "contains":
            return arg in value
    raise AssertionError(op)


def track_rows(runner: Runner) -> list[dict[str, Any]]:
    """Every track with its genre name and artist, in key order."""
    rows = runner.sql(
        "SELECT t.track_id, t.name, t.composer, t.milliseconds, t.album_id, t.genre_id,"
        " g.name, al.artist_id FROM track t LEFT JOIN genre g ON g.genre_id = t.genre_id"
        " LEFT JOIN album al ON al.album_id = t.album_id ORDER BY t.track_id"
    )
    keys = ("id", "name", "composer", "ms", "album", "genre", "genreName", "artist")
    return [dict(zip(keys, r, strict=True)) for r in rows]
