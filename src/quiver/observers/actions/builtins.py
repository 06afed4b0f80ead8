"""Every built-in action: its ``type`` name, config model and builder.

A builder gets the validated config, the watched entity's field names (None when the entity
is unknown), the config's location and the list to add problems to (templates naming unknown
fields), and returns the action.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from quiver.observers.actions.email import EmailConfig, build_email
from quiver.observers.actions.job import JobConfig, build_job
from quiver.observers.actions.log import LogConfig, build_log
from quiver.observers.actions.slack import SlackConfig, build_slack
from quiver.observers.actions.webhook import WebhookConfig, build_webhook
from quiver.observers.event import Action
from quiver.runtime.errors import ErrorDetail

__all__ = ["ACTIONS", "Builder"]

Builder = Callable[[Any, Iterable[str] | None, str, list[ErrorDetail]], Action]

ACTIONS: dict[str, tuple[type[BaseModel], Builder]] = {
    "webhook": (WebhookConfig, build_webhook),
    "slack": (SlackConfig, build_slack),
    "email": (EmailConfig, build_email),
    "log": (LogConfig, build_log),
    "job": (JobConfig, build_job),
}
