"""Keys and roles on every Flight SQL call, as on every other Flight call and over HTTP: no
key or a wrong one is UNAUTHENTICATED, and a key with a role sees, in metadata and queries
alike, only the tables, fields and rows its role may read."""

from __future__ import annotations

import sqlite3
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from quiver.flight.protobuf import encode, pack_any
from quiver.flight.server import FlightHandle
from tests.flight.conftest import reflect, start

ADMIN = "admin-key-0123456789abcdef"
TENANT = "tenant-one-key-0123456789"
_MINE = {"tenantId": {"eq": "$claims.tenant_id"}}
AUTH: dict[str, Any] = {
    "api_keys": [
        {"name": "admin", "key": ADMIN},
        {"name": "one", "key": TENANT, "role": "tenant", "claims": {"tenant_id": 1}},
    ],
    "permissions": {
        "tenant": {"Customer": {"select": {"filter": _MINE, "columns": ["id", "tenantId", "name"]}}}
    },
}
SQL = "arrow.flight.protocol.sql."


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlightHandle]:
    path: Path = tmp_path_factory.mktemp("fsql-auth") / "shop.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, tenant_id INT NOT NULL, name TEXT,"
        " secret TEXT);"
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);"
        "INSERT INTO customers VALUES (1, 1, 'Ada', 's1'), (2, 2, 'Bob', 's2'),"
        " (3, 1, 'Cy', 's3');"
        "INSERT INTO notes VALUES (1, 'internal');"
    )
    db.commit()
    db.close()
    url = f"sqlite:///{path.absolute()}"
    handle = start(url, reflect(url), auth=AUTH)
    try:
        yield handle
    finally:
        handle.stop()


def _command(name: str, *fields: tuple[int, Any]) -> bytes:
    return pack_any(SQL + name, encode(list(fields)))


QUERY = _command("CommandStatementQuery", (1, b"SELECT name FROM Customer"))
PREPARE = _command("ActionCreatePreparedStatementRequest", (1, b"SELECT name FROM Customer"))
TICKET = _command("TicketStatementQuery", (1, b'{"export": {"table": "Customer"}}'))


def _calls(client: flight.FlightClient) -> dict[str, Callable[[Any], Any]]:
    """Every Flight SQL call a client makes, each taking the call options."""
    command = flight.FlightDescriptor.for_command

    def put(descriptor: bytes, options: Any) -> Any:
        writer, reader = client.do_put(command(descriptor), pa.schema([]), options)
        try:
            return reader.read()
        finally:
            writer.close()

    return {
        "GetFlightInfo(query)": lambda o: client.get_flight_info(command(QUERY), o),
        "GetSchema(query)": lambda o: client.get_schema(command(QUERY), o),
        "DoGet(statement)": lambda o: client.do_get(flight.Ticket(TICKET), o).read_all(),
        "GetFlightInfo(GetTables)": lambda o: client.get_flight_info(
            command(_command("CommandGetTables", (5, 1))), o
        ),
        "DoGet(GetTables)": lambda o: client.do_get(
            flight.Ticket(_command("CommandGetTables", (5, 1))), o
        ).read_all(),
        "DoGet(GetSqlInfo)": lambda o: client.do_get(
            flight.Ticket(_command("CommandGetSqlInfo")), o
        ).read_all(),
        "DoGet(GetCatalogs)": lambda o: client.do_get(
            flight.Ticket(_command("CommandGetCatalogs")), o
        ).read_all(),
        "DoGet(GetTableTypes)": lambda o: client.do_get(
            flight.Ticket(_command("CommandGetTableTypes")), o
        ).read_all(),
        "DoAction(CreatePreparedStatement)": lambda o: list(
            client.do_action(flight.Action("CreatePreparedStatement", PREPARE), o)
        ),
        "DoAction(ClosePreparedStatement)": lambda o: list(
            client.do_action(flight.Action("ClosePreparedStatement", b""), o)
        ),
        "DoPut(StatementUpdate)": lambda o: put(
            _command("CommandStatementUpdate", (1, b"DELETE FROM Customer")), o
        ),
    }


@pytest.mark.parametrize(
    ("header", "says"), [(None, "no credentials"), (b"Bearer wrong", "not valid")]
)
def test_every_flight_sql_call_without_a_valid_key_is_unauthenticated(
    locked: FlightHandle, header: bytes | None, says: str
) -> None:
    client = flight.FlightClient(locked.location)
    options = flight.FlightCallOptions(headers=[(b"authorization", header)] if header else [])
    try:
        for name, call in _calls(client).items():
            with pytest.raises(Exception) as caught:
                call(options)
            # GetSchema's errors reach a pyarrow client as OSError (apache/arrow#43556),
            # with the status in the message.
            error = caught.value
            assert isinstance(error, flight.FlightUnauthenticatedError) or (
                name.startswith("GetSchema") and "Unauthenticated" in str(error)
            ), (name, error)
            assert says in str(error), (name, error)
    finally:
        client.close()


def _connect(locked: FlightHandle, key: str) -> Any:
    import adbc_driver_flightsql.dbapi as flightsql

    location = locked.location.replace("grpc+tcp://", "grpc://")
    header = {"adbc.flight.sql.authorization_header": f"Bearer {key}"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flightsql.connect(location, db_kwargs=header)


def test_a_role_sees_only_its_tables_fields_and_rows_in_metadata_and_queries(
    locked: FlightHandle,
) -> None:
    import adbc_driver_manager

    conn = _connect(locked, TENANT)
    try:
        objects = conn.adbc_get_objects(depth="columns").read_all().to_pylist()
        tables = {
            t["table_name"]: [c["column_name"] for c in t["table_columns"]]
            for s in objects[0]["catalog_db_schemas"]
            for t in s["db_schema_tables"]
        }
        assert tables == {"Customer": ["id", "tenantId", "name"]}
        schema = conn.adbc_get_table_schema("Customer")
        assert schema.names == ["id", "tenantId", "name"]
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM Customer")
            got = cur.fetch_arrow_table()
            assert got.schema.equals(schema)
            assert sorted(got.column("id").to_pylist()) == [1, 3]
            cur.execute("SELECT name FROM Customer WHERE id = ?", (2,))
            assert cur.fetch_arrow_table().num_rows == 0
        for statement, says in (
            ("SELECT secret FROM Customer", "no column 'secret'"),
            ("SELECT id FROM Customer WHERE secret = 's2'", "secret"),
            ("SELECT * FROM notes", "no table or type 'notes'"),
        ):
            with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
                cur.execute(statement)
                cur.fetch_arrow_table()
            assert says in str(caught.value), (statement, caught.value)
    finally:
        conn.close()
    admin = _connect(locked, ADMIN)
    try:
        assert admin.adbc_get_table_schema("Customer").names == ["id", "tenantId", "name", "secret"]
        with admin.cursor() as cur:
            cur.execute("SELECT body FROM Note")
            assert cur.fetch_arrow_table().column("body").to_pylist() == ["internal"]
    finally:
        admin.close()
