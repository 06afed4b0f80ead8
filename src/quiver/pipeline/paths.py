"""Input and output paths of the file steps: relative to the pipeline file, ``-`` for standard
input or output, and globs (``data/*.csv``, ``logs/**/*.jsonl.gz``) expanded in sorted order."""

from __future__ import annotations

import fnmatch
import glob
import itertools
import os
import re
from dataclasses import dataclass
from typing import Literal

from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError
from quiver.runtime.hints import closest_names

__all__ = [
    "STDIO",
    "NamedPath",
    "display_path",
    "expand_paths",
    "path_collisions",
    "resolve_path",
]

_STEM = "{stem}"

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


@dataclass(frozen=True)
class NamedPath:
    """A file a pipeline reads or writes: ``path`` resolved against the pipeline's directory
    (it may hold a glob for an input, ``{stem}`` for an output), who uses it and where."""

    kind: Literal["input", "output", "rejects"]
    who: str  # "source 'read'", "sink 'out'", "the rejects file"
    path: str
    where: str


def path_collisions(paths: list[NamedPath], stems: list[str] | None) -> list[ErrorDetail]:
    """Every pair of ``paths`` naming the same file, symbolic links followed: two outputs (or
    an output and the rejects file) would write over each other, and an output written over
    an input replaces it. ``stems`` are the names of the input files when outputs hold
    ``{stem}`` (None when unknown: patterns are then compared as written)."""
    resolved = [(p, _files_of(p, stems)) for p in paths if p.path != STDIO and "://" not in p.path]
    found: list[ErrorDetail] = []
    for (a, files_a), (b, files_b) in itertools.combinations(resolved, 2):
        if a.kind == "input" and b.kind == "input":
            continue
        shared = _shared(a, files_a, b, files_b)
        if shared is None:
            continue
        found.append(_collision(a, b, shared))
    return found


def _files_of(named: NamedPath, stems: list[str] | None) -> set[str]:
    """The real paths ``named`` stands for (a pattern kept as written when not decidable)."""
    path = named.path
    if named.kind == "input" and _GLOB_CHARS.search(path):
        matches = glob.glob(path, recursive=True)
        return {os.path.realpath(m) for m in matches if os.path.isfile(m)}
    if _STEM in path:
        if stems is None:
            return {_real_parent(path)}
        return {os.path.realpath(path.replace(_STEM, stem)) for stem in stems}
    return {os.path.realpath(path)}


def _real_parent(path: str) -> str:
    """``path`` with its directory's symbolic links followed (its name may be a pattern)."""
    directory, name = os.path.split(path)
    return os.path.join(os.path.realpath(directory or "."), name)


def _shared(a: NamedPath, files_a: set[str], b: NamedPath, files_b: set[str]) -> str | None:
    common = files_a & files_b
    if common:
        return sorted(common)[0]
    for pattern_side, other in ((a, files_b), (b, files_a)):
        if pattern_side.kind == "input" and _GLOB_CHARS.search(pattern_side.path):
            pattern = _real_parent(pattern_side.path)
            for file in sorted(other):
                if _STEM not in file and fnmatch.fnmatch(file, pattern):
                    return file
    return None


def _collision(a: NamedPath, b: NamedPath, path: str) -> ErrorDetail:
    if a.kind == "input" or b.kind == "input":
        reader, writer = (a, b) if a.kind == "input" else (b, a)
        return ErrorDetail(
            f"{writer.who} would write over the input {path} read by {reader.who}",
            writer.where,
            "write to another path; an input is never replaced by the run reading it",
        )
    if "rejects" in (a.kind, b.kind):
        output = a if b.kind == "rejects" else b
        rejects = b if output is a else a
        return ErrorDetail(
            f"the rejects file {path} is also written by {output.who}",
            rejects.where,
            "give the rejects file a path of its own",
        )
    return ErrorDetail(
        f"{a.who} and {b.who} both write {path}",
        b.where,
        f"give each sink a path of its own (the other is at {a.where})",
    )
