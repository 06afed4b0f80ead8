"""Reflection: read tables, views, primary keys and foreign keys of a live database into the IR.

``reflect_database(url)`` reads the catalog of PostgreSQL (``pg_catalog``), MariaDB/MySQL
(``information_schema``) or SQLite (``PRAGMA``) and turns it into a
:class:`~quiver.schema.ir.Schema` with deterministic names. The naming rules are documented
in ``docs/reflection.md``; in short:

* entity   ``invoice_lines`` -> ``InvoiceLine`` (root fields ``invoiceLines``, ``invoiceLine``)
* field    ``artist_id`` -> ``artistId``
* forward  ``album.artist_id -> artist`` gives ``Album.artist``; reverse gives ``Artist.albums``

Reading the catalog is dialect specific and produces plain :class:`CatalogTable` records; naming is
shared and lives in :func:`build_schema`.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quiver.config.settings import TableNames
from quiver.runtime.errors import ConfigError, ErrorDetail, QuiverError
from quiver.runtime.hints import did_you_mean
from quiver.schema.api_names import (
    GENERATED_TYPE_SUFFIXES,
    RESERVED_MEMBER_NAMES,
    RESERVED_TYPE_NAMES,
    root_field_names,
)
from quiver.schema.ir import Attribute, Composite, Entity, Field, Relation, Scalar, Schema
from quiver.schema.naming import camel, pascal, pluralize, singularize
from quiver.sql.connect import connect_mysql, connect_postgresql, connect_sqlite
from quiver.sql.sqlite_driver import sqlite3
from quiver.sql.url import DatabaseUrl, parse_database_url

__all__ = [
    "SQLITE_SAMPLE_ROWS",
    "SQLITE_SAMPLE_SECONDS",
    "CatalogColumn",
    "CatalogForeignKey",
    "CatalogTable",
    "build_schema",
    "mysql_enum_values",
    "mysql_scalar",
    "postgresql_scalar",
    "reflect_database",
    "sqlite_scalar",
]

DEFAULT_PG_SCHEMAS = ("public",)

_DERIVED_ROOT_SUFFIXES = ("Connection", "Aggregate")
_GRAPHQL_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")

# A field or relation named like a RESERVED_MEMBER_NAMES word gets a trailing underscore:
# column ``and`` -> field ``and_``.

#: Rows sampled per SQLite view column without a declared type to infer its scalar.
SQLITE_SAMPLE_ROWS = 1000
#: Time budget for sampling one SQLite view column; past it the column stays String.
SQLITE_SAMPLE_SECONDS = 2.0


# --------------------------------------------------------------------------------------------
# The catalog: what every dialect reader produces
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogColumn:
    """One column as the database describes it, with its scalar already mapped."""

    name: str
    scalar: Scalar
    nullable: bool
    description: str | None = None
    #: The database's name of the column's type (``bytea``, ``bit(8)``, ``BLOB``).
    db_type: str | None = None
    #: An array of ``scalar`` values.
    is_list: bool = False
    #: An enum: its values in the database's order and, when the type is named (PostgreSQL),
    #: the GraphQL name of the type; MariaDB's inline ENUMs are named after the column.
    enum_values: tuple[str, ...] | None = None
    enum_name: str | None = None
    sortable: bool = True
    #: Written by the database when an insert omits it: a default, an identity, a generation.
    has_default: bool = False
    is_identity: bool = False
    is_generated: bool = False
    #: A PostgreSQL composite type (of the column, or of its elements): its attributes.
    composite: Composite | None = None
    #: The enum type (schema, name) a column of a domain over it is read as (PostgreSQL has
    #: no operators for such a domain).
    read_as: tuple[str, str] | None = None


@dataclass(frozen=True)
class CatalogForeignKey:
    """A foreign key: ``columns`` of the owning table reference ``target_columns``."""

    columns: tuple[str, ...]
    target_schema: str | None
    target_table: str
    target_columns: tuple[str, ...]


@dataclass(frozen=True)
class CatalogTable:
    """A table or view read from the catalog. ``schema`` is None outside PostgreSQL."""

    schema: str | None
    name: str
    is_view: bool
    columns: tuple[CatalogColumn, ...]
    primary_key: tuple[str, ...] = ()
    foreign_keys: tuple[CatalogForeignKey, ...] = ()
    description: str | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


# A resolved foreign key: (table holding it, the key, the table it references).
_Link = tuple[CatalogTable, CatalogForeignKey, CatalogTable]


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


async def reflect_database(
    url: str,
    *,
    schemas: list[str] | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    allow_empty: bool = False,
    names: Mapping[str, TableNames] | None = None,
) -> Schema:
    """Reflect the tables and views of the database at ``url`` into a :class:`Schema`.

    ``names`` (the ``names:`` section of ``quiver.yaml``) sets GraphQL names of tables, their
    root fields and their columns' fields in place of the derived ones.

    ``schemas`` lists the PostgreSQL schemas to read (default ``["public"]``); MariaDB/MySQL
    and SQLite read the database the URL names. ``include`` / ``exclude`` are glob patterns
    (``fnmatch``, case-sensitive) matched against the table name, or against
    ``schema.table`` when the pattern contains a dot. Raises :class:`ConfigError` when the
    database cannot be reached, a schema does not exist or a pattern matches nothing, and
    when nothing is left to serve unless ``allow_empty`` (for callers that compare a database
    with an authored schema, where an empty database is a finding rather than a failure).
    """
    db = parse_database_url(url)
    if db.dialect == "postgresql":
        pg_schemas = list(dict.fromkeys(schemas)) if schemas else list(DEFAULT_PG_SCHEMAS)
        tables = await _read_postgresql(db, pg_schemas)
        primary_schema: str | None = pg_schemas[0]
    else:
        _check_single_database_schemas(db, schemas)
        primary_schema = None
        if db.dialect == "mysql":
            tables = await _read_mysql(db)
        else:
            tables = await asyncio.to_thread(_read_sqlite, db)
    tables = _select_tables(tables, include or [], exclude or [])
    schema = build_schema(tables, primary_schema=primary_schema, overrides=names)
    if not schema.entities and not allow_empty:
        where = db.redacted()
        if db.dialect == "postgresql":
            where += f" (schemas {', '.join(pg_schemas)})"
        raise ConfigError.one(
            "the database has no tables or views to serve",
            where,
            "create a table first, point the URL at another database, or widen include/schemas",
        )
    return schema


def _check_single_database_schemas(db: DatabaseUrl, schemas: list[str] | None) -> None:
    allowed = {db.database} if db.dialect == "mysql" else {"main"}
    unknown = [s for s in schemas or [] if s not in allowed]
    if unknown:
        name = "MariaDB/MySQL" if db.dialect == "mysql" else "SQLite"
        raise ConfigError.one(
            f"schemas {unknown!r} cannot be reflected: {name} reads only the database "
            f"the URL names",
            "database.schemas",
            "remove database.schemas (it applies to PostgreSQL) or change the database in the URL",
        )


def _select_tables(
    tables: Sequence[CatalogTable], include: Sequence[str], exclude: Sequence[str]
) -> list[CatalogTable]:
    """Apply include/exclude globs; a pattern that matches no table is an error (likely a typo)."""
    names = sorted({t.name for t in tables} | {t.qualified_name for t in tables})
    problems: list[ErrorDetail] = []
    for option, patterns in (("include", include), ("exclude", exclude)):
        for i, pattern in enumerate(patterns):
            if not any(_matches(pattern, t) for t in tables):
                problems.append(
                    ErrorDetail(
                        f"pattern {pattern!r} matches no table or view",
                        f"{option}[{i}]",
                        did_you_mean(
                            pattern,
                            names,
                            most=3,
                            fallback="list the tables with a database client and fix the pattern",
                        ),
                    )
                )
    if problems:
        raise ConfigError(problems)
    return [
        t
        for t in tables
        if (not include or any(_matches(p, t) for p in include))
        and not any(_matches(p, t) for p in exclude)
    ]


def _matches(pattern: str, table: CatalogTable) -> bool:
    subject = table.qualified_name if "." in pattern else table.name
    return fnmatch.fnmatchcase(subject, pattern)


# --------------------------------------------------------------------------------------------
# Naming: catalog -> IR (shared by every dialect)
# --------------------------------------------------------------------------------------------


def build_schema(
    tables: Iterable[CatalogTable],
    *,
    primary_schema: str | None = None,
    overrides: Mapping[str, TableNames] | None = None,
) -> Schema:
    """Name every table, column and foreign key of ``tables`` and return the IR.

    ``primary_schema`` is the PostgreSQL schema whose tables keep unprefixed names when two
    schemas hold tables that map to the same entity name. ``overrides`` are the user's names,
    by table (see :func:`reflect_database`).
    """
    kept = sorted((t for t in tables if t.columns), key=lambda t: (t.schema or "", t.name))
    problems: list[ErrorDetail] = []
    chosen = _chosen_names(kept, overrides or {}, problems)
    names = _entity_names(kept, primary_schema)
    _rename_types(names, chosen, problems)
    by_key: dict[tuple[str | None, str], CatalogTable] = {(t.schema, t.name): t for t in kept}
    # SQLite and MariaDB (on case-insensitive setups) accept foreign keys in any letter case.
    by_folded: dict[tuple[str | None, str], CatalogTable] = {
        (t.schema, t.name.lower()): t for t in kept
    }

    fields: dict[str, list[Field]] = {}
    for table in kept:
        fields[names[table]] = _fields(table, names[table], problems, chosen.get(table))

    # Resolve each foreign key to its target table; keys to tables not reflected are dropped.
    links: list[_Link] = []
    for table in kept:
        seen: set[tuple[tuple[str, ...], str | None, str, tuple[str, ...]]] = set()
        for fk in table.foreign_keys:
            key = (fk.columns, fk.target_schema, fk.target_table, fk.target_columns)
            target = by_key.get((fk.target_schema, fk.target_table)) or by_folded.get(
                (fk.target_schema, fk.target_table.lower())
            )
            if target is None or key in seen or not fk.columns:
                continue
            if len(fk.columns) != len(fk.target_columns):
                continue
            seen.add(key)
            links.append((table, fk, target))

    _name_enums(fields, names.values())
    forward = _forward_relations(links, names, fields)
    reverse = _reverse_relations(links, names, fields, forward)

    entities: list[Entity] = []
    for table in kept:
        name = names[table]
        has_key = bool(table.primary_key) and not table.is_view
        relations = _renamed_relations(
            name, forward[name] + reverse[name], fields[name], chosen.get(table), problems
        )
        relations = sorted(relations, key=lambda r: r.name)
        entities.append(
            Entity(
                name=name,
                source=table.name,
                db_schema=table.schema,
                fields=tuple(fields[name]),
                primary_key=table.primary_key if has_key else (),
                relations=tuple(relations),
                list_field=_list_field(name),
                by_key_field=camel(name) if has_key else None,
                description=table.description,
            )
        )
    entities = _root_field_overrides(entities, kept, chosen, problems)
    if problems:
        raise ConfigError(problems)
    _check_root_fields_free(entities, kept, chosen, problems)
    if problems:
        raise ConfigError(problems)
    entities = _unique_root_fields(entities)
    _check_root_fields_kept(entities, chosen, problems)
    if problems:
        raise ConfigError(problems)
    return Schema(entities=tuple(sorted(entities, key=lambda e: e.name)))


# The user's names (``names:`` in quiver.yaml): (its key there, the names) per table.
_Chosen = dict[CatalogTable, tuple[str, TableNames]]


def _chosen_names(
    tables: Sequence[CatalogTable], overrides: Mapping[str, TableNames], problems: list[ErrorDetail]
) -> _Chosen:
    """Each ``names:`` key's table: a table name, or ``schema.table`` where that is ambiguous."""
    chosen: _Chosen = {}
    known = sorted({t.name for t in tables} | {t.qualified_name for t in tables})
    for key, table_names in overrides.items():
        matches = [t for t in tables if t.qualified_name == key] or [
            t for t in tables if t.name == key
        ]
        if len(matches) == 1:
            chosen[matches[0]] = (key, table_names)
        elif matches:
            places = ", ".join(repr(t.qualified_name) for t in matches)
            problems.append(
                ErrorDetail(
                    f"{key!r} names {len(matches)} tables ({places})",
                    f"names.{key}",
                    "write the table as schema.table",
                )
            )
        else:
            problems.append(
                ErrorDetail(
                    f"no table or view {key!r} is reflected",
                    f"names.{key}",
                    did_you_mean(
                        key, known, fallback="name a table that include/schemas let through"
                    ),
                )
            )
    return chosen


def _bad_name(name: str, what: str, where: str) -> ErrorDetail | None:
    if _GRAPHQL_NAME.fullmatch(name) and not name.startswith("__"):
        return None
    return ErrorDetail(
        f"{name!r} is not a GraphQL {what} name",
        where,
        "use ASCII letters, digits and _, not starting with a digit or __",
    )


def _rename_types(
    names: dict[CatalogTable, str], chosen: _Chosen, problems: list[ErrorDetail]
) -> None:
    """Give the tables the user named their type names; a clash is an error, never a rename."""
    for table, (_, table_names) in chosen.items():
        if table_names.type is not None:
            names[table] = table_names.type
    derived = {names[t] + suffix: t for t in names for suffix in GENERATED_TYPE_SUFFIXES}
    for table, (key, table_names) in chosen.items():
        name, where = table_names.type, f"names.{key}.type"
        if name is None:
            continue
        bad = _bad_name(name, "type", where)
        others = [t for t in names if names[t] == name and t is not table]
        if bad is not None:
            problems.append(bad)
        elif name in RESERVED_TYPE_NAMES:
            problems.append(
                ErrorDetail(
                    f"{name!r} is a type GraphQL or Quiver already has", where, "pick another name"
                )
            )
        elif others:
            problems.append(
                ErrorDetail(
                    f"type {name!r} is also the type of table {others[0].qualified_name!r}",
                    where,
                    f"pick another name, or name {others[0].qualified_name!r} too under names",
                )
            )
        elif name in derived:
            problems.append(
                ErrorDetail(
                    f"type {name!r} is a type Quiver derives for table"
                    f" {derived[name].qualified_name!r}",
                    where,
                    "pick another name",
                )
            )


def _root_field_overrides(
    entities: list[Entity],
    tables: Sequence[CatalogTable],
    chosen: _Chosen,
    problems: list[ErrorDetail],
) -> list[Entity]:
    out: list[Entity] = []
    for entity, table in zip(entities, tables, strict=True):
        key, table_names = chosen.get(table, ("", TableNames()))
        update: dict[str, str] = {}
        if table_names.plural is not None:
            bad = _bad_name(table_names.plural, "field", f"names.{key}.plural")
            if bad is not None:
                problems.append(bad)
            update["list_field"] = table_names.plural
        if table_names.by_key is not None:
            where = f"names.{key}.by_key"
            bad = _bad_name(table_names.by_key, "field", where)
            if bad is not None:
                problems.append(bad)
            elif entity.by_key_field is None:
                problems.append(
                    ErrorDetail(
                        f"{table.qualified_name!r} has no primary key, so it has no by-key field",
                        where,
                        "remove by_key, or give the table a primary key",
                    )
                )
            update["by_key_field"] = table_names.by_key
        out.append(entity.model_copy(update=update) if update else entity)
    return out


def _check_root_fields_free(
    entities: list[Entity],
    tables: Sequence[CatalogTable],
    chosen: _Chosen,
    problems: list[ErrorDetail],
) -> None:
    """A root field the user named may not be one another table serves."""
    fields = [set(root_field_names(e)) for e in entities]
    for i, table in enumerate(tables):
        if table not in chosen:
            continue
        key, table_names = chosen[table]
        others = set().union(*(f for j, f in enumerate(fields) if j != i))
        for option, wanted, suffixes in (
            ("plural", table_names.plural, ("", "Connection", "Aggregate")),
            ("by_key", table_names.by_key, ("",)),
        ):
            taken = [wanted + x for x in suffixes if wanted is not None and wanted + x in others]
            if taken:
                problems.append(
                    ErrorDetail(
                        f"root field {taken[0]!r} clashes with a root field of another table",
                        f"names.{key}.{option}",
                        "pick another name, or rename the other table's fields under names",
                    )
                )


def _check_root_fields_kept(
    entities: list[Entity], chosen: _Chosen, problems: list[ErrorDetail]
) -> None:
    """A root field the user named must be served under that name, or it clashes."""
    by_source = {(e.db_schema, e.source): e for e in entities}
    for table, (key, table_names) in chosen.items():
        entity = by_source[(table.schema, table.name)]
        for option, wanted, got in (
            ("plural", table_names.plural, entity.list_field),
            ("by_key", table_names.by_key, entity.by_key_field),
        ):
            if wanted is not None and got != wanted:
                problems.append(
                    ErrorDetail(
                        f"root field {wanted!r} clashes with another root field (with its"
                        " Connection and Aggregate fields)",
                        f"names.{key}.{option}",
                        "pick another name, or rename the other table's fields under names",
                    )
                )


def _entity_names(
    tables: Sequence[CatalogTable], primary_schema: str | None
) -> dict[CatalogTable, str]:
    """``invoice_lines`` -> ``InvoiceLine``; collisions are resolved deterministically.

    1. a name that collides across schemas gets its schema as prefix (``AuditUser``), except in
       the primary schema (the first one reflected);
    2. within one schema, the table whose own name is already the singular keeps the name and
       the others use their table name unsingularized (``album`` -> ``Album``,
       ``albums`` -> ``Albums``);
    3. a name GraphQL reserves (``Query``, ``String``, ``Date``...) or one the GraphQL layer
       derives from another entity (``AlbumWhere``, ``AlbumEdge``) gets the suffix ``Row``;
    4. anything still colliding gets a numeric suffix in table order (``Album2``).
    """
    names = {t: _type_name(pascal(singularize(t.name))) for t in tables}
    prefixed: set[CatalogTable] = set()
    for group in _collisions(names):
        if len({t.schema for t in group}) > 1:
            for t in group:
                if t.schema and t.schema != primary_schema:
                    names[t] = _type_name(pascal(f"{t.schema}_{singularize(t.name)}"))
                    prefixed.add(t)
    for group in _collisions(names):
        for t in group:
            prefix = pascal(t.schema or "") if t in prefixed else ""
            names[t] = _type_name(prefix + pascal(t.name))
    derived = {names[t] + suffix for t in tables for suffix in GENERATED_TYPE_SUFFIXES}
    for t in tables:
        if names[t] in RESERVED_TYPE_NAMES or names[t] in derived:
            names[t] += "Row"
    used: set[str] = set()
    for t in tables:
        name, n = names[t], 2
        while names[t] in used:
            names[t] = f"{name}{n}"
            n += 1
        used.add(names[t])
    return names


def _collisions(names: dict[CatalogTable, str]) -> list[list[CatalogTable]]:
    groups: dict[str, list[CatalogTable]] = defaultdict(list)
    for t, name in names.items():
        groups[name].append(t)
    return [g for g in groups.values() if len(g) > 1]


def _type_name(name: str) -> str:
    return name if not name[:1].isdigit() else "_" + name


def _list_field(entity: str) -> str:
    """``Album`` -> ``albums``; an entity still named in the plural -> ``itemsList``.

    An entity keeps a plural name when its table's singular is taken (``items`` beside
    ``item`` gives ``Items``); pluralizing it again would give ``itemses``.
    """
    if singularize(entity) != entity:
        return camel(entity) + "List"
    return pluralize(camel(entity))


def _member_name(name: str) -> str:
    """A field or relation name that is a where combinator or an enum keyword gets ``_``."""
    return name + "_" if name in RESERVED_MEMBER_NAMES else name


def _field_name(column: str) -> str:
    return _member_name(camel(column))


def _field(col: CatalogColumn, name: str, entity: str) -> Field:
    enum_name = col.enum_name
    if col.enum_values is not None and enum_name is None:
        enum_name = entity + pascal(name)
    return Field(
        name=name,
        column=col.name,
        scalar=col.scalar,
        nullable=col.nullable,
        description=col.description,
        db_type=col.db_type,
        is_list=col.is_list,
        enum_name=enum_name,
        enum_values=col.enum_values,
        sortable=col.sortable,
        has_default=col.has_default,
        is_identity=col.is_identity,
        is_generated=col.is_generated,
        composite=col.composite,
        read_as=col.read_as,
    )


def _bad_member_name(name: str, where: str) -> ErrorDetail | None:
    """Why ``name`` cannot name a field or relation, if it cannot: not a GraphQL name, or a
    reserved word."""
    bad = _bad_name(name, "field", where)
    if bad is None and name in RESERVED_MEMBER_NAMES:
        bad = ErrorDetail(
            f"{name!r} is reserved (a filter combinator or an enum keyword)",
            where,
            "pick another name",
        )
    return bad


def _field_overrides(
    table: CatalogTable, key: str, given: Mapping[str, str], problems: list[ErrorDetail]
) -> dict[str, str]:
    """The user's field names of ``table`` by column, each checked; bad ones are left out."""
    columns = [c.name for c in table.columns]
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for column, name in given.items():
        where = f"names.{key}.fields.{column}"
        bad = _bad_member_name(name, where)
        if column not in columns:
            problems.append(
                ErrorDetail(
                    f"table {table.qualified_name!r} has no column {column!r}",
                    where,
                    did_you_mean(column, columns, fallback=f"its columns: {', '.join(columns)}"),
                )
            )
        elif bad is not None:
            problems.append(bad)
        elif name in seen:
            problems.append(
                ErrorDetail(
                    f"field {name!r} is also the name given to column {seen[name]!r}",
                    where,
                    "give each column its own name",
                )
            )
        else:
            seen[name] = column
            out[column] = name
    return out


def _renamed_relations(
    entity: str,
    relations: list[Relation],
    fields: Sequence[Field],
    chosen: tuple[str, TableNames] | None,
    problems: list[ErrorDetail],
) -> list[Relation]:
    """``relations`` with the names the user gave (``names.<table>.relations``), each checked:
    the relation must exist, and its new name (with ``<name>Aggregate`` for a list) must be
    free among the entity's fields, other relations and their aggregate fields."""
    key, table_names = chosen or ("", TableNames())
    if not table_names.relations:
        return relations
    derived = [r.name for r in relations]
    renamed: dict[str, str] = {}
    for old, new in table_names.relations.items():
        where = f"names.{key}.relations.{old}"
        bad = _bad_member_name(new, where)
        if old not in derived:
            problems.append(
                ErrorDetail(
                    f"{entity} has no relation {old!r}",
                    where,
                    did_you_mean(
                        old, derived, fallback=f"its relations: {', '.join(derived) or 'none'}"
                    ),
                )
            )
        elif bad is not None:
            problems.append(bad)
        else:
            renamed[old] = new
    out = [r.model_copy(update={"name": renamed.get(r.name, r.name)}) for r in relations]

    def members(r: Relation) -> list[str]:
        return [r.name, r.name + "Aggregate"] if r.kind == "many" else [r.name]

    for old, r in zip(derived, out, strict=True):
        if old not in renamed:
            continue
        others = {f.name: f"field {f.name!r}" for f in fields}
        for other in out:
            if other is not r:
                others.update({m: f"relation {other.name!r}" for m in members(other)})
        for member in members(r):
            if member in others:
                problems.append(
                    ErrorDetail(
                        f"relation name {member!r} is also the name of {others[member]}"
                        f" of {entity}",
                        f"names.{key}.relations.{old}",
                        "pick another name",
                    )
                )
    return out


def _fields(
    table: CatalogTable,
    entity: str,
    problems: list[ErrorDetail],
    chosen: tuple[str, TableNames] | None = None,
) -> list[Field]:
    out: list[Field] = []
    key, table_names = chosen or ("", TableNames())
    given = _field_overrides(table, key, table_names.fields, problems)
    used: set[str] = set(given.values())
    for col in table.columns:
        if col.name in given:
            name = given[col.name]
            used.add(name)
            out.append(_field(col, name, entity))
            continue
        name = _field_name(col.name)
        own = _member_name(col.name)
        if name in used and _bad_name(col.name, "field", "") is None and own not in used:
            name = own  # two columns camel-case alike (``artist_id`` / ``ArtistId``)
        n = 2
        base = name
        while name in used:
            name = f"{base}{n}"
            n += 1
        if not _GRAPHQL_NAME.fullmatch(name):
            problems.append(
                ErrorDetail(
                    f"column {col.name!r} has no usable GraphQL name",
                    f"{table.qualified_name}.{col.name}",
                    "exclude the table, or serve a view that renames the column to ASCII "
                    "letters, digits and underscores",
                )
            )
            continue
        used.add(name)
        out.append(_field(col, name, entity))
    if not _GRAPHQL_NAME.fullmatch(entity) and table_names.type is None:
        # (a type name the user gave is checked, and reported, where it is given)
        problems.append(
            ErrorDetail(
                f"table {table.name!r} has no usable GraphQL type name",
                table.qualified_name,
                "exclude it, or serve a view named with ASCII letters, digits and underscores",
            )
        )
    return out


def _name_enums(fields: dict[str, list[Field]], entities: Iterable[str]) -> None:
    """Give every distinct enum a GraphQL type name of its own.

    An enum named like an entity or a type the API generates gets ``Enum`` appended; two
    different enums under one name (the same type name in two schemas) are numbered.
    """
    taken = set(RESERVED_TYPE_NAMES) | {f"{s.value}ArrayFilter" for s in Scalar}
    for e in entities:
        taken.add(e)
        taken.update(e + suffix for suffix in GENERATED_TYPE_SUFFIXES)
    chosen: dict[tuple[str, tuple[str, ...]], str] = {}
    enums: set[str] = set()
    for entity in sorted(fields):
        for i, f in enumerate(fields[entity]):
            if f.enum_name is None or f.enum_values is None:
                continue
            key = (f.enum_name, f.enum_values)
            if key not in chosen:
                base = f.enum_name if _GRAPHQL_NAME.fullmatch(f.enum_name) else "Enum"
                name = base
                derived = ("", "Filter", "ArrayFilter")
                if any(name + x in taken for x in derived) and name not in enums:
                    name = base = base + "Enum"
                n = 2
                while any(name + x in taken for x in derived):
                    name = f"{base}{n}"
                    n += 1
                taken.update(name + x for x in derived)
                enums.add(name)
                chosen[key] = name
            fields[entity][i] = f.model_copy(update={"enum_name": chosen[key]})


def _fk_label(columns: Sequence[str]) -> str:
    """``("support_rep_id",)`` -> ``SupportRepId``; composite keys join with ``And``."""
    return "And".join(pascal(c).lstrip("_") for c in columns)


def _group_links(
    links: Sequence[_Link], names: dict[CatalogTable, str], *, by_target: bool
) -> dict[str, list[_Link]]:
    """Links by the entity holding the key, or by the entity it references."""
    grouped: dict[str, list[_Link]] = defaultdict(list)
    for link in links:
        grouped[names[link[2] if by_target else link[0]]].append(link)
    return grouped


def _forward_relations(
    links: Sequence[_Link],
    names: dict[CatalogTable, str],
    fields: dict[str, list[Field]],
) -> dict[str, list[Relation]]:
    """``album.artist_id -> artist`` gives ``Album.artist`` (kind "one")."""
    out: dict[str, list[Relation]] = defaultdict(list)
    for entity, entity_links in _group_links(links, names, by_target=False).items():
        field_names = {f.name for f in fields[entity]}
        bases = [_forward_base(fk, names[target]) for _, fk, target in entity_links]
        counts = Counter(bases)
        used = set(field_names)
        planned: list[str] = []
        for base, (_, fk, target) in zip(bases, entity_links, strict=True):
            if base in field_names or counts[base] > 1:
                base = camel(names[target]) + "By" + _fk_label(fk.columns)
            planned.append(base)
        for name, (table, fk, target) in zip(planned, entity_links, strict=True):
            name = _unique(name, used)
            nullable_cols = {c.name for c in table.columns if c.nullable}
            out[entity].append(
                Relation(
                    name=name,
                    target=names[target],
                    kind="one",
                    local_columns=fk.columns,
                    target_columns=fk.target_columns,
                    nullable=any(c in nullable_cols for c in fk.columns),
                )
            )
    return out


def _forward_base(fk: CatalogForeignKey, target_entity: str) -> str:
    if len(fk.columns) > 1:
        return _member_name(camel(target_entity))
    name = camel(fk.columns[0])
    if name.endswith("Id") and len(name) > 2:
        name = name[:-2]
    return _member_name(name)


def _reverse_relations(
    links: Sequence[_Link],
    names: dict[CatalogTable, str],
    fields: dict[str, list[Field]],
    forward: dict[str, list[Relation]],
) -> dict[str, list[Relation]]:
    """``album.artist_id -> artist`` gives ``Artist.albums`` (kind "many")."""
    out: dict[str, list[Relation]] = defaultdict(list)
    for entity, entity_links in _group_links(links, names, by_target=True).items():
        taken = {f.name for f in fields[entity]} | {r.name for r in forward.get(entity, [])}
        sources = Counter(names[source] for source, _, _ in entity_links)
        bases = [_list_field(names[source]) for source, _, _ in entity_links]
        counts = Counter(bases)
        used = set(taken)
        for base, (source, fk, _) in zip(bases, entity_links, strict=True):
            name = base
            clash = base in taken or base + "Aggregate" in taken
            if sources[names[source]] > 1 or counts[base] > 1 or clash:
                name = base + "By" + _fk_label(fk.columns)
            # A list relation also gets a ``<name>Aggregate`` field in GraphQL.
            candidate, n = name, 2
            while candidate in used or candidate + "Aggregate" in used:
                candidate, n = f"{name}{n}", n + 1
            used.update((candidate, candidate + "Aggregate"))
            out[entity].append(
                Relation(
                    name=candidate,
                    target=names[source],
                    kind="many",
                    local_columns=fk.target_columns,
                    target_columns=fk.columns,
                    nullable=False,
                )
            )
    return out


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate = f"{name}{n}"
        n += 1
    used.add(candidate)
    return candidate


def _unique_root_fields(entities: list[Entity]) -> list[Entity]:
    """List and by-key root fields must not collide across entities (``album`` vs ``albums``).

    List fields (with the ``Connection`` / ``Aggregate`` root fields derived from them) are
    placed first; a by-key field that collides with another root field gets the suffix
    ``ByKey``.
    """
    used: set[str] = set()
    out: list[Entity] = []
    for e in sorted(entities, key=lambda e: e.name):
        base = e.list_field or pluralize(camel(e.name))
        list_field, n = base, 2
        while any(list_field + s in used for s in ("", *_DERIVED_ROOT_SUFFIXES)):
            list_field, n = f"{base}{n}", n + 1
        used.update(list_field + s for s in ("", *_DERIVED_ROOT_SUFFIXES))
        out.append(e.model_copy(update={"list_field": list_field}))
    final: list[Entity] = []
    for e in out:
        if e.by_key_field is None:
            final.append(e)
            continue
        by_key = e.by_key_field
        if by_key in used:
            by_key += "ByKey"
        final.append(e.model_copy(update={"by_key_field": _unique(by_key, used)}))
    return final


# --------------------------------------------------------------------------------------------
# Scalar mapping per dialect
# --------------------------------------------------------------------------------------------

_PG_SCALARS = {
    "int2": Scalar.INT,
    "int4": Scalar.INT,
    "int8": Scalar.BIGINT,
    "float4": Scalar.FLOAT,
    "float8": Scalar.FLOAT,
    "numeric": Scalar.DECIMAL,
    "bool": Scalar.BOOLEAN,
    "uuid": Scalar.UUID,
    "json": Scalar.JSON,
    "jsonb": Scalar.JSON,
    "timestamp": Scalar.DATETIME,
    "timestamptz": Scalar.DATETIME,
    "date": Scalar.DATE,
    "time": Scalar.TIME,
    "timetz": Scalar.TIME,
    "bytea": Scalar.BASE64,
}


#: PostgreSQL types without a default btree ordering: they cannot be sorted or grouped.
_PG_UNORDERED = frozenset(
    {"point", "line", "lseg", "box", "path", "polygon", "circle", "xml", "aclitem"}
    | {"txid_snapshot", "pg_snapshot", "json"}
)


def postgresql_scalar(type_name: str) -> Scalar:
    """Scalar of a PostgreSQL base type (``pg_type.typname``: ``int4``, ``timestamptz``...)."""
    return _PG_SCALARS.get(type_name, Scalar.STRING)


_MYSQL_SCALARS = {
    "tinyint": Scalar.INT,
    "smallint": Scalar.INT,
    "mediumint": Scalar.INT,
    "int": Scalar.INT,
    "integer": Scalar.INT,
    "year": Scalar.INT,
    "bigint": Scalar.BIGINT,
    "float": Scalar.FLOAT,
    "double": Scalar.FLOAT,
    "double precision": Scalar.FLOAT,
    "real": Scalar.FLOAT,
    "decimal": Scalar.DECIMAL,
    "numeric": Scalar.DECIMAL,
    "json": Scalar.JSON,
    "uuid": Scalar.UUID,
    "binary": Scalar.BASE64,
    "varbinary": Scalar.BASE64,
    "tinyblob": Scalar.BASE64,
    "blob": Scalar.BASE64,
    "mediumblob": Scalar.BASE64,
    "longblob": Scalar.BASE64,
    # Spatial values are served as GeoJSON.
    "geometry": Scalar.JSON,
    "point": Scalar.JSON,
    "linestring": Scalar.JSON,
    "polygon": Scalar.JSON,
    "multipoint": Scalar.JSON,
    "multilinestring": Scalar.JSON,
    "multipolygon": Scalar.JSON,
    "geometrycollection": Scalar.JSON,
    "datetime": Scalar.DATETIME,
    "timestamp": Scalar.DATETIME,
    "date": Scalar.DATE,
    "time": Scalar.TIME,
}


def mysql_scalar(data_type: str, column_type: str, *, json_checked: bool = False) -> Scalar:
    """Scalar of a MariaDB/MySQL column from ``DATA_TYPE`` and ``COLUMN_TYPE``.

    ``tinyint(1)`` (what ``BOOLEAN`` becomes) is Boolean; ``int unsigned`` needs BigInt to hold
    its range; ``json_checked`` marks a text column guarded by ``json_valid(col)``, which is how
    MariaDB stores ``JSON`` columns.
    """
    data_type = data_type.lower()
    column_type = column_type.lower()
    if data_type == "tinyint" and column_type.startswith("tinyint(1)"):
        return Scalar.BOOLEAN
    if data_type in ("int", "integer") and "unsigned" in column_type:
        return Scalar.BIGINT
    if data_type == "bigint" and "unsigned" in column_type:
        return Scalar.DECIMAL  # up to 2^64 - 1: beyond a signed 64-bit BigInt
    if data_type == "bit":
        return Scalar.BOOLEAN if column_type in ("bit(1)", "bit") else Scalar.STRING
    if json_checked and data_type in ("longtext", "text", "mediumtext", "tinytext", "varchar"):
        return Scalar.JSON
    return _MYSQL_SCALARS.get(data_type, Scalar.STRING)


_MYSQL_ENUM_VALUE = re.compile(r"'((?:[^'\\]|''|\\.)*)'")


def mysql_enum_values(column_type: str) -> tuple[str, ...] | None:
    """The values of ``enum('a','b')`` as MariaDB's ``COLUMN_TYPE`` spells it, else None."""
    if not column_type.lower().startswith("enum("):
        return None
    values = [
        m.group(1).replace("''", "'").replace("\\\\", "\\")
        for m in _MYSQL_ENUM_VALUE.finditer(column_type[5:-1])
    ]
    return tuple(values)


_SQLITE_SCALARS = {
    "INTEGER": Scalar.INT,
    "INT": Scalar.INT,
    "TINYINT": Scalar.INT,
    "SMALLINT": Scalar.INT,
    "MEDIUMINT": Scalar.INT,
    "INT2": Scalar.INT,
    "INT4": Scalar.INT,
    "BIGINT": Scalar.BIGINT,
    "INT8": Scalar.BIGINT,
    "UNSIGNED BIG INT": Scalar.BIGINT,
    "NUMERIC": Scalar.DECIMAL,
    "DECIMAL": Scalar.DECIMAL,
    "REAL": Scalar.FLOAT,
    "DOUBLE": Scalar.FLOAT,
    "DOUBLE PRECISION": Scalar.FLOAT,
    "FLOAT": Scalar.FLOAT,
    "FLOAT4": Scalar.FLOAT,
    "FLOAT8": Scalar.FLOAT,
    "BOOLEAN": Scalar.BOOLEAN,
    "BOOL": Scalar.BOOLEAN,
    "TIMESTAMP": Scalar.DATETIME,
    "TIMESTAMPTZ": Scalar.DATETIME,
    "DATETIME": Scalar.DATETIME,
    "DATE": Scalar.DATE,
    "TIME": Scalar.TIME,
    "UUID": Scalar.UUID,
    "JSON": Scalar.JSON,
    "JSONB": Scalar.JSON,
    "BLOB": Scalar.BASE64,
}


def sqlite_scalar(declared: str) -> Scalar:
    """Scalar of a SQLite column from its declared type (``NUMERIC(10,2)`` -> Decimal).

    The type is matched without its parameters, case-insensitively. Known names map exactly;
    otherwise the first word that is a known name decides (``INTEGER UNSIGNED`` -> Int,
    ``VARCHAR2`` -> String, ``TIMESTAMP WITH TIME ZONE`` -> DateTime); the rest is String.
    """
    words = re.sub(r"\(.*?\)", " ", declared).upper().split()
    base = " ".join(words)
    if base in _SQLITE_SCALARS:
        return _SQLITE_SCALARS[base]
    for word in words:
        if word in _SQLITE_SCALARS:
            return _SQLITE_SCALARS[word]
    return Scalar.STRING


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------

_PG_RELATIONS = """
SELECT c.oid, n.nspname, c.relname, c.relkind::text AS relkind,
       pg_catalog.obj_description(c.oid, 'pg_class') AS description
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[])
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND NOT c.relispartition
"""

_PG_COLUMNS = """
SELECT a.attrelid, a.attname, NOT a.attnotnull AS nullable, a.atttypid, a.atttypmod,
       pg_catalog.col_description(a.attrelid, a.attnum) AS description,
       a.atthasdef AS has_default, a.attidentity::text AS identity,
       a.attgenerated::text AS generated
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

_PG_TYPES = """
SELECT t.oid, t.typname, t.typtype::text AS typtype, t.typbasetype, t.typnotnull, t.typtypmod,
       t.typelem, t.typcategory::text AS typcategory,
       (SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE n.oid = t.typnamespace) AS nspname,
       ARRAY(SELECT e.enumlabel FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid
             ORDER BY e.enumsortorder) AS labels
FROM pg_catalog.pg_type t
WHERE t.oid = ANY($1::oid[]) OR t.typtype IN ('d', 'e')
   OR t.oid IN (SELECT d.typbasetype FROM pg_catalog.pg_type d WHERE d.typtype = 'd')
   OR t.oid IN (SELECT a.typelem FROM pg_catalog.pg_type a WHERE a.oid = ANY($1::oid[]))
"""

_PG_COMPOSITE_ATTRIBUTES = """
SELECT t.oid AS type_oid, n.nspname, t.typname, a.attname, a.atttypid,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS db_type
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_catalog.pg_attribute a
  ON a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
WHERE t.oid = ANY($1::oid[])
ORDER BY t.oid, a.attnum
"""

_PG_CONSTRAINTS = """
SELECT con.conrelid, con.contype::text AS contype,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS columns,
       tn.nspname AS target_schema, tc.relname AS target_table,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.ord) AS target_columns
FROM pg_catalog.pg_constraint con
LEFT JOIN pg_catalog.pg_class tc ON tc.oid = con.confrelid
LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
WHERE con.conrelid = ANY($1::oid[]) AND con.contype IN ('p', 'f') AND con.conparentid = 0
ORDER BY con.conrelid, con.conname
"""

_PG_SCHEMAS = """
SELECT nspname FROM pg_catalog.pg_namespace
WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
"""


async def _read_postgresql(db: DatabaseUrl, schemas: list[str]) -> list[CatalogTable]:
    import asyncpg

    conn = await _connect_postgresql(db)
    try:
        existing = {r["nspname"] for r in await conn.fetch(_PG_SCHEMAS)}
        missing = [s for s in schemas if s not in existing]
        if missing:
            raise ConfigError(
                [
                    ErrorDetail(
                        f"schema {s!r} does not exist in database {db.database!r}",
                        "database.schemas",
                        did_you_mean(
                            s, existing, most=3, fallback="list existing schemas with \\dn in psql"
                        ),
                    )
                    for s in missing
                ]
            )
        rels = await conn.fetch(_PG_RELATIONS, schemas)
        oids = [r["oid"] for r in rels]
        cols = await conn.fetch(_PG_COLUMNS, oids)
        types = {
            r["oid"]: r for r in await conn.fetch(_PG_TYPES, list({c["atttypid"] for c in cols}))
        }
        cons = await conn.fetch(_PG_CONSTRAINTS, oids)
        composites = await _pg_composites(conn, types, {c["atttypid"] for c in cols})
    except asyncpg.PostgresError as exc:
        raise ConfigError.one(
            f"cannot read the catalog: {exc}",
            db.redacted(),
            "connect as a role that may read pg_catalog for these schemas",
        ) from None
    finally:
        await conn.close()

    columns: dict[int, list[CatalogColumn]] = defaultdict(list)
    for c in cols:
        base_oid, domain_not_null = _pg_base_type(c["atttypid"], types)
        columns[c["attrelid"]].append(
            _pg_column(
                c,
                base_oid,
                types,
                composites,
                nullable=bool(c["nullable"]) and not domain_not_null,
                typmod=_pg_typmod(c["atttypid"], c["atttypmod"], types),
            )
        )
    primary: dict[int, tuple[str, ...]] = {}
    foreign: dict[int, list[CatalogForeignKey]] = defaultdict(list)
    for con in cons:
        if con["contype"] == "p":
            primary[con["conrelid"]] = tuple(con["columns"])
        else:
            foreign[con["conrelid"]].append(
                CatalogForeignKey(
                    columns=tuple(con["columns"]),
                    target_schema=con["target_schema"],
                    target_table=con["target_table"],
                    target_columns=tuple(con["target_columns"]),
                )
            )
    return [
        CatalogTable(
            schema=r["nspname"],
            name=r["relname"],
            is_view=r["relkind"] in ("v", "m"),
            columns=tuple(columns[r["oid"]]),
            primary_key=primary.get(r["oid"], ()),
            foreign_keys=tuple(foreign[r["oid"]]),
            description=r["description"] or None,
        )
        for r in rels
    ]


def _pg_base_type(oid: int, types: dict[int, Any]) -> tuple[int, bool]:
    """Follow domains down to their base type; a NOT NULL domain makes the column not null."""
    not_null = False
    for _ in range(32):  # domains over domains, bounded
        row = types.get(oid)
        if row is None or row["typtype"] != "d":
            return oid, not_null
        not_null = not_null or bool(row["typnotnull"])
        oid = row["typbasetype"]
    return 0, not_null


def _pg_typmod(oid: int, typmod: int | None, types: dict[int, Any]) -> int:
    """The type modifier of a column: its own, else the nearest domain's (-1: none)."""
    for _ in range(32):
        if typmod is not None and typmod >= 0:
            return typmod
        row = types.get(oid)
        if row is None or row["typtype"] != "d":
            return -1
        typmod = row["typtypmod"]
        oid = row["typbasetype"]
    return -1


def _pg_numeric(typmod: int) -> str:
    """``numeric(p,s)`` of a numeric type modifier, or ``numeric`` without one. PostgreSQL 15
    allows a scale below 0 or above the precision (stored as 11 signed bits)."""
    if typmod < 4:
        return "numeric"
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024
    return f"numeric({precision},{scale})"


def _pg_element(oid: int, types: dict[int, Any], *, domains: bool = False) -> tuple[Any, bool]:
    """The type row of base type ``oid`` or, for an array, of its elements' base type (their
    own type, domain or not, with ``domains``; None when unknown); and whether it is an
    array."""
    row = types.get(oid)
    if row is not None and row["typcategory"] == "A" and row["typelem"]:
        elem = row["typelem"] if domains else _pg_base_type(row["typelem"], types)[0]
        return types.get(elem), True
    return row, False


async def _pg_composites(
    conn: Any, types: dict[int, Any], column_types: Iterable[int]
) -> dict[int, Composite]:
    """Every composite type of ``column_types`` (of its elements for an array), with its
    attributes, nested composites read down to the last. Adds the attributes' types to
    ``types``."""
    attributes: dict[int, list[Any]] = {}

    def composite_oids(oids: Iterable[int]) -> set[int]:
        out = set()
        for oid in oids:
            row, _ = _pg_element(_pg_base_type(oid, types)[0], types)
            if row is not None and row["typtype"] == "c":
                out.add(int(row["oid"]))
        return out

    todo = composite_oids(column_types)
    for _ in range(32):  # composites nest composites, bounded
        todo -= attributes.keys()
        if not todo:
            break
        rows = await conn.fetch(_PG_COMPOSITE_ATTRIBUTES, list(todo))
        unknown = {r["atttypid"] for r in rows if r["atttypid"] is not None} - types.keys()
        if unknown:
            types.update((r["oid"], r) for r in await conn.fetch(_PG_TYPES, list(unknown)))
        for r in rows:
            attributes.setdefault(r["type_oid"], []).append(r)
        todo = composite_oids(r["atttypid"] for r in rows if r["atttypid"] is not None)

    built: dict[int, Composite] = {}

    def build(oid: int) -> Composite:
        if oid not in built:
            rows = attributes[oid]
            out: list[Attribute] = []
            for r in rows:
                if r["attname"] is None:  # a composite type of no attributes
                    continue
                row, is_list = _pg_element(_pg_base_type(r["atttypid"], types)[0], types)
                nested = row is not None and row["typtype"] == "c" and row["oid"] in attributes
                out.append(
                    Attribute(
                        name=r["attname"],
                        db_type=r["db_type"],
                        composite=build(row["oid"]) if nested else None,
                        is_list=is_list,
                    )
                )
            first = rows[0]
            built[oid] = Composite(
                db_schema=first["nspname"], name=first["typname"], attributes=tuple(out)
            )
        return built[oid]

    return {oid: build(oid) for oid in attributes}


def _pg_column(
    c: Any,
    oid: int,
    types: dict[int, Any],
    composites: Mapping[int, Composite],
    *,
    nullable: bool,
    typmod: int = -1,
) -> CatalogColumn:
    """A column of base type ``oid``: arrays list their element type, enums their labels,
    composite types are JSON objects (with their attributes, to write them from JSON)."""
    generated = bool(c["generated"])
    has_default = bool(c["has_default"]) and not generated
    identity = bool(c["identity"])
    row, is_list = _pg_element(oid, types)
    if row is None:
        return CatalogColumn(
            c["attname"],
            Scalar.STRING,
            nullable,
            c["description"] or None,
            has_default=has_default,
            is_identity=identity,
            is_generated=generated,
        )
    type_name = str(row["typname"])
    enum_values: tuple[str, ...] | None = None
    enum_name: str | None = None
    read_as: tuple[str, str] | None = None
    if row["typtype"] == "e":
        enum_values = tuple(row["labels"])
        enum_name = pascal(type_name)
        own, _ = _pg_element(c["atttypid"], types, domains=True)
        if own is not None and own["oid"] != row["oid"]:  # a domain over the enum (or array)
            read_as = (str(row["nspname"]), type_name)
    own_array = types.get(oid)
    if (
        is_list
        and read_as is None
        and own_array is not None
        and not str(own_array["typname"]).startswith("_")
    ):
        # an array type with operators of its own (oidvector, int2vector): read as an array
        # of its elements, which filters, orderBy and cursors compare with
        read_as = (str(row["nspname"]), type_name)
    scalar = Scalar.JSON if row["typtype"] == "c" else postgresql_scalar(type_name)
    return CatalogColumn(
        sortable=type_name not in _PG_UNORDERED,
        name=c["attname"],
        scalar=scalar,
        nullable=nullable,
        description=c["description"] or None,
        db_type=_pg_numeric(typmod) if type_name == "numeric" else type_name,
        is_list=is_list,
        enum_values=enum_values,
        enum_name=enum_name,
        has_default=has_default,
        is_identity=identity,
        is_generated=generated,
        composite=composites.get(row["oid"]) if row["typtype"] == "c" else None,
        read_as=read_as,
    )


async def _connect_postgresql(db: DatabaseUrl) -> Any:
    try:
        return await connect_postgresql(db, server_settings={"application_name": "quiver-reflect"})
    except QuiverError as exc:
        raise _unreachable_from(exc) from None


def _unreachable_from(exc: QuiverError) -> ConfigError:
    """A connection failure of sql/connect as the one ConfigError reflection reports."""
    return ConfigError(
        [
            ErrorDetail(f"cannot connect to the database: {d.message}", d.where, d.fix)
            for d in exc.details
        ]
    )


def _unreachable(db: DatabaseUrl, reason: str, fix: str) -> ConfigError:
    return ConfigError(
        [ErrorDetail(f"cannot connect to the database: {reason}", db.redacted(), fix)]
    )


# --------------------------------------------------------------------------------------------
# MariaDB / MySQL
# --------------------------------------------------------------------------------------------

_MYSQL_TABLES = """
SELECT TABLE_NAME, TABLE_TYPE, TABLE_COMMENT FROM information_schema.TABLES
WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN ('BASE TABLE', 'VIEW', 'SYSTEM VERSIONED')
"""

_MYSQL_COLUMNS = """
SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_COMMENT,
       COLUMN_DEFAULT, EXTRA, IS_GENERATED, CHARACTER_SET_NAME
FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s
ORDER BY TABLE_NAME, ORDINAL_POSITION
"""

_MYSQL_KEYS = """
SELECT TABLE_NAME, CONSTRAINT_NAME, COLUMN_NAME,
       REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, REFERENCED_COLUMN_NAME
FROM information_schema.KEY_COLUMN_USAGE
WHERE TABLE_SCHEMA = %s AND (CONSTRAINT_NAME = 'PRIMARY' OR REFERENCED_TABLE_NAME IS NOT NULL)
ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION
"""

# MariaDB stores JSON as LONGTEXT guarded by CHECK (json_valid(`col`)).
_MARIADB_CHECKS = """
SELECT TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS
WHERE CONSTRAINT_SCHEMA = %s
"""
_JSON_VALID = re.compile(r"json_valid\(\s*(?:`((?:[^`]|``)+)`|(\w+))\s*\)", re.IGNORECASE)

_MYSQL_AUTH_ERRORS = {1044, 1045, 1698}
_MYSQL_UNKNOWN_DB = 1049


#: Character sets whose text is UTF-8 already (``binary`` columns are served as Base64).
_UTF8_CHARSETS = {"utf8mb4", "utf8mb3", "utf8", "binary", ""}


def _mysql_db_type(column_type: str, charset: str | None) -> str:
    """The column's type as the dialect reads it: a text column of a character set other
    than UTF-8 (latin1, cp1251, ucs2, ...) names it (``varchar(10) character set latin1``), so
    its text is converted to UTF-8 where it is served."""
    db_type = column_type.lower()
    cs = (charset or "").lower()
    return db_type if cs in _UTF8_CHARSETS else f"{db_type} character set {cs}"


async def _read_mysql(db: DatabaseUrl) -> list[CatalogTable]:
    from asyncmy.errors import MySQLError

    try:
        conn = await connect_mysql(db)
    except QuiverError as exc:
        raise _unreachable_from(exc) from None
    try:
        async with conn.cursor() as cur:
            await cur.execute("SELECT VERSION()")
            version = _text((await cur.fetchone())[0])
            tables = await _mysql_rows(cur, _MYSQL_TABLES, db.database)
            cols = await _mysql_rows(cur, _MYSQL_COLUMNS, db.database)
            keys = await _mysql_rows(cur, _MYSQL_KEYS, db.database)
            checks = (
                await _mysql_rows(cur, _MARIADB_CHECKS, db.database)
                if "mariadb" in version.lower()
                else []
            )
    except MySQLError as exc:
        raise ConfigError.one(
            f"cannot read the catalog: {exc}",
            db.redacted(),
            "connect as a user that may read information_schema for this database",
        ) from None
    finally:
        conn.close()

    json_columns: set[tuple[str, str]] = set()
    for table, clause in checks:
        m = _JSON_VALID.fullmatch(clause.strip())
        if m:
            column = m.group(1).replace("``", "`") if m.group(1) else m.group(2)
            json_columns.add((table, column))
    columns: dict[str, list[CatalogColumn]] = defaultdict(list)
    for table, name, data_type, column_type, is_nullable, comment, default, extra, gen, cs in cols:
        # MariaDB reports no default as NULL (read here as "") and DEFAULT NULL as 'NULL'.
        generated = gen.upper() == "ALWAYS" or "GENERATED" in extra.upper()
        columns[table].append(
            CatalogColumn(
                name=name,
                scalar=mysql_scalar(
                    data_type, column_type, json_checked=(table, name) in json_columns
                ),
                nullable=is_nullable.upper() == "YES",
                description=comment or None,
                db_type=_mysql_db_type(column_type, cs),
                enum_values=mysql_enum_values(column_type),
                has_default=default not in ("", "NULL") and not generated,
                is_identity="auto_increment" in extra.lower(),
                is_generated=generated,
            )
        )
    primary: dict[str, list[str]] = defaultdict(list)
    fks: dict[tuple[str, str], list[tuple[str, str, str, str]]] = defaultdict(list)
    for table, constraint, column, ref_schema, ref_table, ref_column in keys:
        if constraint == "PRIMARY":
            primary[table].append(column)
        else:
            fks[(table, constraint)].append((column, ref_schema, ref_table, ref_column))
    foreign: dict[str, list[CatalogForeignKey]] = defaultdict(list)
    for (table, _), parts in sorted(fks.items()):
        if any(p[1] != db.database for p in parts):
            continue  # references another database, which is not reflected
        foreign[table].append(
            CatalogForeignKey(
                columns=tuple(p[0] for p in parts),
                target_schema=None,
                target_table=parts[0][2],
                target_columns=tuple(p[3] for p in parts),
            )
        )
    return [
        CatalogTable(
            schema=None,
            name=name,
            is_view=kind == "VIEW",
            columns=tuple(columns[name]),
            primary_key=tuple(primary.get(name, ())),
            foreign_keys=tuple(foreign[name]),
            # MySQL reports the comment of every view as "VIEW".
            description=(comment or None) if kind != "VIEW" else None,
        )
        for name, kind, comment in tables
    ]


async def _mysql_rows(cur: Any, sql: str, database: str) -> list[tuple[str, ...]]:
    await cur.execute(sql, (database,))
    return [tuple(_text(v) for v in row) for row in await cur.fetchall()]


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------

_SQLITE_OBJECTS = """
SELECT name, type, sql FROM sqlite_master
WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
ORDER BY name
"""
_WITHOUT_ROWID = re.compile(r"\)\s*(?:STRICT\s*,\s*)?WITHOUT\s+ROWID\b", re.IGNORECASE)


def _read_sqlite(db: DatabaseUrl) -> list[CatalogTable]:
    path = Path(db.database)
    fix = "check the path in sqlite:///relative.db or sqlite:////absolute/path.db"
    if not path.is_file():
        raise _unreachable(db, f"the SQLite file {str(path)!r} does not exist", fix)
    try:
        conn = connect_sqlite(db, mode="ro")
    except QuiverError as exc:
        raise _unreachable_from(exc) from None
    try:
        return _read_sqlite_catalog(conn)
    except sqlite3.DatabaseError as exc:
        raise _unreachable(
            db, f"cannot read {str(path)!r}: {exc}", "point the URL at a SQLite database file"
        ) from None
    finally:
        conn.close()


def _read_sqlite_catalog(conn: sqlite3.Connection) -> list[CatalogTable]:
    objects = conn.execute(_SQLITE_OBJECTS).fetchall()
    shadow = _sqlite_shadow_tables(conn)
    objects = [o for o in objects if o[0] not in shadow]
    pk_of: dict[str, tuple[str, ...]] = {}
    raw: list[tuple[str, str, str, list[tuple[Any, ...]]]] = []
    for name, kind, sql in objects:
        info = [r for r in conn.execute(f"PRAGMA table_xinfo({_sqlite_quote(name)})") if r[6] != 1]
        raw.append((name, kind, sql or "", info))
        keyed = sorted((r[5], r[1]) for r in info if r[5])
        pk_of[name.lower()] = tuple(c for _, c in keyed)
    tables: list[CatalogTable] = []
    for name, kind, sql, info in raw:
        is_view = kind == "view"
        without_rowid = bool(_WITHOUT_ROWID.search(sql))
        pk = pk_of[name.lower()]
        columns = []
        for _cid, col, declared, notnull, default, pk_pos, hidden in info:
            # PRIMARY KEY columns may hold NULL in SQLite unless the key is the rowid
            # (INTEGER PRIMARY KEY) or the table is WITHOUT ROWID.
            rowid_alias = len(pk) == 1 and pk_pos == 1 and (declared or "").upper() == "INTEGER"
            not_null = bool(notnull) or (pk_pos > 0 and (rowid_alias or without_rowid))
            scalar = sqlite_scalar(declared or "")
            if is_view and not (declared or "").strip():
                scalar = _sqlite_stored_scalar(conn, name, col)
            columns.append(
                CatalogColumn(
                    name=col,
                    scalar=scalar,
                    nullable=not not_null,
                    db_type=(declared or "").strip() or None,
                    # table_xinfo marks generated columns hidden 2 (virtual) or 3 (stored).
                    has_default=default is not None,
                    is_identity=rowid_alias and not is_view,
                    is_generated=hidden in (2, 3),
                )
            )
        foreign: list[CatalogForeignKey] = []
        if not is_view:
            by_id: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
            for row in conn.execute(f"PRAGMA foreign_key_list({_sqlite_quote(name)})"):
                by_id[row[0]].append(row)
            for fk_id in sorted(by_id):
                parts = sorted(by_id[fk_id], key=lambda r: r[1])
                target = parts[0][2]
                targets = tuple(p[4] for p in parts)
                if any(t is None for t in targets):  # REFERENCES t without columns: its key
                    targets = pk_of.get(target.lower(), ())
                foreign.append(
                    CatalogForeignKey(
                        columns=tuple(p[3] for p in parts),
                        target_schema=None,
                        target_table=target,
                        target_columns=targets,
                    )
                )
        tables.append(
            CatalogTable(
                schema=None,
                name=name,
                is_view=is_view,
                columns=tuple(columns),
                primary_key=() if is_view else pk,
                foreign_keys=tuple(foreign),
            )
        )
    return tables


def _sqlite_stored_scalar(conn: sqlite3.Connection, view: str, column: str) -> Scalar:
    """Scalar of a view column without a declared type (an expression), from what it holds.

    SQLite gives a view column a type only when it names a table column; ``COUNT(*)``,
    ``SUM(x)`` or ``a * b`` have none. Up to :data:`SQLITE_SAMPLE_ROWS` non-null values are
    read: all integers -> BigInt (SQLite integers are 64-bit, and PostgreSQL and MariaDB type
    ``COUNT``/``SUM`` of integers as bigint too), integers and reals -> Float, anything else
    (text, blobs, no non-null value, or sampling that takes over
    :data:`SQLITE_SAMPLE_SECONDS`) -> String.
    """
    quoted = _sqlite_quote(column)
    sql = (
        f"SELECT DISTINCT typeof(v) FROM (SELECT {quoted} AS v FROM {_sqlite_quote(view)}"
        f" WHERE {quoted} IS NOT NULL LIMIT {SQLITE_SAMPLE_ROWS:d})"
    )
    deadline = time.monotonic() + SQLITE_SAMPLE_SECONDS
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
    try:
        kinds = {str(row[0]) for row in conn.execute(sql)}
    except sqlite3.OperationalError:  # interrupted past the budget, or the view is broken
        return Scalar.STRING
    finally:
        conn.set_progress_handler(None, 0)
    if kinds == {"integer"}:
        return Scalar.BIGINT
    if kinds and kinds <= {"integer", "real"}:
        return Scalar.FLOAT
    return Scalar.STRING


def _sqlite_shadow_tables(conn: sqlite3.Connection) -> set[str]:
    """Tables a virtual table (FTS5, R*Tree) keeps its data in; they are not user tables."""
    try:
        rows = conn.execute("PRAGMA main.table_list").fetchall()
    except sqlite3.OperationalError:  # SQLite before 3.37 has no table_list
        return set()
    return {row[1] for row in rows if row[2] == "shadow"}


def _sqlite_quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
