"""Who makes a request: what the auth layer learned, carried to whatever records the request."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RequestContext"]


@dataclass(frozen=True)
class RequestContext:
    """The authenticated user and tenant of one request (None when unknown)."""

    user_id: str | None = None
    tenant_id: str | None = None
