"""A Flight SQL subset, so that ``adbc-driver-flightsql``, ``pandas.read_sql`` and
``polars.read_database`` can query Quiver.

Served: statement queries (``CommandStatementQuery``, and prepared ones with or without ``?``
parameters), ``GetCatalogs``, ``GetDbSchemas``, ``GetTables``, ``GetTableTypes`` and
``GetSqlInfo``. A query is parsed with sqlglot and must be a ``SELECT`` of columns of one
catalog table, with an optional ``WHERE`` (comparisons, ``IN``, ``IS [NOT] NULL``, ``LIKE``,
``BETWEEN`` joined by ``AND`` / ``OR`` / ``NOT``) and ``LIMIT``; it becomes an
:class:`ExportTicket`, so it runs exactly as an export does (names from the catalog, values as
parameters). Everything else is refused with what is not supported. Read-only: updates are
refused.

A prepared statement's handle is its export ticket, each ``?`` a marker in its filter
(``{"$parameter": n}``). Binding values (a DoPut of one parameter row) answers a new handle
holding that ticket and the values (:func:`bind`), which the client executes: the values take
the markers' places in the filter, where they are coerced by their columns' scalars as any
export ticket's values are, and never reach SQL text. The server keeps no state per statement.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
import math
import re
import uuid
from typing import Any, ClassVar

import orjson
import pyarrow as pa
import sqlglot
from sqlglot import exp, tokens
from sqlglot.dialects.dialect import Dialect

from quiver.flight.arrow_types import arrow_schema, arrow_type
from quiver.flight.export import find_entity
from quiver.flight.protobuf import ProtobufError, decode, encode, pack_any, unpack_any
from quiver.flight.tickets import (
    MAX_TICKET_BYTES,
    ExportTicket,
    Ticket,
    TicketError,
    parse_ticket,
    read_json,
)
from quiver.schema.catalog import Catalog
from quiver.schema.ir import ORDERED_SCALARS, TEXT_SCALARS, Entity, Field, Scalar
from quiver.schema.naming import enum_value_names

__all__ = [
    "CATALOG",
    "UNSERVED_ACTIONS",
    "SqlCommand",
    "bind",
    "catalogs",
    "column_names",
    "database_values",
    "db_schemas",
    "parse_command",
    "prepared_statement",
    "sql_info",
    "statement_ticket",
    "table_types",
    "tables",
    "ticket_statement",
]

_PREFIX = "arrow.flight.protocol.sql."
CATALOG = "quiver"
SCHEMA = "main"
_FIX = (
    "write SELECT <columns or *> FROM <table> [WHERE <column> <op> <value> ...] [LIMIT n]; "
    "joins, grouping, ordering and functions are not served"
)


_TRANSACTIONS = (
    "transactions are not served: each statement runs on its own, read-only (keep the "
    "connection in autocommit mode)"
)
_SESSIONS = "the server keeps no session: each call stands alone, with its key"
#: Flight SQL's actions this server does not serve, and what to do instead.
UNSERVED_ACTIONS = {
    "BeginTransaction": _TRANSACTIONS,
    "EndTransaction": _TRANSACTIONS,
    "BeginSavepoint": _TRANSACTIONS,
    "EndSavepoint": _TRANSACTIONS,
    "CancelQuery": "cancel the DoGet call reading the query's rows (or send the action "
    "'cancel' with its ticket)",
    "CancelFlightInfo": "cancel the DoGet call reading the query's rows (or send the action "
    "'cancel' with its ticket)",
    "RenewFlightEndpoint": "endpoints do not expire: read the endpoint as it is",
    "CreatePreparedSubstraitPlan": "Substrait plans are not served: prepare SQL instead",
    "SetSessionOptions": _SESSIONS,
    "GetSessionOptions": _SESSIONS,
    "CloseSession": _SESSIONS,
}


def _refuse(message: str, fix: str = _FIX) -> TicketError:
    return _refuse_at(message, "Flight SQL", fix)


def _refuse_at(message: str, where: str, fix: str) -> TicketError:
    return TicketError.one(message, where, fix)  # type: ignore[return-value]


class SqlCommand:
    """A decoded Flight SQL command: its message name and fields."""

    def __init__(self, name: str, fields: dict[int, list[int | bytes]]) -> None:
        self.name = name
        self.fields = fields

    def text(self, number: int) -> str | None:
        """The string field ``number`` (None when absent); refused when it is not UTF-8."""
        values = self.fields.get(number)
        if not values or not isinstance(values[0], bytes):
            return None
        return self._utf8(values[0], number)

    def texts(self, number: int) -> list[str]:
        """Every value of the repeated string field ``number``; refused when one is not UTF-8."""
        return [self._utf8(v, number) for v in self.fields.get(number, []) if isinstance(v, bytes)]

    def _utf8(self, value: bytes, number: int) -> str:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _refuse_at(
                f"field {number} of {self.name} is not UTF-8 text",
                self.name,
                "send Flight SQL's string fields (queries, names, patterns) as UTF-8",
            ) from None

    def raw(self, number: int) -> bytes:
        values = self.fields.get(number)
        return values[0] if values and isinstance(values[0], bytes) else b""

    def flag(self, number: int) -> bool:
        values = self.fields.get(number)
        return bool(values and values[0])

    def numbers(self, number: int) -> list[int]:
        out: list[int] = []
        for v in self.fields.get(number, []):
            if isinstance(v, int):
                out.append(v)
            else:  # packed repeated varints
                packed = decode(b"".join(_tagged(v)))
                out.extend(int(x) for x in packed.get(1, []) if isinstance(x, int))
        return out


def _tagged(packed: bytes) -> list[bytes]:
    """Packed varints re-read as repeated field 1 (each varint behind a field-1 tag)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(packed):
        end = pos
        while packed[end] & 0x80:
            end += 1
        out.append(b"\x08" + packed[pos : end + 1])
        pos = end + 1
    return out


def parse_command(raw: bytes) -> SqlCommand | None:
    """The Flight SQL command ``raw`` holds, or None when it is not one (a Quiver ticket)."""
    unpacked = unpack_any(raw)
    if unpacked is None or not unpacked[0].startswith(_PREFIX):
        return None
    name, body = unpacked
    try:
        return SqlCommand(name[len(_PREFIX) :], decode(body))
    except ProtobufError as exc:
        raise _refuse(f"the {name} message cannot be read: {exc}", "send a valid message") from None


def statement_ticket(handle: bytes) -> bytes:
    """A ``TicketStatementQuery`` wrapping ``handle`` (an export ticket's JSON)."""
    return pack_any(_PREFIX + "TicketStatementQuery", encode([(1, handle)]))


def ticket_statement(command: SqlCommand) -> bytes:
    return command.raw(1)


def prepared_result(handle: bytes, schema: pa.Schema, parameters: pa.Schema | None = None) -> bytes:
    fields: list[tuple[int, int | bytes | str]] = [
        (1, handle),
        (2, schema.serialize().to_pybytes()),
    ]
    if parameters is not None and len(parameters):
        fields.append((3, parameters.serialize().to_pybytes()))
    return pack_any(_PREFIX + "ActionCreatePreparedStatementResult", encode(fields))


def put_prepared_result(handle: bytes) -> bytes:
    """A ``DoPutPreparedStatementResult`` (the PutResult's metadata, not packed in ``Any``):
    the handle the client executes from now on."""
    return encode([(1, handle)])


# ----- prepared statements and their parameters ----------------------------------------------

#: The key of a parameter marker in a prepared statement's filter: ``{"$parameter": n}``.
PARAMETER = "$parameter"


def _marker(value: Any) -> int | None:
    if isinstance(value, dict) and len(value) == 1 and PARAMETER in value:
        index = value[PARAMETER]
        return index if isinstance(index, int) and not isinstance(index, bool) else -1
    return None


def _markers(where: Any, column: str = "") -> list[tuple[int, str, str]]:
    """The parameter markers of a filter: (index, column, operator), in filter order."""
    out: list[tuple[int, str, str]] = []
    if isinstance(where, list):
        for item in where:
            out.extend(_markers(item, column))
    elif isinstance(where, dict):
        for key, value in where.items():
            if key in ("and", "or", "not"):
                out.extend(_markers(value, column))
            elif not column:
                out.extend(_markers(value, key))
            else:
                index = _marker(value)
                items = value if isinstance(value, list) else [value]
                for item in items if index is None else [value]:
                    found = _marker(item)
                    if found is not None:
                        out.append((found, column, key))
    return out


def _substituted(where: Any, values: list[Any]) -> Any:
    index = _marker(where)
    if index is not None:
        return values[index]
    if isinstance(where, list):
        return [_substituted(v, values) for v in where]
    if isinstance(where, dict):
        return {k: _substituted(v, values) for k, v in where.items()}
    return where


def prepared_statement(handle: bytes) -> tuple[Ticket, list[Any] | None]:
    """The ticket of a prepared statement's handle and its bound values (None: unbound)."""
    try:
        body = read_json(handle.decode("utf-8"))
    except (TicketError, UnicodeDecodeError):
        body = None  # refused below, as parse_ticket refuses it
    if isinstance(body, dict) and set(body) == {"prepared"}:
        prepared = body["prepared"]
        if (
            not isinstance(prepared, dict)
            or not isinstance(prepared.get("ticket"), dict)
            or not isinstance(prepared.get("values"), list)
        ):
            raise _refuse(
                "the prepared statement handle cannot be read",
                "prepare the statement again and use the handle the server answers",
            )
        return parse_ticket(orjson.dumps(prepared["ticket"])), prepared["values"]
    try:
        return parse_ticket(handle), None
    except TicketError:
        raise _refuse(
            "the prepared statement handle cannot be read",
            "prepare the statement again and use the handle the server answers",
        ) from None


def parameter_count(ticket: Ticket) -> int:
    """How many ``?`` the statement of ``ticket`` has; a handle whose markers are not
    numbered 0, 1, ... in turn (not one this server made) is refused."""
    if not isinstance(ticket, ExportTicket):
        return 0
    indexes = sorted(index for index, _column, _op in _markers(ticket.where))
    if indexes != list(range(len(indexes))):
        raise _refuse(
            "the prepared statement handle cannot be read",
            "prepare the statement again and use the handle the server answers",
        )
    return len(indexes)


def statement_schema_ticket(ticket: Ticket) -> Ticket:
    """``ticket`` without its filter when it holds parameters: the rows' schema does not
    depend on the filter, so it is known before values are bound."""
    if parameter_count(ticket):
        assert isinstance(ticket, ExportTicket)
        return dataclasses.replace(ticket, where={})
    return ticket


def executed_ticket(handle: bytes) -> Ticket:
    """The ticket a prepared statement's handle runs: its filter with the bound values in
    place of its parameters; refused while a parameter has no value."""
    ticket, values = prepared_statement(handle)
    count = parameter_count(ticket)
    if not count:
        return ticket
    if values is None:
        raise _refuse(
            f"the statement has {count} parameter{'s' if count > 1 else ''} and no values "
            "are bound",
            "bind one value per ? before executing (cursor.execute(sql, params))",
        )
    if len(values) != count:
        raise _refuse(
            "the prepared statement handle cannot be read",
            "prepare the statement again and use the handle the server answers",
        )
    assert isinstance(ticket, ExportTicket)
    return dataclasses.replace(ticket, where=_substituted(ticket.where, values))


def parameter_schema(ticket: Ticket, catalog: Catalog) -> pa.Schema:
    """One field per ``?`` of the statement, named and typed by the column it compares."""
    if not isinstance(ticket, ExportTicket):
        return pa.schema([])
    entity = find_entity(catalog, ticket.table)
    fields: list[pa.Field] = []
    for _index, column, op in sorted(_markers(ticket.where)):
        f = entity.field(column) or entity.field_by_column(column)
        if f is None or op in ("like", "ilike"):
            fields.append(pa.field(column, pa.string()))
        else:
            t = arrow_type(f)
            fields.append(pa.field(f.name, t.value_type if pa.types.is_list(t) else t))
    return pa.schema(fields)


def bind(handle: bytes, parameters: pa.Table) -> tuple[bytes, Ticket]:
    """The handle of the statement of ``handle`` with the values of ``parameters`` (one row,
    one column per ``?`` in order) bound, and the ticket it runs."""
    ticket, _old = prepared_statement(handle)
    count = parameter_count(ticket)
    where = "Flight SQL parameters"
    if parameters.num_columns != count:
        raise _refuse_at(
            f"the statement has {count} parameter{'' if count == 1 else 's'} (?) and "
            f"{parameters.num_columns} value{'' if parameters.num_columns == 1 else 's'} "
            "were bound",
            where,
            "bind exactly one value per ? of the statement",
        )
    if parameters.num_rows != 1:
        raise _refuse_at(
            f"{parameters.num_rows} rows of parameters were bound; a query runs with one",
            where,
            "bind one row of values per execution",
        )
    values = [
        _input_value(column.to_pylist()[0], column.type, i + 1)
        for i, column in enumerate(parameters.columns)
    ]
    assert isinstance(ticket, ExportTicket)
    body = orjson.loads(ticket.to_json())
    bound = orjson.dumps({"prepared": {"ticket": body, "values": values}})
    return bound, dataclasses.replace(ticket, where=_substituted(ticket.where, values))


def _input_value(value: Any, arrow: pa.DataType, position: int) -> Any:
    """A bound value as the filter's JSON input holds it (what an export ticket would send):
    exact numbers and times as text, which the column's scalar reads."""
    where = f"Flight SQL parameter {position}"
    if value is None:
        raise _refuse_at(
            f"parameter {position} is NULL, and a comparison with NULL is never true",
            where,
            "write IS NULL / IS NOT NULL into the query instead of binding NULL",
        )
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, uuid.UUID):  # an arrow.uuid value (pyarrow's type for uuid.UUID)
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise _refuse_at(
            f"parameter {position} is {value}: a filter compares finite numbers only (as "
            "GraphQL's Float does), so NaN and the infinities cannot be bound",
            where,
            "compare with finite bounds instead (x > 1.7976931348623157e308 holds +infinity, "
            "x < -1.7976931348623157e308 -infinity)",
        )
    elif isinstance(value, decimal.Decimal):
        if value.is_finite():  # read by the column it is compared with, as a SQL constant
            return {NUMBER: str(value)}
    elif isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    elif isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    raise _refuse_at(
        f"parameter {position} ({arrow}) holds {value!r}, which no column compares with",
        where,
        "bind a number, text, a date or time, or bytes",
    )


# ----- values as SQL writes them -> values as the filter takes them ---------------------------


def column_names(ticket: ExportTicket, catalog: Catalog) -> ExportTicket:
    """``ticket`` with the column names its SQL wrote as the catalog spells them: SQL folds
    unquoted names (``select genreid from genre``), so a name no field or column has
    exactly is the field or column whose name differs from it only in case, when one does."""
    try:
        entity = find_entity(catalog, ticket.table)
    except TicketError:
        return ticket  # planning refuses it, with the tables there are
    columns = tuple(_column_name(entity, c) for c in ticket.columns)
    _each_once(ticket.columns, columns, entity)
    where = _filter_names(ticket.where, entity)
    if columns == ticket.columns and where == ticket.where:
        return ticket
    return dataclasses.replace(ticket, columns=columns, where=where)


def _each_once(written: tuple[str, ...], names: tuple[str, ...], entity: Entity) -> None:
    """A field selected twice (``name, name``; ``genreId, genre_id``) is refused: a stream
    has it once, where SQL would return it twice (it was once returned once, silently)."""
    seen: dict[str, str] = {}
    for text, name in zip(written, names, strict=True):
        f = entity.field(name) or entity.field_by_column(name)
        if f is None:
            continue  # planning refuses it, with the columns there are
        if f.name in seen:
            raise _refuse(
                f"{seen[f.name]} and {text} select the same column ({f.name}) of {entity.name}: "
                "SQL would return it twice, and a query's columns are served once each",
                "select each column once",
            )
        seen[f.name] = text


def _column_name(entity: Entity, name: str) -> str:
    if entity.field(name) or entity.field_by_column(name):
        return name
    lowered = name.lower()
    found = {f.name for f in entity.fields if lowered in (f.name.lower(), f.column.lower())}
    return found.pop() if len(found) == 1 else name


def _filter_names(where: Any, entity: Entity) -> Any:
    if isinstance(where, list):
        return [_filter_names(item, entity) for item in where]
    if not isinstance(where, dict):
        return where
    return {
        key if key in ("and", "or", "not") else _column_name(entity, key): (
            _filter_names(value, entity) if key in ("and", "or", "not") else value
        )
        for key, value in where.items()
    }


def database_values(ticket: Ticket, catalog: Catalog) -> Ticket:
    """``ticket`` (its column names as the catalog spells them, :func:`column_names`) with
    the values its SQL wrote as the export filter takes them: numbers read by their column
    (exactly for a Decimal column), and the values an enum column is compared with (the
    database's own, as the rows stream them: ``'in progress'``) as the GraphQL enum names the
    filter takes (``in_progress``). A text that is not one of an enum column's values is
    refused with the values it has, and so is any condition but IS [NOT] NULL on a JSON or
    array column."""
    if not isinstance(ticket, ExportTicket):
        return ticket
    ticket = column_names(ticket, catalog)
    if not ticket.where:
        return ticket
    try:
        entity = find_entity(catalog, ticket.table)
    except TicketError:
        return ticket  # planning refuses it, with the tables there are
    where = _filter_values(ticket.where, entity)
    return ticket if where == ticket.where else dataclasses.replace(ticket, where=where)


def _filter_values(where: Any, entity: Entity) -> Any:
    if isinstance(where, list):
        return [_filter_values(item, entity) for item in where]
    if not isinstance(where, dict):
        return where
    out: dict[str, Any] = {}
    for key, value in where.items():
        if key in ("and", "or", "not"):
            out[key] = _filter_values(value, entity)
            continue
        f = entity.field(key) or entity.field_by_column(key)
        if f is not None and f.is_list:
            _only_null_tests(value, key, "an array (streamed as a list)")
        elif f is not None and f.scalar == Scalar.JSON:
            _only_null_tests(value, key, "JSON (streamed as its text)")
        elif f is not None and isinstance(value, dict):
            _served_operators(value, key, f)
        if f is not None:
            value = _bytes_values(value, key, f)
        value = _numbers(value, "float" if f is None else _NUMBER_READS.get(f.scalar, "float"))
        if f is None or f.enum_values is None or not isinstance(value, dict):
            out[key] = value
        else:
            names = enum_value_names(f.enum_values)
            out[key] = {op: _enum_name(v, names, key) for op, v in value.items()}
    return out


#: How a column of each scalar reads a number a statement wrote: its digits, exactly, for a
#: Decimal; as text for a text column of another type (PostgreSQL oid, money: the database
#: reads the text by the column's type, ``o = 42`` as ``o = '42'``); a double otherwise.
_NUMBER_READS = {
    Scalar.DECIMAL: "digits",
    Scalar.STRING: "text",
    Scalar.ID: "text",
    Scalar.UUID: "text",
}


def _numbers(value: Any, reads: str) -> Any:
    """The numbers a statement wrote as the column reads them (:data:`_NUMBER_READS`)."""
    if isinstance(value, list):
        return [_numbers(v, reads) for v in value]
    if isinstance(value, dict):
        if set(value) == {NUMBER} and isinstance(value[NUMBER], str):
            return float(value[NUMBER]) if reads == "float" else value[NUMBER]
        if PARAMETER in value:
            return value
        return {k: v if k == "isNull" else _numbers(v, reads) for k, v in value.items()}
    if reads == "text" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _bytes_values(value: Any, column: str, f: Field) -> Any:
    """The binary strings (``X'00ff'``) a condition on ``f`` wrote, as its filter takes
    them: their Base64 text against a bytes column; refused against any other column."""
    if isinstance(value, list):
        return [_bytes_values(v, column, f) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {BYTES}:
        if f.scalar == Scalar.BASE64 and not f.is_list:
            return value[BYTES]
        name = "enum" if f.enum_values is not None else f.scalar.value
        raise _refuse_at(
            f"a binary string (X'...') compares with a bytes column, and {column} is "
            f"{'an' if name[0] in 'AEIOUaeiou' else 'a'} {name} column",
            f"Flight SQL condition on {column}",
            f"compare {column} with a value of its type ('text', a number, ...)",
        )
    if PARAMETER in value:
        return value
    return {k: _bytes_values(v, column, f) for k, v in value.items()}


def _only_null_tests(value: Any, column: str, holds: str) -> None:
    """A JSON column (PostgreSQL json, jsonb and composites, MariaDB JSON and spatial
    columns) or an array has no comparison SQL can write here (``JSONFilter`` has none, an
    array's filter ``contains``): only IS NULL."""
    if isinstance(value, dict) and set(value) <= {"isNull"}:
        return
    raise _refuse_at(
        f"{column} holds {holds}, which a condition compares only with IS NULL / IS NOT NULL",
        f"Flight SQL condition on {column}",
        f"select {column} and compare its values on the client, or filter on another column",
    )


_ORDERINGS = ("gt", "gte", "lt", "lte")


def _served_operators(value: dict[str, Any], column: str, f: Field) -> None:
    """LIKE compares text, and <, <=, >, >= and BETWEEN need an order: refused, with what
    the column takes, on a column whose filter has no such operator."""
    name = "enum" if f.enum_values is not None else f.scalar.value
    kind = f"{'an' if name[0] in 'AEIOUaeiou' else 'a'} {name}"
    if ("like" in value or "ilike" in value) and (
        f.scalar not in TEXT_SCALARS or f.enum_values is not None
    ):
        raise _refuse_at(
            f"LIKE compares text, and {column} is {kind} column",
            f"Flight SQL condition on {column}",
            f"compare {column} with =, <>, IN (...) or IS NULL",
        )
    if any(op in value for op in _ORDERINGS) and (
        f.scalar not in ORDERED_SCALARS or f.enum_values is not None
    ):
        raise _refuse_at(
            f"{column} is {kind} column, whose values have no order for <, <=, >, >= or BETWEEN",
            f"Flight SQL condition on {column}",
            f"compare {column} with =, <>, IN (...) or IS NULL",
        )


def _enum_name(value: Any, names: dict[str, str], column: str) -> Any:
    if isinstance(value, list):
        return [_enum_name(v, names, column) for v in value]
    if not isinstance(value, str):
        return value
    if value in names:
        return names[value]
    shown = ", ".join(repr(v) for v in list(names)[:20])
    raise _refuse_at(
        f"{column} has no value {value!r}",
        f"Flight SQL condition on {column}",
        f"compare {column} with one of its values ({shown}), written as the rows show them",
    )


# ----- SQL -> export ticket -----------------------------------------------------------------

_COMPARE: dict[type[exp.Expression], tuple[str, str]] = {
    exp.EQ: ("eq", "eq"),
    exp.NEQ: ("neq", "neq"),
    exp.GT: ("gt", "lt"),
    exp.GTE: ("gte", "lte"),
    exp.LT: ("lt", "gt"),
    exp.LTE: ("lte", "gte"),
}


#: The parts of a SELECT the subset reads; any other part is refused, named in SQL's words.
_SERVED_PARTS = frozenset({"expressions", "from", "from_", "where", "limit"})
_PART_WORDS = {
    "joins": "JOIN",
    "group": "GROUP BY",
    "order": "ORDER BY",
    "with_": "WITH",
    "with": "WITH",
    "locks": "FOR UPDATE / FOR SHARE",
    "sample": "TABLESAMPLE",
    "laterals": "LATERAL",
    "windows": "WINDOW",
    "for_": "FOR",
}
#: The parts of a table reference the subset reads (its name, schema, catalog and alias).
_SERVED_TABLE_PARTS = frozenset({"this", "db", "catalog", "alias"})


def _unsupported(parts: dict[str, Any], served: frozenset[str]) -> None:
    for name, value in parts.items():
        if value and name not in served:
            word = _PART_WORDS.get(name, name.rstrip("_").replace("_", " ").upper())
            raise _refuse(f"{word} is not supported")


class _Sql(Dialect):
    """sqlglot's own dialect, reading standard SQL's binary strings (``X'00ff'``) too."""

    class Tokenizer(tokens.Tokenizer):
        HEX_STRINGS: ClassVar[list[str | tuple[str, str]]] = [("x'", "'"), ("X'", "'")]


#: What to do with a statement too large to serve.
_SHORTER = (
    "write a shorter statement: a range (BETWEEN, >=, <) instead of a long IN list, or"
    " several statements each with part of the values"
)


def sql_to_ticket(query: str) -> ExportTicket:
    """The export a ``SELECT`` asks for, or a :class:`TicketError` naming what is refused."""
    size = len(query.encode("utf-8", "surrogatepass"))
    if size > MAX_TICKET_BYTES:
        raise _refuse(f"the statement is {size} bytes; the most is {MAX_TICKET_BYTES}", _SHORTER)
    try:
        ticket = _select_to_ticket(query)
    except RecursionError:
        # The parser and the walk of its tree recurse once per level of parentheses and NOT.
        raise _refuse(
            "the statement nests parentheses or NOT too deeply to be read",
            "write fewer levels: the filter nests at most 32 levels of AND, OR and NOT",
        ) from None
    size = len(ticket.to_json())
    if size > MAX_TICKET_BYTES:
        # The statement's handle and endpoint tickets are this export ticket, which the
        # server reads back no larger than any other ticket.
        raise _refuse(
            f"the statement is {size} bytes as an export ticket; the most is {MAX_TICKET_BYTES}",
            _SHORTER,
        )
    return ticket


def _select_to_ticket(query: str) -> ExportTicket:
    try:
        statements = sqlglot.parse(query, dialect=_Sql)
    except sqlglot.errors.SqlglotError as exc:  # ParseError, TokenError (a NUL character)
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise _refuse(f"the SQL cannot be parsed: {first}") from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1:
        raise _refuse("send exactly one statement")
    tree: Any = statements[0]
    _number_parameters(tree)
    if not isinstance(tree, exp.Select):
        raise _refuse("only SELECT is served (this server is read-only)")
    _unsupported(tree.args, _SERVED_PARTS)
    source = tree.args.get("from") or tree.args.get("from_")
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise _refuse("the query must read one table: FROM <table>")
    _unsupported(table.args, _SERVED_TABLE_PARTS)
    _served_table(table)
    for node in tree.find_all(exp.Column):
        _served_qualifier(node, table)
    stars = [p for p in tree.expressions if _is_star(p)]
    if stars and len(tree.expressions) > 1:
        raise _refuse(
            f"{', '.join(p.sql() for p in tree.expressions)}: * with other columns is not "
            "served (SQL would return those columns twice, under the same names)",
            "select * alone, or list each column once",
        )
    columns: list[str] = []
    for projection in tree.expressions:
        if _is_star(projection):
            break
        if isinstance(projection, exp.Column) and isinstance(projection.this, exp.Identifier):
            columns.append(projection.name)
            continue
        raise _refuse(f"{projection.sql()} is not a column; select columns or *")
    where_node = tree.args.get("where")
    where = _condition(where_node.this) if where_node is not None else {}
    limit_node = tree.args.get("limit")
    limit = None if limit_node is None else _limit(limit_node)
    return ExportTicket(table.name, where, tuple(columns), False, limit)


def _is_star(node: Any) -> bool:
    """``*`` or ``t.*`` (``t`` checked by :func:`_served_qualifier`)."""
    return isinstance(node, exp.Star) or (
        isinstance(node, exp.Column) and isinstance(node.this, exp.Star)
    )


def _dotted(node: Any, parts: tuple[str, ...]) -> str:
    return ".".join(p.sql() for k in parts if (p := node.args.get(k)) is not None)


def _served_table(table: exp.Table) -> None:
    """A table written with a schema or catalog is one of the tables GetTables lists only
    in schema ``main`` of catalog ``quiver``; any other qualifier is refused (it was once
    dropped, and ``other.Genre`` read Genre)."""
    catalog, db = table.args.get("catalog"), table.args.get("db")
    if (catalog is None or catalog.name.lower() == CATALOG) and (
        db is None or db.name.lower() == SCHEMA
    ):
        return
    qualifier = _dotted(table, ("catalog", "db"))
    raise _refuse(
        f"the table {_dotted(table, ('catalog', 'db', 'this'))} names {qualifier}, which this "
        f"server does not serve: its tables are in schema {SCHEMA} of catalog {CATALOG}",
        f"write FROM {table.name} (or {SCHEMA}.{table.name}, {CATALOG}.{SCHEMA}.{table.name})",
    )


def _served_qualifier(column: exp.Column, table: exp.Table) -> None:
    """A column written with a table (``g.name``) names the table the query reads: its
    alias when it has one, else its name (with ``main`` and ``quiver`` before it, or not).
    Any other qualifier is refused (it was once dropped, and ``x.name`` read ``name``)."""
    written = column.args.get("table")
    if written is None:
        return
    alias = table.alias
    db, catalog = column.args.get("db"), column.args.get("catalog")
    if alias:
        served = written.name.lower() == alias.lower() and db is None and catalog is None
        use = alias
    else:
        served = (
            written.name.lower() == table.name.lower()
            and (db is None or db.name.lower() == SCHEMA)
            and (catalog is None or catalog.name.lower() == CATALOG)
        )
        use = table.name
    if served:
        return
    reads = _dotted(table, ("catalog", "db", "this")) + (f" {alias}" if alias else "")
    raise _refuse(
        f"the column {column.sql()} names {_dotted(column, ('catalog', 'db', 'table'))}, "
        f"which is not the table the query reads (FROM {reads})",
        f"write {use}.{column.name} or {column.name}: a query reads one table",
    )


def _limit(node: Any) -> int:
    """The rows ``LIMIT n`` (or ``FETCH FIRST n ROWS ONLY``) asks for."""
    if isinstance(node, exp.Fetch):
        options = node.args.get("limit_options")
        if options is not None and (options.args.get("percent") or options.args.get("with_ties")):
            raise _refuse("FETCH FIRST takes a number of rows (no PERCENT, no WITH TIES)")
        value = node.args.get("count")
    else:
        if node.args.get("offset"):
            raise _refuse("OFFSET is not supported")
        value = node.expression
    if not isinstance(value, exp.Literal) or value.is_string or not value.this.isdigit():
        raise _refuse("LIMIT takes a whole number")
    if int(value.this) >= 2**63:
        raise _refuse("LIMIT takes a whole number below 2^63 (leave it out to read every row)")
    return int(value.this)


#: The key of a number written with a fraction or beyond 64 bits in a statement's filter,
#: or bound as a decimal (``{"$number": "12.34"}``): its digits, read by the column it is
#: compared with (:func:`database_values`, :data:`_NUMBER_READS`).
NUMBER = "$number"
#: The key of a binary string a statement wrote (``X'00ff'``) in its filter: its bytes in
#: Base64, as a Base64 column's filter takes them; compared with any other column, refused
#: (:func:`_bytes_values`).
BYTES = "$bytes"
#: Typed literals read as their text (``DATE '2024-02-29'``, ``CAST('...' AS TIMESTAMP)``).
_TIME_TYPES = ("date", "time", "timetz", "timestamp", "timestamptz", "datetime")


def _number(text: str) -> Any:
    try:
        value = int(text)
    except ValueError:
        return {NUMBER: text}
    return value if -(2**63) <= value < 2**64 else {NUMBER: text}


def _literal(node: Any) -> Any:
    if isinstance(node, exp.Paren):
        return _literal(node.this)
    if isinstance(node, exp.Neg):
        value = _literal(node.this)
        if isinstance(value, int):
            return _number(str(-value))
        if isinstance(value, dict) and NUMBER in value:
            text = value[NUMBER]
            return {NUMBER: text[1:] if text.startswith("-") else "-" + text}
    if isinstance(node, exp.Boolean):
        return node.this
    if isinstance(node, exp.HexString):
        try:
            value = bytes.fromhex(node.this)
        except ValueError:
            raise _refuse(
                f"X'{node.this}' is not bytes: a binary string holds pairs of hex digits",
                "write bytes as X'00ff' (an even number of digits 0-9, a-f)",
            ) from None
        return {BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(node, exp.Literal):
        return node.this if node.is_string else _number(node.this)
    if (
        isinstance(node, exp.Cast)
        and isinstance(node.this, exp.Literal)
        and node.this.is_string
        and node.to.is_type(*_TIME_TYPES)
    ):
        return node.this.this
    if isinstance(node, exp.Placeholder) and node.this is None:
        return {PARAMETER: node.meta["quiver_parameter"]}
    if isinstance(node, exp.Placeholder | exp.Parameter):
        raise _refuse(
            f"the parameter {node.sql()} is not served",
            "write ? for each parameter and bind the values in order",
        )
    if isinstance(node, exp.Null):
        raise _refuse("compare with NULL through IS NULL / IS NOT NULL")
    raise _refuse(f"{node.sql()} is not a value")


def _number_parameters(tree: Any) -> None:
    """Number the ``?`` of a statement in the order they are written (the order values are
    bound in)."""
    marks = tree.find_all(exp.Placeholder, bfs=False)  # depth first: as written
    for index, node in enumerate(marks):
        node.meta["quiver_parameter"] = index


def _column(node: Any) -> str:
    if isinstance(node, exp.Column) and isinstance(node.this, exp.Identifier):
        return node.name
    raise _refuse(f"{node.sql()} is not a column")


def _condition(node: Any, negated: bool = False) -> dict[str, Any]:
    """The filter of the rows for which the condition ``node`` is true (``negated``: false).

    SQL's logic has three values: a comparison with a NULL column is unknown, and ``NOT`` of
    unknown is unknown, so ``NOT x = 1``, ``x NOT IN (...)`` and ``x NOT LIKE ...`` do not
    hold where ``x`` is NULL. The filter's ``not`` keeps every row its operand does not
    match, NULLs too; so NOT is pushed down to the comparisons (``and`` and ``or`` swap), and
    a comparison's false is its column not null and the comparison not matching.
    """
    if node.args.get("negate"):  # NOT LIKE, NOT BETWEEN, ...
        plain = node.copy()
        plain.set("negate", None)
        return _condition(plain, not negated)
    if isinstance(node, exp.Paren):
        return _condition(node.this, negated)
    if isinstance(node, exp.Not):
        return _condition(node.this, not negated)
    if isinstance(node, exp.And | exp.Or):
        parts = [_condition(operand, negated) for operand in _operands(node)]
        return {"and" if isinstance(node, exp.And) is not negated else "or": parts}
    if isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        return {_column(node.this): {"isNull": not negated}}
    column, test = _comparison(node)
    if not negated:
        return {column: test}
    return {"and": [{column: {"isNull": False}}, {"not": {column: test}}]}


def _operands(node: Any) -> list[Any]:
    """The operands of a chain of one connective (``a AND b AND c``), in order: SQL parses it
    as ``(a AND b) AND c``, and the filter takes it as one list, not nested ones."""
    kind = type(node)
    found: list[Any] = []
    pending = [node]
    while pending:
        item = pending.pop()
        if type(item) is kind:
            pending += [item.right, item.left]
        else:
            found.append(item)
    return found


def _comparison(node: Any) -> tuple[str, dict[str, Any]]:
    """The column a comparison reads and its filter operators."""
    if isinstance(node, exp.Column):  # WHERE flag: a boolean column
        return _column(node), {"eq": True}
    ops = _COMPARE.get(type(node))
    if ops is not None:
        left, right = node.left, node.right
        if isinstance(left, exp.Column):
            return _column(left), {ops[0]: _literal(right)}
        return _column(right), {ops[1]: _literal(left)}
    if isinstance(node, exp.In):
        if node.args.get("query"):
            raise _refuse("IN (SELECT ...) is not supported")
        return _column(node.this), {"in": [_literal(v) for v in node.expressions]}
    if isinstance(node, exp.Like | exp.ILike):
        op = "like" if isinstance(node, exp.Like) else "ilike"
        return _column(node.this), {op: _literal(node.expression)}
    if isinstance(node, exp.Between):
        if node.args.get("symmetric"):
            raise _refuse("BETWEEN SYMMETRIC is not supported; write the smaller bound first")
        low, high = _literal(node.args["low"]), _literal(node.args["high"])
        return _column(node.this), {"gte": low, "lte": high}
    raise _refuse(f"the condition {node.sql()} is not supported")


# ----- catalog commands -----------------------------------------------------------------------


def catalogs() -> pa.Table:
    return pa.table(
        {"catalog_name": pa.array([CATALOG], pa.string())},
        schema=pa.schema([pa.field("catalog_name", pa.string(), False)]),
    )


def db_schemas(command: SqlCommand) -> pa.Table:
    schema = pa.schema(
        [pa.field("catalog_name", pa.string()), pa.field("db_schema_name", pa.string(), False)]
    )
    pattern = command.text(2)
    rows = [SCHEMA] if _matches(SCHEMA, pattern) and command.text(1) in (None, CATALOG) else []
    return pa.table({"catalog_name": [CATALOG] * len(rows), "db_schema_name": rows}, schema=schema)


def table_types() -> pa.Table:
    return pa.table(
        {"table_type": pa.array(["TABLE"], pa.string())},
        schema=pa.schema([pa.field("table_type", pa.string(), False)]),
    )


def _matches(name: str, pattern: str | None) -> bool:
    """SQL LIKE (``%``, ``_``) as Flight SQL's filter patterns use it: every other character,
    ``[``, ``*`` and ``?`` too, stands for itself."""
    if pattern is None:
        return True
    regex = "".join(_LIKE.get(c) or re.escape(c) for c in pattern)
    return re.fullmatch(regex, name, re.DOTALL) is not None


#: What LIKE's wildcards match, as regular expressions.
_LIKE = {"%": ".*", "_": "."}


def tables(catalog: Catalog, command: SqlCommand) -> pa.Table:
    include_schema = command.flag(5)
    types = command.texts(4)
    names: list[str] = []
    schemas: list[bytes] = []
    if (
        command.text(1) in (None, CATALOG)
        and _matches(SCHEMA, command.text(2))
        and (not types or "TABLE" in types)
    ):
        for name, entity in _listed(catalog, command.text(3)):
            names.append(name)
            schemas.append(table_schema(entity, name).serialize().to_pybytes())
    columns: dict[str, Any] = {
        "catalog_name": [CATALOG] * len(names),
        "db_schema_name": [SCHEMA] * len(names),
        "table_name": names,
        "table_type": ["TABLE"] * len(names),
    }
    if include_schema:
        columns["table_schema"] = schemas
    return pa.table(columns, schema=tables_schema(include_schema))


def _listed(catalog: Catalog, pattern: str | None) -> list[tuple[str, Entity]]:
    """The tables GetTables lists for a name pattern, each with the name it is listed
    under: its type name when the pattern matches that, else its database table name when
    the pattern matches that. A pattern matching no table that is a name a statement's
    ``FROM`` reads a table by (in another case, a list field) lists that table under it.
    So a name listed reads its table in a statement, and a name a statement reads finds its
    table (ADBC's ``adbc_get_table_schema`` keeps only the row named as it asked)."""
    found: list[tuple[str, Entity]] = []
    for e in catalog.entities.values():
        if _matches(e.name, pattern):
            found.append((e.name, e))
        elif _matches(e.source, pattern):
            found.append((e.source, e))
    if found or pattern is None:
        return found
    try:
        return [(pattern, find_entity(catalog, pattern))]
    except TicketError:
        return []


#: Column metadata of a table schema GetTables reports, under Flight SQL's keys.
_COLUMN_KEYS = "ARROW:FLIGHT:SQL:"


def table_schema(entity: Entity, name: str) -> pa.Schema:
    """The schema of ``entity``'s rows, as a query streams them, each field with Flight
    SQL's column metadata: catalog, schema and table name (``name``, as GetTables lists
    it), the database's type name, auto-increment, read-only (SQL is read-only here) and
    searchable (in WHERE: JSON and arrays only with IS NULL, LIKE on text only)."""
    fields = []
    for f, field in zip(entity.fields, arrow_schema(entity.fields), strict=True):
        searchable = (  # Flight SQL's Searchable: 0 none, 2 all but LIKE, 3 full
            "0"
            if f.is_list or f.scalar == Scalar.JSON
            else "3"
            if f.scalar in TEXT_SCALARS and f.enum_values is None
            else "2"
        )
        meta = {
            "CATALOG_NAME": CATALOG,
            "SCHEMA_NAME": SCHEMA,
            "TABLE_NAME": name,
            "TYPE_NAME": f.db_type or f.scalar.value,
            "IS_AUTO_INCREMENT": "1" if f.is_identity else "0",
            "IS_READ_ONLY": "1",
            "IS_SEARCHABLE": searchable,
        }
        fields.append(field.with_metadata({_COLUMN_KEYS + k: v for k, v in meta.items()}))
    return pa.schema(fields)


def tables_schema(include_schema: bool) -> pa.Schema:
    fields = [
        pa.field("catalog_name", pa.string()),
        pa.field("db_schema_name", pa.string()),
        pa.field("table_name", pa.string(), False),
        pa.field("table_type", pa.string(), False),
    ]
    if include_schema:
        fields.append(pa.field("table_schema", pa.binary(), False))
    return pa.schema(fields)


_INFO_VALUE = pa.dense_union(
    [
        pa.field("string_value", pa.string()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.string())),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ]
)
SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), False), pa.field("value", _INFO_VALUE, False)]
)


def sql_info(command: SqlCommand, version: str) -> pa.Table:
    """What the server is: name, version, Arrow version, read-only (FLIGHT_SQL_SERVER_*)."""
    known: dict[int, str | bool] = {
        0: "Quiver",
        1: version,
        2: pa.__version__,
        3: True,
    }
    wanted = command.numbers(1) or sorted(known)
    ids = [i for i in wanted if i in known]
    strings = [v for i in ids if isinstance(v := known[i], str)]
    bools = [v for i in ids if isinstance(v := known[i], bool)]
    type_ids: list[int] = []
    offsets: list[int] = []
    s = b = 0
    for i in ids:
        if isinstance(known[i], bool):
            type_ids.append(1)
            offsets.append(b)
            b += 1
        else:
            type_ids.append(0)
            offsets.append(s)
            s += 1
    children = [
        pa.array(strings, pa.string()),
        pa.array(bools, pa.bool_()),
        pa.array([], pa.int64()),
        pa.array([], pa.int32()),
        pa.array([], pa.list_(pa.string())),
        pa.array([], pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ]
    value = pa.UnionArray.from_dense(
        pa.array(type_ids, pa.int8()),
        pa.array(offsets, pa.int32()),
        children,
        [f.name for f in _INFO_VALUE],
    )
    return pa.Table.from_arrays([pa.array(ids, pa.uint32()), value], schema=SQL_INFO_SCHEMA)
