"""Combining reflected and authored schemas, and completing relations.

An authored ``@quiver.type`` whose source is a reflected table or view overrides and extends
that entity: it can rename the type and its fields, change their scalar or nullability, hide
fields and relations, add relations, set the key and declare the root fields. Everything it
does not mention stays as reflected.
"""

from __future__ import annotations

from collections.abc import Iterable

from quiver.schema.ir import Entity, Field, Relation, Schema
from quiver.schema.naming import camel, pluralize

__all__ = ["link_relations", "merge", "strip_hidden"]


def _same(a: str, b: str) -> bool:
    return a == b or a.casefold() == b.casefold()


def _match(authored: Entity, reflected: Iterable[Entity]) -> Entity | None:
    """The reflected entity reading the authored one's source (exact spelling first)."""
    candidates = [
        r
        for r in reflected
        if _same(r.source, authored.source)
        and (authored.db_schema is None or r.db_schema is None or authored.db_schema == r.db_schema)
    ]
    exact = [r for r in candidates if r.source == authored.source]
    best = exact or candidates
    return best[0] if best else None


def merge(reflected: Schema, authored: Schema) -> Schema:
    """``reflected`` with every authored entity laid over the one reading the same source.

    Authored entities with no reflected counterpart are added; relations of reflected
    entities follow renamed types. Hidden fields stay (``hidden=True``) so validation still
    knows their columns; :func:`strip_hidden` removes them for serving.
    """
    overlays: dict[str, Entity] = {}
    renames: dict[str, str] = {}
    added: list[Entity] = []
    for a in authored.entities:
        r = _match(a, reflected.entities)
        if r is None or r.name in overlays:
            added.append(a)
            continue
        overlays[r.name] = a
        if r.name != a.name:
            renames[r.name] = a.name
    entities = [
        _overlay(r, overlays[r.name]) if r.name in overlays else r for r in reflected.entities
    ]
    entities.extend(added)
    if renames:
        entities = [
            e.model_copy(
                update={
                    "relations": tuple(
                        rel.model_copy(update={"target": renames[rel.target]})
                        if rel.target in renames
                        else rel
                        for rel in e.relations
                    )
                }
            )
            for e in entities
        ]
    return reflected.model_copy(update={"entities": tuple(entities)})


def _overlay(r: Entity, a: Entity) -> Entity:
    by_column = {f.column.casefold(): f for f in a.fields}
    fields: list[Field] = []
    used: set[str] = set()
    for f in r.fields:
        over = by_column.get(f.column.casefold())
        if over is None:
            fields.append(f)
            continue
        used.add(over.column.casefold())
        # The authored field speaks of the column as the database spells it; declared with
        # the reflected scalar, it keeps the database type the column is rendered from (and a
        # composite type's attributes, that its JSON is written by).
        # What the database writes by itself (defaults, identities, generated columns) is a
        # fact of the column, known only to reflection.
        update: dict[str, object] = {
            "column": f.column,
            "has_default": f.has_default,
            "is_identity": f.is_identity,
            "is_generated": f.is_generated,
        }
        if over.scalar == f.scalar and over.db_type is None:
            update["db_type"] = f.db_type
            update["composite"] = f.composite
            if f.composite is not None and f.is_list and not over.is_list:
                update["composite_array"] = True
        fields.append(over.model_copy(update=update))
    fields.extend(f for f in a.fields if f.column.casefold() not in used)

    hidden_names = {f.name for f in a.fields if f.hidden} | {
        x.name for x in a.relations if x.hidden
    }
    replaced = {x.name for x in a.relations}
    relations = [x for x in r.relations if x.name not in replaced and x.name not in hidden_names]
    relations.extend(a.relations)

    declared_roots = a.root_fields is not None

    def root_name(authored: str | None, reflected: str | None, default: str) -> str | None:
        if declared_roots or authored:
            return authored
        return reflected if reflected and reflected != default else None

    return Entity(
        name=a.name,
        source=r.source,
        db_schema=r.db_schema,
        fields=tuple(fields),
        primary_key=a.primary_key or r.primary_key,
        relations=tuple(relations),
        list_field=root_name(a.list_field, r.list_field, pluralize(camel(r.name))),
        by_key_field=root_name(a.by_key_field, r.by_key_field, camel(r.name)),
        description=a.description or r.description,
        location=a.location or r.location,
        root_fields=a.root_fields if declared_roots else r.root_fields,
        list_arguments=a.list_arguments if declared_roots else r.list_arguments,
    )


def link_relations(schema: Schema) -> Schema:
    """Fill the columns a relation left to the key: a forward link's target columns (the
    target's key) and a reverse link's local columns (this entity's key)."""
    keys = {e.name: e.primary_key for e in schema.entities}
    entities: list[Entity] = []
    for e in schema.entities:
        relations: list[Relation] = []
        for rel in e.relations:
            if not rel.hidden and rel.kind == "one" and not rel.target_columns:
                rel = rel.model_copy(update={"target_columns": keys.get(rel.target, ())})
            elif not rel.hidden and rel.kind == "many" and not rel.local_columns:
                rel = rel.model_copy(update={"local_columns": e.primary_key})
            relations.append(rel)
        entities.append(e.model_copy(update={"relations": tuple(relations)}))
    return schema.model_copy(update={"entities": tuple(entities)})


def strip_hidden(schema: Schema) -> Schema:
    """The schema as served: hidden fields and relations removed."""
    return schema.model_copy(
        update={
            "entities": tuple(
                e.model_copy(
                    update={
                        "fields": tuple(f for f in e.fields if not f.hidden),
                        "relations": tuple(r for r in e.relations if not r.hidden),
                    }
                )
                for e in schema.entities
            )
        }
    )
