"""Who makes a request: what the auth layer learned, carried to whatever records the request."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["RequestContext", "current_request", "set_current_request"]


@dataclass(frozen=True)
class RequestContext:
    """The authenticated user and tenant of one request (None when unknown)."""

    user_id: str | None = None
    tenant_id: str | None = None


#: Who makes the request being served in this task, as the transport authenticated it.
_CURRENT: ContextVar[RequestContext | None] = ContextVar("quiver_request", default=None)


def set_current_request(context: RequestContext | None) -> None:
    """Record who makes the request served in the current task (the transport calls this
    once it authenticated the caller; each request runs in its own task)."""
    _CURRENT.set(context)


def current_request() -> RequestContext | None:
    """Who makes the request served in the current task, if the transport said so."""
    return _CURRENT.get()
