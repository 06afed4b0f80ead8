"""The HTTP client side shared by the ``rest`` source and sink: credentials and request
pacing. Failed requests are sorted into retryable or permanent errors, and answers read up to
a bound, by :mod:`quiver.runtime.outbound_http`, as every HTTP client of the product does."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
from pydantic import BaseModel, ConfigDict, Field, model_validator

from quiver.runtime.outbound_http import MAX_RETRY_AFTER, retry_after_seconds

__all__ = ["HttpAuth", "RateLimiter"]


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


class RateLimiter:
    """Spaces requests at least ``1 / rate`` seconds apart, and honours ``Retry-After``.

    A 429 or 503 answer with ``Retry-After`` (seconds or an HTTP date, capped at
    ``MAX_RETRY_AFTER``) holds the next request back until then; the retry itself is still
    scheduled by :mod:`quiver.runtime.delivery`.
    """

    MAX_RETRY_AFTER = MAX_RETRY_AFTER

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
