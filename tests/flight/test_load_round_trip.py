"""What a Flight export serves loads back with DoPut and exports equal, for every column type.

Each database gets a table holding a column of every type it offers
(``tests/graphql/type_matrix.py``, plus the geometric, spatial and fractional-time types added
here), at the edges of each type's range, with nulls. Each column is exported with its key,
loaded with DoPut into an empty table of the same definition, and exported again: the two
streams must be equal, value for value. A column that cannot be loaded exactly is refused
before anything is written, the error naming the column, its Arrow type and its database type.
"""

from __future__ import annotations

import decimal
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from quiver.flight.server import FlightHandle
from quiver.schema.ir import Entity, Schema
from tests.conftest import ChinookDb, Dialect, create_empty_database, drop_database
from tests.flight.conftest import reflect, start
from tests.graphql import type_matrix as tm

#: Types the shared matrix leaves out, and their values in the rows of ids 1 and 2.
PG_EXTRA = [
    ("ln", "line", "'{1,-1,0}'", "'{0,1,-2}'"),
    ("seg", "lseg", "'[(0,0),(1,1)]'", "'[(1.5,2),(3,4)]'"),
    ("bx", "box", "'(1,1),(0,0)'", "'(3,4),(1,2)'"),
    ("pth", "path", "'[(0,0),(1,1),(2,0)]'", "'((0,0),(1,1))'"),
    ("pg", "polygon", "'((0,0),(1,1),(1,0))'", "'((0,0),(0,1),(1,1))'"),
    ("crc", "circle", "'<(1,2),3>'", "'<(0,0),0.5>'"),
    ("ts6", "timestamp(6)", "'2024-01-02 03:04:05.123456'", "'1999-12-31 23:59:59.999999'"),
    ("tz3", "timestamptz(3)", "'2024-01-02 03:04:05.123+05'", "'0001-01-01 00:00:00+00'"),
    ("tm6", "time(6)", "'00:00:00.000001'", "'23:59:59.999999'"),
    ("mac8", "macaddr8", "'08:00:2b:01:02:03:04:05'", "'ff:ff:ff:ff:ff:ff:ff:ff'"),
    (
        "nbig",
        "numeric(76, 38)",
        "('-' || repeat('9', 38) || '.' || repeat('9', 38))::numeric",
        "0",
    ),
    ("ch", '"char"', "'x'", "'\\xff'"),
    ("nnan", "numeric(5, 2)", "'NaN'", "-999.99"),
    ("nnan38", "numeric(38, 2)", "1.5", "'NaN'"),
    ("ainf", "date[]", "'{2024-01-01,NULL,infinity}'", "'{}'"),
    ("acomp", "{s}.pair[]", "ARRAY[ROW(1, 'a'), NULL, ROW(NULL, 'b')]::{s}.pair[]", "'{}'"),
]
MYSQL_EXTRA = [
    ("tm6", "TIME(6)", "'838:59:59.000000'", "'-838:59:59.000000'"),
    ("ts6", "TIMESTAMP(6) NULL", "'2024-01-02 03:04:05.123456'", "'1970-01-02 00:00:00.000001'"),
    ("pgn", "POLYGON", "ST_GeomFromText('POLYGON((0 0, 1 1, 1 0, 0 0))')", "NULL"),
    ("mpt", "MULTIPOINT", "ST_GeomFromText('MULTIPOINT(0 0, 1 1)')", "NULL"),
    ("fl", "FLOAT UNSIGNED", "0", "3.5"),
    ("de", "DECIMAL(5, 2) UNSIGNED", "999.99", "0"),
    ("tt", "TINYTEXT", "'x'", "''"),
    ("mb", "MEDIUMBLOB", "x'ff'", "x''"),
]


@dataclass
class Matrix:
    db: ChinookDb
    handle: FlightHandle
    schema: Schema
    db_schema: str | None

    def entity(self, table: str) -> Entity:
        (entity,) = [e for e in self.schema.entities if e.source == table]
        return entity

    def count(self, table: str, where: str = "") -> int:
        name = f"{self.db_schema}.{table}" if self.db_schema else table
        return int(self.db.query(f"SELECT COUNT(*) FROM {name} {where}")[0][0])


def _split_columns(text: str) -> list[str]:
    """The column names of a column list (commas inside parentheses do not split)."""
    out, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return [c.split()[0] for c in out if c.strip() and c.split()[0] != "id"]


COLUMNS: dict[Dialect, list[str]] = {
    "postgresql": _split_columns(tm.PG_COLUMNS) + [c[0] for c in PG_EXTRA],
    "mysql": _split_columns(tm.MYSQL_COLUMNS) + [c[0] for c in MYSQL_EXTRA],
    "sqlite": _split_columns(tm.SQLITE_DDL.split("(", 1)[1].rsplit(")", 1)[0]),
}


def _add_extra(
    db: ChinookDb, table: str, extra: list[tuple[str, str, str, str]], schema: str = ""
) -> None:
    for name, *texts in extra:
        kind, one, two = (t.replace("{s}", schema) for t in texts)
        db.query(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        db.query(f"UPDATE {table} SET {name} = {one} WHERE id = 1")
        db.query(f"UPDATE {table} SET {name} = {two} WHERE id = 2")


def _build(dialect: Dialect, tmp: Any) -> tuple[str, str | None]:
    """A database with the matrix table ``cells`` and, for each column, an empty copy of it
    (``b_<column>``) to load into."""
    if dialect == "sqlite":
        url = tm.build_sqlite(tmp / "matrix.sqlite")
        db = ChinookDb(dialect, url)
        for c in COLUMNS[dialect]:
            db.query(tm.SQLITE_DDL.replace("CREATE TABLE cells", f"CREATE TABLE b_{c}"))
        db.close()
        return url, None
    url = create_empty_database(dialect)
    db = ChinookDb(dialect, url)
    try:
        if dialect == "postgresql":
            s = f"rt_{uuid.uuid4().hex[:8]}"
            for statement in tm.pg_statements(s):
                db.query(statement)
            _add_extra(db, f"{s}.cells", PG_EXTRA, s)
            for c in COLUMNS[dialect]:
                db.query(f"CREATE TABLE {s}.b_{c} (LIKE {s}.cells INCLUDING ALL)")
            return url, s
        for statement in tm.mysql_statements():
            db.query(statement)
        _add_extra(db, "cells", MYSQL_EXTRA)
        for c in COLUMNS[dialect]:
            db.query(f"CREATE TABLE b_{c} LIKE cells")
        return url, None
    finally:
        db.close()


def _matrix(dialect: Dialect, tmp_path_factory: Any) -> Iterator[Matrix]:
    url, db_schema = _build(dialect, tmp_path_factory.mktemp(f"rt_{dialect}"))
    db = ChinookDb(dialect, url)
    try:
        schema = reflect(url) if db_schema is None else _reflect_schema(url, db_schema)
        handle = start(url, schema, flight={"writable": True, "batch_rows": 2})
        try:
            yield Matrix(db, handle, schema, db_schema)
        finally:
            handle.stop()
    finally:
        db.close()
        if dialect != "sqlite":
            drop_database(url)


def _reflect_schema(url: str, db_schema: str) -> Schema:
    import asyncio
    import concurrent.futures

    from quiver.schema.reflect import reflect_database

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, reflect_database(url, schemas=[db_schema])).result()


@pytest.fixture(scope="module")
def pg(tmp_path_factory: Any) -> Iterator[Matrix]:
    yield from _matrix("postgresql", tmp_path_factory)


@pytest.fixture(scope="module")
def mysql(tmp_path_factory: Any) -> Iterator[Matrix]:
    yield from _matrix("mysql", tmp_path_factory)


@pytest.fixture(scope="module")
def sqlite(tmp_path_factory: Any) -> Iterator[Matrix]:
    yield from _matrix("sqlite", tmp_path_factory)


def export(client: flight.FlightClient, entity: Entity, fields: list[str]) -> pa.Table:
    ticket = f"export:{entity.name}::{','.join(fields)}"
    return client.do_get(flight.Ticket(ticket.encode())).read_all().sort_by(fields[0])


def put(client: flight.FlightClient, entity: Entity, table: pa.Table) -> None:
    writer, meta = client.do_put(flight.FlightDescriptor.for_path(entity.name), table.schema)
    try:
        writer.write_table(table, max_chunksize=2)
        writer.done_writing()
        meta.read()
    finally:
        writer.close()


def _equal(a: pa.ChunkedArray, b: pa.ChunkedArray) -> bool:
    """Whether two columns hold the same values (NaN equal to NaN; Arrow's own comparison
    elsewhere, as times beyond Python's range do not convert)."""
    floats = pa.types.is_floating(a.type) or (
        pa.types.is_list(a.type) and pa.types.is_floating(a.type.value_type)
    )
    if floats:
        return bool(_same(a.to_pylist()) == _same(b.to_pylist()))
    return bool(a.combine_chunks().equals(b.combine_chunks()))


def _same(value: Any) -> Any:
    """``value`` with NaN made comparable (NaN is not equal to itself)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, list):
        return [_same(v) for v in value]
    if isinstance(value, dict):
        return {k: _same(v) for k, v in value.items()}
    return value


_INFINITE = "holds infinity or -infinity, which"
#: Columns the export refuses (STORED_VALUE), documented: what the error says.
UNEXPORTABLE: dict[Dialect, dict[str, str]] = {
    "postgresql": {
        "d": _INFINITE,
        "ts": _INFINITE,
        "tstz": _INFINITE,
        "n": "column 'n' holds NaN, which decimal128(38, 10) cannot hold",
        "an": "column 'an' holds NaN, which list<item: decimal128(38, 10)> cannot hold",
        "ainf": _INFINITE,
        "nnan": "column 'nnan' holds NaN, which decimal128(5, 2) cannot hold",
        "nnan38": "column 'nnan38' holds NaN, which decimal128(38, 2) cannot hold",
    },
    "mysql": {"tm6": "holds 838:59:59.000000, which time64[us] (a time of day) cannot hold"},
    "sqlite": {"n": "The string '1.0e+100' cannot be represented as decimal128"},
}


def round_trip(m: Matrix, dialect: Dialect, column: str) -> None:
    source = m.entity("cells")
    target = m.entity(f"b_{column}")
    f = source.field_by_column(column)
    assert f is not None
    key = source.field_by_column("id")
    assert key is not None
    client = flight.FlightClient(m.handle.location)
    try:
        if column in UNEXPORTABLE[dialect]:
            with pytest.raises(flight.FlightServerError) as caught:
                export(client, source, [key.name, f.name])
            assert UNEXPORTABLE[dialect][column] in str(caught.value)
            return
        sent = export(client, source, [key.name, f.name])
        assert sent.num_rows == m.count("cells")
        nulls = sent.column(f.name).null_count
        assert nulls >= 1, "the matrix has a null in every column"
        assert nulls < sent.num_rows, "and values (an export of nulls proves nothing)"
        put(client, target, sent)
        back = export(client, target, [key.name, f.name])
        assert back.schema.equals(sent.schema), (back.schema, sent.schema)
        assert _equal(back.column(f.name), sent.column(f.name))
    finally:
        client.close()


@pytest.mark.parametrize("column", COLUMNS["postgresql"])
def test_every_postgresql_type_round_trips_or_is_refused(pg: Matrix, column: str) -> None:
    round_trip(pg, "postgresql", column)


@pytest.mark.parametrize("column", COLUMNS["mysql"])
def test_every_mariadb_type_round_trips_or_is_refused(mysql: Matrix, column: str) -> None:
    round_trip(mysql, "mysql", column)


@pytest.mark.parametrize("column", COLUMNS["sqlite"])
def test_every_sqlite_type_round_trips_or_is_refused(sqlite: Matrix, column: str) -> None:
    round_trip(sqlite, "sqlite", column)


def _put_one(m: Matrix, column: str, values: pa.Array, ids: pa.Array | None = None) -> str:
    """Load ``values`` into ``column`` of its empty copy, expecting a refusal: what it says."""
    target = m.entity(f"b_{column}")
    f = target.field_by_column(column)
    key = target.field_by_column("id")
    assert f is not None and key is not None
    if ids is None:
        ids = pa.array(range(100, 100 + len(values)), pa.int32())
    batch = pa.table({key.name: ids, f.name: values})
    client = flight.FlightClient(m.handle.location)
    try:
        with pytest.raises(flight.FlightServerError) as caught:
            put(client, target, batch)
    finally:
        client.close()
    assert m.count(f"b_{column}", "WHERE id >= 100") == 0
    return str(caught.value)


def test_a_decimal_sqlite_would_round_to_a_double_is_refused(sqlite: Matrix) -> None:
    exact, rounded = decimal.Decimal("12.34"), decimal.Decimal("1234567890.1234567891")
    said = _put_one(sqlite, "n", pa.array([exact, rounded], pa.decimal128(38, 10)))
    assert "column 'n' is decimal128(38, 10)" in said, said
    assert "1234567890.1234567891 would be stored as the double" in said, said


@pytest.mark.parametrize(("dialect", "column"), [("postgresql", "f4"), ("mysql", "f")])
def test_a_double_a_single_precision_column_would_round_is_refused(
    request: pytest.FixtureRequest, dialect: str, column: str
) -> None:
    m: Matrix = request.getfixturevalue("pg" if dialect == "postgresql" else "mysql")
    said = _put_one(m, column, pa.array([1.5, 0.1], pa.float64()))
    assert f"column {column!r} is double" in said and "0.1 is not a single-precision float" in said


@pytest.mark.parametrize(
    ("dialect", "column", "value", "message"),
    [
        ("postgresql", "i2", 40_000, "smallint out of range"),
        ("mysql", "ti", 300, "Out of range value for column 'ti'"),
    ],
)
def test_a_number_beyond_a_narrower_column_fails_the_load_naming_the_column(
    request: pytest.FixtureRequest, dialect: str, column: str, value: int, message: str
) -> None:
    m: Matrix = request.getfixturevalue("pg" if dialect == "postgresql" else "mysql")
    said = _put_one(m, column, pa.array([1, value], pa.int32()))
    assert said.startswith("VALUE_OUT_OF_RANGE"), said
    assert message in said, said


def test_text_a_postgresql_type_does_not_read_fails_the_load_with_its_message(pg: Matrix) -> None:
    said = _put_one(pg, "u", pa.array(["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "nope"]))
    assert 'invalid input syntax for type uuid: "nope"' in said, said


def test_postgresql_columns_of_types_other_than_text_export_as_their_text(pg: Matrix) -> None:
    """Not their binary form (money 12.34 was once "1234", cidr raw address bytes)."""
    source = pg.entity("cells")
    client = flight.FlightClient(pg.handle.location)
    try:
        for column in ("bits", "vbits", "iv", "ip", "net", "mac", "m", "pt", "rng", "bx", "tmtz"):
            f = source.field_by_column(column)
            assert f is not None
            got = export(client, source, ["id", f.name]).column(f.name).to_pylist()
            # The type's output text, as GraphQL serves it (inet's cast to text would add /32).
            text = f"json_build_array({column})->>0"
            want = pg.db.query(f"SELECT {text} FROM {pg.db_schema}.cells ORDER BY id")
            assert got == [r[0] for r in want], column
        # Arrays element by element, as GraphQL serves them: inet[] without /32, money[] as
        # its text (not cents), interval[] as its text, ranges as arrays.
        for column in ("ainet", "acidr", "amac", "amoney", "aiv", "atmtz", "abits", "arng"):
            f = source.field_by_column(column)
            assert f is not None
            got = export(client, source, ["id", f.name]).column(f.name).to_pylist()
            want = pg.db.query(f"SELECT to_json({column}) FROM {pg.db_schema}.cells ORDER BY id")
            assert got == [r[0] for r in want], column
        composites = export(client, source, ["id", "comp", "acomp"])
    finally:
        client.close()
    # Composites as the JSON GraphQL serves them, arrays element by element, nulls kept.
    assert composites.column("comp").to_pylist()[:2] == ['{"x":1,"y":"x"}', '{"x":null,"y":null}']
    assert composites.column("acomp").to_pylist()[:2] == [
        ['{"x":1,"y":"a"}', None, '{"x":null,"y":"b"}'],
        [],
    ]


def test_mariadb_bits_and_spatial_values_export_as_binary_digits_and_wkt(mysql: Matrix) -> None:
    source = mysql.entity("cells")
    client = flight.FlightClient(mysql.handle.location)
    try:
        table = export(client, source, ["id", "bit8", "pt", "f", "bit1"])
    finally:
        client.close()
    assert table.column("bit1").to_pylist()[:2] == [True, False]  # BIT(1) is GraphQL's Boolean
    assert table.column("bit8").to_pylist()[:2] == ["00000101", "11111111"]
    assert table.column("pt").to_pylist()[:2] == ["POINT(1 2)", "POINT(0 0)"]
    assert table.column("f").to_pylist()[0] == 3.4028200183756560e38


def test_a_duplicate_key_in_a_load_cast_through_a_staging_table_is_named(pg: Matrix) -> None:
    ids = pa.array([300, 300], pa.int32())
    said = _put_one(pg, "u", pa.array(["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"] * 2), ids)
    assert said.startswith("DUPLICATE_KEY"), said
    assert "Key (id)=(300) already exists" in said, said
