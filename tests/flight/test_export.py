"""DoGet of export tickets, GetFlightInfo, GetSchema and ListFlights on every dialect."""

from __future__ import annotations

import decimal
import time
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from tests.flight.conftest import Served


def read(client: flight.FlightClient, ticket: str | dict[str, Any]) -> pa.Table:
    raw = orjson.dumps(ticket) if isinstance(ticket, dict) else ticket.encode()
    return client.do_get(flight.Ticket(raw)).read_all()


def sql(served: Served, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if served.db.dialect != "sqlite":
        text = text.replace("?", "%s")
    return served.db.query(text, params)


def test_a_compact_export_ticket_streams_the_filtered_rows_and_columns(
    served: Served, client: flight.FlightClient
) -> None:
    table = read(client, "export:Track:milliseconds>300000&genreId=1:trackId,name,unitPrice")
    assert table.column_names == ["trackId", "name", "unitPrice"]
    expected = sql(
        served,
        "SELECT track_id, name, unit_price FROM track WHERE milliseconds > ? AND genre_id = ?"
        " ORDER BY track_id",
        (300000, 1),
    )
    got = sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
    assert got == [
        (r[0], r[1], decimal.Decimal(r[2]).quantize(decimal.Decimal("0.01"))) for r in expected
    ]
    assert len(got) > 10


def test_a_json_ticket_takes_the_graphql_where_input(
    served: Served, client: flight.FlightClient
) -> None:
    ticket = {
        "export": {
            "table": "artists",
            "where": {"name": {"startsWith": "The "}, "artistId": {"lt": 200}},
            "columns": ["artistId", "name"],
        }
    }
    table = read(client, ticket)
    expected = sql(
        served,
        "SELECT artist_id, name FROM artist WHERE name LIKE ? AND artist_id < ?",
        ("The %", 200),
    )
    assert sorted(table.column("artistId").to_pylist()) == sorted(r[0] for r in expected)
    assert len(expected) > 3


def test_columns_travel_as_the_arrow_types_of_their_graphql_scalars(
    served: Served, client: flight.FlightClient
) -> None:
    table = read(client, "export:Invoice::invoiceId,invoiceDate,total,billingState")
    schema = table.schema
    assert schema.field("invoiceId").type == pa.int32()
    assert schema.field("invoiceDate").type == pa.timestamp("us", tz="UTC")
    assert pa.types.is_decimal(schema.field("total").type)
    stored_total = sql(served, "SELECT sum(total) FROM invoice")[0][0]
    assert sum(table.column("total").to_pylist()) == decimal.Decimal(str(stored_total))
    assert schema.field("billingState").type == pa.string()
    assert schema.field("billingState").nullable
    assert table.column("billingState").null_count > 0
    first = min(table.column("invoiceDate").to_pylist())
    stored = sql(served, "SELECT min(invoice_date) FROM invoice")[0][0]
    assert first.strftime("%Y-%m-%d %H:%M:%S") == str(stored)[:19]
    assert str(first.tzinfo) == "UTC"


def test_a_filter_on_a_timestamp_compares_as_a_time(
    served: Served, client: flight.FlightClient
) -> None:
    table = read(client, "export:Invoice:invoiceDate>=2011-06-01T00:00:00Z:invoiceId")
    expected = sql(
        served, "SELECT count(*) FROM invoice WHERE invoice_date >= ?", ("2011-06-01 00:00:00",)
    )
    assert table.num_rows == expected[0][0] > 0


def test_every_table_is_listed_with_the_schema_its_stream_has(
    served: Served, client: flight.FlightClient
) -> None:
    infos = {i.descriptor.path[0].decode(): i for i in client.list_flights()}
    assert set(infos) == {e.name for e in served.schema.entities}
    info = infos["Genre"]
    streamed = client.do_get(info.endpoints[0].ticket).read_all()
    assert streamed.schema.equals(info.schema)
    assert streamed.num_rows == sql(served, "SELECT count(*) FROM genre")[0][0]


def test_get_schema_and_flight_info_answer_without_reading_rows(
    client: flight.FlightClient,
) -> None:
    ticket = b"export:Track:genreId=1:trackId,name"
    descriptor = flight.FlightDescriptor.for_command(ticket)
    schema = client.get_schema(descriptor).schema
    assert schema.names == ["trackId", "name"]
    info = client.get_flight_info(descriptor)
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.schema.equals(schema)
    by_path = client.get_schema(flight.FlightDescriptor.for_path("Album")).schema
    assert by_path.names == ["albumId", "title", "artistId"]


def test_a_stream_comes_in_batches_of_the_configured_size(
    served: Served, client: flight.FlightClient
) -> None:
    reader = client.do_get(flight.Ticket(b"export:Track::trackId"))
    sizes = [chunk.data.num_rows for chunk in reader]
    assert sum(sizes) == sql(served, "SELECT count(*) FROM track")[0][0]
    assert max(sizes) <= 1000
    assert len(sizes) >= 4


@pytest.mark.parametrize(
    ("ticket", "says"),
    [
        (b"export:Nope::", "no table or type 'Nope'"),
        (b"export:Track::nope", "Track has no column 'nope'"),
        (b"export:Track:nope=1:", "Track has no column 'nope'"),
        (b"export:Track:milliseconds>abc:", "Int cannot represent"),
        (b"export:Track:milliseconds~3:", "cannot read the condition"),
        (b'{"export": {"table": "Track"', "not valid JSON"),
        (b'{"delete": {"table": "Track"}}', "unknown ticket kind"),
        (b'{"export": {"table": "Track", "sql": "DROP TABLE track"}}', "unknown key 'sql'"),
        (b"DROP TABLE track", "unknown ticket"),
        (b"\xff\xfe", "not UTF-8"),
        (("export:Track::" + ",".join(["name"] * 5000)).encode(), "the most is 1000"),
        (b"x" * 70_000, "the most is 65536"),
    ],
)
def test_a_malformed_or_hostile_ticket_gets_a_clear_error_and_the_server_keeps_serving(
    served: Served, client: flight.FlightClient, ticket: bytes, says: str
) -> None:
    with pytest.raises(flight.FlightServerError) as caught:
        client.do_get(flight.Ticket(ticket)).read_all()
    message = str(caught.value)
    assert says in message
    assert "INVALID_TICKET" in message
    assert "Traceback" not in message
    assert read(client, "export:Genre::name").num_rows > 0


def test_an_injection_attempt_in_a_filter_value_is_only_a_value(
    served: Served, client: flight.FlightClient
) -> None:
    hostile = "x' OR '1'='1"
    table = read(client, f"export:Track:name={hostile}:trackId")
    assert table.num_rows == 0
    quoted = sql(served, "SELECT name FROM track WHERE name LIKE ? ORDER BY track_id", ("%'%",))[0][
        0
    ]
    same = read(client, {"export": {"table": "Track", "where": {"name": {"eq": quoted}}}})
    assert same.column("name").to_pylist()[0] == quoted
    assert sql(served, "SELECT count(*) FROM track")[0][0] > 3000


def test_a_client_that_leaves_mid_stream_frees_its_connection(
    served: Served, client: flight.FlightClient
) -> None:
    pool = served.handle.server.pool
    for _ in range(3):
        reader = client.do_get(flight.Ticket(b"export:PlaylistTrack::"))
        reader.read_chunk()
        reader.cancel()
    deadline = time.monotonic() + 10
    while pool.open_count > pool.size and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pool.open_count <= pool.size
    assert read(client, "export:Genre::").num_rows > 0


def test_pandas_and_polars_read_a_stream(served: Served, client: flight.FlightClient) -> None:
    import polars as pl

    reader = client.do_get(flight.Ticket(b"export:Album::albumId,title"))
    frame = reader.read_pandas()
    assert list(frame.columns) == ["albumId", "title"]
    count = sql(served, "SELECT count(*) FROM album")[0][0]
    assert len(frame) == count
    polars_frame = pl.from_arrow(read(client, "export:Album::albumId,title"))
    assert isinstance(polars_frame, pl.DataFrame)
    assert polars_frame.height == count
    assert polars_frame.schema["albumId"] == pl.Int32
