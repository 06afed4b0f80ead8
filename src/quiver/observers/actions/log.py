"""The log action: write the event as one JSON line to the ``quiver.observers`` logger."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from quiver.observers.event import Job
from quiver.runtime.errors import ErrorDetail

__all__ = ["LogAction", "LogConfig", "build_log"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


class LogConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["log"]
    name: str | None = Field(default=None, description="Name within the observer.")
    level: Literal["debug", "info", "warning"] = "info"


class LogAction:
    def __init__(self, cfg: LogConfig) -> None:
        self.cfg = cfg
        self._logger = logging.getLogger("quiver.observers")

    async def run(self, job: Job) -> None:
        self._logger.log(
            _LEVELS[self.cfg.level],
            "observer %s: %s",
            job.observer,
            job.body().decode(),
            extra={"idempotency_key": job.idempotency_key},
        )

    async def close(self) -> None:
        return None


def build_log(
    cfg: LogConfig, fields: Iterable[str] | None, where: str, errors: list[ErrorDetail]
) -> LogAction:
    del fields, where, errors
    return LogAction(cfg)
