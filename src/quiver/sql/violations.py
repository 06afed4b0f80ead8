"""What a refused write broke, read from each driver's error: the kind, the columns, the name.

A write the database refuses because of the data (a duplicate key, a missing referenced row, a
null in a NOT NULL column, a failed CHECK, a value too long or out of range for its column, a
value the column's type cannot hold) becomes a :class:`Violation`. This is the one reader of
those errors: :mod:`quiver.sql.database` raises what it reads as a ``ConstraintError`` (for
mutations), and a Flight bulk load reads its ADBC and PyMySQL errors here too. Its ``columns``
are the columns the database named (empty when it named none); surfaces map them to their own
field names and kinds to their own codes.

PostgreSQL's fields are read from asyncpg's attributes (``sqlstate``, ``detail``,
``column_name``, ...) or ADBC's ``details`` pairs (``PG_DIAG_MESSAGE_DETAIL``, ...); MariaDB's
from the error number and text of asyncmy and PyMySQL; SQLite's from the message of sqlite3
and ADBC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Violation",
    "ViolationKind",
    "mysql_violation",
    "postgresql_violation",
    "sqlite_violation",
    "violation",
]

ViolationKind = Literal[
    "unique", "foreign_key", "not_null", "check", "too_long", "out_of_range", "value"
]


@dataclass(frozen=True)
class Violation:
    """What a refused write broke: the database's message, the columns and constraint it named,
    and the row (1-based, of a bulk load's stream) where it says one: PostgreSQL's COPY line.
    MariaDB's ``at row N`` counts within one statement, not a load, and is not read."""

    kind: ViolationKind
    message: str
    columns: tuple[str, ...] = ()
    constraint: str | None = None
    row: int | None = None

    def columns_in(self, table: Sequence[str], primary_key: Sequence[str]) -> tuple[str, ...]:
        """The columns of ``table`` at fault: those the database named; for the key MariaDB
        calls ``PRIMARY``, the ``primary_key``; failing that, the one column the constraint's
        name or expression (or a named index expression) mentions, when it mentions one."""
        named = tuple(c for c in self.columns if c in table)
        if named:
            return named
        if self.kind == "unique" and self.constraint == "PRIMARY":
            return tuple(primary_key)
        text = " ".join([*self.columns, self.constraint or ""])
        mentioned = tuple(c for c in table if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", text))
        return mentioned if len(mentioned) == 1 else ()


def violation(exc: BaseException, dialect: str) -> Violation | None:
    """``exc`` of a ``dialect`` database as a violation, or None when it is not one."""
    if dialect == "postgresql":
        return postgresql_violation(exc)
    if dialect == "mysql":
        return mysql_violation(exc)
    return sqlite_violation(exc)


_PG_KEY = re.compile(r"Key \((.+?)\)=")
_PG_COPY = re.compile(r"\bCOPY [^\n]*?, line (\d+)(?:, column ([^:\n]+))?")
_PG_KINDS: dict[str, ViolationKind] = {
    "23505": "unique",
    "23503": "foreign_key",
    "23502": "not_null",
    "23514": "check",
    "22001": "too_long",
    "22003": "out_of_range",
}
#: ADBC's diagnostic field -> asyncpg's attribute of the same field
_PG_FIELDS = {
    "PG_DIAG_MESSAGE_PRIMARY": "message",
    "PG_DIAG_MESSAGE_DETAIL": "detail",
    "PG_DIAG_COLUMN_NAME": "column_name",
    "PG_DIAG_TABLE_NAME": "table_name",
    "PG_DIAG_CONSTRAINT_NAME": "constraint_name",
    "PG_DIAG_CONTEXT": "context",
}


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _pg_fields(exc: BaseException) -> dict[str, str]:
    """The diagnostic fields of ``exc``, by asyncpg's names, from ADBC's ``details`` pairs or
    asyncpg's attributes."""
    fields: dict[str, str] = {}
    for key, value in getattr(exc, "details", None) or ():
        name = _PG_FIELDS.get(_text(key))
        if name is not None and value:
            fields[name] = _text(value)
    for name in _PG_FIELDS.values():
        value = getattr(exc, name, None)
        if value and name not in fields:
            fields[name] = str(value)
    return fields


def _split_columns(text: str) -> tuple[str, ...]:
    return tuple(c.strip().strip('"') for c in text.split(","))


def postgresql_violation(exc: BaseException) -> Violation | None:
    """An asyncpg or ADBC error as a violation, or None when it is not one (by SQLSTATE
    class 22/23)."""
    state = str(getattr(exc, "sqlstate", "") or "")
    fields = _pg_fields(exc)
    message = fields.get("message") or _first_line(exc)
    # tsvector and tsquery refuse input text with SQLSTATE 42601 ("syntax error in tsvector")
    typed_syntax = state == "42601" and message.startswith(("syntax error in ts", "no operand"))
    if state not in _PG_KINDS and not state.startswith("22") and not typed_syntax:
        return None
    kind = _PG_KINDS.get(state, "value")
    detail = fields.get("detail")
    constraint = fields.get("constraint_name")
    table = fields.get("table_name")
    columns: tuple[str, ...] = ()
    if "column_name" in fields:
        columns = (fields["column_name"],)
    elif kind in ("unique", "foreign_key"):
        m = _PG_KEY.search(detail or "")
        if m:
            columns = _split_columns(m.group(1))
    elif kind == "check" and constraint and table:
        # PostgreSQL names a column's own check <table>_<column>_check.
        prefix, suffix = f"{table}_", "_check"
        if constraint.startswith(prefix) and constraint.endswith(suffix):
            columns = (constraint[len(prefix) : -len(suffix)],)
    row: int | None = None
    copy = _PG_COPY.search(fields.get("context", ""))
    if copy is not None:
        row = int(copy.group(1))
        if not columns and copy.group(2):
            columns = (copy.group(2).strip(),)
    text = f"{message}. {detail}" if detail else message
    return Violation(kind, text, columns, constraint, row)


_MY_COLUMN = re.compile(r"column [`']?(?:[^`'\s]+[`']?\.[`']?)*([^`'\s]+?)[`']? at row", re.I)
_MY_NAMED = re.compile(r"(?:Column|Field) '([^']+)'")
_MY_FK = re.compile(r"FOREIGN KEY \(([^)]*)\)")
_MY_KEY = re.compile(r"for key '(?:[^'.]*\.)?([^']+)'")
_MY_CHECK = re.compile(r"CONSTRAINT [`']([^`']+)[`'] failed")
_MY_CODES: dict[int, ViolationKind] = {
    1062: "unique",
    1216: "foreign_key",  # no referenced row (the older number of 1452)
    1451: "foreign_key",  # a row still referenced
    1452: "foreign_key",
    1048: "not_null",
    1364: "not_null",  # no value and no default
    4025: "check",
    3819: "check",
    1406: "too_long",
    1264: "out_of_range",
    1366: "value",
    1292: "value",
    1265: "value",
    4078: "value",
    3140: "value",
    1416: "value",  # not a geometry the column takes
    4048: "value",  # not GeoJSON (a geometry written from the form it is served in)
}


def mysql_violation(exc: BaseException) -> Violation | None:
    """An asyncmy or PyMySQL error as a violation, or None when it is not one (by MariaDB
    error number)."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    kind = _MY_CODES.get(code)
    if kind is None:
        return None
    message = str(exc.args[1]) if len(exc.args) > 1 else _first_line(exc)
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
    else:
        m = _MY_COLUMN.search(message) or _MY_NAMED.search(message)
        if m:
            columns = (m.group(1),)
    return Violation(kind, message, columns, constraint)


_SQLITE = re.compile(
    r"(UNIQUE|PRIMARY KEY|NOT NULL|CHECK|FOREIGN KEY) constraint failed(?::[ \t]*([^\n]*))?"
    r"|datatype mismatch|cannot store [^\n]*"
)
_SQLITE_KINDS: dict[str | None, ViolationKind] = {
    "UNIQUE": "unique",
    "PRIMARY KEY": "unique",  # how some drivers word SQLITE_CONSTRAINT_PRIMARYKEY
    "NOT NULL": "not_null",
    "CHECK": "check",
    "FOREIGN KEY": "foreign_key",
    None: "value",
}


def sqlite_violation(exc: BaseException) -> Violation | None:
    """A sqlite3 or ADBC error as a violation, or None when it is not one (by its message)."""
    m = _SQLITE.search(str(exc))
    if m is None:
        return None
    kind = _SQLITE_KINDS[m.group(1)]
    named = (m.group(2) or "").strip()
    columns: tuple[str, ...] = ()
    constraint: str | None = None
    if kind == "check":
        constraint = named or None
    elif kind in ("unique", "not_null"):
        # "t.a, t.b": the table-qualified columns
        columns = tuple(p.strip().rsplit(".", 1)[-1] for p in named.split(",") if p.strip())
    return Violation(kind, m.group(0).strip(), columns, constraint)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
