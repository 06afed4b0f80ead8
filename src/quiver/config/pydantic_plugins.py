"""Pydantic's plugin search, made cheap when no plugin is installed.

The first model a process builds makes pydantic look for its plugins (the ``pydantic``
entry-point group): ``importlib.metadata`` reads the entry points of every installed
distribution, about 7 ms of CPU with 150 of them installed (2% of a short
``quiver run``). Nearly always there is none. :func:`settle_pydantic_plugins` reads the same
files itself in a third of the time, and when none of them names the group it records with
pydantic what its own search would have found: nothing. Pydantic's loader, the module that
searches, is then not imported at all: importing ``importlib.metadata`` for it costs another
20 ms (the ``email`` package, ``zipfile``, ``csv``...); a stand-in answers for it that
there is no plugin. Whenever one might (a file names the
group, or the installation holds what this does not read the same way: a zip or an egg on
``sys.path``, another distribution finder, an unreadable file), it leaves the search to
pydantic, which then finds and loads the plugins as always.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType

__all__ = ["settle_pydantic_plugins"]

#: Where a distribution's entry points are listed, in its metadata folder.
_ENTRY_POINTS = "entry_points.txt"
_GROUP = b"pydantic"
#: Pydantic's plugin loader: the module that imports ``importlib.metadata`` to search.
_LOADER = "pydantic.plugin._loader"


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
    loaded = sys.modules.get(_LOADER)
    if loaded is not None:
        if getattr(loaded, "_plugins", ()) is not None or getattr(loaded, "_loading_plugins", True):
            return False  # searched already (or pydantic keeps its plugins some other way now)
        setattr(loaded, "_plugins", {})  # noqa: B010  (pydantic's private cache)
        return True
    try:
        import pydantic.plugin
    except ImportError:
        return False
    spec = PathFinder.find_spec(_LOADER, pydantic.plugin.__path__)
    if spec is None or spec.loader is None:
        return False  # pydantic keeps its plugins some other way now
    sys.modules[_LOADER] = _NoPlugins(spec)
    return True


class _NoPlugins(ModuleType):
    """Pydantic's plugin loader (``pydantic.plugin._loader``) as it stands once its search
    has found no plugin, without importing ``importlib.metadata`` for the search (20 ms of
    CPU): ``get_plugins()`` gives none, as the loader's own then does. Any other name is the
    real loader's, which is imported for it (and told it has no plugins)."""

    def __init__(self, spec: ModuleSpec) -> None:
        super().__init__(_LOADER)
        self._plugins: dict[str, object] = {}
        self._loading_plugins = False
        self._spec = spec
        self._real: ModuleType | None = None

    @staticmethod
    def get_plugins() -> tuple[()]:
        return ()

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or self._spec.loader is None:
            raise AttributeError(name)
        if self._real is None:
            real = importlib.util.module_from_spec(self._spec)
            self._spec.loader.exec_module(real)
            setattr(real, "_plugins", {})  # noqa: B010  (found none)
            self._real = real
        return getattr(self._real, name)


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
