"""Constraint violations of a bulk load (DoPut), as errors that say what was violated.

The database refuses a row of a load for a duplicate key, a value too long or out of range,
a missing value, a broken reference or a failed check. :func:`violation` reads the driver's
exception (PostgreSQL's diagnostic fields through ADBC, MariaDB's error number and text,
SQLite's message) and makes it a :class:`PermanentError` whose code names the kind
(``DUPLICATE_KEY``, ``VALUE_TOO_LONG``, ...) and whose message names the constraint, the column
and the row of the stream where the database says them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from quiver.runtime.errors import PermanentError, QuiverError
from quiver.schema.ir import Entity

__all__ = ["KINDS", "violation"]

#: code -> (what happened, how to fix it)
KINDS: dict[str, tuple[str, str]] = {
    "DUPLICATE_KEY": (
        "a row repeats the key of a unique constraint",
        "leave out the rows whose key is already in the table or sent twice",
    ),
    "VALUE_TOO_LONG": (
        "a value is longer than the column holds",
        "shorten the values to the column's length, or widen the column",
    ),
    "VALUE_OUT_OF_RANGE": (
        "a value is outside the range of the column's type",
        "send values the column's type holds, or widen the column",
    ),
    "NOT_NULL": (
        "a row has no value for a column that requires one",
        "send a value for that column in every row",
    ),
    "FOREIGN_KEY": (
        "a row refers to a row that does not exist",
        "load the rows it refers to first, or fix the reference",
    ),
    "CHECK_CONSTRAINT": (
        "a row fails a check constraint",
        "send only rows the constraint accepts",
    ),
}

_PG_STATES = {
    "23505": "DUPLICATE_KEY",
    "22001": "VALUE_TOO_LONG",
    "22003": "VALUE_OUT_OF_RANGE",
    "23502": "NOT_NULL",
    "23503": "FOREIGN_KEY",
    "23514": "CHECK_CONSTRAINT",
}
_MYSQL_CODES = {
    1062: "DUPLICATE_KEY",
    1406: "VALUE_TOO_LONG",
    1264: "VALUE_OUT_OF_RANGE",
    1048: "NOT_NULL",
    1216: "FOREIGN_KEY",
    1452: "FOREIGN_KEY",
    3819: "CHECK_CONSTRAINT",
    4025: "CHECK_CONSTRAINT",
}
_SQLITE = re.compile(
    r"(UNIQUE|PRIMARY KEY|NOT NULL|CHECK|FOREIGN KEY) constraint failed(?::\s*(.+))?"
)
_SQLITE_KINDS = {
    "UNIQUE": "DUPLICATE_KEY",
    "PRIMARY KEY": "DUPLICATE_KEY",
    "NOT NULL": "NOT_NULL",
    "CHECK": "CHECK_CONSTRAINT",
    "FOREIGN KEY": "FOREIGN_KEY",
}
_PG_CONTEXT = re.compile(r"\bline (\d+)(?:, column ([^:]+))?")
_MYSQL_COLUMN = re.compile(r"[Cc]olumn '([^']+)'")
_MYSQL_KEY = re.compile(r"for key '([^']+)'")
_MYSQL_CHECK = re.compile(r"CONSTRAINT `([^`]+)` failed")


@dataclass(frozen=True)
class _Found:
    code: str
    detail: str
    column: str | None = None
    row: int | None = None
    constraint: str | None = None


def violation(
    exc: BaseException,
    dialect: str,
    entity: Entity,
    locate: Callable[[str, str], int | None] | None = None,
) -> QuiverError | None:
    """The error of a constraint violation the database raised while loading ``entity``, or
    None when ``exc`` is not one. ``locate(code, column)`` may find the row (1-based, in the
    stream) the database did not name."""
    if dialect == "postgresql":
        found = _postgresql(exc)
    elif dialect == "mysql":
        found = _mysql(exc, entity)
    else:
        found = _sqlite(exc, entity)
    if found is None:
        return None
    row = found.row
    if row is None and locate is not None and found.column is not None:
        row = locate(found.code, found.column)
    what, fix = KINDS[found.code]
    field = entity.field_by_column(found.column) if found.column else None
    name = field.name if field is not None else found.column
    message = f"the database refused the load of {entity.name}: {what}"
    if found.constraint:
        message += f" ({found.constraint})"
    if name:
        message += f", column {name!r}"
    if row is not None:
        message += f", row {row} of the stream"
    message += f": {found.detail.rstrip('.')}; nothing was written"
    where = f"DoPut {entity.name}" + (f".{name}" if name else "")
    if row is not None:
        where += f" row {row}"
    error = PermanentError.one(message, where, fix)
    error.code = found.code
    return error


def _postgresql(exc: BaseException) -> _Found | None:
    code = _PG_STATES.get(str(getattr(exc, "sqlstate", "") or ""))
    if code is None:
        return None
    fields: dict[str, str] = {}
    for key, value in getattr(exc, "details", None) or ():
        k = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        v = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        fields[k] = v
    primary = fields.get("PG_DIAG_MESSAGE_PRIMARY") or _first_line(exc)
    detail = fields.get("PG_DIAG_MESSAGE_DETAIL")
    column = fields.get("PG_DIAG_COLUMN_NAME")
    row: int | None = None
    context = _PG_CONTEXT.search(fields.get("PG_DIAG_CONTEXT", ""))
    if context is not None:
        row = int(context.group(1))
        column = column or (context.group(2) or "").strip() or None
    if column is None and detail:
        key = re.match(r"Key \(([^,)]+)\)=", detail)
        column = key.group(1) if key else None
    return _Found(
        code,
        f"{primary}. {detail.rstrip('.')}" if detail else primary,
        column,
        row,
        fields.get("PG_DIAG_CONSTRAINT_NAME"),
    )


def _mysql(exc: BaseException, entity: Entity) -> _Found | None:
    args: tuple[object, ...] = tuple(exc.args)
    number = args[0] if args and isinstance(args[0], int) else None
    code = _MYSQL_CODES.get(number) if number is not None else None
    if code is None:
        return None
    text = str(args[1]) if len(args) > 1 else _first_line(exc)
    found = _MYSQL_COLUMN.search(text)
    column = found.group(1) if found else None
    key = _MYSQL_KEY.search(text) or _MYSQL_CHECK.search(text)
    if key is not None and key.group(1) == "PRIMARY" and len(entity.primary_key) == 1:
        column = entity.primary_key[0]
    # MariaDB counts rows within one INSERT statement, not within the stream: no row here.
    return _Found(code, text, column, None, key.group(1) if key else None)


def _sqlite(exc: BaseException, entity: Entity) -> _Found | None:
    m = _SQLITE.search(str(exc))
    if m is None:
        return None
    code = _SQLITE_KINDS[m.group(1)]
    detail = m.group(0).strip().splitlines()[0]
    named = (m.group(2) or "").strip().splitlines()[0] if m.group(2) else ""
    if code == "CHECK_CONSTRAINT":
        return _Found(code, detail, constraint=named or None)
    columns = [c.strip().split(".", 1)[-1] for c in named.split(",") if c.strip()]
    column = columns[0] if len(columns) == 1 and entity.field_by_column(columns[0]) else None
    return _Found(code, detail, column)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
