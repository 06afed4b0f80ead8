"""Every built-in action: its ``type`` name, config model and class."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel

from quiver.observers.actions.log import LogAction, LogConfig
from quiver.observers.actions.webhook import WebhookAction, WebhookConfig
from quiver.observers.event import Action

__all__ = ["ACTIONS"]

ACTIONS: dict[str, tuple[type[BaseModel], Callable[[BaseModel], Action]]] = {
    "webhook": (WebhookConfig, lambda cfg: WebhookAction(cfg)),  # type: ignore[arg-type]
    "log": (LogConfig, lambda cfg: LogAction(cfg)),  # type: ignore[arg-type]
}
