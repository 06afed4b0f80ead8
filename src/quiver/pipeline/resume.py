"""Resumable runs over a glob of input files.

With ``quiver run --resume`` the engine expands the source's ``path`` glob itself and runs the
pipeline once per input file, in name order: open the sinks, stream that file, commit the
sinks, then record the file as completed in the state file. A rerun skips recorded files
whose size and modification time are unchanged. Because each file's output is committed
atomically before it is recorded, a crash leaves that file's output absent and the rerun
processes it again from its first row: nothing is duplicated and nothing is lost.

Each input file gets its own output: file sinks must put ``{stem}`` (the input file name
without its extension) in their ``path`` when more than one file matches, e.g.
``out/{stem}.parquet``. Sinks without a path (database, queues) commit once per file.

The state file is JSON, written atomically beside the outputs: ``.<pipeline>.quiver-state.json``
in the directory of the first file sink (the pipeline file's directory otherwise). Its text is
ASCII: a file name that is not UTF-8 (Python keeps its bytes as lone surrogates) is written with
``\\udcXX`` escapes and read back as the same name.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quiver.pipeline.json_text import strict_json

__all__ = ["STEM", "ResumeState", "expand_glob", "has_glob", "state_path_for"]

STEM = "{stem}"


def has_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def expand_glob(pattern: str) -> list[str]:
    """Files matching ``pattern`` (``**`` recurses), sorted by name."""
    return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))


def state_path_for(pipeline_name: str, output_dir: str) -> str:
    """Where the state of ``pipeline_name`` lives (unsafe file-name characters become ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", pipeline_name).strip(".") or "pipeline"
    return os.path.join(output_dir, f".{safe}.quiver-state.json")


@dataclass
class ResumeState:
    """Completed input files of a pipeline, persisted after each file's outputs are committed."""

    path: str
    pipeline: str
    pattern: str
    completed: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str, pipeline: str, pattern: str) -> ResumeState:
        state = cls(path, pipeline, pattern)
        if os.path.exists(path):
            try:
                data = strict_json(Path(path).read_bytes())
            except ValueError:  # not JSON, or not UTF-8
                data = {}
            if data.get("pattern") == pattern:
                state.completed = dict(data.get("completed", {}))
        return state

    @staticmethod
    def _fingerprint(file: str) -> dict[str, int]:
        st = os.stat(file)
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def is_done(self, file: str) -> bool:
        entry = self.completed.get(os.path.abspath(file))
        if entry is None or not os.path.exists(file):
            return False
        fp = self._fingerprint(file)
        return entry.get("size") == fp["size"] and entry.get("mtime_ns") == fp["mtime_ns"]

    def mark_done(self, file: str, rows: int, outputs: list[str]) -> None:
        self.completed[os.path.abspath(file)] = {
            **self._fingerprint(file),
            "rows": rows,
            "outputs": outputs,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        self.save()

    def save(self) -> None:
        doc = {
            "version": 1,
            "pipeline": self.pipeline,
            "pattern": self.pattern,
            "completed": self.completed,
        }
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{self.path}.tmp"
        with open(tmp, "wb") as fh:
            # json, not orjson: orjson refuses the lone surrogates of a file name that is not
            # UTF-8, which json escapes (and reads back) as \udcXX.
            fh.write(json.dumps(doc, indent=2).encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
