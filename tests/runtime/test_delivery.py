"""Delivery: retry with backoff and full jitter, the circuit breaker, the dead-letter hook,
exercised with real operations that fail for real (missing directories, refused connections)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path

import pytest

from quiver.runtime.delivery import (
    CircuitBreaker,
    CircuitBreakerPolicy,
    CircuitOpenError,
    CircuitState,
    DeadLetter,
    Delivery,
    RetriesExhaustedError,
    RetryPolicy,
    is_retryable,
)
from quiver.runtime.errors import PermanentError, RetryableError


class Clock:
    """A clock the test moves by hand (time is an input of the breaker, not a service)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def state(breaker: CircuitBreaker) -> CircuitState:
    """The breaker's state, read afresh (it changes with the clock)."""
    return breaker.state


def write_into(folder: Path) -> object:
    """An operation that writes a file into `folder`; retryable while the folder is missing."""

    async def op() -> str:
        target = folder / "out.txt"
        try:
            target.write_text("done")
        except FileNotFoundError as exc:
            raise RetryableError.one(f"{folder} missing", str(folder), "create it") from exc
        return target.read_text()

    return op


def test_delay_bounds_grow_exponentially_up_to_max_delay() -> None:
    policy = RetryPolicy(initial_delay=0.5, multiplier=2, max_delay=3)
    assert [policy.delay_bound(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_draws_uniformly_below_the_bound() -> None:
    draws = iter([0.0, 0.25, 0.999])
    delivery = Delivery(RetryPolicy(initial_delay=4, max_delay=100), rng=lambda: next(draws))
    assert [delivery.backoff(1), delivery.backoff(2), delivery.backoff(3)] == [0.0, 2.0, 15.984]
    plain = Delivery(RetryPolicy(initial_delay=4, jitter=False))
    assert plain.backoff(2) == 8.0


def test_retries_until_the_directory_appears(tmp_path: Path) -> None:
    folder = tmp_path / "late"
    attempts: list[int] = []
    delivery = Delivery(
        RetryPolicy(initial_delay=0.02, max_delay=0.05, max_attempts=100),
        on_retry=lambda name, attempt, delay, exc: attempts.append(attempt),
    )
    timer = threading.Timer(0.2, folder.mkdir)
    timer.start()
    try:
        assert asyncio.run(delivery.call(write_into(folder), name="write")) == "done"  # type: ignore[arg-type]
    finally:
        timer.cancel()
    assert attempts and attempts == list(range(1, len(attempts) + 1))
    assert delivery.retries == len(attempts)


def test_gives_up_after_max_attempts_and_hands_the_item_to_the_dead_letter_hook(
    tmp_path: Path,
) -> None:
    letters: list[DeadLetter] = []

    async def dlq(letter: DeadLetter) -> None:
        letters.append(letter)

    delivery = Delivery(RetryPolicy(initial_delay=0.001, max_attempts=3), dead_letter=dlq)
    with pytest.raises(RetriesExhaustedError) as err:
        asyncio.run(delivery.call(write_into(tmp_path / "never"), name="write", payload={"id": 7}))  # type: ignore[arg-type]
    assert err.value.attempts == 3
    assert isinstance(err.value.last_error, RetryableError)
    assert "all 3 attempts failed" in str(err.value)
    (letter,) = letters
    assert letter.payload == {"id": 7} and letter.attempts == 3 and len(letter.errors) == 3


def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    async def op() -> None:
        nonlocal calls
        calls += 1
        raise PermanentError.one("bad request", "target", "fix the data")

    with pytest.raises(PermanentError, match="bad request"):
        asyncio.run(Delivery(RetryPolicy(initial_delay=0)).call(op))
    assert calls == 1


def test_a_refused_connection_is_retryable_and_unknown_errors_are_not() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nobody listens there

    async def connect() -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    with pytest.raises(RetriesExhaustedError) as err:
        asyncio.run(Delivery(RetryPolicy(initial_delay=0.001, max_attempts=2)).call(connect))
    assert isinstance(err.value.last_error, ConnectionRefusedError)
    assert is_retryable(TimeoutError()) and not is_retryable(KeyError("x"))


def test_max_elapsed_stops_retrying_before_the_budget_is_spent() -> None:
    clock = Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    async def op() -> None:
        clock.now += 1.0
        raise RetryableError.one("busy")

    policy = RetryPolicy(
        initial_delay=1, max_delay=10, max_attempts=100, max_elapsed=10, jitter=False
    )
    delivery = Delivery(policy, sleep=sleep, clock=clock)
    with pytest.raises(RetriesExhaustedError, match="time budget"):
        asyncio.run(delivery.call(op))
    assert slept == [1.0, 2.0, 4.0]  # the next delay (8s) would pass the 10s budget


def test_circuit_opens_after_consecutive_failures_and_half_opens_after_the_timeout() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        CircuitBreakerPolicy(failure_threshold=3, reset_timeout=5), clock=clock
    )
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert state(breaker) is CircuitState.OPEN
    with pytest.raises(CircuitOpenError, match="circuit open after 3 consecutive failures"):
        breaker.before_call()
    clock.now += 5
    assert state(breaker) is CircuitState.HALF_OPEN
    breaker.before_call()  # the one trial call
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    breaker.record_failure()
    assert state(breaker) is CircuitState.OPEN
    clock.now += 5
    breaker.before_call()
    breaker.record_success()
    assert state(breaker) is CircuitState.CLOSED
    assert breaker.transitions == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=2))
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert state(breaker) is CircuitState.CLOSED


def test_delivery_waits_for_an_open_circuit_then_succeeds(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    breaker = CircuitBreaker(CircuitBreakerPolicy(failure_threshold=2, reset_timeout=0.2))
    delivery = Delivery(
        RetryPolicy(initial_delay=0.001, max_delay=0.001, max_attempts=50), breaker=breaker
    )

    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, lambda: os.mkdir(folder))
        result: str = await delivery.call(write_into(folder))  # type: ignore[arg-type]
        return result

    assert asyncio.run(main()) == "done"
    assert (CircuitState.CLOSED, CircuitState.OPEN) in breaker.transitions
    assert state(breaker) is CircuitState.CLOSED
