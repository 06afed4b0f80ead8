"""Partitioned exports: GetFlightInfo answers endpoints of disjoint key ranges whose rows
together are exactly the export's, read in parallel by the client."""

from __future__ import annotations

import collections
import warnings
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from pydantic import ValidationError

from quiver.config.settings import QuiverSettings
from quiver.flight.client import connect
from quiver.flight.partitions import split_points
from quiver.flight.tickets import ExportTicket, TicketError, parse_ticket
from tests.conftest import DIALECTS, ChinookDb
from tests.flight.conftest import Served, serving, start


def info(client: flight.FlightClient, ticket: str | dict[str, Any]) -> flight.FlightInfo:
    raw = orjson.dumps(ticket) if isinstance(ticket, dict) else ticket.encode()
    return client.get_flight_info(flight.FlightDescriptor.for_command(raw))


def read(client: flight.FlightClient, ticket: str | dict[str, Any]) -> pa.Table:
    raw = orjson.dumps(ticket) if isinstance(ticket, dict) else ticket.encode()
    return client.do_get(flight.Ticket(raw)).read_all()


def rows(table: pa.Table) -> collections.Counter[tuple[Any, ...]]:
    return collections.Counter(zip(*(c.to_pylist() for c in table.columns), strict=True))


def endpoint_tables(client: flight.FlightClient, fi: flight.FlightInfo) -> list[pa.Table]:
    return [client.do_get(e.ticket).read_all() for e in fi.endpoints]


# ----- tickets ------------------------------------------------------------------------------


def test_the_json_and_compact_forms_ask_for_partitions() -> None:
    json_ticket = parse_ticket(b'{"export": {"table": "Track", "partitions": 4}}')
    assert json_ticket == ExportTicket("Track", partitions=4)
    by = parse_ticket(b'{"export": {"table": "Track", "partitions": 2, "partitionBy": "albumId"}}')
    assert isinstance(by, ExportTicket) and by.partition_by == "albumId"
    compact = parse_ticket(b"export:Track:genreId=1:trackId,name:partitions=4")
    assert isinstance(compact, ExportTicket)
    assert (compact.partitions, compact.where, compact.columns) == (
        4,
        {"genreId": {"eq": "1"}},
        ("trackId", "name"),
    )
    assert parse_ticket(b"export:Track:partitions=3@albumId") == ExportTicket(
        "Track", text_values=True, partitions=3, partition_by="albumId"
    )
    timed = parse_ticket(b"export:Invoice:invoiceDate>=2011-06-01T00:00:00Z::partitions=2")
    assert isinstance(timed, ExportTicket)
    assert timed.where == {"invoiceDate": {"gte": "2011-06-01T00:00:00Z"}}
    assert timed.partitions == 2
    bare = parse_ticket(b"export:Reading:::partitions=4@bucket")
    assert bare == ExportTicket("Reading", text_values=True, partitions=4, partition_by="bucket")
    assert parse_ticket(json_ticket.to_json()) == json_ticket
    assert parse_ticket(by.to_json()) == by


@pytest.mark.parametrize(
    "raw",
    [
        b'{"export": {"table": "Track", "partitions": 0}}',
        b'{"export": {"table": "Track", "partitions": "4"}}',
        b'{"export": {"table": "Track", "partitions": true}}',
        b'{"export": {"table": "Track", "partitions": 5000}}',
        b'{"export": {"table": "Track", "partitions": 2, "partitionBy": 3}}',
        b"export:Track::partitions=four",
        b"export:Track::partitions=0",
        b"export:Track::partitions=2@",
        b"export:Track::partitions=" + b"9" * 5000,
        b"export:Track::partitions=" + b" " * 60_000 + b"x",
    ],
    ids=lambda raw: raw[:48].decode(),
)
def test_a_bad_partitions_option_is_refused_with_its_fix(raw: bytes) -> None:
    with pytest.raises(TicketError) as caught:
        parse_ticket(raw)
    detail = caught.value.details[0]
    assert "partition" in (detail.message + detail.where).lower()
    assert detail.fix


def test_split_points_follow_the_histogram_so_partitions_hold_as_many_rows() -> None:
    assert split_points(1, 100, 4) == [26, 51, 76]
    assert split_points(5, 5, 4) == []
    assert split_points(1, 3, 8) == [2, 3]
    # 90% of the rows below 1,000 and the rest spread up to 1,000,000: a histogram's bounds
    # put three of the four ranges below 1,000.
    bounds = [*range(1, 1000, 11), *range(10_000, 1_000_001, 100_000)]
    points = split_points(1, 1_000_000, 4, bounds)
    assert len(points) == 3 and points[-1] < 1000


def test_a_default_above_the_maximum_is_refused() -> None:
    with pytest.raises(ValidationError, match="max_partitions"):
        QuiverSettings.model_validate(
            {
                "database": {"url": "sqlite:///x.db"},
                "flight": {"partitions": 8, "max_partitions": 4},
            }
        )


def test_max_connections_below_the_pool_size_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"max_connections \(2\) must be at least pool_size"):
        QuiverSettings.model_validate(
            {
                "database": {"url": "sqlite:///x.db"},
                "flight": {"pool_size": 4, "max_connections": 2},
            }
        )


# ----- Chinook, every dialect ---------------------------------------------------------------


@pytest.mark.parametrize(
    "ticket",
    [
        {"export": {"table": "Track", "partitions": 4}},
        {
            "export": {
                "table": "Track",
                "where": {"or": [{"genreId": {"in": [1, 3]}}, {"milliseconds": {"gt": 400000}}]},
                "columns": ["trackId", "name", "unitPrice", "albumId"],
                "partitions": 3,
            }
        },
        "export:InvoiceLine:unitPrice>=0.99&quantity=1:invoiceLineId,invoiceId:partitions=5",
    ],
)
def test_the_endpoints_together_hold_every_row_of_the_export_once(
    served: Served, client: flight.FlightClient, ticket: str | dict[str, Any]
) -> None:
    fi = info(client, ticket)
    whole = read(client, ticket)
    parts = endpoint_tables(client, fi)
    assert len(parts) == len(fi.endpoints) > 1
    assert all(part.num_rows > 0 for part in parts)
    assert all(part.schema == fi.schema for part in parts)
    union = rows(pa.concat_tables(parts))
    assert union == rows(whole) and max(union.values()) == 1
    assert sum(p.num_rows for p in parts) == whole.num_rows > 100


def test_the_partition_tickets_are_export_tickets_with_a_key_range_in_their_filter(
    client: flight.FlightClient,
) -> None:
    fi = info(
        client, {"export": {"table": "Track", "where": {"genreId": {"eq": 1}}, "partitions": 2}}
    )
    first, second = (orjson.loads(e.ticket.ticket)["export"] for e in fi.endpoints)
    assert "partitions" not in first
    assert first["where"]["and"][0] == {"genreId": {"eq": 1}}
    (bound,) = second["where"]["and"][1]["trackId"].values()
    assert first["where"]["and"][1] == {"trackId": {"lt": bound}}


@pytest.mark.parametrize(
    "ticket",
    [
        {"export": {"table": "Track"}},  # the server's default: one stream
        {"export": {"table": "Track", "partitions": 1}},
        {"export": {"table": "Track", "partitions": 4, "limit": 100}},  # a limit is global
        {"export": {"table": "PlaylistTrack", "partitions": 4}},  # no single integer key
        {"export": {"table": "Track", "where": {"trackId": {"eq": 7}}, "partitions": 4}},
        {"export": {"table": "Track", "where": {"trackId": {"lt": 0}}, "partitions": 4}},
    ],
)
def test_exports_that_cannot_be_split_have_one_endpoint(
    client: flight.FlightClient, ticket: dict[str, Any]
) -> None:
    fi = info(client, ticket)
    (endpoint,) = fi.endpoints
    expected = dict(ticket["export"])
    expected.pop("partitions", None)
    assert orjson.loads(endpoint.ticket.ticket) == {"export": expected}


def test_partitioning_by_a_field_that_is_not_an_integer_is_refused(
    client: flight.FlightClient,
) -> None:
    with pytest.raises(flight.FlightServerError, match=r"INVALID_TICKET.*no integer field 'name'"):
        info(client, {"export": {"table": "Track", "partitions": 2, "partitionBy": "name"}})


def test_rows_written_outside_the_range_after_get_flight_info_are_read_once(
    served: Served, client: flight.FlightClient
) -> None:
    """The first and last ranges are open: a key below the least or above the greatest
    seen by GetFlightInfo still falls in exactly one partition."""
    fi = info(client, {"export": {"table": "Genre", "columns": ["genreId"], "partitions": 3}})
    assert len(fi.endpoints) == 3
    placeholder = "?" if served.db.dialect == "sqlite" else "%s"
    insert = f"INSERT INTO genre (genre_id, name) VALUES ({placeholder}, {placeholder})"
    served.db.query(insert, (-5, "below"))
    served.db.query(insert, (100_000, "above"))
    try:
        got = rows(pa.concat_tables(endpoint_tables(client, fi)))
        expected = {r[0] for r in served.db.query("SELECT genre_id FROM genre")}
        assert got == collections.Counter((g,) for g in expected)
    finally:
        served.db.query("DELETE FROM genre WHERE genre_id IN (-5, 100000)")


def test_the_server_setting_gives_the_default_and_the_maximum(served: Served) -> None:
    handle = start(served.db.url, served.schema, flight={"partitions": 3, "max_partitions": 4})
    try:
        c = flight.FlightClient(handle.location)
        assert len(info(c, {"export": {"table": "Track"}}).endpoints) == 3
        assert len(info(c, {"export": {"table": "Track", "partitions": 10}}).endpoints) == 4
        assert len(info(c, {"export": {"table": "Track", "partitions": 1}}).endpoints) == 1
        by_path = c.get_flight_info(flight.FlightDescriptor.for_path("Track"))
        assert len(by_path.endpoints) == 3
        listed = [i for i in c.list_flights() if i.descriptor.path == [b"Track"]]
        assert len(listed) == 1 and len(listed[0].endpoints) == 1
        graphql = info(c, {"graphql": {"query": "{ tracks { trackId } }"}})
        assert len(graphql.endpoints) == 1
        c.close()
    finally:
        handle.stop()


def test_flight_sql_statements_are_split_by_the_server_default_and_adbc_reads_them_all(
    served: Served,
) -> None:
    import adbc_driver_flightsql.dbapi as flightsql

    handle = start(served.db.url, served.schema, flight={"partitions": 3})
    try:
        location = handle.location.replace("grpc+tcp://", "grpc://")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Cannot disable autocommit": read-only anyway
            conn = flightsql.connect(location)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT trackId, name FROM Track WHERE genreId <> 1")
                table = cur.fetch_arrow_table()
            with conn.cursor() as cur:
                cur.execute("SELECT trackId FROM Track LIMIT 10")
                limited = cur.fetch_arrow_table()
            with conn.cursor() as cur:
                partitions, _ = cur.adbc_execute_partitions("SELECT trackId, name FROM Track")
                split = []
                for partition in partitions:
                    cur.adbc_read_partition(partition)
                    split.append(cur.fetch_arrow_table())
        finally:
            conn.close()
        expected = served.db.query("SELECT track_id, name FROM track WHERE genre_id <> 1")
        assert rows(table) == collections.Counter(expected)
        assert limited.num_rows == 10
        assert len(split) == 3
        assert rows(pa.concat_tables(split)) == collections.Counter(
            served.db.query("SELECT track_id, name FROM track")
        )
    finally:
        handle.stop()


def test_connect_reads_every_endpoint_in_parallel_into_one_table(served: Served) -> None:
    with connect(served.location) as client:
        ticket = {"export": {"table": "InvoiceLine", "partitions": 4}}
        fi = client.info(ticket)
        assert len(fi.endpoints) == 4
        table = client.read_parallel(ticket)
        assert rows(table) == rows(client.read(ticket))
        assert table.schema == fi.schema
        split = client.export("Track", columns=["trackId", "name"], partitions=3)
        assert rows(split) == rows(client.export("Track", columns=["trackId", "name"]))
        assert client.read_parallel("export:Genre:genreId<0::partitions=3").num_rows == 0


def test_a_failing_endpoint_fails_the_parallel_read_with_its_error(served: Served) -> None:
    with connect(served.location) as client:
        fi = client.info({"export": {"table": "Track", "partitions": 2}})
        bad = flight.FlightEndpoint(b'{"export": {"table": "NoSuchTable"}}', [])
        broken = flight.FlightInfo(fi.schema, fi.descriptor, [*fi.endpoints, bad], -1, -1)
        with pytest.raises(flight.FlightServerError, match="NoSuchTable"):
            client.read_info(broken)
        assert client.read_info(fi).num_rows == client.read("export:Track::").num_rows


# ----- a nullable key, every dialect ----------------------------------------------------------


@pytest.fixture(params=DIALECTS)
def readings(request: pytest.FixtureRequest) -> Iterator[Served]:
    """A table whose ``bucket`` (integer, nullable) holds nulls, served over Flight."""
    dialect = request.param
    url = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    db.query(
        "CREATE TABLE reading (id integer PRIMARY KEY, bucket integer NULL, label varchar(20))"
    )
    values = ", ".join(
        f"({i}, {'NULL' if i % 5 == 0 else (i * 37) % 1000 - 300}, 'r{i}')" for i in range(1, 601)
    )
    db.query(f"INSERT INTO reading (id, bucket, label) VALUES {values}")
    try:
        with serving(db) as running:
            yield running
    finally:
        db.close()


def test_rows_with_a_null_key_are_in_exactly_one_partition(readings: Served) -> None:
    c = readings.client()
    try:
        ticket = {"export": {"table": "Reading", "partitions": 4, "partitionBy": "bucket"}}
        fi = info(c, ticket)
        assert len(fi.endpoints) == 4
        parts = endpoint_tables(c, fi)
        nulls = [p.column("bucket").null_count for p in parts]
        assert nulls == [120, 0, 0, 0]
        union = rows(pa.concat_tables(parts))
        assert union == rows(read(c, ticket)) and max(union.values()) == 1
        assert sum(union.values()) == 600
        by_key = info(c, "export:Reading:label!=r7::partitions=4")
        assert sum(p.num_rows for p in endpoint_tables(c, by_key)) == 599
    finally:
        c.close()


# ----- PostgreSQL's statistics ----------------------------------------------------------------


@pytest.fixture
def skewed(fresh_postgresql: str) -> Iterator[Served]:
    db = ChinookDb("postgresql", fresh_postgresql)
    db.query("CREATE TABLE skewed (id bigint PRIMARY KEY, note text)")
    # 9,000 keys from 1 to 9,000 and 1,000 spread up to 10,000,000.
    db.query(
        "INSERT INTO skewed SELECT g, 'n' || g FROM generate_series(1, 9000) g"
        " UNION ALL SELECT 9000 + g * 10000, 'far' FROM generate_series(1, 1000) g"
    )
    db.query("ANALYZE skewed")
    try:
        with serving(db) as running:
            yield running
    finally:
        db.close()


def test_postgresql_histogram_bounds_balance_the_partitions(skewed: Served) -> None:
    c = skewed.client()
    try:
        fi = info(c, {"export": {"table": "Skewed", "partitions": 4}})
        sizes = [p.num_rows for p in endpoint_tables(c, fi)]
        assert sum(sizes) == 10_000
        # Equal widths would put 9,000+ rows in the first partition.
        assert len(sizes) == 4 and max(sizes) < 3_500, sizes
    finally:
        c.close()


def test_a_role_reads_only_its_rows_across_the_partitions(readings: Served) -> None:
    key = "partition-reader-key-0001"
    auth = {
        "api_keys": [{"name": "reader", "key": key, "role": "low"}],
        "permissions": {"low": {"Reading": {"select": {"filter": {"bucket": {"lt": 0}}}}}},
    }
    handle = start(readings.db.url, readings.schema, auth=auth)
    try:
        with connect(handle.location, api_key=key) as client:
            ticket = {"export": {"table": "Reading", "columns": ["id", "bucket"], "partitions": 4}}
            fi = client.info(ticket)
            assert len(fi.endpoints) == 4
            got = rows(client.read_info(fi))
        expected = readings.db.query("SELECT id, bucket FROM reading WHERE bucket < 0")
        assert got == collections.Counter(expected) and len(expected) > 50
    finally:
        handle.stop()


def test_get_schema_of_a_statement_answers_from_the_catalog_without_reading_the_table(
    readings: Served,
) -> None:
    from quiver.flight.protobuf import encode, pack_any

    handle = start(readings.db.url, readings.schema, flight={"partitions": 3})
    query = "SELECT id, label FROM reading WHERE bucket > 0"
    command = pack_any(
        "arrow.flight.protocol.sql.CommandStatementQuery", encode([(1, query.encode())])
    )
    descriptor = flight.FlightDescriptor.for_command(command)
    # Splitting reads the key's bounds from the table: with the table gone from the database,
    # GetFlightInfo fails, while GetSchema needs nothing but the catalog.
    readings.db.query("ALTER TABLE reading RENAME TO reading_elsewhere")
    try:
        c = flight.FlightClient(handle.location)
        assert c.get_schema(descriptor).schema.names == ["id", "label"]
        with pytest.raises(flight.FlightError):
            c.get_flight_info(descriptor)
        c.close()
    finally:
        readings.db.query("ALTER TABLE reading_elsewhere RENAME TO reading")
        handle.stop()
