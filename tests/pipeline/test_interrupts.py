"""Stop signals of ``quiver run``: the thread that receives them."""

from __future__ import annotations

import threading
import time

from quiver.pipeline.interrupts import StopSignals


def test_the_stop_thread_ends_as_soon_as_the_run_ends() -> None:
    with StopSignals() as stops:
        time.sleep(0.1)  # the stop thread is waiting on its pipe by now
        started = time.monotonic()
    took = time.monotonic() - started
    assert stops.received is None
    assert not any(t.name == "quiver-stop" for t in threading.enumerate())
    assert took < 0.5  # it waits up to a second on the pipe unless woken
