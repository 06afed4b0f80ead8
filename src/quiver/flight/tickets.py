"""Flight tickets: typed JSON, or the compact string forms, parsed into one structure.

- ``{"export": {"table": "Track", "where": {...}, "columns": ["trackId", "name"]}}`` or
  ``export:<table>:<filter>:<columns>``: rows of one table, straight from the database. The
  JSON ``where`` is the GraphQL ``<Entity>Where`` input; the compact filter is conditions
  ``field<op>value`` joined by ``&`` (ops ``=``, ``!=``, ``>``, ``>=``, ``<``, ``<=``), each
  made into the same input (``{"field": {"gt": "value"}}``). ``"partitions": N`` (compact:
  a last segment ``:partitions=N``, or ``:partitions=N@field``) asks GetFlightInfo for up to
  N endpoints, each reading a disjoint range of an integer key (see
  :mod:`quiver.flight.partitions`); DoGet of such a ticket still streams every row.
- ``{"graphql": {"query": "...", "variables": {...}, "operationName": "..."}}``: a GraphQL
  query answered as Arrow, one stream per root field (the first unless ``field`` names one).
  ``graphql:<sha256>`` (or ``"sha256Hash"`` without ``query``) runs a query this server has
  run before.

- ``{"observer_events": {"entity": "Order", "since": "2026-01-01T00:00:00Z", "follow": true}}``
  or ``observer_events:<Entity>:<ISO timestamp>[:follow]``: the change-log rows of one entity
  written since a time (see :mod:`quiver.flight.events`); with ``follow`` the stream goes on
  with new rows as they commit until the client cancels. ``"images": "json"`` sends the before
  and after images as JSON text instead of structs typed from the entity.

Nothing in a ticket is ever SQL: names are checked against the catalog, values become
parameters (see :mod:`quiver.flight.export`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from quiver.runtime.errors import QuiverError

__all__ = [
    "EventsTicket",
    "ExportTicket",
    "GraphQLTicket",
    "Ticket",
    "TicketError",
    "parse_ticket",
]

MAX_TICKET_BYTES = 64 * 1024
#: Most levels of objects and arrays within each other in a JSON ticket. Room for a GraphQL
#: JSON variable at its own limit (200) in the ticket around it; a filter nests at most 32.
MAX_TICKET_DEPTH = 240
MAX_COLUMNS = 1_000
#: Most endpoints a ticket may ask for (the server's ``flight.max_partitions`` may lower it).
MAX_PARTITIONS = 1_024
_OPS = {"=": "eq", "!=": "neq", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_PARTITIONS = re.compile(r":\s*partitions\s*=([^:]*)$")
_CONDITION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|!=|=|>|<)(.*)", re.DOTALL)
_FORMS = (
    'send JSON such as {"export": {"table": "Track", "columns": ["name"]}} or '
    '{"graphql": {"query": "{ tracks { name } }"}}, or export:<table>:<filter>:<columns>, '
    "or observer_events:<Entity>:<ISO timestamp>"
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
    #: Most rows to stream (None: all).
    limit: int | None = None
    #: Endpoints GetFlightInfo should split the rows into (None: the server's default).
    partitions: int | None = None
    #: The integer field the partitions split (empty: the single-column primary key).
    partition_by: str = ""

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"table": self.table}
        if self.where:
            body["where"] = self.where
        if self.columns:
            body["columns"] = list(self.columns)
        if self.text_values:
            body["textValues"] = True
        if self.limit is not None:
            body["limit"] = self.limit
        if self.partitions is not None:
            body["partitions"] = self.partitions
        if self.partition_by:
            body["partitionBy"] = self.partition_by
        return orjson.dumps({"export": body}, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True)
class GraphQLTicket:
    """A GraphQL query whose root list field is answered as Arrow."""

    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    operation_name: str | None = None
    #: The root field (response key) to stream; the first one when empty.
    field: str = ""
    #: SHA-256 (hex) of a query the server has run before: sent instead of the text.
    sha256_hash: str = ""

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"query": self.query} if self.query else {}
        if self.sha256_hash:
            body["sha256Hash"] = self.sha256_hash
        if self.variables:
            body["variables"] = self.variables
        if self.operation_name:
            body["operationName"] = self.operation_name
        if self.field:
            body["field"] = self.field
        return orjson.dumps({"graphql": body}, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True)
class EventsTicket:
    """The change-log rows of one entity written at or after ``since`` (aware, UTC)."""

    entity: str
    since: dt.datetime
    #: Keep streaming new rows as they commit, until the client cancels.
    follow: bool = False
    #: ``struct``: before and after typed from the entity; ``json``: JSON text.
    images: str = "struct"

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"entity": self.entity, "since": self.since.isoformat()}
        if self.follow:
            body["follow"] = True
        if self.images != "struct":
            body["images"] = self.images
        return orjson.dumps({"observer_events": body}, option=orjson.OPT_SORT_KEYS)


Ticket = ExportTicket | GraphQLTicket | EventsTicket


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
        return _from_json(read_json(stripped))
    kind, sep, rest = stripped.partition(":")
    if kind == "export" and sep:
        return _compact_export(rest)
    if kind == "graphql" and sep:
        return GraphQLTicket("", sha256_hash=_hash(rest.strip()))
    if kind == "observer_events" and sep:
        return _compact_events(rest)
    raise _bad(f"unknown ticket {_shorten(stripped)!r}")


def read_json(text: str) -> Any:
    """The JSON value of a ticket (or of a handle holding one), refused with a
    :class:`TicketError` when it is not JSON, nests objects and arrays more than
    :data:`MAX_TICKET_DEPTH` levels deep, or has an object naming a key twice."""
    try:
        body = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"the ticket is not valid JSON: {exc}") from None
    if _deeper_than(body, MAX_TICKET_DEPTH):
        raise _bad(
            f"the ticket nests objects and arrays more than {MAX_TICKET_DEPTH} levels deep",
            fix="send fewer levels: a filter nests at most 32 (and, or, not and relations)"
            " and a JSON value at most 200",
        )
    # Read again to find an object naming a key twice, of which orjson keeps the last
    # value: which one was meant cannot be told, and the other would be ignored.
    json.loads(text, object_pairs_hook=_unique_keys)
    return body


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of the ticket, refused when it names a key twice."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _bad(
                f"an object of the ticket names {_shorten(key)!r} twice",
                fix="name each key once (which of the values was meant cannot be told)",
            )
        found[key] = value
    return found


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays in ``value`` nest more than ``limit`` levels (walked without
    recursion, so any depth the JSON parser takes is measured)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False


def _shorten(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _from_json(body: Any) -> Ticket:
    if not isinstance(body, dict) or len(body) != 1:
        raise _bad(
            "a JSON ticket is an object with one key, 'export', 'graphql' or 'observer_events'"
        )
    ((kind, value),) = body.items()
    if not isinstance(value, dict):
        raise _bad(f"ticket.{kind} must be an object")
    if kind == "export":
        return _json_export(value)
    if kind == "graphql":
        return _json_graphql(value)
    if kind == "observer_events":
        return _json_events(value)
    raise _bad(
        f"unknown ticket kind {kind!r}; the kinds are 'export', 'graphql' and 'observer_events'"
    )


def _check_keys(value: dict[str, Any], kind: str, allowed: set[str]) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _bad(
            f"unknown key {unknown[0]!r} in ticket.{kind}",
            f"ticket.{kind}.{unknown[0]}",
            "the keys are " + ", ".join(sorted(allowed)),
        )


def _json_export(value: dict[str, Any]) -> ExportTicket:
    _check_keys(
        value,
        "export",
        {"table", "where", "columns", "textValues", "limit", "partitions", "partitionBy"},
    )
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
    limit = value.get("limit")
    if limit is not None and (type(limit) is not int or limit < 0):
        raise _bad("ticket.export.limit must be a whole number of rows, 0 or more")
    partitions = value.get("partitions")
    if partitions is not None:
        partitions = _partitions(partitions, "ticket.export.partitions")
    partition_by = value.get("partitionBy") or ""
    if not isinstance(partition_by, str):
        raise _bad(
            "ticket.export.partitionBy must name an integer field",
            "ticket.export.partitionBy",
            "name an indexed integer field such as the primary key, or leave it out",
        )
    return ExportTicket(
        table, where, _columns(columns), text_values, limit, partitions, partition_by.strip()
    )


_PARTITIONS_FIX = (
    f"ask for a whole number of endpoints from 1 to {MAX_PARTITIONS}: "
    '"partitions": 4, or export:<table>:<filter>:<columns>:partitions=4'
)


def _partitions(value: Any, where: str) -> int:
    if type(value) is not int or not 1 <= value <= MAX_PARTITIONS:
        raise _bad(f"{_shorten(repr(value))} is not a number of partitions", where, _PARTITIONS_FIX)
    return value


def _hash(value: Any) -> str:
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise _bad(
            "a persisted query hash is the hex SHA-256 of the query's text (64 characters)",
            "ticket.graphql.sha256Hash",
            "send the query once with its text; graphql:<hash> then runs it again",
        )
    return value.lower()


def _json_graphql(value: dict[str, Any]) -> GraphQLTicket:
    _check_keys(value, "graphql", {"query", "variables", "operationName", "field", "sha256Hash"})
    query = value.get("query", "")
    digest = _hash(value["sha256Hash"]) if "sha256Hash" in value else ""
    if not isinstance(query, str) or not (query.strip() or digest):
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
    return GraphQLTicket(query, variables, name, root, digest)


def _columns(names: list[str]) -> tuple[str, ...]:
    if len(names) > MAX_COLUMNS:
        raise _bad(
            f"the ticket asks for {len(names)} columns; the most is {MAX_COLUMNS}",
            "ticket columns",
            "ask for fewer columns, or none for all of them",
        )
    return tuple(names)


def _compact_export(rest: str) -> ExportTicket:
    """``<table>:<filter>:<columns>[:partitions=N[@field]]``: the filter may hold ``:``
    (times); columns may not. A last segment ``partitions=...`` was never a column list (a
    column name holds no ``=``), so it adds to the grammar without changing a ticket's
    meaning."""
    partitions: int | None = None
    partition_by = ""
    m = _PARTITIONS.search(rest)
    if m is not None:
        count, at, by = m.group(1).partition("@")
        count, partition_by = count.strip(), by.strip()
        if not (count.isascii() and count.isdigit() and len(count) <= 6):
            raise _bad(
                f"{_shorten(count)!r} is not a number of partitions", "ticket", _PARTITIONS_FIX
            )
        partitions = _partitions(int(count), "ticket partitions")
        if at and not partition_by:
            raise _bad(
                "partitions=N@ names no field",
                "ticket partitions",
                "write partitions=4@<integer field>, or partitions=4 to split the primary key",
            )
        rest = rest[: m.start()]
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
    return ExportTicket(
        table.strip(),
        where,
        _columns(columns),
        text_values=True,
        partitions=partitions,
        partition_by=partition_by,
    )


_EVENTS_FORM = (
    'write observer_events:<Entity>:<ISO timestamp>[:follow], or {"observer_events": '
    '{"entity": "Order", "since": "2026-01-01T00:00:00Z", "follow": true}}'
)


def _since(value: Any, where: str) -> dt.datetime:
    """An ISO 8601 time (date, or date and time; no offset means UTC) as an aware UTC time."""
    if not isinstance(value, str) or not value.strip():
        raise _bad("the events ticket names no time to start from", where, _EVENTS_FORM)
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise _bad(
            f"{_shorten(value)!r} is not an ISO 8601 time",
            where,
            "write a time such as 2026-01-01T00:00:00Z or 2026-01-01",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def _entity_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value.strip()):
        raise _bad("the events ticket must name an entity (such as Order)", where, _EVENTS_FORM)
    return value.strip()


def _compact_events(rest: str) -> EventsTicket:
    """``<Entity>:<ISO timestamp>[:follow]``: the time holds ``:`` itself."""
    entity, _, when = rest.partition(":")
    follow = False
    if when.rstrip().endswith(":follow"):
        when, follow = when.rstrip()[: -len(":follow")], True
    return EventsTicket(_entity_name(entity, "ticket entity"), _since(when, "ticket time"), follow)


def _json_events(value: dict[str, Any]) -> EventsTicket:
    _check_keys(value, "observer_events", {"entity", "since", "follow", "images"})
    entity = _entity_name(value.get("entity"), "ticket.observer_events.entity")
    since = _since(value.get("since"), "ticket.observer_events.since")
    follow = value.get("follow", False)
    if not isinstance(follow, bool):
        raise _bad("ticket.observer_events.follow must be true or false")
    images = value.get("images", "struct")
    if images not in ("struct", "json"):
        raise _bad(
            "ticket.observer_events.images must be 'struct' or 'json'",
            "ticket.observer_events.images",
            "struct types the before and after images from the entity; json sends them as text",
        )
    return EventsTicket(entity, since, follow, images)
