"""flight: the Arrow Flight server and its client helper; see docs/flight.md.

Importing this package loads nothing heavy; :func:`connect` and the server load pyarrow.flight
when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quiver.flight.client import QuiverFlightClient

__all__ = ["connect"]


def connect(location: str = "grpc://127.0.0.1:8815", **options: Any) -> QuiverFlightClient:
    """A client of a Quiver Flight server (see :func:`quiver.flight.client.connect`)."""
    from quiver.flight.client import connect as _connect

    return _connect(location, **options)
