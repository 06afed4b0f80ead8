"""Authentication by static API keys: ``Authorization: Bearer <key>``, or Basic with the key as
the password (the Flight handshake turns Basic into Bearer)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from quiver.config.settings import ApiKey, AuthSettings
from quiver.runtime.errors import QuiverError

__all__ = [
    "ANONYMOUS",
    "AuthenticationError",
    "Authenticator",
    "OpenAccess",
    "Principal",
    "StaticApiKeys",
    "authenticator_for",
]

_FIX = "send the header 'Authorization: Bearer <key>' with a key listed in auth.api_keys"


@dataclass(frozen=True)
class Principal:
    """The caller a request runs as: the name of the key it presented."""

    name: str
    #: The bearer token that identifies the caller on later calls (the key itself).
    token: str = ""
    #: The role whose permissions apply (``auth.permissions``); None: no restriction.
    role: str | None = None
    #: The key's claims, sorted by name: the values permission filters read.
    claims: tuple[tuple[str, str | int | float | bool], ...] = ()

    @property
    def access_key(self) -> tuple[str | None, tuple[tuple[str, str | int | float | bool], ...]]:
        """What decides what the caller may see: its role and claims."""
        return (self.role, self.claims)


ANONYMOUS = Principal("anonymous")


class AuthenticationError(QuiverError):
    """No credentials, or credentials that no provider accepts."""


class Authenticator(Protocol):
    """The authentication hook: the caller behind an ``Authorization`` header value."""

    @property
    def required(self) -> bool: ...

    def authenticate(self, authorization: str | None) -> Principal: ...


class OpenAccess:
    """No keys configured: every caller is :data:`ANONYMOUS`."""

    required = False

    def authenticate(self, authorization: str | None) -> Principal:
        return ANONYMOUS


class StaticApiKeys:
    """Accepts the keys it is given, compared in constant time."""

    required = True

    def __init__(self, keys: Sequence[tuple[str, str] | ApiKey]) -> None:
        self._keys = [
            (Principal(k.name, "", k.role, tuple(sorted(k.claims.items()))), k.key.encode())
            if isinstance(k, ApiKey)
            else (Principal(k[0]), k[1].encode())
            for k in keys
        ]

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.strip():
            raise AuthenticationError.one("no credentials were sent", "Authorization", _FIX)
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer":
            secret = value
        elif scheme.lower() == "basic":
            secret = _basic_password(value)
        else:
            # A bare key is read as the scheme: it is never echoed back (close reasons, response
            # bodies and the logs of proxies would hold it); a scheme's name is a short word.
            named = f" {scheme!r}" if value and len(scheme) <= 16 and scheme.isalpha() else ""
            raise AuthenticationError.one(
                f"the authorization scheme{named} is not supported", "Authorization", _FIX
            )
        given = secret.encode()
        found: Principal | None = None
        for holder, key in self._keys:
            if hmac.compare_digest(given, key) and found is None:
                found = replace(holder, token=secret)
        if found is None:
            raise AuthenticationError.one("the API key is not valid", "Authorization", _FIX)
        return found


def _basic_password(value: str) -> str:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationError.one(
            "the Basic credentials are not base64 of 'name:key'", "Authorization", _FIX
        ) from None
    return decoded.partition(":")[2]


def authenticator_for(settings: AuthSettings) -> Authenticator:
    """The hook ``settings`` describe: :class:`StaticApiKeys` when keys are listed."""
    if not settings.api_keys:
        return OpenAccess()
    return StaticApiKeys(settings.api_keys)
