"""The text forms the Date, DateTime, Time and UUID scalars read, one parser per scalar.

The GraphQL scalars read input with them, and the check of SQLite's stored text (a column may
hold any text) reads what is served with them, so that input and output take the same forms.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["INFINITE", "ISO_PARSERS", "WITH_INFINITY", "parse_datetime"]

#: PostgreSQL's infinite dates and timestamps, which the Date and DateTime scalars carry too.
INFINITE = ("infinity", "-infinity")
#: The scalars that carry :data:`INFINITE` besides their ISO 8601 text.
WITH_INFINITY = frozenset({"Date", "DateTime"})


def parse_datetime(text: str) -> dt.datetime:
    """An ISO 8601 date and time (``Z`` for UTC)."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


#: Per scalar, the parser of its text; each raises ValueError for text not of its form.
ISO_PARSERS: dict[str, Callable[[str], Any]] = {
    "Date": dt.date.fromisoformat,
    "DateTime": parse_datetime,
    "Time": dt.time.fromisoformat,
    "UUID": uuid.UUID,
}
