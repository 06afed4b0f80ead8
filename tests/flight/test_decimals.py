"""NUMERIC precision and scale reach Flight schemas, and values keep every digit."""

from __future__ import annotations

import decimal
from collections.abc import Iterator

import orjson
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from quiver.flight.server import FlightHandle
from quiver.sql.url import parse_database_url
from tests.flight.conftest import reflect, start

D = decimal.Decimal


def _pg(url: str, *statements: str) -> None:
    import psycopg

    db = parse_database_url(url)
    with psycopg.connect(
        host=db.host,
        port=db.port,
        user=db.user or None,
        password=db.password or None,
        dbname=db.database,
        autocommit=True,
    ) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def ledger(fresh_postgresql: str) -> Iterator[tuple[FlightHandle, str]]:
    _pg(
        fresh_postgresql,
        "CREATE DOMAIN money2 AS NUMERIC(9, 2)",
        "CREATE TABLE ledger (id INTEGER PRIMARY KEY, amount NUMERIC(12, 2) NOT NULL,"
        " rate NUMERIC(20, 12), wide NUMERIC(60, 20), huge NUMERIC(100, 0), loose NUMERIC,"
        " fee money2, whole NUMERIC(3, -2), parts NUMERIC(12, 2)[])",
        "INSERT INTO ledger VALUES (1, 1234567890.12, 12345678.123456789012,"
        " 1234567890123456789012345678901234567890.12345678901234567890,"
        " 1" + "0" * 99 + ", 3.25, 12.34, 12300, '{1.50, 2.25}'),"
        " (2, -0.01, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    schema = reflect(fresh_postgresql)
    entity = next(e for e in schema.entities if e.source == "ledger")
    handle = start(fresh_postgresql, schema)
    try:
        yield handle, entity.name
    finally:
        handle.stop()


def test_numeric_typmods_become_decimal_types_with_exact_values(
    ledger: tuple[FlightHandle, str],
) -> None:
    handle, name = ledger
    with flight.FlightClient(handle.location) as client:
        schema = client.get_schema(flight.FlightDescriptor.for_path(name)).schema
        types = {f.name: f.type for f in schema}
        assert types["amount"] == pa.decimal128(12, 2)
        assert types["rate"] == pa.decimal128(20, 12)
        assert types["wide"] == pa.decimal256(60, 20)
        assert types["huge"] == pa.string()  # past 76 digits: the exact text
        assert types["loose"] == pa.decimal128(38, 10)  # no typmod: the documented default
        assert types["fee"] == pa.decimal128(9, 2)  # from the domain
        assert types["whole"] == pa.decimal128(5, 0)  # negative scale: whole numbers
        assert types["parts"] == pa.list_(pa.decimal128(12, 2))
        table = client.do_get(flight.Ticket(orjson.dumps({"export": {"table": name}})))
        rows = sorted(table.read_all().to_pylist(), key=lambda r: r["id"])
    assert rows[0]["amount"] == D("1234567890.12")
    assert rows[0]["rate"] == D("12345678.123456789012")
    assert rows[0]["wide"] == D("1234567890123456789012345678901234567890.12345678901234567890")
    assert rows[0]["huge"] == "1" + "0" * 99
    assert rows[0]["loose"] == D("3.25")
    assert rows[0]["fee"] == D("12.34")
    assert rows[0]["whole"] == D("12300")
    assert rows[0]["parts"] == [D("1.50"), D("2.25")]
    assert rows[1]["amount"] == D("-0.01") and rows[1]["rate"] is None


def test_graphql_tickets_keep_the_column_precision(ledger: tuple[FlightHandle, str]) -> None:
    handle, name = ledger
    with flight.FlightClient(handle.location) as client:
        info = client.list_flights()
        paths = [i.descriptor.path[0].decode() for i in info if i.descriptor.path]
        assert name in paths
        field = name[0].lower() + name[1:]
        query = "{ " + field + "s { id amount rate } }"
        ticket = orjson.dumps({"graphql": {"query": query}})
        try:
            table = client.do_get(flight.Ticket(ticket)).read_all()
        except flight.FlightServerError as exc:
            pytest.fail(f"the query {query} failed: {exc}")
    assert table.schema.field("amount").type == pa.decimal128(12, 2)
    assert table.schema.field("rate").type == pa.decimal128(20, 12)
    got = {r["id"]: r for r in table.to_pylist()}
    assert got[1]["rate"] == D("12345678.123456789012")


def test_a_value_past_the_default_scale_is_an_error_not_a_rounding(
    ledger: tuple[FlightHandle, str], fresh_postgresql: str
) -> None:
    handle, name = ledger
    _pg(fresh_postgresql, "UPDATE ledger SET loose = 1.12345678901234 WHERE id = 2")
    with flight.FlightClient(handle.location) as client, pytest.raises(flight.FlightError) as err:
        client.do_get(flight.Ticket(f"export:{name}:id=2:loose".encode())).read_all()
    assert "loose" in str(err.value) and "decimal128(38, 10)" in str(err.value)


def test_many_rows_of_small_decimals_keep_signs_nulls_and_digits(fresh_postgresql: str) -> None:
    _pg(
        fresh_postgresql,
        "CREATE TABLE price (id INTEGER PRIMARY KEY, cents NUMERIC(18, 2),"
        " micro NUMERIC(18, 18), big NUMERIC(18, 0))",
        "INSERT INTO price SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE g * 0.37 - 900 END,"
        " CASE WHEN g % 5 = 0 THEN NULL ELSE -0.000000000000000001 * g END,"
        " 999999999999999999 - g FROM generate_series(1, 20000) g",
    )
    schema = reflect(fresh_postgresql)
    name = next(e.name for e in schema.entities if e.source == "price")
    handle = start(fresh_postgresql, schema, flight={"batch_rows": 3000})
    try:
        with flight.FlightClient(handle.location) as client:
            table = client.do_get(flight.Ticket(f"export:{name}:id>3:".encode())).read_all()
    finally:
        handle.stop()
    assert table.schema.field("micro").type == pa.decimal128(18, 18)
    rows = {r["id"]: r for r in table.to_pylist()}
    assert len(rows) == 19997
    for g in (4, 7, 10, 2431, 19999, 20000):
        r = rows[g]
        assert r["cents"] == (None if g % 7 == 0 else D(g) * D("0.37") - 900)
        assert r["micro"] == (None if g % 5 == 0 else D("-0.000000000000000001") * g)
        assert r["big"] == D(999999999999999999 - g)


@pytest.fixture
def sqlite_prices(fresh_sqlite: str) -> Iterator[FlightHandle]:
    import sqlite3

    with sqlite3.connect(parse_database_url(fresh_sqlite).database) as conn:
        conn.executescript(
            "CREATE TABLE price (id INTEGER PRIMARY KEY, amount NUMERIC(10, 2),"
            " loose DECIMAL, wide NUMERIC(60, 2), due DATE, at TIME, raw BLOB,"
            " whole NUMERIC(10, 2));"
            " INSERT INTO price (id, whole) VALUES (1, 5), (2, NULL), (3, 12345678);"
        )
    handle = start(fresh_sqlite, reflect(fresh_sqlite))
    try:
        yield handle
    finally:
        handle.stop()


def test_sqlite_columns_holding_only_nulls_export_as_nulls_of_their_type(
    sqlite_prices: FlightHandle,
) -> None:
    with flight.FlightClient(sqlite_prices.location) as client:
        table = client.do_get(flight.Ticket(b"export:Price::")).read_all()
        query = orjson.dumps({"graphql": {"query": "{ prices { id amount loose wide } }"}})
        answered = client.do_get(flight.Ticket(query)).read_all()
    types = {f.name: f.type for f in table.schema}
    assert types["amount"] == pa.decimal128(10, 2)
    assert types["loose"] == pa.decimal128(38, 10)
    assert types["wide"] == pa.decimal256(60, 2)
    assert types["due"] == pa.date32() and types["raw"] == pa.binary()
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    for name in ("amount", "loose", "wide", "due", "at", "raw"):
        assert [r[name] for r in rows] == [None, None, None], name
    assert answered.schema.field("amount").type == pa.decimal128(10, 2)
    assert answered.column("amount").null_count == 3


def test_sqlite_whole_numbers_of_a_numeric_column_export_with_its_scale(
    sqlite_prices: FlightHandle,
) -> None:
    """SQLite keeps 5.00 in a NUMERIC(10, 2) column as the integer 5."""
    with flight.FlightClient(sqlite_prices.location) as client:
        table = client.do_get(flight.Ticket(b"export:Price::id,whole")).read_all()
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert [r["whole"] for r in rows] == [D("5.00"), None, D("12345678.00")]
    assert table.schema.field("whole").type == pa.decimal128(10, 2)


def test_sqlite_columns_whose_first_thousands_of_rows_are_null_export_every_value(
    fresh_sqlite: str,
) -> None:
    """ADBC's SQLite driver types a column by its first batch; NULLs there must not decide."""
    import sqlite3

    rows = [
        (i, None, None, None, None, None)
        if i <= 3000
        else (i, -30239439.5336 if i % 2 else 7, 2.5 if i % 2 else 3, "t", "2020-01-02", b"\x01")
        for i in range(1, 3201)
    ]
    with sqlite3.connect(parse_database_url(fresh_sqlite).database) as conn:
        conn.execute(
            "CREATE TABLE late (id INTEGER PRIMARY KEY, amount NUMERIC(14, 4), ratio REAL,"
            " label TEXT, due DATE, raw BLOB)"
        )
        conn.executemany("INSERT INTO late VALUES (?, ?, ?, ?, ?, ?)", rows)
    handle = start(fresh_sqlite, reflect(fresh_sqlite), flight={"batch_rows": 1000})
    try:
        with flight.FlightClient(handle.location) as client:
            table = client.do_get(flight.Ticket(b"export:Late::")).read_all()
            empty = client.do_get(flight.Ticket(b"export:Late:id>5000:")).read_all()
    finally:
        handle.stop()
    got = {r["id"]: r for r in table.to_pylist()}
    assert len(got) == 3200 and empty.num_rows == 0
    assert got[3000] == {
        "id": 3000,
        "amount": None,
        "ratio": None,
        "label": None,
        "due": None,
        "raw": None,
    }
    assert got[3001]["amount"] == D("-30239439.5336") and got[3002]["amount"] == D("7.0000")
    assert got[3001]["ratio"] == 2.5 and got[3002]["ratio"] == 3.0
    assert got[3001]["label"] == "t" and got[3001]["raw"] == b"\x01"
    assert str(got[3001]["due"]) == "2020-01-02"
