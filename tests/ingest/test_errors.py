"""What a receiver says when its broker cannot be reached or refuses it: a retryable error
naming the address (the engine retries with backoff), or a permanent one saying what to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from quiver.ingest.amqp import AmqpReceiver
from quiver.ingest.kafka import KafkaReceiver
from quiver.ingest.mqtt import MqttReceiver
from quiver.ingest.nats import NatsReceiver
from quiver.pipeline.component import RunContext
from quiver.runtime.errors import PermanentError, RetryableError

from .conftest import build, eventually, free_port, listening, unique


def closed_port_receivers() -> list[Any]:
    port = free_port()  # nothing listens there
    return [
        pytest.param(
            MqttReceiver, {"topics": ["a/#"], "port": port}, f"127.0.0.1:{port}", id="mqtt"
        ),
        pytest.param(
            AmqpReceiver,
            {"queue": "q", "url": f"amqp://guest:guest@127.0.0.1:{port}/"},
            f"127.0.0.1:{port}",
            id="amqp",
        ),
        pytest.param(
            NatsReceiver,
            {"subject": "a.>", "servers": [f"nats://127.0.0.1:{port}"]},
            f"nats://127.0.0.1:{port}",
            id="nats",
        ),
        pytest.param(
            KafkaReceiver,
            {"topics": ["t"], "group_id": "g", "bootstrap_servers": [f"127.0.0.1:{port}"]},
            f"127.0.0.1:{port}",
            id="kafka",
        ),
    ]


@pytest.mark.parametrize(("cls", "options", "address"), closed_port_receivers())
async def test_an_unreachable_broker_is_a_retryable_error_naming_it(
    cls: type[Any], options: dict[str, Any], address: str, run_ctx: RunContext
) -> None:
    r = build(cls, options)
    with pytest.raises(RetryableError) as caught:
        await anext(r.batches(run_ctx))
    await r.close()
    detail = caught.value.details[0]
    assert address in f"{detail.where} {detail.message}"
    assert "running" in detail.fix


async def test_a_refused_amqp_login_is_permanent(run_ctx: RunContext) -> None:
    r = build(
        AmqpReceiver,
        {"queue": unique("q"), "url": "amqp://guest:wrong@127.0.0.1:5672/"},
    )
    with pytest.raises(PermanentError, match="refused the login") as caught:
        await anext(r.batches(run_ctx))
    await r.close()
    assert "wrong" not in str(caught.value)  # the password is never printed


async def test_a_missing_jetstream_stream_is_permanent(run_ctx: RunContext) -> None:
    r = build(NatsReceiver, {"subject": "a.>", "stream": unique("NOPE"), "durable": "d"})
    with pytest.raises(PermanentError, match="stream not found"):
        await anext(r.batches(run_ctx))
    await r.close()


async def test_a_connection_lost_for_good_fails_the_run(run_ctx: RunContext) -> None:
    import asyncio
    import subprocess

    port = free_port()
    server = subprocess.Popen(
        ["/usr/sbin/nats-server", "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: listening(port))
        r = build(
            NatsReceiver,
            {"subject": "a.>", "servers": [f"nats://127.0.0.1:{port}"], "reconnect_attempts": 1},
        )
        first = asyncio.ensure_future(anext(r.batches(run_ctx)))
        await asyncio.sleep(0.5)  # connected and waiting for messages
        assert not first.done()
        server.terminate()
        server.wait(10)
        with pytest.raises(RetryableError, match="the NATS connection was lost"):
            await asyncio.wait_for(first, 30)
        await r.close()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


async def test_a_read_retried_after_the_broker_came_up_subscribes_anew(
    run_ctx: RunContext, tmp_path: Path
) -> None:
    """The engine retries a source's first read on a retryable error, on the same instance."""
    import asyncio
    import subprocess

    import paho.mqtt.publish as publish

    port = free_port()
    r = build(MqttReceiver, {"topics": ["a/#"], "port": port, "idle_timeout": 10})
    with pytest.raises(RetryableError):
        await anext(r.batches(run_ctx))
    (tmp_path / "m.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    )
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(tmp_path / "m.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await eventually(lambda: listening(port))
        reading = asyncio.ensure_future(anext(r.batches(run_ctx)))
        for _ in range(30):  # until the receiver, subscribing anew, has one (QoS 0)
            await asyncio.to_thread(
                publish.single, "a/b", b'{"n": 1}', hostname="127.0.0.1", port=port
            )
            await asyncio.wait({reading}, timeout=0.3)
            if reading.done():
                break
        batch = reading.result()
        assert set(batch.column("n").to_pylist()) == {1}
        await r.commit()
        await r.close()
    finally:
        broker.terminate()
        broker.wait(10)


async def test_an_unreachable_nats_server_fails_the_attempt_at_once_with_the_reason(
    run_ctx: RunContext,
) -> None:
    import time

    port = free_port()
    r = build(NatsReceiver, {"subject": "a.>", "servers": [f"nats://127.0.0.1:{port}"]})
    started = time.monotonic()
    with pytest.raises(RetryableError) as caught:
        await anext(r.batches(run_ctx))
    await r.close()
    assert time.monotonic() - started < 5  # not the 10 s wait for a server that answers late
    assert "ConnectionRefusedError" in caught.value.details[0].message
    assert f"127.0.0.1', {port})" in caught.value.details[0].message


async def test_an_mqtt_broker_that_restarts_without_the_session_is_subscribed_again(
    run_ctx: RunContext, tmp_path: Path
) -> None:
    import asyncio
    import subprocess

    import paho.mqtt.publish as publish

    port = free_port()
    (tmp_path / "m.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
    )

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["mosquitto", "-c", str(tmp_path / "m.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def read_one(r: MqttReceiver, stream: Any, n: int) -> list[Any]:
        reading = asyncio.ensure_future(anext(stream))
        for _ in range(60):  # until the receiver has one (QoS 0: nothing is kept for it)
            await asyncio.to_thread(
                publish.single, "a/b", f'{{"n": {n}}}', hostname="127.0.0.1", port=port
            )
            await asyncio.wait({reading}, timeout=0.5)
            if reading.done():
                break
        return list(reading.result().column("n").to_pylist())

    broker = start()
    try:
        await eventually(lambda: listening(port))
        r = build(MqttReceiver, {"topics": ["a/#"], "port": port, "qos": 0, "batch_seconds": 0.1})
        stream = r.batches(run_ctx)
        assert set(await read_one(r, stream, 1)) == {1}
        broker.terminate()
        broker.wait(10)
        broker = start()  # a broker that lost every session
        await eventually(lambda: listening(port))
        assert set(await read_one(r, stream, 2)) == {2}
        r.drain()
        await stream.aclose()
        await r.commit()
        await r.close()
    finally:
        broker.terminate()
        broker.wait(10)
    logs = [m for _, m in run_ctx.logs]  # type: ignore[attr-defined]
    assert any("the connection to the MQTT broker was lost" in m for m in logs)
    assert any("which had lost the session: subscribed again" in m for m in logs)


def close_amqp_connection(name: str) -> None:
    """Close the RabbitMQ connection named ``name`` as an operator (or a broker restart)
    would: rabbitmqctl close_connection."""
    import shutil
    import subprocess

    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed")
    listed = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if listed.returncode != 0:
        pytest.skip(f"rabbitmqctl cannot list connections: {listed.stderr.strip()}")
    (pid,) = [line.split()[0] for line in listed.stdout.splitlines() if name in line]
    subprocess.run(
        ["rabbitmqctl", "close_connection", pid, "closed by the test"],
        check=True,
        capture_output=True,
        timeout=60,
    )


async def test_a_read_retried_after_rabbitmq_closed_the_connection_subscribes_anew(
    run_ctx: RunContext,
) -> None:
    import asyncio

    from .test_amqp import publish

    names = {"exchange": unique("x"), "queue": unique("q")}
    r = build(AmqpReceiver, {**names, "idle_timeout": 10, "batch_seconds": 0.2})
    reading = asyncio.ensure_future(anext(r.batches(run_ctx)))
    await eventually(lambda: r.listening)
    await asyncio.to_thread(close_amqp_connection, f"source amqp {names['queue']}")
    with pytest.raises(RetryableError, match="CONNECTION_FORCED - closed by the test"):
        await asyncio.wait_for(reading, 30)
    # the client library's account of it, traceback and all, is a debug line of the run
    logs = run_ctx.logs  # type: ignore[attr-defined]
    assert any(level == "debug" and "aiormq.connection: " in m for level, m in logs)

    reading = asyncio.ensure_future(anext(r.batches(run_ctx)))  # as the engine retries
    await eventually(lambda: r.listening)
    await publish(names["exchange"], [("k", b'{"n": 1}')])
    batch = await asyncio.wait_for(reading, 30)
    assert batch.column("n").to_pylist() == [1]
    await r.commit()
    await r.close()
    await delete_amqp(names)


async def delete_amqp(names: dict[str, str]) -> None:
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel()
    await channel.queue_delete(names["queue"])
    await channel.exchange_delete(names["exchange"])
    await connection.close()


def test_quiver_run_goes_on_after_rabbitmq_closed_its_connection_printing_no_traceback(
    tmp_path: Path,
) -> None:
    import asyncio
    import subprocess
    import time

    from .test_amqp import publish
    from .test_run import QUIVER, env

    names = {"exchange": unique("x"), "queue": unique("q")}
    source = {"amqp": {**names, "idle_timeout": 3, "batch_seconds": 0.2}}
    (tmp_path / "p.yaml").write_text(
        json.dumps({"source": source, "sink": {"jsonl": {"path": "out.jsonl"}}})
    )
    run = subprocess.Popen(
        [*QUIVER, "run", "p.yaml"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:  # until the run has subscribed
            try:
                close_amqp_connection(f"source amqp {names['queue']}")
                break
            except ValueError:  # not connected yet
                assert time.monotonic() < deadline, "the run did not connect"
                time.sleep(0.3)
        time.sleep(1)  # the read is retried and subscribes anew
        asyncio.run(publish(names["exchange"], [("k", b'{"n": 1}')]))
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
        asyncio.run(delete_amqp(names))
    assert run.returncode == 0, err
    assert "Traceback" not in err and "Traceback" not in out
    assert "CONNECTION_FORCED - closed by the test" in err  # the retried read's warning
    assert (tmp_path / "out.jsonl").read_text() == '{"n":1}\n'
