"""The catalog: what the API serves, read by every surface, with no GraphQL types in it.

Whatever serves the schema (the GraphQL engine today; an Arrow Flight server or a mutation
planner next) learns here, by importing this module alone, what exists:

- the entities (:class:`Entity`), each read from one table or view (``source``, in
  ``db_schema`` when the database has several);
- their columns (:class:`Field`: API name, database ``column``, :class:`Scalar`, nullability) and
  their key (``primary_key`` column names; :meth:`Catalog.key_fields` gives the fields);
- their relations (:class:`Relation`: target entity, ``one`` or ``many``, column pairs);
- the root fields the API serves (:class:`RootField`: name, :data:`RootKind`, entity).

Every lookup is by API name, the names clients use; database identifiers come only from
``Entity.source``, ``Entity.db_schema``, ``Field.column`` and the relation's column pairs.
The catalog is built once from the schema IR (:func:`build_catalog`) and never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from quiver.schema.api_names import MutationKind, mutation_field_names, root_field_names
from quiver.schema.ir import Entity, Field, FunctionMutation, Relation, RootKind, Scalar, Schema

__all__ = [
    "Catalog",
    "Entity",
    "Field",
    "MutationField",
    "MutationKind",
    "Relation",
    "RootField",
    "RootKind",
    "Scalar",
    "build_catalog",
]


@dataclass(frozen=True)
class RootField:
    """A root field the API serves: what it is called, what it answers, which entity it reads."""

    name: str
    kind: RootKind
    entity: Entity


@dataclass(frozen=True)
class MutationField:
    """A mutation the API serves: its name, what it does, which entity it writes."""

    name: str
    kind: MutationKind
    entity: Entity


@dataclass
class Catalog:
    """Every entity, column, key, relation and root field, by API names."""

    schema: Schema
    #: entity name -> entity
    entities: dict[str, Entity] = field(default_factory=dict)
    #: root field name -> root field, in the order the API lists them
    root_fields: dict[str, RootField] = field(default_factory=dict)
    #: mutation field name -> mutation field (empty when mutations are not served)
    mutation_fields: dict[str, MutationField] = field(default_factory=dict)
    #: mutation field name -> the database function it calls
    function_mutations: dict[str, FunctionMutation] = field(default_factory=dict)
    #: entity name -> {field name -> field}
    fields: dict[str, dict[str, Field]] = field(default_factory=dict)
    #: entity name -> {relation name -> relation}
    relations: dict[str, dict[str, Relation]] = field(default_factory=dict)
    #: entity name -> {``<relation>Aggregate`` -> to-many relation}
    relation_aggregates: dict[str, dict[str, Relation]] = field(default_factory=dict)

    def key_fields(self, entity: Entity) -> tuple[Field, ...]:
        """The fields of ``entity``'s primary key columns, in key order (``()`` without a key)."""
        out: list[Field] = []
        for column in entity.primary_key:
            f = entity.field_by_column(column)
            if f is None:
                raise ValueError(f"{entity.name}: key column {column!r} is not a field")
            out.append(f)
        return tuple(out)


def build_catalog(schema: Schema, *, mutations: bool = False) -> Catalog:
    """The catalog of ``schema``, with the root fields named as the API serves them, and
    with ``mutations`` the create/update/delete mutations of every keyed table."""
    cat = Catalog(schema=schema)
    for e in schema.entities:
        cat.entities[e.name] = e
        cat.fields[e.name] = {f.name: f for f in e.fields}
        cat.relations[e.name] = {r.name: r for r in e.relations}
        cat.relation_aggregates[e.name] = {
            f"{r.name}Aggregate": r for r in e.relations if r.kind == "many"
        }
        for name, kind in root_field_names(e).items():
            cat.root_fields[name] = RootField(name=name, kind=kind, entity=e)
        if mutations:
            for name, mkind in mutation_field_names(e).items():
                # Entities named like another's batch (Author's createAuthors and an entity
                # Authors) keep both mutations: the later one is numbered.
                unique, n = name, 2
                while unique in cat.mutation_fields:
                    unique, n = f"{name}{n}", n + 1
                cat.mutation_fields[unique] = MutationField(name=unique, kind=mkind, entity=e)
    for fm in schema.mutations:
        cat.function_mutations[fm.name] = fm
    return cat
