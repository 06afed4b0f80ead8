"""The rejects file: one CSV row per rejected input row, written atomically.

Columns: ``step, line, column, value, reason, row``. ``line`` is the 1-based line (or record)
number in the source input, ``row`` the original row as JSON. Rows go to a temporary file
beside the target (``<rejects>.tmp-<run id>``, locked while it is written, like every file
output); :meth:`RejectsWriter.commit` renames it into place and :meth:`RejectsWriter.abort`
deletes it, so a failed run leaves no half-written rejects file. The temporary file of a run
that was killed is removed by the next run writing the same rejects file.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import decimal
import os
import re
from pathlib import Path
from typing import IO, Any

import orjson

from quiver.pipeline import component
from quiver.pipeline.component import RowError
from quiver.pipeline.output import lock_exclusively, remove_stale_temps
from quiver.runtime.delivery import file_error

__all__ = ["REJECT_COLUMNS", "RejectsWriter", "row_json"]

REJECT_COLUMNS = ["step", "line", "column", "value", "reason", "row"]


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def row_json(row: dict[str, Any] | None) -> str:
    """The original row as compact JSON (without the engine's internal columns)."""
    if row is None:
        return ""
    clean = {k: v for k, v in row.items() if not component.is_internal(k)}
    return orjson.dumps(clean, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=_default).decode()
    return str(value)


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
            self._writer.writerow(
                [
                    e.step,
                    "" if e.line is None else e.line,
                    e.column or "",
                    _cell(e.value),
                    e.reason,
                    row_json(e.row),
                ]
            )

    def commit(self) -> None:
        """Publish the rejects file (only when at least one row was rejected)."""
        if self._file is not None and self._tmp is not None and self.path is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
                os.replace(self._tmp, self.path)
            except OSError as exc:
                raise file_error(exc, self.path, "on_error.rejects") from exc
            self._file.close()  # releases the lock once the file has its final name
            self._file = None
        else:
            self._remove_stale()

    def abort(self) -> None:
        """Delete the temporary file: a failed run publishes no rejects file."""
        if self._tmp is not None and os.path.exists(self._tmp):
            os.unlink(self._tmp)
        if self._file is not None:
            with contextlib.suppress(OSError):  # what is still buffered is thrown away
                self._file.close()
            self._file = None
