"""Stop signals of ``quiver run``: SIGINT and SIGTERM stop a run within a second.

The signals are blocked in the thread running the pipeline (and so in every thread it starts)
and received by a thread of their own, so they are seen even while the event loop waits in a
component's C code or a worker thread hangs on a lock, a full pipe or a stuck database. On
the first signal the run is cancelled: sinks abort, temporary files are deleted and the
command exits with 130 (SIGINT) or 143 (SIGTERM). If the run has not finished its clean-up
:data:`STOP_SECONDS` after the signal (or on a second signal) the process exits at once with
the same code; no final output has been written then either (outputs are renamed into place
only on commit), and the next run writing the same paths removes the temporary files left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from types import TracebackType
from typing import NoReturn

__all__ = ["STOP_SECONDS", "StopSignals", "exit_code_of"]

#: Seconds between a stop signal and the end of the process, clean-up included.
STOP_SECONDS = 0.9
_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_MESSAGE = b"interrupted: the run was stopped; no output was written\n"


def exit_code_of(signum: int) -> int:
    """The shell convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum


class StopSignals:
    """Receives SIGINT / SIGTERM while in its ``with`` block; see the module's doc."""

    def __init__(self, seconds: float = STOP_SECONDS) -> None:
        self.seconds = seconds
        self.received: int | None = None
        self._finished = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[object] | None = None
        self._thread: threading.Thread | None = None
        self._previous_mask: set[int | signal.Signals] = set()
        self._outcome: int | None = None

    @property
    def exit_code(self) -> int | None:
        """130 / 143 once a stop signal came, else None."""
        return None if self.received is None else exit_code_of(self.received)

    def attach(self, task: asyncio.Task[object]) -> None:
        """The task to cancel on a stop signal (the run); cancelled at once if one came."""
        with self._lock:
            self._loop = task.get_loop()
            self._task = task
            late = self.received is not None
        if late:
            task.cancel()

    def detach(self) -> None:
        with self._lock:
            self._loop = None
            self._task = None

    def outcome(self, code: int) -> None:
        """The run has ended with ``code`` (a stop signal coming now came too late to stop
        it): if the process must be ended before the command finishes, it ends with it."""
        with self._lock:
            self._outcome = code

    def leave(self) -> None:
        """Called by the command once it has cleaned up and reported: after a stop signal the
        process ends here, without waiting for worker threads stuck where no cancellation
        reaches them."""
        self._finished.set()
        if self.received is None:
            return
        code = self.exit_code if self._outcome is None else self._outcome
        assert code is not None
        others = [
            t
            for t in threading.enumerate()
            if t is not threading.current_thread() and not t.daemon and t.is_alive()
        ]
        if others:
            _exit_now(code, b"")

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # signals reach the main thread only; nothing to take over here
        self._previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        self._thread = threading.Thread(target=self._wait, name="quiver-stop", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is None:
            return
        self._done.set()
        if self.received is None:
            self._thread.join()
            signal.pthread_sigmask(signal.SIG_SETMASK, self._previous_mask)

    def _wait(self) -> None:
        while not self._done.is_set():
            info = signal.sigtimedwait(_SIGNALS, 0.05)
            # a wait interrupted otherwise (a debugger or profiler attaching) may come back
            # with no signal in it
            if info is not None and info.si_signo in _SIGNALS:
                self._stop(info.si_signo)
                return

    def _stop(self, signum: int) -> None:
        with self._lock:
            self.received = signum
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            # RuntimeError: the loop has closed, the command is finishing already
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        deadline = time.monotonic() + self.seconds
        while not self._finished.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            again = signal.sigtimedwait(_SIGNALS, min(left, 0.05))
            if again is not None and again.si_signo in _SIGNALS:
                break  # a second signal: stop now
        else:
            return
        with self._lock:
            outcome = self._outcome
        if outcome is None:
            _exit_now(exit_code_of(signum), _MESSAGE)
        _exit_now(outcome, b"")


def _exit_now(code: int, message: bytes) -> NoReturn:
    """Leave at once: a worker thread may be stuck where no cancellation reaches it."""
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    if message:
        with contextlib.suppress(OSError):
            os.write(2, message)
    os._exit(code)
