"""What a receiver says when its broker cannot be reached or refuses it: a retryable error
naming the address (the engine retries with backoff), or a permanent one saying what to fix."""

from __future__ import annotations

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
