"""Job functions and the worker that runs them (``quiver jobs work --app jobs.py``).

::

    from quiver.observers.jobs import job

    @job("send_invoice")
    async def send_invoice(payload: dict[str, Any]) -> None:
        ...

A job function gets the payload the ``job`` action enqueued (a plain function runs in a
thread). Raising :class:`~quiver.runtime.errors.PermanentError` fails the job at once; any
other exception is retried under the dispatcher's retry policy (``dispatcher.retry``: backoff
with full jitter, at most ``max_attempts`` runs in all, counted in the queue so a restarted
worker keeps counting). A job that fails for good is marked dead in the queue and written to
the dead-letter table with the enqueuing action's idempotency key; ``quiver dlq retry``
enqueues it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import inspect
import logging
import os
import random
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from quiver.observers.event import Job
from quiver.observers.jobqueue import JobQueue, JobRow
from quiver.observers.store import DispatchStore
from quiver.runtime.delivery import RetryPolicy
from quiver.runtime.errors import ConfigError, PermanentError

__all__ = ["JobSpec", "JobWorker", "job", "jobs_in"]

_MARK = "__quiver_job__"
_log = logging.getLogger("quiver.jobs")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobSpec:
    name: str
    fn: Callable[[Any], Any]
    location: str


def job(name: str | None = None) -> Callable[[F], F]:
    """Mark a function as the job ``name`` (default: the function's name)."""

    def mark(fn: F) -> F:
        code = getattr(fn, "__code__", None)
        where = f"{code.co_filename}:{code.co_firstlineno}" if code else fn.__qualname__
        setattr(fn, _MARK, JobSpec(name or fn.__name__, fn, where))
        return fn

    return mark


def jobs_in(path: str | Path) -> dict[str, JobSpec]:
    """Import the Python file at ``path`` and return its ``@job`` functions by name."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError.one(f"{file} not found", str(file), "check the --app path")
    module_name = f"quiver_jobs_app_{abs(hash(file.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ConfigError.one(f"{file} is not a Python file", str(file), "name a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ConfigError.one(f"syntax error: {exc.msg}", f"{file}:{exc.lineno or 1}") from None
    found: dict[str, JobSpec] = {}
    for value in vars(module).values():
        spec_ = getattr(value, _MARK, None)
        if not isinstance(spec_, JobSpec):
            continue
        if spec_.name in found:
            raise ConfigError.one(
                f"two job functions named {spec_.name!r}",
                spec_.location,
                f"the other is at {found[spec_.name].location}; rename one",
            )
        found[spec_.name] = spec_
    if not found:
        raise ConfigError.one(
            f"{file} declares no job function", str(file), "mark functions with @job('name')"
        )
    return found


class JobWorker:
    """Claims due jobs of its functions, runs up to ``concurrency`` at once, records outcomes."""

    def __init__(
        self,
        queue: JobQueue,
        store: DispatchStore,
        functions: Mapping[str, JobSpec],
        retry: RetryPolicy,
        *,
        concurrency: int = 8,
        batch_size: int = 50,
        lease: float = 60.0,
        poll_interval: float = 0.5,
    ) -> None:
        self.queue = queue
        self.store = store
        self.functions = dict(functions)
        self.retry = retry
        self.batch_size = batch_size
        self.lease = lease
        self.poll_interval = poll_interval
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        self._limit = asyncio.Semaphore(concurrency)
        self.done = 0
        self.retried = 0
        self.dead = 0

    async def run_once(self) -> int:
        """Run one batch of due jobs; how many were claimed."""
        rows = await self.queue.claim(
            sorted(self.functions), self.batch_size, self.owner, self.lease
        )
        await asyncio.gather(*(self._run(row) for row in rows))
        return len(rows)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        while not stop.is_set():
            try:
                claimed = await self.run_once()
            except Exception as exc:  # the database: the jobs stay in the queue
                _log.warning("jobs: a claim failed, retried in 5s: %s", exc)
                claimed = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 5.0)
            if claimed < self.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_interval)

    async def _run(self, row: JobRow) -> None:
        spec = self.functions[row.name]
        async with self._limit:
            try:
                if inspect.iscoroutinefunction(spec.fn):
                    await spec.fn(row.payload)
                else:
                    result = await asyncio.to_thread(spec.fn, row.payload)
                    if inspect.isawaitable(result):
                        await result
            except Exception as exc:
                await self._failed(row, exc)
                return
            await self.queue.done(row)
            self.done += 1

    async def _failed(self, row: JobRow, exc: Exception) -> None:
        error = str(exc) or type(exc).__name__
        if not isinstance(exc, PermanentError):
            error = f"{type(exc).__name__}: {error}"
        final = isinstance(exc, PermanentError) or row.attempts >= self.retry.max_attempts
        if not final:
            bound = self.retry.delay_bound(row.attempts)
            delay = bound * random.random() if self.retry.jitter else bound
            await self.queue.retry_later(row, error, delay)
            self.retried += 1
            _log.info("job %s %s failed (attempt %s), due again in %.2fs: %s",
                      row.name, row.id, row.attempts, delay, error)  # fmt: skip
            return
        dead = Job(row.event_id, row.observer, row.action, row.event)
        await self.store.dead_letter(dead, f"job {row.name}: {error}", row.attempts)
        await self.queue.bury(row, error)
        self.dead += 1
        _log.warning("job %s %s dead-lettered after %s attempts: %s",
                     row.name, row.id, row.attempts, error)  # fmt: skip
