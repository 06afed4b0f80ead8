"""Replaying dead-letter entries into a pipeline's sinks (``quiver ingest dlq replay``).

Each entry is delivered on its own, as one commit: a fresh instance of the sink (the one that
refused it, or the sink named with ``--sink``) is opened with the entry's columns, written
batch by batch and committed, every call under the pipeline's retry policy and one circuit
breaker per sink, as in a run. The entry is removed only once the sink's commit returned; a
replay that fails leaves it in place with its attempts and error brought up to date. A file
sink writing one file is refused (the replay would replace the file); one whose ``path`` has
``{stem}`` writes ``dlq-<entry id>`` there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from quiver.pipeline.component import Closing, RunContext, Sink
from quiver.pipeline.dead_letters import DeadLetterEntry, DeadLetterQueue, Failure
from quiver.pipeline.output import FileSinkConfig
from quiver.pipeline.plan import PipelinePlan, PlanStep
from quiver.pipeline.resume import STEM
from quiver.pipeline.units import RunUnit
from quiver.runtime.delivery import CircuitBreaker, DeadLetter, Delivery
from quiver.runtime.errors import ConfigError, PermanentError
from quiver.runtime.hints import did_you_mean

__all__ = ["ReplayOutcome", "queue_of", "replay_entries", "target_sink"]

Log = Callable[[str, str], None]


@dataclass(frozen=True)
class ReplayOutcome:
    """What became of one entry: delivered (and removed) or failed again (and kept)."""

    entry_id: str
    sink: str
    rows: int
    delivered: bool
    attempts: int
    error: str | None = None


def queue_of(plan: PipelinePlan, log: Log | None = None) -> DeadLetterQueue:
    """The dead-letter queue of ``plan``; a ConfigError when the pipeline has none."""
    if plan.dlq is None or plan.dlq_path is None:
        raise ConfigError.one(
            "the pipeline has no dead-letter queue",
            plan.file,
            "add `dlq: {path: dlq/}` to the pipeline file (see docs/pipelines/engine.md)",
        )
    return DeadLetterQueue.of(plan.dlq, plan.dlq_path, plan.name, log or _quiet)


def target_sink(plan: PipelinePlan, name: str) -> PlanStep:
    """The sink step ``name`` of ``plan``, checked to take a replay."""
    sinks = [s.name for s in plan.sinks]
    step = plan.steps.get(name)
    if step is None or step.kind != "sink":
        raise ConfigError.one(
            f"'{name}' is not a sink of the pipeline",
            plan.file,
            did_you_mean(name, sinks, fallback=f"its sinks: {', '.join(sinks) or 'none'}")
            + " (name one with --sink)",
        )
    writes_directory = isinstance(step.config, FileSinkConfig) and step.config.writes_directory
    if step.writes_files and STEM not in str(step.path_option) and not writes_directory:
        raise ConfigError.one(
            f"sink '{name}' writes one file ({step.path_option}); a replay would replace it",
            plan.file,
            "put {stem} in its path (the replay then writes <path with dlq-<entry id>>), "
            "or replay into another sink with --sink",
        )
    return step


async def replay_entries(
    plan: PipelinePlan,
    queue: DeadLetterQueue,
    entries: list[DeadLetterEntry],
    *,
    sink: str | None = None,
    log: Log | None = None,
    on_outcome: Callable[[ReplayOutcome], None] | None = None,
) -> list[ReplayOutcome]:
    """Deliver ``entries`` (oldest first) to their sinks, or all to ``sink``."""
    log = log or _quiet
    if sink is not None:
        target_sink(plan, sink)  # checked even when there is nothing to replay
    targets = {e.id: target_sink(plan, sink or e.sink) for e in entries}  # all checked first
    breakers: dict[str, CircuitBreaker] = {}
    outcomes = []
    with _replay_lock(queue):
        for entry in entries:
            step = targets[entry.id]
            breaker = breakers.setdefault(
                step.name, CircuitBreaker(plan.circuit_breaker, name=f"sink '{step.name}'")
            )
            outcome = await _replay_one(plan, queue, entry, step, breaker, log)
            outcomes.append(outcome)
            queue.metrics.replayed.labels(
                queue.pipeline, "delivered" if outcome.delivered else "failed"
            ).inc()
            if on_outcome is not None:
                on_outcome(outcome)
    queue.refresh()
    return outcomes


async def _replay_one(
    plan: PipelinePlan,
    queue: DeadLetterQueue,
    entry: DeadLetterEntry,
    step: PlanStep,
    breaker: CircuitBreaker,
    log: Log,
) -> ReplayOutcome:
    try:
        table = await asyncio.to_thread(queue.read, entry.id)
    except KeyError:
        return ReplayOutcome(entry.id, step.name, entry.rows, False, 0, "removed meanwhile")
    stem = f"dlq-{entry.id}"
    run_id = uuid.uuid4().hex[:12]
    ctx = RunContext(run_id, plan.base_dir, dict(plan.variables), log, plan.name, stem)
    final: list[DeadLetter] = []

    async def hook(letter: DeadLetter) -> None:
        final.append(letter)

    delivery = Delivery(plan.retry, breaker=breaker, dead_letter=hook)
    component = cast(Sink, step.cls(RunUnit(stem=stem).config_of(step)))
    started = time.time()
    try:
        await delivery.call(_bind(component.open, table.schema, ctx), name=f"open '{step.name}'")
        for batch in table.to_batches():
            await delivery.call(_bind(component.write, batch), name=f"write '{step.name}'")
        await delivery.call(component.commit, name=f"commit '{step.name}'")
    except Exception as exc:
        with contextlib.suppress(Exception):
            await component.abort()
        now = time.time()
        failure = Failure.of(final[-1]) if final else Failure.from_error(exc, 1, started, now)
        with contextlib.suppress(KeyError):
            await asyncio.to_thread(queue.failed_again, entry.id, failure)
        return ReplayOutcome(
            entry.id, step.name, table.num_rows, False, failure.attempts, failure.message
        )
    finally:
        if step.closes:
            with contextlib.suppress(Exception):
                res = cast(Closing, component).close()
                if res is not None:
                    await res
    await asyncio.to_thread(queue.remove, entry.id)
    log(f"dead-letter entry {entry.id}: {table.num_rows} row(s) delivered to '{step.name}'", "info")
    return ReplayOutcome(entry.id, step.name, table.num_rows, True, 1)


@contextlib.contextmanager
def _replay_lock(queue: DeadLetterQueue) -> Iterator[None]:
    """One replay of a queue at a time: two would deliver the same entries twice."""
    try:
        fd = os.open(os.path.join(queue.path, "replay.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PermanentError.one(
            f"cannot open {queue.path}: {exc.strerror or exc}",
            "dlq.path",
            "check that the directory exists and may be written",
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise PermanentError.one(
            f"another replay of the dead-letter queue {queue.path} is running",
            "dlq.path",
            "wait for it to finish",
        ) from None
    try:
        yield
    finally:
        os.close(fd)


def _bind(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    def call() -> Any:
        return fn(*args)

    return call


def _quiet(message: str, level: str) -> None:
    del message, level
