"""The one "did you mean" helper: the closest known names to a word a user mistyped.

Every surface that rejects an unknown name (a setting, a component, a column, a file, a
filter operator) suggests the nearest known ones the same way::

    did_you_mean("max_dept", ["max_depth", "max_cost"])  # "did you mean 'max_depth'?"
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["closest_names", "did_you_mean"]

_CUTOFF = 0.6


def closest_names(name: str, known: Iterable[str], *, most: int = 1) -> list[str]:
    """The known names nearest to ``name``, best first: a match ignoring case comes first."""
    import difflib  # only for a mistake: not imported by every start

    pool = sorted(set(known))
    by_folded: dict[str, list[str]] = {}
    for k in pool:
        by_folded.setdefault(k.casefold(), []).append(k)
    same = [k for k in by_folded.get(name.casefold(), []) if k != name]
    close = difflib.get_close_matches(name.casefold(), list(by_folded), n=most, cutoff=_CUTOFF)
    found = same + [k for c in close for k in by_folded[c] if k not in same and k != name]
    return found[:most]


def did_you_mean(name: str, known: Iterable[str], *, most: int = 1, fallback: str = "") -> str:
    """``"did you mean 'x'?"`` (or ``'x', 'y'``) for the nearest known names, else ``fallback``."""
    close = closest_names(name, known, most=most)
    if not close:
        return fallback
    return f"did you mean {', '.join(repr(c) for c in close)}?"
