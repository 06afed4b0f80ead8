"""The ``sqlite3`` module Quiver talks to SQLite through.

Quiver installs ``sqlean.py``: Python's own ``sqlite3`` module built with a recent SQLite
(3.49 or newer) inside the wheel, whatever the operating system ships. An older SQLite, such
as Debian 12's 3.40, parses a statement with a fixed stack of 100 entries, so a GraphQL query
nesting to-many relations 5 levels deep fails there with "parser stack overflow"; SQLite 3.49
grows that stack as it needs. Where no ``sqlean.py`` wheel exists for the platform, Python's
``sqlite3`` is used as it is.

Both modules have the same API, so the rest of Quiver imports :data:`sqlite3` from here and
type-checks against the standard library's stubs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
else:
    try:
        import sqlean as sqlite3
    except ImportError:  # no wheel for this platform: the system's SQLite
        import sqlite3

__all__ = ["sqlite3"]
