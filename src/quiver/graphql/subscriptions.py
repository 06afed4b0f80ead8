"""GraphQL subscriptions fed from the change log, served over WebSocket (graphql-transport-ws).

Each entity gets a ``<entity>Changed`` subscription field (``orderChanged``) answering one
``<Entity>Change`` per committed change-log row of the entity: ``op``, ``id`` (the change's id),
``cursor``, ``changedFields``, ``changedAt``, ``transactionId``, ``actor``, ``tenantId`` and the
row images ``before`` and ``after``, of the entity's own object type, so they take the same
selections as a query (nested relations read the related rows as they are now).

Arguments:

* ``where``: the ``<Entity>Where`` filter of the list field; a change matches when its
  ``after`` image or its ``before`` image matches (so a row leaving the filtered set is seen);
* ``operations``: the kinds of change to deliver (all three when absent);
* ``after``: a cursor from an earlier event: the subscription resumes after it, delivering
  every matching change committed since, none twice.

Filter and selection run in the database, over a derived table decoded from the images
(:func:`quiver.graphql.planner.plan_images`), so values compare and render exactly as a query
over the table would. Document limits (depth, aliases, cost, introspection) apply as they do to
queries.

**No lost changes.** Change ids are assigned when a row is written, not when its transaction
commits, so a reader that only remembered the highest id it saw would skip a row committed late
with a smaller id. A :class:`Position` is the highest id read plus the *gaps*: ids below it not
yet seen (their transaction was still open, or rolled back). Each read takes the rows above the
highest id and the rows filling gaps; a gap is given up ``subscriptions.gap_timeout_s`` after it
was found. The cursor of each event encodes the position right after it, gaps included, so a
client that reconnects with it gets exactly the matching changes it has not had.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from graphql.execution.values import get_argument_values, get_variable_values

from graphql import (
    FieldNode,
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLField,
    GraphQLID,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
    OperationType,
)
from quiver.graphql.access import Access
from quiver.graphql.planner import (
    PlanError,
    collect_root_fields,
    collect_sub_fields,
    internal_columns,
    plan_images,
    typed_input_problem,
)
from quiver.graphql.typesystem import enum_value_names
from quiver.schema.catalog import Catalog
from quiver.schema.ir import Entity, Scalar
from quiver.schema.ir import Field as IrField
from quiver.schema.naming import camel
from quiver.sql.build import literal_string
from quiver.sql.changelog import (
    CHANGE_CHANNEL,
    ensure_change_log,
    image_document,
    json_nulls,
    json_text,
    json_value,
    time_text,
    with_placeholders,
)
from quiver.sql.connect import connect_postgresql
from quiver.sql.database import (
    ConstraintError,
    Database,
    DatabaseBusyError,
    DatabaseError,
    ParameterError,
    QueryTooComplexError,
    StatementTimeoutError,
    StoredValueError,
    stored_refusal,
)
from quiver.sql.dialects import MYSQL_SPATIAL_TYPES, Dialect
from quiver.sql.fragment import Fragment, ident, join, param, sql
from quiver.sql.url import parse_database_url

_T = TypeVar("_T")

__all__ = [
    "ChangeSignal",
    "CursorError",
    "Position",
    "SubscriptionPlan",
    "add_subscriptions",
    "run_subscription",
    "subscription_field_name",
]

log = logging.getLogger("quiver.graphql.subscriptions")

#: Most gaps a position keeps; past it the oldest are given up first.
MAX_GAPS = 10_000
#: Most ids one read asks for by ``IN (...)``.
_GAP_CHUNK = 500
_OPERATIONS = {"insert": "INSERT", "update": "UPDATE", "delete": "DELETE"}
_MYSQL_SPATIAL = re.compile(MYSQL_SPATIAL_TYPES)
#: BIT(1) is a Boolean; wider BITs are served (and imaged) as strings of binary digits.
_MYSQL_WIDE_BIT = re.compile(r"bit\(([2-9]|[1-9][0-9]+)\)")
_CUTOFF = {
    "postgresql": "now() - (CAST(? AS double precision) * interval '1 second')",
    "mysql": "CURRENT_TIMESTAMP(6) - INTERVAL ? SECOND",
    "sqlite": "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?)",
}


# ----- the schema -----
def subscription_field_name(entity: Entity) -> str:
    """``orderChanged`` for the entity ``Order``."""
    return f"{camel(entity.name)}Changed"


def add_subscriptions(schema: GraphQLSchema, catalog: Catalog) -> GraphQLSchema:
    """``schema`` with a ``Subscription`` root holding one ``<entity>Changed`` field per entity
    that has a list root field (and so an object type and a ``<Entity>Where`` filter)."""
    operation = GraphQLEnumType(
        "ChangeOperation",
        {v: GraphQLEnumValue(v) for v in _OPERATIONS.values()},
        description="What a change did to its row.",
    )
    fields: dict[str, GraphQLField] = {}
    listed = {r.entity.name for r in catalog.root_fields.values() if r.kind == "list"}
    taken = set(schema.type_map)
    for name in sorted(listed):
        e = catalog.entities[name]
        obj = schema.get_type(name)
        where = schema.get_type(f"{name}Where")
        change_name = f"{name}Change"
        if not isinstance(obj, GraphQLObjectType) or where is None or change_name in taken:
            continue
        image: GraphQLOutputType = obj
        change = GraphQLObjectType(
            change_name,
            {
                "op": GraphQLField(GraphQLNonNull(operation), description="What the change did."),
                "id": GraphQLField(
                    GraphQLNonNull(GraphQLID), description="The change's id in the change log."
                ),
                "cursor": GraphQLField(
                    GraphQLNonNull(GraphQLString),
                    description="Give it as the `after` argument to resume after this change.",
                ),
                "changedFields": GraphQLField(
                    GraphQLNonNull(GraphQLList(GraphQLNonNull(GraphQLString))),
                    description="Names of the fields whose value changed.",
                ),
                "changedAt": GraphQLField(
                    GraphQLNonNull(GraphQLString), description="When the change was written."
                ),
                "transactionId": GraphQLField(
                    GraphQLNonNull(GraphQLString),
                    description="The same for every change of one transaction.",
                ),
                "actor": GraphQLField(GraphQLString, description="Who made the change, if known."),
                "tenantId": GraphQLField(GraphQLString, description="The change's tenant, if any."),
                "before": GraphQLField(image, description="The row before (null for an insert)."),
                "after": GraphQLField(image, description="The row after (null for a delete)."),
            },
            description=f"One committed change of a {name}.",
        )
        fields[subscription_field_name(e)] = GraphQLField(
            GraphQLNonNull(change),
            args={
                "where": GraphQLArgument(
                    where,  # type: ignore[arg-type]
                    description="Deliver the changes whose before or after image matches.",
                ),
                "operations": GraphQLArgument(
                    GraphQLList(GraphQLNonNull(operation)),
                    description="Deliver only these kinds of change (all when absent).",
                ),
                "after": GraphQLArgument(
                    GraphQLString,
                    description="Resume after the change whose `cursor` this is; without it, "
                    "changes committed from now on.",
                ),
            },
            description=f"Each committed change of a {name}, as it commits.",
        )
    if not fields:
        return schema
    return GraphQLSchema(
        query=schema.query_type,
        mutation=schema.mutation_type,
        subscription=GraphQLObjectType("Subscription", fields),
        types=list(schema.type_map.values()),
        directives=schema.directives,
    )


# ----- positions and cursors -----
class CursorError(Exception):
    """A cursor that this server did not issue."""


@dataclass
class Position:
    """Where a subscription is in the change log: every id up to ``high`` has been read,
    except the ``gaps`` (id -> when to give it up, seconds since the epoch)."""

    high: int
    gaps: dict[int, float] = field(default_factory=dict)

    def encode(self) -> str:
        """The cursor: base64url JSON of the high id and the gaps, runs of consecutive ids
        sharing one deadline written as ``[first id, count, deadline]``."""
        runs: list[list[Any]] = []
        for i, until in sorted(self.gaps.items()):
            t = round(until, 3)
            last = runs[-1] if runs else None
            if last is not None and last[0] + last[1] == i and last[2] == t:
                last[1] += 1
            else:
                runs.append([i, 1, t])
        body = orjson.dumps({"v": 2, "h": self.high, "g": runs})
        return base64.urlsafe_b64encode(body).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Position:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            doc = orjson.loads(raw)
            high = doc["h"]
            if doc.get("v") != 2 or not isinstance(high, int) or high < 0:
                raise ValueError
            gaps: dict[int, float] = {}
            for first, count, until in doc["g"]:
                if not 0 < int(count) <= MAX_GAPS or len(gaps) + int(count) > MAX_GAPS:
                    raise ValueError
                for i in range(int(first), int(first) + int(count)):
                    gaps[i] = float(until)
        except (ValueError, TypeError, KeyError, binascii.Error, orjson.JSONDecodeError):
            raise CursorError(
                "after: this is not a cursor of a change event; give the `cursor` of an event "
                "this server sent, or leave `after` out to start from now"
            ) from None
        return cls(high, gaps)

    def copy(self) -> Position:
        return Position(self.high, dict(self.gaps))

    def expire(self, now: float) -> None:
        """Give up the gaps whose time is over."""
        for i in [i for i, until in self.gaps.items() if until <= now]:
            del self.gaps[i]

    def advance(self, change_id: int, until: float) -> None:
        """Note change ``change_id`` as read; ids skipped below it become gaps until ``until``."""
        if change_id in self.gaps:
            del self.gaps[change_id]
            return
        if change_id <= self.high:
            return
        first = max(self.high + 1, change_id - MAX_GAPS)
        for i in range(first, change_id):
            self.gaps[i] = until
        self.high = change_id
        if len(self.gaps) > MAX_GAPS:
            for i in sorted(self.gaps)[: len(self.gaps) - MAX_GAPS]:
                del self.gaps[i]


# ----- reading the change log -----
@dataclass(frozen=True)
class LogRow:
    """One change-log row; the images and key only for the subscription's entity."""

    id: int
    entity: str
    operation: str
    before: Any
    after: Any
    changed_fields: tuple[str, ...]
    actor: str | None
    tenant_id: str | None
    transaction_id: str
    changed_at: str


class ChangeLogReader:
    """Reads the change log ``table`` of ``db`` for one entity's subscriptions."""

    def __init__(self, db: Database, table: str, entity: str) -> None:
        self.db = db
        self.dialect: Dialect = db.dialect
        self.table = self.dialect.quote_ident(table)
        self.entity = entity

    async def _run(self, text: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return await _fetch_uninterrupted(
            self.db, with_placeholders(self.dialect, text), list(params)
        )

    async def start(self, gap_timeout: float) -> Position:
        """The position of "now": after the last change, with the ids missing from the last
        ``gap_timeout`` seconds of the log as gaps (transactions that may still commit)."""
        name = self.dialect.name
        span: Any = f"-{gap_timeout} seconds" if name == "sqlite" else gap_timeout
        if name == "mysql":
            span = max(1, int(gap_timeout))
        rows = await self._run(
            f"SELECT (SELECT COALESCE(MAX(id), 0) FROM {self.table}),"
            f" (SELECT COALESCE(MAX(id), 0) FROM {self.table}"
            f" WHERE changed_at < {_CUTOFF[name]})",
            [span],
        )
        high, before = int(rows[0][0]), int(rows[0][1])
        before = max(before, high - MAX_GAPS)
        seen = await self._run(
            f"SELECT id FROM {self.table} WHERE id > ? AND id <= ?", [before, high]
        )
        until = time.time() + gap_timeout
        present = {int(r[0]) for r in seen}
        gaps = {i: until for i in range(before + 1, high + 1) if i not in present}
        return Position(high, gaps)

    async def read(self, position: Position, limit: int) -> tuple[list[LogRow], bool]:
        """The rows after ``position.high`` (at most ``limit``) and those filling its gaps, in
        id order; and whether the limit cut the rows after ``high`` short."""
        columns = (
            "SELECT id, entity, operation, CASE WHEN entity = ? THEN before_image END,"
            " CASE WHEN entity = ? THEN after_image END, changed_fields, actor, tenant_id,"
            f" transaction_id, changed_at FROM {self.table}"
        )
        rows = await self._run(
            f"{columns} WHERE id > ? ORDER BY id LIMIT ?",
            [self.entity, self.entity, position.high, limit],
        )
        full = len(rows) >= limit
        gaps = sorted(position.gaps)
        for start in range(0, len(gaps), _GAP_CHUNK):
            chunk = gaps[start : start + _GAP_CHUNK]
            marks = ", ".join("?" for _ in chunk)
            rows += await self._run(
                f"{columns} WHERE id IN ({marks})", [self.entity, self.entity, *chunk]
            )
        out = [
            LogRow(
                id=int(r[0]),
                entity=r[1],
                operation=r[2],
                before=_exact_json(r[3]),
                after=_exact_json(r[4]),
                changed_fields=tuple(json_value(r[5]) or ()),
                actor=r[6],
                tenant_id=r[7],
                transaction_id=str(r[8]),
                changed_at=time_text(r[9]),
            )
            for r in rows
        ]
        out.sort(key=lambda r: r.id)
        return out, full


def _exact_json(value: Any) -> Any:
    """A change image as read by any driver, every number kept as the log wrote it: a float's
    text (``1e400``, ``0.1000000000000000055511151231257827``, a JSON column's big decimal)
    and an integer past 64 bits stay :class:`orjson.Fragment` and are written back verbatim,
    where reading them as Python floats would round them or fail."""
    if value is None or isinstance(value, dict | list):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value).decode()
    return json.loads(value, parse_float=orjson.Fragment, parse_int=_exact_int)


def _exact_int(text: str) -> Any:
    number = int(text)
    return number if -(2**63) <= number < 2**64 else orjson.Fragment(text)


def _raw_json(value: Any) -> Any:
    """JSON the database built, passed on as its text (as a query passes its answer on)."""
    if value is None or isinstance(value, dict | list):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value)
    return orjson.Fragment(value)


async def _fetch_uninterrupted(
    db: Database, text: str, params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """The rows of one statement run in its own transaction, which a cancellation of the
    caller (a client gone, ``complete``) does not interrupt: the statement finishes and the
    connection goes back to the pool clean, never with a half-read answer on it."""

    async def run() -> list[tuple[Any, ...]]:
        async with db.transaction() as tx:
            return await tx.fetch_rows(text, params)

    return await _uninterrupted(run())


async def _ensure(db: Database, table: str) -> None:
    async with db.transaction() as tx:
        await ensure_change_log(tx, db.dialect, table)


async def _uninterrupted(work: Awaitable[_T]) -> _T:
    """Await ``work`` in a task of its own, shielded from the caller's cancellation."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_consume)
    return await asyncio.shield(task)


def _consume(task: asyncio.Future[Any]) -> None:
    """Mark the task's outcome as seen: a caller that was cancelled never reads it."""
    if not task.cancelled():
        task.exception()


# ----- images as rows -----
class ImageTable:
    """Row images of one entity as a derived table of its columns (and ``ordinal``, the
    image's place: ``__n`` unless a column has that name), for the dialect: PostgreSQL
    ``jsonb_populate_record`` over the table's row type, MariaDB ``JSON_TABLE`` with the
    columns' types, SQLite ``json_each``/``json_extract``."""

    def __init__(self, dialect: Dialect, entity: Entity) -> None:
        self.dialect = dialect
        self.entity = entity
        self.fields = list(entity.fields)
        self.ordinal = internal_columns(entity, "__n")[0]
        #: The fields that may hold the JSON value null, and their columns.
        self.json = [f for f in self.fields if f.holds_json_null]
        self.json_names = {f.name for f in self.json}
        self.json_columns = {f.column for f in self.json}
        self._enums: dict[str, dict[str, str]] = {}
        for f in self.fields:
            if f.enum_values is not None:
                back = {g: db for db, g in enum_value_names(f.enum_values).items() if db != g}
                if back:
                    self._enums[f.name] = back

    def _value(self, f: IrField, value: Any) -> Any:
        """An image's value as the derived table's column reads it."""
        if value is None:
            return None
        back = self._enums.get(f.name)
        if back is not None:
            value = (
                [back.get(v, v) for v in value]
                if isinstance(value, list)
                else back.get(value, value)
            )
        name = self.dialect.name
        if f.scalar == Scalar.BASE64 and name == "postgresql":
            # bytea and bytea[] populate from PostgreSQL's hex text, not from Base64
            return [_pg_hex(v) for v in value] if isinstance(value, list) else _pg_hex(value)
        if name == "sqlite" and f.scalar in (Scalar.BIGINT, Scalar.DECIMAL):
            # Served as text; SQLite holds them as numbers, and compares text above any number.
            for number in (int, float):
                with contextlib.suppress(ValueError, TypeError):
                    return number(value)
        if name == "mysql":
            if isinstance(value, bool):
                return int(value)
            if isinstance(value, dict | list):
                return json_text(value).decode()
        return value

    def _json(self, f: IrField, img: Mapping[str, Any], nulls: frozenset[str]) -> Any:
        """A JSON field's image value as its column's JSON text (MariaDB, SQLite): ``"null"``
        for the JSON value null, None for SQL NULL."""
        value = img.get(f.name)
        if value is None:
            return "null" if f.name in nulls else None
        return json_text(value).decode()

    def source(self, images: Sequence[Mapping[str, Any]]) -> Fragment:
        """The derived table of ``images`` (API field name -> value); a JSON field that the
        image names under ``JSON_NULLS`` holds the JSON value null, not SQL NULL."""
        name = self.dialect.name
        if name == "postgresql":
            rows = []
            for img in images:
                # a JSON field holding SQL NULL is absent, so that only a JSON null reads as one
                # below
                doc = image_document(img, self.json_names) or {}
                rows.append(
                    {f.column: self._value(f, doc[f.name]) for f in self.fields if f.name in doc}
                )
            e = self.entity
            table = ident(e.db_schema, e.source) if e.db_schema else ident(e.source)
            # jsonb_populate_record reads a JSON null as SQL NULL: a JSON field holding one
            # (present as null in the row) takes it as the column's JSON instead.
            picks = [sql("r.*")]
            if self.json:
                picks = [sql("r.", ident(c)) for c in self._columns() if c not in self.json_columns]
                picks += [
                    sql(
                        "CASE WHEN v.img -> ",
                        literal_string(f.column),
                        " = CAST('null' AS jsonb) THEN 'null' ELSE r.",
                        ident(f.column),
                        " END AS ",
                        ident(f.column),
                    )
                    for f in self.json
                ]
            return sql(
                "SELECT v.n AS ",
                ident(self.ordinal),
                ", ",
                join(", ", picks),
                " FROM jsonb_array_elements(CAST(",
                param(json_text(rows).decode()),
                " AS jsonb)) WITH ORDINALITY AS v(img, n) CROSS JOIN LATERAL"
                " jsonb_populate_record(CAST(NULL AS ",
                table,
                "), v.img) AS r",
            )
        rows = []
        for img in images:
            nulls = json_nulls(img)
            rows.append(
                {
                    f"c{i}": (
                        self._json(f, img, nulls)
                        if f.name in self.json_names
                        else self._value(f, img.get(f.name))
                    )
                    for i, f in enumerate(self.fields)
                }
            )
        text = json_text(rows).decode()
        if name == "mysql":
            columns = [sql(ident(self.ordinal), " FOR ORDINALITY")]
            picks = [sql("jt.", ident(self.ordinal))]
            for i, f in enumerate(self.fields):
                columns.append(sql(f"c{i} {_mysql_type(f)} PATH '$.c{i}'"))
                value = sql(f"jt.c{i}")
                if f.scalar == Scalar.BASE64:
                    value = sql("FROM_BASE64(", value, ")")
                elif _MYSQL_WIDE_BIT.fullmatch((f.db_type or "").lower()):
                    # imaged as the binary digits it is served as
                    value = sql("CAST(CONV(", value, ", 2, 10) AS UNSIGNED)")
                elif _MYSQL_SPATIAL.fullmatch((f.db_type or "").lower()):
                    # imaged as the GeoJSON it is served as; the column reads a geometry
                    value = sql("ST_GeomFromGeoJSON(", value, ")")
                picks.append(sql(value, " AS ", ident(f.column)))
            return sql(
                "SELECT ",
                join(", ", picks),
                " FROM JSON_TABLE(",
                param(text),
                ", '$[*]' COLUMNS (",
                join(", ", columns),
                ")) AS jt",
            )
        picks = [sql("je.key AS ", ident(self.ordinal))]
        for i, f in enumerate(self.fields):
            value = sql(f"json_extract(je.value, '$.c{i}')")
            if f.scalar == Scalar.BASE64:
                value = sql("quiver_unbase64(", value, ")")  # registered by quiver.sql.database
            picks.append(sql(value, " AS ", ident(f.column)))
        return sql("SELECT ", join(", ", picks), " FROM json_each(", param(text), ") AS je")

    def _columns(self) -> list[str]:
        """The columns the derived table has: the fields' and the relations' own."""
        columns = [f.column for f in self.fields]
        for r in self.entity.relations:
            columns += [c for c in r.local_columns if c not in columns]
        return columns


def _pg_hex(value: Any) -> Any:
    """A Base64 image value as PostgreSQL's bytea input text (``\\xff00``)."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError, binascii.Error):
            return "\\x" + base64.b64decode(value, validate=True).hex()
    return value


def _mysql_type(f: IrField) -> str:
    """The JSON_TABLE column type carrying ``f``'s values."""
    declared = f.db_type or "LONGTEXT"
    t = declared.lower()
    base = t.split("(", 1)[0].strip()
    if f.scalar == Scalar.BASE64 or base in ("json", "enum", "set") or "text" in base:
        return "LONGTEXT"
    if base in ("tinyblob", "blob", "mediumblob", "longblob", "binary", "varbinary", "bit"):
        return "LONGTEXT"
    if _MYSQL_SPATIAL.fullmatch(t) or _MYSQL_WIDE_BIT.fullmatch(t):
        return "LONGTEXT"
    if base in ("uuid", "inet4", "inet6"):
        return "VARCHAR(255)"
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789(), ")
    return declared if set(t) <= allowed else "LONGTEXT"


# ----- one subscription -----
class SubscriptionError(Exception):
    """A subscription that cannot run: ``errors`` in GraphQL's error format."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["message"] if errors else "subscription failed")
        self.errors = errors


def _error(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code, **extensions}}


@dataclass
class _ImageSelection:
    """The response keys selecting one image (``after`` or ``before``) and their nodes."""

    kind: str
    keys: list[tuple[str, list[FieldNode]]] = field(default_factory=list)


@dataclass
class SubscriptionPlan:
    """What one subscribe message asks: the entity, filter, selection and start."""

    root_key: str
    entity: Entity
    where: Mapping[str, Any] | None
    operations: frozenset[str]
    resume: Position | None
    fields: dict[str, list[FieldNode]]
    images: dict[str, _ImageSelection]
    fragments: Mapping[str, Any]
    variables: dict[str, Any]

    @classmethod
    def build(
        cls,
        catalog: Catalog,
        schema: GraphQLSchema,
        dialect: Dialect,
        operation: Any,
        fragments: Mapping[str, Any],
        raw_variables: Mapping[str, Any] | None,
    ) -> SubscriptionPlan:
        """Plan a validated subscription ``operation``; :class:`SubscriptionError` if its
        variables or arguments cannot run."""
        sub_type = schema.subscription_type
        assert sub_type is not None and operation.operation == OperationType.SUBSCRIPTION
        coerced = get_variable_values(
            schema, operation.variable_definitions or (), dict(raw_variables or {})
        )
        if isinstance(coerced, list):
            raise SubscriptionError([_error(e.message, "BAD_USER_INPUT") for e in coerced])
        variables: dict[str, Any] = coerced
        roots = collect_root_fields(catalog, schema, dialect, operation, fragments, variables)
        if len(roots) != 1:
            raise SubscriptionError(
                [_error("A subscription selects exactly one root field.", "BAD_USER_INPUT")]
            )
        ((root_key, nodes),) = roots.items()
        name = nodes[0].name.value
        entity = next(e for e in catalog.entities.values() if subscription_field_name(e) == name)
        args = get_argument_values(sub_type.fields[name], nodes[0], variables)
        resume = None
        if args.get("after") is not None:
            try:
                resume = Position.decode(args["after"])
            except CursorError as err:
                raise SubscriptionError([_error(str(err), "BAD_USER_INPUT")]) from None
        ops = args.get("operations")
        operations = frozenset(k for k, v in _OPERATIONS.items() if ops is None or v in ops)
        fields = collect_sub_fields(catalog, schema, dialect, nodes, fragments, variables)
        images = {k: _ImageSelection(k) for k in ("after", "before")}
        for key, fnodes in fields.items():
            fname = fnodes[0].name.value
            if fname in images:
                images[fname].keys.append((key, fnodes))
        plan = cls(
            root_key,
            entity,
            args.get("where") or None,
            operations,
            resume,
            fields,
            images,
            fragments,
            variables,
        )
        # Plan the image statements once now, so values that cannot run fail the subscribe.
        ImageEvaluator(catalog, schema, dialect, plan).statement("after", [], [{}])
        return plan


class ImageEvaluator:
    """Matches and renders the images of a batch of changes in the database."""

    def __init__(
        self,
        catalog: Catalog,
        schema: GraphQLSchema,
        dialect: Dialect,
        plan: SubscriptionPlan,
        access: Access | None = None,
    ) -> None:
        self.catalog = catalog
        self.schema = schema
        self.dialect = dialect
        self.plan = plan
        self.access = access
        # The images hold every column: a role's filter may test one it cannot read.
        imaged = access.catalog.entities[plan.entity.name] if access is not None else plan.entity
        self.table = ImageTable(dialect, imaged)

    def statement(
        self,
        kind: str,
        nodes: list[FieldNode],
        images: Sequence[Mapping[str, Any]],
        typed_inputs: list[tuple[str, str]] | None = None,
    ) -> tuple[str, list[Any]]:
        try:
            return plan_images(
                self.catalog,
                self.schema,
                self.dialect,
                self.plan.entity,
                self.table.source(images),
                self.plan.where,
                nodes,
                self.plan.fragments,
                self.plan.variables,
                self.access.rows if self.access is not None else None,
                typed_inputs,
                self.table.ordinal,
            )
        except PlanError as err:
            path = ["where", *err.path[1:]] if err.path else ["where"]
            raise SubscriptionError(
                [_error(err.message, "BAD_USER_INPUT", argumentPath=path)]
            ) from None

    async def check(self, db: Database) -> None:
        """Run the filter once over an image of nulls: a filter value the database cannot
        take (a value it cannot bind or compare) refuses the subscribe, as the list query
        refuses it, instead of ending the subscription at its first change. A busy pool or a
        timeout is left to the reads, which wait and try again."""
        if self.plan.where is None:
            return
        typed: list[tuple[str, str]] = []
        text, params = self.statement("after", [], [{}], typed)
        try:
            await _fetch_uninterrupted(db, text, params)
        except (DatabaseBusyError, StatementTimeoutError):
            return
        except (ParameterError, QueryTooComplexError) as err:
            detail = err.details[0]
            code = "BAD_USER_INPUT" if isinstance(err, ParameterError) else "QUERY_TOO_COMPLEX"
            message = f"{detail.message} ({detail.fix})" if detail.fix else detail.message
            raise SubscriptionError([_error(message, code, argumentPath=["where"])]) from None
        except DatabaseError as err:
            # a value the column's type cannot read ("abc" for money), as the query says it
            problem = (
                typed_input_problem(typed, err.violation.message, params)
                if isinstance(err, ConstraintError) and err.violation.kind == "value"
                else None
            )
            if problem is not None:
                raise SubscriptionError(
                    [_error(problem, "BAD_USER_INPUT", argumentPath=["where"])]
                ) from None
            log.error("database error on the %s subscription's filter: %s", self.plan.root_key, err)
            raise SubscriptionError(
                [
                    _error(
                        "The database could not run this subscription's where filter with "
                        "these values (the list query's where fails alike); the server log says "
                        "why. Change the filter's values.",
                        "DATABASE_ERROR",
                        argumentPath=["where"],
                    )
                ]
            ) from None

    async def evaluate(
        self, db: Database, rows: Sequence[LogRow]
    ) -> tuple[list[bool], dict[str, list[Any]]]:
        """Whether each row matches, and each image key's rendered value per row."""
        # A role's row filter counts as a where: a change matches only through the database.
        filtered = self.plan.where is not None or (
            self.access is not None
            and self.access.where_of("select", self.plan.entity.name) is not None
        )
        matched = [not filtered for _ in rows]
        rendered: dict[str, list[Any]] = {}
        for kind, selection in self.plan.images.items():
            at = [i for i, r in enumerate(rows) if getattr(r, kind) is not None]
            if not at:
                for empty, _ in selection.keys:
                    rendered[empty] = [None] * len(rows)
                continue
            images = [getattr(rows[i], kind) for i in at]
            passes: list[tuple[str | None, list[FieldNode]]] = list(selection.keys)
            if not passes and filtered:
                passes = [(None, [])]
            for n, (key, nodes) in enumerate(passes):
                text, params = self.statement(kind, nodes, images)
                answer = await _fetch_uninterrupted(db, text, params)
                values: list[Any] = [None] * len(rows)
                for place, (_, ok, body) in zip(at, answer, strict=True):
                    if n == 0 and ok is not None and int(ok):
                        matched[place] = True
                    values[place] = _raw_json(body)
                    if self.dialect.stored_checks and isinstance(body, bytes | str):
                        refused = stored_refusal(body.encode() if isinstance(body, str) else body)
                        if refused is not None:
                            raise refused
                if key is not None:
                    rendered[key] = values
        return matched, rendered


class ChangeSignal:
    """Tells the subscriptions of one process when the change log has new rows.

    While subscriptions run, one watcher task reads the change log's highest id (``head``)
    every poll interval, and at once when a change commits: a mutation of this process
    (:meth:`notify`) or, on PostgreSQL once :meth:`listen` ran, any writer's ``NOTIFY``. A
    subscription with no gaps reads the log only once ``head`` passes its position, so idle
    subscriptions cost one query per interval per process, not one each; a subscription
    waiting for gaps reads every interval."""

    def __init__(self) -> None:
        self._committed = asyncio.Event()
        self._moved = asyncio.Event()
        self._listener: Any = None
        self._connecting: asyncio.Task[None] | None = None
        #: The change log's highest id as last read; None while unknown.
        self.head: int | None = None
        self._watchers = 0
        self._watch_task: asyncio.Task[None] | None = None

    def watch(self, db: Database, table: str, interval: float) -> None:
        """One more subscription reads ``table``: keep the watcher running."""
        self._watchers += 1
        if self._watch_task is None or self._watch_task.done():
            self._watch_task = asyncio.create_task(self._watch(db, table, interval))

    def unwatch(self) -> None:
        """One subscription less; the last one stops the watcher."""
        self._watchers -= 1
        if self._watchers <= 0 and self._watch_task is not None:
            self._watch_task.cancel()
            self._watch_task = None
            self.head = None

    async def _watch(self, db: Database, table: str, interval: float) -> None:
        text = f"SELECT MAX(id) FROM {db.dialect.quote_ident(table)}"
        while True:
            try:
                rows = await _fetch_uninterrupted(db, text, [])
                head = int(rows[0][0]) if rows and rows[0][0] is not None else 0
            except Exception as err:  # the subscriptions poll meanwhile (head None)
                log.debug("cannot read the change log's head: %s", err)
                head = None
            if head != self.head:
                self.head = head
                self._moved.set()
                self._moved = asyncio.Event()
            await _wait(self._committed, interval)

    async def idle(self, position: Position, interval: float) -> None:
        """Wait until reading the change log again may find something for ``position``."""
        loop = asyncio.get_running_loop()
        if position.gaps or self.head is None:
            await _wait(self._moved, interval)
            return
        # a bound, should the watcher stall
        deadline = loop.time() + max(60.0, 10 * interval)
        while self.head is not None and self.head <= position.high:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await _wait(self._moved, remaining)

    async def listen(self, url: str) -> None:
        """On PostgreSQL, listen on the change channel (once; again if the connection died).
        A failure is logged: the subscriptions still poll.

        The connection is made by a task of its own, which every subscription starting
        meanwhile waits for: a subscription cancelled while it waits (its client completed it
        or left) does not cut the connection off half made, so the next one need not start
        another."""
        if self._listener is not None and not self._listener.is_closed():
            return
        task = self._connecting
        if task is None or task.done():
            task = self._connecting = asyncio.create_task(self._connect(url))
        await asyncio.shield(task)

    async def _connect(self, url: str) -> None:
        try:
            conn = await connect_postgresql(parse_database_url(url))
            await conn.add_listener(CHANGE_CHANNEL, self._heard)
        except Exception as exc:
            log.warning("cannot LISTEN for changes (%s); subscriptions poll only", exc)
            return
        self._listener = conn

    def _heard(self, *_args: Any) -> None:
        self.notify()

    @property
    def watching(self) -> bool:
        """Whether the watcher task runs (some subscription reads the change log)."""
        return self._watch_task is not None and not self._watch_task.done()

    async def close(self) -> None:
        """Stop the watcher and the PostgreSQL listener."""
        for task in (self._watch_task, self._connecting):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._watch_task = self._connecting = None
        conn, self._listener = self._listener, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    def notify(self) -> None:
        """A change committed: the watcher reads the head now."""
        self._committed.set()
        self._committed = asyncio.Event()


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


async def run_subscription(
    db: Database,
    catalog: Catalog,
    schema: GraphQLSchema,
    plan: SubscriptionPlan,
    change_log_table: str,
    settings: Any,
    emit: Callable[[bytes], Awaitable[None]],
    signal: ChangeSignal | None = None,
    started: Callable[[], None] | None = None,
    access: Access | None = None,
) -> None:
    """Send ``emit`` one ``next`` payload (JSON bytes) per matching committed change, until
    cancelled; ``started`` is called once the start position is known (changes committed
    from then on are delivered). ``settings`` is the
    :class:`~quiver.config.settings.SubscriptionSettings`. Raises :class:`SubscriptionError`
    when the subscription cannot go on. With ``access``, only changes of rows the role may
    read (before or after the change) are delivered."""
    evaluator = ImageEvaluator(catalog, schema, db.dialect, plan, access)
    await evaluator.check(db)
    if signal is not None:
        signal.watch(db, change_log_table, settings.poll_interval_ms / 1000)
    try:
        reader = ChangeLogReader(db, change_log_table, plan.entity.name)
        interval = settings.poll_interval_ms / 1000
        gap_timeout = float(settings.gap_timeout_s)
        position: Position | None = plan.resume.copy() if plan.resume is not None else None
        failures = 0
        # A resumed cursor's gaps are all read once before any is given up: a change committed
        # while the client was away, in time, is delivered however long the client stayed away.
        resumed = position is not None
        ensured = False
        while True:
            try:
                if not ensured:
                    with contextlib.suppress(DatabaseError):  # another reader's creation raced ours
                        await _uninterrupted(_ensure(db, change_log_table))
                    ensured = True
                if position is None:
                    position = await reader.start(gap_timeout)
                if started is not None:
                    started()
                    started = None
                if not resumed:
                    position.expire(time.time())
                rows, full = await reader.read(position, settings.batch_rows)
                resumed = False
                failures = 0
            except DatabaseError as err:
                failures += 1
                wait = min(5.0, interval * 2**failures)
                log.warning(
                    "subscription could not read the change log (%s); again in %.1fs", err, wait
                )
                await asyncio.sleep(wait)
                continue
            ours = [
                r
                for r in rows
                if r.entity == plan.entity.name
                and r.operation in plan.operations
                and (r.id > position.high or r.id in position.gaps)
            ]
            matched: list[bool] = []
            rendered: dict[str, list[Any]] = {}
            if ours:
                matched, rendered = await _evaluate(evaluator, db, ours, interval)
            place = {r.id: i for i, r in enumerate(ours)}
            until = time.time() + gap_timeout
            for r in rows:
                position.advance(r.id, until)
                i = place.get(r.id)
                if i is None or not matched[i]:
                    continue
                cursor = position.encode()
                payload = {
                    "data": {plan.root_key: _change_json(plan, r, cursor, rendered, i)},
                    "extensions": {"cursor": cursor},
                }
                await emit(json_text(payload))
            if full:
                continue
            if signal is not None:
                await signal.idle(position, interval)
            else:
                await asyncio.sleep(interval)

    finally:
        if signal is not None:
            signal.unwatch()


async def _evaluate(
    evaluator: ImageEvaluator, db: Database, rows: Sequence[LogRow], interval: float
) -> tuple[list[bool], dict[str, list[Any]]]:
    """:meth:`ImageEvaluator.evaluate`, tried three times (a busy pool, a dropped connection);
    then the subscription ends with an error that names the changes, the details in the log."""
    for attempt in range(3):
        try:
            return await evaluator.evaluate(db, rows)
        except StoredValueError as err:
            # the same values fail every time: the subscription ends, naming the value
            detail = err.details[0]
            log.error("stored value in a subscription: %s", detail.message)
            raise SubscriptionError(
                [
                    _error(
                        f"{evaluator.plan.entity.name} changes {rows[0].id} to {rows[-1].id}:"
                        f" {detail.message} ({detail.fix}). Resume after the last cursor"
                        " received once the value is corrected.",
                        "DATABASE_ERROR",
                    )
                ]
            ) from None
        except DatabaseError as err:
            log.warning(
                "subscription could not read %s changes %d..%d (attempt %d): %s",
                evaluator.plan.entity.name,
                rows[0].id,
                rows[-1].id,
                attempt + 1,
                err,
            )
            await asyncio.sleep(interval * 2**attempt)
    raise SubscriptionError(
        [
            _error(
                f"The database could not read the {evaluator.plan.entity.name} changes "
                f"{rows[0].id} to {rows[-1].id}; the server log says why. Resume after the "
                "last cursor received once the cause is fixed.",
                "INTERNAL_SERVER_ERROR",
            )
        ]
    )


def _change_json(
    plan: SubscriptionPlan, r: LogRow, cursor: str, rendered: dict[str, list[Any]], i: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, nodes in plan.fields.items():
        name = nodes[0].name.value
        if name == "op":
            out[key] = _OPERATIONS.get(r.operation, r.operation.upper())
        elif name == "id":
            out[key] = str(r.id)
        elif name == "cursor":
            out[key] = cursor
        elif name == "changedFields":
            out[key] = list(r.changed_fields)
        elif name == "changedAt":
            out[key] = r.changed_at
        elif name == "transactionId":
            out[key] = r.transaction_id
        elif name == "actor":
            out[key] = r.actor
        elif name == "tenantId":
            out[key] = r.tenant_id
        elif name == "__typename":
            out[key] = f"{plan.entity.name}Change"
        else:
            out[key] = rendered.get(key, [None] * (i + 1))[i]
    return out
