"""The HTTP server around the GraphQL app: CORS, request ids, logs, unexpected failures, and
starting on a port that is taken."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import pytest_asyncio
import websockets

from quiver.config.loader import load_settings
from quiver.config.settings import QuiverSettings
from quiver.graphql.http import GraphQLApp, create_app
from quiver.runtime.errors import ConfigError
from quiver.runtime.logs import configure_logging, reset_logging
from quiver.schema.reflect import reflect_database
from tests.graphql.servers import QUIVER, free_port

ORIGIN = "https://app.example.com"
QUERY = {"query": "{ artists(limit: 1, orderBy: {artistId: ASC}) { name } }"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sqlite_url(chinook_sqlite: Path) -> str:
    return f"sqlite:///{chinook_sqlite.absolute()}"


async def open_app(url: str, **sections: Any) -> GraphQLApp:
    settings = QuiverSettings.model_validate({"database": {"url": url}, **sections})
    app = create_app(await reflect_database(url), settings)
    await app.startup()
    return app


def client_for(app: GraphQLApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://quiver")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cors_app(sqlite_url: str) -> AsyncIterator[GraphQLApp]:
    app = await open_app(sqlite_url, cors={"allow_origins": [ORIGIN]})
    try:
        yield app
    finally:
        await app.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def plain_app(sqlite_url: str) -> AsyncIterator[GraphQLApp]:
    app = await open_app(sqlite_url)
    try:
        yield app
    finally:
        await app.shutdown()


# ----- CORS -----
async def test_a_preflight_from_an_allowed_origin_is_answered(cors_app: GraphQLApp) -> None:
    async with client_for(cors_app) as c:
        r = await c.options(
            "/graphql",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "content-type" in r.headers["access-control-allow-headers"].lower()
    assert r.headers["access-control-max-age"] == "600"


async def test_a_request_from_an_allowed_origin_gets_the_cors_headers(
    cors_app: GraphQLApp,
) -> None:
    async with client_for(cors_app) as c:
        r = await c.post("/graphql", json=QUERY, headers={"origin": ORIGIN})
    assert r.status_code == 200
    assert r.json()["data"]["artists"] == [{"name": "AC/DC"}]
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "x-request-id" in r.headers["access-control-expose-headers"].lower()


async def test_another_origin_gets_no_cors_headers(cors_app: GraphQLApp) -> None:
    async with client_for(cors_app) as c:
        pre = await c.options(
            "/graphql",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        r = await c.post("/graphql", json=QUERY, headers={"origin": "https://evil.example"})
    assert pre.status_code == 400
    assert "access-control-allow-origin" not in pre.headers
    assert "access-control-allow-origin" not in r.headers


async def test_without_allowed_origins_there_is_no_cors(plain_app: GraphQLApp) -> None:
    async with client_for(plain_app) as c:
        pre = await c.options(
            "/graphql", headers={"origin": ORIGIN, "access-control-request-method": "POST"}
        )
        r = await c.post("/graphql", json=QUERY, headers={"origin": ORIGIN})
    assert pre.status_code == 405
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(
    ("cors", "message"),
    [
        (
            {"allow_origins": ["https://app.example.com/"]},
            "cors.allow_origins: 'https://app.example.com/' is not an origin as browsers send it",
        ),
        (
            {"allow_origins": ["https://App.example.com"]},
            "cors.allow_origins: 'https://App.example.com' is not an origin as browsers send it",
        ),
        (
            {"allow_origins": ["app.example.com"]},
            "cors.allow_origins: 'app.example.com' is not an origin as browsers send it",
        ),
        (
            {"allow_origin_regex": "https://[a-z.example.com"},
            "cors.allow_origin_regex: 'https://[a-z.example.com' is not a regular expression",
        ),
        (
            {"allow_origins": ["*"], "allow_credentials": True},
            "cors: allow_credentials with allow_origins ['*'] would let every web site",
        ),
    ],
)
def test_cors_settings_that_could_never_work_as_meant_are_refused(
    cors: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ={}, base={"cors": cors})
    (detail,) = err.value.details
    assert detail.message.startswith(message), detail.message


def test_cors_settings_take_origins_with_ports_and_addresses() -> None:
    origins = ["http://localhost:3000", "http://[::1]:8080", "https://app.example.com", "*"]
    s = load_settings(None, environ={}, base={"cors": {"allow_origins": origins}})
    assert s.cors.allow_origins == origins


async def test_a_preflight_carries_a_request_id_and_has_its_access_log_line(
    sqlite_url: str, log_lines: io.StringIO
) -> None:
    app = await open_app(sqlite_url, cors={"allow_origins": [ORIGIN]}, log={"access": True})
    try:
        async with client_for(app) as c:
            allowed = await c.options(
                "/graphql",
                headers={
                    "origin": ORIGIN,
                    "access-control-request-method": "POST",
                    "x-request-id": "pre-1",
                },
            )
            refused = await c.options(
                "/graphql",
                headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
            )
            plain = await c.post("/graphql", json=QUERY, headers={"x-request-id": "post-1"})
    finally:
        await app.shutdown()
    assert (allowed.status_code, refused.status_code) == (200, 400)
    assert allowed.headers.get_list("x-request-id") == ["pre-1"]
    assert len(refused.headers.get_list("x-request-id")) == 1
    assert plain.headers.get_list("x-request-id") == ["post-1"]
    access = [rec for rec in _records(log_lines) if rec.get("path") == "/graphql"]
    assert [(a["method"], a["status"], a["request_id"]) for a in access] == [
        ("OPTIONS", 200, "pre-1"),
        ("OPTIONS", 400, refused.headers["x-request-id"]),
        ("POST", 200, "post-1"),
    ]


# ----- request ids -----
async def test_each_answer_carries_a_new_request_id(plain_app: GraphQLApp) -> None:
    async with client_for(plain_app) as c:
        ids = {(await c.post("/graphql", json=QUERY)).headers["x-request-id"] for _ in range(3)}
        ids.add((await c.get("/healthz")).headers["x-request-id"])
    assert len(ids) == 4
    assert all(len(i) == 24 for i in ids)


async def test_the_clients_request_id_is_returned(plain_app: GraphQLApp) -> None:
    async with client_for(plain_app) as c:
        r = await c.post("/graphql", json=QUERY, headers={"x-request-id": "trace-42.a:b"})
        bad = await c.post("/graphql", json=QUERY, headers={"x-request-id": "a b\tc"})
    assert r.headers["x-request-id"] == "trace-42.a:b"
    assert bad.headers["x-request-id"] != "a b\tc"
    assert len(bad.headers["x-request-id"]) == 24


# ----- unexpected failures -----
@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("json", stream=buffer)
    try:
        yield buffer
    finally:
        reset_logging()


def _records(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in buffer.getvalue().splitlines() if line]


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_a_failure_inside_the_engine_is_a_500_logged_with_its_request_id(
    sqlite_url: str, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch, accept: str
) -> None:
    app = await open_app(sqlite_url)
    try:
        assert app.engine is not None

        async def broken(*args: Any) -> Any:
            raise RuntimeError("secret detail of the failure")

        # Fault injection: the engine's execution raises something nobody expected.
        monkeypatch.setattr(app.engine, "_execute", broken)
        async with client_for(app) as c:
            r = await c.post(
                "/graphql", json=QUERY, headers={"accept": accept, "x-request-id": "req-500"}
            )
    finally:
        await app.shutdown()
    assert r.status_code == 500
    assert r.headers["content-type"].startswith(accept)
    body = r.json()
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret" not in r.text
    failures = [rec for rec in _records(log_lines) if rec["level"] == "error"]
    assert failures, log_lines.getvalue()
    assert failures[0]["request_id"] == "req-500"
    assert "secret detail of the failure" in failures[0]["exception"]


async def test_a_failure_outside_the_engine_is_a_500_too(
    sqlite_url: str, log_lines: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = await open_app(sqlite_url)
    try:
        assert app.engine is not None

        def broken(*args: Any) -> Any:
            raise ValueError("while preparing")

        monkeypatch.setattr(app.engine, "prepare", broken)
        async with client_for(app) as c:
            r = await c.post("/graphql", json=QUERY, headers={"x-request-id": "req-prep"})
    finally:
        await app.shutdown()
    assert r.status_code == 500
    assert r.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert any(rec.get("request_id") == "req-prep" for rec in _records(log_lines))


# ----- the real server: JSON logs, the port in use -----
def _wait_ready(base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    out, err = proc.communicate()
    pytest.fail(f"the server did not start:\n{out}\n{err}")


@pytest.mark.parametrize("flight", ["free", "taken"])
def test_serve_writes_json_logs_with_a_request_id_per_request(sqlite_url: str, flight: str) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    env["QUIVER_LOG_ACCESS"] = "true"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    # a free port, or one another program holds: its warning is a JSON record too
    env["QUIVER_FLIGHT_PORT"] = "0" if flight == "free" else str(taken.getsockname()[1])
    proc = subprocess.Popen(
        [QUIVER, "serve", "--db", sqlite_url, "--port", str(port), "--log-format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        r = httpx.post(f"{base}/graphql", json=QUERY, headers={"x-request-id": "from-client-1"})
        assert r.headers["x-request-id"] == "from-client-1"
        other = httpx.post(f"{base}/graphql", json=QUERY).headers["x-request-id"]
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
        taken.close()
    assert proc.returncode == 0, err
    assert out == ""  # what a text-mode run prints on stdout is a log record here
    records = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    assert records, err  # every stderr line is one JSON object
    assert records[0]["message"].startswith("Serving 13 types at http://127.0.0.1:")
    flight_lines = [r["message"] for r in records if r["message"].startswith("Arrow Flight")]
    assert len(flight_lines) == 1, flight_lines  # listening, or not started
    warned = [r for r in records if r["message"].startswith("Arrow Flight not started")]
    assert len(warned) == (flight == "taken"), err
    assert all(r["level"] == "warning" and "flight.enabled" in r["message"] for r in warned)
    for rec in records:
        assert {"ts", "level", "message", "logger"} <= rec.keys()
    assert any(rec["logger"].startswith("uvicorn") for rec in records)  # the server's own lines
    access = [rec for rec in records if rec.get("path") == "/graphql"]
    assert [a["request_id"] for a in access] == ["from-client-1", other]
    assert all(a["status"] == 200 and a["method"] == "POST" for a in access)


def test_a_port_in_use_is_one_error_line_with_a_fix(sqlite_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [QUIVER, "serve", "--db", sqlite_url, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""  # nothing says it is serving, nor that Flight started
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: server.port: cannot listen on 127.0.0.1:{port}: Address already in use"
        f" (EADDRINUSE) (stop the process listening on port {port} (`ss -ltnp 'sport = :{port}'`"
        " names it), or choose another endpoint: --port 8080 (server.port in quiver.yaml, or"
        " QUIVER_SERVER_PORT))"
    ]


@pytest.mark.parametrize("how", ["--log-format", "QUIVER_LOG_FORMAT"])
def test_with_json_logs_a_failure_to_start_is_a_json_error_record(
    sqlite_url: str, how: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    flag = ["--log-format", "json"] if how == "--log-format" else []
    if how == "QUIVER_LOG_FORMAT":
        env["QUIVER_LOG_FORMAT"] = "json"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        in_use = subprocess.run(
            [
                QUIVER,
                "serve",
                "--db",
                sqlite_url,
                "--port",
                str(port),
                "--set",
                "flight.port=0",
                *flag,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    bad_setting = subprocess.run(
        [QUIVER, "serve", "--db", sqlite_url, "--set", "graphql.max_depth=deep", *flag],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    for result in (in_use, bad_setting):
        assert result.returncode == 1, result.stderr
        lines = (result.stdout + result.stderr).splitlines()
        records = [orjson.loads(line) for line in lines]
        errors = [r for r in records if r["level"] == "error"]
        assert len(errors) == 1, records
        assert {"ts", "level", "message", "logger"} <= errors[0].keys()
    assert in_use_message(in_use.stderr).startswith(
        f"server.port: cannot listen on 127.0.0.1:{port}"
    )
    assert "graphql.max_depth" in in_use_message(bad_setting.stderr)


def in_use_message(stderr: str) -> str:
    return str(
        next(r for r in map(orjson.loads, stderr.splitlines()) if r["level"] == "error")["message"]
    )


def test_an_address_not_of_this_machine_is_one_error_line(sqlite_url: str) -> None:
    result = subprocess.run(
        [QUIVER, "serve", "--db", sqlite_url, "--host", "192.0.2.1", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "error: server.host: cannot listen on 192.0.2.1:0: Cannot assign requested address"
        " (EADDRNOTAVAIL) (192.0.2.1 is not an address of this machine"
    )
    assert "--host" in line


def test_the_start_up_line_brackets_an_ipv6_address(sqlite_url: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [QUIVER, "serve", "--db", sqlite_url, "--host", "::1", "--port", str(port),
         "--set", "flight.enabled=false"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert first.startswith(f"Serving 13 types at http://[::1]:{port}/graphql"), first


def test_a_request_still_running_when_the_stop_timeout_ends_is_answered_503(
    fresh_postgresql: str,
) -> None:
    with psycopg.connect(fresh_postgresql) as conn:
        conn.execute("CREATE VIEW slow AS SELECT 1 AS id, pg_sleep(30)::text AS s")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    args = ["serve", "--db", fresh_postgresql, "--port", str(port), "--log-format", "json"]
    args += ["--set", "flight.enabled=false", "--set", "server.shutdown_timeout_ms=500"]
    proc = subprocess.Popen(
        [QUIVER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    base = f"http://127.0.0.1:{port}"
    with ThreadPoolExecutor(1) as pool:
        try:
            _wait_ready(base, proc)
            slow = pool.submit(
                httpx.post,
                f"{base}/graphql",
                json={"query": "{ slows { s } }"},
                headers={"x-request-id": "cut-short-1"},
                timeout=30,
            )
            time.sleep(1)  # the statement runs
            stopped = time.monotonic()
            proc.terminate()
            answer = slow.result()
        finally:
            proc.terminate()
            _out, err = proc.communicate(timeout=20)
    assert time.monotonic() - stopped < 5, err
    assert proc.returncode == 0, err
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["errors"][0]["extensions"]["code"] == "SHUTTING_DOWN"
    records = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    assert not [r for r in records if "exception" in r], err  # no traceback: an expected stop
    cut = [r for r in records if r["message"].startswith("request stopped unanswered")]
    assert [r["request_id"] for r in cut] == ["cut-short-1"]
    with psycopg.connect(fresh_postgresql) as conn:
        sleeping = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(30)%'"
            " AND pid <> pg_backend_pid()"
        ).fetchone()
    assert sleeping == (0,)  # the statement was cancelled, not left running


def test_a_websocket_carries_a_request_id_on_its_accept_and_its_log_lines(
    sqlite_url: str,
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    args = ["serve", "--db", sqlite_url, "--port", str(port), "--log-format", "json"]
    proc = subprocess.Popen(
        [QUIVER, *args, "--set", "flight.enabled=false"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    async def accepted_ids() -> list[str | None]:
        ids = []
        for sent in ({"x-request-id": "socket-1"}, {}):
            async with websockets.connect(
                f"ws://127.0.0.1:{port}/graphql",
                subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
                additional_headers=sent,
            ) as ws:
                assert ws.response is not None
                ids.append(ws.response.headers.get("x-request-id"))
        return ids

    try:
        _wait_ready(f"http://127.0.0.1:{port}", proc)
        given, made = asyncio.run(accepted_ids())
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    assert given == "socket-1"
    assert made is not None and len(made) == 24
    records = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    accepted = [r for r in records if "WebSocket /graphql" in r["message"]]
    assert [r.get("request_id") for r in accepted] == ["socket-1", made], err


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_port_zero_announces_the_port_the_system_picked(sqlite_url: str, command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    env["QUIVER_FLIGHT_ENABLED"] = "false"
    args = ["serve", "--db", sqlite_url] if command == "serve" else ["demo"]
    proc = subprocess.Popen(
        [QUIVER, *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = ""
        while "http://" not in line:
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else ""
        url = line.split("http://", 1)[1].split()[0]
        assert not url.startswith("127.0.0.1:0/"), line
        _wait_ready(f"http://{url.removesuffix('/graphql')}", proc)
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0
