"""POSTing a body to an HTTP receiver, as the webhook and Slack actions do: 2xx is delivered;
408, 429, 5xx, timeouts and connection failures may succeed later; anything else never will."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from quiver.runtime.errors import ErrorDetail, PermanentError, RetryableError

__all__ = ["Poster"]


class Poster:
    """One HTTP client, opened on first use."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], where: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        try:
            response = await self._client.post(url, content=body, headers=dict(headers))
        except httpx.TimeoutException:
            raise RetryableError(
                [ErrorDetail(f"no response within {self.timeout}s", where, "")],
                code="HTTP_TIMEOUT",
            ) from None
        except httpx.HTTPError as exc:
            raise RetryableError(
                [ErrorDetail(f"cannot reach the receiver: {exc}", where, "")],
                code="HTTP_UNREACHABLE",
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = ErrorDetail(
            f"the receiver answered {status}: {response.text[:200]}",
            where,
            "check the receiver's logs",
        )
        if status in (408, 429) or status >= 500:
            raise RetryableError([detail], code="HTTP_STATUS")
        raise PermanentError([detail], code="HTTP_STATUS")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
