"""GraphQL tickets: the engine's answer, as Arrow, with a schema known before it runs."""

from __future__ import annotations

import decimal

import orjson
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from tests.flight.conftest import Served

QUERY = """query ($genre: Int!) {
  tracks(where: {genreId: {eq: $genre}}, orderBy: {trackId: ASC}, limit: 5) {
    trackId name unitPrice
    album { title artist { name } }
  }
}"""


def ticket(query: str, variables: dict[str, object] | None = None) -> bytes:
    return orjson.dumps({"graphql": {"query": query, "variables": variables or {}}})


def test_a_graphql_query_is_answered_as_rows_with_nested_structs(
    served: Served, client: flight.FlightClient
) -> None:
    table = client.do_get(flight.Ticket(ticket(QUERY, {"genre": 2}))).read_all()
    assert table.column_names == ["trackId", "name", "unitPrice", "album"]
    assert table.schema.field("trackId").type == pa.int32()
    assert pa.types.is_decimal(table.schema.field("unitPrice").type)
    album = table.schema.field("album").type
    assert (
        pa.types.is_struct(album) and album.field("artist").type.field("name").type == pa.string()
    )
    text = "SELECT t.track_id, t.name, t.unit_price, a.title FROM track t JOIN album a ON "
    text += "a.album_id = t.album_id WHERE t.genre_id = ? ORDER BY t.track_id LIMIT 5"
    if served.db.dialect != "sqlite":
        text = text.replace("?", "%s")
    expected = served.db.query(text, (2,))
    rows = table.to_pylist()
    assert [(r["trackId"], r["name"], r["album"]["title"]) for r in rows] == [
        (e[0], e[1], e[3]) for e in expected
    ]
    assert [r["unitPrice"] for r in rows] == [decimal.Decimal(str(e[2])) for e in expected]


def test_get_schema_of_a_graphql_ticket_matches_its_stream(client: flight.FlightClient) -> None:
    query = "{ genres(limit: 3) { genreId name tracksAggregate { count } } }"
    schema = client.get_schema(flight.FlightDescriptor.for_command(ticket(query))).schema
    table = client.do_get(flight.Ticket(ticket(query))).read_all()
    assert table.schema.equals(schema)
    assert table.num_rows == 3


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("{ tracks { nope } }", "Cannot query field 'nope'"),
        ("{ tracks(limit: -1) { name } }", "limit"),
        ("mutation { x }", "mutation"),
    ],
)
def test_a_graphql_ticket_the_engine_refuses_gets_its_message(
    client: flight.FlightClient, query: str, says: str
) -> None:
    with pytest.raises(flight.FlightServerError) as caught:
        client.do_get(flight.Ticket(ticket(query))).read_all()
    assert says in str(caught.value)
    assert "Traceback" not in str(caught.value)
