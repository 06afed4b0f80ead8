"""A live server and the reference subscriptions client (npm ``graphql-ws``) for the tests.

:func:`node_client_path` installs ``graphql-ws`` and ``ws`` once into
``~/.cache/quiver-test-npm`` with the machine's npm (skipping, with the reason, when npm cannot
reach its registry). :class:`LiveServer` runs the GraphQL app under uvicorn inside the test's
event loop, over a bookshop database; :class:`NodeClient` runs the example client
``examples/subscriptions/watch_changes.cjs`` and reads the JSON lines it prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import GraphQLApp, create_app
from quiver.graphql.server import BackpressuredWebSocketProtocol
from quiver.schema.reflect import reflect_database
from tests.conftest import ChinookDb, Dialect
from tests.graphql.mutation_fixtures import bookshop_statements
from tests.graphql.servers import free_port

#: The WebSocket subprotocol of GraphQL over WebSocket.
PROTOCOL = "graphql-transport-ws"
CLIENT_SCRIPT = Path(__file__).parents[2] / "examples" / "subscriptions" / "watch_changes.cjs"
NPM_PREFIX = Path.home() / ".cache" / "quiver-test-npm"
NPM_PACKAGES = ("graphql-ws@6", "ws@8", "graphql@16")


def node_modules() -> Path:
    """``node_modules`` holding graphql-ws and ws, installed on first use; skips the test
    when node or npm is missing or npm cannot install."""
    modules = NPM_PREFIX / "node_modules"
    if all((modules / p / "package.json").exists() for p in ("graphql-ws", "ws", "graphql")):
        return modules
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.skip("node and npm are needed to run the graphql-ws reference client")
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_PREFIX), *NPM_PACKAGES],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(
            f"npm could not install {' '.join(NPM_PACKAGES)} (is the npm registry reachable?): "
            f"{done.stderr.strip()[-500:]}"
        )
    return modules


class NodeClient:
    """One run of the reference client: subscribes and reports protocol events."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(
        cls,
        modules: Path,
        url: str,
        query: str,
        variables: dict[str, Any] | None = None,
        connection_params: dict[str, Any] | None = None,
    ) -> NodeClient:
        args = [str(CLIENT_SCRIPT), url, query, orjson.dumps(variables or {}).decode()]
        if connection_params is not None:
            args.append(orjson.dumps(connection_params).decode())
        proc = await asyncio.create_subprocess_exec(
            "node",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_PATH": str(modules)},
        )
        client = cls(proc)
        return client

    async def event(self, timeout: float = 15) -> dict[str, Any]:
        """The next event the client prints."""
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            await self.kill()
            err = await self.proc.stderr.read() if self.proc.stderr is not None else b""
            pytest.fail(
                f"no event from the client within {timeout}s; so far {self.events};"
                f" its stderr: {err.decode()[-2000:]}"
            )
        if not line:
            err = b""
            if self.proc.stderr is not None:
                err = await self.proc.stderr.read()
            pytest.fail(f"the client ended without an event: {err.decode()[-2000:]}")
        event: dict[str, Any] = orjson.loads(line)
        self.events.append(event)
        return event

    async def next_payloads(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """The payloads of the next ``count`` ``next`` events (failing on any other event)."""
        out: list[dict[str, Any]] = []
        while len(out) < count:
            event = await self.event(timeout)
            if event["event"] == "connected":
                continue
            assert event["event"] == "next", event
            out.append(event["payload"])
        return out

    async def connected(self) -> None:
        event = await self.event()
        assert event["event"] == "connected", event

    async def quiet(self, seconds: float) -> None:
        """Assert no event arrives within ``seconds``."""
        assert self.proc.stdout is not None
        with contextlib.suppress(TimeoutError):
            line = await asyncio.wait_for(self.proc.stdout.readline(), seconds)
            pytest.fail(f"unexpected event: {line!r}")

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()


class LiveServer:
    """The GraphQL app served by uvicorn in this event loop, over a bookshop database."""

    def __init__(self, app: GraphQLApp, server: uvicorn.Server, port: int, db: ChinookDb) -> None:
        self.app = app
        self.server = server
        self.port = port
        self.db = db
        self.url = f"ws://127.0.0.1:{port}/graphql"
        self.http = f"http://127.0.0.1:{port}"
        #: Sent with the /metrics reads (an Authorization header when API keys are set).
        self.headers: dict[str, str] = {}

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        engine = self.app.engine
        assert engine is not None
        outcome = await engine.execute(engine.prepare(query), variables)
        body = orjson.loads(outcome.body)
        assert outcome.kind == "data" and "errors" not in body, body
        return body["data"]

    async def active(self, count: int, timeout: float = 15) -> None:
        """Wait until ``count`` subscriptions read the change log (the metrics gauge)."""
        want = f"quiver_graphql_subscriptions_active {float(count)}"
        async with httpx.AsyncClient() as http:
            for _ in range(int(timeout / 0.05)):
                body = (await http.get(f"{self.http}/metrics", headers=self.headers)).text
                if want in body:
                    return
                await asyncio.sleep(0.05)
        pytest.fail(f"{count} subscriptions were not running within {timeout}s")

    async def sql(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Plain SQL through an independent driver (``?`` placeholders), in a thread: the
        server's own transactions go on meanwhile."""
        if self.db.dialect != "sqlite":
            text = text.replace("?", "%s")
        rows: list[tuple[Any, ...]] = await asyncio.to_thread(self.db.query, text, params)
        return rows


@contextlib.asynccontextmanager
async def live_server(dialect: Dialect, url: str, **settings: Any) -> AsyncIterator[LiveServer]:
    """Serve a new bookshop at ``url`` (an empty database) with ``settings`` merged in."""
    db = ChinookDb(dialect, url)
    for statement in bookshop_statements(dialect):
        db.query(statement)
    try:
        async with serve_database(db, url, **settings) as server:
            yield server
    finally:
        db.close()


@contextlib.asynccontextmanager
async def watching(
    live: LiveServer, modules: Path, entity: str, query: str
) -> AsyncIterator[NodeClient]:
    """A client subscribed with ``query`` on ``live``, once the change-log triggers of
    ``entity`` (a type name) log writes made outside Quiver; killed on leaving."""
    from quiver.observers.triggers import install_triggers

    engine = live.app.engine
    assert engine is not None
    await install_triggers(engine.database, [engine.catalog.entities[entity]], "quiver_change_log")
    client = await NodeClient.start(modules, live.url, query)
    try:
        await client.connected()
        await live.active(1)
        yield client
    finally:
        await client.kill()


@contextlib.asynccontextmanager
async def serve_database(
    db: ChinookDb, url: str, schemas: list[str] | None = None, **settings: Any
) -> AsyncIterator[LiveServer]:
    """Serve the database ``db`` (at ``url``; its PostgreSQL ``schemas``) as it is, with
    ``settings`` merged in; ``db`` stays open."""
    schema = await reflect_database(url, schemas=schemas)
    merged: dict[str, Any] = {
        "database": {"url": url, "pool_max": 4},
        "subscriptions": {"poll_interval_ms": 50},
    }
    for key, value in settings.items():
        merged[key] = {**merged.get(key, {}), **value}
    app = create_app(schema, QuiverSettings.model_validate(merged))
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        ws=BackpressuredWebSocketProtocol,  # as quiver serve runs it
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        assert server.started, "the server did not start"
        yield LiveServer(app, server, port, db)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)


# ----- a WebSocket client of the protocol, message by message -----
async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    return message


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def acknowledged(live: LiveServer, **options: Any) -> ClientConnection:
    """A socket of ``live`` past ``connection_ack`` (``options`` go to ``connect``)."""
    ws = await connect(live.url, subprotocols=[PROTOCOL], **options)  # type: ignore[list-item]
    await send(ws, {"type": "connection_init"})
    assert await receive(ws) == {"type": "connection_ack"}
    return ws


async def subscribe(
    ws: ClientConnection, op_id: str, query: str, variables: dict[str, Any] | None = None
) -> None:
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    await send(ws, {"id": op_id, "type": "subscribe", "payload": payload})
