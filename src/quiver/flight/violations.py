"""Constraint violations of a bulk load (DoPut), as errors that say what was violated.

The database refuses a row of a load for a duplicate key, a value too long or out of range,
a missing value, a broken reference or a failed check. :func:`violation` reads the driver's
exception with :func:`quiver.sql.violations.violation` (the reader mutations share) and makes
it a :class:`PermanentError` whose code names the kind (``DUPLICATE_KEY``, ``VALUE_TOO_LONG``,
...) and whose message names the constraint, the column and the row of the stream where the
database says them; a value the column's type does not read (text that is not a uuid, a NUL
character in PostgreSQL text) is ``INVALID_VALUE``.
"""

from __future__ import annotations

from collections.abc import Callable

from quiver.runtime.errors import PermanentError, QuiverError
from quiver.schema.ir import Entity
from quiver.sql import violations

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
    "INVALID_VALUE": (
        "a value is not one the column's type accepts",
        "send values the column's type reads (the database's message says which it refused)",
    ),
}

_CODES: dict[violations.ViolationKind, str] = {
    "unique": "DUPLICATE_KEY",
    "too_long": "VALUE_TOO_LONG",
    "out_of_range": "VALUE_OUT_OF_RANGE",
    "not_null": "NOT_NULL",
    "foreign_key": "FOREIGN_KEY",
    "check": "CHECK_CONSTRAINT",
    "value": "INVALID_VALUE",
}


def violation(
    exc: BaseException,
    dialect: str,
    entity: Entity,
    locate: Callable[[str, str], int | None] | None = None,
) -> QuiverError | None:
    """The error of a constraint violation the database raised while loading ``entity``, or
    None when ``exc`` is not one. ``locate(code, column)`` may find the row (1-based, in the
    stream) the database did not name."""
    found = violations.violation(exc, dialect)
    code = _CODES.get(found.kind) if found is not None else None
    if found is None or code is None:
        return None
    # the one column at fault, when there is one
    columns = found.columns_in([f.column for f in entity.fields], entity.primary_key)
    field = entity.field_by_column(columns[0]) if len(columns) == 1 else None
    row = found.row
    if row is None and locate is not None and field is not None:
        row = locate(code, field.column)
    what, fix = KINDS[code]
    name = field.name if field is not None else None
    message = f"the database refused the load of {entity.name}: {what}"
    if found.constraint:
        message += f" ({found.constraint})"
    if name:
        message += f", column {name!r}"
    if row is not None:
        message += f", row {row} of the stream"
    message += f": {found.message.rstrip('.')}; nothing was written"
    where = f"DoPut {entity.name}" + (f".{name}" if name else "")
    if row is not None:
        where += f" row {row}"
    error = PermanentError.one(message, where, fix)
    error.code = code
    return error
