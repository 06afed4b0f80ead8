"""A client process that dies mid-stream frees its connection and its query (PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg
import pyarrow.flight as flight

from tests.flight.conftest import reflect, start

CHILD = """
import os, sys
import pyarrow.flight as flight
reader = flight.FlightClient(sys.argv[1]).do_get(flight.Ticket(b"export:Big::"))
reader.read_chunk()
print("read", flush=True)
os._exit(0)
"""

RUNNING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)  # client backends only: autovacuum workers on the freshly filled table show as active


def test_a_client_killed_mid_stream_leaves_no_query_running(fresh_postgresql: str) -> None:
    with psycopg.connect(fresh_postgresql, autocommit=True) as admin:
        admin.execute(
            "CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL);"
            "INSERT INTO big SELECT n, repeat('x', 100) FROM generate_series(1, 1500000) AS n"
        )
        handle = start(fresh_postgresql, reflect(fresh_postgresql))
        try:
            pool = handle.server.pool
            for _ in range(2):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, handle.location],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert out.stdout.strip() == "read", out.stderr
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (
                admin.execute(RUNNING).fetchone() != (0,) or pool.open_count > pool.size
            ):
                time.sleep(0.2)
            assert admin.execute(RUNNING).fetchone() == (0,)
            assert pool.open_count <= pool.size
            client = flight.FlightClient(handle.location)
            try:
                ticket = flight.Ticket(b"export:Big:id<=10:id")
                assert client.do_get(ticket).read_all().num_rows == 10
            finally:
                client.close()
        finally:
            handle.stop()


def test_streams_beyond_max_connections_wait_then_are_refused(fresh_postgresql: str) -> None:
    with psycopg.connect(fresh_postgresql, autocommit=True) as admin:
        admin.execute(
            "CREATE TABLE big (id int PRIMARY KEY, v text NOT NULL);"
            "INSERT INTO big SELECT n, repeat('x', 100) FROM generate_series(1, 300000) AS n"
        )
    flight_settings = {
        "pool_size": 1,
        "max_connections": 1,
        "connection_timeout_ms": 300,
        "batch_rows": 1000,
    }
    handle = start(fresh_postgresql, reflect(fresh_postgresql), flight=flight_settings)
    first = flight.FlightClient(handle.location)
    second = flight.FlightClient(handle.location)
    try:
        # the first stream holds the one connection while its client reads slowly
        reader = first.do_get(flight.Ticket(b"export:Big::"))
        head = reader.read_chunk().data.num_rows
        started = time.monotonic()
        try:
            second.do_get(flight.Ticket(b"export:Big:id<=10:id")).read_all()
        except flight.FlightUnavailableError as err:
            refused = str(err)
        else:
            raise AssertionError("a stream beyond max_connections was served")
        assert time.monotonic() - started >= 0.25
        assert "all 1 database connections of the Flight server are in use" in refused
        assert "flight.max_connections" in refused
        assert handle.server.pool.open_count == 1
        assert head + reader.read_all().num_rows == 300000
        # once the first stream is done, its connection serves the next one
        assert second.do_get(flight.Ticket(b"export:Big:id<=10:id")).read_all().num_rows == 10
        assert handle.server.pool.open_count == 1
    finally:
        first.close()
        second.close()
        handle.stop()
