"""The GraphQL engine: prepare a document once, then run each root field as one SQL statement.

``prepare`` parses and validates with graphql-core and caches the result per (document,
operation name). ``execute`` coerces the variables, picks (or builds) the compiled plan for the
variables' shape, binds parameters and splices the JSON bytes the database returns into the
response, without decoding them.
"""

from __future__ import annotations

import asyncio
import decimal
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from graphql.execution.values import get_variable_values

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    execute_sync,
    get_operation_ast,
    parse,
    type_from_ast,
    validate,
)
from quiver.auth.keys import Principal
from quiver.auth.permissions import grants_for
from quiver.config.settings import QuiverSettings
from quiver.graphql.access import Access
from quiver.graphql.cursors import CursorCodec, sign_cursors
from quiver.graphql.limits import (
    cost_message,
    operation_cost,
    row_counts_from_variables,
    specified_rules_bounded,
    validation_rules,
)
from quiver.graphql.mutations import MutationRunner
from quiver.graphql.planner import (
    PlanError,
    RootStep,
    plan_operation,
    quoted_value,
    typed_input_problem,
)
from quiver.graphql.subscriptions import ChangeSignal, add_subscriptions
from quiver.graphql.typesystem import build_graphql_schema
from quiver.observers.tables import without_own_tables
from quiver.runtime.context import RequestContext
from quiver.runtime.errors import ConfigError, ErrorDetail
from quiver.runtime.hints import did_you_mean
from quiver.schema.api_names import (
    GENERATED_TYPE_SUFFIXES,
    RESERVED_TYPE_NAMES,
    function_result_type_name,
)
from quiver.schema.catalog import Catalog, build_catalog
from quiver.schema.ir import Schema
from quiver.schema.resolvers import ResolverMutation, resolver_of
from quiver.schema.statistics import Statistics, read_statistics
from quiver.sql.database import (
    ConstraintError,
    Database,
    DatabaseBusyError,
    DatabaseError,
    ParameterError,
    QueryTooComplexError,
    StatementTimeoutError,
    StoredValueError,
    open_database,
    stored_refusal,
)
from quiver.sql.dialects import Dialect

__all__ = ["DATABASE_FAILED", "GraphQLEngine", "Outcome", "Prepared"]

#: The message of a DATABASE_ERROR that says no more (the log has the details); a stored value
#: the field's scalar cannot carry is a DATABASE_ERROR naming it instead.
DATABASE_FAILED = "The database could not run this query."

log = logging.getLogger("quiver.graphql")

OutcomeKind = Literal["data", "request_error", "field_error", "internal_error", "busy"]
_PLAN_CACHE_PER_DOCUMENT = 64
#: What one token of a kept document, or one value in the shape of a kept plan, holds in
#: memory (graphql-core's token, node and location; the plan's fragments and slots), about.
_BYTES_PER_TOKEN = 400
#: Most documents kept for reuse, whatever their size.
_CACHE_ENTRIES = 1_000


@dataclass(frozen=True)
class Outcome:
    body: bytes
    kind: OutcomeKind


@dataclass
class Prepared:
    """A parsed and validated document, with the plans built for it so far."""

    query: str
    operation_name: str | None
    operation_type: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    document: DocumentNode | None = None
    operation: OperationDefinitionNode | None = None
    fragments: dict[str, FragmentDefinitionNode] = field(default_factory=dict)
    variable_types: dict[str, GraphQLInputType] = field(default_factory=dict)
    plans: dict[Any, list[RootStep]] = field(default_factory=dict)
    static_body: bytes | None = None
    #: (name, scalar name, non-null) of each variable when all are built-in scalars without
    #: defaults: such variables are checked without graphql-core's general coercion.
    simple_variables: list[tuple[str, str, bool]] | None = None
    #: Row counts (limit/first/last) come from variables: cost is checked again per request.
    variable_row_counts: bool = False
    #: The operation's estimated cost (with variables' defaults where row counts are variables).
    cost: int = 0
    #: Tokens of the document kept (0 when none is).
    tokens: int = 0
    #: Estimated bytes this holds (text, document, plans): what the cache of documents counts.
    weight: int = 0


def _error(message: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"message": message, **extra, "extensions": {"code": code}}


#: How graphql-core's message ends when a document has more tokens than allowed.
_TOO_MANY_TOKENS = "tokens. Parsing aborted."
#: What graphql-core says when a document is too large or repetitive to validate: its work
#: budget for comparing same-named fields ran out, or fragments nest past the recursion limit.
_VALIDATION_ABORTED = "Validation aborted."


def _validation_error(err: GraphQLError) -> dict[str, Any]:
    """A validation error as the client gets it; graphql-core's bare "Validation aborted." says
    why and what to send instead."""
    if err.message == _VALIDATION_ABORTED:
        return _error(
            "The document is too complex to validate: it selects the same fields, or spreads"
            " fragments, too many times. Send a smaller document: select each field once, and"
            " use fewer fragments.",
            "GRAPHQL_VALIDATION_FAILED",
        )
    return _graphql_error(err, "GRAPHQL_VALIDATION_FAILED")


def _graphql_error(err: GraphQLError, code: str) -> dict[str, Any]:
    out: dict[str, Any] = {"message": err.message}
    if err.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in err.locations]
    if err.path:
        out["path"] = list(err.path)
    ext = {str(k): _json_safe(v) for k, v in (err.extensions or {}).items()}
    ext.setdefault("code", code)
    out["extensions"] = ext
    return out


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _json_safe(value: Any) -> Any:
    """``value`` as something orjson always writes: an integer beyond 64 bits or an object it
    does not know becomes its text, so an error body can always be sent."""
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, int):
        return value if _INT64_MIN <= value <= _INT64_MAX else str(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


def _errors_body(errors: list[dict[str, Any]], **rest: Any) -> bytes:
    body = {"errors": errors, **rest}
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        # A message quoting the caller's text that holds half of a UTF-16 surrogate pair (an
        # operation name, an input field's name, given through the Python API): the half is
        # written as its escape, \\ud800, as graphql-core writes the values it quotes.
        return orjson.dumps(_escaped_halves(body))


def _escaped_halves(value: Any) -> Any:
    """``value`` with each half of a surrogate pair in its strings written as ``\\uXXXX``."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode()
    if isinstance(value, dict):
        return {_escaped_halves(k): _escaped_halves(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_escaped_halves(v) for v in value]
    return value


_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_SIMPLE = {"Int", "Float", "String", "Boolean", "ID"}


def _coerce_simple(
    spec: list[tuple[str, str, bool]] | None, variables: Mapping[str, Any] | None
) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]] | None:
    """Coerce built-in scalar variables, or None when graphql-core must do it (or report).

    Returns the coerced values and their shape (what :func:`_shape` would say of them).
    """
    if spec is None or (variables is not None and not isinstance(variables, dict)):
        return None
    values = variables or {}
    out: dict[str, Any] = {}
    shape: list[tuple[str, Any]] = []
    for name, kind, non_null in spec:
        if name not in values:
            if non_null:
                return None
            continue
        v = values[name]
        t = type(v)
        if v is None:
            if non_null:
                return None
        elif kind == "Int":
            if t is not int or not _INT_MIN <= v <= _INT_MAX:
                return None
        elif kind == "String":
            if t is not str:
                return None
        elif kind == "Boolean":
            if t is not bool:
                return None
        elif kind == "Float":
            # A number written with more digits than a double holds arrives exact (a Decimal,
            # see quiver.sql.changelog.json_value): a Float takes its double.
            if (
                t is not float
                and t is not int
                and (not isinstance(v, decimal.Decimal) or not math.isfinite(float(v)))
            ):
                return None
            v = float(v)
        elif t is str or t is int:  # ID
            v = str(v)
        else:
            return None
        out[name] = v
        shape.append((name, None if v is None else v if kind == "Boolean" else 1))
    return out, tuple(shape)


def _shape(value: Any, t: GraphQLInputType) -> Any:
    """What of a variable's value shapes the SQL: structure, nulls, enum values, booleans."""
    if value is None:
        return None
    if isinstance(t, GraphQLNonNull):
        return _shape(value, t.of_type)
    if isinstance(t, GraphQLList):
        if isinstance(value, list):
            return tuple(_shape(v, t.of_type) for v in value)
        return ("one", _shape(value, t.of_type))
    if isinstance(t, GraphQLInputObjectType):
        return tuple((k, _shape(v, t.fields[k].type)) for k, v in value.items() if k in t.fields)
    if isinstance(t, GraphQLEnumType) or isinstance(value, bool):
        return value
    return 1


class GraphQLEngine:
    """Runs GraphQL operations against one database."""

    def __init__(
        self,
        schema: Schema,
        database: Database,
        settings: QuiverSettings,
        resolvers: Sequence[Callable[..., Any]] = (),
        statistics: Statistics | None = None,
        access: Access | None = None,
    ) -> None:
        """``resolvers``: ``@quiver.mutation`` functions served beside the schema's own;
        ``statistics``: the tables' rows and relations' fan-out that cost lists by;
        ``access``: the permissions of the one role this engine serves (``schema`` is then
        what the role may read; see :meth:`for_principal`)."""
        # The change log, the observers' ledger, dead letters and job queues are Quiver's own,
        # never entities of the API.
        schema = without_own_tables(schema, settings)
        self.schema = schema
        self.access = access
        self.statistics = statistics
        #: (role, claims) -> the engine serving them (see for_principal)
        self._views: dict[Any, GraphQLEngine] = {}
        #: Without ``auth.permissions`` every caller is served by this engine.
        self._unrestricted = settings.auth.permissions is None
        self.database = database
        self.dialect: Dialect = database.dialect
        self.settings = settings
        self.cursors = CursorCodec(settings.graphql.cursor_secret)
        self.catalog: Catalog = build_catalog(schema, mutations=settings.mutations.enabled)
        if access is not None:
            _restrict_mutations(self.catalog, access)
        declared = [resolver_of(r) for r in resolvers]
        _check_mutation_names(self.catalog, declared)
        self.graphql_schema: GraphQLSchema = build_graphql_schema(self.catalog, declared)
        if settings.subscriptions.enabled:
            self.graphql_schema = add_subscriptions(self.graphql_schema, self.catalog)
        #: Set when a mutation of this process commits: wakes the subscriptions.
        self.change_signal = ChangeSignal()
        self.mutations = MutationRunner(
            self.catalog, self.graphql_schema, self.dialect, settings.mutations, declared, access
        )
        self.list_sizes = _list_sizes(self.catalog, statistics or Statistics())
        self._rules = specified_rules_bounded() + self._extra_rules()
        self._cache: OrderedDict[tuple[str, str | None], Prepared] = OrderedDict()
        self._cache_size = _CACHE_ENTRIES
        #: The cache is bounded by the memory its documents hold too: one document of 15,000
        #: tokens holds megabytes, and each plan of a long list variable as much again.
        self._cache_bytes = settings.graphql.document_cache_mb * 2**20
        self._cache_weight = 0

    def for_principal(self, principal: Principal) -> GraphQLEngine:
        """The engine serving ``principal``: this one when its role is unrestricted (no
        ``auth.permissions``, or a key without a role), else one built once per (role, claims)
        whose schema holds only what the role may read and whose plans filter every table by
        the role's rows. It shares this engine's database, cursors and change signal."""
        if self.access is not None or self._unrestricted:
            return self
        key = principal.access_key
        view = self._views.get(key)
        if view is not None:
            return view
        grants = grants_for(self.settings.auth, principal.role, dict(principal.claims))
        if grants is None:
            self._views[key] = self  # asked once per (role, claims), not on every request
            return self
        access = Access(grants, self.catalog, self.graphql_schema, self.dialect)
        view = GraphQLEngine(
            grants.restrict(self.schema), self.database, self.settings, (), self.statistics, access
        )
        view.cursors = self.cursors
        view.change_signal = self.change_signal
        self._views[key] = view
        return view

    def _extra_rules(self) -> list[Any]:
        return list(validation_rules(self.settings.graphql, self.list_sizes))

    @classmethod
    async def open(
        cls,
        schema: Schema,
        settings: QuiverSettings,
        resolvers: Sequence[Callable[..., Any]] = (),
    ) -> GraphQLEngine:
        db = settings.database
        functions = settings.mutations.functions
        if functions and settings.mutations.enabled:
            from quiver.schema.functions import FunctionSpec, reflect_functions

            specs = [FunctionSpec(f.name, f.function, f.entity, f.description) for f in functions]
            found = await reflect_functions(db.url, specs, db.schemas or ("public",))
            schema = schema.model_copy(update={"mutations": found})
        database = await open_database(
            db.url,
            pool_min=db.pool_min,
            pool_max=db.pool_max,
            statement_timeout_ms=db.statement_timeout_ms,
            pool_timeout_ms=db.pool_timeout_ms,
            pool_reserved=db.reserved_connections,
            coalesce_max=db.coalesce_max if db.coalesce else 1,
            slow_statement_ms=db.slow_statement_ms,
        )
        try:
            statistics = await read_statistics(db.url, schema)
            return cls(schema, database, settings, resolvers, statistics)
        except BaseException:
            await database.close()
            raise

    async def close(self) -> None:
        await self.change_signal.close()
        await self.database.close()

    async def wake_on_changes(self) -> None:
        """On PostgreSQL, wake the subscriptions on every writer's change ``NOTIFY``."""
        if self.dialect.name == "postgresql":
            await self.change_signal.listen(self.settings.database.url)

    # ----- prepare -----
    def prepare(self, query: str, operation_name: str | None = None) -> Prepared:
        key = (query, operation_name)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        prepared = self._prepare(query, operation_name)
        self._cache[key] = prepared
        self._cache_weight += prepared.weight
        self._trim_cache()
        return prepared

    def _grow(self, prepared: Prepared, weight: int) -> None:
        """Count ``weight`` more bytes held by ``prepared`` (a plan it keeps)."""
        prepared.weight += weight
        if self._cache.get((prepared.query, prepared.operation_name)) is prepared:
            self._cache_weight += weight
            self._trim_cache()

    def _trim_cache(self) -> None:
        """Drop the oldest documents until the cache is within its entries and bytes."""
        while self._cache and (
            len(self._cache) > self._cache_size or self._cache_weight > self._cache_bytes
        ):
            _, dropped = self._cache.popitem(last=False)
            self._cache_weight -= dropped.weight

    def _prepare(self, query: str, operation_name: str | None) -> Prepared:
        p = Prepared(query, operation_name)
        p.weight = len(query) + len(operation_name or "")
        limit = self.settings.graphql.max_tokens
        try:
            # Bounded: reading and validating a document costs time in proportion to its tokens,
            # on the event loop.
            document = parse(query, max_tokens=limit)
        except GraphQLError as err:
            if err.message.endswith(_TOO_MANY_TOKENS):
                p.errors = [
                    _error(
                        f"The document has more than {limit} tokens, the limit. Send a smaller"
                        " document, or raise graphql.max_tokens.",
                        "TOKEN_LIMIT_EXCEEDED",
                    )
                ]
                p.errors[0]["extensions"]["limit"] = limit
            else:
                p.errors = [_graphql_error(err, "GRAPHQL_PARSE_FAILED")]
            return p
        operation = get_operation_ast(document, operation_name)
        if operation is not None:
            p.operation_type = operation.operation.value
        # Before validation: an operation type the API lacks says so, not "unknown type".
        if operation is not None and not self._serves(operation.operation):
            p.errors = [
                _error(
                    f"This API has no {operation.operation.value} operations; send a query.",
                    "OPERATION_NOT_SUPPORTED",
                )
            ]
            return p
        errors = validate(self.graphql_schema, document, self._rules)
        if errors:
            p.errors = [_validation_error(e) for e in errors]
            return p
        if operation is None:
            names = [
                d.name.value
                for d in document.definitions
                if isinstance(d, OperationDefinitionNode) and d.name
            ]
            if operation_name:
                msg = f"Unknown operation named '{operation_name}'."
            elif names:
                msg = "Must provide operation name if query contains multiple operations."
            else:
                msg = "The document contains no operation to run."
            p.errors = [_error(msg, "OPERATION_RESOLUTION_FAILURE")]
            return p
        p.document = document
        p.tokens = _tokens(document)
        p.weight += _BYTES_PER_TOKEN * p.tokens
        p.operation = operation
        p.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        simple: list[tuple[str, str, bool]] | None = []
        for var in operation.variable_definitions or ():
            t = type_from_ast(self.graphql_schema, var.type)
            if t is None:
                continue
            name = var.variable.name.value
            p.variable_types[name] = t  # type: ignore[assignment]
            inner = t.of_type if isinstance(t, GraphQLNonNull) else t
            inner_name = getattr(inner, "name", None)
            if simple is not None and var.default_value is None and inner_name in _SIMPLE:
                simple.append((name, str(inner_name), isinstance(t, GraphQLNonNull)))
            else:
                simple = None
        p.simple_variables = simple
        p.variable_row_counts = row_counts_from_variables(document)
        defaults = {
            v.variable.name.value: v.default_value for v in operation.variable_definitions or ()
        }
        p.cost = operation_cost(
            self.graphql_schema,
            document,
            operation,
            self.settings.graphql,
            defaults,
            self.list_sizes,
        )
        return p

    def _serves(self, kind: OperationType) -> bool:
        if kind == OperationType.MUTATION:
            return self.graphql_schema.mutation_type is not None
        if kind == OperationType.SUBSCRIPTION:
            return self.graphql_schema.subscription_type is not None
        return kind == OperationType.QUERY

    def cost_error(self, prepared: Prepared, variables: dict[str, Any]) -> dict[str, Any] | None:
        """The error of an operation whose row counts come from ``variables`` (coerced) and
        whose cost with them passes ``graphql.max_cost``; None when within it."""
        if not prepared.variable_row_counts or prepared.document is None:
            return None
        assert prepared.operation is not None
        limit = self.settings.graphql.max_cost
        cost = operation_cost(
            self.graphql_schema,
            prepared.document,
            prepared.operation,
            self.settings.graphql,
            variables,
            self.list_sizes,
        )
        if cost <= limit:
            return None
        body = _error(cost_message(cost, limit, with_variables=True), "COST_LIMIT_EXCEEDED")
        body["extensions"].update(limit=limit, cost=cost)
        return body

    # ----- execute -----
    async def execute(
        self,
        prepared: Prepared,
        variables: Mapping[str, Any] | None,
        context: RequestContext | None = None,
    ) -> Outcome:
        """Run ``prepared``; ``context`` says who asks (recorded in the change log)."""
        try:
            return await self._execute(prepared, variables, context)
        except Exception:
            # Never a traceback to the client: log it, answer with a code.
            log.exception("unexpected failure running an operation")
            body = _error("Internal server error.", "INTERNAL_SERVER_ERROR")
            return Outcome(orjson.dumps({"errors": [body]}), "internal_error")

    async def _execute(
        self,
        prepared: Prepared,
        variables: Mapping[str, Any] | None,
        context: RequestContext | None,
    ) -> Outcome:
        if prepared.errors:
            return Outcome(_errors_body(prepared.errors), "request_error")
        if prepared.static_body is not None:
            return Outcome(prepared.static_body, "data")
        operation = prepared.operation
        assert operation is not None
        coerced: dict[str, Any] = {}
        shape: tuple[tuple[str, Any], ...] | None = ()
        simple = (
            _coerce_simple(prepared.simple_variables, variables)
            if operation.variable_definitions
            else ({}, ())
        )
        if simple is not None:
            coerced, shape = simple
        else:
            result = get_variable_values(
                self.graphql_schema, operation.variable_definitions, dict(variables or {})
            )
            if isinstance(result, list):
                return Outcome(
                    _errors_body([_graphql_error(e, "BAD_USER_INPUT") for e in result]),
                    "request_error",
                )
            coerced, shape = result, None
        if operation.operation == OperationType.SUBSCRIPTION:
            body = _error(
                "Subscriptions are served over WebSocket with the graphql-transport-ws protocol"
                f" at {self.settings.graphql.path}; use a graphql-ws client.",
                "OPERATION_NOT_SUPPORTED",
            )
            return Outcome(_errors_body([body]), "request_error")
        if operation.operation == OperationType.MUTATION:
            written, ok = await self.mutations.run(
                self.database, operation, prepared.fragments, coerced, context
            )
            if ok:
                self.change_signal.notify()
            return Outcome(written, "data" if ok else "field_error")
        cost = prepared.cost
        if prepared.variable_row_counts and prepared.document is not None:
            limit = self.settings.graphql.max_cost
            cost = operation_cost(
                self.graphql_schema,
                prepared.document,
                operation,
                self.settings.graphql,
                coerced,
                self.list_sizes,
            )
            if cost > limit:
                body = _error(cost_message(cost, limit, with_variables=True), "COST_LIMIT_EXCEEDED")
                body["extensions"].update(limit=limit, cost=cost)
                return Outcome(_errors_body([body]), "request_error")
        if shape is None:
            shape = tuple((k, _shape(v, prepared.variable_types[k])) for k, v in coerced.items())
        steps = prepared.plans.get(shape)
        if steps is None:
            try:
                steps = plan_operation(
                    self.catalog,
                    self.graphql_schema,
                    self.dialect,
                    operation,
                    prepared.fragments,
                    coerced,
                    self.cursors,
                    self.access.rows if self.access is not None else None,
                )
            except PlanError as err:
                return self._bad_input(err)
            except RecursionError:  # a max_depth raised past what one statement can nest
                body = _error(
                    "The query nests too deeply to compile into one SQL statement (nest fewer "
                    "levels, or lower graphql.max_depth to refuse such queries at validation).",
                    "QUERY_TOO_COMPLEX",
                )
                return Outcome(_errors_body([body]), "request_error")
            if len(prepared.plans) < _PLAN_CACHE_PER_DOCUMENT:
                prepared.plans[shape] = steps
                # A plan holds about what its document does, and more per value of a list.
                self._grow(prepared, _BYTES_PER_TOKEN * (prepared.tokens + _values(shape)))
            if not operation.variable_definitions and all(s.static is not None for s in steps):
                prepared.static_body = _data_body([(s.key, s.static or b"null") for s in steps])
        try:
            for s in steps:
                for check in s.checks:
                    check.value(coerced)
            params = [[slot.value(coerced) for slot in s.slots] for s in steps]
        except PlanError as err:
            return self._bad_input(err)
        cheap = cost <= self.settings.graphql.cheap_cost
        return await self._run(prepared, steps, params, coerced, cheap)

    def _bad_input(self, err: PlanError) -> Outcome:
        body = _error(err.message, "BAD_USER_INPUT")
        if err.path:
            body["extensions"]["argumentPath"] = list(err.path)
        return Outcome(_errors_body([body]), "request_error")

    async def _run(
        self,
        prepared: Prepared,
        steps: list[RootStep],
        params: list[list[Any]],
        variables: dict[str, Any],
        cheap: bool,
    ) -> Outcome:
        results: list[Any]
        single = len(steps) == 1 and steps[0].sql and steps[0].cursors is None
        if single:
            # The common case, one root field read by one statement: its bytes as they come.
            only = steps[0]
            try:
                value = await self.database.fetch_json(
                    only.sql, params[0], cheap=cheap, pieces=only.pieces
                )
            except DatabaseError as err:
                results = [err]  # answered below, as with several root fields
            else:
                refused = stored_refusal(value) if only.marks and value is not None else None
                if refused is None:
                    return Outcome(_data_body([(only.key, value or b"null")]), "data")
                results = [refused]
        sql_steps = [(i, s) for i, s in enumerate(steps) if s.sql]
        values: list[bytes | None] = [s.static for s in steps]
        errors: list[dict[str, Any]] = []
        if single:
            pass  # its error is in results
        elif len(sql_steps) == 1:
            i, s = sql_steps[0]
            results = [
                await _guard(
                    self.database.fetch_json(s.sql, params[i], cheap=cheap, pieces=s.pieces)
                )
            ]
        else:
            results = await asyncio.gather(
                *(
                    _guard(self.database.fetch_json(s.sql, params[i], cheap=cheap, pieces=s.pieces))
                    for i, s in sql_steps
                )
            )
        results = [
            stored_refusal(r) or r if s.marks and isinstance(r, bytes) else r
            for (_, s), r in zip(sql_steps, results, strict=True)
        ]
        busy = next((r for r in results if isinstance(r, DatabaseBusyError)), None)
        if busy is not None:
            detail = busy.details[0]
            body = _error(
                f"The database is busy: {detail.message}. Retry shortly.", "DATABASE_BUSY"
            )
            return Outcome(_errors_body([body]), "busy")
        for (i, s), r in zip(sql_steps, results, strict=True):
            if isinstance(r, DatabaseError):
                # A filter or cursor value the column's type cannot read ("abc" for money).
                problem = (
                    typed_input_problem(s.typed_inputs, r.violation.message, params[i])
                    if isinstance(r, ConstraintError)
                    and r.violation.kind in ("value", "out_of_range")
                    else None
                )
                if (
                    problem is None
                    and isinstance(r, ConstraintError)
                    and r.violation.kind == "value"
                    and quoted_value(r.violation.message, params[i]) is not None
                ):
                    # A value the column's type reads in a form of its own (tsvector, a
                    # list of a type that is not text) that it could not read.
                    problem = (
                        f"a value given cannot be read as its column's type: {r.violation.message}"
                    )
                if (
                    problem is None
                    and isinstance(r, ConstraintError)
                    and r.violation.kind == "check"
                ):
                    # A read breaks no CHECK but a domain's, casting a given value to it
                    # (contains: [0] for an array of a domain of positive integers).
                    problem = (
                        f"a value given is not one of its column's type: {r.violation.message}"
                    )
                if problem is not None:
                    errors.append(_error(problem, "BAD_USER_INPUT", path=[s.key]))
                else:
                    errors.append(self._database_error(r, s.key))
                values[i] = b"null"
            elif r is not None and s.cursors is not None:
                values[i] = sign_cursors(r, s.cursors, self.cursors)
            else:
                values[i] = r if r is not None else b"null"
        for i, s in enumerate(steps):
            if s.introspection:
                values[i] = self._introspect(prepared, s.key, variables)
        if errors:
            # Root list fields are non-null, so a failed root field nulls the whole data.
            return Outcome(_errors_body(errors, data=None), "field_error")
        return Outcome(
            _data_body([(s.key, v or b"null") for s, v in zip(steps, values, strict=True)]), "data"
        )

    def _database_error(self, err: DatabaseError, key: str) -> dict[str, Any]:
        if isinstance(err, StatementTimeoutError):
            return _error(
                "The query ran past the statement time limit.", "STATEMENT_TIMEOUT", path=[key]
            )
        if isinstance(err, QueryTooComplexError | ParameterError):
            code = (
                "QUERY_TOO_COMPLEX" if isinstance(err, QueryTooComplexError) else "BAD_USER_INPUT"
            )
            detail = err.details[0]
            return _error(
                f"{detail.message} ({detail.fix})" if detail.fix else detail.message,
                code,
                path=[key],
            )
        if isinstance(err, StoredValueError):
            detail = err.details[0]
            log.error("stored value on root field %s: %s", key, detail.message)
            return _error(f"{detail.message} ({detail.fix})", "DATABASE_ERROR", path=[key])
        log.error("database error on root field %s: %s", key, err)
        return _error(DATABASE_FAILED, "DATABASE_ERROR", path=[key])

    def _introspect(self, prepared: Prepared, key: str, variables: dict[str, Any]) -> bytes:
        operation = prepared.operation
        document = prepared.document
        assert operation is not None and document is not None
        selections = tuple(
            s
            for s in operation.selection_set.selections
            if isinstance(s, FieldNode) and (s.alias.value if s.alias else s.name.value) == key
        )
        op = OperationDefinitionNode(
            operation=operation.operation,
            name=operation.name,
            variable_definitions=operation.variable_definitions,
            directives=operation.directives,
            selection_set=SelectionSetNode(selections=selections),
        )
        doc = DocumentNode(definitions=(op, *prepared.fragments.values()))
        result = execute_sync(self.graphql_schema, doc, variable_values=variables)
        data = result.data or {}
        return orjson.dumps(data.get(key))


def _tokens(document: DocumentNode) -> int:
    """How many tokens ``document`` keeps (graphql-core links them all from its location)."""
    count = 0
    token = document.loc.start_token if document.loc is not None else None
    while token is not None:
        count += 1
        token = token.next
    return count


def _values(shape: Any) -> int:
    """How many values a variables' shape holds (a list's items each count)."""
    if isinstance(shape, tuple):
        return sum(_values(item) for item in shape)
    return 1


def _restrict_mutations(catalog: Catalog, access: Access) -> None:
    """Only the mutations the role's grants allow stay in ``catalog``."""
    allowed = {
        "create": "insert",
        "create_many": "insert",
        "update": "update",
        "update_many": "update",
        "delete": "delete",
        "delete_many": "delete",
    }
    for name, m in list(catalog.mutation_fields.items()):
        grant = access.grants.entities.get(m.entity.name)
        if grant is None or not getattr(grant, allowed[m.kind]):
            del catalog.mutation_fields[name]
    catalog.function_mutations.clear()


def _list_sizes(catalog: Catalog, statistics: Statistics) -> dict[tuple[str, str], int]:
    """Expected lengths of lists without a row count, by (GraphQL type, field): a root list or
    connection has its table's rows, a to-many relation its children per parent row."""
    sizes: dict[tuple[str, str], int] = {}
    for name, root in catalog.root_fields.items():
        rows = statistics.rows.get(root.entity.name)
        if rows is not None and root.kind in ("list", "connection"):
            sizes[("Query", name)] = rows
    for (entity, relation), fanout in statistics.fanout.items():
        sizes[(entity, relation)] = fanout
    return sizes


def _check_mutation_names(catalog: Catalog, resolvers: Sequence[ResolverMutation]) -> None:
    """Every mutation has a name of its own and answers an entity the schema serves."""
    taken: dict[str, str] = {name: "a generated mutation" for name in catalog.mutation_fields}
    problems: list[ErrorDetail] = []
    types: dict[str, str] = {name: "a type GraphQL or Quiver has" for name in RESERVED_TYPE_NAMES}
    for entity in catalog.entities:
        types.update(
            {entity + suffix: f"a type of entity {entity}" for suffix in GENERATED_TYPE_SUFFIXES}
        )
        types[entity] = f"the type of entity {entity}"
    for fm in catalog.function_mutations.values():
        result = function_result_type_name(fm.name)
        if result in types:
            problems.append(
                ErrorDetail(
                    f"the function mutation {fm.name!r} answers with type {result!r}, which is "
                    f"also {types[result]}",
                    "mutations.functions",
                    "give it another name",
                )
            )
        types[result] = f"the result of function mutation {fm.name!r}"
        if fm.name in taken:
            problems.append(
                ErrorDetail(
                    f"the function mutation {fm.name!r} has the name of {taken[fm.name]}",
                    "mutations.functions",
                    "give it another name",
                )
            )
        if fm.entity is not None and fm.entity not in catalog.entities:
            problems.append(
                ErrorDetail(
                    f"the function mutation {fm.name!r} answers unknown entity {fm.entity!r}",
                    "mutations.functions",
                    did_you_mean(fm.entity, catalog.entities, most=3, fallback="name an entity"),
                )
            )
        taken[fm.name] = "a function mutation"
    for r in resolvers:
        where = str(r.location) if r.location else r.name
        if r.name in taken:
            problems.append(
                ErrorDetail(
                    f"the Python mutation {r.name!r} has the name of {taken[r.name]}",
                    where,
                    "pass another name: @quiver.mutation(name=...)",
                )
            )
        if r.entity not in catalog.entities:
            problems.append(
                ErrorDetail(
                    f"the Python mutation {r.name!r} answers unknown entity {r.entity!r}",
                    where,
                    did_you_mean(r.entity, catalog.entities, most=3, fallback="name an entity"),
                )
            )
        taken[r.name] = "a Python mutation"
    if problems:
        raise ConfigError(problems)


async def _guard(awaitable: Any) -> Any:
    try:
        return await awaitable
    except DatabaseError as err:
        return err


def _data_body(values: list[tuple[str, bytes]]) -> bytes:
    if len(values) == 1:  # one root field, the usual request: one concatenation
        key, value = values[0]
        return b'{"data":{"' + key.encode() + b'":' + value + b"}}"
    parts = [b'{"data":{']
    for i, (key, value) in enumerate(values):
        if i:
            parts.append(b",")
        parts.append(b'"' + key.encode() + b'":')
        parts.append(value)
    parts.append(b"}}")
    return b"".join(parts)
