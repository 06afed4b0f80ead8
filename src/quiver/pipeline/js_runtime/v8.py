"""Starting V8 in this process, once, with the flags every isolate of Quiver relies on.

V8 reads its flags once, when the first isolate of the process is made. Quiver makes isolates
on many threads (one thread per isolate, started from whatever thread starts a run), so V8
must not tie its memory to the thread that started it:

``--no-memory-protection-keys``
    On CPUs with memory protection keys (Intel PKU, ``pku`` in ``/proc/cpuinfo``), V8 14
    guards its code and dispatch tables with a key that only the thread that started V8 (and
    threads that thread starts later) may read. Any other thread that makes an isolate, such as
    a second isolate of ``isolation: thread`` or an isolate rebuilt after a time limit, dies
    with a segmentation fault (``SEGV_PKUERR`` in ``JSDispatchTable``). Without the keys, the
    pages keep their ordinary protection and V8's sandbox stays on.

:func:`start_v8` is called before every isolate is made; the first call starts V8.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "V8_FLAGS",
    "V8StartError",
    "as_batch_work",
    "isolate_creation",
    "start_v8",
    "start_v8_in_background",
]

#: The flags Quiver starts V8 with, beside mini-racer's own (``--single-threaded``).
V8_FLAGS: tuple[str, ...] = ("--no-memory-protection-keys",)

_lock = threading.Lock()
_make_lock = threading.Lock()
_started = False
#: Why starting V8 failed, raised again by every later start: a second attempt would only
#: find the library half started.
_failure: Exception | None = None


def as_batch_work() -> None:
    """Mark the calling thread, and the threads it starts (V8's own, for an isolate made
    on it), as batch work for the scheduler (Linux ``SCHED_BATCH``): they keep their share of
    the CPU, but a pipeline's other threads, which wake to hand batches on and to write them
    in order, run before them instead of waiting for their time slice to end."""
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(threading.get_native_id(), os.SCHED_BATCH, os.sched_param(0))


class V8StartError(Exception):
    """V8 was started in this process by other code, without the flags Quiver needs."""


def start_v8() -> None:
    """Start V8 with :data:`V8_FLAGS` unless this process already did (thread-safe).

    Raises :class:`V8StartError` when other code of this process started mini-racer first
    with flags of its own: V8 cannot change them afterwards, and making isolates on several
    threads would then crash the process.
    """
    global _started
    if _started:
        return
    from py_mini_racer import (
        DEFAULT_V8_FLAGS,
        LibAlreadyInitializedError,
        init_mini_racer,
        mini_racer,
    )

    global _failure
    with _lock:
        if _started:
            return
        if _failure is not None:
            raise _failure
        try:
            try:
                init_mini_racer(flags=(*DEFAULT_V8_FLAGS, *V8_FLAGS))
            except LibAlreadyInitializedError as exc:
                raise V8StartError(
                    "V8 was started in this process by other code before Quiver could set "
                    f"its flags ({' '.join(V8_FLAGS)}), so isolates on several threads would "
                    "crash"
                ) from exc
            # The first isolate of the process sets up V8's process-wide memory pools; two
            # made at once on two threads both try, and V8 aborts ("Check failed:
            # !IsConfigurablePoolInitialized()"). One isolate made and dropped here, under the
            # lock, does it once before any other thread can.
            with mini_racer() as first:
                first.eval("0")
        except Exception as exc:
            _failure = exc
            raise
        _started = True


def start_v8_in_background() -> None:
    """Start V8 (see :func:`start_v8`) on a thread of its own, so that the caller goes on
    loading while the library is mapped and initialised (most of it outside Python's lock).
    The first isolate made afterwards waits for it to be done, and raises what made it fail."""

    def start() -> None:
        with contextlib.suppress(Exception):
            start_v8()

    threading.Thread(target=start, name="quiver-v8-start", daemon=True).start()


@contextmanager
def isolate_creation() -> Iterator[None]:
    """Held while an isolate is made: V8 makes isolates one at a time in this process
    (making one is rare next to running it, so the wait costs nothing that shows)."""
    with _make_lock:
        yield
