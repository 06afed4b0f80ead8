"""The dispatcher: change-log rows -> events -> conditions -> actions, through runtime delivery.

Each scan reads the unfinished events (see :mod:`quiver.observers.store`), and for each one
runs every action of every observer whose entity, operation and condition match, skipping
those the ledger already records. A delivered action is recorded in the ledger right after it
returns; a failure is retried with backoff and jitter under the dispatcher's retry policy (one
circuit breaker per action), then moved to the dead-letter table. The event is marked done
once every action has an outcome. A dispatcher stopped between a delivery and its ledger row
delivers that action again, with the same idempotency key: delivery is at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Sequence

from prometheus_client import Counter

from quiver.config.settings import DispatcherSettings
from quiver.observers.catalog import BoundAction, Observer
from quiver.observers.condition import evaluate
from quiver.observers.event import Event, Job
from quiver.observers.metrics import DispatcherMetrics
from quiver.observers.store import DeadLetterRow, DispatchStore
from quiver.runtime.delivery import CircuitBreaker, DeadLetter, Delivery, RetriesExhaustedError

__all__ = ["DEFAULT_LEASE", "Dispatcher"]

DEFAULT_LEASE = 30.0  # seconds a claim on a batch of events lasts unless renewed

_log = logging.getLogger("quiver.observers")
_PRUNE_EVERY = 3600.0  # seconds between deletions of ledger rows no scan reads any more
_PAUSE = 5.0  # seconds to wait after a scan failed (the database is unreachable)
_GAUGES_EVERY = 5.0  # seconds between counts of the backlog and the dead-letter table


class Dispatcher:
    def __init__(
        self,
        store: DispatchStore,
        observers: Sequence[Observer],
        settings: DispatcherSettings,
        *,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        self.store = store
        self.lease = lease
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.observers = list(observers)
        self.settings = settings
        self._limit = asyncio.Semaphore(settings.concurrency)
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self.delivered = 0
        self.dead = 0
        self.metrics = DispatcherMetrics(settings.metrics_namespace)

    def _entities(self) -> list[str]:
        return sorted({o.entity for o in self.observers})

    async def run_once(self) -> int:
        """Claim and dispatch one scan's events; how many events were claimed.

        The claims are renewed every third of the lease while the batch is delivered and
        dropped once it is done, so the events that did not finish (a delivery that raised)
        are free for the next scan of any dispatcher at once. A dispatcher killed mid-batch
        leaves its claims to expire after ``lease`` seconds; then any dispatcher takes the
        events over and delivers what the ledger does not record yet."""
        token = secrets.token_hex(16)
        events = await self.store.claim(
            self._entities(),
            self.settings.lookback,
            self.settings.batch_size,
            self.owner,
            token,
            time.time() + self.lease,
        )
        if not events:
            return 0
        done = asyncio.Event()
        heartbeat = asyncio.create_task(self._renew(token, done))
        try:
            await self._dispatch_all(events)
        except Exception:
            await self._release(token)
            raise
        finally:
            # Never cancelled mid-statement: a transaction cut short could stay open.
            done.set()
            await heartbeat
        # A cancelled batch (the dispatcher stopping) keeps its claims until they expire.
        await self.store.release(token)
        return len(events)

    async def _release(self, token: str) -> None:
        try:
            await self.store.release(token)
        except Exception as exc:  # the claims expire by themselves
            _log.warning("observers: cannot release the claims of a batch: %s", exc)

    async def _dispatch_all(self, events: list[Event]) -> None:
        finished = await self.store.finished_among([e.id for e in events])
        if self.settings.ordered:
            for event in events:
                await self._dispatch(event, finished[event.id])
            return
        outcomes = await asyncio.gather(
            *(self._dispatch(event, finished[event.id]) for event in events),
            return_exceptions=True,
        )
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        for failure in failures:
            if not isinstance(failure, Exception):
                raise failure
        if failures:
            raise failures[0]

    async def _renew(self, token: str, done: asyncio.Event) -> None:
        """Extend the batch's claims every third of the lease until ``done`` is set."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.lease / 3)
            if done.is_set():
                return
            try:
                await self.store.renew(token, time.time() + self.lease)
            except Exception as exc:  # the claims may expire: at worst a second delivery
                _log.warning("observers: cannot renew the claims of a batch: %s", exc)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Scan until ``stop`` is set, sleeping ``poll_interval`` when idle; once an hour,
        drop the ledger rows of events older than twice the lookback."""
        stop = stop or asyncio.Event()
        pruned_at: float | None = None
        counted_at: float | None = None
        while not stop.is_set():
            now = time.monotonic()
            if pruned_at is None or now - pruned_at > _PRUNE_EVERY:
                await self.store.prune(self.settings.lookback)
                pruned_at = now
            try:
                if counted_at is None or now - counted_at > _GAUGES_EVERY:
                    counted_at = now
                    await self.count()
                read = await self.run_once()
            except Exception as exc:  # the database or the ledger: the events stay pending
                _log.warning("observers: a scan failed, retried in %ss: %s", _PAUSE, exc)
                read = 0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _PAUSE)
            if read < self.settings.batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.poll_interval)

    async def count(self) -> None:
        """Set the backlog and dead-letter gauges from the database."""
        m = self.metrics
        m.backlog.set(await self.store.backlog(self._entities(), self.settings.lookback))
        m.dlq.set(await self.store.dead_letter_count())

    async def _dispatch(self, event: Event, finished: set[tuple[str, str]]) -> None:
        async with self._limit:
            for observer in self.observers:
                if observer.entity != event.entity or event.operation not in observer.on:
                    continue
                outcome = self.metrics.events.labels(observer.name, "skipped")
                if evaluate(observer.condition, event.images()):
                    outcome = await self._run_observer(observer, event, finished)
                outcome.inc()
            await self.store.finish(event.id)

    async def _run_observer(
        self, observer: Observer, event: Event, finished: set[tuple[str, str]]
    ) -> Counter:
        """Deliver the observer's unfinished actions for ``event``; the counter of its outcome."""
        events = self.metrics.events
        payload = event.payload(observer.name)
        dead = False
        for bound in observer.actions:
            if (observer.name, bound.name) in finished:
                continue
            try:
                job = Job(event.id, observer.name, bound.name, payload)
                dead = not await self._deliver(job, bound) or dead
            except Exception:
                events.labels(observer.name, "failed").inc()
                raise
        return events.labels(observer.name, "dead_lettered" if dead else "delivered")

    def _delivery(self, job: Job, dead: list[bool]) -> Delivery:
        """A delivery of ``job``; a dead letter written appends True to ``dead``."""
        breaker = self._breakers.setdefault(
            (job.observer, job.action), CircuitBreaker(name=f"{job.observer}.{job.action}")
        )

        async def dead_letter(letter: DeadLetter) -> None:
            error = letter.error
            if isinstance(error, RetriesExhaustedError) and error.last_error is not None:
                error = error.last_error
            await self.store.dead_letter(job, str(error), letter.attempts)
            dead.append(True)
            self.dead += 1
            _log.warning(
                "observer %s action %s: event %s dead-lettered after %s attempts: %s",
                job.observer,
                job.action,
                job.event_id,
                letter.attempts,
                error,
            )

        return Delivery(self.settings.retry, breaker=breaker, dead_letter=dead_letter)

    async def _deliver(self, job: Job, bound: BoundAction) -> bool:
        """Deliver ``job``: True once delivered, False once dead-lettered."""
        attempts = 0
        duration = self.metrics.action_duration.labels(bound.kind)

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            with duration.time():
                await bound.action.run(job)

        dead: list[bool] = []
        try:
            await self._delivery(job, dead).call(
                attempt, name=f"{job.observer}.{job.action}", payload=job
            )
        except Exception:
            if dead:  # in the dead-letter table: a final outcome
                return False
            raise  # not recorded anywhere: the event stays pending
        await self.store.record(job, "delivered", attempts)
        self.delivered += 1
        return True

    async def redeliver(self, row: DeadLetterRow) -> None:
        """Run a dead letter's action again (``quiver dlq retry``); raises when it fails
        again, after updating the dead letter's error and attempts."""
        bound = self._action(row.observer, row.action)
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            await bound.action.run(row.job())

        try:
            await Delivery(self.settings.retry).call(attempt, name=f"{row.observer}.{row.action}")
        except Exception as exc:
            error = exc.last_error if isinstance(exc, RetriesExhaustedError) else exc
            await self.store.retry_failed(row, str(error), attempts)
            raise
        await self.store.redelivered(row, attempts)

    def _action(self, observer: str, action: str) -> BoundAction:
        for o in self.observers:
            if o.name == observer:
                for b in o.actions:
                    if b.name == action:
                        return b
        raise LookupError(f"observer {observer!r} has no action {action!r} any more")

    async def close(self) -> None:
        """Close the actions and the database; the claims of a batch cut short are dropped
        first, so another dispatcher takes its events over at once."""
        try:
            await self.store.release_owner(self.owner)
        except Exception as exc:  # they expire by themselves
            _log.warning("observers: cannot release this dispatcher's claims: %s", exc)
        for o in self.observers:
            for b in o.actions:
                await b.action.close()
        await self.store.db.close()
