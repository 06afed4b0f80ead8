"""One log format for every surface: human text, or one JSON object per line.

A JSON line always starts with ``ts`` (UTC, ISO 8601, milliseconds), ``level`` and ``message``;
the surface adds its context: ``run_id`` and ``pipeline`` for a pipeline run (``RunLog``),
``logger`` and ``request_id`` for the HTTP server. :func:`configure_logging` sends the records
of the ``quiver`` and ``uvicorn`` loggers through it, and the warnings and errors of every other
library (a database driver's, asyncio's) too; :data:`request_id` (set by the HTTP app for the
duration of a request) is added to every record logged while it is set.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from contextvars import ContextVar
from typing import IO, Any, Literal

import orjson

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "LogFormat",
    "configure_logging",
    "json_line",
    "request_id",
    "reset_logging",
    "timestamp",
]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LOG_LEVELS["error"] = logging.ERROR

request_id: ContextVar[str | None] = ContextVar("quiver_request_id", default=None)

# The loggers whose records Quiver formats: its own and the HTTP server's.
_LOGGERS = ("quiver", "uvicorn", "uvicorn.error", "uvicorn.access")
_HANDLER_NAME = "quiver"
# The root logger's level before configure_logging raised it, for reset_logging.
_root_level_before: list[int] = []


def timestamp() -> str:
    """Now, as a log line's ``ts``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def json_line(record: dict[str, Any]) -> str:
    """One JSON log line (without the newline); values JSON cannot hold are written as text."""
    return orjson.dumps(record, default=str).decode()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "logger": record.name,
        }
        rid = getattr(record, "request_id", None)
        if rid:
            line["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json_line(line)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC).strftime("%H:%M:%S")
        text = f"{stamp} {record.levelname.lower():<7} {record.getMessage()}"
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        rid = getattr(record, "request_id", None)
        if rid:
            text += f" request_id={rid}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


def configure_logging(
    fmt: LogFormat = "text", level: str = "info", stream: IO[str] | None = None
) -> None:
    """Send the ``quiver`` and ``uvicorn`` loggers' records to ``stream`` (stderr) in ``fmt``,
    and the warnings and errors other libraries log (asyncpg's pool, asyncio's), which Python
    would otherwise print as bare text.

    Calling it again replaces the handler it installed before.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    handler.addFilter(_RequestIdFilter())
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
            logger.removeHandler(old)
        if name in ("quiver", "uvicorn"):
            logger.addHandler(handler)
            logger.setLevel(LOG_LEVELS.get(level, logging.INFO))
            logger.propagate = False
        else:
            logger.propagate = True  # to "uvicorn", which holds the handler
    root = logging.getLogger()
    olds = [h for h in root.handlers if h.get_name() == _HANDLER_NAME]
    if not olds:
        _root_level_before.append(root.level)
    for old in olds:
        root.removeHandler(old)
    root.addHandler(handler)
    # Other libraries' info lines (one per outbound HTTP call, ...) stay out, as before.
    root.setLevel(max(logging.WARNING, LOG_LEVELS.get(level, logging.INFO)))


def reset_logging() -> None:
    """Undo :func:`configure_logging`: the loggers pass their records on as before."""
    for name in ("", *_LOGGERS):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
            logger.removeHandler(old)
        logger.propagate = True
    if _root_level_before:
        logging.getLogger().setLevel(_root_level_before.pop())
