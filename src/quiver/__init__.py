"""Quiver: compiled GraphQL over SQL databases, Arrow Flight, file and telemetry pipelines.

The public authoring API lives here; everything else is reached through the ``quiver`` CLI.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
