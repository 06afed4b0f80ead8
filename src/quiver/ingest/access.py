"""Who may send to a receiver: API keys and bearer tokens, and the TLS options of a listener.

A request is let in when it carries one of the configured API keys in the ``api_key_header``
(``x-api-key`` by default) or one of the bearer tokens as ``Authorization: Bearer <token>``.
Keys are compared in constant time. Write them as ``${env:NAME}`` or ``${file:path}`` in the
pipeline file rather than in clear.

A key or token may be bound to a tenant (``{key: ..., tenant: acme}``): every request it
authenticates belongs to that tenant (see :mod:`quiver.ingest.tenancy`).
"""

from __future__ import annotations

import hmac
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field, model_validator

from quiver.ingest.listener import tls_file_problems
from quiver.ingest.tenant_id import TenantId
from quiver.pipeline.component import ComponentConfig

if TYPE_CHECKING:
    import grpc.aio

__all__ = [
    "TLS_FIX",
    "ApiKey",
    "AuthConfig",
    "BearerToken",
    "Caller",
    "TlsConfig",
    "authenticate",
    "authorized",
    "server_ssl_context",
]


class ApiKey(ComponentConfig):
    """An API key bound to a tenant: the requests it authenticates belong to `tenant`."""

    key: str = Field(description="The key, sent in `api_key_header`.")
    tenant: TenantId | None = Field(None, description="Tenant of every request sent with this key.")


class BearerToken(ComponentConfig):
    """A bearer token bound to a tenant: the requests it authenticates belong to `tenant`."""

    token: str = Field(description="The token, sent as `Authorization: Bearer …`.")
    tenant: TenantId | None = Field(
        None, description="Tenant of every request sent with this token."
    )


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the tenant its key or token is bound to (None: not bound)."""

    tenant: str | None = None


class AuthConfig(ComponentConfig):
    """Require an API key or a bearer token on every request."""

    api_keys: list[str | ApiKey] = Field(
        default_factory=list,
        description="Accepted API keys, sent in `api_key_header`; `{key, tenant}` binds a key "
        "to a tenant.",
    )
    bearer_tokens: list[str | BearerToken] = Field(
        default_factory=list,
        description="Accepted tokens, sent as `Authorization: Bearer …`; `{token, tenant}` "
        "binds a token to a tenant.",
    )
    api_key_header: str = Field("x-api-key", description="Header (gRPC metadata key) of the key.")

    @model_validator(mode="after")
    def _something_accepted(self) -> AuthConfig:
        if not self.api_keys and not self.bearer_tokens:
            raise ValueError(
                "auth needs api_keys or bearer_tokens (without either nobody could send)"
            )
        if any(not secret for secret, _ in [*self.keys(), *self.tokens()]):
            raise ValueError("an empty API key or token would let anyone in")
        self.api_key_header = self.api_key_header.lower()
        return self

    def keys(self) -> list[tuple[str, str | None]]:
        """``(key, tenant)`` of every API key (tenant None: not bound to one)."""
        return [(k, None) if isinstance(k, str) else (k.key, k.tenant) for k in self.api_keys]

    def tokens(self) -> list[tuple[str, str | None]]:
        """``(token, tenant)`` of every bearer token."""
        return [
            (t, None) if isinstance(t, str) else (t.token, t.tenant) for t in self.bearer_tokens
        ]

    def tenants(self) -> set[str]:
        """The tenants keys and tokens are bound to."""
        return {t for _, t in [*self.keys(), *self.tokens()] if t is not None}


#: The fix of a listener's TLS file that cannot serve.
TLS_FIX = (
    "cert_file names the PEM certificate chain, key_file its unencrypted PEM private key and "
    "client_ca_file PEM CA certificates; relative paths start at the pipeline file"
)


class TlsConfig(ComponentConfig):
    """Serve over TLS (and with ``client_ca_file``, require client certificates)."""

    cert_file: str = Field(description="PEM certificate chain of the server.")
    key_file: str = Field(description="PEM private key of the server.")
    client_ca_file: str | None = Field(
        None, description="PEM CA bundle; when set, clients must present a certificate it signed."
    )

    def resolved(self, base_dir: str) -> TlsConfig:
        """The same options with relative paths taken from ``base_dir`` (the pipeline's)."""
        update = {
            name: os.path.join(base_dir, path)
            for name in ("cert_file", "key_file", "client_ca_file")
            if (path := getattr(self, name)) is not None
        }
        return self.model_copy(update=update)

    def check_files(self, where: str) -> list[tuple[str, str]]:
        """``(where.tls.option, problem)`` for each file that cannot serve: missing,
        unreadable, not PEM of its kind, or not loading together."""
        found = tls_file_problems(self.cert_file, self.key_file, self.client_ca_file)
        return [(f"{where}.tls.{option}", problem) for option, problem in found]

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """The certificate chain, key and client CA bundle, as bytes."""

        def load(path: str) -> bytes:
            with open(path, "rb") as fh:
                return fh.read()

        ca = load(self.client_ca_file) if self.client_ca_file else None
        return load(self.cert_file), load(self.key_file), ca


def server_ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """An SSL context serving ``tls``'s certificate (requiring client ones with a CA)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.client_ca_file:
        context.load_verify_locations(tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def authenticate(auth: AuthConfig | None, headers: Mapping[str, str]) -> Caller | None:
    """The caller whose accepted key or token ``headers`` (lowercase names) carry; None when
    they carry none."""
    if auth is None:
        return Caller()
    key = headers.get(auth.api_key_header)
    if key is not None:
        found = _match(key, auth.keys())
        if found is not None:
            return found
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token:
        return _match(token.strip(), auth.tokens())
    return None


def authorized(auth: AuthConfig | None, headers: Mapping[str, str]) -> bool:
    """Whether ``headers`` (lowercase names) carry an accepted key or token."""
    return authenticate(auth, headers) is not None


def _match(given: str, accepted: list[tuple[str, str | None]]) -> Caller | None:
    found: Caller | None = None
    for secret, tenant in accepted:  # every one compared: the time does not tell which matched
        if _same(given, secret) and found is None:
            found = Caller(tenant)
    return found


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


async def admit_grpc_call(
    context: grpc.aio.ServicerContext[Any, Any],
    auth: AuthConfig | None,
    enabled: bool,
    signal: str,
) -> Caller:
    """Abort a gRPC call (OTLP or OTAP) whose credentials are missing or wrong
    (UNAUTHENTICATED) or whose signal this receiver does not take (UNIMPLEMENTED); the caller
    of one let in."""
    import grpc

    metadata = grpc_metadata(context)
    caller = authenticate(auth, metadata)
    if caller is None:
        await context.abort(
            grpc.StatusCode.UNAUTHENTICATED,
            "missing or wrong credentials: send the API key in the "
            f"{auth.api_key_header if auth else 'x-api-key'} metadata or "
            "authorization: Bearer <token>",
        )
    if not enabled:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"this receiver does not take {signal}")
    assert caller is not None  # abort raised otherwise
    return caller


def grpc_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
    """The text metadata of a gRPC call, by lowercase key."""
    return {k.lower(): v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
