"""The AMQP 0-9-1 (RabbitMQ) client side shared by the ``rabbitmq`` source and sink: the
default broker URL, URLs with their password hidden for messages, and the mapping of broker
failures onto retryable or permanent errors."""

from __future__ import annotations

from quiver.runtime.errors import PermanentError, QuiverError, RetryableError

__all__ = ["DEFAULT_AMQP_URL", "amqp_error", "redact_amqp_url"]

#: The broker a step talks to when it names none: a local RabbitMQ with its default user.
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def redact_amqp_url(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    user = auth.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def amqp_error(exc: BaseException, url: str, doing: str) -> QuiverError:
    """Connection trouble is retryable; a missing queue or refused login is not."""
    if isinstance(exc, QuiverError):
        return exc
    import aio_pika.exceptions as errors

    text = str(exc) or type(exc).__name__
    where = redact_amqp_url(url)
    if isinstance(exc, errors.ProbableAuthenticationError | errors.AuthenticationError):
        return PermanentError.one(
            f"RabbitMQ refused the login while {doing}: {text}",
            where,
            "check the user and password in the URL",
        )
    if isinstance(exc, errors.AMQPChannelError | errors.DeliveryError | errors.PublishError):
        fix = (
            "create the queue first or set `declare: true`"
            if "NOT_FOUND" in text
            else "check the queue/exchange names and the user's permissions"
        )
        return PermanentError.one(f"RabbitMQ error while {doing}: {text}", where, fix)
    return RetryableError.one(
        f"RabbitMQ unavailable while {doing}: {type(exc).__name__}: {text}",
        where,
        "check that the broker is running and reachable; the run retries with backoff",
    )
