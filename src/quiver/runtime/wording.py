"""Counted nouns in messages: ``1 relation``, ``2 relations``, ``0 steps``."""

from __future__ import annotations

__all__ = ["plural"]


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, in the plural (``many``, default ``noun + "s"``) unless it is 1."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"
