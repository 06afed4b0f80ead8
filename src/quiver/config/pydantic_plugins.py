"""Pydantic's plugin search, made cheap when no plugin is installed.

The first model a process builds makes pydantic look for its plugins (the ``pydantic``
entry-point group): ``importlib.metadata`` reads the entry points of every installed
distribution, about 7 ms of CPU with 150 of them installed (2% of a short
``quiver run``). Nearly always there is none. :func:`settle_pydantic_plugins` reads the same
files itself in a third of the time, and when none of them names the group it records with
pydantic what its own search would have found: nothing. Whenever one might (a file names the
group, or the installation holds what this does not read the same way: a zip or an egg on
``sys.path``, another distribution finder, an unreadable file), it leaves the search to
pydantic, which then finds and loads the plugins as always.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import PathFinder

__all__ = ["settle_pydantic_plugins"]

#: Where a distribution's entry points are listed, in its metadata folder.
_ENTRY_POINTS = "entry_points.txt"
_GROUP = b"pydantic"


def settle_pydantic_plugins() -> bool:
    """Tell pydantic it has no plugins if no installed distribution declares one, before it
    searches; True when it was told. Call before the first pydantic model is built."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") is not None:
        return False  # pydantic reads its setting itself
    finders = [f for f in sys.meta_path if getattr(f, "find_distributions", None) is not None]
    if finders != [PathFinder]:
        return False
    if _may_declare_plugins(sys.path):
        return False
    try:
        from pydantic.plugin import _loader
    except ImportError:
        return False
    if getattr(_loader, "_plugins", ()) is not None or getattr(_loader, "_loading_plugins", True):
        return False  # searched already (or pydantic keeps its plugins some other way now)
    _loader._plugins = {}
    return True


def _may_declare_plugins(path: list[str]) -> bool:
    """Whether a distribution found on ``path`` may declare an entry point of pydantic's group:
    the folders ``importlib.metadata`` reads (``*.dist-info``, ``*.egg-info``), read alike."""
    for entry in path:
        try:
            folder = os.fspath(entry) or "."
        except TypeError:
            return True
        if folder.lower().endswith(".egg"):
            return True
        try:
            children = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError):
            if os.path.isfile(folder):
                return True  # a zip, read by importlib.metadata too
            continue
        except OSError:
            return True
        with children:
            for child in children:
                if not child.name.lower().endswith((".dist-info", ".egg-info")):
                    continue
                try:
                    with open(os.path.join(child.path, _ENTRY_POINTS), "rb") as listed:
                        if _GROUP in listed.read():
                            return True
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    continue
                except OSError:
                    return True
    return False
