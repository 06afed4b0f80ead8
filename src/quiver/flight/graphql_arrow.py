"""GraphQL tickets: a query run by the GraphQL engine (same planner, same limits), its root
field answered as Arrow.

The Arrow schema comes from the selection set alone, so GetSchema never runs the query: each
selected scalar maps as :mod:`quiver.flight.arrow_types` says, an object to a struct of its
selection, a list to a list. The engine runs on an event loop of its own thread.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    InlineFragmentNode,
    SelectionSetNode,
    get_argument_values,
    get_variable_values,
)
from quiver.auth import ANONYMOUS, Principal
from quiver.config.settings import QuiverSettings
from quiver.flight.arrow_types import arrow_type, conform_array, json_carrier
from quiver.flight.export import ExportPlan, plan_rows
from quiver.flight.pool import flight_dialect
from quiver.flight.tickets import GraphQLTicket, TicketError
from quiver.graphql.apq import ApqStore, sha256_hex
from quiver.graphql.engine import DATABASE_FAILED, GraphQLEngine, Prepared
from quiver.runtime.errors import ErrorDetail, PermanentError
from quiver.schema.catalog import Catalog
from quiver.schema.ir import Entity, Field, Scalar, Schema
from quiver.sql.database import StatementTimeoutError

__all__ = ["ColumnarQuery", "EngineFailedError", "GraphQLArrow", "selection_schema"]

_SCALARS: dict[str, pa.DataType] = {
    "Int": pa.int32(),
    "BigInt": pa.int64(),
    "Float": pa.float64(),
    "Boolean": pa.bool_(),
    "String": pa.string(),
    "ID": pa.string(),
    "UUID": pa.string(),
    "JSON": pa.string(),
    "Decimal": pa.decimal128(38, 10),
    "DateTime": pa.timestamp("us", tz="UTC"),
    "Date": pa.date32(),
    "Time": pa.time64("us"),
    "Base64": pa.string(),
}


#: Scalars whose columns read as Arrow give the values the database's JSON gives (JSON text,
#: floats, Base64 and arrays do not always: they keep the JSON path).
_COLUMNAR_SCALARS = frozenset(
    {Scalar.INT, Scalar.BIGINT, Scalar.BOOLEAN, Scalar.STRING, Scalar.DECIMAL, Scalar.DATETIME}
)
#: Column types whose text is the same read directly or through the database's JSON.
_TEXT_COLUMN = re.compile(
    r"\s*(text|varchar|character varying|char|character|bpchar|nvarchar|nchar|tinytext|"
    r"mediumtext|longtext|clob)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ColumnarQuery:
    """A GraphQL ticket read as an export: the rows' statement and the selection's schema."""

    plan: ExportPlan
    schema: pa.Schema


def _on_columns(entity: Entity, where: Any) -> bool:
    """Whether ``where`` compares the entity's own columns only (no relation filters, which
    stay with the engine's planner)."""
    if not isinstance(where, dict):
        return True
    for key, value in where.items():
        if key in ("and", "or") and isinstance(value, list):
            if not all(_on_columns(entity, v) for v in value):
                return False
        elif key == "not":
            if not _on_columns(entity, value):
                return False
        elif entity.relation(key) is not None:
            return False
    return True


def _columnar_field(f: Field) -> bool:
    if f.scalar not in _COLUMNAR_SCALARS or f.is_list or f.enum_values is not None:
        return False
    if f.scalar == Scalar.STRING:
        return f.db_type is None or _TEXT_COLUMN.match(f.db_type) is not None
    return True


#: Field metadata marking a JSON scalar: its values travel as their JSON text.
_JSON_MARK = {b"quiver.scalar": b"JSON"}


def _is_json(t: GraphQLOutputType) -> bool:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return isinstance(t, GraphQLScalarType) and t.name == "JSON"


def _json_text(value: Any, t: pa.DataType, json: bool = False) -> Any:
    """``value`` (decoded from the engine's JSON) with every JSON scalar made its text again."""
    if value is None:
        return None
    if pa.types.is_list(t) and isinstance(value, list):
        return [_json_text(v, t.value_type, json) for v in value]
    if json:
        return orjson.dumps(value).decode()
    if pa.types.is_struct(t) and isinstance(value, dict):
        return {f.name: _json_text(value.get(f.name), f.type, f.metadata == _JSON_MARK) for f in t}
    return value


def _has_json(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        return any(f.metadata == _JSON_MARK or _has_json(f.type) for f in t)
    if pa.types.is_list(t):
        return _has_json(t.value_type)
    return False


def _stored_refusal(error: dict[str, Any]) -> bool:
    """Whether a GraphQL error is the engine's refusal of a stored value its field's scalar
    cannot carry (a DATABASE_ERROR naming the value, not the engine's generic one)."""
    code = (error.get("extensions") or {}).get("code")
    return code == "DATABASE_ERROR" and error.get("message") != DATABASE_FAILED


class EngineFailedError(Exception):
    """The GraphQL engine failed to answer a ticket for a reason of the server's (its log says
    which), not of the ticket's: the client reads INTERNAL, never a fix for its query."""


def _refuse_unless_the_tickets_fault(errors: list[dict[str, Any]]) -> None:
    """Raise the error of the engine's ``errors`` that is no fault of the ticket: a query that
    ran past the statement time limit, a database that could not run it, an unexpected
    failure of the engine."""
    for error in errors:
        code = (error.get("extensions") or {}).get("code")
        if code == "STATEMENT_TIMEOUT":
            timeout = StatementTimeoutError.one(
                "the query ran past the database's statement time limit",
                "ticket.graphql",
                "ask for fewer rows (a where argument or a limit), or raise"
                " database.statement_timeout_ms",
            )
            timeout.code = "STATEMENT_TIMEOUT"
            raise timeout
        if code == "INTERNAL_SERVER_ERROR" or (
            code == "DATABASE_ERROR" and error.get("message") == DATABASE_FAILED
        ):
            raise EngineFailedError(f"the GraphQL engine answered {code}: {error.get('message')}")


def _bad(message: str, fix: str) -> TicketError:
    return TicketError.one(message, "ticket.graphql", fix)  # type: ignore[return-value]


def _fields(
    selection: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    conditional: set[int] | None = None,
) -> list[FieldNode]:
    """The fields of ``selection``, fragments spread; the ids of those that ``@skip`` or
    ``@include`` may leave out (on them or on a fragment holding them) go into
    ``conditional``."""
    out: list[FieldNode] = []
    for s in selection.selections if selection else ():
        if isinstance(s, FieldNode):
            found = [s]
        elif isinstance(s, InlineFragmentNode):
            found = _fields(s.selection_set, fragments, conditional)
        elif isinstance(s, FragmentSpreadNode):
            frag = fragments.get(s.name.value)
            found = _fields(frag.selection_set, fragments, conditional) if frag else []
        else:
            found = []
        if conditional is not None and _is_conditional(s):
            conditional.update(id(f) for f in found)
        out.extend(found)
    return out


def _is_conditional(node: Any) -> bool:
    return any(d.name.value in ("skip", "include") for d in node.directives or ())


def _arrow_of(
    t: GraphQLOutputType,
    node: FieldNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    catalog: Catalog | None = None,
    column: Field | None = None,
) -> tuple[pa.DataType, bool]:
    """The Arrow type of ``node``; ``column`` is the catalog field it reads (a Decimal keeps
    its column's precision and scale)."""
    nullable = True
    if isinstance(t, GraphQLNonNull):
        t, nullable = t.of_type, False
    if isinstance(t, GraphQLList):
        inner, _ = _arrow_of(t.of_type, node, fragments, catalog, column)
        return pa.list_(inner), nullable
    if isinstance(t, GraphQLObjectType):
        members: list[pa.Field] = []
        seen: set[str] = set()
        # A field @skip or @include may leave out is null in the rows that lack it.
        conditional: set[int] = set()
        for child in _fields(node.selection_set, fragments, conditional):
            key = child.alias.value if child.alias else child.name.value
            if key in seen:
                continue
            seen.add(key)
            if child.name.value == "__typename":
                members.append(pa.field(key, pa.string(), nullable=id(child) in conditional))
                continue
            child_def = t.fields[child.name.value].type
            entity = catalog.entities.get(t.name) if catalog is not None else None
            source = entity.field(child.name.value) if entity is not None else None
            child_type, child_nullable = _arrow_of(child_def, child, fragments, catalog, source)
            child_nullable = child_nullable or id(child) in conditional
            mark = _JSON_MARK if _is_json(child_def) else None
            members.append(pa.field(key, child_type, nullable=child_nullable, metadata=mark))
        return pa.struct(members), nullable
    if isinstance(t, GraphQLEnumType):
        return pa.string(), nullable
    assert isinstance(t, GraphQLScalarType)
    if t.name == "Decimal" and column is not None and column.scalar == Scalar.DECIMAL:
        declared = arrow_type(column)
        return (declared.value_type if pa.types.is_list(declared) else declared), nullable
    return _SCALARS.get(t.name, pa.string()), nullable


def selection_schema(engine: GraphQLEngine, prepared: Prepared, key: str) -> pa.Schema:
    """The Arrow schema of root field ``key``'s rows: one column per selected field."""
    operation = prepared.operation
    assert operation is not None
    roots = {
        (n.alias.value if n.alias else n.name.value): n
        for n in _fields(operation.selection_set, prepared.fragments)
    }
    node = roots[key]
    query_type = engine.graphql_schema.query_type
    assert query_type is not None
    t, _ = _arrow_of(
        query_type.fields[node.name.value].type, node, prepared.fragments, engine.catalog
    )
    while pa.types.is_list(t):
        t = t.value_type
    if not pa.types.is_struct(t):
        raise _bad(
            f"the root field {key!r} is not a list or object of rows",
            "ask for a list field such as { tracks { name } }",
        )
    return pa.schema([t.field(i) for i in range(t.num_fields)])


class GraphQLArrow:
    """A GraphQL engine on an event loop thread, answering tickets with Arrow readers."""

    def __init__(self, engine: GraphQLEngine, loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self._loop = loop
        #: Every query run here, by its SHA-256: ``graphql:<hash>`` runs one again.
        self.persisted = ApqStore()

    @classmethod
    def start(cls, schema: Schema, settings: QuiverSettings) -> GraphQLArrow:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="quiver-flight-graphql")
        thread.daemon = True
        thread.start()
        opened: Future[GraphQLEngine] = asyncio.run_coroutine_threadsafe(
            GraphQLEngine.open(schema, settings), loop
        )
        try:
            engine = opened.result()
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            raise
        return cls(engine, loop)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.engine.close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def _query_text(self, ticket: GraphQLTicket) -> str:
        if ticket.query and ticket.sha256_hash and sha256_hex(ticket.query) != ticket.sha256_hash:
            raise _bad(
                "sha256Hash is not the SHA-256 of the query",
                "send the hex SHA-256 of the query's UTF-8 text",
            )
        if ticket.query:
            return ticket.query
        known = self.persisted.get(ticket.sha256_hash)
        if known is None:
            raise _bad(
                f"no query with the hash {ticket.sha256_hash} has run on this server",
                "send the query text once; graphql:<hash> runs it again after that",
            )
        return known

    def _prepared(self, engine: GraphQLEngine, ticket: GraphQLTicket) -> tuple[Prepared, str]:
        query = self._query_text(ticket)
        prepared = engine.prepare(query, ticket.operation_name)
        if prepared.errors:
            raise _bad(
                "; ".join(e["message"] for e in prepared.errors[:3]),
                "fix the query; GraphiQL on the HTTP server shows the schema",
            )
        assert prepared.operation is not None
        kind = prepared.operation.operation.value
        if kind != "query":
            raise _bad(
                f"a Flight ticket runs a query, not a {kind}",
                f"send the {kind} to the HTTP endpoint /graphql",
            )
        roots = _fields(prepared.operation.selection_set, prepared.fragments)
        introspection = sorted({n.name.value for n in roots if n.name.value.startswith("__")})
        if introspection:
            raise _bad(
                f"the query asks for {', '.join(introspection)} at its root: introspection "
                "has no columnar form, so a Flight ticket cannot stream it",
                "send introspection queries to the HTTP endpoint /graphql, and ask a Flight "
                "ticket for list fields of rows such as { tracks { name } }",
            )
        keys = [n.alias.value if n.alias else n.name.value for n in roots]
        key = ticket.field or keys[0]
        if key not in keys:
            raise _bad(f"the query has no root field {key!r}", f"name one of {keys}")
        self.persisted.put(sha256_hex(query), query)
        return prepared, key

    def schema(self, ticket: GraphQLTicket, principal: Principal = ANONYMOUS) -> pa.Schema:
        """The Arrow schema of the ticket's answer, for ``principal`` (whose role decides
        which fields exist)."""
        engine = self.engine.for_principal(principal)
        prepared, key = self._prepared(engine, ticket)
        return selection_schema(engine, prepared, key)

    def columnar(
        self, ticket: GraphQLTicket, principal: Principal = ANONYMOUS
    ) -> ColumnarQuery | None:
        """``ticket``'s query as a columnar read of one table, when it is one: a root list
        field with at most a ``where`` argument, selecting plain columns of types that read
        the same as Arrow as through JSON. Rows come in primary key order, as the list's.
        Anything else (relations, aliases, directives, limits, orderBy, fragments) is None:
        the engine answers it, and so does every query of a principal whose role has
        permissions (its row filters and fields are the engine's to apply)."""
        engine = self.engine
        if engine.for_principal(principal) is not engine:
            return None
        prepared, key = self._prepared(engine, ticket)
        operation = prepared.operation
        assert operation is not None
        if operation.directives or len(operation.selection_set.selections) != 1:
            return None
        node = operation.selection_set.selections[0]
        if not isinstance(node, FieldNode) or node.directives or node.selection_set is None:
            return None
        if (node.alias.value if node.alias else node.name.value) != key:
            return None
        root = engine.catalog.root_fields.get(node.name.value)
        query_type = engine.graphql_schema.query_type
        if root is None or root.kind != "list" or query_type is None:
            return None
        entity = root.entity
        if not entity.primary_key:
            return None
        variables = get_variable_values(
            engine.graphql_schema, operation.variable_definitions or (), dict(ticket.variables)
        )
        if isinstance(variables, list):  # the engine reports them
            return None
        try:
            args = get_argument_values(query_type.fields[node.name.value], node, variables)
        except GraphQLError:
            return None
        if set(args) - {"where"} or not _on_columns(entity, args.get("where")):
            return None
        fields: list[Field] = []
        for child in node.selection_set.selections:
            if not isinstance(child, FieldNode) or child.alias or child.directives:
                return None
            f = entity.field(child.name.value)
            if f is None or child.selection_set is not None or not _columnar_field(f):
                return None
            if f not in fields:
                fields.append(f)
        if len(fields) != len(node.selection_set.selections):
            return None
        plan = plan_rows(
            engine.catalog,
            engine.graphql_schema,
            flight_dialect(engine.dialect),
            entity,
            tuple(fields),
            dict(args.get("where") or {}),
            by_key=True,
        )
        return ColumnarQuery(plan, selection_schema(engine, prepared, key))

    def reader(
        self, ticket: GraphQLTicket, principal: Principal = ANONYMOUS
    ) -> pa.RecordBatchReader:
        """The ticket's answer, run with ``principal``'s permissions."""
        engine = self.engine.for_principal(principal)
        prepared, key = self._prepared(engine, ticket)
        schema = selection_schema(engine, prepared, key)
        run = asyncio.run_coroutine_threadsafe(
            engine.execute(prepared, ticket.variables), self._loop
        )
        outcome = run.result()
        body = orjson.loads(outcome.body)
        errors = body.get("errors")
        if errors:
            _refuse_unless_the_tickets_fault(errors)
            stored = [e for e in errors if _stored_refusal(e)]
            if stored:
                # a stored value the field's scalar cannot carry: no fault of the ticket's
                raise PermanentError(
                    [
                        ErrorDetail(e.get("message", ""), ".".join(map(str, e.get("path") or [])))
                        for e in stored[:3]
                    ],
                    code="STORED_VALUE",
                )
            raise _bad(
                "; ".join(e.get("message", "") for e in errors[:3]),
                "fix the query or its variables",
            )
        value: Any = (body.get("data") or {}).get(key)
        rows = value if isinstance(value, list) else [] if value is None else [value]
        struct = pa.struct(list(schema))
        if _has_json(struct):
            rows = [_json_text(row, struct) for row in rows]
        carried = pa.array(rows, type=json_carrier(struct))
        try:
            array = conform_array(carried, struct)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            detail = ErrorDetail(
                f"a value served cannot be read as the field's Arrow type: {first}",
                key,
                "correct the stored value, or leave the field out of the query",
            )
            raise PermanentError([detail], code="STORED_VALUE") from None
        batch = pa.RecordBatch.from_struct_array(array)
        return pa.RecordBatchReader.from_batches(schema, [batch.cast(schema)])
