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
import contextvars
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram

from quiver.config.settings import DispatcherSettings
from quiver.observers.catalog import BoundAction, Observer
from quiver.observers.condition import evaluate
from quiver.observers.event import Event, Job
from quiver.observers.metrics import DispatcherMetrics
from quiver.observers.store import EVENT_DONE, DeadLetterRow, DispatchStore
from quiver.runtime.delivery import CircuitBreaker, DeadLetter, Delivery, RetriesExhaustedError
from quiver.sql.changelog import CHANGE_CHANNEL
from quiver.sql.connect import connect_postgresql
from quiver.sql.url import parse_database_url

__all__ = ["DEFAULT_LANES", "DEFAULT_LEASE", "Dispatcher"]

DEFAULT_LEASE = 30.0  # seconds a claim on a batch of events lasts unless renewed
DEFAULT_LANES = 2  # batches a dispatcher delivers at once (one when ordered)

# The ledger rows of the batch the running task delivers, written together when it ends.
_Outcome = tuple[int, str, str, str, int]
_BATCH: contextvars.ContextVar[list[_Outcome]] = contextvars.ContextVar("quiver_observer_batch")

_log = logging.getLogger("quiver.observers")
_PRUNE_EVERY = 3600.0  # seconds between deletions of ledger rows no scan reads any more
# _GAPS: most scans read only the change rows above the newest id this dispatcher claimed so
# far, so a scan costs the rows it claims, not the finished rows of the lookback window. The
# ids below it that no scan returned yet (a row committed after a row with a larger id, or
# not yet committed) are gaps: while there are any, scans read from the lowest one, but from
# no lower than this many batches below the newest id. Every third of the lease (within
# _FULL_SCAN_EVERY seconds) a scan reads the whole window, so a row committed later still, or
# left by a dispatcher that died (its claims expire after the lease), is found then: nothing
# is skipped.
_RECENT_BATCHES = 10
_FULL_SCAN_EVERY = (1.0, 10.0)
_PAUSE = 5.0  # seconds to wait after a scan failed (the database is unreachable)
_GAUGES_EVERY = 5.0  # seconds between counts of the backlog and the dead-letter table


@dataclass(frozen=True, slots=True)
class _Route:
    """How one observer's action is delivered: its retry policy, circuit breaker and
    dead-letter hook (one Delivery for all its jobs) and its duration histogram."""

    name: str
    bound: BoundAction
    delivery: Delivery
    duration: Histogram


class Dispatcher:
    def __init__(
        self,
        store: DispatchStore,
        observers: Sequence[Observer],
        settings: DispatcherSettings,
        *,
        lease: float = DEFAULT_LEASE,
        lanes: int = DEFAULT_LANES,
        listen: str | None = None,
    ) -> None:
        """``listen``: the URL of the PostgreSQL database to LISTEN on for new changes."""
        self.store = store
        self._listen_url = listen
        self._listener: Any = None
        self._woken = asyncio.Event()
        self._heard = 0  # wake-ups so far
        self.lease = lease
        self.lanes = lanes
        # Scans read the change rows above the newest id claimed so far, or from the lowest
        # gap below it; one every third of the lease reads the whole window (see _GAPS).
        self._newest = 0
        self._gaps: dict[int, float] = {}  # id below _newest -> when first missed
        self._full_scan_at = -math.inf
        self._full_scan_every = min(max(lease / 3, _FULL_SCAN_EVERY[0]), _FULL_SCAN_EVERY[1])
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.observers = list(observers)
        self._json_fields = {o.entity: o.json_fields for o in self.observers}
        self.settings = settings
        self._limit = asyncio.Semaphore(settings.concurrency)
        self._breakers: dict[tuple[str, str], CircuitBreaker] = {}
        self.delivered = 0
        self.dead = 0
        self.metrics = DispatcherMetrics(settings.metrics_namespace)
        self._routes: dict[tuple[str, str], _Route] = {}
        self._counters: dict[tuple[str, str], Counter] = {}
        self._buried: set[int] = set()  # id() of the jobs the dead-letter hook wrote

    def _entities(self) -> list[str]:
        return sorted({o.entity for o in self.observers})

    async def run_once(self) -> int:
        """Claim and dispatch one scan's events; how many events were claimed.

        The claims are renewed every third of the lease while the batch is delivered and
        dropped once it is done, so the events that did not finish (a delivery that raised)
        are free for the next scan of any dispatcher at once. A dispatcher killed mid-batch
        leaves its claims to expire after ``lease`` seconds; then any dispatcher takes the
        events over and delivers what the ledger does not record yet."""
        return (await self._run_batch())[0]

    async def _run_batch(self) -> tuple[int, bool]:
        """:meth:`run_once`: how many events were claimed, and whether more may be
        pending (see :class:`~quiver.observers.store.ClaimedBatch`)."""
        token = secrets.token_hex(16)
        now = time.monotonic()
        full = now - self._full_scan_at >= self._full_scan_every
        if full:
            after = 0
            # Gaps that outlived a whole full-scan period: rolled back, another entity's or
            # another dispatcher's. The full scans find them should they turn up after all.
            self._gaps = {i: t for i, t in self._gaps.items() if t >= self._full_scan_at}
            self._full_scan_at = now
        else:
            after = self._newest
            if self._gaps:
                margin = self._newest - _RECENT_BATCHES * self.settings.batch_size
                after = max(0, margin, min(self._gaps) - 1)
        batch = await self.store.claim_batch(
            self._entities(),
            self.settings.lookback,
            self.settings.batch_size,
            self.owner,
            token,
            time.time() + self.lease,
            after,
        )
        events, finished = batch.events, batch.finished
        if not events:
            return 0, batch.more
        self._saw([e.id for e in events], now)
        outcomes: list[_Outcome] = []
        _BATCH.set(outcomes)
        done = asyncio.Event()
        heartbeat = asyncio.create_task(self._renew(token, done))
        try:
            await self._dispatch_all(events, finished)
        except Exception:
            # The events that did not finish are found again by the next scan.
            recorded = {o[0] for o in outcomes if o[1] == EVENT_DONE}
            self._gaps.update((e.id, now) for e in events if e.id not in recorded)
            await self.store.record_many(outcomes)
            await self._release(token)
            raise
        finally:
            # Never cancelled mid-statement: a transaction cut short could stay open.
            done.set()
            await heartbeat
        # The batch's ledger rows and the end of its claims, in one transaction. A dispatcher
        # that dies before delivers the batch's actions again: at least once.
        await self.store.record_many(outcomes, token)
        return len(events), batch.more

    def _saw(self, ids: list[int], now: float) -> None:
        """Note the ids (ascending) a scan claimed: each is no gap any more, and the ids
        between the newest claimed so far and these that were not among them are gaps
        (a change committed later than a change with a larger id, not yet committed, or
        claimed by another dispatcher), down to the margin below which scans never start."""
        gaps = self._gaps
        for i in ids:
            gaps.pop(i, None)
        top = ids[-1]
        if top > self._newest:
            claimed = set(ids)
            floor = top - _RECENT_BATCHES * self.settings.batch_size
            for i in range(max(self._newest + 1, floor), top):
                if i not in claimed:
                    gaps[i] = now
            self._newest = top
            if gaps and min(gaps) < floor:  # no scan starts below the margin: forget them
                self._gaps = {i: t for i, t in gaps.items() if i >= floor}

    async def _release(self, token: str) -> None:
        try:
            await self.store.release(token)
        except Exception as exc:  # the claims expire by themselves
            _log.warning("observers: cannot release the claims of a batch: %s", exc)

    async def _dispatch_all(
        self, events: list[Event], finished: dict[int, set[tuple[str, str]]]
    ) -> None:
        if self.settings.ordered:
            for event in events:
                await self._dispatch(event, finished[event.id])
            return
        # Up to `concurrency` workers take the events in turn (a task per worker, not per
        # event); every event is dispatched even when another one failed.
        queue = iter(events)
        failures: list[BaseException] = []

        async def work() -> None:
            for event in queue:
                try:
                    await self._dispatch(event, finished[event.id])
                except Exception as exc:
                    failures.append(exc)

        outcomes = await asyncio.gather(
            *(work() for _ in range(min(self.settings.concurrency, len(events)))),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
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
        """Scan until ``stop`` is set in ``lanes`` tasks (one when ordered), each claiming
        and delivering its own batch, so events committed while one batch is delivered are
        claimed by the next lane at once; a lane whose scan reached the end of the pending
        events sleeps ``poll_interval`` (or until a NOTIFY on PostgreSQL). The
        gauges are counted every few seconds, and once an hour the ledger rows of events
        older than twice the lookback are dropped."""
        stop = stop or asyncio.Event()
        lanes = 1 if self.settings.ordered else self.lanes
        try:
            await asyncio.gather(
                self._housekeep(stop),
                self._wake_on(stop),
                *(self._lane(stop) for _ in range(lanes)),
            )
        finally:
            await self._unlisten()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake()

    def _wake(self, *_args: object) -> None:
        """Wake the idle lanes: a change committed (a NOTIFY), or the dispatcher stops."""
        self._heard += 1
        self._woken.set()
        self._woken = asyncio.Event()

    async def _listen(self) -> None:
        """On PostgreSQL, LISTEN for the NOTIFY every change-log writer sends when it commits
        (see :mod:`quiver.sql.changelog`), so an idle lane scans at once instead of after
        ``poll_interval``; again if the connection was lost. Without it the lanes poll."""
        if self._listen_url is None:
            return
        if self._listener is not None:
            if not self._listener.is_closed():
                return
            self._listener = None
        try:
            conn = await connect_postgresql(parse_database_url(self._listen_url))
            await conn.add_listener(CHANGE_CHANNEL, self._wake)
        except Exception as exc:
            _log.warning("observers: cannot LISTEN for changes (%s); the lanes poll", exc)
            return
        self._listener = conn

    async def _unlisten(self) -> None:
        conn, self._listener = self._listener, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.close(timeout=5)

    async def _housekeep(self, stop: asyncio.Event) -> None:
        pruned_at: float | None = None
        while not stop.is_set():
            now = time.monotonic()
            await self._listen()
            try:
                if pruned_at is None or now - pruned_at > _PRUNE_EVERY:
                    pruned_at = now
                    await self.store.prune(self.settings.lookback)
                await self.count()
            except Exception as exc:
                _log.warning("observers: cannot count the backlog: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _GAUGES_EVERY)

    async def _lane(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            heard = self._heard
            try:
                _, more = await self._run_batch()
            except Exception as exc:  # the database or the ledger: the events stay pending
                _log.warning("observers: a scan failed, retried in %ss: %s", _PAUSE, exc)
                more = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _PAUSE)
            # Idle once a scan reached the end of the pending events. A NOTIFY heard while the
            # scan ran may be of a change it did not see yet.
            if not more and heard == self._heard and not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), self.settings.poll_interval)

    async def count(self) -> None:
        """Set the backlog and dead-letter gauges from the database."""
        m = self.metrics
        m.backlog.set(await self.store.backlog(self._entities(), self.settings.lookback))
        m.dlq.set(await self.store.dead_letter_count())

    async def _dispatch(self, event: Event, finished: set[tuple[str, str]]) -> None:
        event = event.documented(self._json_fields.get(event.entity, frozenset()))
        async with self._limit:
            for observer in self.observers:
                if observer.entity != event.entity or event.operation not in observer.on:
                    continue
                if observer.condition.root is None or evaluate(observer.condition, event.images()):
                    outcome = await self._run_observer(observer, event, finished)
                else:
                    outcome = self._counter(observer.name, "skipped")
                outcome.inc()
            _BATCH.get().append((event.id, EVENT_DONE, EVENT_DONE, "done", 0))

    async def _run_observer(
        self, observer: Observer, event: Event, finished: set[tuple[str, str]]
    ) -> Counter:
        """Deliver the observer's unfinished actions for ``event``; the counter of its outcome."""
        payload = event.payload(observer.name)
        dead = False
        for bound in observer.actions:
            if finished and (observer.name, bound.name) in finished:
                continue
            try:
                job = Job(event.id, observer.name, bound.name, payload)
                dead = not await self._deliver(job, self._route(observer.name, bound)) or dead
            except Exception:
                self._counter(observer.name, "failed").inc()
                raise
        return self._counter(observer.name, "dead_lettered" if dead else "delivered")

    def _counter(self, observer: str, outcome: str) -> Counter:
        """The events counter of ``observer`` and ``outcome`` (its labels looked up once)."""
        counter = self._counters.get((observer, outcome))
        if counter is None:
            counter = self._counters[(observer, outcome)] = self.metrics.events.labels(
                observer, outcome
            )
        return counter

    def _route(self, observer: str, bound: BoundAction) -> _Route:
        """The delivery of ``observer``'s action ``bound`` (one circuit breaker for all its
        jobs), made on first use."""
        route = self._routes.get((observer, bound.name))
        if route is None:
            name = f"{observer}.{bound.name}"
            breaker = self._breakers.setdefault((observer, bound.name), CircuitBreaker(name=name))
            delivery = Delivery(self.settings.retry, breaker=breaker, dead_letter=self._bury)
            duration = self.metrics.action_duration.labels(bound.kind)
            route = _Route(name, bound, delivery, duration)
            self._routes[(observer, bound.name)] = route
        return route

    async def _bury(self, letter: DeadLetter) -> None:
        """The dead-letter hook of every delivery: the job to the dead-letter table."""
        job: Job = letter.payload
        error = letter.error
        if isinstance(error, RetriesExhaustedError) and error.last_error is not None:
            error = error.last_error
        await self.store.dead_letter(job, str(error), letter.attempts)
        self._buried.add(id(job))
        self.dead += 1
        _log.warning(
            "observer %s action %s: event %s dead-lettered after %s attempts: %s",
            job.observer,
            job.action,
            job.event_id,
            letter.attempts,
            error,
        )

    async def _deliver(self, job: Job, route: _Route) -> bool:
        """Deliver ``job``: True once delivered, False once dead-lettered."""
        attempts = 0
        run = route.bound.action.run
        observe = route.duration.observe

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            started = time.perf_counter()
            try:
                await run(job)
            finally:
                observe(time.perf_counter() - started)

        try:
            await route.delivery.call(attempt, name=route.name, payload=job)
        except Exception:
            if id(job) in self._buried:  # in the dead-letter table: a final outcome
                self._buried.discard(id(job))
                return False
            raise  # not recorded anywhere: the event stays pending
        _BATCH.get().append((job.event_id, job.observer, job.action, "delivered", attempts))
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
        await self._unlisten()
        await self.store.db.close()
