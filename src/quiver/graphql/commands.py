"""CLI commands of this package. Only typer is imported at module level."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``quiver`` app."""
    del app
