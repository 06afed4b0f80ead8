r"""The rejects file: one CSV row per rejected input row, written atomically.

Columns: ``step, line, column, value, reason, row``. ``line`` is the 1-based line (or record)
number in the source input, ``row`` the original row as JSON.

Every rejected row is written, whatever its values; those that UTF-8 text or JSON cannot hold
as they are get escaped (see :func:`row_json`): a lone surrogate in text becomes a ``\uXXXX``
escape (in ``row`` a JSON escape, read back as the same text), bytes become text with each
byte that is not UTF-8 as ``\xNN``, NaN and the infinities become the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``, integers beyond 64 bits become strings of their digits,
intervals and durations become ISO 8601 durations (see :func:`iso_duration`), timestamps RFC
3339 text as the text sinks write them (``+01:00``, ``Z`` in UTC), and keys that are not text
become their text. Long values are written whole. The dead-letter queue's
``quiver ingest dlq show`` writes its rows the same way (:func:`json_text`).

Rows go to a temporary file beside the target (``<rejects>.tmp-<run id>``, locked while it is
written, like every file output); :meth:`RejectsWriter.commit` renames it into place and
:meth:`RejectsWriter.abort` deletes it, so a failed run leaves no half-written rejects file.
The temporary file of a run that was killed is removed by the next run writing the same
rejects file.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import json
import math
import os
import re
from pathlib import Path
from typing import IO, Any

import orjson
import pyarrow as pa

from quiver.pipeline import component
from quiver.pipeline.component import RowError
from quiver.pipeline.output import lock_exclusively, remove_stale_temps
from quiver.pipeline.value_text import iso_duration, timestamp_text
from quiver.runtime.delivery import file_error

__all__ = [
    "REJECT_COLUMNS",
    "RejectsWriter",
    "iso_duration",
    "json_text",
    "reject_fields",
    "row_json",
]

REJECT_COLUMNS = ["step", "line", "column", "value", "reason", "row"]


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes_text(bytes(value))
    if isinstance(value, dt.timedelta | pa.MonthDayNano):
        return iso_duration(value)
    return _text(str(value))


_SURROGATE = re.compile("[\\ud800-\\udfff]")


def _text(text: str) -> str:
    """``text`` as UTF-8 can hold it: each lone surrogate as a ``\\uXXXX`` escape."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)
    return text


def _bytes_text(data: bytes) -> str:
    """``data`` as text: UTF-8 as it is, each other byte as ``\\xNN``."""
    return data.decode("utf-8", "backslashreplace")


_FLOATS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _ready(value: Any) -> Any:
    """``value`` with what JSON cannot hold as it is replaced (see the module's text)."""
    if isinstance(value, str | bool | None):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else _FLOATS.get(value, "NaN")
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _default(k): _ready(v) for k, v in value.items()}
    if isinstance(value, pa.MonthDayNano | dt.timedelta):  # MonthDayNano is a tuple
        return iso_duration(value)
    if isinstance(value, dt.datetime):
        return timestamp_text(value)
    if isinstance(value, list | tuple):
        return [_ready(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes_text(bytes(value))
    return value  # dates and times as orjson writes them, the rest through _default


def _too_deep(value: Any) -> str:
    """What stands for a value nested deeper than Python can walk: its repr, or else a note."""
    try:
        return _text(repr(value))
    except RecursionError:
        return f"(a {type(value).__name__} nested too deep to write)"


def json_text(value: Any, *, indent: bool = False) -> str:
    """``value`` as JSON (compact, or indented by two spaces), always: text holding lone
    surrogates gets JSON escapes, which read back as the same text; what else JSON cannot hold
    is escaped as the module's text says."""
    try:
        ready = _ready(value)
    except RecursionError:
        return orjson.dumps(_too_deep(value)).decode()
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    try:
        return orjson.dumps(ready, default=_default, option=option).decode()
    except (orjson.JSONEncodeError, TypeError):
        pass  # lone surrogates, or nesting deeper than orjson goes
    try:
        text = json.dumps(
            ready,
            default=_default,
            ensure_ascii=False,
            indent=2 if indent else None,
            separators=(",", ": ") if indent else (",", ":"),
        )
    except (RecursionError, ValueError, TypeError):
        return orjson.dumps(_too_deep(value)).decode()
    return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


_json_text = json_text


def row_json(row: dict[str, Any] | None) -> str:
    """The original row as compact JSON (without the engine's internal columns)."""
    if row is None:
        return ""
    return _json_text({k: v for k, v in row.items() if not component.is_internal(k)})


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes_text(bytes(value))
    if isinstance(value, dt.timedelta | pa.MonthDayNano):
        return iso_duration(value)
    if isinstance(value, dt.datetime):
        return timestamp_text(value)
    if isinstance(value, dict | list | tuple):
        return _json_text(value)
    return _text(str(value))


def reject_fields(error: RowError) -> list[str]:
    """The columns of :data:`REJECT_COLUMNS` for ``error``, as text UTF-8 can write (the
    rejects file's row, and the rejected rows a dry run shows)."""
    return [
        _text(error.step),
        "" if error.line is None else str(error.line),
        _text(error.column or ""),
        _cell(error.value),
        _text(error.reason),
        row_json(error.row),
    ]


class RejectsWriter:
    """Appends rejected rows to a temporary CSV and publishes it on commit."""

    def __init__(self, path: str | None, run_id: str) -> None:
        self.path = path
        self.count = 0
        self.kept: list[RowError] = []
        safe_run = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) or "run"
        self._tmp = f"{path}.tmp-{safe_run}" if path else None
        self._file: IO[str] | None = None
        self._writer: Any = None

    @property
    def temp_path(self) -> str | None:
        """Where rows go until :meth:`commit` (None without a rejects file)."""
        return self._tmp

    def _open(self, tmp: str) -> IO[str]:
        self._remove_stale()
        try:
            Path(tmp).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o666)
        except OSError as exc:
            raise file_error(exc, tmp, "on_error.rejects") from exc
        lock_exclusively(fd, tmp, "on_error.rejects")  # tells other runs the file is alive
        os.ftruncate(fd, 0)
        return open(fd, "w", encoding="utf-8", newline="")  # closed by commit/abort

    def _remove_stale(self) -> None:
        """Delete temporary rejects files of runs that died before commit or abort."""
        if self.path is None:
            return
        remove_stale_temps(self.path)
        # the name used by earlier versions: <rejects>.<run id>.tmp
        directory = os.path.dirname(self.path) or "."
        legacy = re.compile(re.escape(os.path.basename(self.path)) + r"\.[0-9a-f]{12}\.tmp")
        try:
            names = [n for n in os.listdir(directory) if legacy.fullmatch(n)]
        except OSError:
            return
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))

    def write(self, errors: list[RowError]) -> None:
        try:
            self._write(errors)
        except OSError as exc:  # a full disk, a file system gone read-only ...
            raise file_error(exc, self.path, "on_error.rejects") from exc

    def _write(self, errors: list[RowError]) -> None:
        self.count += len(errors)
        if self._tmp is None:
            self.kept.extend(errors[: max(0, 1000 - len(self.kept))])
            return
        if self._writer is None:
            self._file = self._open(self._tmp)
            self._writer = csv.writer(self._file)
            self._writer.writerow(REJECT_COLUMNS)
        for e in errors:
            self._writer.writerow(reject_fields(e))

    def commit(self) -> None:
        """Publish the rejects file when at least one row was rejected; otherwise remove the
        one an earlier run left at its path, which would tell of rows this run did not
        reject (the file holds the rejects of the run that committed last)."""
        if self._file is not None and self._tmp is not None and self.path is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
                os.replace(self._tmp, self.path)
            except OSError as exc:
                raise file_error(exc, self.path, "on_error.rejects") from exc
            self._file.close()  # releases the lock once the file has its final name
            self._file = None
        elif self.path is not None:
            self._remove_stale()
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise file_error(exc, self.path, "on_error.rejects") from exc

    def abort(self) -> None:
        """Delete the temporary file: a failed run publishes no rejects file."""
        if self._tmp is not None and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        if self._file is not None:
            with contextlib.suppress(OSError):  # what is still buffered is thrown away
                self._file.close()
            self._file = None
