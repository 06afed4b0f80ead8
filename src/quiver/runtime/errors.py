"""Error types shared by every surface: each says what went wrong, where, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "ConfigError",
    "ErrorDetail",
    "OutputClosedError",
    "PermanentError",
    "QuiverError",
    "RetryableError",
    "line_and_column",
]


def line_and_column(text: str | bytes, offset: int) -> tuple[int, int]:
    """The line and column (both from 1) of the character or byte at ``offset`` of ``text``,
    for an error that names where in a file or script it is."""
    if isinstance(text, str):
        return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
    return text.count(b"\n", 0, offset) + 1, offset - text.rfind(b"\n", 0, offset)


@dataclass(frozen=True)
class ErrorDetail:
    """One problem: what is wrong, where it is (file:line:col, field path) and a fix."""

    message: str
    where: str = ""
    fix: str = ""

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += f" ({self.fix})"
        return text


@dataclass
class QuiverError(Exception):
    """Base error. Carries one or more details so validation can report everything at once."""

    details: list[ErrorDetail] = field(default_factory=list)
    code: str = "QUIVER_ERROR"

    @classmethod
    def one(cls, message: str, where: str = "", fix: str = "") -> QuiverError:
        return cls([ErrorDetail(message, where, fix)])

    def __str__(self) -> str:
        return "\n".join(d.render() for d in self.details)


class ConfigError(QuiverError):
    """A configuration, schema or pipeline file is invalid."""


class RetryableError(QuiverError):
    """A transient failure: the framework may retry the operation with backoff.

    ``retry_after`` (seconds) is the target's own hint (HTTP Retry-After, gRPC RetryInfo):
    the next attempt waits at least that long.
    """

    retry_after: float | None = None


class PermanentError(QuiverError):
    """A failure that retrying cannot fix: the item goes to the dead-letter queue or rejects."""


class OutputClosedError(PermanentError):
    """What reads the process's standard output has closed it (``quiver run ... | head``):
    nothing more can be written there, so the run stops, as a command line tool does when its
    reader goes away, without an error message of its own."""
