"""The schema IR: one typed model of every entity, field and relation.

Reflection from a live database and Python authoring both produce a :class:`Schema`;
``quiver compile`` writes it as JSON and ``quiver serve --schema`` reads it back.
Names here are GraphQL names; ``column`` / ``source`` are database identifiers.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict
from pydantic import Field as PydanticField

from quiver.runtime.errors import ConfigError
from quiver.sql.dialects import MYSQL_SPATIAL_TYPES

__all__ = [
    "Attribute",
    "Composite",
    "Entity",
    "Field",
    "FunctionArgument",
    "FunctionMutation",
    "Relation",
    "RootKind",
    "Scalar",
    "Schema",
    "SourceLocation",
    "load_schema_file",
]

SCHEMA_FORMAT_VERSION = 1


class Scalar(StrEnum):
    """GraphQL scalar of a column. Values are the GraphQL type names."""

    INT = "Int"
    FLOAT = "Float"
    STRING = "String"
    BOOLEAN = "Boolean"
    ID = "ID"
    BIGINT = "BigInt"
    DECIMAL = "Decimal"
    DATETIME = "DateTime"
    DATE = "Date"
    TIME = "Time"
    UUID = "UUID"
    JSON = "JSON"
    BASE64 = "Base64"


NUMERIC_SCALARS = frozenset({Scalar.INT, Scalar.FLOAT, Scalar.BIGINT, Scalar.DECIMAL})
TEXT_SCALARS = frozenset({Scalar.STRING, Scalar.ID, Scalar.UUID})
ORDERED_SCALARS = NUMERIC_SCALARS | TEXT_SCALARS | {Scalar.DATETIME, Scalar.DATE, Scalar.TIME}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceLocation(_Model):
    """Where an authored item was declared (for error messages)."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


class Attribute(_Model):
    """An attribute of a PostgreSQL composite type."""

    name: str
    #: Its type as the database prints it (``integer``, ``numeric(5,2)``, ``inner_t[]``).
    db_type: str
    #: A composite attribute: its type (nested objects of the served JSON).
    composite: Composite | None = None
    #: An array attribute (of ``composite`` when set).
    is_list: bool = False


class Composite(_Model):
    """A PostgreSQL composite type, served and written as a JSON object of its attributes."""

    db_schema: str
    name: str
    attributes: tuple[Attribute, ...] = ()

    def attribute(self, name: str) -> Attribute | None:
        for a in self.attributes:
            if a.name == name:
                return a
        return None


class Field(_Model):
    """A scalar field backed by one column."""

    name: str
    column: str
    scalar: Scalar
    nullable: bool = True
    description: str | None = None
    location: SourceLocation | None = None
    #: Authored ``quiver.field(hidden=True)``: the column exists but is not served. Compiled
    #: schemas never contain hidden fields; merging uses them to hide reflected columns.
    hidden: bool = False
    #: The column's type as the database names it (``bytea``, ``bit(8)``, ``_int4``), as
    #: reflection read it: the dialect renders some types in a form of their own from it.
    db_type: str | None = None
    #: An array column: a list of ``scalar`` values (PostgreSQL arrays).
    is_list: bool = False
    #: An enum column: the GraphQL enum type's name and the database's values, in order.
    enum_name: str | None = None
    enum_values: tuple[str, ...] | None = None
    #: A composite-typed column (PostgreSQL): its type and attributes, to write it from JSON.
    composite: Composite | None = None
    #: The type (schema, name) the column is read as where its own type has no operators:
    #: PostgreSQL compares, sorts and aggregates a domain over an enum only as that enum.
    #: None otherwise, and then absent from a compiled schema.json.
    read_as: tuple[str, str] | None = None
    #: True when the column is an array of ``composite`` that the field serves as one JSON
    #: value (an authored ``quiver.JSON`` field over it); a reflected array field says
    #: ``is_list``. None otherwise, and then absent from a compiled schema.json.
    composite_array: bool | None = None
    #: Whether the database can sort and group the column (PostgreSQL's point, xml cannot).
    sortable: bool = True
    #: The column has a default that the database fills in when an insert omits it.
    has_default: bool = False
    #: The database numbers new rows in this column (identity, serial, AUTO_INCREMENT, SQLite's
    #: INTEGER PRIMARY KEY): an insert may omit it.
    is_identity: bool = False
    #: A generated (computed) column: the database writes it, never a client.
    is_generated: bool = False

    @property
    def holds_json_null(self) -> bool:
        """Whether the column keeps JSON documents, which may be the JSON value null, distinct
        from SQL NULL (json, jsonb; not a composite, a list or a MariaDB geometry, which are
        served as JSON but never hold a JSON null)."""
        if self.scalar != Scalar.JSON or self.is_list or self.composite is not None:
            return False
        base = (self.db_type or "").split("(", 1)[0].strip().lower()
        return re.fullmatch(MYSQL_SPATIAL_TYPES, base) is None

    @property
    def writable(self) -> bool:
        """Whether a mutation may set the column."""
        return not self.is_generated

    @property
    def required_on_insert(self) -> bool:
        """Whether an insert must give a value: NOT NULL without a default or identity."""
        return not (self.nullable or self.has_default or self.is_identity or self.is_generated)


class Relation(_Model):
    """A link to another entity through column pairs (local column -> target column).

    ``kind="one"`` is a forward (many-to-one / one-to-one) link: at most one target row.
    ``kind="many"`` is a reverse (one-to-many) link: a list of target rows.
    """

    name: str
    target: str
    kind: Literal["one", "many"]
    local_columns: tuple[str, ...]
    target_columns: tuple[str, ...]
    nullable: bool = True
    description: str | None = None
    location: SourceLocation | None = None
    #: Authored ``quiver.relation(hidden=True)``: removes a reflected relation when merging.
    hidden: bool = False


RootKind = Literal["list", "by_key", "connection", "aggregate"]


class Entity(_Model):
    """A GraphQL object type read from one table or view."""

    name: str
    source: str
    db_schema: str | None = None
    fields: tuple[Field, ...]
    primary_key: tuple[str, ...] = ()
    relations: tuple[Relation, ...] = ()
    list_field: str | None = None
    by_key_field: str | None = None
    description: str | None = None
    location: SourceLocation | None = None
    #: Root fields served for this entity; ``None`` serves all of them. Authored
    #: ``@quiver.query`` functions set it to exactly the declared ones (``()`` = none: the
    #: entity is reached only through relations).
    root_fields: tuple[RootKind, ...] | None = None
    #: GraphQL arguments the list root field accepts (``where``, ``orderBy``, ``limit``,
    #: ``offset``); ``None`` accepts all of them.
    list_arguments: tuple[str, ...] | None = None

    def field(self, name: str) -> Field | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def field_by_column(self, column: str) -> Field | None:
        for f in self.fields:
            if f.column == column:
                return f
        return None

    def relation(self, name: str) -> Relation | None:
        for r in self.relations:
            if r.name == name:
                return r
        return None


class FunctionArgument(_Model):
    """A parameter of a database function, as a GraphQL argument."""

    name: str
    parameter: str
    scalar: Scalar
    #: False when the function gives the parameter a default.
    required: bool = True


class FunctionMutation(_Model):
    """A mutation that calls a database function returning status, message, entity_key
    (JSON object of the key of the row it wrote) and errors (JSON array)."""

    name: str
    function: str
    db_schema: str | None = None
    entity: str | None = None
    arguments: tuple[FunctionArgument, ...] = ()
    description: str | None = None


class Schema(_Model):
    """Every entity the API serves. Serialised as the compiled ``schema.json``."""

    version: int = SCHEMA_FORMAT_VERSION
    entities: tuple[Entity, ...] = PydanticField(default_factory=tuple)
    mutations: tuple[FunctionMutation, ...] = PydanticField(default_factory=tuple)

    def entity(self, name: str) -> Entity | None:
        for e in self.entities:
            if e.name == name:
                return e
        return None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Schema:
        return cls.model_validate_json(text)


def load_schema_file(path: str | Path) -> Schema:
    """A compiled ``schema.json`` (from ``quiver compile`` or ``quiver schema print``)."""
    file = Path(path)
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise ConfigError.one(
            f"cannot read schema file: {exc.strerror or exc}",
            str(file),
            "give the path of a schema.json written by quiver compile",
        ) from None
    try:
        return Schema.from_json(text)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise ConfigError.one(
            f"not a Quiver schema file: {first[0] if first else exc}",
            str(file),
            "regenerate it with quiver compile",
        ) from None
