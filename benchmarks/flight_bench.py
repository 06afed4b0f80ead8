"""Arrow Flight export against its baselines, on PostgreSQL, in one run.

Run by hand (not a test):
  .venv/bin/python benchmarks/flight_bench.py [--rows 1000000] [--export-rows 10000000]

It creates a table of ``--export-rows`` rows x 6 columns (int, bigint, text, numeric,
timestamptz, boolean) in a database of its own, starts ``quiver serve`` (HTTP and Flight) on
it, and prints (``--rows`` rows are the first ones, read with a filter ``id <= rows``):

  - Flight export of the whole table vs a direct ADBC read of the same SELECT in this process
    (rows/s each and the ratio; the goal is >= 0.9);
  - the first-batch latency of a Flight export (median of 20), beside its parts: the same
    query's first batch read with ADBC in this process, a one-row export, a bare RPC;
  - the server's peak RSS growth during one export stream;
  - the whole ``--export-rows`` table exported through Flight end to end (every batch
    received by the client, counted and dropped);
  - 100 / 10K / ``--rows`` rows over HTTP GraphQL JSON (decoded by the client) vs Flight
    (Arrow table in the client), as an export ticket and as the same query in a GraphQL
    ticket, and the ratios;
  - the ``--rows`` rows as a partitioned export (2 and 4 endpoints of disjoint key ranges,
    read in parallel threads by ``quiver.flight.connect(...).read_parallel``, GetFlightInfo
    included) beside the single stream and HTTP JSON of the same run, and the ratios;
  - PostgreSQL alone for ``--rows`` rows: the GraphQL planner's JSON query against the
    export's binary COPY, both received by this process and not decoded (the ceiling of the
    HTTP / Flight ratio while the database does both).

Everything (client, server, PostgreSQL) shares this machine's cores; nothing is pinned, so
only the ratios of one run mean something. The load average and core count are printed at
the start and the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

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
        # VACUUM as well: a table this size just written is what autovacuum picks next, and
        # its VACUUM would share the cores with the measurements
        conn.execute("VACUUM (ANALYZE) bench_row")


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


def first_batch_direct(conn: object) -> float:
    """The same filtered query's first batch read straight from ADBC on an open connection in
    this process, with the first-batch size hint the server uses: the database's part of the
    first-batch latency (ADBC's prepare, describe and COPY round trips, the first rows)."""
    started = time.perf_counter()
    cur = conn.cursor()  # type: ignore[attr-defined]
    cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": "2048"})
    cur.execute(
        "SELECT id, big, label, CAST(amount * 100 AS bigint), created_at, flag"
        " FROM bench_row WHERE id <= 100000"
    )
    reader = cur.fetch_record_batch()
    reader.read_next_batch()
    elapsed = time.perf_counter() - started
    for _ in reader:
        pass
    cur.close()
    return elapsed


def first_batch_one_row(client: flight.FlightClient) -> float:
    """An export of one row found by its key: the fixed cost of a DoGet (ticket, plan, the
    three ADBC round trips, gRPC) with no query left running beside it."""
    started = time.perf_counter()
    client.do_get(flight.Ticket(f"export:BenchRow:id=1:{COLUMNS}".encode())).read_all()
    return time.perf_counter() - started


def rpc_round_trip(client: flight.FlightClient) -> float:
    """ListActions: one gRPC call through the Python server, no database."""
    started = time.perf_counter()
    list(client.list_actions())
    return time.perf_counter() - started


def graphql_query(rows: int) -> str:
    return (
        f"{{ benchRows(where: {{id: {{lte: {rows}}}}}) {{ id big label amount createdAt flag }} }}"
    )


def graphql_ticket_read(client: flight.FlightClient, rows: int) -> float:
    """The HTTP benchmark's GraphQL query sent as a Flight GraphQL ticket."""
    started = time.perf_counter()
    ticket = orjson.dumps({"graphql": {"query": graphql_query(rows)}})
    table = client.do_get(flight.Ticket(ticket)).read_all()
    assert table.num_rows == rows, table.num_rows
    return time.perf_counter() - started


def database_statements(rows: int) -> tuple[str, list[Any], str]:
    """The SQL each path sends for the first ``rows`` rows, as Quiver's planners make it: the
    GraphQL planner's JSON query (and its parameters) and the export's SELECT."""
    import asyncio

    from graphql import OperationDefinitionNode, parse
    from quiver.flight.export import pg_inline, plan_export
    from quiver.flight.tickets import ExportTicket, parse_ticket
    from quiver.graphql.cursors import CursorCodec
    from quiver.graphql.planner import plan_operation
    from quiver.graphql.typesystem import build_graphql_schema
    from quiver.schema.catalog import build_catalog
    from quiver.schema.reflect import reflect_database
    from quiver.sql.dialects import dialect_for

    catalog = build_catalog(asyncio.run(reflect_database(URL)))
    gql = build_graphql_schema(catalog)
    dialect = dialect_for("postgresql")
    document = parse(graphql_query(rows))
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    (step,) = plan_operation(catalog, gql, dialect, operation, {}, {}, CursorCodec(None))
    json_params = [slot.value({}) for slot in step.slots]
    ticket = parse_ticket(f"export:BenchRow:id<={rows}:{COLUMNS}".encode())
    assert isinstance(ticket, ExportTicket)
    plan = plan_export(catalog, gql, dialect, ticket)
    return step.sql, json_params, pg_inline(plan.sql, plan.params)


def database_json(json_sql: str, params: list[Any]) -> float:
    """The GraphQL planner's query run by PostgreSQL, its JSON text received (not decoded)."""
    with psycopg.connect(URL, autocommit=True) as conn:
        started = time.perf_counter()
        result = conn.pgconn.exec_params(json_sql.encode(), [str(p).encode() for p in params])
        assert result.ntuples == 1 and len(result.get_value(0, 0) or b"") > 0
        return time.perf_counter() - started


def database_copy(select: str) -> float:
    """The export's SELECT run by PostgreSQL as a binary COPY, every byte received (not
    decoded into Arrow)."""
    with psycopg.connect(URL, autocommit=True) as conn:
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(f"COPY ({select}) TO STDOUT (FORMAT binary)") as cp:
            for _ in cp:
                pass
        return time.perf_counter() - started


def http_read(base: str, rows: int) -> float:
    query = graphql_query(rows)
    started = time.perf_counter()
    response = httpx.post(f"{base}/graphql", json={"query": query}, timeout=600)
    data = orjson.loads(response.content)["data"]["benchRows"]
    assert len(data) == rows, len(data)
    return time.perf_counter() - started


def partitioned_read(client: Any, rows: int, partitions: int) -> float:
    """The filtered export as ``partitions`` endpoints (GetFlightInfo, then every endpoint read
    at once in threads of the client), one Arrow table in the end."""
    started = time.perf_counter()
    ticket = f"export:BenchRow:id<={rows}:{COLUMNS}:partitions={partitions}"
    info = client.info(ticket)
    assert len(info.endpoints) == partitions, len(info.endpoints)
    table = client.read_info(info)
    assert table.num_rows == rows, table.num_rows
    return time.perf_counter() - started


def cpu_seconds(server_pid: int) -> tuple[float, float, float]:
    """CPU seconds (user + system) used so far by this process (the client), the server and
    every PostgreSQL process."""

    def used(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    postgres = 0.0
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] in ("postgres", "postmaster"):
            postgres += used(proc)
    return used(psutil.Process()), used(psutil.Process(server_pid)), postgres


def machine() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}, {os.cpu_count()} cores"


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
    return min(fn(*args) for _ in range(repeat))  # type: ignore[operator,no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--export-rows", type=int, default=10_000_000)
    args = parser.parse_args()
    rows = args.rows
    total = max(rows, args.export_rows)
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {machine()}")
    print(
        "client, server (quiver serve) and PostgreSQL share every core: nothing is pinned",
        flush=True,
    )
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

        conn = pg.connect(URL, autocommit=True)  # as the server's pooled connections
        flight_read(client, 1000)  # warm the connection pool
        adbc_read(conn, 1000)

        direct = best(adbc_read, conn, rows)
        via_flight = best(flight_read, client, rows)
        print(f"\n{rows:,} rows x 6 columns")
        print(f"  direct ADBC read : {direct:7.3f} s  {rows / direct:12,.0f} rows/s")
        print(f"  Flight export    : {via_flight:7.3f} s  {rows / via_flight:12,.0f} rows/s")
        print(f"  Flight / direct  : {direct / via_flight:.2f}x throughput (goal >= 0.9)")

        samples: dict[str, list[float]] = {}
        for _ in range(20):
            # Interleaved, so each sees the same load; the Flight calls back to back (after a
            # pause of a few milliseconds a call first waits for gRPC's threads to wake).
            samples.setdefault("rpc", []).append(rpc_round_trip(client))
            samples.setdefault("one", []).append(first_batch_one_row(client))
            samples.setdefault("first", []).append(first_batch(client))
            samples.setdefault("direct", []).append(first_batch_direct(conn))
        latencies = sorted(samples["first"])
        print(
            f"  first batch      : {statistics.median(latencies) * 1000:.1f} ms median of 20"
            f" (min {latencies[0] * 1000:.1f}, max {latencies[-1] * 1000:.1f}; goal < 5 ms)"
        )
        for key, label in (
            ("direct", "same query's first batch, ADBC in this process"),
            ("one", "an export of one row by key (fixed cost)"),
            ("rpc", "ListActions round trip (gRPC + Python, no database)"),
        ):
            ms = sorted(samples[key])
            print(
                f"    {label:52s}: {statistics.median(ms) * 1000:5.2f} ms median"
                f" (min {ms[0] * 1000:.2f})"
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

        print("\nHTTP GraphQL JSON vs Flight export, same rows, same server")
        http_rows = 0.0
        for n in (100, 10_000, rows):
            repeat = 5 if n <= 10_000 else 1
            h = best(http_read, base, n, repeat=repeat)
            f = best(flight_read, client, n, repeat=repeat)
            http_rows = h
            print(
                f"  {n:>9,} rows: HTTP {h:8.4f} s  Flight {f:8.4f} s  Flight {h / f:6.1f}x faster"
                + ("  (goal >= 15x)" if n == rows else "")
            )
        from quiver.flight import connect

        print(
            f"Partitioned export of the {rows:,} rows: endpoints read in parallel by"
            f" quiver.flight.connect (best of 3, interleaved; {machine()})"
        )
        times: dict[int, list[float]] = {1: [], 2: [], 4: []}
        #: CPU seconds of the client, the server and PostgreSQL during the fastest run
        cpu: dict[int, tuple[float, float, float]] = {}
        with connect(f"grpc://127.0.0.1:{flight_port}") as quiver_client:
            for _ in range(3):
                for n in (1, 2, 4):
                    before = cpu_seconds(server.pid)
                    if n == 1:
                        t = flight_read(client, rows)
                    else:
                        t = partitioned_read(quiver_client, rows, n)
                    after = cpu_seconds(server.pid)
                    if not times[n] or t < min(times[n]):
                        cpu[n] = (after[0] - before[0], after[1] - before[1], after[2] - before[2])
                    times[n].append(t)
        single = min(times[1])
        for n in (1, 2, 4):
            t = min(times[n])
            label = "1 stream   " if n == 1 else f"{n} endpoints"
            client_cpu, server_cpu, pg_cpu = cpu[n]
            print(
                f"  {label} : {t:7.3f} s  {rows / t:12,.0f} rows/s"
                f"  HTTP / this {http_rows / t:5.1f}x"
                + (f" (goal >= 15x)  1 stream / this {single / t:4.2f}x" if n > 1 else "")
            )
            print(
                f"      CPU s: client {client_cpu:.2f}, server {server_cpu:.2f},"
                f" PostgreSQL {pg_cpu:.2f} = {client_cpu + server_cpu + pg_cpu:.2f}"
                f" of {t * (os.cpu_count() or 1):.2f} core-seconds"
            )
        print("HTTP GraphQL JSON vs the same query as a Flight GraphQL ticket")
        for n in (100, 10_000, rows):
            repeat = 5 if n <= 10_000 else 1
            h = best(http_read, base, n, repeat=repeat)
            g = best(graphql_ticket_read, client, n, repeat=repeat)
            print(
                f"  {n:>9,} rows: HTTP {h:8.4f} s  Flight {g:8.4f} s  Flight {h / g:6.1f}x faster"
            )
        json_sql, json_params, select = database_statements(rows)
        db_json = best(database_json, json_sql, json_params, repeat=2)
        db_copy = best(database_copy, select, repeat=2)
        print(
            f"  {rows:,} rows, PostgreSQL alone (received by this process, not decoded):"
            f" JSON {db_json:.3f} s, binary COPY {db_copy:.3f} s = {db_json / db_copy:.1f}x"
        )
        print(f"\n{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; {machine()}")
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
