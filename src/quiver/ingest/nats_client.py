"""What the ``nats`` receiver and the ``nats`` sink share: how NATS failures are classified."""

from __future__ import annotations

import ssl

from pydantic import BaseModel, ConfigDict, Field

from quiver.runtime.errors import PermanentError, QuiverError, RetryableError

__all__ = ["NatsLogin", "nats_error"]


class NatsLogin(BaseModel):
    """The servers, and how to log in to them."""

    model_config = ConfigDict(extra="forbid")

    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"],
        min_length=1,
        description="Server URLs (nats://host:4222, tls://host:4222).",
    )
    user: str | None = Field(None, description="User name.")
    password: str | None = Field(None, description="Password.")
    token: str | None = Field(None, description="Authentication token.")
    creds_file: str | None = Field(None, description="Credentials file (JWT and NKey seed).")
    nkeys_seed: str | None = Field(None, description="NKey seed file.")


def nats_error(exc: BaseException, where: str, doing: str) -> QuiverError:
    """A missing stream, a refused login or a bad subject is permanent; the rest retryable."""
    import nats.errors
    import nats.js.errors

    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError.one(
            f"the NATS server's TLS certificate is not trusted while {doing}: {exc.verify_message}",
            where,
            "set tls.ca_file to the CA certificate that signed the server's certificate, and "
            "connect to a host name the certificate names",
        )
    if isinstance(exc, nats.js.errors.NotFoundError):
        return PermanentError.one(
            f"NATS error while {doing}: stream not found ({text})",
            where,
            "create the stream first (nats stream add) or check `stream`",
        )
    if isinstance(exc, nats.errors.AuthorizationError | nats.errors.BadSubjectError):
        return PermanentError.one(
            f"NATS refused {doing}: {text}",
            where,
            "check user, password, token or credentials, and the subject",
        )
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PermanentError.one(
            f"NATS refused {doing}: the message is larger than the server allows ({text})",
            where,
            "send fewer rows per message (rows_per_message) or raise max_payload",
        )
    if isinstance(exc, nats.js.errors.APIError):
        return PermanentError.one(
            f"JetStream error while {doing}: {text}",
            where,
            "check the stream, durable and subject (a durable keeps the subject it was made with)",
        )
    return RetryableError.one(
        f"NATS unavailable while {doing}: {type(exc).__name__}: {text}",
        where,
        "check that the server is running and reachable; the run retries with backoff",
    )
