"""Prometheus registries that a component running in this process adds to the HTTP server's
``/metrics`` (the observer dispatcher of ``quiver serve`` with ``dispatcher.in_process``).

Each component keeps its own :class:`~prometheus_client.CollectorRegistry`, so two of them (or
two tests) never share a metric; :func:`expose` lists it here until the returned callable
withdraws it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry

__all__ = ["expose", "exposed"]

_lock = threading.Lock()
_exposed: list[CollectorRegistry] = []


def expose(registry: CollectorRegistry) -> Callable[[], None]:
    """Serve ``registry`` on ``/metrics`` beside the server's own; returns what withdraws it."""
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
        return tuple(_exposed)
