"""Input and output paths of the file steps: relative to the pipeline file, ``-`` for standard
input or output, and globs (``data/*.csv``, ``logs/**/*.jsonl.gz``) expanded in sorted order."""

from __future__ import annotations

import glob
import os
import re

from quiver.runtime.errors import ConfigError, PermanentError
from quiver.runtime.hints import closest_names

__all__ = ["STDIO", "display_path", "expand_paths", "resolve_path"]

#: The path that means standard input (for sources) or standard output (for sinks).
STDIO = "-"

_GLOB_CHARS = re.compile(r"[*?\[]")


def resolve_path(path: str, base_dir: str) -> str:
    """``path`` with ``~`` expanded, relative to ``base_dir`` unless absolute or ``-``."""
    if path == STDIO:
        return path
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


def display_path(path: str) -> str:
    """How a path appears in messages: ``<stdio>`` for ``-`` (standard input or output)."""
    return "<stdio>" if path == STDIO else path


def expand_paths(patterns: str | list[str], base_dir: str, *, where: str = "path") -> list[str]:
    """Every file matched by ``patterns`` (paths or globs), sorted within each pattern.

    A plain path that does not exist and a glob that matches nothing are errors that say so;
    a file matched by two patterns is read once.
    """
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    if not items:
        raise ConfigError.one("no input path given", where, "set `path` to a file or a glob")
    found: list[str] = []
    seen: set[str] = set()
    for item in items:
        if item == STDIO:
            matches = [STDIO]
        else:
            full = resolve_path(item, base_dir)
            if _GLOB_CHARS.search(full):
                matches = sorted(p for p in glob.glob(full, recursive=True) if os.path.isfile(p))
                if not matches:
                    raise PermanentError.one(
                        f"no file matches {item!r} (looked for {full})",
                        where,
                        "check the pattern and the directory; paths are relative to the "
                        "pipeline file",
                    )
            elif not os.path.exists(full):
                raise PermanentError.one(
                    f"input file not found: {full}",
                    where,
                    _near_names(full) or "check the path; it is relative to the pipeline file",
                )
            elif os.path.isdir(full):
                raise PermanentError.one(
                    f"{full} is a directory",
                    where,
                    f"use a glob such as {os.path.join(item, '*')!r} to read the files in it",
                )
            else:
                matches = [full]
        for match in matches:
            if match not in seen:
                seen.add(match)
                found.append(match)
    return found


def _near_names(full: str) -> str:
    directory = os.path.dirname(full) or "."
    try:
        names = os.listdir(directory)
    except OSError:
        return ""
    close = closest_names(os.path.basename(full), names)
    return f"did you mean {os.path.join(directory, close[0])!r}?" if close else ""
