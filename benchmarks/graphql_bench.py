"""GraphQL throughput against a hand-written baseline, on PostgreSQL with Chinook.

Run by hand (not a test):  .venv/bin/python benchmarks/graphql_bench.py [--duration 10]

For each query it measures, with wrk (1 thread, 10 connections):
  - Quiver: ``quiver serve`` with N worker processes, POSTing the GraphQL document;
  - baseline: a minimal starlette + uvicorn + asyncpg app with the same number of workers that
    runs the very SQL Quiver generated for the query and returns the bytes.
and prints rps, p50 and p99 for both and Quiver's rps over the baseline's. The two servers run
alternately, ``--rounds`` times each, and the median run of each is kept.
Everything (wrk, both servers, PostgreSQL) shares this machine's cores; nothing is pinned.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "quiver_bench"
DB_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"

QUERIES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "a_artist_by_id": (
        "query($id: Int!) { artist(artistId: $id) { name albums { title } } }",
        {"id": 90},
    ),
    "b_20_albums_tracks_genre": (
        "{ albums(limit: 20) { title tracks { name genre { name } } } }",
        None,
    ),
    "c_all_albums_tracks_genre": (
        "{ albums { title tracks { name genre { name } } } }",
        None,
    ),
    "d_typename": ("{ __typename }", None),
}

BASELINE_APP = """
import contextlib
import asyncpg
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

STATEMENTS = {statements!r}
pool = None

@contextlib.asynccontextmanager
async def lifespan(app):
    global pool
    async def init(conn):
        await conn.set_type_codec("json", encoder=lambda v: v, decoder=lambda v: v,
                                  schema="pg_catalog", format="binary")
    pool = await asyncpg.create_pool({url!r}, min_size=5, max_size=10, init=init)
    yield
    await pool.close()

def endpoint(name):
    key, text, params = STATEMENTS[name]
    head = b'{{"data":{{"' + key.encode() + b'":'
    async def run(request):
        await request.body()
        if text is None:
            body = head + b'"Query"}}}}'
        else:
            value = await pool.fetchval(text, *params)
            body = head + (value if value is not None else b"null") + b"}}}}"
        return Response(body, media_type="application/json")
    return run

app = Starlette(routes=[Route("/" + n, endpoint(n), methods=["POST"]) for n in STATEMENTS],
                lifespan=lifespan)
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


async def prepare_database() -> None:
    from quiver.demo.chinook import load_postgresql

    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await admin.close()
    await load_postgresql(DB_URL)


async def generated_sql() -> dict[str, tuple[str, str | None, list[Any]]]:
    """The SQL Quiver runs for each query, with its parameters bound for the benchmark."""
    from quiver.config.settings import QuiverSettings
    from quiver.graphql.engine import GraphQLEngine
    from quiver.schema.reflect import reflect_database

    schema = await reflect_database(DB_URL)
    engine = await GraphQLEngine.open(
        schema, QuiverSettings.model_validate({"database": {"url": DB_URL}})
    )
    out: dict[str, tuple[str, str | None, list[Any]]] = {}
    try:
        for name, (query, variables) in QUERIES.items():
            prepared = engine.prepare(query, None)
            outcome = await engine.execute(prepared, variables)
            assert outcome.kind == "data", outcome.body[:300]
            (steps,) = prepared.plans.values()
            (step,) = steps
            params = [slot.value(variables or {}) for slot in step.slots]
            out[name] = (step.key, step.sql or None, params)
    finally:
        await engine.close()
    return out


def run_wrk(url: str, body: bytes, duration: int, connections: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT.format(body=json.dumps(body.decode())))
        script = f.name
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} error responses\n{out}")

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99")}


def start(cmd: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(port)
    except RuntimeError:
        stop(proc)
        log.seek(0)
        raise RuntimeError(f"{cmd[0]} did not start:\n{log.read()[-3000:]}") from None
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="server processes, both servers")
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded database")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating runs per server; the median is kept"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk")
    if not args.skip_load:
        asyncio.run(prepare_database())
    statements = asyncio.run(generated_sql())

    workdir = Path(tempfile.mkdtemp(prefix="quiver-bench-"))
    (workdir / "baseline_app.py").write_text(BASELINE_APP.format(statements=statements, url=DB_URL))
    qport, bport = free_port(), free_port()
    quiver = start(
        [
            str(VENV_BIN / "quiver"),
            "serve",
            "--db",
            DB_URL,
            "--port",
            str(qport),
            "--workers",
            str(args.workers),
        ],
        qport,
    )
    baseline = start(
        [
            str(VENV_BIN / "uvicorn"),
            "baseline_app:app",
            "--port",
            str(bport),
            "--workers",
            str(args.workers),
            "--no-access-log",
            "--log-level",
            "warning",
            "--app-dir",
            str(workdir),
        ],
        bport,
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, (query, variables) in QUERIES.items():
            body = json.dumps({"query": query, "variables": variables}).encode()
            # Warm both (connection pools, prepared statements, plan caches).
            run_wrk(f"http://127.0.0.1:{qport}/graphql", body, 2, args.connections)
            run_wrk(f"http://127.0.0.1:{bport}/{name}", body, 2, args.connections)
            qs, bs = [], []
            for _ in range(args.rounds):
                qs.append(
                    run_wrk(
                        f"http://127.0.0.1:{qport}/graphql", body, args.duration, args.connections
                    )
                )
                bs.append(
                    run_wrk(
                        f"http://127.0.0.1:{bport}/{name}", body, args.duration, args.connections
                    )
                )
            q = sorted(qs, key=lambda r: r["rps"])[len(qs) // 2]
            b = sorted(bs, key=lambda r: r["rps"])[len(bs) // 2]
            results[name] = {"quiver": q, "baseline": b, "ratio": q["rps"] / b["rps"]}
            print(
                f"{name:28s} quiver {q['rps']:8.0f} rps p50 {q['p50_ms']:6.2f} ms"
                f" p99 {q['p99_ms']:6.2f} ms | baseline {b['rps']:8.0f} rps p50"
                f" {b['p50_ms']:6.2f} ms p99 {b['p99_ms']:6.2f} ms"
                f" | ratio {results[name]['ratio']:.2f}",
                flush=True,
            )
    finally:
        stop(quiver)
        stop(baseline)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
