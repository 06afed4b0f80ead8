"""The Slack action: post a message to a Slack incoming webhook (``{"text": ...}``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from quiver.observers.event import Job
from quiver.observers.posting import SLACK, Poster
from quiver.observers.template import Template, parse_template
from quiver.runtime.errors import ErrorDetail
from quiver.runtime.outbound_http import HttpAddress

__all__ = ["SlackAction", "SlackConfig", "build_slack"]

DEFAULT_TEXT = "{{ entity }} {{ operation }} {{ key }} ({{ observer }})"


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["slack"]
    name: str | None = Field(default=None, description="Name within the observer.")
    url: HttpAddress = Field(description="The incoming webhook's URL.")
    text: str = Field(default=DEFAULT_TEXT, description="Template of the message.")
    timeout: float = Field(default=10.0, gt=0, description="Seconds to wait for Slack.")


class SlackAction:
    def __init__(self, cfg: SlackConfig, text: Template) -> None:
        self.cfg = cfg
        self.text = text
        self._poster = Poster(cfg.timeout, SLACK)

    async def run(self, job: Job) -> None:
        body = orjson.dumps({"text": self.text.render(job.document())})
        headers = {"Content-Type": "application/json", "Idempotency-Key": job.idempotency_key}
        await self._poster.post(self.cfg.url, body, headers, "slack webhook")

    async def close(self) -> None:
        await self._poster.close()


def build_slack(
    cfg: SlackConfig, fields: Iterable[str] | None, where: str, errors: list[ErrorDetail]
) -> SlackAction:
    return SlackAction(cfg, parse_template(cfg.text, f"{where}.text", fields, errors))
