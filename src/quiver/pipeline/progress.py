"""The live progress bar (rows, rows/s, bytes, ETA) and the final summary of ``quiver run``."""

from __future__ import annotations

import os
import time
from types import TracebackType
from typing import TYPE_CHECKING

from quiver.pipeline.engine import RunResult

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

__all__ = ["RunProgress", "print_summary", "shown_path", "summary_line"]


class RunProgress:
    """A rich progress display on stderr; a no-op when stderr is not a terminal."""

    def __init__(self, console: Console, label: str, *, enabled: bool = True) -> None:
        self.console = console
        self.enabled = enabled and console.is_terminal
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._label = label
        self._start = time.perf_counter()
        self._last = 0.0

    def __enter__(self) -> RunProgress:
        if self.enabled:  # rich.progress is imported only when a bar is shown
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[rows]:,} rows"),
                TextColumn("{task.fields[rate]:,.0f} rows/s"),
                DownloadColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(self._label, total=None, rows=0, rate=0.0)
        return self

    def update(self, rows: int, bytes_read: int, bytes_total: int | None) -> None:
        """Engine callback after each source batch (redraws at most 10 times a second)."""
        if self._progress is None or self._task is None:
            return
        now = time.perf_counter()
        if now - self._last < 0.1:
            return
        self._last = now
        elapsed = max(now - self._start, 1e-9)
        self._progress.update(
            self._task,
            completed=bytes_read,
            total=bytes_total if bytes_read else None,
            rows=rows,
            rate=rows / elapsed,
        )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()


def print_summary(console: Console, result: RunResult) -> None:
    """Per-step counts and totals, printed after the run.

    A sink's "rows out" are the rows it wrote (committed); the line below the table names the
    rows written per sink when there are several. Output that is not a terminal (a log file,
    a pipe) is never wrapped: each row of the table and the line stay on one line.
    """
    from rich.table import Table

    table = Table(title=f"{result.pipeline} · run {result.run_id} · {result.status}")
    for col in ("step", "kind", "component"):
        table.add_column(col, overflow="fold")
    for col in ("rows in", "rows out", "rejected"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("routes", overflow="fold")
    table.add_column("busy s", justify="right", no_wrap=True)
    for s in result.steps.values():
        routes = ", ".join(f"{k}: {v:,}" for k, v in s.routes.items())
        table.add_row(
            s.name,
            s.kind,
            s.component,
            f"{s.rows_in:,}" if s.kind != "source" else "",
            f"{s.rows_out if s.kind != 'sink' else s.rows_written:,}",
            f"{s.rejected:,}" if s.rejected else "",
            routes,
            f"{s.busy_seconds:.2f}",
        )
    notes = script_error_notes(result)
    if console.is_terminal:
        console.print(table)
        console.print(summary_line(result))
        for note in notes:
            console.print(note, markup=False)
        return
    width = console.width
    console.width = _UNWRAPPED_WIDTH  # rich never prints wider than its console
    try:
        console.print(table)
        console.print(summary_line(result), soft_wrap=True)
        for note in notes:
            console.print(note, soft_wrap=True, markup=False)
    finally:
        console.width = width


def script_error_notes(result: RunResult) -> list[str]:
    """One line per step whose script failed on rows: those rows were rejected because of
    the script, not of their data, so the fix is in the script. A failed run's error says so
    already."""
    if result.status != "ok":
        return []
    return [
        f"warning: the script of step '{s.name}' failed on "
        + (
            "1 row, so it was rejected"
            if s.script_errors == 1
            else f"{s.script_errors:,} rows, so they were rejected"
        )
        + f" (first: {s.first_script_error}); fix the script"
        for s in result.steps.values()
        if s.script_errors
    ]


#: The width tables get when the output is not a terminal: wide enough never to wrap.
_UNWRAPPED_WIDTH = 10_000


def shown_path(path: str) -> str:
    """``path`` as a summary shows it: relative to the current directory when it lies inside
    it (as the pipeline file would usually name it), else as it is."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative == ".." or relative.startswith(".." + os.sep) else relative


def summary_line(result: RunResult) -> str:
    """``N rows read, M written, K rejected in S s``, with the rows written per sink when
    there are several (a row copied to three sinks is written three times, read once)."""
    by_sink = result.rows_written_by_sink
    if result.status != "ok" and not result.rows_written:
        written = "nothing written"
    elif len(by_sink) > 1:
        written = "written: " + ", ".join(f"{n:,} to {name}" for name, n in by_sink.items())
    else:
        written = f"{result.rows_written:,} written"
    line = (
        f"{result.rows_read:,} rows read, {written}, "
        f"{result.rejected:,} rejected in {result.seconds:.2f}s "
        f"({result.rows_per_second:,.0f} rows/s)"
    )
    if result.rejected and result.rejects_file and result.status == "ok":
        line += f"; rejects in {shown_path(result.rejects_file)}"
    dead = sum(s.dead_lettered for s in result.steps.values())
    if dead:
        entries = len(result.dead_letters)
        line += (
            f"; {dead:,} row{'s' if dead != 1 else ''} kept in the dead-letter queue "
            f"({entries} entr{'ies' if entries != 1 else 'y'}: quiver ingest dlq list "
            f"{result.file})"
        )
    return line
