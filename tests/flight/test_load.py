"""DoPut: a bulk load into one table, all or nothing, on every dialect."""

from __future__ import annotations

import datetime as dt
import decimal
import sqlite3
from collections.abc import Iterator
from typing import Any

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

    def run(self, text: str) -> list[tuple[Any, ...]]:
        u = parse_database_url(self.url)
        if self.dialect == "sqlite":
            with sqlite3.connect(u.database) as conn:
                return conn.execute(text).fetchall()
        if self.dialect == "postgresql":
            import psycopg

            with psycopg.connect(
                host=u.host, port=u.port, user=u.user, dbname=u.database, autocommit=True
            ) as conn:
                cur = conn.execute(text)
                return cur.fetchall() if cur.description else []
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


def test_a_bad_batch_after_good_ones_rolls_the_whole_load_back(
    loadable: tuple[Db, FlightHandle],
) -> None:
    db, handle = loadable
    with pytest.raises(flight.FlightServerError, match="'sensor' holds nulls"):
        put(handle, [_batch([1, 2], ["a", "b"]), _batch([3], [None])])
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0


def test_a_duplicate_key_fails_the_load_with_nothing_written(
    loadable: tuple[Db, FlightHandle],
) -> None:
    db, handle = loadable
    with pytest.raises(flight.FlightError):
        put(handle, [_batch([1, 2], ["a", "b"]), _batch([2], ["again"])])
    assert db.run("SELECT count(*) FROM reading")[0][0] == 0


def test_a_read_only_server_refuses_loads(chinook_sqlite: object) -> None:
    url = f"sqlite:///{chinook_sqlite}"
    handle = start(url, reflect(url))
    try:
        with pytest.raises(flight.FlightUnauthorizedError, match="read-only"):
            put(handle, [pa.record_batch({"name": ["x"]})], table="Genre")
    finally:
        handle.stop()
