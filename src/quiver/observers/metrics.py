"""The dispatcher's Prometheus metrics, in a registry of its own.

Names start with ``dispatcher.metrics_namespace`` (``quiver`` by default):

* ``<ns>_observer_events_processed_total{observer, outcome}``: events an observer examined,
  by outcome: ``delivered`` (every action delivered), ``dead_lettered`` (an action went to the
  dead-letter table), ``skipped`` (the condition was false) or ``failed`` (the ledger could not
  be written; the event is read again by a later scan).
* ``<ns>_observer_action_duration_seconds{kind}``: time of each attempt of an action, by
  action type (``webhook``, ``log``, ``python``, ...).
* ``<ns>_observer_backlog_size``: change rows in the lookback window not yet finished.
* ``<ns>_observer_dlq_size``: rows in the dead-letter table.
* ``<ns>_observer_cache_hit_rate`` and ``<ns>_observer_dedup_hit_rate``: 0 for a single
  dispatcher, which has no shared cache or deduplication store to hit.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["DispatcherMetrics"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class DispatcherMetrics:
    def __init__(self, namespace: str = "quiver") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(
            "observer_events_processed",
            "Events an observer examined, by outcome (delivered, dead_lettered, skipped, failed).",
            ["observer", "outcome"],
            namespace=namespace,
            registry=r,
        )
        self.action_duration = Histogram(
            "observer_action_duration_seconds",
            "Time of one attempt of an action, by action type.",
            ["kind"],
            namespace=namespace,
            registry=r,
            buckets=_BUCKETS,
        )
        self.backlog = Gauge(
            "observer_backlog_size",
            "Change rows in the lookback window that are not yet finished.",
            namespace=namespace,
            registry=r,
        )
        self.dlq = Gauge(
            "observer_dlq_size", "Rows in the dead-letter table.", namespace=namespace, registry=r
        )
        self.cache_hit_rate = Gauge(
            "observer_cache_hit_rate",
            "Share of condition lookups answered by the shared cache (0: no shared cache).",
            namespace=namespace,
            registry=r,
        )
        self.dedup_hit_rate = Gauge(
            "observer_dedup_hit_rate",
            "Share of events dropped as already seen by the shared deduplication store"
            " (0: no shared store).",
            namespace=namespace,
            registry=r,
        )
