"""The HTTP client side shared by the ``rest`` source and sink: credentials, request pacing
and the mapping of failed requests onto retryable or permanent errors."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import time

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from quiver.runtime.errors import PermanentError, QuiverError, RetryableError

__all__ = ["HttpAuth", "RateLimiter", "http_error", "retry_after_seconds"]


class HttpAuth(BaseModel):
    """Credentials sent with every request. Put secrets in the environment: ``${API_TOKEN}``."""

    model_config = ConfigDict(extra="forbid")

    bearer: str | None = Field(None, description="Token sent as `Authorization: Bearer <token>`.")
    basic: tuple[str, str] | None = Field(None, description="[user, password] for Basic auth.")
    header: str | None = Field(None, description="Header name for an API key, e.g. X-Api-Key.")
    value: str | None = Field(None, description="Value of `header`.")

    @model_validator(mode="after")
    def _one_kind(self) -> HttpAuth:
        kinds = [self.bearer is not None, self.basic is not None, self.header is not None]
        if sum(kinds) != 1:
            raise ValueError("set exactly one of `bearer`, `basic` or `header` (+ `value`)")
        if (self.header is None) != (self.value is None):
            raise ValueError("`header` and `value` go together")
        return self

    def headers(self) -> dict[str, str]:
        if self.bearer is not None:
            return {"Authorization": f"Bearer {self.bearer}"}
        if self.basic is not None:
            token = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        assert self.header is not None and self.value is not None
        return {self.header: self.value}


def http_error(
    exc: BaseException | None, response: httpx.Response | None, where: str
) -> QuiverError:
    """Map a transport failure or a non-2xx response onto Retryable / Permanent errors."""
    if response is None:
        return RetryableError.one(
            f"request failed: {type(exc).__name__}: {exc}",
            where,
            "check that the server is reachable; the request is retried with backoff",
        )
    status = response.status_code
    snippet = response.text[:200].strip()
    message = f"HTTP {status} {response.reason_phrase}" + (f": {snippet}" if snippet else "")
    if status == 429 or status >= 500 or status == 408:
        after = response.headers.get("retry-after")
        return RetryableError.one(
            message + (f" (Retry-After: {after})" if after else ""),
            where,
            "the server is overloaded or rate limiting; set `rate_limit` to send fewer "
            "requests per second",
        )
    fix = {
        401: "check the credentials in `auth` (e.g. the ${ENV} variable holding the token)",
        403: "the credentials lack permission for this resource",
        404: "check the URL",
    }.get(status, "check the request options (url, params, body) against the API")
    return PermanentError.one(message, where, fix)


class RateLimiter:
    """Spaces requests at least ``1 / rate`` seconds apart, and honours ``Retry-After``.

    A 429 or 503 answer with ``Retry-After`` (seconds or an HTTP date, capped at
    ``MAX_RETRY_AFTER``) holds the next request back until then; the retry itself is still
    scheduled by :mod:`quiver.runtime.delivery`.
    """

    MAX_RETRY_AFTER = 300.0

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = 0.0

    async def wait(self) -> None:
        now = time.monotonic()
        if self.next_at > now:
            await asyncio.sleep(self.next_at - now)
        self.next_at = max(now, self.next_at) + self.interval

    def observe(self, response: httpx.Response) -> None:
        """Note a ``Retry-After`` header of a 429/503 response."""
        if response.status_code not in (429, 503):
            return
        delay = retry_after_seconds(response.headers.get("retry-after"))
        if delay is not None:
            until = time.monotonic() + min(delay, self.MAX_RETRY_AFTER)
            self.next_at = max(self.next_at, until)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
