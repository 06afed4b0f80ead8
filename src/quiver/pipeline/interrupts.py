"""Stop signals of ``quiver run``: SIGINT and SIGTERM stop a run within a second.

The signals are caught by a thread of their own: the operating system's handler writes the
signal's number to a pipe (``signal.set_wakeup_fd``) that this thread reads, so a signal is
seen at once even while the event loop waits in a component's C code or a worker thread hangs
on a lock, a full pipe or a stuck database. No signal mask is changed, so processes the run
starts receive signals as usual. On the first signal the run is cancelled: sinks abort,
temporary files are deleted and the command exits with 130 (SIGINT) or 143 (SIGTERM). If the
run has not finished its clean-up :data:`STOP_SECONDS` after the signal (or on a second
signal) the process exits at once with the same code; no final output has been written then
either (outputs are renamed into place only on commit), and the next run writing the same
paths removes the temporary files left.

A run whose sources read an endless input (brokers, sockets: the ``Draining`` hook) is not
cancelled by the first signal but drained: its sources stop taking input, the run commits
what they handed on and acknowledges it, within :data:`DRAIN_SECONDS`. A second signal, or
that time running out, ends the process at once; nothing unacknowledged is lost then, as the
broker hands it out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn

__all__ = ["DRAIN_SECONDS", "STOP_SECONDS", "StopSignals", "exit_code_of", "on_exit_now"]

#: Seconds between a stop signal and the end of the process, clean-up included.
STOP_SECONDS = 0.9
#: Seconds a drained run has after the first stop signal to commit and acknowledge.
DRAIN_SECONDS = 30.0
_SIGNALS = {signal.SIGINT, signal.SIGTERM}
#: Seconds the stop thread waits on the pipe before it looks whether the run has ended.
_IDLE_WAIT = 1.0
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
        self._drain: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1
        self._pipe: tuple[int, int] | None = None
        self._outcome: int | None = None

    @property
    def exit_code(self) -> int | None:
        """130 / 143 once a stop signal came, else None."""
        return None if self.received is None else exit_code_of(self.received)

    def attach(self, task: asyncio.Task[object], drain: Callable[[], None] | None = None) -> None:
        """The task to cancel on a stop signal (the run); cancelled at once if one came.

        With ``drain``, the first signal calls it on the task's loop instead, and the run has
        :data:`DRAIN_SECONDS` to finish."""
        with self._lock:
            self._loop = task.get_loop()
            self._task = task
            self._drain = drain
            late = self.received is not None
        if late:
            if drain is not None:
                drain()
            else:
                task.cancel()

    def detach(self) -> None:
        with self._lock:
            self._loop = None
            self._task = None
            self._drain = None

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
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        self._pipe = (read_end, write_end)
        self._previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in _SIGNALS:
            # the Python-level handler does nothing: the wakeup pipe carries the signal
            self._previous[signum] = signal.signal(signum, _noted)
        self._thread = threading.Thread(target=self._wait, name="quiver-stop", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._thread is None or self._pipe is None:
            return
        self._done.set()
        if self.received is not None:
            return  # the stop thread may still have to end the process
        with contextlib.suppress(OSError):  # wake the stop thread now (0 is no signal)
            os.write(self._pipe[1], b"\0")
        self._thread.join()
        signal.set_wakeup_fd(self._previous_fd)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        for fd in self._pipe:
            os.close(fd)
        self._pipe = None

    def _next_signal(self, timeout: float) -> int | None:
        """A stop signal written to the wakeup pipe within ``timeout`` seconds (else None)."""
        assert self._pipe is not None
        ready, _, _ = select.select([self._pipe[0]], [], [], timeout)
        if not ready:
            return None
        for signum in os.read(self._pipe[0], 64):
            if signum in _SIGNALS:
                return signum
        return None

    def _wait(self) -> None:
        while not self._done.is_set():
            # the end of the run writes to the pipe too; the timeout is only a safety net
            signum = self._next_signal(_IDLE_WAIT)
            if signum is not None:
                self._stop(signum)
                return

    def _stop(self, signum: int) -> None:
        with self._lock:
            self.received = signum
            loop, task, drain = self._loop, self._task, self._drain
        if loop is not None and task is not None:
            # RuntimeError: the loop has closed, the command is finishing already
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(drain or task.cancel)
        deadline = time.monotonic() + (DRAIN_SECONDS if drain is not None else self.seconds)
        while not self._finished.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self._next_signal(min(left, 0.05)) is not None:
                break  # a second signal: stop now
        else:
            return
        with self._lock:
            outcome = self._outcome
        if outcome is None:
            _exit_now(exit_code_of(signum), _MESSAGE)
        _exit_now(outcome, b"")


def _noted(signum: int, frame: object) -> None:
    """The Python-level handler of a stop signal: the stop thread has it from the pipe."""
    del signum, frame


def _descendants(pid: int) -> list[int]:
    """The processes started by ``pid``, and theirs (Linux ``/proc``; none elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


#: What a component asks to be done when the process leaves at once (see :func:`on_exit_now`).
_EXIT_NOW_HOOKS: dict[int, Callable[[], None]] = {}
_EXIT_NOW_KEYS = iter(range(1, 2**62))


def on_exit_now(hook: Callable[[], None]) -> Callable[[], None]:
    """Have ``hook`` called (after the processes the run started are killed) if a stop signal
    ends the process at once, where no ``finally`` of a stuck thread runs: to remove files
    nothing else would remove soon, such as hand-over files in shared memory. Returns the
    function that withdraws it, for when the component closes the ordinary way."""
    key = next(_EXIT_NOW_KEYS)
    _EXIT_NOW_HOOKS[key] = hook

    def withdraw() -> None:
        _EXIT_NOW_HOOKS.pop(key, None)

    return withdraw


def _exit_now(code: int, message: bytes) -> NoReturn:
    """Leave at once: a worker thread may be stuck where no cancellation reaches it. The
    processes the run started (JavaScript workers ...) are killed first: nobody would stop
    them afterwards; then the hooks of :func:`on_exit_now` run."""
    for child in _descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
    for hook in list(_EXIT_NOW_HOOKS.values()):
        with contextlib.suppress(Exception):
            hook()
    try:
        sys.stderr.flush()
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    if message:
        with contextlib.suppress(OSError):
            os.write(2, message)
    os._exit(code)
