"""Names the GraphQL API derives from the schema IR, in one place.

Reflection avoids them, validation checks authored names against them, and the GraphQL schema
builder uses them, so the three can never disagree.
"""

from __future__ import annotations

from typing import Literal

from quiver.schema.ir import Entity, RootKind, Scalar
from quiver.schema.naming import camel, pascal, pluralize

__all__ = [
    "GENERATED_TYPE_SUFFIXES",
    "RESERVED_MEMBER_NAMES",
    "RESERVED_TYPE_NAMES",
    "ROOT_KINDS",
    "MutationKind",
    "by_key_field_name",
    "function_result_type_name",
    "list_field_name",
    "mutation_field_names",
    "root_field_names",
]

#: The mutations of an entity with a primary key: one row (by key, or one input) or many.
MutationKind = Literal["create", "create_many", "update", "update_many", "delete", "delete_many"]

ROOT_KINDS: tuple[RootKind, ...] = ("list", "by_key", "connection", "aggregate")

#: Type names the GraphQL schema always has: an entity may not take one of them.
RESERVED_TYPE_NAMES = frozenset(
    {"Query", "Mutation", "Subscription", "Int", "Float", "String", "Boolean", "ID"}
    | {"PageInfo", "OrderDirection", "ChangeOperation", "MutationError"}
    | {s.value for s in Scalar}
    | {f"{s.value}Filter" for s in Scalar}
    | {f"{s.value}ArrayFilter" for s in Scalar}
)

#: Names a field or relation may not take: the combinators of the entity's where input, and the
#: words GraphQL forbids as enum values (every field is also a value of the ``EField`` enum).
RESERVED_MEMBER_NAMES = frozenset({"and", "or", "not", "true", "false", "null"})

#: Suffixes of the types generated for every entity ``E`` (``EWhere``, ``EConnection``, ...).
GENERATED_TYPE_SUFFIXES = (
    "Where",
    "ListFilter",
    "OrderBy",
    "Field",
    "Connection",
    "Edge",
    "Aggregate",
    "AggregateGroup",
    "GroupKey",
    "SumFields",
    "AvgFields",
    "MinFields",
    "MaxFields",
    "CreateInput",
    "SetInput",
    "Change",
)


def function_result_type_name(mutation: str) -> str:
    """The type a function mutation answers with: ``placeOrder`` -> ``PlaceOrderResult``."""
    return f"{mutation[:1].upper()}{mutation[1:]}Result"


def list_field_name(entity: Entity) -> str:
    return entity.list_field or pluralize(camel(entity.name))


def by_key_field_name(entity: Entity) -> str | None:
    """The by-key root field, or None for entities without a primary key."""
    if not entity.primary_key:
        return None
    return entity.by_key_field or camel(entity.name)


def root_field_names(entity: Entity) -> dict[str, RootKind]:
    """Root field name -> kind, as the GraphQL schema serves them for ``entity``."""
    kinds = ROOT_KINDS if entity.root_fields is None else entity.root_fields
    list_name = list_field_name(entity)
    names: dict[RootKind, str | None] = {
        "list": list_name,
        "by_key": by_key_field_name(entity),
        "connection": f"{list_name}Connection",
        "aggregate": f"{list_name}Aggregate",
    }
    return {name: kind for kind in ROOT_KINDS if kind in kinds and (name := names[kind])}


def mutation_field_names(entity: Entity) -> dict[str, MutationKind]:
    """Mutation field name -> kind for ``entity``: none without a primary key or a writable
    field. ``createAuthor`` / ``createAuthors``, ``updateAuthor`` / ``updateAuthors``, ..."""
    if not entity.primary_key or not any(f.writable for f in entity.fields):
        return {}
    one = entity.name
    many = pascal(list_field_name(entity))
    if many == one:
        many = f"{one}Batch"
    return {
        f"create{one}": "create",
        f"create{many}": "create_many",
        f"update{one}": "update",
        f"update{many}": "update_many",
        f"delete{one}": "delete",
        f"delete{many}": "delete_many",
    }
