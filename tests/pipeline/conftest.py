"""Shared fixtures of the pipeline tests: a run context, per-test databases, functions that drive
components directly through their contract (sources yield batches, sinks open/write/commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import pyarrow as pa
import pytest
import pytest_asyncio

from quiver.pipeline.component import LINE_COLUMN, RunContext, component_info


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def unique(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def run_ctx(tmp_path: Path) -> RunContext:
    logs: list[tuple[str, str]] = []
    ctx = RunContext(
        run_id=uuid.uuid4().hex,
        base_dir=str(tmp_path),
        log=lambda message, level: logs.append((level, message)),
    )
    ctx.logs = logs  # type: ignore[attr-defined]
    return ctx


def build(cls: type[Any], options: dict[str, Any]) -> Any:
    """Instantiate a component from its options, as the engine does."""
    info = component_info(cls)
    return cls(info.config.model_validate(options))


async def read_all(source: Any, ctx: RunContext) -> pa.Table:
    batches = [b async for b in source.batches(ctx)]
    if not batches:
        return pa.table({})
    return pa.Table.from_batches(batches)


async def write_all(
    sink: Any, batches: Iterable[pa.RecordBatch], ctx: RunContext, schema: pa.Schema | None = None
) -> None:
    """Open, write every batch, commit; abort and re-raise on failure (the engine's protocol)."""
    items = list(batches)
    await sink.open(schema if schema is not None else items[0].schema, ctx)
    try:
        for batch in items:
            await sink.write(batch)
    except BaseException:
        await sink.abort()
        raise
    await sink.commit()


def without_line(table: pa.Table) -> pa.Table:
    return table.drop_columns([LINE_COLUMN]) if LINE_COLUMN in table.column_names else table


# -- databases ------------------------------------------------------------------------------


@dataclass
class ScratchDatabase:
    """One test's own database: a PostgreSQL schema, a MariaDB database or a SQLite file."""

    dialect: str
    url: str
    namespace: str  # prefix for table names: "schema." for PostgreSQL, "" otherwise
    _conn: Any = None

    def table(self, name: str) -> str:
        return f"{self.namespace}{name}"

    async def query(self, sql: str) -> list[tuple[Any, ...]]:
        if self.dialect == "mysql":
            async with self._conn.cursor() as cur:
                await cur.execute(sql)
                rows = list(await cur.fetchall())
            await self._conn.commit()
            return rows
        return await asyncio.to_thread(self._adbc_query, sql)

    def _adbc_query(self, sql: str) -> list[tuple[Any, ...]]:
        cur = self._conn.cursor()
        try:
            cur.execute(sql)
            rows: list[tuple[Any, ...]] = cur.fetchall() if cur.description else []
            return rows
        finally:
            cur.close()


PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


class MySQLHost(TypedDict):
    host: str
    port: int
    user: str
    password: str


MYSQL_HOST: MySQLHost = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


@pytest_asyncio.fixture(params=["postgresql", "mysql", "sqlite"], loop_scope="function")
async def test_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ScratchDatabase]:
    """A fresh, empty database for one test, in each dialect; dropped afterwards."""
    dialect: str = request.param
    name = unique("q")
    if dialect == "postgresql":
        import adbc_driver_postgresql.dbapi as pg

        conn = pg.connect(PG_URL, autocommit=True)
        db = ScratchDatabase(dialect, PG_URL, f"{name}.", conn)
        await db.query(f'CREATE SCHEMA "{name}"')
        try:
            yield db
        finally:
            await db.query(f'DROP SCHEMA "{name}" CASCADE')
            conn.close()
    elif dialect == "mysql":
        import asyncmy

        conn = await asyncmy.connect(**MYSQL_HOST)
        async with conn.cursor() as cur:
            await cur.execute(f"CREATE DATABASE `{name}`")
            await cur.execute(f"USE `{name}`")
        db = ScratchDatabase(dialect, f"mysql://root@127.0.0.1:3306/{name}", "", conn)
        try:
            yield db
        finally:
            async with conn.cursor() as cur:
                await cur.execute(f"DROP DATABASE `{name}`")
            conn.close()
    else:
        import adbc_driver_sqlite.dbapi as sqlite

        path = tmp_path / f"{name}.db"
        conn = sqlite.connect(str(path), autocommit=True)
        db = ScratchDatabase(dialect, f"sqlite:///{path.name}", "", conn)
        try:
            yield db
        finally:
            conn.close()


# -- a real HTTP server -----------------------------------------------------------------------


@contextlib.contextmanager
def serve_app(app: Any, **options: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on a free loopback port in a thread; yield its base URL
    (https when ``options`` name a certificate: ``ssl_certfile``, ``ssl_keyfile``)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", **options
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test HTTP server did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if 'ssl_certfile' in options else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# -- RabbitMQ ---------------------------------------------------------------------------------

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass
class ScratchQueue:
    """A queue of one test (with its own dead-letter queue), deleted afterwards."""

    name: str
    dead_letters: str
    channel: Any

    async def publish(self, *bodies: bytes) -> None:
        import aio_pika

        for body in bodies:
            await self.channel.default_exchange.publish(aio_pika.Message(body), self.name)

    async def depth(self, name: str | None = None) -> int:
        queue = await self.channel.declare_queue(name or self.name, passive=True)
        count: int = queue.declaration_result.message_count
        return count

    async def drain(self, name: str | None = None) -> list[bytes]:
        queue = await self.channel.declare_queue(name or self.name, passive=True)
        bodies = []
        while (message := await queue.get(no_ack=True, fail=False)) is not None:
            bodies.append(message.body)
        return bodies


@pytest_asyncio.fixture(loop_scope="function")
async def rabbit_queue() -> AsyncIterator[ScratchQueue]:
    import aio_pika

    name = unique("q")
    connection = await aio_pika.connect(AMQP_URL)
    channel = await connection.channel()
    dead = f"{name}.dead"
    await channel.declare_queue(dead, durable=True)
    await channel.declare_queue(
        name,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead},
    )
    try:
        yield ScratchQueue(name, dead, channel)
    finally:
        await channel.queue_delete(name)
        await channel.queue_delete(dead)
        await connection.close()


# -- S3 (a local moto server) -----------------------------------------------------------------

S3_KEYS = {"access_key_id": "test", "secret_access_key": "test", "region": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible HTTP endpoint (moto's server) on a free loopback port."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@dataclass
class ScratchBucket:
    """A bucket of one test; ``options`` are the s3 step options that reach it."""

    name: str
    client: Any
    options: dict[str, Any]

    def keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.name)
        return [item["Key"] for item in listing.get("Contents", [])]

    def read(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return body

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def open_uploads(self) -> list[Any]:
        uploads: list[Any] = self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        return uploads


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> Iterator[ScratchBucket]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    name = unique("b").replace("_", "-")
    client.create_bucket(Bucket=name)
    options = {"bucket": name, "endpoint_url": s3_endpoint, **S3_KEYS}
    try:
        yield ScratchBucket(name, client, options)
    finally:
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for key in [i["Key"] for i in client.list_objects_v2(Bucket=name).get("Contents", [])]:
            client.delete_object(Bucket=name, Key=key)
        client.delete_bucket(Bucket=name)
