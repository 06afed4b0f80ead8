"""The webhook action: POST the event as JSON, signed with HMAC-SHA256.

Headers: ``Content-Type: application/json``, ``Idempotency-Key`` (event id, observer and
action: the same on every redelivery), ``X-Quiver-Event`` (the event id) and, when a secret
is configured, ``X-Quiver-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>``.
2xx is delivered; 408, 429, 5xx, timeouts and connection failures are retried; any other
status fails at once (no retry can cure it).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from quiver.observers.event import Job
from quiver.runtime.errors import ErrorDetail, PermanentError, RetryableError

__all__ = ["WebhookAction", "WebhookConfig", "sign"]


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"]
    name: str | None = Field(default=None, description="Name within the observer.")
    url: str = Field(pattern=r"^https?://", description="Where to POST.")
    secret: str | None = Field(default=None, description="HMAC-SHA256 key of the signature.")
    timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for the response.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers.")
    signature_header: str = Field(default="X-Quiver-Signature")


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookAction:
    def __init__(self, cfg: WebhookConfig) -> None:
        self.cfg = cfg
        self._client: httpx.AsyncClient | None = None

    async def run(self, job: Job) -> None:
        body = job.body()
        headers = {
            **self.cfg.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": job.idempotency_key,
            "X-Quiver-Event": str(job.event_id),
        }
        if self.cfg.secret:
            headers[self.cfg.signature_header] = sign(self.cfg.secret, body)
        where = f"webhook {self.cfg.url}"
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.cfg.timeout)
        try:
            response = await self._client.post(self.cfg.url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise RetryableError(
                [ErrorDetail(f"no response within {self.cfg.timeout}s", where, "")],
                code="WEBHOOK_TIMEOUT",
            ) from None
        except httpx.HTTPError as exc:
            raise RetryableError(
                [ErrorDetail(f"cannot reach the receiver: {exc}", where, "")],
                code="WEBHOOK_UNREACHABLE",
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
            raise RetryableError([detail], code="WEBHOOK_STATUS")
        raise PermanentError([detail], code="WEBHOOK_STATUS")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
