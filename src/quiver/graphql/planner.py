"""Plan a GraphQL operation into one SQL statement per root field.

The planner walks the selection set with the catalog and builds a fragment tree whose JSON the
database builds: objects with the dialect's JSON object function, lists with its array aggregate,
relations as correlated subqueries. Argument values never enter the SQL text: literals and
variables become parameter slots. What *shapes* the SQL (which filter keys are present, list
lengths, enum values, nulls) is part of the plan-cache key, so one compiled statement serves every
request with the same shape.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import ipaddress
import math
import re
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graphql.execution.values import get_argument_values, get_directive_values
from graphql.type import GraphQLIncludeDirective, GraphQLSkipDirective

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
)
from quiver.graphql.cursors import CursorCodec, CursorError, CursorPlacement
from quiver.graphql.typesystem import ORDER_DIRECTIONS, enum_value_names, sum_scalar
from quiver.schema.catalog import Catalog, RootField
from quiver.schema.ir import TEXT_SCALARS, Entity, Relation, Scalar
from quiver.schema.ir import Field as IrField
from quiver.sql.build import OrderItem, json_object, literal_string, order_by_clause, template
from quiver.sql.changelog import JSON_NULLS
from quiver.sql.dialects import Dialect
from quiver.sql.fragment import (
    Fragment,
    Param,
    Piece,
    Slot,
    all_of,
    any_of,
    compile_split,
    compile_sql,
    ident,
    join,
    param,
    sql,
)

__all__ = [
    "BIT_TYPE",
    "PG_TEXT_INPUT",
    "PlanError",
    "RootStep",
    "RowRestriction",
    "collect_root_fields",
    "collect_sub_fields",
    "internal_columns",
    "pg_date_text",
    "pg_text_array_element",
    "plan_filter",
    "plan_images",
    "plan_keys_where",
    "plan_operation",
    "plan_rows_by_key",
    "quoted_value",
    "typed_input_problem",
    "write_value_check",
]


_T = TypeVar("_T")


class PlanError(Exception):
    """A request the schema accepts but whose values cannot run (e.g. ``eq: null``)."""

    def __init__(self, message: str, path: tuple[str | int, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


#: The rows of an entity a caller may see, as a condition over the alias given (None: every
#: row). Every table the planner reads goes through it (see :meth:`_Planner.table`).
RowRestriction = Callable[[Entity, str], Fragment | None]


@dataclass(frozen=True)
class RootStep:
    """One root field: its response key and either a static JSON value or a SQL statement."""

    key: str
    static: bytes | None = None
    sql: str = ""
    slots: tuple[Slot, ...] = ()
    #: ``sql`` cut at its placeholders (see :func:`~quiver.sql.fragment.compile_split`): the
    #: database may run it with other requests' statements of the same text as one.
    pieces: tuple[str, ...] = ()
    introspection: bool = False
    #: Slots whose values must be valid even when the SQL does not use them (e.g. a cursor
    #: given to a connection whose selection needs no page window).
    checks: tuple[Slot, ...] = ()
    #: Where the JSON holds cursors to sign (a connection selecting cursors).
    cursors: CursorPlacement | None = None
    #: The argument paths (``where.price.gt``, ``after``) whose values the database casts to
    #: their column's type, with the type: a value it cannot read is the request's fault.
    typed_inputs: tuple[tuple[str, str], ...] = ()
    #: Whether the JSON may hold a value its field's scalar cannot carry, marked (MariaDB's
    #: TIME beyond a day, zero dates): the answer is searched for it
    #: (:func:`~quiver.sql.database.stored_refusal`).
    marks: bool = False


@dataclass(frozen=True, slots=True)
class Leaf:
    """An argument value and the slot that reads it at run time."""

    value: Any
    slot: Slot


def plan_operation(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    cursors: CursorCodec,
    restrict: RowRestriction | None = None,
) -> list[RootStep]:
    planner = _Planner(catalog, graphql_schema, dialect, fragments, variables, cursors)
    planner.restrict = restrict
    steps: list[RootStep] = []
    query_type = graphql_schema.query_type
    assert query_type is not None
    for key, nodes in planner.collect(operation.selection_set).items():
        name = nodes[0].name.value
        if name == "__typename":
            steps.append(RootStep(key, static=b'"Query"'))
            continue
        if name in ("__schema", "__type"):
            steps.append(RootStep(key, introspection=True))
            continue
        root = catalog.root_fields[name]
        planner.reset()
        frag = planner.root(root, query_type.fields[name], nodes)
        text, slots, pieces = compile_split(frag, dialect)
        steps.append(
            RootStep(
                key,
                sql=text,
                slots=tuple(slots),
                pieces=pieces,
                checks=tuple(planner.checks),
                cursors=planner.placement,
                typed_inputs=tuple(planner.typed_inputs),
                marks=planner.marks,
            )
        )
    return steps


def plan_filter(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    entity: Entity,
    alias: str,
    where: Mapping[str, Any],
    restrict: RowRestriction | None = None,
) -> Fragment | None:
    """The condition of a coerced ``<Entity>Where`` value over rows of ``entity`` named
    ``alias``: the same filter tree a list field's ``where`` argument builds, every value a
    parameter (related rows that ``restrict`` hides are never tested). Raises
    :class:`PlanError` for values that cannot run (``eq: null``)."""
    # a filter reads no cursor: the process key is as good as any
    planner = _Planner(catalog, graphql_schema, dialect, {}, {}, CursorCodec(None))
    planner.restrict = restrict
    if alias[:1] == "t" and alias[1:].isdigit():
        # Relation filters' subqueries name their rows t<n>: never the caller's alias, which
        # an inner table of that name would shadow (the correlation would compare it to
        # itself and the filter keep every row).
        planner._alias_count = int(alias[1:]) + 1
    return planner.where(entity, alias, _wrap(dict(where), None, None), ("where",))


def plan_images(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    entity: Entity,
    source: Fragment,
    where: Mapping[str, Any] | None,
    nodes: list[FieldNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    restrict: RowRestriction | None = None,
    typed_inputs: list[tuple[str, str]] | None = None,
    ordinal: str = "__n",
) -> tuple[str, list[Any]]:
    """A SELECT over ``source``, a derived table holding rows of ``entity``'s columns and an
    ``ordinal`` column (row images decoded from the change log), answering per row, in its
    order: the ordinal, 1 or 0 as the row matches the coerced ``where`` value (the filter tree a
    list field's ``where`` builds), and the row as the selection of ``nodes`` (JSON built by
    the database, nested relations included; NULL without ``nodes``). ``typed_inputs``, when
    given, receives where filter values are cast to their String column's type (for
    :func:`typed_input_problem`)."""
    planner = _Planner(catalog, graphql_schema, dialect, fragments, variables)
    planner.restrict = restrict
    a = planner.alias()
    cond = planner.where(entity, a, _wrap(dict(where), None, None), ("where",)) if where else None
    # A row the caller may not see matches no subscription of its, and shows as null.
    seen = restrict(entity, a) if restrict is not None else None
    cond = _and([cond, seen])
    match = sql("CASE WHEN ", cond, " THEN 1 ELSE 0 END") if cond is not None else sql("1")
    obj = planner.object_json(entity, a, planner.sub_fields(nodes)) if nodes else sql("NULL")
    if seen is not None and nodes:
        obj = sql("CASE WHEN ", seen, " THEN ", obj, " END")
    frag = sql(
        "SELECT ",
        ident(a, ordinal),
        ", ",
        match,
        ", ",
        obj,
        " FROM (",
        source,
        f") {a} ORDER BY ",
        ident(a, ordinal),
    )
    text, slots = compile_sql(frag, dialect)
    if typed_inputs is not None:
        typed_inputs.extend(planner.typed_inputs)
    return text, [slot.value(variables) for slot in slots]


def collect_root_fields(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> dict[str, list[FieldNode]]:
    """The root fields of ``operation`` by response key, fragments spread, @skip/@include
    applied, in document order."""
    planner = _Planner(catalog, graphql_schema, dialect, fragments, variables)
    return planner.collect(operation.selection_set)


def collect_sub_fields(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    nodes: list[FieldNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: dict[str, Any],
) -> dict[str, list[FieldNode]]:
    """The fields selected under ``nodes`` by response key, as :func:`collect_root_fields`."""
    planner = _Planner(catalog, graphql_schema, dialect, fragments, variables)
    return planner.sub_fields(nodes)


def plan_rows_by_key(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    entity: Entity,
    keys: Sequence[tuple[Any, ...]],
    nodes: list[FieldNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    restrict: RowRestriction | None = None,
    json_nulls: Sequence[IrField] = (),
    checked: bool = True,
) -> tuple[str, list[Any]]:
    """A SELECT of one JSON array: the rows of ``entity`` whose primary key is one of ``keys``
    (tuples in key-column order), in the order of ``keys``, each as the selection of ``nodes``
    (nested relations included). With ``json_nulls`` (JSON fields), each row also has the key
    :data:`~quiver.sql.changelog.JSON_NULLS`: an object saying of each of those fields whether
    it holds the JSON value null (true or 1). Without ``checked``, a value its field's scalar
    cannot carry is read as the database writes it, never marked (see :attr:`RootStep.marks`);
    with it, the answer may hold marked values. Returns the text and its parameter values;
    ``keys`` must not be empty (no key: the answer is ``[]`` without asking the database)."""
    if not keys:
        raise ValueError("plan_rows_by_key needs at least one key")
    planner = _Planner(catalog, graphql_schema, dialect, fragments, variables)
    planner.restrict = restrict
    planner.checked = checked
    a = planner.alias()
    pairs = planner.object_pairs(entity, a, planner.sub_fields(nodes))
    if json_nulls:
        tests = [(f.name, template(dialect.json_null_test, ident(a, f.column))) for f in json_nulls]
        pairs.append((JSON_NULLS, json_object(dialect, tests)))
    obj = json_object(dialect, pairs)
    matches = [
        _and(
            [sql(ident(a, c), " = ", param(v)) for c, v in zip(entity.primary_key, k, strict=True)]
        )
        for k in keys
    ]
    cond = any_of([m for m in matches if m is not None])
    order: list[OrderItem] = []
    if len(keys) > 1:
        cases = [sql(" WHEN ", m, f" THEN {i}") for i, m in enumerate(matches) if m is not None]
        order.append((sql("CASE", *cases, " END"), "ASC", "LAST"))
    body = planner.array_of(obj, planner.table(entity), a, cond, order, None, None, False)
    text, slots = compile_sql(sql("SELECT ", body), dialect)
    return text, [slot.value(variables) for slot in slots]


def plan_keys_where(
    catalog: Catalog,
    graphql_schema: GraphQLSchema,
    dialect: Dialect,
    entity: Entity,
    definition: GraphQLField,
    node: FieldNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    restrict: RowRestriction | None = None,
    touch: RowRestriction | None = None,
) -> tuple[str, list[Any]]:
    """A SELECT of the primary keys of the rows of ``entity`` matching the ``where`` argument
    of ``node``, in key order, locked until the transaction ends where the dialect can.
    Only rows ``restrict`` shows and ``touch`` allows (the rows an update or delete may
    write) are taken; related rows ``restrict`` hides are never tested by the filter."""
    planner = _Planner(catalog, graphql_schema, dialect, fragments, variables)
    planner.restrict = restrict
    a = planner.alias()
    args = planner.args(definition, node)
    # The rows themselves are read from the table (a lock takes tables, not derived ones):
    # what the caller may see and touch is part of the WHERE.
    seen = restrict(entity, a) if restrict is not None else None
    allowed = touch(entity, a) if touch is not None else None
    where = _and([planner.where(entity, a, _value(args.get("where")), ("where",)), seen, allowed])
    keys = [sql(ident(a, c)) for c in entity.primary_key]
    frag = sql(
        "SELECT ",
        join(", ", keys),
        " FROM ",
        ident(entity.db_schema, entity.source) if entity.db_schema else ident(entity.source),
        f" {a}",
        sql(" WHERE ", where) if where is not None else "",
        " ORDER BY ",
        join(", ", keys),
        dialect.lock_rows,
    )
    text, slots = compile_sql(frag, dialect)
    return text, [slot.value(variables) for slot in slots]


#: Where a database keeps a value loosely, a filter compares it as it is served: MariaDB
#: and SQLite booleans are integers (a column holding 2 or -1 is served true, SQLite's text
#: 'yes' false), and a SQLite BLOB column may hold text, served as the Base64 of its bytes.
_BOOLEAN_SERVED = "(CASE WHEN {0} IS NULL THEN NULL WHEN {0} THEN 1 ELSE 0 END)"
_SERVED_COMPARE: dict[str, dict[Scalar, str]] = {
    "mysql": {Scalar.BOOLEAN: _BOOLEAN_SERVED},
    "sqlite": {Scalar.BOOLEAN: _BOOLEAN_SERVED, Scalar.BASE64: "CAST({} AS BLOB)"},
}

#: The forms a String column of a type with an order of its own reads, by type.
_TYPED_EXAMPLES = {
    "money": '"$12.34" or "12.34"',
    "interval": '"1 day 02:00:00" or "26 hours"',
    "inet": '"192.168.1.5" or "10.0.0.0/8"',
    "cidr": '"10.0.0.0/8"',
    "macaddr": '"08:00:2b:01:02:03"',
    "macaddr8": '"08:00:2b:01:02:03:04:05"',
    "oid": '"42"',
    "xid8": '"42"',
    "pg_lsn": '"16/B374D848"',
}


def quoted_value(message: str, values: Sequence[Any]) -> str | None:
    """The text of ``values`` (or of an element of a list of them) that the database's
    ``message`` quotes: the value it could not read; None when it quotes none."""
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    return next((v for v in flat if isinstance(v, str) and f'"{v}"' in message), None)


def typed_input_problem(
    typed_inputs: Sequence[tuple[str, str]], message: str, values: Sequence[Any]
) -> str | None:
    """What a request gave wrong, when ``message`` (the database's refusal of a statement run
    with ``values``; ``typed_inputs`` as :attr:`RootStep.typed_inputs`) says it could not read
    one of ``values`` as the type of the String
    column it was cast to; None when no value was cast (``typed_inputs`` is empty)."""
    if not typed_inputs:
        return None
    given = quoted_value(message, values)
    named = [(p, t) for p, t in typed_inputs if re.search(rf"\b{re.escape(t)}\b", message)]
    paths, types = zip(*(named or typed_inputs), strict=True)
    db_type = types[0]
    where = " or ".join(dict.fromkeys(paths))
    example = _TYPED_EXAMPLES.get(db_type)
    if example is None and db_type.endswith("range"):
        example = (
            '"[1,5)" or "empty"'
            if "int" in db_type
            else '"[2024-01-01,2024-02-01)" or "empty"'
            if db_type.startswith(("ts", "date"))
            else '"[1.5,2.5)" or "empty"'
        )
    forms = f", e.g. {example}" if example else ""
    if given is None:
        if '"' not in message:
            return None  # division by zero, an overflow: nothing read from text
        # The database quotes a part of the value ("1" of the range "(1,2)"): a value it could
        # not read is one given for a field compared as its type (stored values are valid).
        return (
            f"a value given for {where} is not a valid {db_type} value ({message}): the field"
            f" compares as its database type {db_type}; give the value as the field serves"
            f" it{forms}"
        )
    shown = given if len(given) <= 80 else given[:77] + "..."
    return (
        f"{shown!r} is not a valid {db_type} value ({where}): the field compares as its database"
        f" type {db_type}; give the value as the field serves it{forms}"
    )


#: The longest path into a ``where`` argument (``where.and.0.not.author.name``): SQLite's
#: parser refuses a query of about 50 nested parentheses, and no useful filter is deeper.
MAX_FILTER_DEPTH = 32


def pg_date_text(dialect: Dialect, f: IrField) -> tuple[Callable[[Any], Any], str] | None:
    """For a date or timestamp column of a database with infinite dates (PostgreSQL): a
    transform of each value given for it into the text the database reads, and the type to
    read it as. Its driver would send the first and last values Python has (0001-01-01,
    9999-12-31) as the infinities, so values travel as text: "infinity" and "-infinity" as
    they are, a DateTime with an offset as the same instant in UTC (with its offset for a
    timestamptz), one without as UTC."""
    if not dialect.infinite_dates or f.scalar not in (Scalar.DATE, Scalar.DATETIME):
        return None
    declared = (f.db_type or "").strip().lower()
    zoned = declared in ("timestamptz", "timestamp with time zone")
    type_name = "date" if f.scalar == Scalar.DATE else "timestamptz" if zoned else "timestamp"

    def one(value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value  # "infinity", "-infinity": the scalars take no other text
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                try:
                    value = value.astimezone(dt.UTC).replace(tzinfo=None)
                except OverflowError:
                    raise PlanError(
                        f"{f.scalar.value} {value.isoformat()} is before the year 1 in UTC:"
                        " give a later value"
                    ) from None
            return value.isoformat() + ("+00:00" if zoned else "")
        if isinstance(value, dt.date):
            return value.isoformat()
        return value

    def transform(value: Any) -> Any:
        return [one(v) for v in value] if isinstance(value, list) else one(value)

    return transform, type_name


#: PostgreSQL built-in types served as their text, whose input the driver cannot take as text.
PG_TEXT_INPUT = re.compile(
    r"interval|point|line|lseg|box|path|polygon|circle|oid"
    r"|(?:int4|int8|num|ts|tstz|date)(?:multi)?range"
)
BIT_TYPE = re.compile(r"(?:bit|varbit|bit varying)(?:\s*\((\d+)\))?", re.I)


def pg_text_array_element(f: IrField) -> str | None:
    """The element type of a PostgreSQL array column served as a list of text whose driver
    codec takes other values (timedelta, BitString, Range): such arrays are written from
    text, and compared as text. Bit strings are read as ``bit varying``, which the column's
    width then checks."""
    element = (f.db_type or "").strip().lower()
    if not f.is_list or f.scalar != Scalar.STRING:
        return None
    if BIT_TYPE.fullmatch(element):
        return "bit varying"
    return element if PG_TEXT_INPUT.fullmatch(element) else None


def column_of(alias: str, f: IrField) -> Fragment:
    """Column ``f`` of the table aliased ``alias`` as queries read it: cast to the type it is
    read as (``read_as``) where its own type has no operators. An array is sliced whole
    (``[:]``), which numbers its elements from 1 as a filter's array is: oidvector and
    int2vector number theirs from 0, and arrays of other bounds are never equal."""
    col = sql(ident(alias, f.column))
    if f.read_as is None:
        return col
    schema, name = f.read_as
    if f.is_list:
        return sql("(CAST(", col, " AS ", ident(schema, name), "[]))[:]")
    return sql("CAST(", col, " AS ", ident(schema, name), ")")


def write_value_check(dialect: Dialect, f: IrField) -> Callable[[Any], Any] | None:
    """What a value written to ``f`` must satisfy before it reaches the database (the same
    rules as a filter value: no NUL in text, finite floats, dates the driver can send)."""
    return _value_check(dialect, f, writing=True)


# ----- LIKE patterns: user patterns escape with backslash; SQL uses '!' everywhere -----
def _escape_like(value: str) -> str:
    return value.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _translate_like(pattern: str) -> str:
    out: list[str] = []
    chars = iter(pattern)
    for c in chars:
        if c == "\\":
            nxt = next(chars, None)
            out.append("!" + nxt if nxt is not None else "!\\")
        elif c == "!":
            out.append("!!")
        else:
            out.append(c)
    return "".join(out)


_LIKE_TRANSFORMS: dict[str, Callable[[str], str]] = {
    "like": _translate_like,
    "ilike": _translate_like,
    "startsWith": lambda v: _escape_like(v) + "%",
    "endsWith": lambda v: "%" + _escape_like(v),
    "contains": lambda v: "%" + _escape_like(v) + "%",
}
_COMPARISONS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass(frozen=True, slots=True)
class _Key:
    """One ORDER BY key: its expression, direction, null placement and the field it reads."""

    expr: Fragment
    direction: str
    nulls: str
    field: IrField
    #: The GraphQL type whose field ``field`` is.
    entity: str


def _cursor_reader(
    codec: CursorCodec, tag: str, count: int, name: str
) -> Callable[[Any], list[Any]]:
    """A slot transform: a cursor argument as its order-key values, or a PlanError."""

    def read(value: Any) -> list[Any]:
        try:
            return codec.decode(tag, value, count)
        except CursorError as err:
            shown = value if not isinstance(value, str) or len(value) <= 80 else value[:77] + "..."
            raise PlanError(
                f"invalid cursor {shown!r} for {name}: {err}; page with the cursors this"
                " connection returns, with the same orderBy",
                (name,),
            ) from None

    return read


def _reject_nul(value: Any) -> Any:
    """Text values must be valid UTF-8 without NUL: databases cut or refuse anything else."""
    for t in value if isinstance(value, list) else [value]:
        if not isinstance(t, str):
            continue
        if "\x00" in t:
            raise PlanError("strings cannot contain the NUL character (\\u0000); remove it")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise PlanError(
                f"the string {t!r} is not valid Unicode (a lone surrogate); send UTF-8 text"
            ) from None
    return value


def _each(check: Callable[[Any], None]) -> Callable[[Any], Any]:
    """A slot transform applying ``check`` to a value, or to each item of a list."""

    def transform(value: Any) -> Any:
        for v in value if isinstance(value, list) else [value]:
            check(v)
        return value

    return transform


def _check_finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise PlanError(
            f"{value} is not a finite Float: GraphQL floats are finite; give a number within"
            " ±1.7976931348623157e308"
        )


def _check_single(value: Any) -> None:
    _check_finite(value)
    if isinstance(value, int | float):
        try:
            struct.pack("<f", value)
        except OverflowError:
            raise PlanError(
                f"{value} is beyond the range of a single-precision float column"
                " (±3.4028235e38), which compares values as single floats: give a number"
                " within that range"
            ) from None


#: The databases whose decimal type holds NaN and the infinities (PostgreSQL's numeric).
_NON_FINITE_NUMERICS = frozenset({"postgresql"})


def _check_finite_decimal(value: Any) -> None:
    if isinstance(value, decimal.Decimal) and not value.is_finite():
        raise PlanError(
            f"the Decimal {value} is not a number this database's decimal type holds (only"
            " PostgreSQL's numeric has NaN and the infinities): give a finite value"
        )


def _decimal_range(digits: tuple[int, int]) -> Callable[[Any], None]:
    before, after = digits

    def check(value: Any) -> None:
        if not isinstance(value, decimal.Decimal) or not value.is_finite() or value.is_zero():
            return
        exponent = value.normalize().as_tuple().exponent
        assert isinstance(exponent, int)
        if value.adjusted() >= before or exponent < -after:
            raise PlanError(
                f"the Decimal {value} is beyond what the database's numeric type can compare"
                f" (at most {before} digits before the decimal point and {after} after):"
                " give a value within that range"
            )

    return check


def _decimal_within(precision: int, scale: int) -> Callable[[Any], Any]:
    """A slot transform sending a decimal beyond a column of ``precision`` and ``scale`` as
    one within it that compares alike with every value the column can hold: a larger one as
    ±10**(precision - scale), one with more decimals as the midpoint of the two column values
    around it (no column value equals it, and the same ones are below and above)."""
    top = decimal.Decimal(10) ** (precision - scale)
    step = decimal.Decimal(1).scaleb(-scale)
    exact = decimal.Context(prec=precision + 2)

    def one(value: Any) -> Any:
        if not isinstance(value, decimal.Decimal) or not value.is_finite():
            return value
        if value.copy_abs() >= top:
            return top.copy_sign(value)
        below = value.quantize(step, rounding=decimal.ROUND_FLOOR, context=exact)
        return below if below == value else exact.add(below, step / 2)

    def transform(value: Any) -> Any:
        return [one(v) for v in value] if isinstance(value, list) else one(value)

    return transform


def _infinite_dates(
    scalar: Scalar, dialect: Dialect, *, writing: bool = False
) -> Callable[[Any], Any]:
    """``"infinity"`` and ``"-infinity"`` as the values the driver sends as infinite dates,
    where the database has them; the values the driver spends on them are refused."""
    kind = dt.datetime if scalar == Scalar.DATETIME else dt.date
    ends = {"infinity": kind.max, "-infinity": kind.min}

    def one(value: Any) -> Any:
        if isinstance(value, str):
            if not dialect.infinite_dates:
                raise PlanError(
                    f"{scalar.value} {value!r}: only PostgreSQL has infinite dates;"
                    " give an ISO 8601 value"
                )
            return ends[value]
        if (
            dialect.infinite_dates
            and isinstance(value, kind)
            and (value.replace(tzinfo=None) if isinstance(value, dt.datetime) else value)
            in (kind.min, kind.max)
        ):
            sent = f"{'-' if value.year == 1 else ''}infinity"
            if writing:
                raise PlanError(
                    f"{scalar.value} {value.isoformat()} cannot be written on PostgreSQL: its"
                    f' driver sends it as {sent}; write "{sent}" if you mean it, or another'
                    " value"
                )
            raise PlanError(
                f"{scalar.value} {value.isoformat()} cannot be compared on PostgreSQL: its"
                f" driver sends it as {sent}; compare with"
                ' the next value (e.g. gt/lt) or with "-infinity"/"infinity"'
            )
        return value

    def transform(value: Any) -> Any:
        return [one(v) for v in value] if isinstance(value, list) else one(value)

    return transform


def _pattern_limit(limit: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value.encode("utf-8")) > limit:
            raise PlanError(
                f"the pattern is {len(value.encode('utf-8'))} bytes long; this database compares"
                f" LIKE patterns of at most {limit} bytes: shorten it, or use contains,"
                " startsWith or endsWith, which take text of any length"
            )
        return value

    return check


def _non_negative(name: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value < 0:
            raise PlanError(f"{name} must be zero or more, got {value}")
        return value

    return check


def _value_check(
    dialect: Dialect, f: IrField, *, writing: bool = False
) -> Callable[[Any], Any] | None:
    if f.scalar in TEXT_SCALARS:
        typed = None if writing else _typed_text_check(f)
        if typed is not None:
            return lambda v: _each(typed)(_reject_nul(v))
        return _reject_nul
    if f.scalar == Scalar.FLOAT:
        single = dialect.single_floats
        if single and not writing and re.fullmatch(single, (f.db_type or "").lower()):
            return _each(_check_single)
        return _each(_check_finite)
    if f.scalar == Scalar.DECIMAL and dialect.decimal_digits is not None:
        return _each(_decimal_range(dialect.decimal_digits))
    if f.scalar == Scalar.DECIMAL and dialect.name not in _NON_FINITE_NUMERICS:
        finite = _each(_check_finite_decimal)
        width = None if writing else dialect.decimal_width(f.db_type)
        if width is None:
            return finite
        within = _decimal_within(*width)
        return lambda v: within(finite(v))
    if f.scalar in (Scalar.DATE, Scalar.DATETIME):
        return _infinite_dates(f.scalar, dialect, writing=writing)
    return None


_BITS = re.compile(r"bit\(([0-9]+)\)")


def _typed_text_check(f: IrField) -> Callable[[Any], Any] | None:
    """A check of a value cast to ``f``'s type where the database would not refuse one it
    cannot read (MariaDB reads ``CONV('abc', 2, 10)`` as 0 and an invalid INET6 as NULL)."""
    db_type = (f.db_type or "").lower()
    bits = _BITS.fullmatch(db_type)
    if bits is not None and int(bits.group(1)) > 1:
        width = int(bits.group(1))

        def binary_digits(value: Any) -> Any:
            if not (isinstance(value, str) and 0 < len(value) <= width) or value.strip("01"):
                raise PlanError(
                    f"{value!r} is not a value of {f.name}, a {db_type}: give up to {width}"
                    f" binary digits, as the field is served (e.g. {'0' * (width - 3)}101)"
                )
            return value

        return binary_digits
    if db_type in ("inet4", "inet6"):
        kind = ipaddress.IPv4Address if db_type == "inet4" else ipaddress.IPv6Address

        def address(value: Any) -> Any:
            try:
                kind(value)
            except ValueError:
                example = "192.168.1.5" if db_type == "inet4" else "2001:db8::1 or ::ffff:1.2.3.4"
                raise PlanError(
                    f"{value!r} is not a value of {f.name}, an {db_type} address: give it as"
                    f" the field is served, e.g. {example}"
                ) from None
            return value

        return address
    return None


@dataclass
class _Planner:
    catalog: Catalog
    gql: GraphQLSchema
    dialect: Dialect
    fragments: Mapping[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    # connections' cursors; a planner that serves none (filters, written rows) keeps the default
    cursor_codec: CursorCodec = field(default_factory=lambda: CursorCodec(None))
    _alias_count: int = field(default=0)
    checks: list[Slot] = field(default_factory=list)
    placement: CursorPlacement | None = None
    #: Where a value is cast to its String column's type (see :attr:`RootStep.typed_inputs`).
    typed_inputs: list[tuple[str, str]] = field(default_factory=list)
    #: The rows each entity shows the caller; None: every row.
    restrict: RowRestriction | None = None
    #: Joins to add after ``FROM <table> <alias>``, by alias, for the SELECTs that take them
    #: (see :meth:`joined`): to-one relations read from those rows.
    _joins: dict[str, list[Fragment]] = field(default_factory=dict)
    #: Whether a value may be served marked as one its field's scalar cannot carry (see
    #: :attr:`RootStep.marks`).
    marks: bool = False
    #: Whether such values are marked; False: served as the database writes them (the
    #: change log's row images, which record rows as they are).
    checked: bool = True

    def reset(self) -> None:
        self._alias_count = 0
        self.checks = []
        self.placement = None
        self.typed_inputs = []
        self._joins = {}
        self.marks = False

    def alias(self) -> str:
        name = f"t{self._alias_count}"
        self._alias_count += 1
        return name

    # ----- selection sets -----
    def collect(self, selection_set: SelectionSetNode | None) -> dict[str, list[FieldNode]]:
        out: dict[str, list[FieldNode]] = {}
        self._collect_into(selection_set, out, set())
        return out

    def _collect_into(
        self, sel: SelectionSetNode | None, out: dict[str, list[FieldNode]], seen: set[str]
    ) -> None:
        if sel is None:
            return
        for s in sel.selections:
            if not self._included(s):
                continue
            if isinstance(s, FieldNode):
                key = s.alias.value if s.alias else s.name.value
                out.setdefault(key, []).append(s)
            elif isinstance(s, InlineFragmentNode):
                self._collect_into(s.selection_set, out, seen)
            elif isinstance(s, FragmentSpreadNode):
                name = s.name.value
                if name in seen:
                    continue
                seen.add(name)
                self._collect_into(self.fragments[name].selection_set, out, seen)

    def _included(self, node: FieldNode | InlineFragmentNode | FragmentSpreadNode | Any) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include and include.get("if") is False)

    def sub_fields(self, nodes: list[FieldNode]) -> dict[str, list[FieldNode]]:
        out: dict[str, list[FieldNode]] = {}
        for n in nodes:
            for key, fs in self.collect(n.selection_set).items():
                out.setdefault(key, []).extend(fs)
        return out

    # ----- arguments -----
    def args(self, definition: GraphQLField, node: FieldNode) -> dict[str, Any]:
        values = get_argument_values(definition, node, self.variables)
        nodes = {a.name.value: a.value for a in node.arguments or ()}
        return {k: _wrap(v, nodes.get(k), None) for k, v in values.items()}

    # ----- root fields -----
    def root(self, root: RootField, definition: GraphQLField, nodes: list[FieldNode]) -> Fragment:
        e = root.entity
        args = self.args(definition, nodes[0])
        a = self.alias()
        if root.kind == "list":
            return sql("SELECT ", self.list_json(e, a, nodes, args, None))
        if root.kind == "by_key":
            conds = []
            for col in e.primary_key:
                f = e.field_by_column(col)
                assert f is not None
                slot = args[f.name].slot
                check = self.value_check(f)
                if check is not None:
                    slot = slot.with_transform(check)
                conds.append(sql(ident(a, col), " = ", param(slot)))
            obj, joins = self.joined(a, lambda: self.object_json(e, a, self.sub_fields(nodes)))
            return sql(
                "SELECT ",
                obj,
                " FROM ",
                self.table(e),
                f" {a}",
                joins,
                " WHERE ",
                join(" AND ", conds),
            )
        if root.kind == "connection":
            return self.connection(e, a, nodes, args)
        where = self.where(e, a, _value(args.get("where")), ("where",))
        return sql("SELECT ", self.aggregate_select(e, a, nodes, where, None))

    def table(self, e: Entity) -> Fragment:
        """What ``FROM`` reads for ``e``: its table, or only the rows the caller may see (a
        derived table the databases merge into the query) when its role restricts them."""
        base = sql(ident(e.db_schema, e.source) if e.db_schema else ident(e.source))
        cond = self.restrict(e, "q__r") if self.restrict is not None else None
        if cond is None:
            return base
        return sql("(SELECT * FROM ", base, " q__r WHERE ", cond, ")")

    # ----- objects -----
    def object_json(
        self, e: Entity, a: str, fields: Mapping[str, list[FieldNode]], typename: str | None = None
    ) -> Fragment:
        return json_object(self.dialect, self.object_pairs(e, a, fields, typename))

    def object_pairs(
        self, e: Entity, a: str, fields: Mapping[str, list[FieldNode]], typename: str | None = None
    ) -> list[tuple[str, Piece]]:
        """The keys and JSON values of the object of ``fields`` over the row named ``a``."""
        obj_type = self.gql.get_type(e.name)
        assert isinstance(obj_type, GraphQLObjectType)
        pairs: list[tuple[str, Piece]] = []
        fmap = self.catalog.fields[e.name]
        rmap = self.catalog.relations[e.name]
        amap = self.catalog.relation_aggregates[e.name]
        for key, nodes in fields.items():
            name = nodes[0].name.value
            if name == "__typename":
                pairs.append((key, literal_string(typename or e.name)))
            elif name in fmap:
                pairs.append((key, self.column_json(fmap[name], a)))
            elif name in rmap:
                pairs.append((key, self.relation_json(a, rmap[name], nodes, obj_type)))
            else:
                rel = amap[name]
                target = self.catalog.entities[rel.target]
                definition = obj_type.fields[name]
                args = self.args(definition, nodes[0])
                b = self.alias()
                corr = self.correlation(rel, a, b)
                where = self.where(target, b, _value(args.get("where")), ("where",))
                cond = _and([corr, where]) or corr
                inner = self.aggregate_select(target, b, nodes, cond, (rel, a))
                pairs.append((key, template(self.dialect.embed_json, sql("(SELECT ", inner, ")"))))
        if not pairs:
            pairs.append(("__typename", literal_string(typename or e.name)))
        return pairs

    def column_json(self, f: IrField, a: str) -> Fragment:
        return self.render(f, column_of(a, f))

    def render(self, f: IrField, expr: Fragment, *, checked: bool = True) -> Fragment:
        """``expr``, a value of column ``f``, as the JSON value of its GraphQL type; without
        ``checked``, a value the type cannot carry is served as the database writes it."""
        if f.is_list:
            elem = self.render_value(f, sql(ident("__e", "x")))
            if elem is not None:
                return template(self.dialect.list_output, expr, elem)
            flat = self.dialect.flat_list
            return template(flat, expr) if flat else expr
        if checked and self.checked:
            out = self.render_value(f, expr)
        else:
            out = self.own_value(f, expr, checked=False)
        return out if out is not None else expr

    def render_value(self, f: IrField, expr: Fragment) -> Fragment | None:
        """One value of ``f``'s scalar or enum as JSON; None when the database's own is right.
        A stored value the scalar cannot carry, which the database cannot refuse itself
        (``Dialect.stored_checks``), is served marked (see :attr:`RootStep.marks`)."""
        out = self.own_value(f, expr)
        d = self.dialect
        if f.enum_values is None:
            marked = d.stored_output(f.db_type, f.scalar.value, f.scalar.value)
        elif "" in f.enum_values:
            marked = None  # '' is a value of the enum, not an error
        else:
            marked = d.stored_output(f.db_type, "enum", f.enum_name or f"{f.name}Enum")
        if marked is None:
            return out
        self.marks = True
        first, _, last = marked.partition("<v>")
        return sql(template(first, expr), out if out is not None else expr, template(last, expr))

    def own_value(self, f: IrField, expr: Fragment, *, checked: bool = True) -> Fragment | None:
        """:meth:`render_value` of a value its field's scalar carries; without ``checked``,
        text of another form is served as it is (``Dialect.form_output``)."""
        d = self.dialect
        if f.enum_values is not None:
            names = enum_value_names(f.enum_values)
            renamed = [(db, gql) for db, gql in names.items() if db != gql]
            if not renamed:
                tpl = d.value_output(f.db_type, "")
                return template(tpl, expr) if tpl else None
            cases = [sql(" WHEN ", param(db), f" THEN {literal_string(g)}") for db, g in renamed]
            return sql("CASE ", expr, *cases, " ELSE ", template(d.text_of, expr), " END")
        tpl = d.value_output(f.db_type, f.scalar.value, checked=checked)
        return template(tpl, expr) if tpl else None

    def filter_operand(self, f: IrField, col: Fragment) -> Fragment:
        """The column as comparisons, orderBy and cursors take it: a String column of a type
        with an order of its own (money, interval, inet, ranges; MariaDB's BIT) as it is, its
        values cast to the type (:meth:`compared_value`); one of another type that is not
        text (bit, geometric types) in the text it is served as."""
        if self.native_order(f):
            return col
        return self.text_operand(f, col)

    def native_order(self, f: IrField) -> bool:
        """Whether ``f``, a String column of a type that is not text, compares as its type."""
        return (
            f.scalar == Scalar.STRING
            and f.enum_values is None
            and not f.is_list
            and self.dialect.column_input(f.db_type) is not None
        )

    def text_operand(self, f: IrField, col: Fragment) -> Fragment:
        """The column as pattern operators read it: the text it is served as."""
        d = self.dialect
        if f.scalar != Scalar.STRING or f.enum_values is not None or f.is_list:
            return col
        tpl = d.column_output(f.db_type, f.scalar.value)
        if tpl:
            return template(tpl, col)
        return col if d.compares_as_text(f.db_type) else template(d.text_of, col)

    def value_check(self, f: IrField) -> Callable[[Any], Any] | None:
        """What a filter value of ``f`` must satisfy before it reaches the database."""
        return _value_check(self.dialect, f)

    def correlation(self, rel: Relation, outer: str, inner: str) -> Fragment:
        return join(
            " AND ",
            (
                sql(ident(inner, tc), " = ", ident(outer, lc))
                for lc, tc in zip(rel.local_columns, rel.target_columns, strict=True)
            ),
        )

    def joined(self, a: str, build: Callable[[], _T]) -> tuple[_T, Fragment]:
        """``build()`` (an object, or its keys and values, over the rows named ``a``) and the
        joins it needs after ``FROM <table> a``: its to-one relations join those rows where the
        dialect prefers that to a subquery per row."""
        self._joins[a] = []
        try:
            built = build()
        finally:
            joins = self._joins.pop(a)
        return built, sql(*joins)

    def relation_json(
        self, a: str, rel: Relation, nodes: list[FieldNode], obj_type: Any
    ) -> Fragment:
        target = self.catalog.entities[rel.target]
        b = self.alias()
        corr = self.correlation(rel, a, b)
        if rel.kind == "one":
            joins = self._joins.get(a)
            if (
                joins is not None
                and self.dialect.joins_to_one
                and target.primary_key
                and sorted(rel.target_columns) == sorted(target.primary_key)
            ):
                # At most one row matches (its primary key): a LEFT JOIN keeps every row of
                # ``a`` once, and a key column, never NULL in a row, says whether one matched.
                pairs, nested = self.joined(
                    b, lambda: self.object_pairs(target, b, self.sub_fields(nodes))
                )
                record = self.record(b, pairs)
                obj = sql(f"{b}_j") if record is not None else json_object(self.dialect, pairs)
                joins.append(
                    sql(" LEFT JOIN ", self.table(target), f" {b} ON ", corr, nested, record or "")
                )
                key = ident(b, target.primary_key[0])
                return sql("CASE WHEN ", key, " IS NULL THEN NULL ELSE ", obj, " END")
            obj, nested = self.joined(
                b, lambda: self.object_json(target, b, self.sub_fields(nodes))
            )
            inner = sql(
                "SELECT ", obj, " FROM ", self.table(target), f" {b}", nested, " WHERE ", corr
            )
            return template(self.dialect.embed_json, sql("(", inner, ")"))
        args = self.args(obj_type.fields[rel.name], nodes[0])
        return template(
            self.dialect.embed_json,
            sql("(SELECT ", self.list_json(target, b, nodes, args, corr), ")"),
        )

    # ----- lists -----
    def list_json(
        self,
        e: Entity,
        a: str,
        nodes: list[FieldNode],
        args: Mapping[str, Any],
        correlation: Fragment | None,
    ) -> Fragment:
        """``<array aggregate> FROM ...``: the body of a SELECT yielding a JSON array."""
        where = self.where(e, a, _value(args.get("where")), ("where",))
        cond = _and([correlation, where])
        order = self.order(e, a, args.get("orderBy"))
        limit: Leaf | None = args.get("limit") if _value(args.get("limit")) is not None else None
        offset: Leaf | None = args.get("offset") if _value(args.get("offset")) is not None else None
        pairs, joins = self.joined(a, lambda: self.object_pairs(e, a, self.sub_fields(nodes)))
        record = self.record(a, pairs)
        if record is not None:
            # Each row's object is the row of a derived table named by the keys.
            joins, obj = sql(joins, record), sql(f"{a}_j")
        else:
            obj = json_object(self.dialect, pairs)
        return self.array_of(
            obj, self.table(e), a, cond, order, limit, offset, correlation is not None, joins=joins
        )

    def record(self, a: str, pairs: list[tuple[str, Piece]]) -> Fragment | None:
        """``CROSS JOIN LATERAL (SELECT <value> AS "<key>", ...) <a>_j``: a row whose JSON is the
        object of ``pairs`` (PostgreSQL turns a row into JSON for a fraction of the cost of
        ``json_build_object``); None where the dialect builds objects with its function or a
        key is longer than an identifier may be."""
        if not self.dialect.json_records or any(
            len(k.encode()) > self.dialect.max_identifier_bytes for k, _ in pairs
        ):
            return None
        cols = [sql(v, " AS ", ident(k)) for k, v in pairs]
        return sql(" CROSS JOIN LATERAL (SELECT ", join(", ", cols), f") {a}_j")

    def array_of(
        self,
        obj: Fragment,
        source: Fragment,
        a: str,
        cond: Fragment | None,
        order: list[OrderItem],
        limit: Leaf | None,
        offset: Leaf | None,
        correlated: bool,
        group: list[Fragment] | None = None,
        joins: Fragment | None = None,
    ) -> Fragment:
        # ``group`` (even empty) means obj holds aggregates: they are computed per group in a
        # derived table, then gathered.
        """``COALESCE(<array aggregate>, []) FROM ...``: the rows' ``obj`` as a JSON array.

        The aggregate orders (and, on MariaDB, pages) inside its parentheses where the dialect
        allows it; otherwise a derived table orders, pages or groups the rows first.
        """
        d = self.dialect
        where_sql = sql(" WHERE ", cond) if cond is not None else sql("")
        from_sql = sql(" FROM ", source, f" {a}", joins or "", where_sql)
        if group:
            from_sql = sql(from_sql, " GROUP BY ", join(", ", group))
        paged = limit is not None or offset is not None
        limit_p = (
            template(d.limit_param, param(limit.slot.with_transform(_non_negative("limit"))))
            if limit is not None
            else None
        )
        offset_p = (
            template(d.limit_param, param(offset.slot.with_transform(_non_negative("offset"))))
            if offset is not None
            else None
        )

        def gather(element: Fragment) -> Fragment:
            agg = sql(f"{d.json_agg_fn}(", element, ")")
            return sql("COALESCE(", agg, f", {d.empty_json_array})") if d.empty_json_array else agg

        if d.json_agg_orders and (not paged or d.json_agg_limits) and group is None:
            inside = sql(obj)
            if order:
                inside = sql(inside, " ORDER BY ", order_by_clause(d, order))
            if paged:
                inside = sql(inside, " LIMIT ", limit_p or d.limit_all, " OFFSET ", offset_p or "0")
            return sql(gather(inside), from_sql)
        if correlated and not d.derived_tables_see_outer:
            raise PlanError(f"paging a nested list is not supported on {d.name}")
        cols = [sql(obj, " AS j")] + [
            sql(expr, f" AS __o{i}") for i, (expr, _, _) in enumerate(order)
        ]
        inner = sql("SELECT ", join(", ", cols), from_sql)
        if order:
            inner = sql(inner, " ORDER BY ", order_by_clause(d, order))
        if paged:
            inner = sql(inner, " LIMIT ", limit_p or d.limit_all, " OFFSET ", offset_p or "0")
        outer_order = [(sql(f"s.__o{i}"), di, nu) for i, (_, di, nu) in enumerate(order)]
        element = template(d.embed_json, sql("s.j"))
        if d.json_agg_orders and outer_order:
            element = sql(element, " ORDER BY ", order_by_clause(d, outer_order))
        return sql(gather(element), " FROM (", inner, ") s")

    # ----- ordering -----
    def order(self, e: Entity, a: str, order_by: Leaf | list[Any] | None) -> list[OrderItem]:
        # A list sorts in the order a connection pages through (see key_operand).
        keys = self.order_keys(e, a, order_by)
        return [(self.key_operand(k, k.expr), k.direction, k.nulls) for k in keys]

    def order_keys(self, e: Entity, a: str, order_by: Leaf | list[Any] | None) -> list[_Key]:
        items: list[_Key] = []
        for spec in _value(order_by) or []:
            items.extend(self._order_spec(e, a, spec))
        present = {str(x.expr) for x in items}
        # The key breaks ties, so pages are stable; without a key every orderable column does.
        ties = e.primary_key or tuple(
            f.column for f in e.fields if f.scalar != Scalar.JSON and f.sortable
        )
        for col in ties:
            expr = sql(ident(a, col))
            f = e.field_by_column(col)
            if str(expr) not in present and f is not None:
                items.append(_Key(expr, "ASC", "LAST", f, e.name))
        return items

    def _order_spec(self, e: Entity, a: str, spec: Mapping[str, Any]) -> Iterator[_Key]:
        fmap = self.catalog.fields[e.name]
        rmap = self.catalog.relations[e.name]
        for name, val in spec.items():
            v = _value(val)
            if v is None:
                continue
            if name in fmap:
                direction, nulls = ORDER_DIRECTIONS[v]
                yield _Key(column_of(a, fmap[name]), direction, nulls, fmap[name], e.name)
            else:
                rel = rmap[name]
                target = self.catalog.entities[rel.target]
                b = self.alias()
                corr = self.correlation(rel, a, b)
                for k in self._order_spec(target, b, v):
                    sub = sql(
                        "(SELECT ", k.expr, " FROM ", self.table(target), f" {b} WHERE ", corr, ")"
                    )
                    yield _Key(sub, k.direction, k.nulls, k.field, k.entity)

    # ----- filtering -----
    def where(
        self,
        e: Entity,
        a: str,
        w: Mapping[str, Any] | None,
        path: tuple[str | int, ...],
        negated: bool = False,
    ) -> Fragment | None:
        if w is None:
            return None
        if len(path) > MAX_FILTER_DEPTH:
            raise PlanError(
                f"the filter nests more than {MAX_FILTER_DEPTH} levels deep (and, or, not and"
                " relations within each other); write it with fewer levels, e.g. one or list"
                " instead of nested ones",
                path,
            )
        parts: list[Fragment | None] = []
        fmap = self.catalog.fields[e.name]
        rmap = self.catalog.relations[e.name]
        for key, raw in w.items():
            val = _value(raw)
            p = (*path, key)
            if key == "and":
                if val is None:
                    raise PlanError("and: null is not allowed; omit it or pass a list", p)
                parts.append(
                    _and([self.where(e, a, _value(x), (*p, i), negated) for i, x in enumerate(val)])
                    or sql(self.dialect.true_literal)
                )
            elif key == "or":
                if val is None:
                    raise PlanError("or: null is not allowed; omit it or pass a list", p)
                alts = [
                    self.where(e, a, _value(x), (*p, i), negated) or sql(self.dialect.true_literal)
                    for i, x in enumerate(val)
                ]
                parts.append(any_of(alts) if alts else sql(self.dialect.false_literal))
            elif key == "not":
                if val is None:
                    raise PlanError("not: null is not allowed; omit it or pass a filter", p)
                inner = self.where(e, a, val, p, not negated)
                parts.append(
                    sql("NOT (", inner, ")")
                    if inner is not None
                    else sql(self.dialect.false_literal)
                )
            elif key in fmap:
                if val is None:
                    raise PlanError(f"{key}: null is not allowed; use {{isNull: true}}", p)
                parts.extend(self.field_filter(fmap[key], a, val, p, negated))
            else:
                if val is None:
                    raise PlanError(f"{key}: null is not allowed; omit the relation filter", p)
                parts.append(self.relation_filter(rmap[key], a, val, p))
        return _and(parts)

    def compared_value(self, f: IrField, p: Fragment | Param) -> Fragment:
        """A filter value of ``f`` as comparisons take it (cast to the column's type)."""
        d = self.dialect
        # A list column's value is a cursor's: an array of a type the driver would want in
        # its own objects (interval, ranges) is cast from its elements' text.
        cast = d.column_list_input(f.db_type) if f.is_list else d.column_input(f.db_type)
        out = template(cast, p) if cast else sql(p)
        return self.compared(f, out)

    def compared(self, f: IrField, expr: Fragment) -> Fragment:
        """``expr`` (a column of ``f`` or a value) in the form the dialect compares it in."""
        if f.is_list:
            return expr
        tpl = self.dialect.scalar_compare.get(f.scalar.value)
        if tpl is None and f.enum_values is None:
            tpl = _SERVED_COMPARE.get(self.dialect.name, {}).get(f.scalar)
        return template(tpl, expr) if tpl else expr

    def field_filter(
        self, f: IrField, a: str, ops: Mapping[str, Any], path: tuple[str | int, ...], negated: bool
    ) -> Iterator[Fragment]:
        raw_col = column_of(a, f)
        col = self.filter_operand(f, raw_col)
        d = self.dialect
        check = self.value_check(f)
        dated = pg_date_text(d, f)
        if dated is not None:
            check = dated[0]
        # An array of a type that is not text (interval[], bit(3)[], point[], int4range[])
        # compares in the text its elements are served as, as the scalar columns do.
        text_array = f.is_list and pg_text_array_element(f) is not None
        typed = self.native_order(f)

        def value_in(p: Fragment | Param) -> Fragment:
            if dated is not None:
                return sql("CAST(CAST(", p, f" AS TEXT) AS {dated[1]})")
            return self.compared_value(f, p)

        def compared(c: Fragment) -> Fragment:
            return self.compared(f, c)

        arrays = {
            "contains": d.array_contains,
            "containedBy": d.array_contained_by,
            "overlaps": d.array_overlaps,
        }
        for op, leaf in ops.items():
            v = _value(leaf)
            p = (*path, op)
            if v is None:
                raise PlanError(f"{op}: null is not allowed; use isNull to test for null", p)
            if op == "isNull":
                # (col IS NULL) = ? keeps the text the same for true and false.
                yield sql("((", raw_col, " IS NULL) = ", param(leaf.slot), ")")
                continue
            slot = leaf.slot.with_transform(check) if check is not None else leaf.slot
            if typed and (op in _COMPARISONS or op in ("in", "nin")):
                self.typed_inputs.append((".".join(map(str, p)), f.db_type or ""))
            if f.is_list and dated is not None:
                texts = sql("CAST(CAST(", param(slot), f" AS TEXT[]) AS {dated[1]}[])")
                pred = template(arrays[op], raw_col, texts)
            elif text_array:
                as_text = sql("CAST(", raw_col, " AS TEXT[])")
                pred = template(arrays[op], as_text, sql("CAST(", param(slot), " AS TEXT[])"))
            elif f.is_list:
                pred = template(arrays[op], raw_col, param(slot))
            elif op in _COMPARISONS:
                pred = sql(compared(col), f" {_COMPARISONS[op]} ", value_in(param(slot)))
            elif op in ("in", "nin"):
                if d.in_list == "array" and dated is not None:
                    texts = sql("CAST(CAST(", param(slot), f" AS TEXT[]) AS {dated[1]}[])")
                    pred = sql(col, " = ANY(", texts, ")")
                elif d.in_list == "array":
                    many = d.column_list_input(f.db_type) if typed else None
                    listed = template(many, param(slot)) if many else param(slot)
                    pred = sql(col, " = ANY(", listed, ")")
                elif v:
                    items = (x.slot.with_transform(check) if check else x.slot for x in v)
                    values = (value_in(param(i)) for i in items)
                    pred = sql(compared(col), " IN (", join(", ", values), ")")
                else:
                    pred = sql(d.false_literal)
                if op == "nin":
                    pred = sql("NOT (", pred, ")")
                    # A null is in no list, yet a comparison with null is false: a non-empty
                    # nin leaves null rows out, and an empty nin (no condition) keeps every row.
                    if f.nullable and v:
                        pred = sql("(", col, " IS NOT NULL AND ", pred, ")")
            else:
                # Pattern operators compare text: UUID and ID columns are read as text, and
                # String columns of other types (money, interval) as the text they are served as.
                if f.scalar != Scalar.STRING:
                    target = template(d.text_cast, col)
                else:
                    target = self.text_operand(f, raw_col)
                pattern = leaf.slot.with_transform(_reject_nul)
                text_test = {
                    "contains": d.contains_text,
                    "startsWith": d.starts_with_text,
                    "endsWith": d.ends_with_text,
                }.get(op, "")
                if text_test:
                    pred = template(text_test, target, param(pattern))
                else:
                    tpl = d.ilike if op == "ilike" else d.like
                    pattern = pattern.with_transform(_LIKE_TRANSFORMS[op])
                    if d.max_like_pattern_bytes is not None:
                        pattern = pattern.with_transform(_pattern_limit(d.max_like_pattern_bytes))
                    pred = template(tpl, target, param(pattern))
            if negated and f.nullable:
                pred = sql("COALESCE(", pred, f", {d.false_literal})")
            yield sql("(", pred, ")")

    def relation_filter(
        self,
        rel: Relation,
        a: str,
        val: Mapping[str, Any],
        path: tuple[str | int, ...],
    ) -> Fragment:
        """EXISTS tests are true or false, never null, so negation needs no care here."""
        target = self.catalog.entities[rel.target]
        if rel.kind == "one":
            return self.exists(rel, a, target, val, path, False)
        parts: list[Fragment | None] = []
        for quant, raw in val.items():
            w = _value(raw)
            p = (*path, quant)
            if w is None:
                raise PlanError(f"{quant}: null is not allowed; omit it or pass a filter", p)
            if quant == "some":
                parts.append(self.exists(rel, a, target, w, p, False))
            elif quant == "none":
                parts.append(sql("NOT ", self.exists(rel, a, target, w, p, False)))
            else:
                # every: no related row fails the filter (nulls count as failing).
                parts.append(sql("NOT ", self.exists(rel, a, target, w, p, True)))
        return _and(parts) or sql(self.dialect.true_literal)

    def exists(
        self,
        rel: Relation,
        a: str,
        target: Entity,
        w: Mapping[str, Any],
        path: tuple[str | int, ...],
        failing: bool,
    ) -> Fragment:
        """EXISTS over related rows matching ``w`` (or, with ``failing``, not matching it)."""
        b = self.alias()
        corr = self.correlation(rel, a, b)
        inner = self.where(target, b, w, path, failing)
        if failing:
            inner = (
                sql("NOT (", inner, ")") if inner is not None else sql(self.dialect.false_literal)
            )
        cond = _and([corr, inner]) or corr
        return sql("EXISTS (SELECT 1 FROM ", self.table(target), f" {b} WHERE ", cond, ")")

    # ----- aggregates -----
    def aggregate_select(
        self,
        e: Entity,
        a: str,
        nodes: list[FieldNode],
        cond: Fragment | None,
        nested: tuple[Relation, str] | None,
    ) -> Fragment:
        """The body of a SELECT yielding one aggregate object.

        Totals (count, sum, ...) aggregate ``FROM <table> WHERE cond`` into one row; each
        ``groupBy`` is a subquery reading the table itself, so a selection of only ``groupBy``
        has no FROM (the table would otherwise multiply the single answer row by row).
        """
        pairs: list[tuple[str, Fragment | str]] = []
        totals = False
        agg_type = f"{e.name}Aggregate"
        for key, fnodes in self.sub_fields(nodes).items():
            name = fnodes[0].name.value
            if name == "groupBy":
                pairs.append((key, self.group_by_json(e, a, fnodes, cond, nested)))
            else:
                totals = totals or name != "__typename"
                pairs.extend(self.aggregate_value(e, a, key, name, fnodes, agg_type))
        obj = json_object(self.dialect, pairs)
        if not totals:
            return obj
        where_sql = sql(" WHERE ", cond) if cond is not None else sql("")
        return sql(obj, " FROM ", self.table(e), f" {a}", where_sql)

    def aggregate_value(
        self, e: Entity, a: str, key: str, name: str, nodes: list[FieldNode], typename: str
    ) -> Iterator[tuple[str, Fragment | str]]:
        d = self.dialect
        if name == "__typename":
            yield key, literal_string(typename)
        elif name == "count":
            yield key, sql("COUNT(*)")
        elif name in ("sum", "avg", "min", "max"):
            fmap = self.catalog.fields[e.name]
            suffix = {
                "sum": "SumFields",
                "avg": "AvgFields",
                "min": "MinFields",
                "max": "MaxFields",
            }
            inner: list[tuple[str, Fragment | str]] = []
            for k2, fn in self.sub_fields(nodes).items():
                fname = fn[0].name.value
                if fname == "__typename":
                    inner.append((k2, literal_string(f"{e.name}{suffix[name]}")))
                    continue
                f = fmap[fname]
                col = column_of(a, f)
                by_text = False
                extreme = self.extreme(f, col, name) if name in ("min", "max") else None
                if f.scalar == Scalar.UUID:
                    col = template(d.text_cast, col)  # PostgreSQL has no min/max over uuid
                elif (
                    name in ("min", "max")
                    and extreme is None
                    and f.enum_values is None
                    and not d.has_min_max(f.db_type, f.scalar.value)
                ):
                    col, by_text = template(d.text_of, col), True
                expr = extreme or sql(f"{name.upper()}(", col, ")")
                if name == "avg" and f.scalar == Scalar.FLOAT and d.float_avg:
                    expr = template(d.float_avg, col)
                if by_text:
                    pass  # already the text the field is served as
                elif name == "avg":
                    expr = template(d.float_cast, expr)
                    tpl = d.scalar_output.get(Scalar.FLOAT.value)
                    expr = template(tpl, expr) if tpl else expr
                elif name == "sum":
                    exact = d.int_sum and sum_scalar(f) == Scalar.BIGINT
                    if exact:
                        expr = template(d.loose_sum, col)
                    if sum_scalar(f) == f.scalar:
                        expr = self.render(f, expr)  # a decimal's sum keeps the column's scale
                    else:
                        tpl = d.scalar_output.get(sum_scalar(f).value)
                        expr = template(tpl, expr) if tpl else expr
                    if exact:
                        expr = template(d.int_sum, col, expr)
                else:
                    expr = self.render(f, expr)
                inner.append((k2, expr))
            yield key, json_object(d, inner)

    def extreme(self, f: IrField, col: Fragment, name: str) -> Fragment | None:
        """``min``/``max`` of ``f`` as orderBy sorts it, where MIN/MAX of the column would
        not (PostgreSQL ranges have no MIN; SQLite timestamps in several text forms; MariaDB
        enums, whose MIN compares their text); None where MIN/MAX of the column is right."""
        d = self.dialect
        if f.is_list:
            return None
        keyed = d.keyed_min if name == "min" else d.keyed_max
        if f.enum_values is not None:
            if d.enum_position and keyed:
                return template(keyed, col, template(d.enum_position, col))
            return None
        tpl = d.ordered_min if name == "min" else d.ordered_max
        if self.native_order(f) and not d.has_min_max(f.db_type, f.scalar.value) and tpl:
            return template(tpl, col)
        compare = d.scalar_compare.get(f.scalar.value)
        if compare and keyed:
            return template(keyed, col, template(compare, col))
        return None

    def group_by_json(
        self,
        e: Entity,
        a: str,
        nodes: list[FieldNode],
        cond: Fragment | None,
        nested: tuple[Relation, str] | None,
    ) -> Fragment:
        d = self.dialect
        if nested is not None and not d.derived_tables_see_outer:
            raise PlanError(f"groupBy inside a nested aggregate is not supported on {d.name}")
        agg_def = self.gql.get_type(f"{e.name}Aggregate")
        args = self.args(agg_def.fields["groupBy"], nodes[0])  # type: ignore[union-attr]
        fmap = self.catalog.fields[e.name]
        group_fields = [fmap[_value(x)] for x in _value(args["fields"])]
        grouped = {f.name for f in group_fields}
        pairs: list[tuple[str, Fragment | str]] = []
        for key, fnodes in self.sub_fields(nodes).items():
            name = fnodes[0].name.value
            if name == "keys":
                kp: list[tuple[str, Fragment | str]] = []
                for k2, kn in self.sub_fields(fnodes).items():
                    kname = kn[0].name.value
                    if kname == "__typename":
                        kp.append((k2, literal_string(f"{e.name}GroupKey")))
                    elif kname in grouped:
                        kp.append((k2, self.column_json(fmap[kname], a)))
                    else:
                        kp.append((k2, sql("NULL")))
                pairs.append((key, json_object(d, kp)))
            else:
                pairs.extend(
                    self.aggregate_value(e, a, key, name, fnodes, f"{e.name}AggregateGroup")
                )
        obj = json_object(d, pairs)
        group = [sql(ident(a, f.column)) for f in group_fields]
        order: list[OrderItem] = [(g, "ASC", "LAST") for g in group]
        body = self.array_of(obj, self.table(e), a, cond, order, None, None, False, group)
        return template(d.embed_json, sql("(SELECT ", body, ")"))

    # ----- Relay connections -----
    def key_operand(self, k: _Key, expr: Fragment) -> Fragment:
        """An order key's value ``expr`` in the form both the ORDER BY and cursors compare."""
        if k.field.enum_values is not None and self.dialect.enum_position:
            return template(self.dialect.enum_position, expr)
        as_list = self.dialect.list_key_of(k.field.db_type) if k.field.is_list else None
        if as_list:
            return template(as_list, expr)
        return self.compared(k.field, self.filter_operand(k.field, expr))

    def cursor_value(
        self, k: _Key, read: Callable[[Any], list[Any]], i: int
    ) -> Callable[[Any], Any]:
        """A cursor as the value of its key ``i`` for the database (null stays null)."""
        obj_type = self.gql.get_type(k.entity)
        named = None
        if isinstance(obj_type, GraphQLObjectType) and k.field.name in obj_type.fields:
            named = get_named_type(obj_type.fields[k.field.name].type)
        check = self.value_check(k.field)
        f = k.field

        def parse(v: Any) -> Any:
            if v is None or named is None or (f.scalar == Scalar.ID and isinstance(v, int)):
                return v
            if f.scalar in _NON_FINITE and v in _NON_FINITE[f.scalar]:
                # A row's value no filter may give (NaN, an infinity): the database has it.
                return _NON_FINITE[f.scalar][v]
            try:
                return named.parse_value(v)
            except GraphQLError:
                if isinstance(v, str) and f.scalar in _STORED_TEXT_KEYS and not f.is_list:
                    # A row's value its scalar does not take (PostgreSQL's 24:00:00 or a date
                    # of 4713 BC, MariaDB's 0000-00-00): the cursor, signed by this server,
                    # holds the text the database wrote, and the database reads it back.
                    return _StoredText(v)
                raise

        def parsed(cursor: Any) -> Any:
            v = read(cursor)[i]
            if v is None:
                return None
            try:
                v = [parse(x) for x in v] if f.is_list and isinstance(v, list) else parse(v)
            except (GraphQLError, TypeError, ValueError):
                raise PlanError(
                    "a cursor holds a value its field no longer takes: the schema changed"
                    " since it was issued; start again from the first page"
                ) from None
            return v

        def value(cursor: Any) -> Any:
            v = parsed(cursor)
            if v is None or isinstance(v, _StoredText):
                return v
            if f.scalar in _NON_FINITE and not _finite(v):
                return v
            return check(v) if check is not None else v

        values = k.field.enum_values
        if values is not None and self.dialect.enum_position:
            return lambda cursor: _position(values, value(cursor))
        dated = self.cursor_dated(k.field)
        if dated is not None:
            as_text = dated[0]
            return lambda cursor: as_text(parsed(cursor))
        return value

    def cursor_dated(self, f: IrField) -> tuple[Callable[[Any], Any], str] | None:
        """How a cursor's date, timestamp or time of ``f`` travels: dates and timestamps as
        filter values do (:func:`pg_date_text`), and on PostgreSQL a time as text too, since
        a cursor may hold its 24:00:00, which no Python time holds; None when it travels as a
        filter value of its field."""
        if f.is_list:
            return None
        if f.scalar == Scalar.TIME and self.dialect.infinite_dates:
            declared = (f.db_type or "").strip().lower()
            zoned = declared in ("timetz", "time with time zone")
            return _time_text, "timetz" if zoned else "time"
        return pg_date_text(self.dialect, f)

    def keyset(
        self,
        keys: list[_Key],
        cursor: Leaf,
        read: Callable[[Any], list[Any]],
        forward: bool,
        name: str,
        columns: Sequence[str],
    ) -> Fragment:
        """Rows of ``base b`` strictly after (``forward``) or before the cursor's row, its
        order keys in ``columns`` (see :func:`internal_columns`).

        Row order is lexicographic over the keys: a row is after the cursor when it equals it
        on the first keys and is after it on the next one. Nulls compare through a 0/1 flag, so
        one statement serves cursors with and without nulls.
        """
        d = self.dialect
        alternatives: list[Fragment] = []
        equal: list[Fragment] = []
        for i, k in enumerate(keys):
            raw = sql(ident("b", columns[i]))
            x = self.key_operand(k, raw)
            x_null = sql("(CASE WHEN ", raw, " IS NULL THEN 1 ELSE 0 END)")

            def is_null(c: Any, i: int = i) -> int:
                return 1 if read(c)[i] is None else 0

            def c_null() -> Fragment:
                return template(d.int_param, param(cursor.slot.with_transform(is_null)))

            if self.native_order(k.field):
                self.typed_inputs.append((name, k.field.db_type or ""))

            def value(i: int = i, k: _Key = k) -> Fragment:
                slot = cursor.slot.with_transform(self.cursor_value(k, read, i))
                dated = self.cursor_dated(k.field)
                if dated is not None:
                    as_type = sql("CAST(CAST(", param(slot), f" AS TEXT) AS {dated[1]})")
                    return self.compared(k.field, as_type)
                return self.compared_value(k.field, param(slot))

            ascending = (k.direction == "ASC") == forward
            nulls_after = (k.nulls == "LAST") == forward
            strictly = sql(
                "(",
                x_null,
                " > " if nulls_after else " < ",
                c_null(),
                " OR (",
                x_null,
                " = 0 AND ",
                c_null(),
                " = 0 AND ",
                x,
                " > " if ascending else " < ",
                value(),
                "))",
            )
            alternatives.append(_and([*equal, strictly]) or strictly)
            equal.append(
                sql(
                    "(",
                    x_null,
                    " = ",
                    c_null(),
                    " AND (",
                    x_null,
                    " = 1 OR ",
                    x,
                    " = ",
                    value(),
                    "))",
                )
            )
        return sql("(", join(" OR ", alternatives), ")")

    def connection(
        self, e: Entity, a: str, nodes: list[FieldNode], args: Mapping[str, Any]
    ) -> Fragment:
        d = self.dialect
        where = self.where(e, a, _value(args.get("where")), ("where",))
        keys = self.order_keys(e, a, args.get("orderBy"))
        order: list[OrderItem] = [(self.key_operand(k, k.expr), k.direction, k.nulls) for k in keys]
        over = sql("ORDER BY ", order_by_clause(d, order)) if order else sql("")
        rn, *key_columns = internal_columns(e, "__rn", *(f"__k{i}" for i in range(len(keys))))
        b_rn = ident("b", rn)
        base = sql(
            "SELECT ",
            ident(a),
            ".*, ROW_NUMBER() OVER (",
            over,
            ") - 1 AS ",
            ident(rn),
            *(sql(", ", k.expr, " AS ", ident(key_columns[i])) for i, k in enumerate(keys)),
            " FROM ",
            self.table(e),
            f" {a}",
            sql(" WHERE ", where) if where is not None else "",
        )
        # The statement's own tables are named apart from every table a query may read by
        # its bare name (MariaDB and SQLite; PostgreSQL's are qualified by their schema).
        base_name, cnt_name = _free_names(
            {x.source.lower() for x in self.catalog.entities.values() if not x.db_schema},
            ("base", "cnt"),
        )
        base_table, cnt = ident(base_name), ident(cnt_name)
        total = sql(cnt, ".total")
        order_text = compile_sql(order_by_clause(d, order), d)[0] if order else ""
        tag = hashlib.sha256(f"{e.name}|{order_text}".encode()).hexdigest()[:12]
        counts: list[Fragment] = [sql("COUNT(*) AS total")]

        def int_param(leaf: Any, transform: Callable[[Any], Any]) -> Fragment:
            slot = leaf.slot.with_transform(transform)
            self.checks.append(slot)
            return template(d.int_param, param(slot))

        def rows_where(pred: Fragment) -> Fragment:
            return sql("COALESCE(SUM(CASE WHEN ", pred, " THEN 1 ELSE 0 END), 0)")

        after: Leaf | None = args.get("after")
        before: Leaf | None = args.get("before")
        first, last = args.get("first"), args.get("last")
        lo: Fragment = sql("0")
        hi: Fragment = total
        # None: whether rows lie before / after the window, as its place in the count says
        has_previous: Fragment | None = None
        has_next: Fragment | None = None
        selected = {f[0].name.value for f in self.sub_fields(nodes).values()}
        after_given = after is not None and after.value is not None
        before_given = before is not None and before.value is not None
        forward = _value(first) is not None and _value(last) is None and not before_given
        backward = _value(last) is not None and _value(first) is None and not after_given
        if (forward or backward) and "totalCount" not in selected:
            # Paging without a total: read the page and one row more, from the cursor on in
            # the order (forward) or against it (backward); a database reads as far as it
            # must, by an index where one serves the order, never every row the filter keeps.
            keyed = sql(
                "SELECT ",
                ident(a),
                ".*",
                *(sql(", ", k.expr, " AS ", ident(key_columns[i])) for i, k in enumerate(keys)),
                " FROM ",
                self.table(e),
                f" {a}",
                sql(" WHERE ", where) if where is not None else "",
            )
            ordered: list[OrderItem] = [
                (
                    self.key_operand(k, sql(ident("b", key_columns[i]))),
                    k.direction,
                    # a NOT NULL column of the entity itself: no null placement, so that
                    # MariaDB reads the page by its index
                    "" if k.entity == e.name and not k.field.nullable else k.nulls,
                )
                for i, k in enumerate(keys)
            ]
            seek_order = ordered
            if backward:
                flip = {"ASC": "DESC", "DESC": "ASC", "FIRST": "LAST", "LAST": "FIRST", "": ""}
                seek_order = [(x, flip[dir_], flip[nulls]) for x, dir_, nulls in ordered]
            mark, name = (after, "after") if forward else (before, "before")
            count = first if forward else last
            assert count is not None
            beyond: Fragment | None = None
            if mark is not None and mark.value is not None:
                read = _cursor_reader(self.cursor_codec, tag, len(keys), name)
                self.checks.append(mark.slot.with_transform(read))
                beyond = self.keyset(keys, mark, read, forward, name, key_columns)
                # rows on the cursor's side: not after it (forward), not before it (backward)
                behind = sql("EXISTS (SELECT 1 FROM (", keyed, ") b WHERE NOT ", beyond, ")")
            else:
                behind = sql("1 = 0")
            rows_ok = _non_negative("first" if forward else "last")
            # One row more than the page: whether there is a page beyond it.
            page_rows = count.slot.with_transform(lambda v: rows_ok(v) + 1)
            self.checks.append(page_rows)
            seek = sql(
                "SELECT b.* FROM (",
                keyed,
                ") b",
                sql(" WHERE ", beyond) if beyond is not None else "",
                " ORDER BY ",
                order_by_clause(d, seek_order),
                " LIMIT ",
                template(d.limit_param, param(page_rows)),
            )
            base = sql(
                "SELECT b.*, ROW_NUMBER() OVER (ORDER BY ",
                order_by_clause(d, ordered),
                ") - 1 AS ",
                ident(rn),
                " FROM (",
                seek,
                ") b",
            )
            size = int_param(count, rows_ok)
            if forward:
                hi = sql(f"{d.least_fn}(", total, ", ", size, ")")
                has_previous = behind
            else:
                lo = sql(f"{d.greatest_fn}(0, ", total, " - ", size, ")")
                has_next = behind
            first = last = after = before = None  # placed: the window is the page
        # Rows after a cursor are a suffix of the order, rows before one a prefix: counting
        # them places the window, whether or not the cursor's own row still exists.
        if after is not None and after.value is not None:
            read = _cursor_reader(self.cursor_codec, tag, len(keys), "after")
            self.checks.append(after.slot.with_transform(read))
            later = self.keyset(keys, after, read, True, "after", key_columns)
            counts.append(sql("COUNT(*) - ", rows_where(later), " AS lo"))
            lo = sql(cnt, ".lo")
        if before is not None and before.value is not None:
            read = _cursor_reader(self.cursor_codec, tag, len(keys), "before")
            self.checks.append(before.slot.with_transform(read))
            before_rows = self.keyset(keys, before, read, False, "before", key_columns)
            counts.append(sql(rows_where(before_rows), " AS hi"))
            hi = sql(cnt, ".hi")
        if _value(first) is not None:
            hi = sql(
                f"{d.least_fn}(", hi, ", ", lo, " + ", int_param(first, _non_negative("first")), ")"
            )
        if _value(last) is not None:
            lo = sql(
                f"{d.greatest_fn}(",
                lo,
                ", ",
                hi,
                " - ",
                int_param(last, _non_negative("last")),
                ")",
            )

        def cursor_json(alias: str) -> Fragment:
            values: list[tuple[str, Fragment | str]] = []
            for i, k in enumerate(keys):
                col = sql(ident(alias, key_columns[i]))
                exact = d.key_output_of(k.field.db_type)
                values.append(
                    # a key the field cannot carry stays as it is: a cursor is no field
                    (
                        f"k{i}",
                        template(exact, col) if exact else self.render(k.field, col, checked=False),
                    )
                )
            return json_object(d, values)

        window = sql(b_rn, " >= ", lo, " AND ", b_rn, " < ", hi)
        rn_order: list[OrderItem] = [(sql(b_rn), "ASC", "LAST")]
        pairs: list[tuple[str, Fragment | str]] = []
        edge_cursors: list[tuple[str, tuple[str, ...]]] = []
        page_cursors: list[tuple[str, tuple[str, ...]]] = []
        bool_tpl = d.scalar_output.get("Boolean", "{}")
        for key, fnodes in self.sub_fields(nodes).items():
            name = fnodes[0].name.value
            if name == "__typename":
                pairs.append((key, literal_string(f"{e.name}Connection")))
            elif name == "totalCount":
                pairs.append((key, total))
            elif name == "nodes":
                obj = self.object_json(e, "b", self.sub_fields(fnodes))
                arr = self.array_of(obj, sql(base_table), "b", window, rn_order, None, None, True)
                pairs.append((key, template(d.embed_json, sql("(SELECT ", arr, ")"))))
            elif name == "edges":
                ep: list[tuple[str, Fragment | str]] = []
                cursor_keys: list[str] = []
                for k2, en in self.sub_fields(fnodes).items():
                    ename = en[0].name.value
                    if ename == "__typename":
                        ep.append((k2, literal_string(f"{e.name}Edge")))
                    elif ename == "cursor":
                        ep.append((k2, cursor_json("b")))
                        cursor_keys.append(k2)
                    else:
                        ep.append((k2, self.object_json(e, "b", self.sub_fields(en))))
                if cursor_keys:
                    edge_cursors.append((key, tuple(cursor_keys)))
                arr = self.array_of(
                    json_object(d, ep), sql(base_table), "b", window, rn_order, None, None, True
                )
                pairs.append((key, template(d.embed_json, sql("(SELECT ", arr, ")"))))
            elif name == "pageInfo":
                pp: list[tuple[str, Fragment | str]] = []
                page_keys: list[str] = []
                for k2, pn in self.sub_fields(fnodes).items():
                    pname = pn[0].name.value
                    if pname == "__typename":
                        pp.append((k2, literal_string("PageInfo")))
                    elif pname == "hasNextPage":
                        onward = sql(hi, " < ", total) if has_next is None else has_next
                        pp.append((k2, template(bool_tpl, sql("(", onward, ")"))))
                    elif pname == "hasPreviousPage":
                        earlier = sql(lo, " > 0") if has_previous is None else has_previous
                        pp.append((k2, template(bool_tpl, sql("(", earlier, ")"))))
                    else:
                        # startCursor / endCursor: the first / last edge's cursor, if any.
                        pos = lo if pname == "startCursor" else sql("(", hi, " - 1)")
                        row = sql(
                            "(SELECT ",
                            cursor_json("b"),
                            " FROM ",
                            base_table,
                            " b WHERE ",
                            b_rn,
                            " = ",
                            pos,
                            ")",
                        )
                        cursor = template(d.embed_json, row)
                        pp.append((k2, sql("CASE WHEN ", lo, " < ", hi, " THEN ", cursor, " END")))
                        page_keys.append(k2)
                if page_keys:
                    page_cursors.append((key, tuple(page_keys)))
                pairs.append((key, json_object(d, pp)))
        if edge_cursors or page_cursors:
            self.placement = CursorPlacement(tag, tuple(edge_cursors), tuple(page_cursors))
        return sql(
            "WITH ",
            base_table,
            " AS (",
            base,
            "), ",
            cnt,
            " AS (SELECT ",
            join(", ", counts),
            " FROM ",
            base_table,
            " b) SELECT ",
            json_object(d, pairs),
            " FROM ",
            cnt,
        )


def internal_columns(e: Entity, *names: str) -> list[str]:
    """``names`` for the columns a statement adds beside every column of ``e`` (``a.*``), each
    with as many trailing underscores as it takes for none to name a column of ``e``: so
    ``b.__rn`` never names a column of the table."""
    taken = {f.column.lower() for f in e.fields}
    taken.update(c.lower() for r in e.relations for c in r.local_columns)
    return _free_names(taken, names)


def _free_names(taken: set[str], names: Sequence[str]) -> list[str]:
    """``names``, each with as many trailing underscores as it takes for none to be in
    ``taken`` (lower case: MariaDB and SQLite compare names ignoring case)."""
    mark = ""
    while True:
        out = [n + mark for n in names]
        if not any(n.lower() in taken for n in out):
            return out
        mark += "_"


class _StoredText(str):
    """A cursor's order key as the database wrote it, a value its field's scalar does not
    take (see :meth:`_Planner.cursor_value`)."""

    __slots__ = ()


#: Scalars whose stored values may be outside what the scalar takes, served in a cursor as the
#: database writes them (a cursor is no field).
_STORED_TEXT_KEYS = frozenset({Scalar.DATE, Scalar.DATETIME, Scalar.TIME, Scalar.UUID})


def _time_text(value: Any) -> Any:
    """A cursor's Time key as the text the database reads (a Python time, or stored text)."""
    return value.isoformat() if isinstance(value, dt.time) else value


#: The values a row of a Float or Decimal column may hold but a filter may not give, as the
#: field serves them: a cursor at such a row holds them.
_NON_FINITE: dict[Scalar, dict[str, Any]] = {
    Scalar.FLOAT: {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf},
    Scalar.DECIMAL: {v: decimal.Decimal(v) for v in ("NaN", "Infinity", "-Infinity")},
}


def _finite(value: Any) -> bool:
    """Whether a number (or each number of a list) is finite."""
    items = value if isinstance(value, list) else [value]
    return all(
        x.is_finite() if isinstance(x, decimal.Decimal) else math.isfinite(x)
        for x in items
        if isinstance(x, float | decimal.Decimal)
    )


def _position(values: tuple[str, ...] | list[str], value: Any) -> Any:
    """An enum value's 1-based position among ``values`` (None stays None)."""
    if value is None:
        return None
    if value not in values:
        raise PlanError(
            "a cursor holds a value its enum no longer has: the schema changed since it was"
            " issued; start again from the first page"
        )
    return list(values).index(value) + 1


def _and(parts: list[Fragment | None]) -> Fragment | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return all_of(present)


def _value(x: Any) -> Any:
    """The plain value of a wrapped argument (leaves unwrapped, containers kept)."""
    return x.value if isinstance(x, Leaf) else x


def _wrap(value: Any, node: ValueNode | None, path: tuple[str | int, ...] | None) -> Any:
    """Pair each leaf of a coerced argument with the slot that reads it at run time.

    Containers stay dicts/lists (so the planner sees the structure); scalars and nulls become
    :class:`Leaf`. A value that came from a variable is read from the variables by path; a
    literal becomes a constant.
    """
    if path is None and isinstance(node, VariableNode):
        path = (node.name.value,)
    if isinstance(value, dict):
        children: dict[str, ValueNode] = {}
        if path is None and isinstance(node, ObjectValueNode):
            children = {f.name.value: f.value for f in node.fields}
        return {
            k: _wrap(v, children.get(k), (*path, k) if path is not None else None)
            for k, v in value.items()
        }
    if isinstance(value, list):
        items: list[ValueNode | None] = []
        if path is None and isinstance(node, ListValueNode):
            items = list(node.values)
        out = []
        for i, v in enumerate(value):
            child = items[i] if i < len(items) else None
            out.append(_wrap(v, child, (*path, i) if path is not None else None))
        if path is not None:
            return _ListLeaf(out, Slot(path=path))
        if all(hasattr(x, "slot") for x in out):
            return _ListLeaf(out, Slot(items=tuple(x.slot for x in out)))
        return _ListLeaf(out, Slot(const=None))
    return Leaf(value, Slot(path=path) if path is not None else Slot(const=value))


class _ListLeaf(list[Any]):
    """A list argument: iterable as wrapped items, and bindable whole as one array parameter."""

    def __init__(self, items: list[Any], slot: Slot) -> None:
        super().__init__(items)
        self.slot = slot
        self.value = self
