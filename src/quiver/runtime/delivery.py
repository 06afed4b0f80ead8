"""Delivery: retry with exponential backoff and full jitter, a circuit breaker, a dead-letter hook.

Components state what they do once and raise a typed error; this module decides what happens
next. ``RetryableError`` (and connection resets / timeouts) are retried with exponential backoff
and *full jitter* (the delay before attempt ``n+1`` is uniform in
``[0, min(max_delay, initial_delay * multiplier**(n-1))]``) until ``max_attempts`` or
``max_elapsed`` is reached; ``PermanentError`` and any other exception fail at once. A
:class:`CircuitBreaker` shared by all calls to one target stops hammering a target that keeps
failing: after ``failure_threshold`` consecutive failures it opens and rejects calls for
``reset_timeout`` seconds, then lets ``half_open_max_calls`` trial calls through (half-open); a
success closes it, a failure opens it again. A call that finally fails is handed to the
dead-letter hook (if any) with its payload, error and attempt count before the error is raised.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from quiver.runtime.errors import ErrorDetail, PermanentError, QuiverError, RetryableError

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerPolicy",
    "CircuitOpenError",
    "CircuitState",
    "DeadLetter",
    "DeadLetterHook",
    "Delivery",
    "RetriesExhaustedError",
    "RetryPolicy",
    "file_error",
    "is_retryable",
]

T = TypeVar("T")


class RetryPolicy(BaseModel):
    """How often and how patiently a failed operation is retried."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(
        default=5, ge=1, description="Attempts in total, the first one included."
    )
    initial_delay: float = Field(
        default=0.1, ge=0, description="Upper bound of the first backoff delay, in seconds."
    )
    multiplier: float = Field(default=2.0, ge=1, description="Growth factor of the delay bound.")
    max_delay: float = Field(default=30.0, ge=0, description="Largest backoff delay, in seconds.")
    max_elapsed: float | None = Field(
        default=300.0,
        gt=0,
        description="Give up when this many seconds have passed since the first attempt "
        "(null: no limit).",
    )
    jitter: bool = Field(
        default=True, description="Full jitter: sleep a uniform random time up to the delay bound."
    )

    def delay_bound(self, attempt: int) -> float:
        """The delay bound after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1)))


class CircuitBreakerPolicy(BaseModel):
    """When a circuit breaker opens and how it probes the target again."""

    model_config = ConfigDict(extra="forbid")

    failure_threshold: int = Field(
        default=5, ge=1, description="Consecutive failures that open the circuit."
    )
    reset_timeout: float = Field(
        default=30.0, gt=0, description="Seconds the circuit stays open before a trial call."
    )
    half_open_max_calls: int = Field(
        default=1, ge=1, description="Trial calls let through while half-open."
    )


class CircuitState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpenError(RetryableError):
    """The circuit is open: the call was not attempted."""


class RetriesExhaustedError(PermanentError):
    """A retryable operation failed on every attempt; ``last_error`` is the final failure."""

    last_error: BaseException | None = None
    attempts: int = 0


class CircuitBreaker:
    """Closed / open / half-open state of one target, shared by every call to it."""

    def __init__(
        self,
        policy: CircuitBreakerPolicy | None = None,
        *,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or CircuitBreakerPolicy()
        self.name = name
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0
        self.transitions: list[tuple[CircuitState, CircuitState]] = []

    @property
    def state(self) -> CircuitState:
        if (
            self._state is CircuitState.OPEN
            and self._clock() - self._opened_at >= self.policy.reset_timeout
        ):
            self._move(CircuitState.HALF_OPEN)
            self._trials = 0
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open circuit lets a trial call through (0 when not open)."""
        if self.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.policy.reset_timeout - self._clock())

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` when the call must not be attempted."""
        state = self.state
        if state is CircuitState.OPEN or (
            state is CircuitState.HALF_OPEN and self._trials >= self.policy.half_open_max_calls
        ):
            raise CircuitOpenError(
                [
                    ErrorDetail(
                        f"circuit open after {self._failures} consecutive failures",
                        self.name,
                        f"the target is retried in {self.retry_after():.1f}s",
                    )
                ],
                code="CIRCUIT_OPEN",
            )
        if state is CircuitState.HALF_OPEN:
            self._trials += 1

    def record_success(self) -> None:
        self._failures = 0
        if self._state is not CircuitState.CLOSED:
            self._move(CircuitState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        state = self.state
        if state is CircuitState.HALF_OPEN or (
            state is CircuitState.CLOSED and self._failures >= self.policy.failure_threshold
        ):
            self._opened_at = self._clock()
            self._move(CircuitState.OPEN)

    def _move(self, to: CircuitState) -> None:
        self.transitions.append((self._state, to))
        self._state = to


@dataclass
class DeadLetter:
    """A call that failed for good, as handed to the dead-letter hook."""

    operation: str
    payload: Any
    error: BaseException
    attempts: int
    first_attempt_at: float
    failed_at: float
    errors: list[str] = field(default_factory=list)


DeadLetterHook = Callable[[DeadLetter], Awaitable[None]]


def is_retryable(exc: BaseException) -> bool:
    """Typed errors decide; connection resets and timeouts count as retryable."""
    if isinstance(exc, RetryableError):
        return True
    if isinstance(exc, QuiverError):
        return False
    return isinstance(exc, ConnectionError | TimeoutError)


# errno -> (message with {path}, fix): failures of a file operation that no retry can cure.
_PERMANENT_FILE_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: (
        "no space left on {path}",
        "free space on that file system, or write the output elsewhere",
    ),
    errno.EDQUOT: (
        "disk quota exceeded writing {path}",
        "free space within the quota, or write the output elsewhere",
    ),
    errno.EROFS: (
        "{path} is on a read-only file system",
        "write the output to a writable directory",
    ),
    errno.EACCES: (
        "permission denied: {path}",
        "check the permissions of the file and its directory, or choose another path",
    ),
    errno.EPERM: (
        "operation not permitted: {path}",
        "check the permissions of the file and its directory, or choose another path",
    ),
    errno.ENOENT: (
        "no such file or directory: {path}",
        "check the path; a missing parent directory is created only with `create_dirs: true`",
    ),
    errno.ENOTDIR: (
        "a part of {path} is a file, not a directory",
        "check the path",
    ),
    errno.EISDIR: (
        "{path} is a directory",
        "name a file, not a directory",
    ),
    errno.ENAMETOOLONG: ("the name {path} is too long", "choose a shorter path"),
    errno.ELOOP: ("too many symbolic links in {path}", "check the symbolic links of the path"),
    errno.EFBIG: ("{path} grew larger than the file system allows", "write smaller files"),
    errno.EEXIST: ("{path} already exists", "remove it or choose another path"),
}


def file_error(exc: OSError, path: str | None = None, where: str = "") -> QuiverError:
    """An operating-system error of a file operation as a typed error: permanent (full disk,
    read-only file system, permissions, a missing parent, a directory where a file should
    be ...) fails at once; anything else (an interrupted call, a busy resource, an I/O
    error of a network file system) may be retried."""
    target = path or (str(exc.filename) if exc.filename is not None else "the file")
    known = _PERMANENT_FILE_ERRORS.get(exc.errno or 0)
    if known is not None:
        message, fix = known
        return PermanentError(
            [ErrorDetail(message.format(path=target), where, fix)], code="FILE_ERROR"
        )
    reason = exc.strerror or str(exc) or type(exc).__name__
    return RetryableError(
        [
            ErrorDetail(
                f"{target}: {reason}", where, "check the file system; the operation is retried"
            )
        ],
        code="FILE_ERROR",
    )


class Delivery:
    """Runs operations under a retry policy, an optional circuit breaker and a dead-letter hook.

    ``on_retry(operation, attempt, delay, error)`` is called before each backoff sleep, so
    callers can log and count retries.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        dead_letter: DeadLetterHook | None = None,
        on_retry: Callable[[str, int, float, BaseException], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or RetryPolicy()
        self.breaker = breaker
        self.dead_letter = dead_letter
        self.on_retry = on_retry
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self.retries = 0

    def backoff(self, attempt: int) -> float:
        """The delay after failed attempt ``attempt`` (1-based)."""
        bound = self.policy.delay_bound(attempt)
        return bound * self._rng() if self.policy.jitter else bound

    async def call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        name: str = "operation",
        payload: Any = None,
    ) -> T:
        """Await ``operation()`` until it succeeds, fails permanently or runs out of attempts."""
        started = self._clock()
        attempt = 0
        messages: list[str] = []
        while True:
            attempt += 1
            try:
                if self.breaker is not None:
                    self.breaker.before_call()
                result = await operation()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                circuit_open = isinstance(exc, CircuitOpenError)
                if self.breaker is not None and not circuit_open:
                    self.breaker.record_failure()
                messages.append(f"attempt {attempt}: {_describe(exc)}")
                retryable = is_retryable(exc)
                delay = self.backoff(attempt)
                if circuit_open and self.breaker is not None:
                    delay = max(delay, self.breaker.retry_after())
                if isinstance(exc, RetryableError) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                elapsed = self._clock() - started
                out_of_time = (
                    self.policy.max_elapsed is not None
                    and elapsed + delay > self.policy.max_elapsed
                )
                if not retryable or attempt >= self.policy.max_attempts or out_of_time:
                    final = exc if not retryable else _exhausted(name, attempt, exc, out_of_time)
                    await self._dead_letter(name, payload, final, attempt, started, messages)
                    if final is exc:
                        raise
                    raise final from exc
                self.retries += 1
                if self.on_retry is not None:
                    self.on_retry(name, attempt, delay, exc)
                await self._sleep(delay)
            else:
                if self.breaker is not None:
                    self.breaker.record_success()
                return result

    async def _dead_letter(
        self,
        name: str,
        payload: Any,
        error: BaseException,
        attempts: int,
        started: float,
        messages: list[str],
    ) -> None:
        if self.dead_letter is None:
            return
        await self.dead_letter(
            DeadLetter(name, payload, error, attempts, started, self._clock(), list(messages))
        )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, QuiverError) else f"{type(exc).__name__}: {text}"


def _exhausted(
    name: str, attempts: int, exc: BaseException, out_of_time: bool
) -> RetriesExhaustedError:
    why = "the retry time budget ran out" if out_of_time else f"all {attempts} attempts failed"
    error = RetriesExhaustedError(
        [
            ErrorDetail(
                f"{name} failed: {why}; last error: {_describe(exc)}",
                name,
                "check that the target is reachable, or raise retry.max_attempts / "
                "retry.max_elapsed",
            )
        ],
        code="RETRIES_EXHAUSTED",
    )
    error.last_error = exc
    error.attempts = attempts
    return error
