"""Run logs: human text on stderr, or one JSON object per line carrying the run id."""

from __future__ import annotations

import datetime as dt
import sys
from typing import IO, Any, Literal

import orjson

__all__ = ["LogFormat", "RunLog"]

LogFormat = Literal["text", "json"]
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class RunLog:
    """Structured events of one run. ``RunLog(...)(message, level)`` fits ``RunContext.log``."""

    def __init__(
        self,
        run_id: str,
        fmt: LogFormat = "text",
        *,
        stream: IO[str] | None = None,
        level: str = "info",
        pipeline: str = "",
        hide: frozenset[str] = frozenset(),
    ) -> None:
        self.run_id = run_id
        self.fmt = fmt
        self.stream = stream if stream is not None else sys.stderr
        self.level = _LEVELS.get(level, 20)
        self.pipeline = pipeline
        self.hide = hide

    def __call__(self, message: str, level: str = "info") -> None:
        self.event("component", message, level=level)

    def event(self, event: str, message: str, *, level: str = "info", **fields: Any) -> None:
        if event in self.hide:
            return
        if _LEVELS.get(level, 20) < self.level and event != "tap":
            return  # taps are asked for explicitly, so they always show
        record: dict[str, Any] = {
            "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "level": level,
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "event": event,
            "message": message,
            **fields,
        }
        if self.fmt == "json":
            line = orjson.dumps(record, default=str).decode()
        else:
            prefix = {"warning": "warning: ", "error": "error: "}.get(level, "")
            line = f"{prefix}{message}"
        print(line, file=self.stream, flush=True)
