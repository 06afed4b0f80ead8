"""A pool of JavaScript worker processes, each with its own V8 isolate.

V8 runs one script on one core, so a batch is cut into one slice per worker, the slices run
side by side and the results are put back together in input order. Each worker enforces the
per-batch time limit and heap limit inside V8; the pool adds a watchdog that kills a worker
that stops answering (and starts a fresh one), so a run never hangs on a script.

Workers end with the process that started them (see :mod:`.worker`). Linux ties that to the
*thread* that started a worker, so every worker is started by one thread that lives as long
as the process.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import orjson
import pyarrow as pa

from quiver.pipeline.interrupts import on_exit_now
from quiver.pipeline.js_runtime.codec import DecodedBatch
from quiver.pipeline.js_runtime.isolate import IsolateOptions, ScriptAbortError, ScriptLoadError
from quiver.pipeline.js_runtime.worker import (
    PARENT_ENV,
    exchange_dir,
    read_batches,
    remove_exchange_files,
    remove_stale_exchange_files,
    write_batches,
    write_frame,
)

__all__ = ["WorkerPool"]

#: Extra seconds the watchdog waits beyond the script's own time limit before killing a worker.
WATCHDOG_GRACE_SECONDS = 10.0
#: How long a worker may take to start and load the script.
STARTUP_SECONDS = 60.0


class _WorkerGoneError(Exception):
    pass


_T = TypeVar("_T")
_spawn_jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def _serve_spawns() -> None:
    while True:
        fn, future = _spawn_jobs.get()
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)


def _on_spawner_thread(fn: Callable[[], _T]) -> _T:
    """Run ``fn`` on the thread that starts every worker.

    A worker's parent-death signal fires when the thread that forked it ends, not the
    process; this thread lasts as long as the process, so a worker started from a
    short-lived thread is not killed with that thread.
    """
    global _spawner
    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_serve_spawns, name="quiver-js-spawner", daemon=True)
            _spawner.start()
    future: Future[_T] = Future()
    _spawn_jobs.put((fn, future))
    return future.result()


@dataclass
class _Worker:
    proc: subprocess.Popen[bytes]
    stdin: IO[bytes]
    stdout: IO[bytes]
    style: str = ""

    def read_exactly(self, size: int, deadline: float) -> bytes:
        fd = self.stdout.fileno()
        chunks: list[bytes] = []
        remaining = size
        while remaining:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                raise _WorkerGoneError
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def read_frame(self, deadline: float) -> bytes:
        head = self.read_exactly(4, deadline)
        return self.read_exactly(int.from_bytes(head, "big"), deadline)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.stdin, self.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        remove_exchange_files(self.proc.pid)


def _with_input_columns(
    sent: pa.RecordBatch, names: list[str], passthrough: dict[str, str], batch: pa.RecordBatch
) -> pa.RecordBatch:
    """The worker's main output with the columns it passed through taken from ``batch``."""
    arrays = [
        batch.column(passthrough[name]) if name in passthrough else sent.column(name)
        for name in names
    ]
    return pa.RecordBatch.from_arrays(arrays, names=names)


class WorkerPool:
    """``size`` worker processes running the same script; thread-safe ``run(batch)``."""

    def __init__(self, options: IsolateOptions, size: int) -> None:
        self.options = options
        self.size = max(1, size)
        self.style = ""
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self._init = orjson.dumps(options.to_json())
        self._dir = exchange_dir()
        self._withdraw_hook: Callable[[], None] | None = None
        self._spawned: list[int] = []  # every worker's process id (their files are named so)

    # ------------------------------------------------------------------ lifecycle

    def _spawn(self) -> _Worker:
        env = dict(os.environ)
        env["TZ"] = "UTC"
        env[PARENT_ENV] = str(os.getpid())
        proc = _on_spawner_thread(
            lambda: subprocess.Popen(
                [sys.executable, "-m", "quiver.pipeline.js_runtime.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        )
        assert proc.stdin is not None and proc.stdout is not None
        self._spawned.append(proc.pid)
        worker = _Worker(proc, proc.stdin, proc.stdout)
        write_frame(worker.stdin, self._init)
        worker.stdin.flush()
        return worker

    def _handshake(self, worker: _Worker) -> None:
        try:
            header = orjson.loads(worker.read_frame(time.monotonic() + STARTUP_SECONDS))
        except (TimeoutError, _WorkerGoneError) as exc:
            code = worker.proc.poll()
            worker.kill()
            raise ScriptLoadError(
                f"the JavaScript worker process did not start (exit code {code})"
            ) from exc
        if not header["ok"]:
            worker.kill()
            raise ScriptLoadError(header["message"], header.get("where", ""))
        worker.style = header["style"]
        self.style = worker.style

    def start(self) -> None:
        """Start every worker (in parallel) and load the script into each.

        Hand-over files left behind by runs that were killed are removed first.
        """
        remove_stale_exchange_files(self._dir)
        if self._withdraw_hook is None:
            self._withdraw_hook = on_exit_now(self._remove_exchange_files)
        workers = [self._spawn() for _ in range(self.size)]
        try:
            for w in workers:
                self._handshake(w)
        except ScriptLoadError:
            for w in workers:
                w.kill()
            raise
        with self._lock:
            self._all.extend(workers)
        for w in workers:
            self._idle.put(w)

    def _remove_exchange_files(self) -> None:
        """Delete the hand-over files of this process and of the workers (killed by then),
        when a stop signal ends the process in the middle of a batch."""
        # no lock: a thread stuck in the middle of a batch may hold it
        for pid in [os.getpid(), *self._spawned]:
            remove_exchange_files(pid)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all = self._all, []
        for w in workers:
            with contextlib.suppress(OSError):
                w.stdin.close()
        for w in workers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=5)
            self._killed(w)
        if self._withdraw_hook is not None:  # (a stop signal may end the process before)
            self._withdraw_hook()
            self._withdraw_hook = None

    def _killed(self, worker: _Worker) -> None:
        """Kill ``worker`` (its files go with it) and forget its process id, which the system
        may give another process."""
        worker.kill()
        with contextlib.suppress(ValueError):
            self._spawned.remove(worker.proc.pid)

    def _replace(self, worker: _Worker) -> None:
        self._killed(worker)
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
            if self._closed:
                return
        fresh = self._spawn()
        self._handshake(fresh)
        with self._lock:
            self._all.append(fresh)
        self._idle.put(fresh)

    # ------------------------------------------------------------------ work

    def run(self, batch: pa.RecordBatch) -> DecodedBatch:
        """Run the script over ``batch`` on the next idle worker (blocks until one is free)."""
        worker = self._idle.get()
        deadline = time.monotonic() + self.options.timeout_seconds + WATCHDOG_GRACE_SECONDS
        request = write_batches([batch], self._dir)
        try:
            write_frame(worker.stdin, orjson.dumps(request))
            worker.stdin.flush()
            header: dict[str, Any] = orjson.loads(worker.read_frame(deadline))
            if not header["ok"]:
                self._idle.put(worker)
                raise ScriptAbortError(header["kind"], header["message"])
            main, *route_batches = read_batches(header["data"], unlink=True)
            routes = dict(zip(header["routes"], route_batches, strict=True))
            passthrough: dict[str, str] = header["passthrough"]
            if passthrough:
                main = _with_input_columns(main, header["columns"], passthrough, batch)
        except TimeoutError as exc:
            self._replace(worker)
            raise ScriptAbortError(
                "timeout",
                f"the JavaScript worker did not answer within "
                f"{self.options.timeout_seconds + WATCHDOG_GRACE_SECONDS:g} s and was restarted",
            ) from exc
        except (_WorkerGoneError, BrokenPipeError) as exc:
            code = worker.proc.poll()
            self._replace(worker)
            raise ScriptAbortError(
                "crash",
                f"the JavaScript worker process exited unexpectedly (exit code {code}) "
                f"on a batch of {batch.num_rows} rows and was restarted",
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(request["file"])
        self._idle.put(worker)
        logs = [(str(level), str(message)) for level, message in header["logs"]]
        return DecodedBatch(main, routes, header["errors"], logs, dict(header["meta"]), passthrough)

    def pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._all]
