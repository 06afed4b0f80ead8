"""Running the real ``quiver`` command as a server in tests."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

QUIVER = str(Path(sys.executable).with_name("quiver"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(
    *args: str, port: int, cwd: Path | None = None, output: list[str] | None = None
) -> Iterator[str]:
    """Run ``quiver <args>`` until it answers /readyz; stop it with SIGTERM afterwards.

    Yields the server's base URL. The server must exit 0 on SIGTERM; what it wrote is appended
    to ``output`` once it stopped.
    """
    proc = subprocess.Popen(
        [QUIVER, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, _ = proc.communicate()
                pytest.fail(f"quiver {' '.join(args)} did not start:\n{out}")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        written = proc.stdout.read() if proc.stdout and not proc.stdout.closed else ""
        if output is not None:
            output.append(written)
        assert proc.returncode == 0, written
