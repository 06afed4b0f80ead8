"""Prepared Flight SQL statements with ``?`` parameters, bound through adbc-driver-flightsql:
the values go into the export filter (coerced by their columns' scalars), never into SQL."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from tests.flight.conftest import Served, sql


def _ids(cur: Any, column: str) -> list[Any]:
    return sorted(cur.fetch_arrow_table().column(column).to_pylist())


def test_bound_parameters_filter_as_the_database_does(served: Served, conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT trackId FROM Track WHERE genreId = ? AND milliseconds > ? AND name LIKE ?",
            (1, 300000, "A%"),
        )
        got = _ids(cur, "trackId")
    rows = sql(
        served,
        "SELECT track_id, name FROM track WHERE genre_id = ? AND milliseconds > ?",
        (1, 300000),
    )
    # LIKE is case-sensitive on every database (MariaDB's own LIKE is not).
    assert got == sorted(r[0] for r in rows if r[1].startswith("A")) and got


def test_rebinding_the_same_statement_returns_the_new_rows(served: Served, conn: Any) -> None:
    query = "SELECT genreId, name FROM Genre WHERE genreId = ? OR name = ?"
    with conn.cursor() as cur:
        cur.adbc_prepare(query)
        seen = []
        for genre, name in ((1, "Jazz"), (5, "Metal"), (7, "nothing")):
            cur.execute(query, (genre, name))
            seen.append(_ids(cur, "genreId"))
    expected = [
        sorted(
            r[0]
            for r in sql(served, "SELECT genre_id FROM genre WHERE genre_id = ? OR name = ?", p)
        )
        for p in ((1, "Jazz"), (5, "Metal"), (7, "nothing"))
    ]
    assert seen == expected
    assert len(seen[0]) == 2 and len(seen[2]) == 1


def test_every_kind_of_condition_takes_parameters(served: Served, conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT invoiceId FROM Invoice WHERE (total BETWEEN ? AND ? OR billingCountry"
            " IN (?, ?)) AND invoiceDate >= ? AND NOT billingCity LIKE ?",
            (
                decimal.Decimal("10.00"),
                decimal.Decimal("15.86"),
                "Canada",
                "France",
                dt.datetime(2010, 1, 1, tzinfo=dt.UTC),
                "P%",
            ),
        )
        got = _ids(cur, "invoiceId")
    expected = sql(
        served,
        "SELECT invoice_id FROM invoice WHERE (total BETWEEN 10.00 AND 15.86 OR billing_country "
        "IN ('Canada', 'France')) AND invoice_date >= '2010-01-01' AND billing_city NOT LIKE 'P%'",
    )
    assert got == sorted(r[0] for r in expected) and got


@pytest.mark.parametrize(
    "hostile",
    ["Rock' OR '1'='1", "Rock\\' OR 1=1 --", "x'); DROP TABLE genre; --", "%"],
)
def test_a_parameter_is_only_ever_a_value(served: Served, conn: Any, hostile: str) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM Genre WHERE name = ?", (hostile,))
        assert cur.fetch_arrow_table().num_rows == 0
        cur.execute("SELECT name FROM Genre WHERE name = ?", ("Rock",))
        assert cur.fetch_arrow_table().column("name").to_pylist() == ["Rock"]
    assert sql(served, "SELECT count(*) FROM genre")[0][0] == 25


@pytest.mark.parametrize(
    ("statement", "params", "says"),
    [
        ("SELECT name FROM Genre WHERE genreId = ?", ("seven",), "Int cannot represent"),
        ("SELECT name FROM Genre WHERE genreId = ?", (None,), "parameter 1 is NULL"),
        ("SELECT name FROM Genre WHERE genreId = ?", (1, 2), "1 parameter (?) and 2 values"),
        ("SELECT name FROM Genre WHERE genreId = ? AND name = ?", (1,), "2 parameters"),
        ("SELECT name FROM Genre WHERE genreId = :id", (1,), "the parameter :id is not served"),
        ("SELECT name FROM Genre WHERE genreId = ? LIMIT ?", (1, 2), "LIMIT takes a whole"),
    ],
)
def test_a_parameter_that_does_not_fit_is_refused_with_why(
    conn: Any, statement: str, params: tuple[Any, ...], says: str
) -> None:
    import adbc_driver_manager

    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
        cur.execute(statement, params)
        cur.fetch_arrow_table()
    assert says in str(caught.value)
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM Genre WHERE genreId = ?", (1,))
        assert cur.fetch_arrow_table().num_rows == 1


def test_the_statement_schema_and_parameter_schema_are_known_before_binding(
    conn: Any,
) -> None:
    import pyarrow as pa

    with conn.cursor() as cur:
        cur.adbc_prepare("SELECT name, unitPrice FROM Track WHERE trackId = ? AND name LIKE ?")
        params = pa.schema(cur.adbc_statement.get_parameter_schema())
    assert params.types == [pa.int32(), pa.string()]
    assert params.names == ["trackId", "name"]


def test_a_parameter_of_a_statement_that_is_not_prepared_is_refused(
    client: Any,
) -> None:
    import pyarrow.flight as flight

    from quiver.flight.protobuf import encode, pack_any

    query = "SELECT name FROM Genre WHERE genreId = ?"
    command = pack_any(
        "arrow.flight.protocol.sql.CommandStatementQuery", encode([(1, query.encode())])
    )
    descriptor = flight.FlightDescriptor.for_command(command)
    with pytest.raises(flight.FlightServerError, match="1 parameter and no values are bound"):
        client.get_flight_info(descriptor)
    assert client.get_schema(descriptor).schema.names == ["name"]


@pytest.mark.parametrize(
    "handle",
    [
        {"export": {"table": "Genre", "where": {"genreId": {"eq": {"$parameter": 3}}}}},
        {"export": {"table": "Genre", "where": {"genreId": {"eq": {"$parameter": "x"}}}}},
        {
            "prepared": {
                "ticket": {
                    "export": {"table": "Genre", "where": {"genreId": {"eq": {"$parameter": 0}}}}
                },
                "values": [1, 2],
            }
        },
        {"prepared": {"ticket": "Genre", "values": []}},
    ],
)
def test_a_handle_the_server_did_not_make_is_refused(client: Any, handle: Any) -> None:
    import orjson
    import pyarrow.flight as flight

    from quiver.flight.protobuf import encode, pack_any

    command = pack_any(
        "arrow.flight.protocol.sql.CommandPreparedStatementQuery",
        encode([(1, orjson.dumps(handle))]),
    )
    with pytest.raises(flight.FlightServerError, match="handle cannot be read"):
        client.get_flight_info(flight.FlightDescriptor.for_command(command))
