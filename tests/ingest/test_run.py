"""``quiver run`` with a receiver as a user runs it: a real subprocess reading a real broker,
stopped by SIGTERM (it commits what it holds and acknowledges it) or killed (nothing
acknowledged, so the next run receives it: nothing is lost)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    FETCH_WAIT,
    KAFKA_SESSION,
    js_publish,
    kafka_produce,
    kafka_topic,
    mqtt_publish,
    unique,
)
from .processes import finish, killed_after, stopped

ROOT = Path(__file__).resolve().parents[2]
QUIVER = [str(Path(sys.executable).parent / "quiver")]
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}


@dataclass
class Broker:
    """One receiver's broker, with names of one test."""

    kind: str
    names: dict[str, str]
    kafka: str = ""

    def source(self, idle: float | None, **extra: Any) -> str:
        n = self.names
        opts: dict[str, Any] = {"batch_seconds": 0.2, "idle_timeout": idle, **extra}
        if self.kind == "mqtt":
            opts |= {"topics": [f"{n['prefix']}/#"], "client_id": n["id"], "qos": 1}
        elif self.kind == "amqp":
            opts |= {"queue": n["queue"], "exchange": n["exchange"]}
        elif self.kind == "nats":
            opts |= {
                "subject": f"{n['prefix']}.>",
                "stream": n["stream"],
                "durable": n["id"],
                "fetch_wait": FETCH_WAIT,
                "ack_wait": extra.get("ack_wait", 1),  # a killed run's messages return soon
            }
        else:
            opts |= {
                "topics": [n["topic"]],
                "group_id": n["id"],
                "bootstrap_servers": [self.kafka],
                "session_timeout": KAFKA_SESSION,
            }
        if self.kind in ("mqtt", "nats"):  # rows hold the message's number only
            opts["topic_field" if self.kind == "mqtt" else "subject_field"] = None
        return json.dumps({self.kind: opts})

    async def prepare(self) -> None:
        """What must exist before messages are published (a session, a queue, a stream)."""
        n = self.names
        if self.kind == "mqtt":
            from quiver.ingest.mqtt import MqttReceiver, MqttReceiverConfig
            from quiver.pipeline.component import RunContext

            cfg = {"topics": [f"{n['prefix']}/#"], "client_id": n["id"], "idle_timeout": 0.1}
            r = MqttReceiver(MqttReceiverConfig.model_validate(cfg))
            _ = [b async for b in r.batches(RunContext("prepare", "."))]
            await r.close()
        elif self.kind == "amqp":
            import aio_pika

            connection = await aio_pika.connect(AMQP_URL)
            channel = await connection.channel()
            queue = await channel.declare_queue(n["queue"], durable=True)
            exchange = await channel.declare_exchange(n["exchange"], "topic", durable=True)
            await queue.bind(exchange, "#")
            await connection.close()
        elif self.kind == "nats":
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            await nc.jetstream().add_stream(name=n["stream"], subjects=[f"{n['prefix']}.>"])
            await nc.close()
        else:
            await kafka_topic(self.kafka, n["topic"])

    async def publish(self, numbers: Iterable[int]) -> None:
        n = self.names
        bodies = [b'{"n": %d}' % i for i in numbers]
        if self.kind == "mqtt":
            await asyncio.to_thread(mqtt_publish, [(f"{n['prefix']}/a", b) for b in bodies], 1)
        elif self.kind == "amqp":
            import aio_pika

            connection = await aio_pika.connect(AMQP_URL)
            channel = await connection.channel()
            exchange = await channel.get_exchange(n["exchange"])
            for body in bodies:
                await exchange.publish(aio_pika.Message(body), "k")
            await connection.close()
        elif self.kind == "nats":
            await js_publish(f"{n['prefix']}.a", bodies)
        else:
            await kafka_produce(self.kafka, n["topic"], bodies)

    async def clean(self) -> None:
        n = self.names
        if self.kind == "amqp":
            import aio_pika

            connection = await aio_pika.connect(AMQP_URL)
            channel = await connection.channel()
            await channel.queue_delete(n["queue"])
            await channel.exchange_delete(n["exchange"])
            await connection.close()
        elif self.kind == "nats":
            import nats

            nc = await nats.connect("nats://127.0.0.1:4222")
            await nc.jetstream().delete_stream(n["stream"])
            await nc.close()


@pytest.fixture(params=["mqtt", "amqp", "nats", "kafka"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    names = {
        "prefix": unique("run"),
        "id": unique("id"),
        "queue": unique("q"),
        "exchange": unique("x"),
        "stream": unique("S"),
        "topic": unique("t"),
    }
    kafka = request.getfixturevalue("kafka_broker") if request.param == "kafka" else ""
    b = Broker(request.param, names, kafka)
    asyncio.run(b.prepare())
    yield b
    asyncio.run(b.clean())


def start(
    folder: Path, b: Broker, out: str, idle: float | None, **extra: Any
) -> subprocess.Popen[str]:
    stems = "commit_every" in extra or "commit_seconds" in extra
    path = f"out/{out}-{{stem}}.jsonl" if stems else f"out/{out}.jsonl"
    (folder / f"{out}.yaml").write_text(
        f"source: {b.source(idle, **extra)}\nsink: {{jsonl: {{path: '{path}'}}}}\n"
    )
    return subprocess.Popen(
        [*QUIVER, "run", f"{out}.yaml", "--quiet", "--log-format", "json"],
        cwd=folder,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_logged(proc: subprocess.Popen[str], *texts: str, seconds: float = 60) -> None:
    """Read the run's JSON log until each of ``texts`` was in a line (in any order)."""
    assert proc.stderr is not None
    missing = set(texts)
    # reading blocks until the run logs a line: a run that goes quiet is killed at the deadline
    with killed_after(proc, seconds) as expired:
        for line in proc.stderr:
            missing = {text for text in missing if text not in line}
            if not missing:
                return
    if expired.is_set():
        raise AssertionError(f"the run never logged {sorted(missing)} within {seconds:g}s")
    raise AssertionError(f"the run ended before logging {sorted(missing)}: {stopped(proc)}")


def wait_subscribed(proc: subprocess.Popen[str], b: Broker | None = None) -> None:
    """Wait until the run's receiver is subscribed; a Kafka group member also waits for its
    partitions (until then the group hands it no records)."""
    if b is not None and b.kind == "kafka":
        wait_logged(proc, "subscribed, receiving", "partitions assigned: ")
    else:
        wait_logged(proc, "subscribed, receiving")


def numbers(path: Path) -> list[int]:
    if not path.exists():
        return []
    return sorted(json.loads(line)["n"] for line in path.read_text().splitlines())


def settle(seconds: float) -> None:
    time.sleep(seconds)


def test_sigterm_commits_what_the_run_received_and_acknowledges_it(
    broker: Broker, tmp_path: Path
) -> None:
    proc = start(tmp_path, broker, "first", None)
    wait_subscribed(proc, broker)
    asyncio.run(broker.publish(range(40)))
    wait_logged(proc, "first messages received")
    assert proc.poll() is None, stopped(proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = finish(proc, 60)
    assert proc.returncode == 0, stderr
    first = numbers(tmp_path / "out/first.jsonl")
    assert first  # what the run had received before the signal was committed

    if broker.kind == "kafka":
        # one partition keeps its order: a record published now comes after every record the
        # group may send again, so a run that stops after the records not yet committed plus
        # this one shows both a redelivery (it ends before this one) and a loss, with no
        # idle timeout to guess
        asyncio.run(broker.publish([40]))
        again = start(tmp_path, broker, "again", None, max_messages=41 - len(first))
        expected = list(range(41))
    else:
        again = start(tmp_path, broker, "again", 3.0)
        expected = list(range(40))
    _, stderr = finish(again, 90)
    assert again.returncode == 0, stderr
    rest = numbers(tmp_path / "out/again.jsonl")
    # what the first run committed was acknowledged (not delivered again); the rest, if the
    # signal came before it arrived, was not lost
    assert sorted(first + rest) == expected


def test_a_killed_run_loses_nothing(broker: Broker, tmp_path: Path) -> None:
    proc = start(tmp_path, broker, "killed", None)
    wait_subscribed(proc, broker)
    asyncio.run(broker.publish(range(30)))
    wait_logged(proc, "first messages received")
    proc.kill()
    finish(proc, 30)
    assert not (tmp_path / "out/killed.jsonl").exists()
    asyncio.run(broker.publish(range(30, 50)))
    if broker.kind == "nats":
        settle(1.2)  # past ack_wait

    again = start(tmp_path, broker, "again", 3.0)
    _, stderr = finish(again, 90)
    assert again.returncode == 0, stderr
    assert sorted(set(numbers(tmp_path / "out/again.jsonl"))) == list(range(50))


def test_websocket_clients_get_their_ack_when_sigterm_commits(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    from .conftest import free_port

    port = free_port()
    (tmp_path / "ws.yaml").write_text(
        f"source: {{websocket: {{port: {port}, batch_seconds: 0.2}}}}\n"
        "sink: {jsonl: {path: out/ws.jsonl}}\n"
    )
    proc = subprocess.Popen(
        [*QUIVER, "run", "ws.yaml", "--quiet"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            ws = connect(f"ws://127.0.0.1:{port}/")
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, stopped(proc)
            time.sleep(0.1)
    with ws:
        ws.send("\n".join(json.dumps({"n": i}) for i in range(10)))
        ws.send(json.dumps({"n": 10}))
        settle(1.0)
        proc.send_signal(signal.SIGTERM)
        assert json.loads(ws.recv(timeout=30)) == {"acked": 2}
    _, stderr = finish(proc, 60)
    assert proc.returncode == 0, stderr
    assert numbers(tmp_path / "out/ws.jsonl") == list(range(11))


@pytest.fixture
def rabbit(request: pytest.FixtureRequest) -> Iterator[Broker]:
    names = {"queue": unique("q"), "exchange": unique("x")}
    b = Broker("amqp", names)
    asyncio.run(b.prepare())
    yield b
    asyncio.run(b.clean())


def outputs(folder: Path, out: str) -> list[list[int]]:
    """The numbers in each checkpoint's output file, in checkpoint order."""
    files = sorted((folder / "out").glob(f"{out}-*.jsonl"), key=lambda p: p.name[-12:])
    return [numbers(f) for f in files]


def test_checkpoints_commit_as_the_run_goes(rabbit: Broker, tmp_path: Path) -> None:
    asyncio.run(rabbit.publish(range(35)))
    proc = start(tmp_path, rabbit, "cp", 1.5, commit_every=10)
    _, stderr = finish(proc, 60)
    assert proc.returncode == 0, stderr
    assert outputs(tmp_path, "cp") == [
        list(range(0, 10)),
        list(range(10, 20)),
        list(range(20, 30)),
        list(range(30, 35)),
    ]
    again = start(tmp_path, rabbit, "again", 1.0)
    finish(again, 60)
    assert numbers(tmp_path / "out/again.jsonl") == []  # every checkpoint was acknowledged


def test_a_killed_run_keeps_its_committed_checkpoints_and_loses_nothing(
    rabbit: Broker, tmp_path: Path
) -> None:
    proc = start(tmp_path, rabbit, "cp", None, commit_every=10)
    wait_subscribed(proc)
    asyncio.run(rabbit.publish(range(25)))
    deadline = time.monotonic() + 30
    while len(outputs(tmp_path, "cp")) < 2:
        assert time.monotonic() < deadline and proc.poll() is None, stopped(proc)
        time.sleep(0.05)
    proc.kill()
    finish(proc, 30)
    committed = [n for part in outputs(tmp_path, "cp") for n in part]
    assert committed[:20] == list(range(20))

    again = start(tmp_path, rabbit, "again", 1.5)
    _, stderr = finish(again, 60)
    assert again.returncode == 0, stderr
    assert sorted(set(committed) | set(numbers(tmp_path / "out/again.jsonl"))) == list(range(25))


def test_checkpoints_into_one_file_are_refused(rabbit: Broker, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        f"source: {rabbit.source(1.0, commit_every=10)}\nsink: {{jsonl: {{path: out.jsonl}}}}\n"
    )
    done = subprocess.run(
        [*QUIVER, "run", "p.yaml"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "each checkpoint would replace the previous one's output" in done.stderr
    assert "put {stem} in the sink path" in done.stderr
