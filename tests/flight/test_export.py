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
    cents = decimal.Decimal("0.01")
    assert sum(table.column("total").to_pylist()) == decimal.Decimal(str(stored_total)).quantize(
        cents
    )
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
    infos = {i.descriptor.path[0].decode(): i for i in client.list_flights() if i.descriptor.path}
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


def test_a_relation_filter_keeps_only_the_rows_whose_related_row_matches(
    served: Served, client: flight.FlightClient
) -> None:
    ticket = {
        "export": {
            "table": "Track",
            "where": {"album": {"title": {"eq": "Facelift"}}},
            "columns": ["trackId"],
        }
    }
    got = sorted(read(client, ticket).column("trackId").to_pylist())
    expected = sql(
        served,
        "SELECT t.track_id FROM track t JOIN album a ON a.album_id = t.album_id"
        " WHERE a.title = ? ORDER BY t.track_id",
        ("Facelift",),
    )
    assert got == [r[0] for r in expected] and len(got) == 12


def test_a_postgresql_stream_sends_a_small_first_batch_then_full_ones(
    served: Served, client: flight.FlightClient
) -> None:
    if served.db.dialect != "postgresql":
        pytest.skip("the batch size hint is ADBC PostgreSQL's")
    reader = client.do_get(flight.Ticket(b"export:Track::trackId,name,composer"))
    batches = [chunk.data for chunk in reader]
    ids = [i for b in batches for i in b.column("trackId").to_pylist()]
    assert ids == [r[0] for r in sql(served, "SELECT track_id FROM track ORDER BY track_id")]
    # The first batch holds the rows of the first few KiB; the driver then reads batches
    # far larger than the stream's 1,000 rows, sliced to that size.
    assert 0 < batches[0].num_rows < 200
    assert [b.num_rows for b in batches[1:-1]] == [1000] * (len(batches) - 2)


def test_a_repeated_ticket_is_planned_once_and_a_refused_one_is_not_kept(
    served: Served, client: flight.FlightClient
) -> None:
    server = served.handle.server
    ticket = b"export:Album:albumId<=3:albumId,title"
    first = read(client, ticket.decode())
    plans = dict(server._plans)
    again = read(client, ticket.decode())
    assert again.equals(first) and again.num_rows == 3
    assert dict(server._plans) == plans  # the same plan objects, none added
    with pytest.raises(flight.FlightServerError, match="no column 'nope'"):
        read(client, "export:Album::nope")
    assert len(server._plans) == len(plans)


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
    if served.db.dialect == "postgresql":
        running = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        # client backends only: autovacuum workers on the freshly loaded tables show as active
        running += "AND state = 'active' AND backend_type = 'client backend' "
        running += "AND pid <> pg_backend_pid()"
        while sql(served, running)[0][0] and time.monotonic() < deadline:
            time.sleep(0.1)
        still = "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
        still += "AND state = 'active' AND backend_type = 'client backend' "
        still += "AND pid <> pg_backend_pid()"
        assert sql(served, still) == []
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


def test_a_stored_value_arrow_cannot_read_fails_the_call_in_one_line(fresh_sqlite: str) -> None:
    import sqlite3

    from quiver.sql.url import parse_database_url
    from tests.flight.conftest import reflect, start

    with sqlite3.connect(parse_database_url(fresh_sqlite).database) as conn:
        conn.execute("CREATE TABLE event (id INTEGER PRIMARY KEY, at TIMESTAMP)")
        conn.execute("INSERT INTO event VALUES (1, 'yesterday'), (2, '2026-01-01 00:00:00')")
    handle = start(fresh_sqlite, reflect(fresh_sqlite))
    try:
        client = flight.FlightClient(handle.location)
        with pytest.raises(flight.FlightServerError) as caught:
            read(client, "export:Event::")
        assert "STORED_VALUE" in str(caught.value)
        assert "column 'at' of table 'event' holds a value that cannot be read as timestamp" in str(
            caught.value
        )
        assert "yesterday" in str(caught.value)
        assert "Traceback" not in str(caught.value)
        assert read(client, "export:Event:id=2:id").num_rows == 1
    finally:
        handle.stop()


def test_actions_are_listed_and_list_tables_describes_every_table(
    served: Served, client: flight.FlightClient
) -> None:
    kinds = {a.type for a in client.list_actions()}
    assert {"list-tables", "cancel", "CreatePreparedStatement"} <= kinds
    (result,) = list(client.do_action(flight.Action("list-tables", b"")))
    tables = {t["name"]: t for t in orjson.loads(result.body.to_pybytes())}
    assert set(tables) == {e.name for e in served.schema.entities}
    genre = {c["name"]: c["type"] for c in tables["Genre"]["columns"]}
    assert genre == {"genreId": "int32", "name": "string"}
    with pytest.raises(flight.FlightServerError, match="unknown action 'drop'"):
        list(client.do_action(flight.Action("drop", b"")))


def test_a_cancel_action_ends_the_running_streams_of_its_ticket(fresh_sqlite: str) -> None:
    import sqlite3

    from quiver.sql.url import parse_database_url
    from tests.flight.conftest import reflect, start

    # 20 MB in batches of 1,000 rows: far more than gRPC buffers, so the stream is still
    # running when the action arrives.
    with sqlite3.connect(parse_database_url(fresh_sqlite).database) as conn:
        conn.execute("CREATE TABLE line (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) "
            "INSERT INTO line SELECT i, printf('%0100d', i) FROM n"
        )
    handle = start(fresh_sqlite, reflect(fresh_sqlite), flight={"batch_rows": 1000})
    try:
        client = flight.FlightClient(handle.location)
        ticket = b"export:Line::"
        reader = client.do_get(flight.Ticket(ticket))
        reader.read_chunk()
        (answer,) = list(client.do_action(flight.Action("cancel", ticket)))
        assert orjson.loads(answer.body.to_pybytes()) == {"cancelled": 1}
        read_rows = 1000
        with pytest.raises(flight.FlightError, match="cancelled"):
            while True:
                read_rows += reader.read_chunk().data.num_rows
        assert read_rows < 200000
        (again,) = list(client.do_action(flight.Action("cancel", ticket)))
        assert orjson.loads(again.body.to_pybytes()) == {"cancelled": 0}
        assert read(client, "export:Line:id<=5:id").num_rows == 5
    finally:
        handle.stop()


def test_a_cancel_action_ends_only_the_streams_of_the_key_that_sends_it(
    fresh_sqlite: str,
) -> None:
    import sqlite3

    from quiver.sql.url import parse_database_url
    from tests.flight.conftest import reflect, start

    with sqlite3.connect(parse_database_url(fresh_sqlite).database) as conn:
        conn.execute("CREATE TABLE line (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) "
            "INSERT INTO line SELECT i, printf('%0100d', i) FROM n"
        )
    keys = {"reader": "reader-key-0123456789abcdef", "other": "other-key-0123456789abcdef"}
    auth = {"api_keys": [{"name": name, "key": key} for name, key in keys.items()]}
    handle = start(fresh_sqlite, reflect(fresh_sqlite), flight={"batch_rows": 1000}, auth=auth)

    def as_key(name: str) -> flight.FlightCallOptions:
        return flight.FlightCallOptions(
            headers=[(b"authorization", f"Bearer {keys[name]}".encode())]
        )

    try:
        client = flight.FlightClient(handle.location)
        ticket = b"export:Line::"
        reader = client.do_get(flight.Ticket(ticket), as_key("reader"))
        read_rows = reader.read_chunk().data.num_rows
        (answer,) = list(client.do_action(flight.Action("cancel", ticket), as_key("other")))
        assert orjson.loads(answer.body.to_pybytes()) == {"cancelled": 0}
        for chunk in reader:
            read_rows += chunk.data.num_rows
        assert read_rows == 200000
        reader = client.do_get(flight.Ticket(ticket), as_key("reader"))
        reader.read_chunk()
        (answer,) = list(client.do_action(flight.Action("cancel", ticket), as_key("reader")))
        assert orjson.loads(answer.body.to_pybytes()) == {"cancelled": 1}
        with pytest.raises(flight.FlightError, match="cancelled"):
            while True:
                reader.read_chunk()
    finally:
        handle.stop()
