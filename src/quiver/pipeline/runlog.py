"""Run logs: human text on stderr, or one JSON object per line carrying the run id.

The JSON lines are those of every Quiver surface (:mod:`quiver.runtime.logs`): ``ts``,
``level``, ``message`` and the run's context (``run_id``, ``pipeline``, ``event``).
"""

from __future__ import annotations

import sys
from typing import IO, Any

from quiver.runtime.logs import LogFormat, json_line, timestamp

__all__ = ["LogFormat", "RunLog"]
#: ``notice``: what a run says at the default verbosity of text logs although nothing is
#: wrong (a receiver listening, what it received when stopped); ``info`` in JSON logs.
_LEVELS = {"debug": 10, "info": 20, "notice": 25, "warning": 30, "error": 40}


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
        # None: sys.stderr as it is when a line is written, so a progress display that
        # redirects it while it runs prints the line above itself, not across its own line
        self.stream = stream
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
            "ts": timestamp(),
            "level": "info" if level == "notice" else level,
            "message": message,
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "event": event,
            **fields,
        }
        if self.fmt == "json":
            line = json_line(record)
        else:
            prefix = {"warning": "warning: ", "error": "error: "}.get(level, "")
            line = f"{prefix}{message}"
        print(line, file=self.stream if self.stream is not None else sys.stderr, flush=True)
