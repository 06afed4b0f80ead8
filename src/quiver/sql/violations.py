"""What a refused write broke, read from each driver's error: the kind, the columns, the name.

A write the database refuses because of the data (a duplicate key, a missing referenced row, a
null in a NOT NULL column, a failed CHECK, a value the column's type cannot hold) becomes a
:class:`Violation`, which :mod:`quiver.sql.database` raises as a ``ConstraintError``. Its
``columns`` are the columns the database named (empty when it named none); surfaces map them
to their own field names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "Violation",
    "ViolationKind",
    "mysql_violation",
    "postgresql_violation",
    "sqlite_violation",
]

ViolationKind = Literal["unique", "foreign_key", "not_null", "check", "value"]


@dataclass(frozen=True)
class Violation:
    """What a refused write broke: the database's message, the columns and constraint it named."""

    kind: ViolationKind
    message: str
    columns: tuple[str, ...] = ()
    constraint: str | None = None


_PG_KEY = re.compile(r"Key \((.+?)\)=")
_PG_KINDS: dict[str, ViolationKind] = {
    "23505": "unique",
    "23503": "foreign_key",
    "23502": "not_null",
    "23514": "check",
}


def _split_columns(text: str) -> tuple[str, ...]:
    return tuple(c.strip().strip('"') for c in text.split(","))


def postgresql_violation(exc: Any) -> Violation | None:
    """An asyncpg error as a violation, or None when it is not one (by SQLSTATE class 22/23)."""
    state = str(getattr(exc, "sqlstate", "") or "")
    constraint = getattr(exc, "constraint_name", None)
    table = getattr(exc, "table_name", None)
    message = str(getattr(exc, "message", "") or exc)
    if state in _PG_KINDS:
        kind = _PG_KINDS[state]
        columns: tuple[str, ...] = ()
        if kind == "not_null" and getattr(exc, "column_name", None):
            columns = (exc.column_name,)
        elif kind in ("unique", "foreign_key"):
            m = _PG_KEY.search(str(getattr(exc, "detail", "") or ""))
            if m:
                columns = _split_columns(m.group(1))
        elif kind == "check" and constraint and table:
            # PostgreSQL names a column's own check <table>_<column>_check.
            prefix, suffix = f"{table}_", "_check"
            if constraint.startswith(prefix) and constraint.endswith(suffix):
                columns = (constraint[len(prefix) : -len(suffix)],)
        detail = getattr(exc, "detail", None)
        text = f"{message}: {detail}" if detail else message
        return Violation(kind, text, columns, constraint)
    if state.startswith("22"):
        return Violation("value", message)
    return None


_MY_COLUMN = re.compile(r"column [`']?(?:[^`'\s]+[`']?\.[`']?)*([^`'\s]+?)[`']? at row", re.I)
_MY_NAMED = re.compile(r"(?:Column|Field) '([^']+)'")
_MY_FK = re.compile(r"FOREIGN KEY \(([^)]*)\)")
_MY_KEY = re.compile(r"for key '(?:[^'.]*\.)?([^']+)'")
_MY_CHECK = re.compile(r"CONSTRAINT [`']([^`']+)[`'] failed")
_MY_CODES: dict[int, ViolationKind] = {
    1062: "unique",
    1451: "foreign_key",
    1452: "foreign_key",
    1048: "not_null",
    1364: "not_null",
    4025: "check",
    3819: "check",
    1406: "value",
    1264: "value",
    1366: "value",
    1292: "value",
    1265: "value",
    4078: "value",
    3140: "value",
}


def mysql_violation(exc: Any) -> Violation | None:
    """An asyncmy error as a violation, or None when it is not one (by MariaDB error code)."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    kind = _MY_CODES.get(code)
    if kind is None:
        return None
    message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    columns: tuple[str, ...] = ()
    constraint: str | None = None
    if kind == "foreign_key":
        m = _MY_FK.search(message)
        if m:
            columns = tuple(c.strip().strip("`") for c in m.group(1).split(","))
    elif kind == "not_null":
        m = _MY_NAMED.search(message)
        if m:
            columns = (m.group(1),)
    elif kind == "unique":
        m = _MY_KEY.search(message)
        if m:
            constraint = m.group(1)
    elif kind == "check":
        m = _MY_CHECK.search(message)
        if m:
            constraint = m.group(1)
            columns = (constraint,)  # a column's inline CHECK is named after the column
    else:
        m = _MY_COLUMN.search(message) or _MY_NAMED.search(message)
        if m:
            columns = (m.group(1),)
    return Violation(kind, message, columns, constraint)


_SQLITE_MESSAGES: tuple[tuple[str, ViolationKind], ...] = (
    ("UNIQUE constraint failed: ", "unique"),
    ("NOT NULL constraint failed: ", "not_null"),
    ("CHECK constraint failed: ", "check"),
    ("FOREIGN KEY constraint failed", "foreign_key"),
    ("datatype mismatch", "value"),
    ("cannot store ", "value"),
)


def sqlite_violation(exc: Exception) -> Violation | None:
    """A sqlite3 error as a violation, or None when it is not one (by its message)."""
    message = str(exc)
    for start, kind in _SQLITE_MESSAGES:
        if not message.startswith(start):
            continue
        rest = message[len(start) :]
        columns: tuple[str, ...] = ()
        constraint: str | None = None
        if kind in ("unique", "not_null"):
            # "t.a, t.b": the table-qualified columns
            columns = tuple(part.strip().rsplit(".", 1)[-1] for part in rest.split(","))
        elif kind == "check":
            constraint = rest.strip()
            columns = (constraint,)
        return Violation(kind, message, columns, constraint)
    return None
