"""The pipeline engine's Prometheus metrics (``quiver_pipeline_*``).

The engine already counts what each step does (:class:`~quiver.pipeline.engine.StepStats`:
the run summary and the report read them); :class:`EngineMetrics` turns those counters into
Prometheus families when ``/metrics`` is scraped, so the hot path pays nothing more than the
sink write time it observes. Labels are bounded by the pipeline file: ``pipeline``, ``step``
(a step name), ``kind`` (source, processor, sink), ``route`` (a route the file names) and
``state``.

The scrape runs in the monitoring server's thread and only reads numbers the event loop
writes: a scrape sees each counter at some moment of the run, never a torn value.
prometheus_client is imported when the registry is first asked for (a scrape), so a run
without a monitoring endpoint never loads it.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from quiver.runtime.delivery import CircuitBreaker, CircuitState

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

__all__ = ["BREAKER_STATES", "WRITE_BUCKETS", "EngineMetrics"]

#: Upper bounds (seconds) of the sink write latency histogram.
WRITE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BUCKET_LABELS = (*(repr(float(b)) for b in WRITE_BUCKETS), "+Inf")

#: The value of ``quiver_pipeline_circuit_breaker_state`` for each state.
BREAKER_STATES = {CircuitState.CLOSED: 0, CircuitState.OPEN: 1, CircuitState.HALF_OPEN: 2}


class _StepCounters(Protocol):
    name: str
    kind: str
    component: str
    rows_in: int
    rows_out: int
    rows_written: int
    batches_in: int
    batches_out: int
    rejected: int
    routes: dict[str, int]
    unconnected_rows: int
    retries: int
    dead_lettered: int


class _Latency:
    """One sink's write latency: counts per bucket (the last is +Inf) and their sum."""

    def __init__(self) -> None:
        self.counts = [0] * (len(WRITE_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(WRITE_BUCKETS, seconds)] += 1
        self.total += seconds


class EngineMetrics:
    """A run's metrics, in a registry of its own; see the module's doc."""

    def __init__(
        self,
        pipeline: str,
        steps: Mapping[str, _StepCounters],
        breakers: Mapping[str, CircuitBreaker],
        queued: Callable[[], Mapping[str, int]],
        state: Callable[[], tuple[bool, bool]],
    ) -> None:
        self.pipeline = pipeline
        self._steps = steps
        self._breakers = breakers
        self._queued = queued
        self._state = state  # (ready, draining)
        self._latency = {n: _Latency() for n, s in steps.items() if s.kind == "sink"}
        self.units = 0  # units (input files, checkpoints) committed
        self.created = time.time()
        self._registry: CollectorRegistry | None = None
        self._lock = threading.Lock()

    @property
    def registry(self) -> CollectorRegistry:
        """The registry of these metrics, made at the first call (from any thread)."""
        with self._lock:
            if self._registry is None:
                from prometheus_client import CollectorRegistry
                from prometheus_client.registry import Collector

                metrics = self

                class Families(Collector):
                    def collect(self) -> Iterable[Metric]:
                        return metrics.families()

                registry = CollectorRegistry(auto_describe=True)
                registry.register(Families())
                self._registry = registry
            return self._registry

    def observe_write(self, sink: str, seconds: float) -> None:
        """A sink's ``write`` call succeeded after ``seconds`` (its retries included)."""
        self._latency[sink].observe(seconds)

    def families(self) -> list[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        p = self.pipeline
        steps = list(self._steps.values())

        def counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
            return CounterMetricFamily(f"quiver_pipeline_{name}", doc, labels=labels)

        rows_in = counter(
            "rows_in", "Rows a step received (processors and sinks).", ["pipeline", "step", "kind"]
        )
        rows_out = counter(
            "rows_out",
            "Rows a step handed on (sources: rows read; processors: default output).",
            ["pipeline", "step", "kind"],
        )
        batches_in = counter("batches_in", "Batches a step received.", ["pipeline", "step", "kind"])
        batches_out = counter(
            "batches_out", "Batches a step handed on.", ["pipeline", "step", "kind"]
        )
        rejected = counter(
            "rejected_rows",
            "Rows a step rejected (unreadable input, failed validation, script errors).",
            ["pipeline", "step", "kind"],
        )
        routed = counter(
            "routed_rows", "Rows a processor sent to a named route.", ["pipeline", "step", "route"]
        )
        unconnected = counter(
            "unconnected_rows",
            "Rows dropped because the output they went to is not connected.",
            ["pipeline", "step"],
        )
        retries = counter(
            "retries", "Retried calls of a step (reads, writes, commits).", ["pipeline", "step"]
        )
        written = counter("sink_rows_written", "Rows a sink committed.", ["pipeline", "sink"])
        dead = counter(
            "sink_rows_dead_lettered",
            "Rows a sink failed for good on, kept in the dead-letter queue.",
            ["pipeline", "sink"],
        )
        for s in steps:
            labels = [p, s.name, s.kind]
            if s.kind != "source":
                rows_in.add_metric(labels, s.rows_in, created=self.created)
                batches_in.add_metric(labels, s.batches_in, created=self.created)
            if s.kind != "sink":
                rows_out.add_metric(labels, s.rows_out, created=self.created)
                batches_out.add_metric(labels, s.batches_out, created=self.created)
                unconnected.add_metric([p, s.name], s.unconnected_rows, created=self.created)
            rejected.add_metric(labels, s.rejected, created=self.created)
            retries.add_metric([p, s.name], s.retries, created=self.created)
            for route, count in list(s.routes.items()):
                routed.add_metric([p, s.name, route], count, created=self.created)
            if s.kind == "sink":
                written.add_metric([p, s.name], s.rows_written, created=self.created)
                dead.add_metric([p, s.name], s.dead_lettered, created=self.created)
        latency = HistogramMetricFamily(
            "quiver_pipeline_sink_write_seconds",
            "Time a sink took to write one batch, retries included (writes that succeeded).",
            labels=["pipeline", "sink"],
        )
        for sink, hist in self._latency.items():
            cumulative: list[tuple[str, float]] = []
            total = 0
            for bound, count in zip(_BUCKET_LABELS, list(hist.counts), strict=True):
                total += count
                cumulative.append((bound, total))
            latency.add_metric([p, sink], cumulative, hist.total)
        breaker = GaugeMetricFamily(
            "quiver_pipeline_circuit_breaker_state",
            "A sink's circuit breaker: 0 closed, 1 open, 2 half-open.",
            labels=["pipeline", "sink"],
        )
        opened = counter(
            "circuit_breaker_opened", "Times a sink's circuit breaker opened.", ["pipeline", "sink"]
        )
        for sink, b in self._breakers.items():
            moves = list(b.transitions)
            now = moves[-1][1] if moves else CircuitState.CLOSED
            breaker.add_metric([p, sink], BREAKER_STATES[now])
            opened.add_metric(
                [p, sink],
                sum(1 for _, to in moves if to is CircuitState.OPEN),
                created=self.created,
            )
        queued = GaugeMetricFamily(
            "quiver_pipeline_queued_batches",
            "Batches waiting in a step's input queue (bounded by engine.queue_batches).",
            labels=["pipeline", "step"],
        )
        for step, depth in self._queued().items():
            queued.add_metric([p, step], depth)
        units = counter(
            "units_committed",
            "Units committed: the whole input, an input file, or a receiver's checkpoint.",
            ["pipeline"],
        )
        units.add_metric([p], self.units, created=self.created)
        ready, draining = self._state()
        up = GaugeMetricFamily(
            "quiver_pipeline_ready",
            "1 once the sources take input, 0 before and while draining.",
            labels=["pipeline"],
        )
        up.add_metric([p], 1 if ready else 0)
        drain = GaugeMetricFamily(
            "quiver_pipeline_draining", "1 while a stop signal drains the run.", labels=["pipeline"]
        )
        drain.add_metric([p], 1 if draining else 0)
        return [
            rows_in,
            rows_out,
            batches_in,
            batches_out,
            rejected,
            routed,
            unconnected,
            retries,
            written,
            dead,
            latency,
            breaker,
            opened,
            queued,
            units,
            up,
            drain,
        ]
