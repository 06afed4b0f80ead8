"""Bounded waits on the ``quiver`` processes the receiver tests start: no wait may block for
ever, and a failing test never leaves a run behind.

``finish(proc, seconds)`` waits for the end of a process and returns its output, killing it
(and failing the test) when it outlives ``seconds``; ``stopped(proc)`` is for assertion
messages: it kills a process still running and returns what it printed, without blocking.
``reap_processes`` (autouse in conftest) kills every process a test started and left running.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, AnyStr

STARTED: list[subprocess.Popen[Any]] = []


class TrackedPopen(subprocess.Popen[AnyStr]):
    """``subprocess.Popen`` that remembers the process, so the test's teardown can kill it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        STARTED.append(self)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def stopped(proc: subprocess.Popen[Any], seconds: float = 10) -> str:
    """Kill ``proc`` if it still runs and return its exit status and output (for a message)."""
    if proc.poll() is None:
        proc.kill()
    try:
        out, err = proc.communicate(timeout=seconds)
    except (subprocess.TimeoutExpired, ValueError):  # output already read elsewhere
        out = err = ""
    return f"exit {proc.poll()}\nstdout:\n{_text(out)[-4000:]}\nstderr:\n{_text(err)[-4000:]}"


def finish(proc: subprocess.Popen[AnyStr], seconds: float) -> tuple[AnyStr, AnyStr]:
    """Wait up to ``seconds`` for ``proc`` to end and return (stdout, stderr); a process still
    running then is killed and the test fails with what it printed."""
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"{proc.args!r} still ran after {seconds:g}s and was killed; {stopped(proc)}"
        ) from None


@contextmanager
def killed_after(proc: subprocess.Popen[Any], seconds: float) -> Iterator[threading.Event]:
    """Kill ``proc`` if the block still runs after ``seconds`` (for blocking reads of its
    output); the event tells whether that happened."""
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        if proc.poll() is None:
            proc.kill()

    timer = threading.Timer(seconds, kill)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def reap() -> list[str]:
    """Kill the processes started since the last call that still run; their commands."""
    left = []
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            left.append(repr(proc.args))
            proc.kill()
            with suppress(subprocess.TimeoutExpired):
                proc.wait(10)
    return left


def keep(proc: subprocess.Popen[Any]) -> None:
    """Leave ``proc`` out of the reaping: it belongs to a fixture wider than one test (a
    session-wide broker started on demand by the first test that needs it)."""
    with suppress(ValueError):
        STARTED.remove(proc)
