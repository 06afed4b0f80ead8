"""A table holding a column of every type each database offers, at the edges of its range, and
the checks that a served value is valid JSON of its declared GraphQL type.

Used by ``test_type_matrix.py`` and the array, enum and input-range tests beside it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import decimal
import math
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)
from tests.conftest import ChinookDb, Dialect, create_empty_database, drop_database

#: Non-finite numbers, as Float and Decimal fields carry them (PostgreSQL's own JSON form).
NON_FINITE = {"NaN", "Infinity", "-Infinity"}
#: PostgreSQL's infinite dates and timestamps.
INFINITE_DATES = {"infinity", "-infinity"}

PG_TYPES = [
    "CREATE TYPE {s}.mood AS ENUM ('happy', 'in progress', '1st', 'true', 'Happy', '__x')",
    "CREATE TYPE {s}.pair AS (x integer, y text)",
    # PostgreSQL has no operators for a domain over an enum: it is read as the enum.
    "CREATE DOMAIN {s}.mood_d AS {s}.mood",
]
PG_COLUMNS = """
    id integer PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint, n numeric, n_fixed numeric(38, 10),
    f4 real, f8 double precision, b boolean, bits bit(8), vbits varbit(16),
    c char(3), vc varchar(20), t text, bin bytea,
    d date, tm time, tmtz timetz, ts timestamp, tstz timestamptz, iv interval,
    u uuid, j json, jb jsonb, e {s}.mood, comp {s}.pair,
    ai integer[], at text[], ab bigint[], an numeric[], abin bytea[], ae {s}.mood[],
    af double precision[], ip inet, net cidr, mac macaddr, m money, pt point, rng int4range,
    x xml, o oid, ainet inet[], acidr cidr[], amac macaddr[], amoney money[], aiv interval[],
    atmtz timetz[], abits bit(3)[], arng int4range[], ed {s}.mood_d, aed {s}.mood_d[]
"""
PG_ROWS = [
    "INSERT INTO {s}.cells VALUES (1, 32767, 2147483647, 9223372036854775807,"
    " 1e100, 9999999999999999999999999999.9999999999, 3.4e38, 1.7976931348623157e308,"
    " true, B'00000101', B'101', 'abc', 'héllo \"q\" \\\\', 'line\nbreak\t\u00e9\U0001f600',"
    " '\\xff00fe', '2024-02-29', '23:59:59.999999', '10:00:00+02', '2024-01-02 03:04:05.678',"
    " '2024-01-02 03:04:05+00', '1 year 2 mons 3 days 04:05:06.789',"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{\"a\": [1, null]}}', '{{\"b\": 2}}',"
    " 'in progress', ROW(1, 'x'), '{{1,NULL,3}}', '{{a,\"b c\"}}',"
    " '{{9223372036854775807}}', '{{1.5,NaN}}', '{{\"\\\\xff\"}}', '{{happy,\"in progress\",1st}}',"
    " '{{NaN,1.5,Infinity}}', '192.168.1.5', '10.0.0.0/8', '08:00:2b:01:02:03', 12.34,"
    " '(1,2)', '[1,5)', '<a>1</a>', 42, '{{10.0.0.1,10.0.0.0/8,::1,NULL}}',"
    " '{{10.0.0.1/32,10.0.0.0/8}}', '{{08:00:2b:01:02:03}}', '{{12.34,-0.01}}',"
    " '{{\"1 year 2 mons 3 days 04:05:06.789\",\"-1 days\"}}', '{{10:00:00+02,00:00:00-12}}',"
    " '{{101,000}}', '{{\"[1,5)\",empty,NULL}}', 'in progress', '{{\"in progress\",NULL,1st}}')",
    "INSERT INTO {s}.cells VALUES (2, -32768, -2147483648, -9223372036854775808,"
    " -0.000000000000000000001, -9999999999999999999999999999.9999999999, -1.17e-38,"
    " 5e-324, false, B'11111111', B'', '', '', '', '', '0001-01-01', '00:00:00', '00:00:00-12',"
    " '0001-01-01 00:00:00', '1970-01-01 00:00:00+00', '-1 days', "
    " '00000000-0000-0000-0000-000000000000', 'null', '[]', 'true', ROW(NULL, NULL), '{{}}',"
    " '{{}}', '{{-9223372036854775808}}', '{{}}', '{{}}', '{{}}', '{{}}', '::1', '::/0',"
    " '00:00:00:00:00:00', -0.01, '(0,0)', 'empty', '<b/>', 0, '{{}}', '{{}}', '{{}}', '{{}}',"
    " '{{}}', '{{}}', '{{}}', '{{}}', 'happy', '{{}}')",
    "INSERT INTO {s}.cells (id, n, f4, f8, d, ts, tstz, e)"
    " VALUES (3, 'NaN', 'NaN', 'Infinity', 'infinity', '-infinity', 'infinity', 'true')",
    "INSERT INTO {s}.cells (id, f8, e, ed) VALUES (4, '-Infinity', '1st', '__x')",
    "INSERT INTO {s}.cells (id) VALUES (5)",
]

MYSQL_COLUMNS = """
    id INT PRIMARY KEY,
    ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
    mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
    dec_wide DECIMAL(65, 30), dec_int DECIMAL(10, 0), f FLOAT, dbl DOUBLE,
    bo BOOLEAN, bit1 BIT(1), bit8 BIT(8), bit64 BIT(64),
    c CHAR(3), vc VARCHAR(20), t TEXT, lt LONGTEXT, latin VARCHAR(10) CHARACTER SET latin1,
    bin BINARY(3), vbin VARBINARY(10), bl BLOB, lbl LONGBLOB,
    d DATE, tm TIME, dtm DATETIME, dtm6 DATETIME(6), ts TIMESTAMP NULL, y YEAR,
    u UUID, j JSON, e ENUM('happy', 'in progress', '1st', 'true', 'it''s', '__x'), st SET('a', 'b'),
    ip4 INET4, ip6 INET6, g GEOMETRY, pt POINT
"""
MYSQL_ROWS = [
    "INSERT INTO cells VALUES (1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647,"
    " 4294967295, 9223372036854775807, 18446744073709551615,"
    " 99999999999999999999999999999999999.999999999999999999999999999999, 9999999999,"
    " 3.40282e38, 1.7976931348623157e308, TRUE, b'1', b'00000101', b'1111111111111111111111"
    "111111111111111111111111111111111111111111', 'abc', 'héllo \"q\" \\\\',"
    " 'line\nbreak\t\u00e9\U0001f600', 'long', 'caf\u00e9', x'ff00fe', x'ff', x'ff00', x'ffff',"
    " '2024-02-29', '23:59:59', '2024-01-02 03:04:05', '2024-01-02 03:04:05.678901',"
    " '2024-01-02 03:04:05', 2155, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, null]}',"
    " 'in progress', 'a,b', '192.168.1.5', '::1', ST_GeomFromText('LINESTRING(0 0, 1 1)'),"
    " ST_GeomFromText('POINT(1 2)'))",
    "INSERT INTO cells VALUES (2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0,"
    " -9223372036854775808, 0,"
    " -99999999999999999999999999999999999.999999999999999999999999999999, -9999999999,"
    " -1.17549e-38, 2.2250738585072014e-308, FALSE, b'0', b'11111111', b'0', '', '', '', '', '',"
    " x'000000', x'', x'', x'', '1000-01-01', '00:00:00', '1000-01-01 00:00:00',"
    " '1000-01-01 00:00:00.000000', '1970-01-02 00:00:00', 1901,"
    " '00000000-0000-0000-0000-000000000000', 'null', 'it''s', '', '0.0.0.0', '::',"
    " ST_GeomFromText('POINT(0 0)'), ST_GeomFromText('POINT(0 0)'))",
    "INSERT INTO cells (id, e) VALUES (3, '1st')",
    "INSERT INTO cells (id, e) VALUES (4, '__x')",
    "INSERT INTO cells (id) VALUES (5)",
]

SQLITE_DDL = """
CREATE TABLE cells (
    id INTEGER PRIMARY KEY, i INTEGER, si SMALLINT, bi BIGINT, r REAL, dbl DOUBLE, fl FLOAT,
    n NUMERIC, dec DECIMAL(10, 2), bo BOOLEAN, c CHAR(3), vc VARCHAR(10), t TEXT, bl BLOB,
    d DATE, tm TIME, dtm DATETIME, ts TIMESTAMP, u UUID, j JSON
)
"""
SQLITE_ROWS = [
    "INSERT INTO cells VALUES (1, 2147483647, 32767, 9223372036854775807, 1e999,"
    " 1.7976931348623157e308, 5e-324, 1e100, 12.34, 1, 'abc', 'héllo \"q\" \\',"
    " 'line' || char(10) || 'break' || char(9) || 'é' || char(128512), x'ff00fe', '2024-02-29',"
    " '23:59:59', '2024-01-02 03:04:05', '2024-01-02T03:04:05.678',"
    " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, null]}')",
    "INSERT INTO cells VALUES (2, -2147483648, -32768, -9223372036854775808, -1e999, 0.0,"
    " -5e-324, -0.000001, -12.34, 0, '', '', '', x'', '0001-01-01', '00:00:00',"
    " '0001-01-01 00:00:00', '1970-01-01 00:00:00', '00000000-0000-0000-0000-000000000000',"
    " 'null')",
    "INSERT INTO cells (id) VALUES (3)",
]


def pg_statements(schema: str) -> list[str]:
    create = f"CREATE TABLE {schema}.cells ({PG_COLUMNS.format(s=schema)})"
    return [
        f"CREATE SCHEMA {schema}",
        *(t.format(s=schema) for t in PG_TYPES),
        create,
        *(r.format(s=schema) for r in PG_ROWS),
    ]


def mysql_statements() -> list[str]:
    return [f"CREATE TABLE cells ({MYSQL_COLUMNS}) CHARACTER SET utf8mb4", *MYSQL_ROWS]


@dataclass
class MatrixDatabase:
    """A database holding the matrix table: its connection, URL, schemas to reflect (the
    PostgreSQL schema it is in) and the table's qualified name."""

    db: ChinookDb
    url: str
    schemas: list[str] | None
    table: str


@contextlib.contextmanager
def matrix_database(dialect: Dialect, tmp_path_factory: Any) -> Iterator[MatrixDatabase]:
    """A new database of ``dialect`` with the matrix table ``cells``, dropped afterwards."""
    schemas: list[str] | None = None
    table = "cells"
    if dialect == "sqlite":
        url = build_sqlite(tmp_path_factory.mktemp("matrix") / "matrix.sqlite")
    else:
        url = create_empty_database(dialect)
    db = ChinookDb(dialect, url)
    try:
        if dialect == "postgresql":
            schema = f"m_{uuid.uuid4().hex[:8]}"
            schemas = [schema]
            table = f"{schema}.cells"
            for statement in pg_statements(schema):
                db.query(statement)
        elif dialect == "mysql":
            for statement in mysql_statements():
                db.query(statement)
        yield MatrixDatabase(db, url, schemas, table)
    finally:
        db.close()
        if dialect != "sqlite":
            drop_database(url)


@contextlib.asynccontextmanager
async def served_matrix(
    dialect: Dialect, tmp_path_factory: Any
) -> AsyncIterator[tuple[MatrixDatabase, Any, httpx.AsyncClient]]:
    """The matrix database, the GraphQL app reflecting it and an HTTP client of the app."""
    from quiver.config.settings import QuiverSettings
    from quiver.graphql.http import create_app
    from quiver.schema.reflect import reflect_database
    from tests.graphql.conftest import asgi_client

    with matrix_database(dialect, tmp_path_factory) as m:
        reflected = await reflect_database(m.url, schemas=m.schemas)
        settings = QuiverSettings.model_validate({"database": {"url": m.url, "pool_max": 2}})
        app = create_app(reflected, settings)
        async with asgi_client(app) as client:
            yield m, app, client


def build_sqlite(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        conn.execute(SQLITE_DDL)
        for row in SQLITE_ROWS:
            conn.execute(row)
        conn.commit()
    finally:
        conn.close()
    return f"sqlite:///{path.absolute()}"


# --------------------------------------------------------------------------------------------
# Checking a value against its declared GraphQL type
# --------------------------------------------------------------------------------------------

_BIGINT = re.compile(r"-?[0-9]+")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _scalar_ok(name: str, v: Any) -> bool:
    if name == "Int":
        return _is_number(v) and float(v).is_integer() and -(2**31) <= v < 2**31
    if name == "Float":
        return (_is_number(v) and math.isfinite(v)) or v in NON_FINITE
    if name in ("String", "ID"):
        return isinstance(v, str)
    if name == "Boolean":
        return isinstance(v, bool)
    if name == "BigInt":
        return isinstance(v, str) and bool(_BIGINT.fullmatch(v)) and -(2**63) <= int(v) < 2**63
    if name == "Decimal":
        if not isinstance(v, str):
            return False
        if v in NON_FINITE:
            return True
        try:
            return decimal.Decimal(v).is_finite() and v.strip() == v
        except decimal.InvalidOperation:
            return False
    if name == "DateTime":
        return isinstance(v, str) and (v in INFINITE_DATES or _parses(dt.datetime, v))
    if name == "Date":
        return isinstance(v, str) and (v in INFINITE_DATES or _parses(dt.date, v))
    if name == "Time":
        return isinstance(v, str) and _parses(dt.time, v)
    if name == "UUID":
        return isinstance(v, str) and _parses_uuid(v)
    if name == "JSON":
        return True
    if name == "Base64":
        if not isinstance(v, str):
            return False
        try:
            base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            return False
        return True
    raise AssertionError(f"no rule for the scalar {name}")


def _parses(kind: type[dt.date] | type[dt.time], v: str) -> bool:
    text = v.replace("Z", "+00:00")
    if kind is dt.time and re.search(r"[+-][0-9]{2}$", text):
        text += ":00"  # PostgreSQL's timetz writes +02
    try:
        kind.fromisoformat(text)
    except ValueError:
        return False
    return True


def _parses_uuid(v: str) -> bool:
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return True


def type_problems(value: Any, gql_type: Any, where: str) -> list[str]:
    """Every place where ``value`` is not of ``gql_type`` (empty when it is)."""
    if isinstance(gql_type, GraphQLNonNull):
        if value is None:
            return [f"{where}: null in a non-null field"]
        return type_problems(value, gql_type.of_type, where)
    if value is None:
        return []
    if isinstance(gql_type, GraphQLList):
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        out: list[str] = []
        for i, item in enumerate(value):
            out.extend(type_problems(item, gql_type.of_type, f"{where}[{i}]"))
        return out
    if isinstance(gql_type, GraphQLEnumType):
        return [] if value in gql_type.values else [f"{where}: {value!r} is not a {gql_type}"]
    assert isinstance(gql_type, GraphQLScalarType)
    if _scalar_ok(gql_type.name, value):
        return []
    return [f"{where}: {value!r} is not a valid {gql_type.name}"]


def field_types(schema: GraphQLSchema, type_name: str) -> dict[str, Any]:
    t = schema.get_type(type_name)
    assert isinstance(t, GraphQLObjectType)
    return {name: f.type for name, f in t.fields.items() if _is_leaf(f.type)}


def _is_leaf(t: Any) -> bool:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return isinstance(t, GraphQLScalarType | GraphQLEnumType)
