"""observer_events tickets: change-log rows of one entity as Arrow, caught up and followed."""

from __future__ import annotations

import datetime as dt
import decimal
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from quiver.flight.events import MAX_GAPS, EventScanner
from quiver.flight.server import FlightHandle
from quiver.schema.ir import Schema
from quiver.sql.url import parse_database_url
from tests.flight.conftest import reflect, start

LOG = "quiver_change_log"
#: Seconds a test waits at most for something that must happen (a row to arrive, a stream to
#: end). Only an upper bound: a passing test never waits it out, and a busy machine (a full
#: parallel run on two cores) may take many times longer than an idle one.
PATIENCE = 60.0
_LOG_DDL = {
    "postgresql": (
        f"CREATE TABLE {LOG} (id BIGSERIAL PRIMARY KEY, entity TEXT NOT NULL,"
        " entity_key JSONB NOT NULL, operation TEXT NOT NULL, before_image JSONB,"
        " after_image JSONB, changed_fields JSONB NOT NULL, actor TEXT, tenant_id TEXT,"
        " transaction_id TEXT NOT NULL, changed_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ),
    "mysql": (
        f"CREATE TABLE {LOG} (id BIGINT AUTO_INCREMENT PRIMARY KEY,"
        " entity VARCHAR(255) NOT NULL, entity_key JSON NOT NULL, operation VARCHAR(6) NOT NULL,"
        " before_image JSON, after_image JSON, changed_fields JSON NOT NULL,"
        " actor VARCHAR(255), tenant_id VARCHAR(255), transaction_id VARCHAR(36) NOT NULL,"
        " changed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB"
    ),
    "sqlite": (
        f"CREATE TABLE {LOG} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " entity TEXT NOT NULL, entity_key TEXT NOT NULL, operation TEXT NOT NULL,"
        " before_image TEXT, after_image TEXT, changed_fields TEXT NOT NULL, actor TEXT,"
        " tenant_id TEXT, transaction_id TEXT NOT NULL,"
        " changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"
    ),
}
_ORDERS = (
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, total NUMERIC(12, 2) NOT NULL,"
    " status VARCHAR(20) NOT NULL)"
)


@dataclass
class Shop:
    dialect: str
    url: str
    handle: FlightHandle
    entity: str

    def connect(self, autocommit: bool = True) -> Any:
        db = parse_database_url(self.url)
        if self.dialect == "sqlite":
            # typeshed leaves out "", the default level (DEFERRED)
            conn = sqlite3.connect(db.database, isolation_level=None if autocommit else "")  # type: ignore[arg-type]
            return conn
        if self.dialect == "postgresql":
            import psycopg

            return psycopg.connect(
                host=db.host,
                port=db.port,
                user=db.user or None,
                password=db.password or None,
                dbname=db.database,
                autocommit=autocommit,
            )
        import pymysql

        return pymysql.connect(
            host=db.host,
            port=db.port,
            user=db.user or "root",
            password=db.password or "",
            database=db.database,
            autocommit=autocommit,
        )

    def mark(self) -> str:
        return "?" if self.dialect == "sqlite" else "%s"

    def log(
        self,
        conn: Any,
        key: int,
        op: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        *,
        entity: str = "",
        changed_at: str | None = None,
        actor: str | None = "ann",
    ) -> None:
        columns = "entity, entity_key, operation, before_image, after_image, changed_fields,"
        columns += " actor, tenant_id, transaction_id"
        values: list[Any] = [
            entity or self.entity,
            orjson.dumps({"id": key}).decode(),
            op,
            None if before is None else orjson.dumps(before).decode(),
            None if after is None else orjson.dumps(after).decode(),
            orjson.dumps(sorted((after or before or {}).keys())).decode(),
            actor,
            "t1",
            f"tx-{key}",
        ]
        if changed_at is not None:
            columns += ", changed_at"
            values.append(changed_at)
        marks = ", ".join(self.mark() for _ in values)
        cursor = conn.cursor()
        cursor.execute(f"INSERT INTO {LOG} ({columns}) VALUES ({marks})", values)
        cursor.close()


def _prepare(dialect: str, url: str) -> tuple[Schema, str]:
    """The orders table (reflected) and an empty change log; the schema and Order's name."""
    conn = Shop(dialect, url, None, "").connect()  # type: ignore[arg-type]
    cursor = conn.cursor()
    cursor.execute(_ORDERS)
    cursor.close()
    conn.close()
    schema = reflect(url)
    entity = next(e.name for e in schema.entities if e.source == "orders")
    conn = Shop(dialect, url, None, "").connect()  # type: ignore[arg-type]
    cursor = conn.cursor()
    cursor.execute(_LOG_DDL[dialect])
    cursor.close()
    conn.close()
    return schema, entity


def _setup(dialect: str, url: str) -> Iterator[Shop]:
    schema, entity = _prepare(dialect, url)
    handle = start(url, schema, flight={"events_poll_interval": 0.05, "batch_rows": 100})
    try:
        yield Shop(dialect, url, handle, entity)
    finally:
        handle.stop()


@pytest.fixture(params=["postgresql", "sqlite", "mysql"])
def shop(request: pytest.FixtureRequest) -> Iterator[Shop]:
    url = request.getfixturevalue(f"fresh_{request.param}")
    yield from _setup(request.param, url)


@pytest.fixture
def pg_shop(fresh_postgresql: str) -> Iterator[Shop]:
    yield from _setup("postgresql", fresh_postgresql)


def _client(shop: Shop) -> flight.FlightClient:
    return flight.FlightClient(shop.handle.location)


def _old_time(dialect: str) -> str:
    if dialect == "sqlite":
        return "2020-01-01T00:00:00.000Z"
    if dialect == "mysql":
        return "2020-01-01 00:00:00"
    return "2020-01-01T00:00:00+00:00"


def test_events_since_a_time_come_typed_in_id_order(shop: Shop) -> None:
    conn = shop.connect()
    shop.log(conn, 1, "insert", None, {"id": 1, "total": 10.5}, changed_at=_old_time(shop.dialect))
    shop.log(conn, 2, "insert", None, {"id": 2, "total": "12345678.91", "status": "new"})
    shop.log(conn, 9, "insert", None, {"id": 9}, entity="Somebody")
    shop.log(
        conn,
        2,
        "update",
        {"id": 2, "total": "12345678.91", "status": "new"},
        {"id": 2, "total": "12345678.99", "status": "paid"},
        actor=None,
    )
    conn.close()
    with _client(shop) as client:
        table = client.do_get(
            flight.Ticket(f"observer_events:{shop.entity}:2021-06-01T00:00:00Z".encode())
        ).read_all()
        assert table.num_rows == 2
        rows = table.to_pylist()
        assert [r["operation"] for r in rows] == ["insert", "update"]
        assert rows[0]["id"] < rows[1]["id"]
        assert all(r["entity"] == shop.entity for r in rows)
        assert rows[0]["before"] is None
        assert rows[0]["after"]["total"] == decimal.Decimal("12345678.91")
        assert rows[1]["after"] == {
            "id": 2,
            "total": decimal.Decimal("12345678.99"),
            "status": "paid",
        }
        assert orjson.loads(rows[1]["key"]) == {"id": 2}
        assert rows[1]["changed_fields"] == ["id", "status", "total"]
        assert rows[0]["actor"] == "ann" and rows[1]["actor"] is None
        assert rows[0]["tenant_id"] == "t1" and rows[1]["transaction_id"] == "tx-2"
        now = dt.datetime.now(dt.UTC)
        assert abs((now - rows[0]["changed_at"]).total_seconds()) < 120
        after_type = table.schema.field("after").type
        assert after_type.field("total").type == pa.decimal128(12, 2)

        # Everything since 2019, images as JSON text (typed JSON ticket)
        ticket = {
            "observer_events": {"entity": shop.entity, "since": "2019-01-01", "images": "json"}
        }
        table = client.do_get(flight.Ticket(orjson.dumps(ticket))).read_all()
        assert table.num_rows == 3
        assert table.schema.field("after").type == pa.string()
        first = orjson.loads(table.column("after")[0].as_py())
        assert first["id"] == 1


def test_events_are_listed_and_their_schema_comes_without_running(shop: Shop) -> None:
    with _client(shop) as client:
        ticket = f"observer_events:{shop.entity}:2026-01-01T00:00:00+02:00".encode()
        descriptor = flight.FlightDescriptor.for_command(ticket)
        schema = client.get_schema(descriptor).schema
        assert schema.names[:4] == ["id", "entity", "operation", "key"]
        info = client.get_flight_info(descriptor)
        assert info.schema.equals(schema)
        (endpoint,) = info.endpoints
        body = orjson.loads(endpoint.ticket.ticket)["observer_events"]
        assert body["entity"] == shop.entity
        assert body["since"].startswith("2025-12-31T22:00:00")
        listed = [
            orjson.loads(i.descriptor.command)
            for i in client.list_flights()
            if (i.descriptor.command or b"").startswith(b'{"observer_events"')
        ]
        assert {x["observer_events"]["entity"] for x in listed} >= {shop.entity}


@pytest.mark.parametrize(
    "ticket, words",
    [
        ("observer_events:Nope:2026-01-01", "no table or type 'Nope'"),
        ("observer_events:{e}:yesterday", "not an ISO 8601 time"),
        ("observer_events::2026-01-01", "must name an entity"),
        ('{"observer_events": {"entity": "{e}", "since": "2026-01-01", "follow": 1}}', "follow"),
        ('{"observer_events": {"entity": "{e}", "since": "2026", "x": 1}}', "unknown key 'x'"),
        ("observer_events:{e}'; DROP TABLE orders;--:2026-01-01", "must name an entity"),
    ],
)
def test_bad_events_tickets_get_clear_errors(shop: Shop, ticket: str, words: str) -> None:
    with _client(shop) as client:
        with pytest.raises(flight.FlightServerError) as caught:
            client.do_get(flight.Ticket(ticket.replace("{e}", shop.entity).encode())).read_all()
        assert words in str(caught.value)
        assert "Traceback" not in str(caught.value)
        # the server keeps serving
        ok = client.do_get(flight.Ticket(f"observer_events:{shop.entity}:2026-01-01".encode()))
        assert ok.read_all().num_rows == 0


def test_no_change_log_table_is_a_clear_error(shop: Shop) -> None:
    conn = shop.connect()
    cursor = conn.cursor()
    cursor.execute(f"DROP TABLE {LOG}")
    cursor.close()
    conn.close()
    with _client(shop) as client, pytest.raises(flight.FlightServerError) as caught:
        client.do_get(flight.Ticket(f"observer_events:{shop.entity}:2026-01-01".encode()))
    assert "no change-log table" in str(caught.value)


class Follower:
    """Reads a following stream in a thread; rows arrive in ``rows``."""

    def __init__(self, client: flight.FlightClient, ticket: bytes) -> None:
        self.reader = client.do_get(flight.Ticket(ticket))
        self.rows: queue.Queue[dict[str, Any]] = queue.Queue()
        self.ended: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                chunk = self.reader.read_chunk()
                for row in chunk.data.to_pylist():
                    self.rows.put(row)
        except StopIteration:
            pass
        except BaseException as exc:  # the cancel ends the read with an error
            self.ended = exc
        finally:
            self.done.set()

    def take(self, n: int, timeout: float = PATIENCE) -> list[dict[str, Any]]:
        return [self.rows.get(timeout=timeout) for _ in range(n)]


def _running(shop: Shop) -> int:
    server = shop.handle.server
    with server._lock:
        return sum(len(s) for s in server._running.values())


def _wait_until(check: Any, timeout: float = PATIENCE) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_following_stream_sends_new_events_until_the_client_cancels(shop: Shop) -> None:
    conn = shop.connect()
    shop.log(conn, 1, "insert", None, {"id": 1, "total": "1.00", "status": "a"})
    with _client(shop) as client:
        ticket = {"observer_events": {"entity": shop.entity, "since": "2020-01-01", "follow": True}}
        follower = Follower(client, orjson.dumps(ticket))
        (first,) = follower.take(1)
        assert first["after"]["status"] == "a"
        shop.log(conn, 2, "insert", None, {"id": 2, "total": "2.50", "status": "b"})
        shop.log(conn, 3, "delete", {"id": 1, "total": "1.00", "status": "a"}, None)
        second, third = follower.take(2)
        assert second["after"]["total"] == decimal.Decimal("2.50")
        assert third["operation"] == "delete" and third["after"] is None
        assert follower.rows.empty()
        assert _running(shop) == 1
        follower.reader.cancel()
        assert follower.done.wait(PATIENCE)
        _wait_until(lambda: _running(shop) == 0)
        # the server keeps serving, and the pool is not exhausted by the ended stream
        for _ in range(6):
            got = client.do_get(flight.Ticket(f"observer_events:{shop.entity}:2020-01-01".encode()))
            assert got.read_all().num_rows == 3
    conn.close()


def test_stopping_the_server_ends_a_following_stream_as_unavailable(fresh_sqlite: str) -> None:
    """Flight's shutdown waits for every call, and a following stream never ends by itself:
    the server stops such streams first, so a stop with a follower connected returns."""
    schema, entity = _prepare("sqlite", fresh_sqlite)
    handle = start(fresh_sqlite, schema, flight={"events_poll_interval": 0.05})
    stopped = False
    try:
        with flight.FlightClient(handle.location) as client:
            follower = Follower(client, f"observer_events:{entity}:2020-01-01:follow".encode())
            _wait_until(lambda: _running_on(handle) == 1)
            ended = threading.Thread(target=handle.stop, daemon=True)
            ended.start()
            ended.join(PATIENCE)
            stopped = not ended.is_alive()
            assert stopped, "the server did not stop with a following stream open"
            assert follower.done.wait(PATIENCE)
            assert isinstance(follower.ended, flight.FlightUnavailableError), follower.ended
            assert "shutting down" in str(follower.ended)
    finally:
        if not stopped:
            follower.reader.cancel()


def _running_on(handle: FlightHandle) -> int:
    with handle.server._lock:
        return sum(len(s) for s in handle.server._running.values())


def test_the_cancel_action_ends_a_following_stream(shop: Shop) -> None:
    with _client(shop) as client:
        raw = f"observer_events:{shop.entity}:2020-01-01:follow".encode()
        follower = Follower(client, raw)
        _wait_until(lambda: _running(shop) == 1)
        (result,) = list(client.do_action(flight.Action("cancel", raw)))
        assert orjson.loads(result.body.to_pybytes()) == {"cancelled": 1}
        assert follower.done.wait(PATIENCE)
        _wait_until(lambda: _running(shop) == 0)


def test_a_row_committed_after_a_higher_id_is_not_skipped(pg_shop: Shop) -> None:
    """Transaction A takes id n and commits after B (id n+1) was sent: A's row still comes."""
    shop = pg_shop
    auto = shop.connect()
    late = shop.connect(autocommit=False)
    with _client(shop) as client:
        follower = Follower(client, f"observer_events:{shop.entity}:2020-01-01:follow".encode())
        _wait_until(lambda: _running(shop) == 1)
        shop.log(late, 1, "insert", None, {"id": 1, "total": "1.00", "status": "late"})
        shop.log(auto, 2, "insert", None, {"id": 2, "total": "2.00", "status": "early"})
        (early,) = follower.take(1)
        assert early["after"]["status"] == "early"
        time.sleep(1.5)  # past the settle time: the gap is held by a running transaction
        assert follower.rows.empty()
        late.commit()
        (got,) = follower.take(1)
        assert got["after"]["status"] == "late"
        assert got["id"] < early["id"]
        follower.reader.cancel()
        assert follower.done.wait(PATIENCE)
    late.close()
    auto.close()


def _settle(scanner: EventScanner) -> None:
    """Scan until the gaps are gone. On PostgreSQL a gap goes once every transaction running
    when the scan noted it has ended: the transaction horizon is the server's, so transactions
    of other databases on it (other tests, in a parallel run) hold the gap as long as they
    run, and the wait is bounded by PATIENCE, not by how long this test's own work takes."""
    end = time.monotonic() + PATIENCE
    scanner.scan(100)
    while scanner.gaps:
        assert time.monotonic() < end, f"gaps kept: {scanner.gaps}"
        time.sleep(0.1)
        scanner.scan(100)


def test_a_gap_of_a_rolled_back_transaction_is_dropped_once_it_has_ended(
    pg_shop: Shop,
) -> None:
    shop = pg_shop
    server = shop.handle.server
    scanner = EventScanner(server.pool, server.dialect, LOG, window=3600)
    scanner.start(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    auto = shop.connect()
    aborted = shop.connect(autocommit=False)
    shop.log(aborted, 1, "insert", None, {"id": 1})
    shop.log(auto, 2, "insert", None, {"id": 2})
    rows, _ = scanner.scan(100)
    assert [r.values[1] for r in rows] == ["insert"]
    assert len(scanner.gaps) == 1
    time.sleep(1.1)
    scanner.scan(100)  # notes the transactions running now
    assert len(scanner.gaps) == 1  # the transaction holding the id is still running
    aborted.rollback()
    _settle(scanner)
    aborted.close()
    auto.close()


def test_a_gap_lasts_the_window_or_until_the_transactions_have_ended(shop: Shop) -> None:
    server = shop.handle.server
    now = [0.0]
    scanner = EventScanner(server.pool, server.dialect, LOG, window=30, clock=lambda: now[0])
    scanner.highest = 0
    conn = shop.connect()
    for key in (1, 2, 3):
        shop.log(conn, key, "insert", None, {"id": key})
    cursor = conn.cursor()
    cursor.execute(f"DELETE FROM {LOG} WHERE transaction_id = 'tx-2'")  # an id never filled
    cursor.close()
    conn.close()
    rows, _ = scanner.scan(100)
    assert len(rows) == 2
    assert list(scanner.gaps) == [rows[0].id + 1]
    if shop.dialect != "postgresql":
        now[0] = 29.0
        scanner.scan(100)
        assert len(scanner.gaps) == 1
    now[0] = 31.0
    _settle(scanner)  # PostgreSQL: once the transactions running then have ended


@pytest.fixture
def pg_shop_new_york(fresh_postgresql: str) -> Iterator[Shop]:
    import psycopg

    db = parse_database_url(fresh_postgresql)
    with psycopg.connect(
        host=db.host, port=db.port, user=db.user or None, dbname=db.database, autocommit=True
    ) as conn:
        conn.execute(f"ALTER DATABASE \"{db.database}\" SET timezone = 'America/New_York'")
    yield from _setup("postgresql", fresh_postgresql)


def test_since_is_exact_whatever_the_session_time_zone(pg_shop_new_york: Shop) -> None:
    shop = pg_shop_new_york
    conn = shop.connect()
    shop.log(conn, 1, "insert", None, {"id": 1}, changed_at="2026-01-01T10:00:00+00:00")
    shop.log(conn, 2, "insert", None, {"id": 2}, changed_at="2026-01-01T10:59:59.999999+00:00")
    shop.log(conn, 3, "insert", None, {"id": 3}, changed_at="2026-01-01T11:00:00+00:00")
    shop.log(conn, 4, "insert", None, {"id": 4}, changed_at="2026-01-01T12:00:00+00:00")
    conn.close()
    with _client(shop) as client:
        raw = f"observer_events:{shop.entity}:2026-01-01T06:00:00-05:00".encode()
        table = client.do_get(flight.Ticket(raw)).read_all()
    assert [r["id"] for r in table.column("after").to_pylist()] == [3, 4]
    assert table.column("changed_at")[0].as_py() == dt.datetime(2026, 1, 1, 11, tzinfo=dt.UTC)


def test_events_tickets_need_the_same_key_as_every_ticket(fresh_sqlite: str) -> None:
    key = "k3y-for-the-events-tests-0123456789"
    schema, entity = _prepare("sqlite", fresh_sqlite)
    handle = start(fresh_sqlite, schema, auth={"api_keys": [{"name": "a", "key": key}]})
    shop = Shop("sqlite", fresh_sqlite, handle, entity)
    try:
        conn = shop.connect()
        shop.log(conn, 1, "insert", None, {"id": 1})
        conn.close()
        raw = f"observer_events:{shop.entity}:2020-01-01".encode()
        client = flight.FlightClient(handle.location)
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.do_get(flight.Ticket(raw)).read_all()
        with pytest.raises(OSError, match="no credentials"):  # pyarrow: not always typed
            client.get_schema(flight.FlightDescriptor.for_command(raw))
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {key}".encode())])
        assert client.do_get(flight.Ticket(raw), options).read_all().num_rows == 1
        client.close()
    finally:
        handle.stop()


def test_the_python_client_reads_and_follows_events(shop: Shop) -> None:
    from quiver.flight import connect

    conn = shop.connect()
    shop.log(conn, 1, "insert", None, {"id": 1, "status": "a"})
    with connect(shop.handle.location) as client:
        assert client.events(shop.entity, "2020-01-01").read_all().num_rows == 1
        reader = client.events(shop.entity, "2020-01-01", follow=True, images="json")
        first = reader.read_chunk().data
        assert orjson.loads(first.column("after")[0].as_py())["status"] == "a"
        shop.log(conn, 2, "insert", None, {"id": 2, "status": "b"})
        second = reader.read_chunk().data
        assert orjson.loads(second.column("after")[0].as_py())["status"] == "b"
        reader.cancel()
    conn.close()
    _wait_until(lambda: _running(shop) == 0)


def test_a_jump_of_the_id_sequence_keeps_at_most_the_gap_limit(fresh_sqlite: str) -> None:
    schema, entity = _prepare("sqlite", fresh_sqlite)
    handle = start(fresh_sqlite, schema)
    shop = Shop("sqlite", fresh_sqlite, handle, entity)
    try:
        conn = shop.connect()
        shop.log(conn, 1, "insert", None, {"id": 1})
        cursor = conn.cursor()
        cursor.execute(f"UPDATE sqlite_sequence SET seq = 5000000000 WHERE name = '{LOG}'")
        cursor.close()
        shop.log(conn, 2, "insert", None, {"id": 2})
        conn.close()
        server = handle.server
        scanner = EventScanner(server.pool, server.dialect, LOG, window=60)
        # CPU time of this thread (where the scan runs), which a busy machine does not
        # inflate: a scan that stepped through the 5e9 missing ids would take hours of it.
        started = time.thread_time()
        rows, _ = scanner.scan(100)
        assert time.thread_time() - started < 5
        assert [r.id for r in rows] == [1, 5000000001]
        assert len(scanner.gaps) == MAX_GAPS
        assert max(scanner.gaps) == 5000000000
    finally:
        handle.stop()
