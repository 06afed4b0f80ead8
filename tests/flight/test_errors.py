"""What a client reads when a call fails: a precise Flight status, a message that says what
is wrong and how to fix it, and never a traceback, a server path or the database's address."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import quiver.flight.server as server_module
from quiver.auth import ANONYMOUS, Principal
from quiver.config.settings import QuiverSettings
from quiver.flight.server import FlightHandle, QuiverFlightServer
from quiver.graphql.engine import DATABASE_FAILED, GraphQLEngine, Outcome
from tests.conftest import DIALECTS
from tests.flight.conftest import Served, reflect, start
from tests.flight.test_load import TABLE, Db


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_database_error_names_the_database_without_its_address(
    request: pytest.FixtureRequest, dialect: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A table dropped after the server started: the database's error used to name its URL
    (host, user and database name, or the SQLite file's path) as where it happened."""
    db = Db(dialect, request.getfixturevalue(f"fresh_{dialect}"))
    db.run(TABLE[dialect])
    handle = start(db.url, reflect(db.url))
    db.run("DROP TABLE reading")
    client = flight.FlightClient(handle.location)
    try:
        with pytest.raises(flight.FlightError) as caught:
            client.do_get(flight.Ticket(b"export:Reading::")).read_all()
    finally:
        client.close()
        handle.stop()
    message = str(caught.value)
    info = orjson.loads(caught.value.extra_info)
    assert "database: database error while starting an export" in message, message
    assert [e["where"] for e in info["errors"]] == ["database"]
    # The server's operator still reads which database failed.
    logged = [r.getMessage() for r in caplog.records if r.name == "quiver.flight"]
    assert any("database error while starting an export" in m and "://" in m for m in logged)
    for said in (message, caught.value.extra_info.decode()):
        assert "://" not in said and "Traceback" not in said, said
        assert dialect != "sqlite" or db.url.split("///")[-1] not in said, said


#: An unexpected failure whose text names what a client must not read.
_SECRET = "/srv/quiver/secrets/db.key"


def _internal(caught: pytest.ExceptionInfo[flight.FlightError], call: str) -> str:
    """The message of an INTERNAL error of ``call``, checked: short, with a reference to the
    server's log, and nothing of the failure's own text or traceback."""
    assert isinstance(caught.value, flight.FlightInternalError), repr(caught.value)
    message = str(caught.value)
    assert message.startswith(f"INTERNAL: {call} failed on the server (reference "), message
    assert "give the reference to the server's operator" in message, message
    for said in (message, caught.value.extra_info.decode()):
        assert _SECRET not in said and "Traceback" not in said and ".py" not in said, said
    assert orjson.loads(caught.value.extra_info)["code"] == "INTERNAL"
    return message


def _boom(*args: object, **kwargs: object) -> object:
    raise PermissionError(13, "Permission denied", _SECRET)


def test_an_unexpected_failure_is_internal_without_its_text_and_logged_with_a_reference(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(served.handle.server, "_schema_of", _boom)
    monkeypatch.setattr(server_module, "stream_export", _boom)
    client = served.client()
    try:
        with pytest.raises(flight.FlightError) as from_info:
            client.get_flight_info(flight.FlightDescriptor.for_path("Genre"))
        with pytest.raises(flight.FlightError) as from_get:
            client.do_get(flight.Ticket(b"export:Genre::name")).read_all()
    finally:
        client.close()
    for caught, call in ((from_info, "get_flight_info"), (from_get, "do_get")):
        message = _internal(caught, call)
        reference = message.split("(reference ", 1)[1].split(")", 1)[0]
        logged = [r for r in caplog.records if f"(reference {reference})" in r.getMessage()]
        assert len(logged) == 1 and logged[0].exc_info is not None
        assert _SECRET in str(logged[0].exc_info[1])


def test_a_change_event_stream_that_fails_unexpectedly_ends_internal_without_a_traceback(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised from its stream, the failure reached the client as UNKNOWN with the server's
    traceback in the message."""

    class Scanner:
        def __init__(self, *args: object) -> None:
            pass

        def start(self, since: object) -> None:
            pass

    def events(*args: object) -> Iterator[pa.RecordBatch]:
        _boom()
        yield from ()

    monkeypatch.setattr(server_module, "EventScanner", Scanner)
    monkeypatch.setattr(server_module, "stream_events", events)
    client = served.client()
    try:
        with pytest.raises(flight.FlightError) as caught:
            client.do_get(flight.Ticket(b"observer_events:Genre:2026-01-01T00:00:00Z")).read_all()
        assert client.do_get(flight.Ticket(b"export:Genre::name")).read_all().num_rows > 0
    finally:
        client.close()
    _internal(caught, "do_get")


class _FailingAuthenticator:
    """An authentication hook that fails (a plugged-in one whose key store is unreachable)."""

    required = True

    def authenticate(self, authorization: str | None) -> Principal:
        _boom()
        return ANONYMOUS


def test_an_authentication_hook_that_fails_is_internal_without_a_traceback(
    served: Served,
) -> None:
    settings = QuiverSettings.model_validate(
        {"database": {"url": served.db.url, "pool_max": 2}, "flight": {"port": 0}}
    )
    handle = FlightHandle(QuiverFlightServer(served.schema, settings, auth=_FailingAuthenticator()))
    client = flight.FlightClient(handle.location)
    try:
        with pytest.raises(flight.FlightError) as caught:
            client.get_flight_info(flight.FlightDescriptor.for_path("Genre"))
    finally:
        client.close()
        handle.stop()
    _internal(caught, "authentication")


def test_refusals_of_what_a_server_does_not_serve_carry_their_code(served: Served) -> None:
    """A bulk load into a read-only server, a GraphQL ticket to a server without GraphQL: they
    were refused without the code in the message and in extra_info that every refusal has."""
    settings = QuiverSettings.model_validate(
        {"database": {"url": served.db.url, "pool_max": 2}, "flight": {"port": 0}}
    )
    handle = FlightHandle(QuiverFlightServer(served.schema, settings))
    client = flight.FlightClient(handle.location)
    batch = pa.record_batch({"name": ["Polka"]})
    try:
        with pytest.raises(flight.FlightUnauthorizedError) as put:
            writer, _ = client.do_put(flight.FlightDescriptor.for_path("Genre"), batch.schema)
            with writer:
                writer.write_batch(batch)
        with pytest.raises(flight.FlightServerError) as graphql:
            client.do_get(flight.Ticket(b'{"graphql": {"query": "{ genres { name } }"}}'))
    finally:
        client.close()
        handle.stop()
    assert str(put.value).startswith(
        "PERMISSION_DENIED: DoPut: this server is read-only (set flight.writable: true"
    ), str(put.value)
    assert str(graphql.value).startswith(
        "INVALID_TICKET: ticket: GraphQL tickets are not served by this server (send an export"
    ), str(graphql.value)
    assert orjson.loads(put.value.extra_info)["code"] == "PERMISSION_DENIED"
    assert orjson.loads(graphql.value.extra_info)["code"] == "INVALID_TICKET"


#: A GraphQL ticket the engine answers (relations and a limit: not a columnar read).
_GRAPHQL = b'{"graphql": {"query": "{ genres(limit: 2) { name tracks { name } } }"}}'


def _engine_refusal(
    served: Served, monkeypatch: pytest.MonkeyPatch, error: dict[str, object]
) -> pytest.ExceptionInfo[flight.FlightError]:
    """The error DoGet of a GraphQL ticket fails with when the engine answers ``error``."""

    async def execute(*args: object, **kwargs: object) -> Outcome:
        return Outcome(orjson.dumps({"errors": [error], "data": None}), "field_error")

    monkeypatch.setattr(GraphQLEngine, "execute", execute)
    client = served.client()
    try:
        with pytest.raises(flight.FlightError) as caught:
            client.do_get(flight.Ticket(_GRAPHQL)).read_all()
    finally:
        client.close()
    return caught


def test_a_graphql_ticket_past_the_statement_time_limit_is_timed_out(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was INVALID_TICKET (UNKNOWN) with "fix the query or its variables"."""
    caught = _engine_refusal(
        served,
        monkeypatch,
        {
            "message": "The query ran past the statement time limit.",
            "extensions": {"code": "STATEMENT_TIMEOUT"},
        },
    )
    assert isinstance(caught.value, flight.FlightTimedOutError), repr(caught.value)
    message = str(caught.value)
    assert message.startswith(
        "STATEMENT_TIMEOUT: ticket.graphql: the query ran past the database's statement time"
        " limit (ask for fewer rows (a where argument or a limit), or raise"
        " database.statement_timeout_ms)"
    ), message
    assert orjson.loads(caught.value.extra_info)["code"] == "STATEMENT_TIMEOUT"


@pytest.mark.parametrize(
    "error",
    [
        {"message": "Internal server error.", "extensions": {"code": "INTERNAL_SERVER_ERROR"}},
        {"message": DATABASE_FAILED, "extensions": {"code": "DATABASE_ERROR"}},
    ],
    ids=["internal", "database"],
)
def test_a_graphql_ticket_the_engine_fails_to_answer_is_internal_not_the_tickets_fault(
    served: Served, monkeypatch: pytest.MonkeyPatch, error: dict[str, object]
) -> None:
    """It was INVALID_TICKET with "fix the query or its variables", which cannot help."""
    caught = _engine_refusal(served, monkeypatch, error)
    assert "fix the query" not in _internal(caught, "do_get")
