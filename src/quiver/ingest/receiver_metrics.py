"""The metrics of a network receiver's intake (``quiver_ingest_receiver_*``).

A receiver that answers its clients itself (``otlp``) takes data before the pipeline reads
it: what it accepted into the spool, what it refused and why, and what waits, are counted by
its :class:`~quiver.ingest.intake.Intake` and turned into Prometheus families on each scrape
(the monitoring endpoint's thread reads numbers the event loop writes). Labels: ``pipeline``,
``receiver`` (the component) and ``reason``: bounded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from quiver.ingest.intake import Intake

__all__ = ["ReceiverMetrics"]


class ReceiverMetrics(Collector):
    """The families of one intake, in a registry of their own (:attr:`registry`)."""

    def __init__(self, intake: Intake, pipeline: str, receiver: str) -> None:
        self.intake = intake
        self.labels = [pipeline, receiver]
        self.created = time.time()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(self)

    def collect(self) -> Iterable[Metric]:
        intake, labels, created = self.intake, self.labels, self.created
        names = ["pipeline", "receiver"]
        rows = CounterMetricFamily(
            "quiver_ingest_receiver_accepted_rows",
            "Rows (spans, data points, log records) accepted into the spool.",
            labels=names,
        )
        rows.add_metric(labels, intake.accepted_rows, created=created)
        batches = CounterMetricFamily(
            "quiver_ingest_receiver_accepted_requests",
            "Requests accepted into the spool (one batch each).",
            labels=names,
        )
        batches.add_metric(labels, intake.accepted_batches, created=created)
        items = CounterMetricFamily(
            "quiver_ingest_receiver_refused_items",
            "Items refused one by one (impossible ids, a time past 2262 or a count past "
            "int64, no metric name; answered as partial success).",
            labels=names,
        )
        items.add_metric(labels, intake.rejected_items, created=created)
        refused = CounterMetricFamily(
            "quiver_ingest_receiver_refused_requests",
            "Requests refused whole, by reason: backpressure (429 / RESOURCE_EXHAUSTED) or "
            "unavailable (503 / UNAVAILABLE).",
            labels=[*names, "reason"],
        )
        for reason, count in list(intake.refused_requests.items()):
            refused.add_metric([*labels, reason], count, created=created)
        queued = GaugeMetricFamily(
            "quiver_ingest_receiver_queued_batches",
            "Batches accepted and waiting for the pipeline (bounded by max_queued_batches).",
            labels=names,
        )
        queued.add_metric(labels, intake.queued_batches)
        out: list[Metric] = [rows, batches, items, refused, queued]
        try:
            held = intake.spool.held_bytes
        except RuntimeError:  # the spool changed its segments during the scrape
            return out
        spool = GaugeMetricFamily(
            "quiver_ingest_receiver_spool_bytes",
            "Bytes the spool holds on disk, not yet committed by the sinks.",
            labels=names,
        )
        spool.add_metric(labels, held)
        return [*out, spool]
