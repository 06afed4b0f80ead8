"""The GraphQL type system of the API, built from the catalog.

For every entity ``E`` (list field ``es``, by-key field ``e``) the API has:

- ``es(where, orderBy, limit, offset): [E!]!`` and ``e(<key>): E``
- ``esConnection(where, orderBy, first, after, last, before): EConnection!`` (Relay)
- ``esAggregate(where): EAggregate!`` with count/sum/avg/min/max and ``groupBy(fields)``
- on ``E``: its columns, to-one relations, to-many relations with the list arguments, and
  ``<relation>Aggregate(where)`` for each to-many relation
- inputs ``EWhere`` (per-column filters, ``and``/``or``/``not``, nested to-one filters and
  ``some``/``every``/``none`` on to-many) and ``EOrderBy``.

An array column is a list of its element type, filtered with ``<T>ArrayFilter``; an enum column
is a GraphQL enum whose values are the database's, made into GraphQL names where needed
(:func:`enum_value_names`), filtered with ``<Enum>Filter``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLField,
    GraphQLFloat,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
)
from quiver.graphql.scalars import graphql_scalar
from quiver.schema.api_names import function_result_type_name
from quiver.schema.catalog import Catalog
from quiver.schema.ir import (
    NUMERIC_SCALARS,
    ORDERED_SCALARS,
    TEXT_SCALARS,
    FunctionArgument,
    FunctionMutation,
    Scalar,
)
from quiver.schema.ir import Field as IrField
from quiver.schema.naming import enum_value_names
from quiver.schema.resolvers import ResolverMutation

__all__ = ["ORDER_DIRECTIONS", "build_graphql_schema", "enum_value_names", "sum_scalar"]

ORDER_DIRECTIONS = {
    "ASC": ("ASC", "LAST"),
    "DESC": ("DESC", "FIRST"),
    "ASC_NULLS_FIRST": ("ASC", "FIRST"),
    "ASC_NULLS_LAST": ("ASC", "LAST"),
    "DESC_NULLS_FIRST": ("DESC", "FIRST"),
    "DESC_NULLS_LAST": ("DESC", "LAST"),
}
STRING_OPERATORS = ("like", "ilike", "startsWith", "endsWith", "contains")
COMPARISON_OPERATORS = ("gt", "gte", "lt", "lte")
ARRAY_OPERATORS = {
    "contains": "The array holds every given value.",
    "containedBy": "Every value of the array is among the given values.",
    "overlaps": "The array holds at least one of the given values.",
}


def build_graphql_schema(
    catalog: Catalog, resolvers: Sequence[ResolverMutation] = ()
) -> GraphQLSchema:
    """The public GraphQL schema of the entities, root fields and mutations in ``catalog``,
    with the Python mutations ``resolvers``."""
    return _Builder(catalog, resolvers).build()


class _Builder:
    def __init__(self, catalog: Catalog, resolvers: Sequence[ResolverMutation] = ()) -> None:
        self.cat = catalog
        self.resolvers = resolvers
        self.objects: dict[str, GraphQLObjectType] = {}
        self.wheres: dict[str, GraphQLInputObjectType] = {}
        self.order_bys: dict[str, GraphQLInputObjectType] = {}
        self.list_filters: dict[str, GraphQLInputObjectType] = {}
        self.aggregates: dict[str, GraphQLObjectType] = {}
        self.scalar_filters: dict[Scalar, GraphQLInputObjectType] = {}
        self.field_enums: dict[str, GraphQLEnumType] = {}
        self.value_enums: dict[str, GraphQLEnumType] = {}
        self.value_enum_filters: dict[str, GraphQLInputObjectType] = {}
        self.array_filters: dict[str, GraphQLInputObjectType] = {}
        self.inputs: dict[str, GraphQLInputObjectType] = {}
        self.mutation_error: GraphQLObjectType | None = None
        self.order_direction = GraphQLEnumType(
            "OrderDirection",
            {
                name: GraphQLEnumValue(name, description=f"{d} with nulls {n.lower()}")
                for name, (d, n) in ORDER_DIRECTIONS.items()
            },
            description="Sort direction. ASC puts nulls last and DESC puts them first.",
        )
        self.page_info = GraphQLObjectType(
            "PageInfo",
            {
                "hasNextPage": GraphQLField(GraphQLNonNull(GraphQLBoolean)),
                "hasPreviousPage": GraphQLField(GraphQLNonNull(GraphQLBoolean)),
                "startCursor": GraphQLField(GraphQLString),
                "endCursor": GraphQLField(GraphQLString),
            },
        )

    def build(self) -> GraphQLSchema:
        query_fields: dict[str, GraphQLField] = {}
        for name, root in self.cat.root_fields.items():
            e = root.entity
            if root.kind == "list":
                args = self.list_args(e.name)
                if e.list_arguments is not None:
                    args = {k: v for k, v in args.items() if k in e.list_arguments}
                query_fields[name] = GraphQLField(_nn_list(self.object(e.name)), args=args)
            elif root.kind == "by_key":
                query_fields[name] = GraphQLField(
                    self.object(e.name),
                    args={
                        f.name: GraphQLArgument(
                            GraphQLNonNull(graphql_scalar(f.scalar)),
                            description=f"The {f.name} of the {e.name} to return.",
                        )
                        for f in self.cat.key_fields(e)
                    },
                    description=f"One {e.name} by its key, or null.",
                )
            elif root.kind == "connection":
                query_fields[name] = GraphQLField(
                    GraphQLNonNull(self.connection(e.name)), args=self.connection_args(e.name)
                )
            else:
                query_fields[name] = GraphQLField(
                    GraphQLNonNull(self.aggregate(e.name)),
                    args={"where": GraphQLArgument(self.where(e.name), description=_WHERE_AGG)},
                )
        if not query_fields:
            query_fields["_empty"] = GraphQLField(GraphQLString, description="The schema is empty.")
        mutation_fields = {
            name: self.mutation_field(m.kind, m.entity.name)
            for name, m in self.cat.mutation_fields.items()
        }
        for name, fm in self.cat.function_mutations.items():
            mutation_fields[name] = self.function_mutation(fm)
        for r in self.resolvers:
            obj = self.object(r.entity)
            mutation_fields[r.name] = GraphQLField(
                _nn_list(obj) if r.many else obj,
                args=self.arguments(r.arguments),
                description=r.description,
            )
        return GraphQLSchema(
            query=GraphQLObjectType("Query", lambda: query_fields),
            mutation=GraphQLObjectType("Mutation", mutation_fields) if mutation_fields else None,
        )

    # ----- mutations -----
    def mutation_field(self, kind: str, entity: str) -> GraphQLField:
        e = self.cat.entities[entity]
        obj = self.object(entity)
        key_args = {
            f.name: GraphQLArgument(GraphQLNonNull(graphql_scalar(f.scalar)))
            for f in self.cat.key_fields(e)
        }
        set_arg = GraphQLArgument(
            GraphQLNonNull(self.set_input(entity)),
            description="The fields to change; a field given null is set to null.",
        )
        where_arg = GraphQLArgument(
            GraphQLNonNull(self.where(entity)),
            description="Which rows to change ({} for all of them).",
        )
        if kind == "create":
            return GraphQLField(
                GraphQLNonNull(obj),
                args={"input": GraphQLArgument(GraphQLNonNull(self.create_input(entity)))},
                description=f"Insert one {entity} and return it.",
            )
        if kind == "create_many":
            items = GraphQLNonNull(GraphQLList(GraphQLNonNull(self.create_input(entity))))
            return GraphQLField(
                _nn_list(obj),
                args={"inputs": GraphQLArgument(items)},
                description=f"Insert {entity} rows, all or none, and return them in input order.",
            )
        if kind == "update":
            return GraphQLField(
                obj,
                args={**key_args, "set": set_arg},
                description=f"Change one {entity} by its key and return it; NOT_FOUND if none.",
            )
        if kind == "update_many":
            return GraphQLField(
                _nn_list(obj),
                args={"where": where_arg, "set": set_arg},
                description=f"Change every {entity} matching where and return them.",
            )
        if kind == "delete":
            return GraphQLField(
                obj,
                args=key_args,
                description=f"Delete one {entity} by its key and return it; NOT_FOUND if none.",
            )
        return GraphQLField(
            _nn_list(obj),
            args={"where": GraphQLArgument(GraphQLNonNull(self.where(entity)))},
            description=f"Delete every {entity} matching where and return them as they were.",
        )

    def function_mutation(self, fm: FunctionMutation) -> GraphQLField:
        if self.mutation_error is None:
            self.mutation_error = GraphQLObjectType(
                "MutationError",
                {
                    "field": GraphQLField(GraphQLString, description="The field at fault."),
                    "code": GraphQLField(GraphQLString),
                    "message": GraphQLField(GraphQLNonNull(GraphQLString)),
                },
                description="A problem a database function reported.",
            )
        fields: dict[str, GraphQLField] = {
            "status": GraphQLField(GraphQLNonNull(GraphQLString)),
            "message": GraphQLField(GraphQLString),
            "errors": GraphQLField(
                GraphQLNonNull(GraphQLList(GraphQLNonNull(self.mutation_error)))
            ),
        }
        if fm.entity is not None:
            fields["entity"] = GraphQLField(
                self.object(fm.entity), description="The row the function wrote, if any."
            )
        result = GraphQLObjectType(function_result_type_name(fm.name), fields)
        return GraphQLField(
            GraphQLNonNull(result),
            args=self.arguments(fm.arguments),
            description=fm.description or f"Calls the database function {fm.function}.",
        )

    def arguments(self, arguments: Sequence[FunctionArgument]) -> dict[str, GraphQLArgument]:
        return {
            a.name: GraphQLArgument(
                GraphQLNonNull(graphql_scalar(a.scalar)) if a.required else graphql_scalar(a.scalar)
            )
            for a in arguments
        }

    def create_input(self, name: str) -> GraphQLInputObjectType:
        key = f"{name}CreateInput"
        if key not in self.inputs:
            e = self.cat.entities[name]
            fields: dict[str, GraphQLInputField] = {}
            for f in e.fields:
                if not f.writable:
                    continue
                t = self.field_type(f)
                fields[f.name] = GraphQLInputField(
                    GraphQLNonNull(t) if f.required_on_insert else t, description=f.description
                )
            self.inputs[key] = GraphQLInputObjectType(
                key,
                fields,
                description=f"A new {name}: fields the database fills in (defaults, identities)"
                " may be omitted.",
            )
        return self.inputs[key]

    def set_input(self, name: str) -> GraphQLInputObjectType:
        key = f"{name}SetInput"
        if key not in self.inputs:
            e = self.cat.entities[name]
            self.inputs[key] = GraphQLInputObjectType(
                key,
                {
                    f.name: GraphQLInputField(self.field_type(f), description=f.description)
                    for f in e.fields
                    if f.writable
                },
                description=f"Changes to {name} rows: only the fields given are written.",
            )
        return self.inputs[key]

    # ----- arguments -----
    def list_args(self, entity: str) -> dict[str, GraphQLArgument]:
        return {
            "where": GraphQLArgument(self.where(entity), description=_WHERE),
            "orderBy": GraphQLArgument(
                GraphQLList(GraphQLNonNull(self.order_by(entity))),
                description=self.order_by_description(entity),
            ),
            "limit": GraphQLArgument(GraphQLInt, description="Most rows to return."),
            "offset": GraphQLArgument(GraphQLInt, description="Rows to skip."),
        }

    def order_by_description(self, entity: str) -> str:
        """What ``orderBy`` does for ``entity``: what breaks ties depends on its key."""
        e = self.cat.entities[entity]
        if e.primary_key:
            key = ", ".join(f.name for f in self.cat.key_fields(e))
            return (
                "Sort keys, most significant first. Rows that tie, and all rows when orderBy is "
                f"omitted, are in primary-key order ({key})."
            )
        return (
            f"Sort keys, most significant first. {entity} has no primary key: rows that tie, and "
            "all rows when orderBy is omitted, are ordered by its fields' values in turn (JSON "
            "fields excepted); give orderBy for the order you need."
        )

    def connection_args(self, entity: str) -> dict[str, GraphQLArgument]:
        return {
            "where": GraphQLArgument(self.where(entity), description=_WHERE),
            "orderBy": GraphQLArgument(
                GraphQLList(GraphQLNonNull(self.order_by(entity))),
                description=self.order_by_description(entity),
            ),
            "first": GraphQLArgument(
                GraphQLInt, description="Return at most this many rows from the start."
            ),
            "after": GraphQLArgument(
                GraphQLString,
                description="Start after the row of this cursor (an edge's cursor or endCursor "
                "of this connection with the same orderBy); rows added or removed meanwhile "
                "never repeat or skip one.",
            ),
            "last": GraphQLArgument(
                GraphQLInt, description="Return at most this many rows from the end."
            ),
            "before": GraphQLArgument(
                GraphQLString,
                description="End before the row of this cursor (an edge's cursor or "
                "startCursor of this connection with the same orderBy).",
            ),
        }

    # ----- output types -----
    def object(self, name: str) -> GraphQLObjectType:
        if name in self.objects:
            return self.objects[name]
        e = self.cat.entities[name]

        def fields() -> dict[str, GraphQLField]:
            out: dict[str, GraphQLField] = {}
            for f in e.fields:
                t: GraphQLOutputType = self.field_type(f)
                out[f.name] = GraphQLField(
                    t if f.nullable else GraphQLNonNull(t), description=f.description
                )
            for r in e.relations:
                target = self.object(r.target)
                if r.kind == "one":
                    out[r.name] = GraphQLField(
                        target if r.nullable else GraphQLNonNull(target), description=r.description
                    )
                else:
                    out[r.name] = GraphQLField(
                        _nn_list(target), args=self.list_args(r.target), description=r.description
                    )
                    out[f"{r.name}Aggregate"] = GraphQLField(
                        GraphQLNonNull(self.aggregate(r.target)),
                        args={
                            "where": GraphQLArgument(self.where(r.target), description=_WHERE_AGG)
                        },
                    )
            return out

        obj = GraphQLObjectType(name, fields, description=e.description)
        self.objects[name] = obj
        return obj

    def field_type(self, f: IrField) -> Any:
        """A column's GraphQL type: its scalar or enum, in a list for an array."""
        t: Any = self.value_enum(f) if f.enum_values is not None else graphql_scalar(f.scalar)
        return GraphQLList(t) if f.is_list else t

    def value_enum(self, f: IrField) -> GraphQLEnumType:
        assert f.enum_values is not None
        name = f.enum_name or f"{f.name}Enum"
        if name not in self.value_enums:
            names = enum_value_names(f.enum_values)
            self.value_enums[name] = GraphQLEnumType(
                name,
                {
                    gql: GraphQLEnumValue(
                        db, description=None if gql == db else f"The database value {db!r}."
                    )
                    for db, gql in names.items()
                },
            )
        return self.value_enums[name]

    def connection(self, name: str) -> GraphQLObjectType:
        node = GraphQLNonNull(self.object(name))
        edge = GraphQLObjectType(
            f"{name}Edge",
            {"cursor": GraphQLField(GraphQLNonNull(GraphQLString)), "node": GraphQLField(node)},
        )
        return GraphQLObjectType(
            f"{name}Connection",
            {
                "edges": GraphQLField(_nn_list(edge)),
                "nodes": GraphQLField(GraphQLNonNull(GraphQLList(node))),
                "pageInfo": GraphQLField(GraphQLNonNull(self.page_info)),
                "totalCount": GraphQLField(GraphQLNonNull(GraphQLInt)),
            },
        )

    def field_enum(self, name: str) -> GraphQLEnumType:
        if name not in self.field_enums:
            e = self.cat.entities[name]
            self.field_enums[name] = GraphQLEnumType(
                f"{name}Field",
                {f.name: GraphQLEnumValue(f.name) for f in e.fields if _sortable(f)},
                description="A field to group by (JSON fields cannot be grouped or sorted).",
            )
        return self.field_enums[name]

    def aggregate(self, name: str) -> GraphQLObjectType:
        if name in self.aggregates:
            return self.aggregates[name]
        e = self.cat.entities[name]
        numeric = [
            f
            for f in e.fields
            if f.scalar in NUMERIC_SCALARS and not f.is_list and f.enum_values is None
        ]
        ordered = [f for f in e.fields if f.scalar in ORDERED_SCALARS and not f.is_list]

        def field_set(
            suffix: str, fs: list[IrField], typ: Callable[[IrField], GraphQLOutputType]
        ) -> GraphQLObjectType | None:
            if not fs:
                return None
            return GraphQLObjectType(f"{name}{suffix}", {f.name: GraphQLField(typ(f)) for f in fs})

        sets: dict[str, GraphQLObjectType | None] = {
            "sum": field_set("SumFields", numeric, lambda f: graphql_scalar(sum_scalar(f))),
            "avg": field_set("AvgFields", numeric, lambda f: GraphQLFloat),
            "min": field_set("MinFields", ordered, self.field_type),
            "max": field_set("MaxFields", ordered, self.field_type),
        }
        base: dict[str, GraphQLField] = {"count": GraphQLField(GraphQLNonNull(GraphQLInt))}
        for key, t in sets.items():
            if t is not None:
                base[key] = GraphQLField(GraphQLNonNull(t))
        group_key = GraphQLObjectType(
            f"{name}GroupKey", {f.name: GraphQLField(self.field_type(f)) for f in e.fields}
        )
        group = GraphQLObjectType(
            f"{name}AggregateGroup", {"keys": GraphQLField(GraphQLNonNull(group_key)), **base}
        )
        agg = GraphQLObjectType(
            f"{name}Aggregate",
            {
                **base,
                "groupBy": GraphQLField(
                    _nn_list(group),
                    args={
                        "fields": GraphQLArgument(
                            GraphQLNonNull(GraphQLList(GraphQLNonNull(self.field_enum(name)))),
                            description="The fields whose values make a group.",
                        )
                    },
                    description="One aggregate per distinct combination of the given fields.",
                ),
            },
        )
        self.aggregates[name] = agg
        return agg

    # ----- input types -----
    def scalar_filter(self, scalar: Scalar) -> GraphQLInputObjectType:
        if scalar in self.scalar_filters:
            return self.scalar_filters[scalar]
        t = graphql_scalar(scalar)
        fields: dict[str, GraphQLInputField] = {
            "isNull": GraphQLInputField(
                GraphQLBoolean, description="true: is null; false: is not null"
            )
        }
        if scalar != Scalar.JSON:
            fields["eq"] = GraphQLInputField(t)
            fields["neq"] = GraphQLInputField(t)
            fields["in"] = GraphQLInputField(GraphQLList(GraphQLNonNull(t)))
            fields["nin"] = GraphQLInputField(GraphQLList(GraphQLNonNull(t)))
        if scalar in ORDERED_SCALARS:
            for op in COMPARISON_OPERATORS:
                fields[op] = GraphQLInputField(t)
        if scalar in TEXT_SCALARS:
            for op in STRING_OPERATORS:
                fields[op] = GraphQLInputField(GraphQLString)
        f = GraphQLInputObjectType(f"{scalar.value}Filter", fields)
        self.scalar_filters[scalar] = f
        return f

    def field_filter(self, f: IrField) -> GraphQLInputObjectType:
        if f.is_list:
            return self.array_filter(f)
        if f.enum_values is not None:
            return self.value_enum_filter(f)
        return self.scalar_filter(f.scalar)

    def value_enum_filter(self, f: IrField) -> GraphQLInputObjectType:
        t = self.value_enum(f)
        if t.name not in self.value_enum_filters:
            self.value_enum_filters[t.name] = GraphQLInputObjectType(
                f"{t.name}Filter",
                {
                    "isNull": GraphQLInputField(
                        GraphQLBoolean, description="true: is null; false: is not null"
                    ),
                    "eq": GraphQLInputField(t),
                    "neq": GraphQLInputField(t),
                    "in": GraphQLInputField(GraphQLList(GraphQLNonNull(t))),
                    "nin": GraphQLInputField(GraphQLList(GraphQLNonNull(t))),
                },
            )
        return self.value_enum_filters[t.name]

    def array_filter(self, f: IrField) -> GraphQLInputObjectType:
        t: Any = self.value_enum(f) if f.enum_values is not None else graphql_scalar(f.scalar)
        if t.name not in self.array_filters:
            items = GraphQLList(GraphQLNonNull(t))
            fields = {
                "isNull": GraphQLInputField(
                    GraphQLBoolean, description="true: is null; false: is not null"
                )
            }
            if f.scalar != Scalar.JSON:
                for op, description in ARRAY_OPERATORS.items():
                    fields[op] = GraphQLInputField(items, description=description)
            self.array_filters[t.name] = GraphQLInputObjectType(f"{t.name}ArrayFilter", fields)
        return self.array_filters[t.name]

    def where(self, name: str) -> GraphQLInputObjectType:
        if name in self.wheres:
            return self.wheres[name]
        e = self.cat.entities[name]

        def fields() -> dict[str, GraphQLInputField]:
            out: dict[str, GraphQLInputField] = {
                f.name: GraphQLInputField(self.field_filter(f)) for f in e.fields
            }
            for r in e.relations:
                if r.kind == "one":
                    out[r.name] = GraphQLInputField(self.where(r.target))
                else:
                    out[r.name] = GraphQLInputField(self.list_filter(r.target))
            self_t = self.wheres[name]
            out["and"] = GraphQLInputField(GraphQLList(GraphQLNonNull(self_t)))
            out["or"] = GraphQLInputField(GraphQLList(GraphQLNonNull(self_t)))
            out["not"] = GraphQLInputField(self_t)
            return out

        w = GraphQLInputObjectType(f"{name}Where", fields)
        self.wheres[name] = w
        return w

    def list_filter(self, name: str) -> GraphQLInputObjectType:
        if name not in self.list_filters:
            w: GraphQLInputType = self.where(name)
            self.list_filters[name] = GraphQLInputObjectType(
                f"{name}ListFilter",
                {
                    "some": GraphQLInputField(w, description="At least one related row matches."),
                    "every": GraphQLInputField(w, description="Every related row matches."),
                    "none": GraphQLInputField(w, description="No related row matches."),
                },
            )
        return self.list_filters[name]

    def order_by(self, name: str) -> GraphQLInputObjectType:
        if name in self.order_bys:
            return self.order_bys[name]
        e = self.cat.entities[name]

        def fields() -> dict[str, GraphQLInputField]:
            out: dict[str, GraphQLInputField] = {
                f.name: GraphQLInputField(self.order_direction) for f in e.fields if _sortable(f)
            }
            for r in e.relations:
                if r.kind == "one":
                    out[r.name] = GraphQLInputField(self.order_by(r.target))
            return out

        o = GraphQLInputObjectType(f"{name}OrderBy", fields)
        self.order_bys[name] = o
        return o


def sum_scalar(f: IrField) -> Scalar:
    """A sum of 32-bit integers outgrows Int: it is a BigInt (as PostgreSQL's sum is bigint)."""
    return Scalar.BIGINT if f.scalar == Scalar.INT else f.scalar


def _sortable(f: IrField) -> bool:
    """Whether a field can be sorted and grouped on (PostgreSQL's json, point, xml cannot)."""
    return f.scalar != Scalar.JSON and f.sortable


def _nn_list(t: GraphQLOutputType) -> GraphQLNonNull[GraphQLList[GraphQLOutputType]]:
    inner: Any = t if isinstance(t, GraphQLNonNull) else GraphQLNonNull(t)
    return GraphQLNonNull(GraphQLList(inner))


_WHERE = (
    "Keep only the rows that match: each field takes operators (eq, in, lt, contains, isNull, "
    "...), a relation takes a filter on its rows, and and/or/not combine filters. "
    "Omitted: every row."
)
_WHERE_AGG = (
    "Aggregate only the rows that match (the filter a list of these rows takes). "
    "Omitted: every row."
)
