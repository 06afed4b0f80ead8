"""What a pipeline's ``dlq:`` section says: where the dead-letter queue lives, for how long and
how much it keeps (:class:`DeadLetterConfig`).

Apart from the queue itself (:mod:`quiver.pipeline.dead_letters`), which a run loads only
when it has a queue: the pipeline's config and plan need the section, most runs not the
queue.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["DeadLetterConfig", "parse_duration", "parse_size"]

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number of seconds or ``90s``, ``15m``, ``12h``, ``7d``, ``2w``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"{value} is not a positive duration")
        return float(value)
    m = _DURATION.fullmatch(str(value))
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(
            f"{value!r} is not a duration; write a number and a unit: 90s, 15m, 12h, 7d, 2w"
        )
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


def parse_size(value: str | int) -> int:
    """Bytes in ``value``: a number of bytes or ``500MB``, ``512MiB``, ``1GiB``, ``2TB``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"{value} is not a positive size")
        return value
    m = _SIZE.fullmatch(str(value))
    if m is None or float(m.group(1)) <= 0:
        raise ValueError(
            f"{value!r} is not a size; write a number and a unit: 500MB, 512MiB, 1GiB, 2TB"
        )
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])


class DeadLetterConfig(BaseModel):
    """Where batches a sink refused for good are kept, for how long, and how many."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(
        description="Directory of the dead-letter queue, relative to the pipeline file; "
        "created when missing. One directory per pipeline."
    )
    max_age: str | float = Field(
        default="7d",
        description="Entries older than this are dropped, oldest first: seconds or a number "
        "with a unit (90s, 15m, 12h, 7d, 2w).",
    )
    max_bytes: str | int = Field(
        default="1GiB",
        description="Largest size of the queue on disk; beyond it the oldest entries are "
        "dropped: bytes or a number with a unit (500MB, 512MiB, 1GiB).",
    )
    sinks: list[str] | None = Field(
        default=None,
        description="Sinks whose refused batches go to the queue (null: every sink); a "
        "failing sink not listed fails the run.",
    )

    @field_validator("max_age")
    @classmethod
    def _age(cls, value: str | float) -> str | float:
        parse_duration(value)
        return value

    @field_validator("max_bytes")
    @classmethod
    def _bytes(cls, value: str | int) -> str | int:
        parse_size(value)
        return value

    @property
    def max_age_seconds(self) -> float:
        return parse_duration(self.max_age)

    @property
    def max_bytes_count(self) -> int:
        return parse_size(self.max_bytes)

    def covers(self, sink: str) -> bool:
        """Whether the batches ``sink`` refuses go to the queue."""
        return self.sinks is None or sink in self.sinks
