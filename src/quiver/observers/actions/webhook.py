"""The webhook action: POST the event as JSON (or a templated body), signed with HMAC-SHA256.

Headers: ``Content-Type``, ``Idempotency-Key`` (event id, observer and action: the same on
every redelivery), ``X-Quiver-Event`` (the event id) and, when a secret is configured,
``X-Quiver-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from quiver.observers.event import Job
from quiver.observers.posting import Poster
from quiver.observers.template import Template, parse_template
from quiver.runtime.errors import ErrorDetail
from quiver.runtime.outbound_http import HttpAddress

__all__ = ["WebhookAction", "WebhookConfig", "build_webhook", "sign"]


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["webhook"]
    name: str | None = Field(default=None, description="Name within the observer.")
    url: HttpAddress = Field(description="Where to POST: an http:// or https:// URL.")
    secret: str | None = Field(default=None, description="HMAC-SHA256 key of the signature.")
    timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for the response.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra headers.")
    signature_header: str = Field(default="X-Quiver-Signature")
    body: str | None = Field(
        default=None, description="Template of the body; default: the event document."
    )
    content_type: str = Field(default="application/json")


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookAction:
    def __init__(self, cfg: WebhookConfig, body: Template | None = None) -> None:
        self.cfg = cfg
        self.template = body
        self._poster = Poster(cfg.timeout)

    async def run(self, job: Job) -> None:
        if self.template is None:
            body = job.body()
        else:
            body = self.template.render(job.document()).encode()
        headers = {
            **self.cfg.headers,
            "Content-Type": self.cfg.content_type,
            "Idempotency-Key": job.idempotency_key,
            "X-Quiver-Event": str(job.event_id),
        }
        if self.cfg.secret:
            headers[self.cfg.signature_header] = sign(self.cfg.secret, body)
        await self._poster.post(self.cfg.url, body, headers, f"webhook {self.cfg.url}")

    async def close(self) -> None:
        await self._poster.close()


def build_webhook(
    cfg: WebhookConfig, fields: Iterable[str] | None, where: str, errors: list[ErrorDetail]
) -> WebhookAction:
    body = None if cfg.body is None else parse_template(cfg.body, f"{where}.body", fields, errors)
    return WebhookAction(cfg, body)
