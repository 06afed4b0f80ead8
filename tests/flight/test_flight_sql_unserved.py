"""What a Flight SQL client asks for outside the subset is refused with one line naming what
is not served and what to do instead: never a traceback, never INTERNAL."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from quiver.flight.protobuf import encode, pack_any

SQL = "arrow.flight.protocol.sql."


def _command(name: str, *fields: tuple[int, Any]) -> bytes:
    return pack_any(SQL + name, encode(list(fields)))


def _refusal(error: BaseException) -> str:
    said = str(error)
    assert "Traceback" not in said and "INTERNAL" not in said, said
    return said


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (_command("CommandGetPrimaryKeys", (3, b"Genre")), "CommandGetPrimaryKeys is not served"),
        (_command("CommandGetXdbcTypeInfo"), "CommandGetXdbcTypeInfo is not served"),
        (_command("CommandStatementSubstraitPlan"), "CommandStatementSubstraitPlan is not"),
        (pack_any(SQL + "CommandStatementQuery", b"\xff\xff\xff"), "cannot be read"),
        (_command("CommandStatementQuery"), "send exactly one statement"),
        (_command("CommandPreparedStatementQuery"), "prepared statement handle cannot be read"),
    ],
)
def test_an_unserved_or_broken_command_is_refused_naming_it(
    client: flight.FlightClient, command: bytes, says: str
) -> None:
    with pytest.raises(flight.FlightServerError) as caught:
        client.get_flight_info(flight.FlightDescriptor.for_command(command))
    said = _refusal(caught.value)
    assert said.startswith("INVALID_TICKET") and says in said, said


@pytest.mark.parametrize(
    ("action", "says"),
    [
        ("BeginTransaction", "transactions are not served"),
        ("EndSavepoint", "autocommit"),
        ("CancelFlightInfo", "cancel the DoGet call"),
        ("CloseSession", "the server keeps no session"),
        ("CreatePreparedSubstraitPlan", "prepare SQL instead"),
    ],
)
def test_a_flight_sql_action_outside_the_subset_says_what_to_do_instead(
    client: flight.FlightClient, action: str, says: str
) -> None:
    with pytest.raises(flight.FlightServerError) as caught:
        list(client.do_action(flight.Action(action, b"")))
    said = _refusal(caught.value)
    assert f"the Flight SQL action {action} is not served" in said and says in said, said


def test_a_prepared_statement_request_that_is_not_one_says_what_to_send(
    client: flight.FlightClient,
) -> None:
    with pytest.raises(flight.FlightServerError) as caught:
        list(client.do_action(flight.Action("CreatePreparedStatement", b"junk")))
    assert "send an ActionCreatePreparedStatementRequest" in _refusal(caught.value)


def test_updates_and_bulk_ingestion_are_refused_as_the_server_is_read_only(conn: Any) -> None:
    import adbc_driver_manager

    with conn.cursor() as cur:
        cur.adbc_statement.set_sql_query("DELETE FROM Genre")
        with pytest.raises(adbc_driver_manager.ProgrammingError) as caught:
            cur.adbc_statement.execute_update()
        said = _refusal(caught.value)
        assert "PERMISSION_DENIED: Flight SQL: Flight SQL is read-only here" in said, said
        assert "CommandStatementUpdate is not served" in said and "DoPut of a path" in said
        with pytest.raises(adbc_driver_manager.ProgrammingError) as caught:
            cur.adbc_ingest("Genre", pa.table({"name": ["x"]}), mode="append")
        said = _refusal(caught.value)
        assert "CommandStatementIngest is not served" in said, said
        cur.execute("SELECT name FROM Genre WHERE genreId = 1")
        assert cur.fetch_arrow_table().num_rows == 1


@pytest.mark.parametrize(
    "where",
    ["(" * 200 + "genreId = 1" + ")" * 200, "NOT " * 2000 + "genreId = 1"],
    ids=["parentheses", "not"],
)
def test_a_condition_nested_too_deeply_to_read_is_refused_saying_so(conn: Any, where: str) -> None:
    import adbc_driver_manager

    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.OperationalError) as caught:
        cur.execute(f"SELECT name FROM Genre WHERE {where}")
    message = _refusal(caught.value)
    assert "INVALID_TICKET" in message, message
    assert "nests parentheses or NOT too deeply" in message, message
    assert "INTERNAL" not in message
    with conn.cursor() as cur:
        cur.execute("SELECT name FROM Genre WHERE genreId = 1")
        assert cur.fetch_arrow_table().num_rows == 1


NOT_UTF8 = [
    ("CommandStatementQuery", (1, b"SELECT name FROM Genre WHERE name = '\xff'")),
    ("CommandGetDbSchemas", (2, b"ma\xffin")),
    ("CommandGetTables", (3, b"G\xffnre")),
    ("CommandGetTables", (4, b"\xfe")),
    ("CommandGetTables", (1, b"\xc3")),
]


@pytest.mark.parametrize(("name", "field"), NOT_UTF8, ids=[n for n, _ in NOT_UTF8])
def test_a_string_field_that_is_not_utf8_is_refused_naming_the_field(
    client: flight.FlightClient, name: str, field: tuple[int, bytes]
) -> None:
    command = _command(name, field)
    with pytest.raises(flight.FlightServerError) as from_info:
        client.get_flight_info(flight.FlightDescriptor.for_command(command))
    refusals = [from_info.value]
    if name != "CommandStatementQuery":  # its ticket is an export ticket, made by GetFlightInfo
        with pytest.raises(flight.FlightServerError) as from_get:
            client.do_get(flight.Ticket(command)).read_all()
        refusals.append(from_get.value)
    for refusal in refusals:
        said = _refusal(refusal)
        assert said.startswith(f"INVALID_TICKET: {name}: field {field[0]} of {name}"), said
        assert "is not UTF-8 text" in said, said
    assert client.do_get(flight.Ticket(b"export:Genre::name")).read_all().num_rows > 0


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("genreId IN (" + ",".join(["1"] * 40_000) + ")", "the statement is 80041 bytes;"),
        (" OR ".join(["genreId = 1"] * 4_300), "bytes as an export ticket;"),
    ],
    ids=["text", "ticket"],
)
def test_a_statement_too_large_to_serve_is_refused_saying_so(
    conn: Any, where: str, says: str
) -> None:
    import adbc_driver_manager

    with conn.cursor() as cur, pytest.raises(adbc_driver_manager.OperationalError) as caught:
        cur.execute(f"SELECT name FROM Genre WHERE {where}")
    message = _refusal(caught.value)
    assert says in message and "the most is 65536" in message, message
    assert "instead of a long IN list" in message, message


_HANDLE = b'{"prepared": {"ticket": {"export": {"table": "Genre"}}, "values": %s}}'
TAMPERED = {
    "deep values": _HANDLE % (b"[" * 300 + b"]" * 300),
    "values twice": b'{"prepared": {"ticket": {"export": {"table": "Genre"}},'
    b' "values": [], "values": [1]}}',
}


@pytest.mark.parametrize("handle", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_prepared_statement_handle_the_server_did_not_make_is_refused(
    client: flight.FlightClient, handle: bytes
) -> None:
    command = _command("CommandPreparedStatementQuery", (1, handle))
    with pytest.raises(flight.FlightServerError) as caught:
        client.get_flight_info(flight.FlightDescriptor.for_command(command))
    said = _refusal(caught.value)
    assert said.startswith("INVALID_TICKET: Flight SQL: the prepared statement handle cannot"), said
