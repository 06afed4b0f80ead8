"""GraphQL tickets: the engine's answer, as Arrow, with a schema known before it runs."""

from __future__ import annotations

import decimal
from collections.abc import Callable

import orjson
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from quiver.flight.tickets import GraphQLTicket
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
        ("mutation { x }", "Cannot query field 'x' on type 'Mutation'"),
        ("mutation { __typename }", "a Flight ticket runs a query, not a mutation"),
    ],
)
def test_a_graphql_ticket_the_engine_refuses_gets_its_message(
    client: flight.FlightClient, query: str, says: str
) -> None:
    with pytest.raises(flight.FlightServerError) as caught:
        client.do_get(flight.Ticket(ticket(query))).read_all()
    assert says in str(caught.value)
    assert "Traceback" not in str(caught.value)


def test_every_scalar_reads_the_same_as_a_graphql_ticket_and_as_an_export(
    served: Served, client: flight.FlightClient
) -> None:
    entity = next(e for e in served.schema.entities if e.name == "ScalarSample")
    names = [f.name for f in entity.fields]
    query = "{ scalarSamples(orderBy: {id: ASC}) { " + " ".join(names) + " } }"
    via_graphql = client.do_get(flight.Ticket(ticket(query))).read_all()
    exported = client.do_get(flight.Ticket(b"export:ScalarSample::")).read_all()
    exported = exported.sort_by("id")
    assert via_graphql.column_names == exported.column_names == names
    assert via_graphql.num_rows == exported.num_rows > 0
    json_fields = {f.name for f in entity.fields if f.scalar.value == "JSON"}
    for name in names:
        left = via_graphql.column(name).to_pylist()
        right = exported.column(name).to_pylist()
        if name in json_fields:
            left = [orjson.loads(v) if v is not None else None for v in left]
            right = [orjson.loads(v) if v is not None else None for v in right]
        assert left == right, name


def test_a_query_run_once_runs_again_from_its_hash(client: flight.FlightClient) -> None:
    import hashlib

    query = "{ mediaTypes(orderBy: {mediaTypeId: ASC}) { mediaTypeId name } }"
    digest = hashlib.sha256(query.encode()).hexdigest()
    first = client.do_get(flight.Ticket(ticket(query))).read_all()
    again = client.do_get(flight.Ticket(f"graphql:{digest}".encode())).read_all()
    assert again.equals(first) and again.num_rows == 5
    listed = {i.descriptor.command: i for i in client.list_flights() if i.descriptor.command}
    info = listed[f"graphql:{digest}".encode()]
    assert info.schema.equals(first.schema)
    assert client.do_get(info.endpoints[0].ticket).read_all().equals(first)
    unknown = "0" * 64
    with pytest.raises(flight.FlightServerError, match=f"no query with the hash {unknown}"):
        client.do_get(flight.Ticket(f"graphql:{unknown}".encode())).read_all()
    with pytest.raises(flight.FlightServerError, match="hex SHA-256"):
        client.do_get(flight.Ticket(b"graphql:abc")).read_all()
    wrong = orjson.dumps({"graphql": {"query": query, "sha256Hash": unknown}})
    with pytest.raises(flight.FlightServerError, match="is not the SHA-256 of the query"):
        client.do_get(flight.Ticket(wrong)).read_all()


COLUMNAR = [
    ("{ tracks { trackId name composer milliseconds unitPrice } }", {}),
    (
        "query ($genre: Int!) { tracks(where: {genreId: {eq: $genre}, milliseconds: {gt: 300000}})"
        " { trackId name unitPrice } }",
        {"genre": 2},
    ),
    ('{ invoices(where: {total: {gte: "10"}}) { invoiceId invoiceDate total billingCity } }', {}),
    ('{ customers(where: {country: {eq: "Nowhere"}}) { customerId email } }', {}),
]


@pytest.mark.parametrize(("query", "variables"), COLUMNAR)
def test_a_list_of_plain_columns_is_read_as_columns_and_matches_the_engine(
    served: Served, client: flight.FlightClient, query: str, variables: dict[str, object]
) -> None:
    server = served.handle.server
    assert server._graphql is not None
    table = client.do_get(flight.Ticket(ticket(query, variables))).read_all()
    # Read as columns (its plan is kept), not through the database's JSON ...
    kept = {text for _view, text in server._plans}
    assert b"graphql " + GraphQLTicket(query, variables).to_json() in kept
    # ... with the engine's schema, rows and order (the list's: by primary key).
    answer = server._graphql.reader(GraphQLTicket(query, variables)).read_all()
    assert table.schema.equals(answer.schema)
    assert table.equals(answer)
    schema = client.get_schema(flight.FlightDescriptor.for_command(ticket(query, variables)))
    assert schema.schema.equals(table.schema)


@pytest.mark.parametrize(
    "query",
    [
        "{ tracks(limit: 3) { trackId name } }",
        "{ tracks(orderBy: {name: DESC}) { trackId } }",
        "{ tracks { id: trackId } }",
        "{ tracks { trackId album { title } } }",
        "{ tracks { trackId __typename } }",
        "{ tracks { ...f } } fragment f on Track { trackId }",
        "{ genres { genreId } tracks { trackId } }",
        '{ tracks(where: {album: {title: {eq: "Facelift"}}}) { trackId } }',
    ],
)
def test_anything_more_than_plain_columns_is_answered_by_the_engine(
    served: Served, client: flight.FlightClient, query: str
) -> None:
    server = served.handle.server
    table = client.do_get(flight.Ticket(ticket(query))).read_all()
    assert table.num_rows > 0
    assert b"graphql " + GraphQLTicket(query).to_json() not in {t for _v, t in server._plans}


@pytest.mark.parametrize(
    ("query", "asked"),
    [
        ("{ __schema { types { name } } }", "__schema"),
        ('{ __type(name: "Track") { name fields { name } } }', "__type"),
        ("{ __typename }", "__typename"),
        ("{ schema: __schema { queryType { name } } }", "__schema"),
        ("{ __typename tracks(limit: 1) { trackId } }", "__typename"),
        ("{ tracks(limit: 1) { trackId } __typename }", "__typename"),
        ('{ ...root } fragment root on Query { __type(name: "Genre") { name } }', "__type"),
    ],
)
def test_an_introspection_ticket_is_refused_as_invalid_and_the_server_goes_on(
    client: flight.FlightClient, query: str, asked: str
) -> None:
    descriptor = flight.FlightDescriptor.for_command(ticket(query))
    call: Callable[[], object]
    for call in (
        lambda: client.do_get(flight.Ticket(ticket(query))).read_all(),
        lambda: client.get_flight_info(descriptor),
    ):
        with pytest.raises(flight.FlightServerError) as caught:
            call()
        said = str(caught.value)
        assert said.startswith("INVALID_TICKET: ")
        assert f"the query asks for {asked} at its root" in said
        assert "/graphql" in said and "INTERNAL" not in said
    # Nothing of it is remembered, and the server goes on serving.
    listed = [i.descriptor.command for i in client.list_flights() if i.descriptor.command]
    assert not any(b"__" in c for c in listed)
    genres = client.do_get(flight.Ticket(ticket("{ genres { genreId } }"))).read_all()
    assert genres.num_rows > 0


@pytest.mark.parametrize("skip", [True, False])
def test_a_field_skip_or_include_may_leave_out_is_nullable_and_null_when_left_out(
    client: flight.FlightClient, skip: bool
) -> None:
    query = """query ($s: Boolean!) {
      genres(orderBy: {genreId: ASC}, limit: 2) {
        genreId
        id: genreId @skip(if: $s)
        tracks(limit: 1, orderBy: {trackId: ASC}) @skip(if: $s) { trackId }
        ... on Genre @include(if: $s) { kind: __typename }
      }
    }"""
    raw = ticket(query, {"s": skip})
    schema = client.get_flight_info(flight.FlightDescriptor.for_command(raw)).schema
    table = client.do_get(flight.Ticket(raw)).read_all()
    assert table.schema.equals(schema)
    nullable = {f.name: f.nullable for f in schema}
    assert nullable == {"genreId": False, "id": True, "tracks": True, "kind": True}
    rows = table.to_pylist()
    assert [r["genreId"] for r in rows] == [1, 2]
    if skip:
        assert [(r["id"], r["tracks"], r["kind"]) for r in rows] == [(None, None, "Genre")] * 2
    else:
        assert [r["id"] for r in rows] == [1, 2] and all(r["tracks"] for r in rows)
        assert [r["kind"] for r in rows] == [None, None]
