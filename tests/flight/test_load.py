"""DoPut: a bulk load into one table, all or nothing, on every dialect."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from quiver.flight.server import FlightHandle
from quiver.sql.url import parse_database_url
from tests.conftest import DIALECTS
from tests.flight.conftest import reflect, start

TABLE = {
    "sqlite": "CREATE TABLE reading (id INTEGER PRIMARY KEY, sensor VARCHAR(40) NOT NULL, "
    "level NUMERIC(10,2), taken_at TIMESTAMP)",
    "postgresql": "CREATE TABLE reading (id integer PRIMARY KEY, sensor varchar(40) NOT NULL, "
    "level numeric(10,2), taken_at timestamptz)",
    "mysql": "CREATE TABLE reading (id INT PRIMARY KEY, sensor VARCHAR(40) NOT NULL, "
    "level DECIMAL(10,2), taken_at DATETIME(6))",
}


class Db:
    def __init__(self, dialect: str, url: str) -> None:
        self.dialect, self.url = dialect, url

    def run_fields(self) -> list[tuple[str, str, str]]:
        return FIELDS[self.dialect]

    def run(self, text: str) -> list[tuple[Any, ...]]:
        u = parse_database_url(self.url)
        if self.dialect == "sqlite":
            with sqlite3.connect(u.database) as lite:
                return lite.execute(text).fetchall()
        if self.dialect == "postgresql":
            import psycopg

            with psycopg.connect(
                host=u.host, port=u.port, user=u.user, dbname=u.database, autocommit=True
            ) as pg:
                pg_cur = pg.execute(text)
                return pg_cur.fetchall() if pg_cur.description else []
        import pymysql

        conn = pymysql.connect(
            host=u.host, port=u.port, user=u.user or "root", database=u.database, autocommit=True
        )
        try:
            with conn.cursor() as cur:
                cur.execute(text)
                return list(cur.fetchall())
        finally:
            conn.close()


#: (field, column, declared type as the catalog reflects it) of each dialect's table.
FIELDS = {
    "sqlite": [
        ("id", "id", "INTEGER"),
        ("sensor", "sensor", "VARCHAR(40)"),
        ("level", "level", "NUMERIC(10,2)"),
        ("takenAt", "taken_at", "TIMESTAMP"),
    ],
    "postgresql": [
        ("id", "id", "int4"),
        ("sensor", "sensor", "varchar"),
        ("level", "level", "numeric(10,2)"),
        ("takenAt", "taken_at", "timestamptz"),
    ],
    "mysql": [
        ("id", "id", "int(11)"),
        ("sensor", "sensor", "varchar(40)"),
        ("level", "level", "decimal(10,2)"),
        ("takenAt", "taken_at", "datetime(6)"),
    ],
}


@pytest.fixture(params=DIALECTS)
def loadable(request: pytest.FixtureRequest) -> Iterator[tuple[Db, FlightHandle]]:
    dialect = request.param
    db = Db(dialect, request.getfixturevalue(f"fresh_{dialect}"))
    db.run(TABLE[dialect])
    handle = start(db.url, reflect(db.url), flight={"writable": True})
    try:
        yield db, handle
    finally:
        handle.stop()


def _batch(ids: list[int], sensors: list[str | None]) -> pa.RecordBatch:
    n = len(ids)
    return pa.record_batch(
        {
            "id": pa.array(ids, pa.int64()),
            "sensor": pa.array(sensors, pa.string()),
            "level": pa.array([decimal.Decimal("1.25")] * n, pa.decimal128(10, 2)),
            "takenAt": pa.array(
                [dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)] * n, pa.timestamp("us", tz="UTC")
            ),
        }
    )


def put(handle: FlightHandle, batches: list[pa.RecordBatch], table: str = "Reading") -> bytes:
    client = flight.FlightClient(handle.location)
    writer, meta = client.do_put(flight.FlightDescriptor.for_path(table), batches[0].schema)
    try:
        for b in batches:
            writer.write_batch(b)
        writer.done_writing()
        answer = meta.read()
    finally:
        writer.close()
    return bytes(answer) if answer is not None else b""


def test_a_bulk_load_writes_every_batch(loadable: tuple[Db, FlightHandle]) -> None:
    db, handle = loadable
    answer = put(handle, [_batch([1, 2], ["a", "b"]), _batch([3], ["c"])])
    assert b'"rows":3' in answer
    rows = db.run("SELECT id, sensor, level FROM reading ORDER BY id")
    assert [(r[0], r[1], decimal.Decimal(str(r[2]))) for r in rows] == [
        (1, "a", decimal.Decimal("1.25")),
        (2, "b", decimal.Decimal("1.25")),
        (3, "c", decimal.Decimal("1.25")),
    ]
    exported = (
        flight.FlightClient(handle.location)
        .do_get(flight.Ticket(b"export:Reading::id,takenAt"))
        .read_all()
    )
    assert exported.column("takenAt")[0].as_py() == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_a_column_the_table_lacks_is_refused_and_nothing_is_written(
    loadable: tuple[Db, FlightHandle],
) -> None:
    db, handle = loadable
    batch = _batch([1], ["a"]).append_column("colour", pa.array(["red"]))
    with pytest.raises(flight.FlightServerError, match="Reading has no column 'colour'"):
        put(handle, [batch])
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_load_into_a_view_is_refused_naming_the_view_and_nothing_is_written(
    request: pytest.FixtureRequest, dialect: str
) -> None:
    """PostgreSQL and SQLite refused it with a database error that did not say why; MariaDB
    wrote through the (updatable) view into the table it reads."""
    db = Db(dialect, request.getfixturevalue(f"fresh_{dialect}"))
    db.run(TABLE[dialect])
    db.run("CREATE VIEW recent AS SELECT id, sensor, level, taken_at FROM reading")
    handle = start(db.url, reflect(db.url), flight={"writable": True})
    try:
        with pytest.raises(flight.FlightServerError) as caught:
            put(handle, [_batch([1], ["a"])], table="Recent")
        assert put(handle, [_batch([2], ["b"])]) == b'{"rows":1}'
    finally:
        handle.stop()
    message = str(caught.value)
    view = "public.recent" if dialect == "postgresql" else "recent"
    assert message.startswith(
        f"INVALID_TICKET: DoPut Recent: Recent is the database view '{view}', not a table: a view"
        " cannot be loaded; nothing was written (load the table the view reads from instead"
    ), message
    assert orjson.loads(caught.value.extra_info)["code"] == "INVALID_TICKET"
    assert "://" not in message and "Traceback" not in message
    assert db.run("SELECT id FROM reading") == [(2,)]


def test_text_postgresql_cannot_hold_is_invalid_value_naming_the_column_not_the_database(
    request: pytest.FixtureRequest,
) -> None:
    """A NUL character: PostgreSQL text cannot hold one. The load failed with the generic
    QUIVER_ERROR, the database's URL as where, and a fix meant for the server's operator."""
    db = Db("postgresql", request.getfixturevalue("fresh_postgresql"))
    db.run(TABLE["postgresql"])
    handle = start(db.url, reflect(db.url), flight={"writable": True})
    try:
        with pytest.raises(flight.FlightServerError) as caught:
            put(handle, [_batch([1, 2], ["a", "b\x00c"])])
    finally:
        handle.stop()
    message = str(caught.value)
    assert message.startswith(
        "INVALID_VALUE: DoPut Reading.sensor row 2: the database refused the load of Reading: a"
        " value is not one the column's type accepts, column 'sensor', row 2 of the stream:"
    ), message
    assert 'invalid byte sequence for encoding "UTF8": 0x00' in message, message
    assert "nothing was written (send values the column's type reads" in message, message
    assert "://" not in message and "://" not in caught.value.extra_info.decode()
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0


def test_a_bad_batch_after_good_ones_rolls_the_whole_load_back(
    loadable: tuple[Db, FlightHandle],
) -> None:
    db, handle = loadable
    with pytest.raises(flight.FlightServerError, match="'sensor' holds nulls"):
        put(handle, [_batch([1, 2], ["a", "b"]), _batch([3], [None])])
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0


#: A client that sends two batches of a load into Reading, then dies without finishing it.
_ABANDONING_CLIENT = """
import datetime as dt, decimal, os, sys, time
import pyarrow as pa, pyarrow.flight as flight

def batch(ids):
    n = len(ids)
    return pa.record_batch({
        "id": pa.array(ids, pa.int64()),
        "sensor": pa.array(["abandoned"] * n),
        "level": pa.array([decimal.Decimal("1.25")] * n, pa.decimal128(10, 2)),
        "takenAt": pa.array([dt.datetime(2026, 1, 2)] * n, pa.timestamp("us", "UTC")),
    })

client = flight.FlightClient(sys.argv[1])
first = batch(list(range(1, 501)))
writer, _ = client.do_put(flight.FlightDescriptor.for_path("Reading"), first.schema)
writer.write_batch(first)
writer.write_batch(batch(list(range(501, 1001))))
time.sleep(1)
os._exit(9)
"""


def test_a_client_that_dies_mid_load_leaves_nothing_written(
    loadable: tuple[Db, FlightHandle],
) -> None:
    db, handle = loadable
    died = subprocess.run(
        [sys.executable, "-c", _ABANDONING_CLIENT, handle.location],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert died.returncode == 9, died.stderr
    # The same keys, loaded whole: they wait for the abandoned load's transaction to end,
    # and would be refused as duplicates had it committed.
    answer = put(handle, [_batch(list(range(1, 1001)), ["complete"] * 1000)])
    assert orjson.loads(answer) == {"rows": 1000}
    assert db.run("SELECT sensor, count(*) FROM reading GROUP BY sensor") == [("complete", 1000)]


def test_a_duplicate_key_fails_the_load_naming_the_key_with_nothing_written(
    loadable: tuple[Db, FlightHandle],
) -> None:
    db, handle = loadable
    with pytest.raises(flight.FlightServerError) as caught:
        put(handle, [_batch([1, 2], ["a", "b"]), _batch([2], ["again"])])
    said = str(caught.value)
    assert said.startswith("DUPLICATE_KEY: DoPut Reading.id")
    assert "a row repeats the key of a unique constraint" in said and "column 'id'" in said
    assert "nothing was written" in said
    assert orjson.loads(caught.value.extra_info)["code"] == "DUPLICATE_KEY"
    said_by_database = {
        "postgresql": "(reading_pkey), column 'id', row 3 of the stream: duplicate key value "
        'violates unique constraint "reading_pkey". Key (id)=(2) already exists;',
        "mysql": "Duplicate entry '2' for key 'PRIMARY'",
        "sqlite": "UNIQUE constraint failed: reading.id",
    }
    assert said_by_database[db.dialect] in said
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0


def test_a_value_too_long_for_its_column_names_the_column_and_row(
    loadable: tuple[Db, FlightHandle],
) -> None:
    db, handle = loadable
    batches = [_batch([1, 2], ["a", "b"]), _batch([3, 4], ["c", "x" * 41])]
    if db.dialect == "sqlite":  # SQLite does not limit VARCHAR(n): the value is kept whole
        assert b'"rows":4' in put(handle, batches)
        assert db.run("SELECT sensor FROM reading WHERE id = 4")[0][0] == "x" * 41
        return
    with pytest.raises(flight.FlightServerError) as caught:
        put(handle, batches)
    said = str(caught.value)
    assert said.startswith("VALUE_TOO_LONG: DoPut Reading.sensor row 4: ")
    assert "a value is longer than the column holds, column 'sensor', row 4 of the stream" in said
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0


PARTS = {
    "sqlite": [
        "CREATE TABLE part (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES part (id),"
        " qty INTEGER CONSTRAINT qty_positive CHECK (qty > 0))"
    ],
    "postgresql": [
        "CREATE TABLE part (id integer PRIMARY KEY, parent_id integer REFERENCES part (id),"
        " qty integer CONSTRAINT qty_positive CHECK (qty > 0))"
    ],
    "mysql": [
        "CREATE TABLE part (id INT PRIMARY KEY, parent_id INT, qty INT,"
        " CONSTRAINT qty_positive CHECK (qty > 0),"
        " CONSTRAINT part_parent FOREIGN KEY (parent_id) REFERENCES part (id))"
    ],
}


@pytest.fixture(params=DIALECTS)
def parts(request: pytest.FixtureRequest) -> Iterator[tuple[Db, FlightHandle]]:
    dialect = request.param
    db = Db(dialect, request.getfixturevalue(f"fresh_{dialect}"))
    for statement in PARTS[dialect]:
        db.run(statement)
    handle = start(db.url, reflect(db.url), flight={"writable": True})
    try:
        yield db, handle
    finally:
        handle.stop()


def _parts(ids: list[int], parents: list[int | None], qty: list[int]) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(ids, pa.int32()),
            "parentId": pa.array(parents, pa.int32()),
            "qty": pa.array(qty, pa.int32()),
        }
    )


def test_a_broken_reference_fails_the_load_on_every_database(
    parts: tuple[Db, FlightHandle],
) -> None:
    db, handle = parts
    with pytest.raises(flight.FlightServerError) as caught:
        put(handle, [_parts([1, 2], [None, 1], [1, 1]), _parts([3], [9], [1])], table="Part")
    said = str(caught.value)
    assert said.startswith("FOREIGN_KEY: DoPut Part")
    assert "a row refers to a row that does not exist" in said
    if db.dialect != "sqlite":  # SQLite does not say which reference failed
        assert said.startswith("FOREIGN_KEY: DoPut Part.parentId")
    assert "load the rows it refers to first" in said
    assert db.run("SELECT count(*) FROM part")[0][0] == 0


def test_a_failed_check_names_the_constraint(parts: tuple[Db, FlightHandle]) -> None:
    db, handle = parts
    with pytest.raises(flight.FlightServerError) as caught:
        put(handle, [_parts([1, 2], [None, None], [1, -1])], table="Part")
    said = str(caught.value)
    assert said.startswith("CHECK_CONSTRAINT: DoPut Part")
    assert "a row fails a check constraint (qty_positive)" in said
    assert db.run("SELECT count(*) FROM part")[0][0] == 0
    assert b'"rows":2' in put(handle, [_parts([1, 2], [None, 1], [1, 2])], table="Part")


def test_a_stream_without_columns_is_refused_naming_the_columns(
    parts: tuple[Db, FlightHandle],
) -> None:
    db, handle = parts
    empty = _parts([1, 2], [None, 1], [1, 2]).select([])
    with pytest.raises(flight.FlightServerError) as caught:
        put(handle, [empty], table="Part")
    said = str(caught.value)
    assert said.startswith("INVALID_TICKET: DoPut schema: the stream has no columns"), said
    assert "send columns of Part: id, parentId, qty" in said
    assert db.run("SELECT count(*) FROM part")[0][0] == 0


def _refused_load(
    request: pytest.FixtureRequest, dialect: str, ddl: str, table: str, batch: pa.RecordBatch
) -> tuple[Db, flight.FlightServerError]:
    """A new ``dialect`` database holding the table ``ddl`` creates, and the error that loading
    ``batch`` into ``table`` fails with."""
    db = Db(dialect, request.getfixturevalue(f"fresh_{dialect}"))
    db.run(ddl)
    handle = start(db.url, reflect(db.url), flight={"writable": True})
    try:
        with pytest.raises(flight.FlightServerError) as caught:
            put(handle, [batch], table=table)
    finally:
        handle.stop()
    return db, caught.value


#: A column's own CHECK, unnamed: each database names it its way (PostgreSQL stock_qty_check,
#: MariaDB qty, SQLite by its expression), and the load names the column from that.
STOCK = {
    "sqlite": "CREATE TABLE stock (id INTEGER PRIMARY KEY, qty INTEGER CHECK (qty >= 0))",
    "postgresql": "CREATE TABLE stock (id integer PRIMARY KEY, qty integer CHECK (qty >= 0))",
    "mysql": "CREATE TABLE stock (id INT PRIMARY KEY, qty INT CHECK (qty >= 0))",
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_failed_check_of_one_column_names_the_column(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    batch = pa.record_batch({"id": pa.array([1, 2], pa.int32()), "qty": pa.array([3, -1])})
    db, refused = _refused_load(request, dialect, STOCK[dialect], "Stock", batch)
    said = str(refused)
    assert said.startswith("CHECK_CONSTRAINT: DoPut Stock.qty")
    assert "a row fails a check constraint" in said and "column 'qty'" in said
    if dialect == "postgresql":  # the row of the COPY
        assert "(stock_qty_check), column 'qty', row 2 of the stream" in said
    assert db.run("SELECT count(*) FROM stock")[0][0] == 0


#: A key column with no default, which the load may leave out (a key may be generated).
TAG = {
    "sqlite": "CREATE TABLE tag (code TEXT NOT NULL PRIMARY KEY, label TEXT)",
    "postgresql": "CREATE TABLE tag (code varchar(10) PRIMARY KEY, label text)",
    "mysql": "CREATE TABLE tag (code VARCHAR(10) PRIMARY KEY, label TEXT)",
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_key_left_out_without_a_default_is_not_null_naming_the_column(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    batch = pa.record_batch({"label": pa.array(["a"])})
    db, refused = _refused_load(request, dialect, TAG[dialect], "Tag", batch)
    said = str(refused)
    # MariaDB says so with its own number (1364, no default), not that of a NULL (1048)
    assert said.startswith("NOT_NULL: DoPut Tag.code")
    assert "a row has no value for a column that requires one, column 'code'" in said
    assert orjson.loads(refused.extra_info)["code"] == "NOT_NULL"
    assert db.run("SELECT count(*) FROM tag")[0][0] == 0


def test_a_read_only_server_refuses_loads(chinook_sqlite: object) -> None:
    url = f"sqlite:///{chinook_sqlite}"
    handle = start(url, reflect(url))
    try:
        with pytest.raises(flight.FlightUnauthorizedError, match="read-only"):
            put(handle, [pa.record_batch({"name": ["x"]})], table="Genre")
    finally:
        handle.stop()


def _with(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    return batch.set_column(batch.schema.get_field_index(name), name, values)


@pytest.mark.parametrize(
    ("name", "values", "says"),
    [
        ("sensor", pa.array([7], pa.int64()), "it is not text"),
        ("level", pa.array([1.255], pa.float64()), "rounded to the column's scale"),
        ("id", pa.array([1.0], pa.float64()), "truncated to a whole one"),
        ("sensor", pa.array([True]), "it is not text"),
    ],
)
def test_a_column_whose_values_would_change_is_refused_and_nothing_is_written(
    loadable: tuple[Db, FlightHandle], name: str, values: pa.Array, says: str
) -> None:
    db, handle = loadable
    batch = _with(_batch([1], ["a"]), name, values)
    with pytest.raises(flight.FlightServerError) as caught:
        put(handle, [batch])
    said = str(caught.value)
    assert said.startswith("INVALID_TICKET: ")
    column = next(f for f in db.run_fields() if f[0] == name)
    assert f"column {name!r} is {values.type} in the stream" in said
    assert f"reading.{column[1]} is {column[2]}" in said and says in said
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0


def test_every_refused_column_is_named_at_once(loadable: tuple[Db, FlightHandle]) -> None:
    db, handle = loadable
    batch = _with(_with(_batch([1], ["a"]), "sensor", pa.array([7])), "level", pa.array([1.5]))
    with pytest.raises(flight.FlightServerError) as caught:
        put(handle, [batch])
    assert "column 'sensor' is int64" in str(caught.value)
    assert "column 'level' is double" in str(caught.value)
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0


def test_a_naive_timestamp_is_refused_by_a_column_of_instants(
    loadable: tuple[Db, FlightHandle],
) -> None:
    db, handle = loadable
    naive = pa.array([dt.datetime(2026, 1, 2, 3, 4, 5)], pa.timestamp("us"))
    batch = _with(_batch([1], ["a"]), "takenAt", naive)
    if db.dialect == "postgresql":  # timestamptz: which instant is it?
        with pytest.raises(flight.FlightServerError) as caught:
            put(handle, [batch])
        said = str(caught.value)
        assert "column 'takenAt' is timestamp[us] in the stream" in said
        assert "reading.taken_at is timestamptz" in said and "without a time zone" in said
        assert db.run("SELECT count(*) FROM reading")[0][0] == 0
        return
    # TIMESTAMP (SQLite) and DATETIME (MariaDB) hold times without a zone: kept as sent.
    assert b'"rows":1' in put(handle, [batch])
    exported = flight.FlightClient(handle.location).do_get(flight.Ticket(b"export:Reading::"))
    stamp = exported.read_all().column("takenAt")[0].as_py()
    assert stamp == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_lossless_widenings_are_loaded_with_their_values(
    loadable: tuple[Db, FlightHandle],
) -> None:
    db, handle = loadable
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2], pa.int16()),
            "sensor": pa.array(["a", "b"], pa.large_string()),
            "level": pa.array([decimal.Decimal("1.5"), None], pa.decimal128(3, 1)),
            "takenAt": pa.array(
                [dt.datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=dt.UTC)] * 2,
                pa.timestamp("ms", tz="UTC"),
            ),
        }
    )
    small = pa.record_batch(
        {"id": pa.array([3], pa.uint8()), "sensor": ["c"], "level": pa.array([7], pa.int8())}
    )
    # int64 into NUMERIC(10, 2): every value is checked, none needs 21 digits of room.
    whole = pa.record_batch(
        {"id": pa.array([4], pa.int64()), "sensor": ["d"], "level": pa.array([12345678])}
    )
    assert b'"rows":2' in put(handle, [batch])
    assert b'"rows":1' in put(handle, [small])
    assert b'"rows":1' in put(handle, [whole])
    rows = db.run("SELECT id, sensor, level FROM reading ORDER BY id")
    assert [(r[0], r[1], None if r[2] is None else decimal.Decimal(str(r[2]))) for r in rows] == [
        (1, "a", decimal.Decimal("1.5")),
        (2, "b", None),
        (3, "c", decimal.Decimal("7")),
        (4, "d", decimal.Decimal("12345678")),
    ]
    too_big = pa.record_batch(
        {"id": pa.array([5], pa.int64()), "sensor": ["e"], "level": pa.array([10**9])}
    )
    with pytest.raises(flight.FlightServerError, match="does not fit in precision 10"):
        put(handle, [too_big])


@pytest.mark.parametrize(
    ("name", "values", "says"),
    [
        ("id", pa.array([2**40], pa.int64()), "not in range"),
        ("level", pa.array([decimal.Decimal("1.2345")], pa.decimal128(12, 4)), "data loss"),
        ("level", pa.array([decimal.Decimal("123456789.5")], pa.decimal128(12, 1)), "precision"),
    ],
)
def test_a_value_that_does_not_fit_the_column_fails_the_load_unchanged(
    loadable: tuple[Db, FlightHandle], name: str, values: pa.Array, says: str
) -> None:
    db, handle = loadable
    batch = _with(_batch([1], ["a"]), name, values)
    with pytest.raises(flight.FlightServerError) as caught:
        put(handle, [batch])
    assert f"column {name!r} is {values.type}, and a value of it would change" in str(caught.value)
    assert says in str(caught.value)
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0
