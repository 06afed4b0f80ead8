"""The text of a script or query a step runs: read as UTF-8, and only text UTF-8 can carry.

A script file that is not UTF-8, or an inline script holding half of a UTF-16 surrogate pair
(``"\\ud800"`` in a double-quoted YAML string is one), cannot be handed to an engine; each is
refused before the run with the line and column of the first character at fault.
"""

from __future__ import annotations

from pathlib import Path

from quiver.runtime.errors import ConfigError, line_and_column

__all__ = ["checked_text", "read_text_file"]


def read_text_file(path: str | Path, what: str) -> str:
    """The text of ``path`` (a ``what``: "script file", "query file"), or a ConfigError naming
    the first byte that is not UTF-8. An OSError is left to the caller."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, column = line_and_column(data, exc.start)
        raise ConfigError.one(
            f"the {what} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, "
            f"column {column}",
            f"{path}:{line}:{column}",
            "save the file as UTF-8",
        ) from exc


def checked_text(text: str, what: str, where: str) -> str:
    """``text`` if UTF-8 can carry it; else a ConfigError naming the lone surrogate at fault
    (its line and column in ``text``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line, column = line_and_column(text, exc.start)
        raise ConfigError.one(
            f"the {what} holds U+{ord(text[exc.start]):04X}, half of a UTF-16 surrogate pair, "
            f"at line {line}, column {column}: it is not text",
            where,
            'write the whole character, not half of it: a YAML escape such as "\\ud800" '
            "makes a lone surrogate",
        ) from exc
    return text
