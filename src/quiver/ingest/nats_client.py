"""What the ``nats`` receiver and the ``nats`` sink share: how NATS failures are classified."""

from __future__ import annotations

from quiver.runtime.errors import PermanentError, QuiverError, RetryableError

__all__ = ["nats_error"]


def nats_error(exc: BaseException, where: str, doing: str) -> QuiverError:
    """A missing stream, a refused login or a bad subject is permanent; the rest retryable."""
    import nats.errors
    import nats.js.errors

    text = str(exc) or type(exc).__name__
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
