"""Observers: event committed -> webhook received on localhost, on PostgreSQL.

Three processes: this one (the load generator: it commits change-log rows and notes each
commit time), a minimal HTTP/1.1 receiver (asyncio, keep-alive; it notes each arrival time
by the ``X-Quiver-Event`` header), and the dispatcher under test (``quiver observers run``),
or the baseline in its place: a bare loop that reads the same change rows (a watermark on the
id, no ledger, no claims, no conditions) and POSTs them with the same HTTP client (the
webhook action's ``Poster``, the same concurrency). Both phases run for each:

* latency: change rows committed at a fixed rate (``--rate`` events/s, in ticks of 5 ms, one
  transaction per tick) for ``--seconds``; p50/p99/max of received - committed;
* throughput: ``--burst`` rows committed before the dispatcher starts; events/s from the
  first to the last arrival.

    .venv/bin/python benchmarks/observer_bench.py [--db postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import yaml

QUIVER = str(Path(sys.executable).with_name("quiver"))
TABLE = "quiver_change_log"


# --- the receiver ---------------------------------------------------------------------------


class _Receiver(asyncio.Protocol):
    arrivals: dict[int, float] = {}  # noqa: RUF012 (one per process)
    posts = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buf[:head_end].decode("latin-1")
            length = 0
            event = None
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                key = name.strip().lower()
                if key == "content-length":
                    length = int(value)
                elif key == "x-quiver-event":
                    event = int(value)
            if len(self.buf) < head_end + 4 + length:
                return
            self.buf = self.buf[head_end + 4 + length :]
            now = time.time()
            _Receiver.posts += 1
            if head.startswith("GET /results"):
                body = orjson.dumps(
                    {"posts": _Receiver.posts, "arrivals": list(_Receiver.arrivals.items())}
                )
                _Receiver.arrivals = {}
                _Receiver.posts = 0
            else:
                body = b"ok"
                if event is not None:
                    _Receiver.arrivals.setdefault(event, now)
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n%s"
                % (len(body), body)
            )


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Receiver, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


# --- the baseline: a bare read-and-POST loop ------------------------------------------------


async def _baseline(url: str, hook: str, concurrency: int, batch: int) -> None:
    from quiver.observers.posting import Poster

    conn = await asyncpg.connect(url)
    client = Poster(10)
    limit = asyncio.Semaphore(concurrency)
    last = 0

    async def post(row: Any) -> None:
        body = orjson.dumps(
            {
                "event_id": row["id"],
                "entity": row["entity"],
                "operation": row["operation"],
                "key": orjson.loads(row["entity_key"]),
                "after": orjson.loads(row["after_image"]),
            }
        )
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": str(row["id"]),
            "X-Quiver-Event": str(row["id"]),
        }
        async with limit:
            await client.post(hook, body, headers, "baseline")

    print("ready", flush=True)
    while True:
        rows = await conn.fetch(
            f"SELECT id, entity, entity_key::text, operation, after_image::text FROM {TABLE}"
            " WHERE id > $1 ORDER BY id LIMIT $2",
            last,
            batch,
        )
        if rows:
            last = rows[-1]["id"]
            await asyncio.gather(*(post(r) for r in rows))
        if len(rows) < batch:
            await asyncio.sleep(0.05)


# --- the load generator ---------------------------------------------------------------------


async def _reset(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        own = ("quiver_observer_ledger", "quiver_observer_ledger_claims")
        for t in (TABLE, f"{TABLE}_writers", *own, "quiver_observer_dead_letters", "items"):
            await conn.execute(f"DROP TABLE IF EXISTS {t}")
        await conn.execute("CREATE TABLE items (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
        await conn.execute(
            f"CREATE TABLE {TABLE} (id BIGSERIAL PRIMARY KEY, entity TEXT NOT NULL,"
            " entity_key JSONB NOT NULL, operation TEXT NOT NULL, before_image JSONB,"
            " after_image JSONB, changed_fields JSONB NOT NULL, actor TEXT, tenant_id TEXT,"
            " transaction_id TEXT NOT NULL, changed_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
    finally:
        await conn.close()


# As Quiver's own writers do (quiver.sql.changelog), the insert sends a NOTIFY on commit.
_INSERT = (
    f"WITH w AS (INSERT INTO {TABLE} (entity, entity_key, operation, after_image,"
    " changed_fields, transaction_id) SELECT 'Item', jsonb_build_object('id', g), 'insert',"
    " jsonb_build_object('id', g, 'n', g), '[\"id\", \"n\"]', $2"
    " FROM generate_series($1::bigint, $1::bigint + $3 - 1) g RETURNING id),"
    f" n AS (SELECT pg_notify('quiver_changes', '{TABLE}'))"
    " SELECT w.id FROM w, n ORDER BY w.id"
)


async def _commit(conn: Any, first: int, count: int) -> tuple[list[int], float]:
    async with conn.transaction():
        rows = await conn.fetch(_INSERT, first, str(uuid.uuid4()), count)
    return [r[0] for r in rows], time.time()


async def _results(port: int) -> tuple[int, dict[int, float]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /results HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(x.split(b":")[1] for x in lines if x.lower().startswith(b"content-length")))
    doc = orjson.loads(await reader.readexactly(length))
    writer.close()
    return int(doc["posts"]), {int(k): float(v) for k, v in doc["arrivals"]}


_SEEN: dict[int, float] = {}  # every arrival the receiver reported, by event id


async def _wait_for(port: int, ids: set[int], timeout: float) -> dict[int, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, arrivals = await _results(port)
        for k, v in arrivals.items():
            _SEEN.setdefault(k, v)
        if ids <= _SEEN.keys():
            break
        await asyncio.sleep(0.1)
    return _SEEN


async def _start(args: list[str], env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=None, env=env
    )
    assert proc.stdout is not None
    if b"ready" not in await asyncio.wait_for(proc.stdout.readline(), 60):
        raise RuntimeError(f"{args[:3]} did not start")
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _run_one(kind: str, opts: argparse.Namespace, port: int, cfg: Path) -> dict[str, float]:
    """One subject (``quiver`` or ``baseline``): latency phase, then throughput phase."""
    hook = f"http://127.0.0.1:{port}/hook"
    out: dict[str, float] = {}
    await _reset(opts.db)
    await _results(port)
    _SEEN.clear()
    conn = await asyncpg.connect(opts.db)

    async def subject() -> asyncio.subprocess.Process:
        if kind == "baseline":
            return await _start([sys.executable, __file__, "--baseline-loop", opts.db, hook,
                                 str(opts.concurrency), str(opts.batch)])  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            QUIVER, "observers", "run", "-c", str(cfg), "--lanes", str(opts.lanes),
            stdout=asyncio.subprocess.DEVNULL, stderr=None,
        )  # fmt: skip
        # Ready once it delivers: a warm-up event.
        ids, _ = await _commit(conn, 10**9, 1)
        await _wait_for(port, set(ids), 60)
        return proc

    proc = await subject()
    try:
        # Latency at a fixed rate.
        tick = 0.005
        per_tick = max(1, round(opts.rate * tick))
        committed: dict[int, float] = {}
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < opts.seconds:
            due = start + n * tick
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ids, at = await _commit(conn, n * per_tick, per_tick)
            committed.update(dict.fromkeys(ids, at))
            n += 1
        achieved = len(committed) / (time.monotonic() - start)
        arrivals = await _wait_for(port, set(committed), 120)
        lat = [(arrivals[i] - committed[i]) * 1000 for i in committed if i in arrivals]
        out["rate"] = achieved
        out["lost"] = len(committed) - len(lat)
        out["p50"] = statistics.median(lat)
        out["p99"] = _pct(lat, 99)
        out["max"] = max(lat)
    finally:
        await _stop(proc)
    # Throughput: a backlog, then the subject starts.
    ids_all: list[int] = []
    for first in range(0, opts.burst, 1000):
        ids, _ = await _commit(conn, 10**7 + first, min(1000, opts.burst - first))
        ids_all.extend(ids)
    await _results(port)  # forget earlier arrivals
    _SEEN.clear()
    proc = await subject()
    try:
        arrivals = await _wait_for(port, set(ids_all), 300)
        times = [arrivals[i] for i in ids_all if i in arrivals]
        out["burst_lost"] = len(ids_all) - len(times)
        out["throughput"] = len(times) / (max(times) - min(times))
    finally:
        await _stop(proc)
        await conn.close()
    return out


async def _create_database(url: str) -> None:
    """Create the benchmark's database when missing (through the server's ``postgres`` db)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def _main(opts: argparse.Namespace) -> None:
    await _create_database(opts.db)
    port = opts.port
    receiver = await _start([sys.executable, __file__, "--receiver", str(port)])
    work = Path(tempfile.mkdtemp(prefix="observer-bench-"))
    cfg = work / "quiver.yaml"
    doc = {
        "database": {"url": opts.db, "pool_max": 4},
        "observers": [
            {
                "name": "items",
                "entity": "Item",
                "on": ["insert"],
                "actions": [
                    {"type": "webhook", "name": "hook", "url": f"http://127.0.0.1:{port}/hook"}
                ],
            }
        ],
        "dispatcher": {
            "poll_interval": opts.poll,
            "batch_size": opts.batch,
            "concurrency": opts.concurrency,
        },
        "log": {"level": "warning"},
    }
    cfg.write_text(yaml.safe_dump(doc))
    try:
        results = {}
        for kind in opts.subjects:
            results[kind] = await _run_one(kind, opts, port, cfg)
            print(kind, {k: round(v, 2) for k, v in results[kind].items()}, flush=True)
    finally:
        await _stop(receiver)
    if "baseline" in results and "quiver" in results:
        q, b = results["quiver"], results["baseline"]
        print(
            f"\nlatency at {q['rate']:.0f} ev/s: quiver p50 {q['p50']:.1f} ms,"
            f" p99 {q['p99']:.1f} ms"
            f" (baseline p50 {b['p50']:.1f} ms, p99 {b['p99']:.1f} ms; p99 ratio"
            f" {q['p99'] / b['p99']:.2f}x)\nthroughput: quiver {q['throughput']:.0f} ev/s,"
            f" baseline {b['throughput']:.0f} ev/s (ratio {q['throughput'] / b['throughput']:.2f})"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--receiver":
        asyncio.run(_serve(int(sys.argv[2])))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline-loop":
        url, hook, conc, batch = sys.argv[2:6]
        asyncio.run(_baseline(url, hook, int(conc), int(batch)))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", default=os.environ.get(
        "QUIVER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/observer_bench"))  # fmt: skip
    p.add_argument("--rate", type=float, default=1000.0, help="events/s of the latency phase")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the latency phase")
    p.add_argument("--burst", type=int, default=20_000, help="events of the throughput phase")
    p.add_argument("--batch", type=int, default=200, help="dispatcher.batch_size")
    p.add_argument("--concurrency", type=int, default=32, help="dispatcher.concurrency")
    p.add_argument("--lanes", type=int, default=2, help="quiver observers run --lanes")
    p.add_argument(
        "--poll",
        type=float,
        default=0.5,
        help="dispatcher.poll_interval (on PostgreSQL the dispatcher wakes on the writers' NOTIFY)",
    )
    p.add_argument("--port", type=int, default=18931)
    p.add_argument("--subjects", nargs="+", default=["baseline", "quiver"])
    asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    main()
