"""The run report (``quiver run --report report.json``): counts per step, rejects, timings."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import orjson

from quiver.pipeline.engine import RunResult

__all__ = ["build_report", "write_report"]


def build_report(result: RunResult, exit_code: int | None = None) -> dict[str, Any]:
    """The report as plain data (the JSON layout is documented in docs/pipelines/engine.md)."""
    seconds = result.seconds
    return {
        "run_id": result.run_id,
        "pipeline": result.pipeline,
        "file": result.file,
        "status": result.status,
        "exit_code": exit_code,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "seconds": round(seconds, 6),
        "rows_read": result.rows_read,
        "rows_written": result.rows_written,
        "rows_written_by_sink": result.rows_written_by_sink,
        "rows_per_second": round(result.rows_per_second, 1),
        "rejected": result.rejected,
        "rejects_file": result.rejects_file if result.rejected else None,
        "rejects_files": result.rejects_files,
        "outputs": result.outputs,
        "dead_letters": result.dead_letters,
        "steps": {
            name: {
                "kind": s.kind,
                "component": s.component,
                "rows_in": s.rows_in,
                "rows_out": s.rows_out,
                "rows_written": s.rows_written,
                "batches_in": s.batches_in,
                "batches_out": s.batches_out,
                "rejected": s.rejected,
                "script_errors": s.script_errors,
                "routes": s.routes,
                "unconnected_rows": s.unconnected_rows,
                "busy_seconds": round(s.busy_seconds, 6),
                "retries": s.retries,
                "dead_lettered": s.dead_lettered,
            }
            for name, s in result.steps.items()
        },
        "files": {"processed": result.files_processed, "skipped": result.files_skipped},
        "warnings": result.warnings,
        "error": (
            None
            if result.error is None
            else {
                "code": result.error.code,
                "details": [
                    {"message": d.message, "where": d.where, "fix": d.fix}
                    for d in result.error.details
                ],
            }
        ),
    }


def write_report(path: str, result: RunResult, exit_code: int | None = None) -> None:
    """Write the report atomically (a temporary file renamed into place)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(build_report(result, exit_code), option=orjson.OPT_INDENT_2))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
