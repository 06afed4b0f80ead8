"""Flight tickets: typed JSON, or the compact string forms, parsed into one structure.

- ``{"export": {"table": "Track", "where": {...}, "columns": ["trackId", "name"]}}`` or
  ``export:<table>:<filter>:<columns>``: rows of one table, straight from the database. The
  JSON ``where`` is the GraphQL ``<Entity>Where`` input; the compact filter is conditions
  ``field<op>value`` joined by ``&`` (ops ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``), each
  made into the same input (``{"field": {"gt": "value"}}``).
- ``{"graphql": {"query": "...", "variables": {...}, "operationName": "..."}}``: a GraphQL
  query answered as Arrow, one stream per root field (the first unless ``field`` names one).

Nothing in a ticket is ever SQL: names are checked against the catalog, values become
parameters (see :mod:`quiver.flight.export`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from quiver.runtime.errors import QuiverError

__all__ = [
    "ExportTicket",
    "GraphQLTicket",
    "Ticket",
    "TicketError",
    "parse_ticket",
]

MAX_TICKET_BYTES = 64 * 1024
MAX_COLUMNS = 1_000
_OPS = {"=": "eq", "!=": "neq", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_CONDITION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|!=|=|>|<)(.*)", re.DOTALL)
_FORMS = (
    'send JSON such as {"export": {"table": "Track", "columns": ["name"]}} or '
    '{"graphql": {"query": "{ tracks { name } }"}}, or export:<table>:<filter>:<columns>'
)


class TicketError(QuiverError):
    """A ticket that cannot be served: malformed, or naming what the catalog lacks."""

    code: str = "INVALID_TICKET"


def _bad(message: str, where: str = "ticket", fix: str = _FORMS) -> TicketError:
    return TicketError.one(message, where, fix)  # type: ignore[return-value]


@dataclass(frozen=True)
class ExportTicket:
    """Rows of one table: ``table`` names an entity, its table or its list field."""

    table: str
    where: dict[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] = ()
    #: The where values are text from the compact form, read by each field's scalar.
    text_values: bool = False

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"table": self.table}
        if self.where:
            body["where"] = self.where
        if self.columns:
            body["columns"] = list(self.columns)
        if self.text_values:
            body["textValues"] = True
        return orjson.dumps({"export": body}, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True)
class GraphQLTicket:
    """A GraphQL query whose root list field is answered as Arrow."""

    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    operation_name: str | None = None
    #: The root field (response key) to stream; the first one when empty.
    field: str = ""

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"query": self.query}
        if self.variables:
            body["variables"] = self.variables
        if self.operation_name:
            body["operationName"] = self.operation_name
        if self.field:
            body["field"] = self.field
        return orjson.dumps({"graphql": body}, option=orjson.OPT_SORT_KEYS)


Ticket = ExportTicket | GraphQLTicket


def parse_ticket(raw: bytes) -> Ticket:
    """The ticket ``raw`` encodes, or a :class:`TicketError` saying what is wrong with it."""
    if len(raw) > MAX_TICKET_BYTES:
        raise _bad(f"the ticket is {len(raw)} bytes; the most is {MAX_TICKET_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the ticket is not UTF-8 text") from None
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            body = orjson.loads(stripped)
        except orjson.JSONDecodeError as exc:
            raise _bad(f"the ticket is not valid JSON: {exc}") from None
        return _from_json(body)
    kind, sep, rest = stripped.partition(":")
    if kind == "export" and sep:
        return _compact_export(rest)
    if kind == "graphql" and sep:
        raise _bad(
            "persisted query hashes are not served over Flight yet",
            "ticket",
            'send the query text: {"graphql": {"query": "..."}}',
        )
    raise _bad(f"unknown ticket {_shorten(stripped)!r}")


def _shorten(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _from_json(body: Any) -> Ticket:
    if not isinstance(body, dict) or len(body) != 1:
        raise _bad("a JSON ticket is an object with one key, 'export' or 'graphql'")
    ((kind, value),) = body.items()
    if not isinstance(value, dict):
        raise _bad(f"ticket.{kind} must be an object")
    if kind == "export":
        return _json_export(value)
    if kind == "graphql":
        return _json_graphql(value)
    raise _bad(f"unknown ticket kind {kind!r}; the kinds are 'export' and 'graphql'")


def _check_keys(value: dict[str, Any], kind: str, allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _bad(
            f"unknown key {unknown[0]!r} in ticket.{kind}",
            f"ticket.{kind}.{unknown[0]}",
            "the keys are " + ", ".join(sorted(allowed)),
        )


def _json_export(value: dict[str, Any]) -> ExportTicket:
    _check_keys(value, "export", {"table", "where", "columns", "textValues"})
    table = value.get("table")
    if not isinstance(table, str) or not table:
        raise _bad("ticket.export.table must be a table or type name", "ticket.export.table")
    where = value.get("where") or {}
    if not isinstance(where, dict):
        raise _bad("ticket.export.where must be an object (a GraphQL where input)")
    columns = value.get("columns") or []
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _bad("ticket.export.columns must be a list of field names")
    text_values = value.get("textValues", False)
    if not isinstance(text_values, bool):
        raise _bad("ticket.export.textValues must be true or false")
    return ExportTicket(table, where, _columns(columns), text_values)


def _json_graphql(value: dict[str, Any]) -> GraphQLTicket:
    _check_keys(value, "graphql", {"query", "variables", "operationName", "field"})
    query = value.get("query")
    if not isinstance(query, str) or not query.strip():
        raise _bad("ticket.graphql.query must be the text of a GraphQL query")
    variables = value.get("variables") or {}
    if not isinstance(variables, dict):
        raise _bad("ticket.graphql.variables must be an object")
    name = value.get("operationName")
    if name is not None and not isinstance(name, str):
        raise _bad("ticket.graphql.operationName must be a string")
    root = value.get("field") or ""
    if not isinstance(root, str):
        raise _bad("ticket.graphql.field must be the response key of a root field")
    return GraphQLTicket(query, variables, name, root)


def _columns(names: list[str]) -> tuple[str, ...]:
    if len(names) > MAX_COLUMNS:
        raise _bad(
            f"the ticket asks for {len(names)} columns; the most is {MAX_COLUMNS}",
            "ticket columns",
            "ask for fewer columns, or none for all of them",
        )
    return tuple(names)


def _compact_export(rest: str) -> ExportTicket:
    """``<table>:<filter>:<columns>``: the filter may hold ``:`` (times); columns may not."""
    table, sep, tail = rest.partition(":")
    if not table:
        raise _bad("export: names no table", "ticket", "write export:<table>:<filter>:<columns>")
    # export:<table>:<columns> (no filter) or export:<table>:<filter>:<columns>
    condition_text, _, columns_text = tail.rpartition(":") if sep else ("", "", "")
    columns = [c.strip() for c in columns_text.split(",") if c.strip()]
    where: dict[str, Any] = {}
    for part in condition_text.split("&"):
        if not part.strip():
            continue
        m = _CONDITION.fullmatch(part)
        if m is None:
            raise _bad(
                f"cannot read the condition {_shorten(part)!r}",
                "ticket filter",
                "write field<op>value with op one of = != > >= < <=, joined by &",
            )
        name, op, value = m.group(1), _OPS[m.group(2)], m.group(3)
        ops = where.setdefault(name, {})
        if op in ops:
            raise _bad(f"{name} is compared with {m.group(2)} twice", "ticket filter", "keep one")
        ops[op] = value
    return ExportTicket(table.strip(), where, _columns(columns), text_values=True)
