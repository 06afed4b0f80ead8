"""Row filters and field permissions of auth.permissions, through a real ``quiver serve``:
GraphQL over HTTP, GraphQL and export tickets over Flight, ListFlights, Flight SQL, mutations.

Two tenants share the tables; each tenant's key reads and writes only its rows, never the
``secret`` field, and never the ``notes`` table. One administrator key (no role) sees all.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.flight as flight
import pytest
import yaml

from quiver.flight import connect
from tests.conftest import DIALECTS, ChinookDb, create_empty_database, drop_database
from tests.graphql.servers import free_port, serving

ADMIN = "admin-key-0123456789abcdef"
TENANT1 = "tenant-one-key-0123456789"
TENANT2 = "tenant-two-key-0123456789"
NOBODY = "no-grants-key-0123456789"

_INT_PK = {
    "sqlite": "INTEGER PRIMARY KEY",
    "postgresql": "INTEGER PRIMARY KEY",
    "mysql": "INT PRIMARY KEY",
}
_TEXT = {"sqlite": "TEXT", "postgresql": "TEXT", "mysql": "VARCHAR(100)"}


def _statements(dialect: str) -> list[str]:
    pk, text = _INT_PK[dialect], _TEXT[dialect]
    return [
        f"CREATE TABLE customers (id {pk}, tenant_id INT NOT NULL, name {text}, secret {text})",
        f"CREATE TABLE orders (id {pk}, tenant_id INT NOT NULL, customer_id INT NOT NULL"
        " REFERENCES customers(id), total INT)",
        f"CREATE TABLE notes (id {pk}, body {text})",
        "INSERT INTO customers VALUES (1, 1, 'Ada', 's1'), (2, 2, 'Bob', 's2'),"
        " (3, 1, 'Cy', 's3'), (5, 1, 'Eve', 's5'), (6, 2, 'Fay', 's6'), (7, 1, 'Gus', 's7')",
        # order 11 belongs to tenant 2 though its customer is tenant 1's
        "INSERT INTO orders VALUES (10, 1, 1, 100), (11, 2, 1, 200), (12, 2, 2, 300)",
        "INSERT INTO notes VALUES (1, 'internal')",
    ]


_MINE = {"tenantId": {"eq": "$claims.tenant_id"}}
CONFIG: dict[str, Any] = {
    "auth": {
        "api_keys": [
            {"name": "admin", "key": ADMIN},
            {"name": "one", "key": TENANT1, "role": "tenant", "claims": {"tenant_id": 1}},
            {"name": "two", "key": TENANT2, "role": "tenant", "claims": {"tenant_id": 2}},
            {"name": "nobody", "key": NOBODY, "role": "guest"},
        ],
        "permissions": {
            "tenant": {
                "Customer": {
                    "select": {"filter": _MINE, "columns": ["id", "tenantId", "name"]},
                    "insert": {"check": _MINE, "columns": ["id", "tenantId", "name"]},
                    "update": {"filter": _MINE, "columns": ["name"]},
                    "delete": {"filter": _MINE},
                },
                "Order": {"select": {"filter": _MINE}},
            },
            "guest": {},
        },
    },
}


@dataclass
class Served:
    dialect: str
    base: str
    flight: str
    db: ChinookDb

    def post(self, key: str, query: str, variables: dict[str, Any] | None = None) -> Any:
        r = httpx.post(
            f"{self.base}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {key}"},
            timeout=20,
        )
        assert r.status_code in (200, 400), r.text
        return r.json()


@pytest.fixture(scope="module", params=DIALECTS)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    dialect: str = request.param
    folder = tmp_path_factory.mktemp(f"perm-{dialect}")
    if dialect == "sqlite":
        path = folder / "shop.sqlite"
        sqlite3.connect(path).close()
        url = f"sqlite:///{path.absolute()}"
    else:
        url = create_empty_database(dialect)  # type: ignore[arg-type]
    db = ChinookDb(dialect, url)  # type: ignore[arg-type]
    try:
        for statement in _statements(dialect):
            db.query(statement)
        port, flight_port = free_port(), free_port()
        config = {
            **CONFIG,
            "database": {"url": url, "pool_max": 3},
            "server": {"port": port},
            "flight": {"port": flight_port, "writable": True},
        }
        file = folder / "quiver.yaml"
        file.write_text(yaml.safe_dump(config, sort_keys=False))
        # QUIVER_FLIGHT_PORT (set for every test) is overridden on the command line.
        args = ("serve", "--config", str(file), "--set", f"flight.port={flight_port}")
        with serving(*args, port=port, cwd=folder) as base:
            yield Served(dialect, base, f"grpc+tcp://127.0.0.1:{flight_port}", db)
    finally:
        db.close()
        if dialect != "sqlite":
            drop_database(url)


def _ids(rows: list[dict[str, Any]]) -> list[int]:
    return sorted(int(r["id"]) for r in rows)


# ----- GraphQL over HTTP -----
def test_a_tenant_key_reads_only_its_rows_over_http(served: Served) -> None:
    one = served.post(TENANT1, "{ customers { id name } }")
    assert _ids(one["data"]["customers"]) == [1, 3, 5, 7]
    two = served.post(TENANT2, "{ customers { id name } }")
    assert _ids(two["data"]["customers"]) == [2, 6]
    admin = served.post(ADMIN, "{ customers { id } }")
    assert _ids(admin["data"]["customers"]) == [1, 2, 3, 5, 6, 7]


def test_nested_relations_show_only_rows_the_role_may_read(served: Served) -> None:
    one = served.post(TENANT1, "{ customer(id: 1) { id orders { id } } }")
    assert one["data"]["customer"]["orders"] == [{"id": 10}]
    # tenant 2 owns order 11 of customer 1, but cannot see customer 1
    two = served.post(TENANT2, "{ orders { id customer { id } } }")
    rows = {r["id"]: r["customer"] for r in two["data"]["orders"]}
    assert rows == {11: None, 12: {"id": 2}}


def test_aggregates_and_relation_filters_count_only_visible_rows(served: Served) -> None:
    one = served.post(TENANT1, "{ customersAggregate { count } }")
    assert one["data"]["customersAggregate"]["count"] == 4
    # customer 1 has order 11 (tenant 2): tenant 1 cannot find it through a relation filter
    probe = served.post(
        TENANT1, "{ customers(where: {orders: {some: {total: {eq: 200}}}}) { id } }"
    )
    assert probe["data"]["customers"] == []
    page = served.post(
        TENANT1,
        "{ customersConnection(first: 2) { totalCount nodes { id } pageInfo { hasNextPage } } }",
    )["data"]["customersConnection"]
    assert page == {
        "totalCount": 4,
        "nodes": [{"id": 1}, {"id": 3}],
        "pageInfo": {"hasNextPage": True},
    }
    # ordering by a relation reads only related rows the role may see
    ordered = served.post(TENANT2, "{ orders(orderBy: [{customer: {name: ASC}}]) { id } }")
    assert [r["id"] for r in ordered["data"]["orders"]] in ([12, 11], [11, 12])


def test_a_hidden_field_is_not_in_the_role_schema(served: Served) -> None:
    body = served.post(TENANT1, "{ customers { id secret } }")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "secret" in body["errors"][0]["message"]
    fields = served.post(TENANT1, '{ __type(name: "Customer") { fields { name } } }')
    names = {f["name"] for f in fields["data"]["__type"]["fields"]}
    assert "secret" not in names and "name" in names
    assert served.post(ADMIN, "{ customers(limit: 1) { secret } }")["data"]["customers"]


def test_an_entity_the_role_does_not_list_is_hidden(served: Served) -> None:
    body = served.post(TENANT1, "{ notes { id } }")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    guest = served.post(NOBODY, "{ customers { id } }")
    assert guest["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


# ----- Flight -----
def test_a_graphql_ticket_reads_only_the_tenants_rows(served: Served) -> None:
    with connect(served.flight, api_key=TENANT2) as client:
        table = client.graphql("{ customers { id name } }")
    assert sorted(int(i) for i in table.column("id").to_pylist()) == [2, 6]
    with (
        connect(served.flight, api_key=TENANT2) as client,
        pytest.raises(flight.FlightServerError, match="secret"),
    ):
        client.graphql("{ customers { secret } }")


def test_an_export_ticket_reads_only_the_tenants_rows(served: Served) -> None:
    with connect(served.flight, api_key=TENANT1) as client:
        table = client.read("export:Customer::")
        assert sorted(table.column("id").to_pylist()) == [1, 3, 5, 7]
        assert "secret" not in table.schema.names
        filtered = client.read("export:Customer:name=Bob:")
        assert filtered.num_rows == 0
    with connect(served.flight, api_key=ADMIN) as client:
        assert client.read("export:Customer::").num_rows == 6


def test_an_export_of_a_hidden_field_is_refused(served: Served) -> None:
    with (
        connect(served.flight, api_key=TENANT1) as client,
        pytest.raises(flight.FlightServerError, match="no column 'secret'"),
    ):
        client.read("export:Customer::id,secret")


def test_list_flights_hides_what_the_role_cannot_read(served: Served) -> None:
    with connect(served.flight, api_key=TENANT1) as client:
        listed = list(client.flight.list_flights(options=client.options))
    paths = {tuple(p.decode() for p in f.descriptor.path or ()) for f in listed}
    assert ("Customer",) in paths and ("Order",) in paths and ("Note",) not in paths
    customer = next(f for f in listed if f.descriptor.path == [b"Customer"])
    assert "secret" not in customer.schema.names
    # no change-events flights (they carry whole rows), and no query failing for the role
    commands = [f.descriptor.command or b"" for f in listed]
    assert not any(b"observer_events" in c for c in commands)
    with connect(served.flight, api_key=ADMIN) as client:
        listed = list(client.flight.list_flights(options=client.options))
        names = {tuple(f.descriptor.path or ()) for f in listed}
    assert (b"Note",) in names


def test_flight_info_of_a_hidden_table_is_refused(served: Served) -> None:
    with connect(served.flight, api_key=TENANT1) as client:
        with pytest.raises(flight.FlightServerError, match="no table or type 'Note'"):
            client.flight.get_flight_info(flight.FlightDescriptor.for_path("Note"), client.options)
        info = client.flight.get_flight_info(
            flight.FlightDescriptor.for_path("Customer"), client.options
        )
        assert "secret" not in info.schema.names


def test_flight_sql_statements_are_filtered_by_the_role(served: Served) -> None:
    adbc = pytest.importorskip("adbc_driver_flightsql.dbapi")
    with (
        adbc.connect(
            served.flight, db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {TENANT2}"}
        ) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT id, name FROM customers")
        assert sorted(r[0] for r in cur.fetchall()) == [2, 6]
        with pytest.raises(Exception, match="no column 'secret'"):
            cur.execute("SELECT secret FROM customers")


def test_change_events_and_bulk_loads_are_refused_to_a_restricted_role(served: Served) -> None:
    with (
        connect(served.flight, api_key=TENANT1) as client,
        pytest.raises(flight.FlightUnauthorizedError, match="PERMISSION_DENIED"),
    ):
        client.events("Customer", "2020-01-01T00:00:00Z")
    with connect(served.flight, api_key=TENANT1) as client:
        table = pa.table({"id": [90], "tenant_id": [2], "name": ["x"], "secret": ["y"]})
        writer, _ = client.flight.do_put(
            flight.FlightDescriptor.for_path("Customer"), table.schema, client.options
        )
        with pytest.raises(flight.FlightUnauthorizedError, match="PERMISSION_DENIED"):
            writer.write_table(table)
            writer.close()


# ----- mutations -----
def test_an_update_touches_only_the_tenants_rows(served: Served) -> None:
    body = served.post(
        TENANT2,
        'mutation { updateCustomers(where: {name: {in: ["Eve", "Fay"]}}, set: {name: "X"})'
        " { id } }",
    )
    assert "errors" not in body, body
    assert _ids(body["data"]["updateCustomers"]) == [6]
    names = dict(served.db.query("SELECT id, name FROM customers WHERE id IN (5, 6)"))
    assert names == {5: "Eve", 6: "X"}


def test_an_update_by_key_of_another_tenants_row_is_not_found(served: Served) -> None:
    body = served.post(TENANT2, 'mutation { updateCustomer(id: 7, set: {name: "Z"}) { id } }')
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert served.db.query("SELECT name FROM customers WHERE id = 7") == [("Gus",)]


def test_a_field_the_role_may_not_write_is_refused(served: Served) -> None:
    body = served.post(TENANT1, "mutation { updateCustomer(id: 7, set: {tenantId: 2}) { id } }")
    assert body["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
    assert "tenantId" in body["errors"][0]["message"]
    assert served.db.query("SELECT tenant_id FROM customers WHERE id = 7") == [(1,)]


def test_a_created_row_must_pass_the_insert_check(served: Served) -> None:
    refused = served.post(
        TENANT1, 'mutation { createCustomer(input: {id: 40, tenantId: 2, name: "M"}) { id } }'
    )
    assert refused["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
    assert served.db.query("SELECT COUNT(*) FROM customers WHERE id = 40") == [(0,)]
    made = served.post(
        TENANT1, 'mutation { createCustomer(input: {id: 41, tenantId: 1, name: "N"}) { id } }'
    )
    assert made["data"]["createCustomer"] == {"id": 41}


def test_a_delete_removes_only_the_tenants_rows(served: Served) -> None:
    body = served.post(TENANT1, "mutation { deleteCustomers(where: {id: {in: [2, 41]}}) { id } }")
    assert "errors" not in body, body
    assert _ids(body["data"]["deleteCustomers"]) == [41]
    assert served.db.query("SELECT COUNT(*) FROM customers WHERE id = 2") == [(1,)]


def test_a_role_without_a_write_grant_has_no_such_mutation(served: Served) -> None:
    body = served.post(TENANT1, "mutation { deleteOrders(where: {}) { id } }")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert served.db.query("SELECT COUNT(*) FROM orders") == [(3,)]


# ----- subscriptions -----


@contextlib.contextmanager
def _subscriber(served: Served, key: str) -> Iterator[Any]:
    """A graphql-transport-ws connection acknowledged for ``key``."""
    from websockets.sync.client import connect as ws_connect

    url = served.base.replace("http://", "ws://") + "/graphql"
    with ws_connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
        ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {key}"}})
        )
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        yield ws


def test_a_subscription_delivers_only_changes_of_rows_the_role_may_read(served: Served) -> None:
    with _subscriber(served, TENANT2) as ws:
        hidden = "subscription { customerChanged { op after { secret } } }"
        ws.send(json.dumps({"id": "a", "type": "subscribe", "payload": {"query": hidden}}))
        refused = json.loads(ws.recv(timeout=10))
        assert refused["type"] == "error" and "secret" in refused["payload"][0]["message"]
        query = "subscription { customerChanged { op id after { name } } }"
        ws.send(json.dumps({"id": "b", "type": "subscribe", "payload": {"query": query}}))
        time.sleep(1.5)  # the subscription has read where the change log ends
        for i, tenant in ((50, 1), (51, 2)):
            made = served.post(
                ADMIN,
                f'mutation {{ createCustomer(input: {{id: {i}, tenantId: {tenant}, name: "S{i}",'
                ' secret: "x"}) { id } }',
            )
            assert "errors" not in made, made
        got = json.loads(ws.recv(timeout=15))
        assert got["type"] == "next", got
        assert got["payload"]["data"]["customerChanged"]["after"] == {"name": "S51"}
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.5)


def test_a_row_moved_to_another_tenant_shows_as_null_after(served: Served) -> None:
    with _subscriber(served, TENANT2) as ws:
        query = "subscription { customerChanged { op before { name } after { name } } }"
        ws.send(json.dumps({"id": "m", "type": "subscribe", "payload": {"query": query}}))
        time.sleep(1.5)
        moved = served.post(
            ADMIN, 'mutation { updateCustomer(id: 2, set: {tenantId: 1, name: "Moved"}) { id } }'
        )
        assert "errors" not in moved, moved
        got = json.loads(ws.recv(timeout=15))
        change = got["payload"]["data"]["customerChanged"]
        assert change["before"] == {"name": "Bob"} and change["after"] is None
        back = served.post(
            ADMIN, 'mutation { updateCustomer(id: 2, set: {tenantId: 2, name: "Bob"}) { id } }'
        )
        assert "errors" not in back, back
