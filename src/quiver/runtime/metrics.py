"""Prometheus registries that a component running in this process adds to the HTTP server's
``/metrics`` (the observer dispatcher of ``quiver serve`` with ``dispatcher.in_process``).

Each component keeps its own :class:`~prometheus_client.CollectorRegistry`, so two of them (or
two tests) never share a metric; :func:`expose` lists it here until the returned callable
withdraws it. A component that should not import prometheus_client unless something scrapes
(the pipeline engine) exposes a callable making its registry, called at the first scrape.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["expose", "exposed"]

_lock = threading.Lock()
_exposed: list[CollectorRegistry | Callable[[], CollectorRegistry]] = []


def expose(registry: CollectorRegistry | Callable[[], CollectorRegistry]) -> Callable[[], None]:
    """Serve ``registry`` on ``/metrics`` beside the server's own; returns what withdraws it.

    ``registry`` may be a callable returning the registry (the same one at every call)."""
    with _lock:
        _exposed.append(registry)

    def withdraw() -> None:
        with _lock:
            if registry in _exposed:
                _exposed.remove(registry)

    return withdraw


def exposed() -> tuple[CollectorRegistry, ...]:
    """The registries :func:`expose` added and not yet withdrew."""
    with _lock:
        entries = tuple(_exposed)
    return tuple(e() if callable(e) else e for e in entries)
