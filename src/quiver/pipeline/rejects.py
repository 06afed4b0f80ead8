"""The rejects file: one CSV row per rejected input row, written atomically.

Columns: ``step, line, column, value, reason, row``. ``line`` is the 1-based line (or record)
number in the source input, ``row`` the original row as JSON. Rows go to a temporary file
beside the target; :meth:`RejectsWriter.commit` renames it into place and
:meth:`RejectsWriter.abort` deletes it, so a failed run leaves no half-written rejects file.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import os
from pathlib import Path
from typing import IO, Any

import orjson

from quiver.pipeline.component import RowError

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
    """The original row as compact JSON (without the engine's ``__line`` column)."""
    if row is None:
        return ""
    clean = {k: v for k, v in row.items() if k != "__line"}
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
        self._tmp = f"{path}.{run_id}.tmp" if path else None
        self._file: IO[str] | None = None
        self._writer: Any = None

    def write(self, errors: list[RowError]) -> None:
        self.count += len(errors)
        if self._tmp is None:
            self.kept.extend(errors[: max(0, 1000 - len(self.kept))])
            return
        if self._writer is None:
            Path(self._tmp).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self._tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
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
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None and os.path.exists(self._tmp):
            os.unlink(self._tmp)
