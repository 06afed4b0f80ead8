"""A real HTTP receiver for webhooks, on 127.0.0.1 and a free port, and a bookshop to observe."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from quiver.config.settings import QuiverSettings
from quiver.observers.dispatcher import Dispatcher
from quiver.observers.jobqueue import JobQueue, SqlJobQueue
from quiver.observers.redisqueue import RedisJobQueue
from quiver.observers.service import open_dispatcher
from tests.conftest import DIALECTS, Dialect
from tests.graphql.conftest import Runner
from tests.graphql.mutation_fixtures import open_bookshop
from tests.graphql.servers import QUIVER, free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next status of ``statuses`` (then 200). While ``hold`` is
    set, a request is recorded and then left waiting for ``release``."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hold: bool = False
    delay: float = 0.0  # seconds each answer waits
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: Request) -> Response:
        self.received.append(Received(dict(request.headers), await request.body()))
        self.arrived.set()
        if self.hold:
            await self.release.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        return Response(b"ok" if status < 300 else b"boom", status_code=status)


@pytest_asyncio.fixture(loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/hook", rec.handle, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    rec.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield rec
    finally:
        rec.release.set()
        server.should_exit = True
        await task


@dataclass
class Shop:
    runner: Runner
    url: str
    dialect: Dialect

    async def mutate(self, query: str) -> Any:
        return await self.runner.data(query)

    def settings(self, observers: list[dict[str, Any]], **dispatcher: Any) -> QuiverSettings:
        retry = {"max_attempts": 3, "initial_delay": 0.01, "max_delay": 0.02}
        return QuiverSettings.model_validate(
            {
                "database": {"url": self.url, "pool_max": 2},
                "observers": observers,
                "dispatcher": {"retry": retry, **dispatcher},
            }
        )

    async def dispatcher(self, observers: list[dict[str, Any]], **kw: Any) -> Dispatcher:
        return await open_dispatcher(self.settings(observers, **kw))


@pytest_asyncio.fixture(params=DIALECTS, loop_scope="session")
async def shop(request: pytest.FixtureRequest) -> AsyncIterator[Shop]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    runner = await open_bookshop(dialect, url)
    try:
        yield Shop(runner, url, dialect)
    finally:
        await runner.engine.close()
        runner.db.close()


REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class QueueBackend:
    """Where the ``job`` action's jobs wait: the observed database's table, or Redis under a
    key prefix of this test's own (its keys deleted afterwards)."""

    kind: str
    prefix: str
    opened: list[RedisJobQueue] = field(default_factory=list)

    def action(self) -> dict[str, Any]:
        """The job action's keys that select this queue."""
        return {"queue": REDIS_URL, "key_prefix": self.prefix} if self.kind == "redis" else {}

    def queue(self, d: Dispatcher) -> JobQueue:
        if self.kind != "redis":
            return SqlJobQueue(d.store.db)
        queue = RedisJobQueue(REDIS_URL, self.prefix)
        self.opened.append(queue)
        return queue


async def drop_keys(prefix: str) -> None:
    """Delete every Redis key under ``prefix``."""
    queue = RedisJobQueue(REDIS_URL, prefix)
    try:
        keys = [k async for k in queue.client.scan_iter(f"{prefix}:*", count=1000)]
        if keys:
            await queue.client.delete(*keys)
    finally:
        await queue.close()


@pytest_asyncio.fixture(params=["table", "redis"], loop_scope="session")
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[QueueBackend]:
    chosen = QueueBackend(request.param, f"quiver_t:{uuid.uuid4().hex[:12]}:jobs")
    try:
        yield chosen
    finally:
        for queue in chosen.opened:
            await queue.close()
        if chosen.kind == "redis":
            await drop_keys(chosen.prefix)


@dataclass
class Served:
    """A ``quiver serve`` subprocess: its base URL, a client, and its output once stopped."""

    base: str
    client: httpx.AsyncClient
    proc: asyncio.subprocess.Process
    output: str = ""


@asynccontextmanager
async def quiver_serve(config: str, port: int) -> AsyncIterator[Served]:
    """``quiver serve -c config`` on ``port``, once it answers /readyz; stopped with SIGTERM
    afterwards, after which ``output`` holds what it printed."""
    proc = await asyncio.create_subprocess_exec(
        QUIVER, "serve", "-c", config,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    served = Served(f"http://127.0.0.1:{port}", httpx.AsyncClient(), proc)
    try:
        for _ in range(200):
            try:
                if (await served.client.get(f"{served.base}/readyz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.returncode is None, "quiver serve exited"
            await asyncio.sleep(0.2)
        yield served
    finally:
        await served.client.aclose()
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        served.output = out.decode()


async def mutate_over_http(served: Served, *queries: str) -> None:
    for query in queries:
        r = await served.client.post(f"{served.base}/graphql", json={"query": query})
        assert r.status_code == 200 and "errors" not in r.json(), r.text
