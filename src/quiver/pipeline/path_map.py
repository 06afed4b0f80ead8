"""Windows paths in pipeline files, and the ``--path-map`` option that maps them.

Files written on Windows name ``C:\\data\\in.csv``; on Linux or macOS that text is neither
absolute nor a folder path, and would become a file literally named ``C:\\data\\in.csv`` in
the current folder. Such a path is refused unless a prefix of it is mapped to a local folder:
``--path-map 'C:\\source\\FlowEngine=/srv/flowengine'`` turns
``C:\\source\\FlowEngine\\examples\\data\\customers.csv`` into
``/srv/flowengine/examples/data/customers.csv``. Prefixes match without regard to case or to
the kind of slash, as Windows does; the longest matching prefix wins.
"""

from __future__ import annotations

import os
import re

from quiver.runtime.errors import ConfigError, ErrorDetail

__all__ = ["PathMap", "is_windows_path", "map_windows_path", "parse_path_map", "path_map_hint"]

#: ``(windows prefix, local folder)`` pairs, as given to ``--path-map``.
PathMap = list[tuple[str, str]]

_WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\[^\\/]+[\\/])")


def is_windows_path(path: str) -> bool:
    """Whether ``path`` is an absolute Windows path (``C:\\x``, ``C:/x``, ``\\\\server\\share``)
    on a system that does not read it as one."""
    return os.name != "nt" and bool(_WINDOWS_ABSOLUTE.match(path))


def _parts(path: str) -> list[str]:
    return [p for p in re.split(r"[\\/]+", path) if p]


def map_windows_path(path: str, path_map: PathMap) -> str | None:
    """``path`` with the longest mapped Windows prefix replaced by its local folder, or None."""
    parts = _parts(path)
    best: tuple[int, str] | None = None
    for prefix, local in path_map:
        head = [p.lower() for p in _parts(prefix)]
        matches = [p.lower() for p in parts[: len(head)]] == head and len(head) <= len(parts)
        if matches and (best is None or len(head) > best[0]):
            best = (len(head), local)
    if best is None:
        return None
    count, local = best
    return os.path.join(local, *parts[count:]) if parts[count:] else local


def parse_path_map(values: list[str]) -> PathMap:
    """``WINDOWS_PREFIX=LOCAL_FOLDER`` options -> pairs (a ConfigError lists each bad one)."""
    out: PathMap = []
    errors: list[ErrorDetail] = []
    for value in values:
        prefix, sep, local = value.partition("=")
        if not sep or not prefix.strip() or not local.strip():
            errors.append(
                ErrorDetail(
                    f"--path-map {value!r} is not WINDOWS_PREFIX=LOCAL_FOLDER",
                    "--path-map",
                    r"write it as --path-map 'C:\data=/srv/data'",
                )
            )
            continue
        out.append((prefix.strip(), os.path.expanduser(local.strip())))
    if errors:
        raise ConfigError(errors)
    return out


def path_map_hint(path: str) -> str:
    """The fix offered for an unmapped Windows path: map the folder it names."""
    parts = _parts(path)
    folder = "\\".join(parts[:-1]) if len(parts) > 1 else parts[0] if parts else path
    if re.match(r"^[A-Za-z]:$", parts[0] if parts else ""):
        folder = folder if "\\" in folder else folder + "\\"
    return (
        f"map the folder to a local one: quiver run --path-map '{folder}=/local/folder' "
        "FILE (the same option works with quiver validate), or write a local path"
    )
