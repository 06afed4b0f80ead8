"""Arrow Flight export against its baselines, on PostgreSQL, in one run.

Run by hand (not a test):
  .venv/bin/python benchmarks/flight_bench.py [--rows 1000000] [--export-rows 10000000]

It creates a table of ``--export-rows`` rows x 6 columns (int, bigint, text, numeric,
timestamptz, boolean) in a database of its own, starts ``quiver serve`` (HTTP and Flight) on
it, and prints (``--rows`` rows are the first ones, read with a filter ``id <= rows``):

  - Flight export of the whole table vs a direct ADBC read of the same SELECT in this process
    (rows/s each and the ratio; the goal is >= 0.9);
  - the first-batch latency of a Flight export (median of 20);
  - the server's peak RSS growth during one export stream;
  - the whole ``--export-rows`` table exported through Flight end to end (every batch
    received by the client, counted and dropped);
  - 100 / 10K / ``--rows`` rows over HTTP GraphQL JSON (decoded by the client) vs Flight
    (Arrow table in the client), and the ratio.

Everything (client, server, PostgreSQL) shares this machine's cores; nothing is pinned, so
only the ratios of one run mean something.
"""

from __future__ import annotations

import argparse
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import psutil
import psycopg
import pyarrow.flight as flight

VENV_BIN = Path(sys.executable).parent
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB = f"quiver_flight_bench_{uuid.uuid4().hex[:8]}"
URL = f"postgresql://postgres@127.0.0.1:5432/{DB}"
COLUMNS = "id,big,label,amount,createdAt,flag"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(rows: int) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_row (id integer PRIMARY KEY, big bigint NOT NULL, label text, "
            "amount numeric(12,2), created_at timestamptz, flag boolean)"
        )
        conn.execute(
            "INSERT INTO bench_row SELECT g, g::bigint * 1000, 'row ' || g, g / 100.0, "
            "timestamptz '2026-01-01' + g * interval '1 second', g %% 2 = 0 "
            "FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("ANALYZE bench_row")


def adbc_read(conn: object, rows: int) -> float:
    """The same SELECT on an open ADBC connection: what Flight's pooled connection does. The
    bound is a constant: with a bind parameter libpq reads the whole result before ADBC
    hands out anything, which is slower (Flight sends its filter values as constants too)."""
    started = time.perf_counter()
    with conn.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(
            "SELECT id, big, label, amount, created_at, flag FROM bench_row"
            f" WHERE id <= {int(rows)}"
        )
        table = cur.fetch_arrow_table()
    assert table.num_rows == rows
    return time.perf_counter() - started


def flight_read(client: flight.FlightClient, rows: int) -> float:
    started = time.perf_counter()
    ticket = f"export:BenchRow:id<={rows}:{COLUMNS}".encode()
    table = client.do_get(flight.Ticket(ticket)).read_all()
    assert table.num_rows == rows, table.num_rows
    return time.perf_counter() - started


def export_all(client: flight.FlightClient, rows: int) -> float:
    """The whole table through Flight, every batch received and dropped."""
    started = time.perf_counter()
    reader = client.do_get(flight.Ticket(f"export:BenchRow::{COLUMNS}".encode()))
    got = 0
    for chunk in reader:
        got += chunk.data.num_rows
    assert got == rows, got
    return time.perf_counter() - started


def first_batch(client: flight.FlightClient) -> float:
    """Time to the first batch of a filtered export of 100K rows; the rest is read untimed,
    so the connection goes back to the pool (a stream left early closes its connection)."""
    started = time.perf_counter()
    reader = client.do_get(flight.Ticket(f"export:BenchRow:id<=100000:{COLUMNS}".encode()))
    reader.read_chunk()
    elapsed = time.perf_counter() - started
    for _ in reader:
        pass
    return elapsed


def http_read(base: str, rows: int) -> float:
    query = (
        f"{{ benchRows(where: {{id: {{lte: {rows}}}}}) {{ id big label amount createdAt flag }} }}"
    )
    started = time.perf_counter()
    response = httpx.post(f"{base}/graphql", json={"query": query}, timeout=600)
    data = orjson.loads(response.content)["data"]["benchRows"]
    assert len(data) == rows, len(data)
    return time.perf_counter() - started


def peak_rss_growth(pid: int, client: flight.FlightClient, rows: int) -> tuple[int, int]:
    proc = psutil.Process(pid)
    before = proc.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    reader = client.do_get(flight.Ticket(f"export:BenchRow:id<={rows}:{COLUMNS}".encode()))
    for _ in reader:
        pass
    done.set()
    sampler.join()
    return peak - before, peak


def best(fn: object, *args: object, repeat: int = 3) -> float:
    return min(fn(*args) for _ in range(repeat))  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--export-rows", type=int, default=10_000_000)
    args = parser.parse_args()
    rows = args.rows
    total = max(rows, args.export_rows)
    print(f"preparing {total:,} rows x 6 columns ...", flush=True)
    started = time.perf_counter()
    prepare(total)
    print(f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    http_port, flight_port = free_port(), free_port()
    server = subprocess.Popen(
        [
            str(VENV_BIN / "quiver"),
            "serve",
            "--db",
            URL,
            "--port",
            str(http_port),
            "--set",
            f"flight.port={flight_port}",
            "--set",
            "graphql.max_cost=100000000",
            "--set",
            "database.statement_timeout_ms=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("quiver serve did not start")
            time.sleep(0.2)
        client = flight.FlightClient(f"grpc://127.0.0.1:{flight_port}")
        client.wait_for_available(timeout=30)
        idle_rss = psutil.Process(server.pid).memory_info().rss
        import adbc_driver_postgresql.dbapi as pg

        conn = pg.connect(URL)
        flight_read(client, 1000)  # warm the connection pool
        adbc_read(conn, 1000)

        direct = best(adbc_read, conn, rows)
        via_flight = best(flight_read, client, rows)
        print(f"\n{rows:,} rows x 6 columns")
        print(f"  direct ADBC read : {direct:7.3f} s  {rows / direct:12,.0f} rows/s")
        print(f"  Flight export    : {via_flight:7.3f} s  {rows / via_flight:12,.0f} rows/s")
        print(f"  Flight / direct  : {direct / via_flight:.2f}x throughput (goal >= 0.9)")

        latencies = sorted(first_batch(client) for _ in range(20))
        print(
            f"  first batch      : {statistics.median(latencies) * 1000:.1f} ms median of 20"
            f" (min {latencies[0] * 1000:.1f}, max {latencies[-1] * 1000:.1f})"
        )
        growth, peak = peak_rss_growth(server.pid, client, rows)
        print(
            f"  server peak RSS growth during one {rows:,}-row stream: {growth / 2**20:.1f} MB"
            f" (peak {peak / 2**20:.0f} MB; {(peak - idle_rss) / 2**20:.0f} MB above the"
            " server before its first stream)"
        )
        exported = export_all(client, total)
        print(
            f"  {total:,}-row export end to end: {exported:.2f} s"
            f"  ({total / exported:,.0f} rows/s; goal < 8 s for 10M)"
        )

        print("\nHTTP GraphQL JSON vs Flight, same rows, same server")
        for n in (100, 10_000, rows):
            repeat = 5 if n <= 10_000 else 1
            h = best(http_read, base, n, repeat=repeat)
            f = best(flight_read, client, n, repeat=repeat)
            print(
                f"  {n:>9,} rows: HTTP {h:8.4f} s  Flight {f:8.4f} s  Flight {h / f:6.1f}x faster"
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute("SET statement_timeout = '60s'")
            try:
                conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            except psycopg.errors.QueryCanceled:
                print(f"could not drop {DB} within 60 s; drop it by hand")


if __name__ == "__main__":
    main()
