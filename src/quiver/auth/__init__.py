"""auth: who is calling. One hook, :meth:`Authenticator.authenticate`, shared by HTTP and Flight.

The first provider is a list of static API keys from ``quiver.yaml`` (``auth.api_keys``); with
none configured every caller is let in as ``anonymous``. See docs/security.md.
"""

from quiver.auth.keys import (
    ANONYMOUS,
    AuthenticationError,
    Authenticator,
    OpenAccess,
    Principal,
    StaticApiKeys,
    authenticator_for,
)

__all__ = [
    "ANONYMOUS",
    "AuthenticationError",
    "Authenticator",
    "OpenAccess",
    "Principal",
    "StaticApiKeys",
    "authenticator_for",
]
