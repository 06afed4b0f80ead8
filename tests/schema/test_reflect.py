"""Reflection of a live PostgreSQL, MariaDB and SQLite database into the schema IR.

Every dialect gets the same Chinook-like tables in a fresh database (or PostgreSQL schema) with a
random name, dropped afterwards: plain foreign keys, a plural table name, a self reference, two
foreign keys to the same table, a composite primary/foreign key, a view, a table without a
primary key and one column of every type.
"""

from __future__ import annotations

import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncmy
import asyncpg
import pytest
import pytest_asyncio

from graphql import GraphQLInputObjectType
from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.graphql.typesystem import build_graphql_schema
from quiver.runtime.errors import ConfigError
from quiver.schema import reflect as reflect_module
from quiver.schema.catalog import build_catalog
from quiver.schema.ir import Entity, Field, Relation, Scalar, Schema
from quiver.schema.naming import ascii_fold, camel, pascal
from quiver.schema.reflect import mysql_scalar, reflect_database, sqlite_scalar

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_SERVER = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}

CHINOOK_DDL = [
    "CREATE TABLE artist (artist_id INTEGER PRIMARY KEY, name VARCHAR(120))",
    """CREATE TABLE album (
        album_id INTEGER PRIMARY KEY,
        title VARCHAR(160) NOT NULL,
        artist_id INTEGER NOT NULL,
        FOREIGN KEY (artist_id) REFERENCES artist (artist_id))""",
    """CREATE TABLE employee (
        employee_id INTEGER PRIMARY KEY,
        last_name VARCHAR(20) NOT NULL,
        reports_to INTEGER,
        FOREIGN KEY (reports_to) REFERENCES employee (employee_id))""",
    """CREATE TABLE customer (
        customer_id INTEGER PRIMARY KEY,
        first_name VARCHAR(40) NOT NULL,
        support_rep_id INTEGER,
        account_manager_id INTEGER,
        FOREIGN KEY (support_rep_id) REFERENCES employee (employee_id),
        FOREIGN KEY (account_manager_id) REFERENCES employee (employee_id))""",
    """CREATE TABLE invoices (
        invoice_id INTEGER PRIMARY KEY,
        customer_id INTEGER NOT NULL,
        total NUMERIC(10, 2) NOT NULL,
        FOREIGN KEY (customer_id) REFERENCES customer (customer_id))""",
    """CREATE TABLE invoice_line (
        invoice_id INTEGER NOT NULL,
        line_no INTEGER NOT NULL,
        quantity INTEGER NOT NULL,
        PRIMARY KEY (invoice_id, line_no),
        FOREIGN KEY (invoice_id) REFERENCES invoices (invoice_id))""",
    """CREATE TABLE invoice_line_note (
        note_id INTEGER PRIMARY KEY,
        invoice_id INTEGER NOT NULL,
        line_no INTEGER NOT NULL,
        body TEXT,
        FOREIGN KEY (invoice_id, line_no) REFERENCES invoice_line (invoice_id, line_no))""",
    "CREATE TABLE audit_note (message VARCHAR(200))",
    """CREATE VIEW album_summary AS
        SELECT al.album_id, al.title, ar.name AS artist_name
        FROM album al JOIN artist ar ON ar.artist_id = al.artist_id""",
]

# One column of every type; the scalar each one must reflect as.
COMMON_TYPES = {
    "small_col SMALLINT": Scalar.INT,
    "int_col INTEGER": Scalar.INT,
    "big_col BIGINT": Scalar.BIGINT,
    "real_col REAL": Scalar.FLOAT,
    "double_col DOUBLE PRECISION": Scalar.FLOAT,
    "float_col FLOAT": Scalar.FLOAT,
    "numeric_col NUMERIC(12, 3)": Scalar.DECIMAL,
    "decimal_col DECIMAL(8, 2)": Scalar.DECIMAL,
    "bool_col BOOLEAN": Scalar.BOOLEAN,
    "char_col CHAR(3)": Scalar.STRING,
    "varchar_col VARCHAR(50)": Scalar.STRING,
    "text_col TEXT": Scalar.STRING,
    "json_col JSON": Scalar.JSON,
    "uuid_col UUID": Scalar.UUID,
    "ts_col TIMESTAMP NULL": Scalar.DATETIME,
    "date_col DATE": Scalar.DATE,
    "time_col TIME": Scalar.TIME,
}
DIALECT_TYPES = {
    "postgresql": {
        "jsonb_col JSONB": Scalar.JSON,
        "tstz_col TIMESTAMPTZ": Scalar.DATETIME,
        "timetz_col TIMETZ": Scalar.TIME,
        "enum_col mood": Scalar.STRING,
        "domain_col positive_int": Scalar.INT,
        "inet_col INET": Scalar.STRING,
        "array_col INTEGER[]": Scalar.INT,
    },
    "mysql": {
        "tiny_col TINYINT": Scalar.INT,
        "medium_col MEDIUMINT": Scalar.INT,
        "uint_col INT UNSIGNED": Scalar.BIGINT,
        "year_col YEAR": Scalar.INT,
        "datetime_col DATETIME": Scalar.DATETIME,
        "enum_col ENUM('sad', 'ok')": Scalar.STRING,
        "blob_col BLOB": Scalar.BASE64,
    },
    "sqlite": {
        "medium_col MEDIUMINT": Scalar.INT,
        "datetime_col DATETIME": Scalar.DATETIME,
        "blob_col BLOB": Scalar.BASE64,
        "untyped_col": Scalar.STRING,
    },
}
PG_PRELUDE = [
    "CREATE TYPE mood AS ENUM ('sad', 'ok')",
    "CREATE DOMAIN positive_int AS INTEGER NOT NULL CHECK (VALUE > 0)",
]

# Comments become descriptions (SQLite has no comments).
PG_COMMENTS = [
    "COMMENT ON TABLE audit_note IS 'Free-form notes about changes'",
    "COMMENT ON COLUMN audit_note.message IS 'What changed, in words'",
]
MYSQL_COMMENTS = [
    "ALTER TABLE audit_note COMMENT = 'Free-form notes about changes'",
    "ALTER TABLE audit_note MODIFY message VARCHAR(200) COMMENT 'What changed, in words'",
]


def type_sample_ddl(dialect: str) -> str:
    columns = ["id INTEGER PRIMARY KEY", *COMMON_TYPES, *DIALECT_TYPES[dialect]]
    return f"CREATE TABLE type_sample ({', '.join(columns)})"


def expected_types(dialect: str) -> dict[str, Scalar]:
    spec = {"id INTEGER": Scalar.INT, **COMMON_TYPES, **DIALECT_TYPES[dialect]}
    return {column.split()[0]: scalar for column, scalar in spec.items()}


@dataclass(frozen=True)
class Database:
    dialect: str
    url: str
    schema: str | None = None  # the PostgreSQL schema holding the tables


def _suffix() -> str:
    return secrets.token_hex(4)


async def _fill_postgresql(schema: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        statements = [*PG_PRELUDE, *CHINOOK_DDL, type_sample_ddl("postgresql"), *PG_COMMENTS]
        for stmt in statements:
            await conn.execute(stmt)
    finally:
        await conn.close()


async def _drop_postgresql(*schemas: str) -> None:
    conn = await asyncpg.connect(PG_URL)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _mysql_execute(statements: list[str], database: str | None = None) -> None:
    conn = await asyncmy.connect(**MYSQL_SERVER, db=database)
    try:
        async with conn.cursor() as cur:
            for stmt in statements:
                await cur.execute(stmt)
    finally:
        conn.close()


async def _fill_mysql(name: str) -> None:
    await _mysql_execute([f"CREATE DATABASE `{name}`"])
    await _mysql_execute([*CHINOOK_DDL, type_sample_ddl("mysql"), *MYSQL_COMMENTS], name)


def _create_sqlite(directory: Path) -> Database:
    path = directory / f"reflect_{_suffix()}.db"
    conn = sqlite3.connect(path)
    try:
        conn.executescript(";\n".join([*CHINOOK_DDL, type_sample_ddl("sqlite")]))
    finally:
        conn.close()
    return Database("sqlite", f"sqlite:///{path}")


@pytest_asyncio.fixture(
    scope="module", params=["postgresql", "mysql", "sqlite"], loop_scope="session"
)
async def db(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Database]:
    """The Chinook-like tables in a fresh database of each dialect, dropped afterwards."""
    name = f"reflect_{_suffix()}"
    if request.param == "postgresql":
        try:
            await _fill_postgresql(name)
            yield Database("postgresql", PG_URL, name)
        finally:
            await _drop_postgresql(name)
    elif request.param == "mysql":
        try:
            await _fill_mysql(name)
            yield Database("mysql", f"mysql://root@127.0.0.1:3306/{name}")
        finally:
            await _mysql_execute([f"DROP DATABASE IF EXISTS `{name}`"])
    else:
        yield _create_sqlite(tmp_path_factory.mktemp("reflect"))


async def reflect(
    db: Database, *, include: list[str] | None = None, exclude: list[str] | None = None
) -> Schema:
    schemas = [db.schema] if db.schema else None
    return await reflect_database(db.url, schemas=schemas, include=include, exclude=exclude)


def entity(schema: Schema, name: str) -> Entity:
    found = schema.entity(name)
    assert found is not None, f"no entity {name} in {[e.name for e in schema.entities]}"
    return found


def one(name: str, target: str, local: str, remote: str, *, nullable: bool = False) -> Relation:
    return Relation(
        name=name,
        target=target,
        kind="one",
        local_columns=tuple(local.split(",")),
        target_columns=tuple(remote.split(",")),
        nullable=nullable,
    )


def many(name: str, target: str, local: str, remote: str) -> Relation:
    return Relation(
        name=name,
        target=target,
        kind="many",
        local_columns=tuple(local.split(",")),
        target_columns=tuple(remote.split(",")),
        nullable=False,
    )


def fields(*specs: tuple[str, str, Scalar, bool]) -> tuple[Field, ...]:
    return tuple(Field(name=n, column=c, scalar=s, nullable=null) for n, c, s, null in specs)


INT, STR, DEC = Scalar.INT, Scalar.STRING, Scalar.DECIMAL


def authored_chinook(db_schema: str | None) -> Schema:
    """The entities a user would write by hand for the Chinook-like tables."""
    entities = [
        Entity(
            name="Album",
            source="album",
            db_schema=db_schema,
            fields=fields(
                ("albumId", "album_id", INT, False),
                ("title", "title", STR, False),
                ("artistId", "artist_id", INT, False),
            ),
            primary_key=("album_id",),
            relations=(one("artist", "Artist", "artist_id", "artist_id"),),
            list_field="albums",
            by_key_field="album",
        ),
        Entity(
            name="Artist",
            source="artist",
            db_schema=db_schema,
            fields=fields(("artistId", "artist_id", INT, False), ("name", "name", STR, True)),
            primary_key=("artist_id",),
            relations=(many("albums", "Album", "artist_id", "artist_id"),),
            list_field="artists",
            by_key_field="artist",
        ),
        Entity(
            name="Customer",
            source="customer",
            db_schema=db_schema,
            fields=fields(
                ("customerId", "customer_id", INT, False),
                ("firstName", "first_name", STR, False),
                ("supportRepId", "support_rep_id", INT, True),
                ("accountManagerId", "account_manager_id", INT, True),
            ),
            primary_key=("customer_id",),
            relations=(
                one(
                    "accountManager", "Employee", "account_manager_id", "employee_id", nullable=True
                ),
                many("invoices", "Invoice", "customer_id", "customer_id"),
                one("supportRep", "Employee", "support_rep_id", "employee_id", nullable=True),
            ),
            list_field="customers",
            by_key_field="customer",
        ),
        Entity(
            name="Employee",
            source="employee",
            db_schema=db_schema,
            fields=fields(
                ("employeeId", "employee_id", INT, False),
                ("lastName", "last_name", STR, False),
                ("reportsTo", "reports_to", INT, True),
            ),
            primary_key=("employee_id",),
            relations=(
                many(
                    "customersByAccountManagerId", "Customer", "employee_id", "account_manager_id"
                ),
                many("customersBySupportRepId", "Customer", "employee_id", "support_rep_id"),
                one("employeeByReportsTo", "Employee", "reports_to", "employee_id", nullable=True),
                many("employees", "Employee", "employee_id", "reports_to"),
            ),
            list_field="employees",
            by_key_field="employee",
        ),
        Entity(
            name="Invoice",
            source="invoices",
            db_schema=db_schema,
            fields=fields(
                ("invoiceId", "invoice_id", INT, False),
                ("customerId", "customer_id", INT, False),
                ("total", "total", DEC, False),
            ),
            primary_key=("invoice_id",),
            relations=(
                one("customer", "Customer", "customer_id", "customer_id"),
                many("invoiceLines", "InvoiceLine", "invoice_id", "invoice_id"),
            ),
            list_field="invoices",
            by_key_field="invoice",
        ),
        Entity(
            name="InvoiceLine",
            source="invoice_line",
            db_schema=db_schema,
            fields=fields(
                ("invoiceId", "invoice_id", INT, False),
                ("lineNo", "line_no", INT, False),
                ("quantity", "quantity", INT, False),
            ),
            primary_key=("invoice_id", "line_no"),
            relations=(
                one("invoice", "Invoice", "invoice_id", "invoice_id"),
                many(
                    "invoiceLineNotes",
                    "InvoiceLineNote",
                    "invoice_id,line_no",
                    "invoice_id,line_no",
                ),
            ),
            list_field="invoiceLines",
            by_key_field="invoiceLine",
        ),
        Entity(
            name="InvoiceLineNote",
            source="invoice_line_note",
            db_schema=db_schema,
            fields=fields(
                ("noteId", "note_id", INT, False),
                ("invoiceId", "invoice_id", INT, False),
                ("lineNo", "line_no", INT, False),
                ("body", "body", STR, True),
            ),
            primary_key=("note_id",),
            relations=(
                one("invoiceLine", "InvoiceLine", "invoice_id,line_no", "invoice_id,line_no"),
            ),
            list_field="invoiceLineNotes",
            by_key_field="invoiceLineNote",
        ),
    ]
    return Schema(entities=tuple(entities))


CHINOOK_TABLES = [
    "artist",
    "album",
    "employee",
    "customer",
    "invoices",
    "invoice_line",
    "invoice_line_note",
]


# ---------------------------------------------------------------------------------------------
# Shared behaviour, parametrized over the three dialects
# ---------------------------------------------------------------------------------------------


async def test_reflection_equals_the_authored_entities(db: Database) -> None:
    reflected = await reflect(db, include=CHINOOK_TABLES)
    assert _without_db_types(reflected) == authored_chinook(db.schema)


def _without_db_types(schema: Schema) -> Schema:
    """``schema`` without the database type names reflection records beside each scalar, and
    without what the database writes by itself (defaults, identities), which authoring omits."""
    return schema.model_copy(
        update={
            "entities": tuple(
                e.model_copy(
                    update={
                        "fields": tuple(
                            f.model_copy(
                                update={
                                    "db_type": None,
                                    "has_default": False,
                                    "is_identity": False,
                                    "is_generated": False,
                                }
                            )
                            for f in e.fields
                        )
                    }
                )
                for e in schema.entities
            )
        }
    )


async def test_reflected_schema_round_trips_through_json(db: Database) -> None:
    reflected = await reflect(db)
    again = Schema.from_json(reflected.to_json())
    assert again == reflected
    assert again.to_json() == reflected.to_json()


async def test_entities_are_sorted_and_reflection_is_deterministic(db: Database) -> None:
    first = await reflect(db)
    second = await reflect(db)
    assert [e.name for e in first.entities] == [
        "Album",
        "AlbumSummary",
        "Artist",
        "AuditNote",
        "Customer",
        "Employee",
        "Invoice",
        "InvoiceLine",
        "InvoiceLineNote",
        "TypeSample",
    ]
    assert first.to_json() == second.to_json()


async def test_plural_table_becomes_singular_entity_with_plural_list_field(db: Database) -> None:
    invoice = entity(await reflect(db, include=["invoices"]), "Invoice")
    assert (invoice.source, invoice.list_field, invoice.by_key_field) == (
        "invoices",
        "invoices",
        "invoice",
    )


async def test_view_has_fields_but_no_key_and_no_by_key_field(db: Database) -> None:
    view = entity(await reflect(db), "AlbumSummary")
    assert view.source == "album_summary"
    assert [(f.name, f.column, f.scalar) for f in view.fields] == [
        ("albumId", "album_id", Scalar.INT),
        ("title", "title", Scalar.STRING),
        ("artistName", "artist_name", Scalar.STRING),
    ]
    assert view.primary_key == ()
    assert view.by_key_field is None
    assert view.list_field == "albumSummaries"
    assert view.relations == ()


async def test_table_without_primary_key_gets_only_a_list_field(db: Database) -> None:
    note = entity(await reflect(db), "AuditNote")
    assert note.primary_key == ()
    assert note.by_key_field is None
    assert note.list_field == "auditNotes"


async def test_comments_become_descriptions(db: Database) -> None:
    note = entity(await reflect(db), "AuditNote")
    message = note.field("message")
    assert message is not None
    if db.dialect == "sqlite":
        assert (note.description, message.description) == (None, None)
    else:
        assert note.description == "Free-form notes about changes"
        assert message.description == "What changed, in words"
    assert entity(await reflect(db), "AlbumSummary").description is None


async def test_self_reference_gives_forward_and_reverse_relation(db: Database) -> None:
    employee = entity(await reflect(db), "Employee")
    boss = employee.relation("employeeByReportsTo")
    reports = employee.relation("employees")
    assert boss is not None and reports is not None
    assert (boss.kind, boss.target, boss.local_columns, boss.nullable) == (
        "one",
        "Employee",
        ("reports_to",),
        True,
    )
    assert (reports.kind, reports.local_columns, reports.target_columns) == (
        "many",
        ("employee_id",),
        ("reports_to",),
    )


async def test_two_foreign_keys_to_one_table_name_reverse_relations_by_column(
    db: Database,
) -> None:
    employee = entity(await reflect(db), "Employee")
    names = {r.name for r in employee.relations if r.target == "Customer"}
    assert names == {"customersBySupportRepId", "customersByAccountManagerId"}
    customer = entity(await reflect(db), "Customer")
    assert {r.name for r in customer.relations if r.kind == "one"} == {
        "supportRep",
        "accountManager",
    }


async def test_composite_key_relation_keeps_column_order(db: Database) -> None:
    schema = await reflect(db)
    line = entity(schema, "InvoiceLine")
    assert line.primary_key == ("invoice_id", "line_no")
    note_link = entity(schema, "InvoiceLineNote").relation("invoiceLine")
    assert note_link is not None
    assert note_link.local_columns == ("invoice_id", "line_no")
    assert note_link.target_columns == ("invoice_id", "line_no")


async def test_every_column_type_maps_to_its_scalar(db: Database) -> None:
    sample = entity(await reflect(db, include=["type_sample"]), "TypeSample")
    got = {f.column: f.scalar for f in sample.fields}
    assert got == expected_types(db.dialect)


async def test_include_keeps_matching_tables_and_drops_links_to_the_rest(db: Database) -> None:
    schema = await reflect(db, include=["album*"])
    assert [e.name for e in schema.entities] == ["Album", "AlbumSummary"]
    assert entity(schema, "Album").relations == ()


async def test_exclude_removes_matching_tables(db: Database) -> None:
    schema = await reflect(db, exclude=["invoice*", "type_sample", "audit_*"])
    assert [e.name for e in schema.entities] == [
        "Album",
        "AlbumSummary",
        "Artist",
        "Customer",
        "Employee",
    ]
    assert entity(schema, "Customer").relation("invoices") is None


async def test_pattern_matching_nothing_is_rejected_with_a_suggestion(db: Database) -> None:
    with pytest.raises(ConfigError) as info:
        await reflect(db, include=["album", "albm"], exclude=["invoice_lines"])
    text = str(info.value)
    assert "include[1]: pattern 'albm' matches no table or view" in text
    assert "did you mean 'album'" in text
    assert "exclude[0]: pattern 'invoice_lines'" in text
    assert "include[0]" not in text


# ---------------------------------------------------------------------------------------------
# Connection problems: one clear ConfigError, no traceback, no password
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("postgresql://postgres:s3cret@127.0.0.1:1/test", "connection refused"),
        ("mysql://root:s3cret@127.0.0.1:1/test", "Can't connect"),
        ("postgresql://nobody_here:s3cret@127.0.0.1:5432/test", "refused the credentials"),
        ("mysql://nobody_here:s3cret@127.0.0.1:3306/test", "refused the credentials"),
        ("postgresql://postgres:s3cret@127.0.0.1:5432/no_such_db_q", "does not exist"),
        ("mysql://root@127.0.0.1:3306/no_such_db_q", "does not exist"),
    ],
)
async def test_unreachable_database_is_a_config_error_with_redacted_url(
    url: str, phrase: str
) -> None:
    with pytest.raises(ConfigError) as info:
        await reflect_database(url)
    detail = info.value.details[0]
    assert detail.message.startswith("cannot connect to the database")
    assert phrase in detail.message
    assert "s3cret" not in str(info.value)
    assert detail.where.startswith(("postgresql://", "mysql://"))
    assert detail.fix
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_missing_sqlite_file_is_rejected_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "missing.db"
    with pytest.raises(ConfigError, match="does not exist"):
        await reflect_database(f"sqlite:///{path}")
    assert not path.exists()


async def test_file_that_is_not_sqlite_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("just some text, not a database " * 20)
    with pytest.raises(ConfigError, match="not a database"):
        await reflect_database(f"sqlite:///{path}")


async def test_database_without_tables_is_rejected_unless_empty_is_allowed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "empty.db"
    path.touch()  # an empty file is an empty SQLite database
    with pytest.raises(ConfigError, match="no tables or views to serve"):
        await reflect_database(f"sqlite:///{path}")
    assert await reflect_database(f"sqlite:///{path}", allow_empty=True) == Schema()


async def test_schemas_option_is_rejected_outside_postgresql(tmp_path: Path) -> None:
    path = tmp_path / "one.db"
    sqlite3.connect(path).execute("CREATE TABLE t (id INTEGER PRIMARY KEY)").connection.close()
    with pytest.raises(ConfigError, match=r"database\.schemas"):
        await reflect_database(f"sqlite:///{path}", schemas=["public"])


# ---------------------------------------------------------------------------------------------
# PostgreSQL specifics
# ---------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pg_schemas() -> AsyncIterator[tuple[str, str]]:
    """Two fresh schemas that both hold a table named ``artist``, dropped afterwards."""
    main, other = f"reflect_{_suffix()}", f"reflect_{_suffix()}_audit"
    try:
        conn = await asyncpg.connect(PG_URL)
        try:
            for schema in (main, other):
                await conn.execute(
                    f'CREATE SCHEMA "{schema}"; '
                    f'CREATE TABLE "{schema}".artist (artist_id INTEGER PRIMARY KEY, name TEXT)'
                )
            await conn.execute(
                f'CREATE TABLE "{other}".artist_change ('
                f" change_id INTEGER PRIMARY KEY,"
                f' artist_id INTEGER REFERENCES "{main}".artist (artist_id))'
            )
            await conn.execute(
                f'SET search_path TO "{main}"; '
                "CREATE TABLE placeholder (); "
                "CREATE MATERIALIZED VIEW artist_names AS SELECT artist_id, name FROM artist; "
                "CREATE DOMAIN reading AS REAL CHECK (VALUE >= 0); "
                "CREATE TABLE measurement (id INTEGER, taken_on DATE, value reading,"
                " PRIMARY KEY (id, taken_on))"
                " PARTITION BY RANGE (taken_on); "
                "CREATE TABLE measurement_2024 PARTITION OF measurement"
                " FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')"
            )
        finally:
            await conn.close()
        yield main, other
    finally:
        await _drop_postgresql(main, other)


async def test_same_table_in_two_postgresql_schemas_gets_a_schema_prefix(
    pg_schemas: tuple[str, str],
) -> None:
    main, other = pg_schemas
    schema = await reflect_database(PG_URL, schemas=[main, other], include=["artist*"])
    prefixed = pascal(f"{other}_artist")
    assert [e.name for e in schema.entities] == sorted(
        ["Artist", "ArtistChangeRow", "ArtistName", prefixed]  # ArtistChange: subscriptions
    )
    assert (entity(schema, "Artist").db_schema, entity(schema, prefixed).db_schema) == (
        main,
        other,
    )
    # A foreign key across schemas links the entities of both.
    change = entity(schema, "ArtistChangeRow").relation("artist")
    assert change is not None and change.target == "Artist"
    assert entity(schema, "Artist").relation("artistChangeRows") is not None


async def test_schema_qualified_pattern_selects_one_schema(pg_schemas: tuple[str, str]) -> None:
    main, other = pg_schemas
    schema = await reflect_database(PG_URL, schemas=[main, other], include=[f"{other}.*"])
    assert [(e.name, e.db_schema) for e in schema.entities] == [
        ("Artist", other),
        ("ArtistChangeRow", other),
    ]


async def test_postgresql_relation_kinds(pg_schemas: tuple[str, str]) -> None:
    main, _ = pg_schemas
    schema = await reflect_database(PG_URL, schemas=[main])
    # The table without columns is skipped, the partition is part of its parent.
    assert [e.name for e in schema.entities] == ["Artist", "ArtistName", "Measurement"]
    names = entity(schema, "ArtistName")
    assert (names.by_key_field, names.list_field) == (None, "artistNames")
    measurement = entity(schema, "Measurement")
    assert measurement.primary_key == ("id", "taken_on")
    assert measurement.by_key_field == "measurement"
    # A domain maps as its base type, even when no column uses that type directly.
    value = measurement.field("value")
    assert value is not None and (value.scalar, value.nullable) == (Scalar.FLOAT, True)


async def test_unknown_postgresql_schema_is_rejected_with_a_suggestion(
    pg_schemas: tuple[str, str],
) -> None:
    main, _ = pg_schemas
    with pytest.raises(ConfigError) as info:
        await reflect_database(PG_URL, schemas=[main + "x"])
    text = str(info.value)
    assert f"schema '{main}x' does not exist" in text
    assert f"did you mean '{main}'" in text


async def test_not_null_domain_makes_the_column_not_null(db: Database) -> None:
    if db.dialect != "postgresql":
        pytest.skip("domains exist only in PostgreSQL")
    sample = entity(await reflect(db, include=["type_sample"]), "TypeSample")
    domain = sample.field("domainCol")
    assert domain is not None and (domain.scalar, domain.nullable) == (Scalar.INT, False)


# ---------------------------------------------------------------------------------------------
# MariaDB specifics
# ---------------------------------------------------------------------------------------------


async def test_mariadb_json_column_stored_as_longtext_is_json(db: Database) -> None:
    if db.dialect != "mysql":
        pytest.skip("MariaDB only")
    name = db.url.rsplit("/", 1)[1]
    conn = await asyncmy.connect(**MYSQL_SERVER, db=name)
    try:
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT DATA_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'type_sample' "
                "AND COLUMN_NAME = 'json_col'",
                (name,),
            )
            (data_type,) = await cur.fetchone()
    finally:
        conn.close()
    assert data_type == "longtext"  # what MariaDB reports; only the CHECK says it is JSON
    sample = entity(await reflect(db, include=["type_sample"]), "TypeSample")
    json_col = sample.field("jsonCol")
    text_col = sample.field("textCol")
    assert json_col is not None and json_col.scalar == Scalar.JSON
    assert text_col is not None and text_col.scalar == Scalar.STRING


@pytest.mark.parametrize(
    ("data_type", "column_type", "scalar"),
    [
        ("tinyint", "tinyint(1)", Scalar.BOOLEAN),
        ("tinyint", "tinyint(4)", Scalar.INT),
        ("int", "int(10) unsigned", Scalar.BIGINT),
        ("bigint", "bigint(20) unsigned", Scalar.DECIMAL),
        ("longtext", "longtext", Scalar.STRING),
        ("set", "set('a','b')", Scalar.STRING),
        ("geometry", "geometry", Scalar.JSON),
        ("bit", "bit(1)", Scalar.BOOLEAN),
        ("bit", "bit(8)", Scalar.STRING),
        ("blob", "blob", Scalar.BASE64),
    ],
)
def test_mysql_type_rules(data_type: str, column_type: str, scalar: Scalar) -> None:
    assert mysql_scalar(data_type, column_type) == scalar


# ---------------------------------------------------------------------------------------------
# SQLite specifics and naming edge cases (on a real SQLite file)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "scalar"),
    [
        ("INTEGER", Scalar.INT),
        ("int", Scalar.INT),
        ("UNSIGNED BIG INT", Scalar.BIGINT),
        ("BIGINT", Scalar.BIGINT),
        ("NUMERIC(10,2)", Scalar.DECIMAL),
        ("DECIMAL", Scalar.DECIMAL),
        ("DOUBLE PRECISION", Scalar.FLOAT),
        ("FLOAT", Scalar.FLOAT),
        ("BOOLEAN", Scalar.BOOLEAN),
        ("TIMESTAMP WITH TIME ZONE", Scalar.DATETIME),
        ("DATETIME", Scalar.DATETIME),
        ("DATE", Scalar.DATE),
        ("TIME", Scalar.TIME),
        ("uuid", Scalar.UUID),
        ("JSON", Scalar.JSON),
        ("INTEGER UNSIGNED", Scalar.INT),
        ("float8", Scalar.FLOAT),
        ("INTERVAL", Scalar.STRING),
        ("POINT", Scalar.STRING),
        ("VARCHAR(20)", Scalar.STRING),
        ("BLOB", Scalar.BASE64),
        ("", Scalar.STRING),
    ],
)
def test_sqlite_declared_type_rules(declared: str, scalar: Scalar) -> None:
    assert sqlite_scalar(declared) == scalar


def _sqlite_db(tmp_path: Path, *ddl: str) -> str:
    path = tmp_path / f"naming_{_suffix()}.db"
    conn = sqlite3.connect(path)
    try:
        conn.executescript(";\n".join(ddl))
    finally:
        conn.close()
    return f"sqlite:///{path}"


async def test_sqlite_foreign_key_without_columns_references_the_primary_key(
    tmp_path: Path,
) -> None:
    url = _sqlite_db(
        tmp_path,
        "CREATE TABLE genre (genre_id INTEGER PRIMARY KEY, name TEXT)",
        "CREATE TABLE track (track_id INTEGER PRIMARY KEY, genre_id INTEGER REFERENCES genre)",
    )
    track = entity(await reflect_database(url), "Track")
    genre = track.relation("genre")
    assert genre is not None
    assert (genre.local_columns, genre.target_columns) == (("genre_id",), ("genre_id",))


async def test_sqlite_primary_key_nullability_follows_sqlite_rules(tmp_path: Path) -> None:
    url = _sqlite_db(
        tmp_path,
        "CREATE TABLE by_rowid (id INTEGER PRIMARY KEY)",
        "CREATE TABLE by_text (code TEXT PRIMARY KEY)",
        "CREATE TABLE strict_key (code TEXT PRIMARY KEY) WITHOUT ROWID",
    )
    schema = await reflect_database(url)
    nullable = {e.name: e.fields[0].nullable for e in schema.entities}
    # Only a rowid alias or a WITHOUT ROWID key keeps NULL out of a SQLite primary key.
    assert nullable == {"ByRowid": False, "ByText": True, "StrictKey": False}


async def test_relation_name_colliding_with_a_column_uses_the_by_form(tmp_path: Path) -> None:
    url = _sqlite_db(
        tmp_path,
        "CREATE TABLE artist (artist_id INTEGER PRIMARY KEY)",
        "CREATE TABLE album (album_id INTEGER PRIMARY KEY, artist TEXT,"
        " artist_id INTEGER REFERENCES artist (artist_id))",
    )
    album = entity(await reflect_database(url), "Album")
    assert [r.name for r in album.relations] == ["artistByArtistId"]
    assert album.field("artist") is not None


async def test_a_column_beginning_with_two_underscores_never_keeps_its_name(
    tmp_path: Path,
) -> None:
    # GraphQL keeps names beginning with __ for introspection: a column that camel-cases like
    # another is numbered instead of keeping such a name, and the schema builds.
    url = _sqlite_db(
        tmp_path,
        'CREATE TABLE box (id INTEGER PRIMARY KEY, k_0 INT, "__k_0" INT, typename INT,'
        ' "__typename" INT)',
    )
    schema = await reflect_database(url)
    box = entity(schema, "Box")
    assert [f.name for f in box.fields] == ["id", "k0", "k02", "typename", "typename2"]
    from quiver.graphql.typesystem import build_graphql_schema
    from quiver.schema.catalog import build_catalog

    built = build_graphql_schema(build_catalog(schema))
    assert set(built.get_type("Box").fields) >= {"k02", "typename2"}  # type: ignore[union-attr]


async def test_tables_singularizing_to_one_name_stay_distinct(tmp_path: Path) -> None:
    url = _sqlite_db(
        tmp_path,
        "CREATE TABLE album (album_id INTEGER PRIMARY KEY)",
        "CREATE TABLE albums (album_id INTEGER PRIMARY KEY)",
    )
    schema = await reflect_database(url)
    by_source = {e.source: e for e in schema.entities}
    assert (by_source["album"].name, by_source["albums"].name) == ("Album", "Albums")
    roots = [f for e in schema.entities for f in (e.list_field, e.by_key_field)]
    assert len(roots) == len(set(roots)), roots
    assert by_source["album"].list_field == "albums"


async def test_reserved_and_digit_names_become_valid_graphql_names(tmp_path: Path) -> None:
    url = _sqlite_db(
        tmp_path,
        'CREATE TABLE "date" (day DATE PRIMARY KEY, "2fa_enabled" BOOLEAN)',
        'CREATE TABLE "2024_sales" (id INTEGER PRIMARY KEY)',
    )
    schema = await reflect_database(url)
    assert [e.name for e in schema.entities] == ["DateRow", "_2024Sale"]
    date = entity(schema, "DateRow")
    assert [f.name for f in date.fields] == ["day", "_2FaEnabled"]
    assert (date.list_field, date.by_key_field) == ("dateRows", "dateRow")


async def test_column_without_a_usable_name_is_reported_with_its_location(
    tmp_path: Path,
) -> None:
    url = _sqlite_db(tmp_path, 'CREATE TABLE shop (id INTEGER PRIMARY KEY, "名前" TEXT)')
    with pytest.raises(ConfigError) as info:
        await reflect_database(url)
    detail = info.value.details[0]
    assert detail.where == "shop.名前"
    assert "no usable GraphQL name" in detail.message
    assert "view" in detail.fix


async def test_sqlite_full_text_shadow_tables_are_not_entities(tmp_path: Path) -> None:
    url = _sqlite_db(tmp_path, "CREATE VIRTUAL TABLE doc USING fts5(title, body)")
    schema = await reflect_database(url)
    assert [(e.name, [f.name for f in e.fields]) for e in schema.entities] == [
        ("Doc", ["title", "body"])
    ]


async def test_names_the_graphql_layer_derives_are_not_taken_by_tables(tmp_path: Path) -> None:
    url = _sqlite_db(
        tmp_path,
        "CREATE TABLE node (node_id INTEGER PRIMARY KEY)",
        "CREATE TABLE node_edge (edge_id INTEGER PRIMARY KEY)",
        "CREATE TABLE int_filter (id INTEGER PRIMARY KEY)",
        "CREATE TABLE page_info (id INTEGER PRIMARY KEY)",
        "CREATE TABLE nodes_connection (id INTEGER PRIMARY KEY)",
    )
    schema = await reflect_database(url)
    by_source = {e.source: e for e in schema.entities}
    assert {source: e.name for source, e in by_source.items()} == {
        "node": "Node",
        "node_edge": "NodeEdgeRow",  # Node's connection edge type is NodeEdge
        "int_filter": "IntFilterRow",
        "page_info": "PageInfoRow",
        "nodes_connection": "NodesConnection",
    }
    # Node's list field "nodes" also gives the root fields nodesConnection and nodesAggregate.
    assert by_source["nodes_connection"].by_key_field == "nodesConnectionByKey"


async def test_tables_named_like_the_types_subscriptions_and_mutations_add_step_aside(
    tmp_path: Path,
) -> None:
    url = _sqlite_db(
        tmp_path,
        "CREATE TABLE movie (id INTEGER PRIMARY KEY, title TEXT)",
        "CREATE TABLE movie_change (id INTEGER PRIMARY KEY)",
        "CREATE TABLE change_operation (id INTEGER PRIMARY KEY)",
        "CREATE TABLE mutation_error (id INTEGER PRIMARY KEY)",
        "CREATE TABLE string_array_filter (id INTEGER PRIMARY KEY)",
    )
    schema = await reflect_database(url)
    assert {e.source: e.name for e in schema.entities} == {
        "movie": "Movie",
        "movie_change": "MovieChangeRow",  # Movie's subscription type is MovieChange
        "change_operation": "ChangeOperationRow",
        "mutation_error": "MutationErrorRow",
        "string_array_filter": "StringArrayFilterRow",
    }
    settings = QuiverSettings.model_validate({"database": {"url": url}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        types = set(engine.graphql_schema.type_map)
    finally:
        await engine.close()
    assert {"MovieChange", "MovieChangeRowChange", "ChangeOperation"} <= types


async def test_reverse_relation_leaves_room_for_its_aggregate_field(tmp_path: Path) -> None:
    url = _sqlite_db(
        tmp_path,
        "CREATE TABLE artist (artist_id INTEGER PRIMARY KEY, albums_aggregate TEXT)",
        "CREATE TABLE album (album_id INTEGER PRIMARY KEY,"
        " artist_id INTEGER REFERENCES artist (artist_id))",
    )
    artist = entity(await reflect_database(url), "Artist")
    assert [r.name for r in artist.relations] == ["albumsByArtistId"]


# Names that are not GraphQL names as they stand, and typeless SQLite view columns
# ---------------------------------------------------------------------------------------------


def _graphql_names(schema: Schema) -> list[str]:
    """Every name reflection gave: types, root fields, fields and relations."""
    names: list[str] = []
    for e in schema.entities:
        names += [e.name, e.list_field or "", e.by_key_field or e.list_field or ""]
        names += [f.name for f in e.fields] + [r.name for r in e.relations]
    return names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ünïcödé", "Unicode"),
        ("Ünï cödé", "UniCode"),
        ("Straße", "Strasse"),
        ("Ærø_købing", "AeroKobing"),
        ("ﬁle_ＩＤ", "FileId"),
        ("日本_total", "Total"),
        ("1st table", "_1StTable"),
        ("2024_sales", "_2024Sales"),
        ("_2024Sale", "_2024Sale"),
        ("名前", "名前"),  # nothing to build from: returned as is, and rejected by reflection
    ],
)
def test_pascal_transliterates_and_never_starts_with_a_digit(name: str, expected: str) -> None:
    assert pascal(name) == expected
    assert camel(name) == expected[:1].lower() + expected[1:]


def test_ascii_fold_drops_accents_and_keeps_what_has_no_ascii_form() -> None:
    assert ascii_fold("Ünïcödé") == "Unicode"
    assert ascii_fold("smørrebrød") == "smorrebrod"
    assert ascii_fold("日本") == "日本"
    assert ascii_fold("plain") == "plain"


async def test_non_ascii_table_and_column_names_are_transliterated(tmp_path: Path) -> None:
    url = _sqlite_db(
        tmp_path,
        'CREATE TABLE "Bücher" (id INTEGER PRIMARY KEY, "ünïcödé" TEXT, "Größe" INTEGER,'
        ' "日本_code" TEXT)',
    )
    (book,) = (await reflect_database(url)).entities
    assert (book.name, book.source, book.list_field) == ("Bucher", "Bücher", "buchers")
    assert [(f.name, f.column) for f in book.fields] == [
        ("id", "id"),
        ("unicode", "ünïcödé"),
        ("grosse", "Größe"),
        ("code", "日本_code"),
    ]


async def test_digit_leading_names_are_valid_graphql_names_everywhere(tmp_path: Path) -> None:
    url = _sqlite_db(
        tmp_path,
        'CREATE TABLE "1st table" ("2nd col" INTEGER PRIMARY KEY, val INTEGER)',
        'CREATE TABLE "3rd" (id INTEGER PRIMARY KEY,'
        ' "1st_id" INTEGER REFERENCES "1st table" ("2nd col"))',
    )
    schema = await reflect_database(url)
    first, third = entity(schema, "_1StTable"), entity(schema, "_3Rd")
    assert (first.list_field, first.by_key_field) == ("_1StTables", "_1StTable")
    assert [f.name for f in first.fields] == ["_2NdCol", "val"]
    assert [r.name for r in third.relations] == ["_1St"]
    assert [r.name for r in first.relations] == ["_3Rds"]
    assert all(re.fullmatch(r"[_A-Za-z][_0-9A-Za-z]*", n) for n in _graphql_names(schema))
    build_graphql_schema(build_catalog(schema))  # graphql-core accepts every name


async def test_columns_named_like_combinators_or_enum_keywords_get_a_trailing_underscore(
    tmp_path: Path,
) -> None:
    url = _sqlite_db(
        tmp_path,
        'CREATE TABLE "not" (id INTEGER PRIMARY KEY)',
        'CREATE TABLE logic (id INTEGER PRIMARY KEY, "and" TEXT, "OR" TEXT, "not" TEXT,'
        ' "true" BOOLEAN, "false" BOOLEAN, "null" TEXT, "_and" TEXT,'
        ' "or_id" INTEGER REFERENCES "not" (id))',
        'CREATE TABLE gate (id INTEGER PRIMARY KEY, and_id INTEGER REFERENCES "not" (id))',
    )
    schema = await reflect_database(url)
    logic = entity(schema, "Logic")
    assert [(f.name, f.column) for f in logic.fields] == [
        ("id", "id"),
        ("and_", "and"),
        ("or_", "OR"),
        ("not_", "not"),
        ("true_", "true"),
        ("false_", "false"),
        ("null_", "null"),
        ("_and", "_and"),  # camel-cases like 'and': keeps its own (valid, unreserved) name
        ("orId", "or_id"),
    ]
    # 'or_' is the field of column "OR", so the relation of or_id takes the By form.
    assert [r.name for r in logic.relations] == ["notByOrId"]
    assert [r.name for r in entity(schema, "Gate").relations] == ["and_"]
    assert [r.name for r in entity(schema, "Not").relations] == ["gates", "logics"]
    graphql = build_graphql_schema(build_catalog(schema))
    where = graphql.get_type("LogicWhere")
    assert isinstance(where, GraphQLInputObjectType)
    assert {"and", "or", "not", "and_", "or_", "not_"} <= set(where.fields)
    filter_type = where.fields["and_"].type
    assert isinstance(filter_type, GraphQLInputObjectType) and filter_type.name == "StringFilter"


async def test_a_plural_table_beside_its_singular_lists_with_a_list_suffix(
    tmp_path: Path,
) -> None:
    url = _sqlite_db(
        tmp_path,
        "CREATE TABLE item (id INTEGER PRIMARY KEY)",
        "CREATE TABLE items (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES item (id))",
    )
    schema = await reflect_database(url)
    item, items = entity(schema, "Item"), entity(schema, "Items")
    assert (item.list_field, item.by_key_field) == ("items", "item")
    assert (items.list_field, items.by_key_field) == ("itemsList", "itemsByKey")
    assert [r.name for r in item.relations] == ["itemsList"]
    build_graphql_schema(build_catalog(schema))


SPEND_VIEW = """
CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT, country TEXT);
CREATE TABLE invoice (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customer (id),
                      total NUMERIC(10, 2), at TEXT);
INSERT INTO customer VALUES (1, 'Ann', 'NO'), (2, 'Bob', 'SE'), (3, 'Cy', NULL);
INSERT INTO invoice VALUES (1, 1, 1.98, '2024-01-02'), (2, 1, 5, '2024-02-03'),
                           (3, 2, 3.96, '2024-03-04');
CREATE VIEW customer_spend AS
SELECT c.id, c.name,
       COUNT(i.id) AS invoice_count,
       COALESCE(SUM(i.total), 0) AS total_spent,
       MAX(i.id) * 4294967296 AS big_number,
       MAX(i.at) AS last_invoice,
       upper(c.country) AS country_code,
       NULL AS no_value,
       CASE WHEN c.id = 1 THEN 1 WHEN c.id = 2 THEN 'two' END AS mixed
FROM customer c LEFT JOIN invoice i ON i.customer_id = c.id
GROUP BY c.id, c.name
"""


async def test_sqlite_view_expression_columns_take_the_scalar_of_their_values(
    tmp_path: Path,
) -> None:
    url = _sqlite_db(tmp_path, *SPEND_VIEW.strip().split(";\n"))
    view = entity(await reflect_database(url), "CustomerSpend")
    assert {f.column: f.scalar for f in view.fields} == {
        "id": Scalar.INT,  # names a table column: its declared type
        "name": Scalar.STRING,
        "invoice_count": Scalar.BIGINT,
        "total_spent": Scalar.FLOAT,  # 1.98 + 5 is real, Cy's 0 an integer
        "big_number": Scalar.BIGINT,
        "last_invoice": Scalar.STRING,
        "country_code": Scalar.STRING,
        "no_value": Scalar.STRING,  # no value to go by
        "mixed": Scalar.STRING,  # an integer and a text
    }
    assert all(f.nullable for f in view.fields)


async def test_sqlite_table_columns_without_a_type_stay_strings(tmp_path: Path) -> None:
    url = _sqlite_db(
        tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, n)", "INSERT INTO t VALUES (1, 5)"
    )
    (t,) = (await reflect_database(url)).entities
    n = t.field("n")
    assert n is not None and n.scalar == Scalar.STRING


async def test_sampling_a_slow_sqlite_view_gives_up_within_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _sqlite_db(
        tmp_path,
        "CREATE VIEW endless AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
        " SELECT (SELECT COUNT(*) FROM c) AS n",
        "CREATE VIEW quick AS SELECT 1 + 1 AS two",
    )
    monkeypatch.setattr(reflect_module, "SQLITE_SAMPLE_SECONDS", 0.2)
    started = time.monotonic()
    schema = await reflect_database(url)
    assert time.monotonic() - started < 5
    # The endless view is given up on; the next one is still sampled.
    assert [(f.name, f.scalar) for f in entity(schema, "Endless").fields] == [("n", Scalar.STRING)]
    assert [(f.name, f.scalar) for f in entity(schema, "Quick").fields] == [("two", Scalar.BIGINT)]


def test_the_reflection_page_lists_every_name_a_table_steps_aside_for() -> None:
    from quiver.schema.api_names import GENERATED_TYPE_SUFFIXES, RESERVED_TYPE_NAMES

    page = (Path(__file__).resolve().parents[2] / "docs" / "reflection.md").read_text()
    named = [n for n in RESERVED_TYPE_NAMES if not n.endswith("Filter")]
    missing = [n for n in named if f"`{n}`" not in page]
    missing += [s for s in GENERATED_TYPE_SUFFIXES if f"`E{s}`" not in page]
    assert missing == []
