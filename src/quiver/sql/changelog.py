"""The change log: one row per row written, inserted in the writing transaction (an outbox).

Whatever writes rows (GraphQL mutations today) calls :func:`write_changes` inside its own
transaction, so a change is recorded exactly when the write commits. Readers (observers,
subscriptions) read the table in ``id`` order; ``transaction_id`` groups the rows of one
transaction. On PostgreSQL the insert also sends ``NOTIFY`` on :data:`CHANGE_CHANNEL` (payload:
the table's name), delivered when the transaction commits, to wake readers up. The table is
created by :func:`ensure_change_log` when missing:

=================  ==========================================================================
id                 increasing number of the change
entity             the entity's API name (``Author``)
entity_key         JSON object of the key fields (``{"id": 7}``)
operation          ``insert``, ``update`` or ``delete``
before_image       JSON object of every field before the write (null for an insert)
after_image        JSON object of every field after the write (null for a delete)
changed_fields     JSON array of the names of the fields whose value changed
actor              the user id of the request, if any
tenant_id          the tenant of the request, if any
transaction_id     one id per transaction
changed_at         when the change was written (UTC)
=================  ==========================================================================

A JSON field may hold the JSON value null, which the API serves as it serves SQL NULL
(``null``) but which is a value: a query's ``isNull`` does not select it. An image therefore
names the fields holding a JSON null under the key :data:`JSON_NULLS` (``"__jsonNulls": ["j"]``),
absent when there is none, which no field can collide with (a GraphQL name never starts with
``__``). An image without the key (every image written before it existed) reads each null as
SQL NULL, as the readers of that time read it. :func:`image_document` turns an image into what
event documents show: a JSON field holding SQL NULL is absent, one holding JSON null is null.

Beside it, ``<table>_writers`` marks Quiver's own write transactions: :func:`mark_writer`
inserts the transaction's id there and :func:`unmark_writer` deletes it before the commit, so
the row is only ever seen by the writing transaction itself. The triggers that
``quiver observers install-triggers`` creates log a write only when that table looks empty,
so a write Quiver logs itself is never logged twice.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from quiver.runtime.errors import line_and_column
from quiver.sql.build import template
from quiver.sql.database import Transaction
from quiver.sql.dialects import Dialect
from quiver.sql.fragment import compile_sql, ident, join, param, sql

__all__ = [
    "CHANGE_CHANNEL",
    "JSON_NULLS",
    "Change",
    "ChangeContext",
    "JsonNumber",
    "ensure_change_log",
    "image_document",
    "json_nulls",
    "json_number",
    "json_text",
    "json_value",
    "mark_writer",
    "time_text",
    "unmark_writer",
    "with_placeholders",
    "write_changes",
    "writers_table",
]

Operation = Literal["insert", "update", "delete"]

#: The key of a row image listing the JSON fields that hold the JSON value null (absent: none).
JSON_NULLS = "__jsonNulls"

#: The PostgreSQL channel notified in each transaction that writes change-log rows.
CHANGE_CHANNEL = "quiver_changes"

_DDL = {
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS {t} (id BIGSERIAL PRIMARY KEY, entity TEXT NOT NULL,"
        " entity_key JSONB NOT NULL, operation TEXT NOT NULL, before_image JSON,"
        " after_image JSON, changed_fields JSONB NOT NULL, actor TEXT, tenant_id TEXT,"
        " transaction_id TEXT NOT NULL, changed_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ),
    "mysql": (
        "CREATE TABLE IF NOT EXISTS {t} (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
        " entity VARCHAR(255) NOT NULL, entity_key JSON NOT NULL, operation VARCHAR(6) NOT NULL,"
        " before_image JSON, after_image JSON, changed_fields JSON NOT NULL,"
        " actor VARCHAR(255), tenant_id VARCHAR(255), transaction_id VARCHAR(36) NOT NULL,"
        " changed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
    ),
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " entity TEXT NOT NULL, entity_key TEXT NOT NULL, operation TEXT NOT NULL,"
        " before_image TEXT, after_image TEXT, changed_fields TEXT NOT NULL, actor TEXT,"
        " tenant_id TEXT, transaction_id TEXT NOT NULL,"
        " changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
    ),
}
_WRITERS_DDL = "CREATE TABLE IF NOT EXISTS {t} (transaction_id VARCHAR(36) PRIMARY KEY)"
#: JSON columns and their PostgreSQL type: the images are ``json``, which keeps the text as
#: written (``jsonb`` writes a Float's -0 as 0 and 1e+16 as 10000000000000000, and reorders
#: keys); a change log created as ``jsonb`` by an earlier version takes the same values.
_JSON_COLUMNS = {
    "entity_key": "JSONB",
    "before_image": "JSON",
    "after_image": "JSON",
    "changed_fields": "JSONB",
}
_COLUMNS = (
    "entity",
    "entity_key",
    "operation",
    "before_image",
    "after_image",
    "changed_fields",
    "actor",
    "tenant_id",
    "transaction_id",
)


@dataclass(frozen=True)
class ChangeContext:
    """Who made the changes of one transaction, and which transaction it is."""

    transaction_id: str
    actor: str | None = None
    tenant_id: str | None = None


@dataclass(frozen=True)
class Change:
    """One row written. Images and key are JSON text, as the database built them."""

    entity: str
    key: str
    operation: Operation
    before: str | None
    after: str | None
    changed_fields: str


def json_nulls(image: Mapping[str, Any] | None) -> frozenset[str]:
    """The fields of ``image`` (a decoded image) holding the JSON value null."""
    named = image.get(JSON_NULLS) if image else None
    return frozenset(named) if isinstance(named, list) else frozenset()


def image_document(
    image: Mapping[str, Any] | None, json_fields: Collection[str]
) -> dict[str, Any] | None:
    """A decoded image as event documents show it: every field as the API serves it, except
    that a field of ``json_fields`` (those that may hold JSON null) holding SQL NULL is absent,
    while one holding the JSON value null is ``null``; the :data:`JSON_NULLS` key is dropped."""
    if image is None:
        return None
    if JSON_NULLS not in image and not json_fields:
        return dict(image)
    nulls = json_nulls(image)
    return {
        name: value
        for name, value in image.items()
        if name != JSON_NULLS and (value is not None or name in nulls or name not in json_fields)
    }


def json_value(value: Any, *, strict: bool = False) -> Any:
    """A JSON column's value as read by any driver (text, bytes or already decoded), every
    number exact: one that no int64/uint64 or double holds (a JSON field's ``1e400`` or
    ``123456789012345678901234567890``) is a :class:`decimal.Decimal`, written back as the
    same number by :func:`json_text`. Images hold the values as the API serves them, and a
    JSON field serves the numbers the database keeps, whatever their size. A value nested too
    deeply to read (arrays or objects thousands of levels deep), or bytes that are not UTF-8,
    is a ``json.JSONDecodeError``.

    ``strict`` reads JSON text as RFC 8259 and I-JSON (RFC 7493) write it, for text a client
    sent: ``NaN``, ``Infinity`` and a string holding half of a UTF-16 surrogate pair
    (``"\\ud800"``) are refused too, each with what and where in its message."""
    if type(value) is bytes:  # the common case first: HTTP bodies, PostgreSQL's JSON
        raw = value
    elif value is None or isinstance(value, dict | list):
        return value
    else:
        raw = bytes(value) if isinstance(value, bytearray | memoryview) else value.encode()
    if not _maybe_inexact(raw):
        try:
            return orjson.loads(raw)  # refuses NaN, lone surrogates and bytes not UTF-8
        except orjson.JSONDecodeError:
            pass  # a number past a double (1e400), or nested past orjson's 1,024 levels
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        before = raw[: exc.start].decode()
        line, column = line_and_column(before, len(before))
        raise _not_json(
            f"it is not UTF-8: byte 0x{raw[exc.start]:02x} at line {line} column {column} "
            "is not part of a UTF-8 character; send the JSON as UTF-8 text"
        ) from None
    if text.startswith("\ufeff"):
        raise _not_json("it starts with a byte order mark; send UTF-8 JSON without one")
    try:
        decoded = json.loads(
            text,
            parse_int=_exact_int,
            parse_float=_exact_float,
            parse_constant=_refuse_constant if strict else None,
        )
    except RecursionError:
        # Refused as malformed, as orjson refuses it: never a crash of whoever reads it.
        raise _not_json(
            "it is nested too deeply to read (arrays and objects within each other); "
            "send fewer levels"
        ) from None
    if strict:
        _refuse_lone_surrogates(decoded, "")
    return decoded


def _not_json(message: str) -> json.JSONDecodeError:
    """A ``json.JSONDecodeError`` whose message is ``message`` alone (no position)."""
    error = json.JSONDecodeError(message, "", 0)
    error.args = (message,)
    return error


def _refuse_constant(name: str) -> Any:
    raise _not_json(
        f"{name} is not a JSON number; send a number, or null, or the value as a string"
    )


def _refuse_lone_surrogates(value: Any, path: str) -> None:
    """Refuse ``value`` when a string or key in it holds half of a UTF-16 surrogate pair."""
    if isinstance(value, str):
        _refuse_half_pair(value, path or "the body")
    elif isinstance(value, dict):
        for key, item in value.items():
            if key.isidentifier():
                where = f"{path}.{key}" if path else key
            else:
                where = f"{path}[{_escaped(key)}]"
            _refuse_half_pair(key, where)
            _refuse_lone_surrogates(item, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_lone_surrogates(item, f"{path}[{index}]")


def _escaped(text: str) -> str:
    """``text`` as a JSON string, a half pair written as its escape."""
    return json.dumps(text, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()


def _refuse_half_pair(text: str, where: str) -> None:
    for char in text:
        if "\ud800" <= char <= "\udfff":
            raise _not_json(
                f"the string at {where} holds \\u{ord(char):04x}, half of a UTF-16 surrogate "
                "pair; send whole characters (a pair's two halves together)"
            )


def json_text(value: Any, option: int | None = None) -> bytes:
    """``value`` as JSON (orjson ``option`` flags): :func:`json_value`'s exact numbers, other
    decimals and integers past 64 bits are written as the numbers they are."""
    try:
        return orjson.dumps(value, default=_number_text, option=option)
    except orjson.JSONEncodeError:
        # orjson refuses an integer past 64 bits without asking ``default``
        return orjson.dumps(_big_integers(value), default=_number_text, option=option)


def _big_integers(value: Any) -> Any:
    """``value`` with each integer past 64 bits, at any depth, as its JSON number."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value))
    if isinstance(value, dict):
        return {k: _big_integers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_big_integers(v) for v in value]
    return value


#: Every digit as 0 and the exponent mark as e: one search finds each shape below.
_DIGITS = bytes.maketrans(b"123456789E", b"000000000e")


def _maybe_inexact(raw: bytes) -> bool:
    """Whether ``raw`` may hold a number orjson would round: 16 digits in a row (an integer
    past 64 bits, more digits than a double holds) or an exponent of -100 or below (past a
    double's range, read as 0). Cheaper than parsing; orjson refuses a large exponent itself.
    Digits inside strings count too, which only costs the exact parser's time."""
    shape = raw.translate(_DIGITS)
    return b"0000000000000000" in shape or b"e-000" in shape


class JsonNumber(decimal.Decimal):
    """A JSON number no int64/uint64 or double holds, with the text it was read from:
    :func:`json_text` writes that text back (``1e400``, not ``1E+400``)."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __inspect__(self) -> str:
        """The number as written, where graphql-core's ``inspect`` names a value in an error
        message (``Int cannot represent ...: 1e400``), instead of ``<JsonNumber instance>``."""
        return self.text


def _exact_int(text: str) -> int | float | decimal.Decimal:
    number = int(text)
    if -(2**63) <= number < 2**64:
        return number
    return _exact_float(text)


def json_number(text: str) -> float | decimal.Decimal:
    """A JSON number's text as :func:`json_value` reads it (a float when a double holds it
    exactly, a :class:`JsonNumber` otherwise)."""
    return _exact_float(text)


def _exact_float(text: str) -> float | decimal.Decimal:
    """The double of ``text`` when it is exactly that number (PostgreSQL's jsonb writes the
    double 1e300 as its 301 digits), the exact decimal otherwise."""
    exact = JsonNumber(text)
    try:
        number = float(text)
    except OverflowError:
        return exact
    if math.isfinite(number) and decimal.Decimal(repr(number)) == exact:
        return number
    return exact


def _number_text(value: Any) -> Any:
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return orjson.Fragment(getattr(value, "text", None) or str(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def time_text(value: Any) -> str:
    """A ``changed_at`` value as ISO 8601 text (UTC when the driver gives a naive time)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return str(value.isoformat(timespec="microseconds"))
    return str(value)


def with_placeholders(dialect: Dialect, text: str) -> str:
    """``text`` with each ``?`` replaced by the dialect's numbered placeholder."""
    pieces = text.split("?")
    out = [pieces[0]]
    for n, piece in enumerate(pieces[1:], start=1):
        out.append(dialect.placeholder(n))
        out.append(piece)
    return "".join(out)


async def ensure_change_log(tx: Transaction, dialect: Dialect, table: str) -> None:
    """Create the change-log table ``table`` when it does not exist."""
    if dialect.name not in _DDL:
        raise ValueError(f"no change log for {dialect.name}")
    await tx.fetch_rows(_DDL[dialect.name].format(t=dialect.quote_ident(table)), ())
    await tx.fetch_rows(_WRITERS_DDL.format(t=dialect.quote_ident(writers_table(table))), ())


def writers_table(table: str) -> str:
    """The name of the table marking Quiver's own write transactions for ``table``."""
    return f"{table}_writers"


async def mark_writer(
    tx: Transaction, dialect: Dialect, table: str, context: ChangeContext
) -> None:
    """Mark ``tx`` as Quiver's: change-log triggers skip its writes until the unmark."""
    await _writer(tx, dialect, table, context, "INSERT INTO {t} (transaction_id) VALUES ({p})")


async def unmark_writer(
    tx: Transaction, dialect: Dialect, table: str, context: ChangeContext
) -> None:
    """Remove the mark of :func:`mark_writer`; call it last, before the commit."""
    await _writer(tx, dialect, table, context, "DELETE FROM {t} WHERE transaction_id = {p}")


async def _writer(
    tx: Transaction, dialect: Dialect, table: str, context: ChangeContext, text: str
) -> None:
    t = dialect.quote_ident(writers_table(table))
    await tx.fetch_rows(text.format(t=t, p=dialect.placeholder(1)), [context.transaction_id])


async def write_changes(
    tx: Transaction,
    dialect: Dialect,
    table: str,
    changes: Sequence[Change],
    context: ChangeContext,
) -> None:
    """Insert one change-log row per change, in order, inside ``tx``."""
    if not changes:
        return
    rows = []
    for c in changes:
        values: dict[str, Any] = {
            "entity": c.entity,
            "entity_key": c.key,
            "operation": c.operation,
            "before_image": c.before,
            "after_image": c.after,
            "changed_fields": c.changed_fields,
            "actor": context.actor,
            "tenant_id": context.tenant_id,
            "transaction_id": context.transaction_id,
        }
        cells = []
        for column in _COLUMNS:
            p = param(values[column])
            if column in _JSON_COLUMNS and dialect.json_input != "{}":
                cells.append(template(dialect.json_input, p, _JSON_COLUMNS[column]))
            else:
                cells.append(sql(p))
        rows.append(sql("(", join(", ", cells), ")"))
    statement = sql(
        "INSERT INTO ",
        ident(table),
        " (",
        join(", ", (ident(c) for c in _COLUMNS)),
        ") VALUES ",
        join(", ", rows),
    )
    if dialect.name == "postgresql":
        statement = sql(
            "WITH w AS (",
            statement,
            f") SELECT pg_notify('{CHANGE_CHANNEL}', ",
            param(table),
            ")",
        )
    text, slots = compile_sql(statement, dialect)
    await tx.fetch_rows(text, [s.value({}) for s in slots])
