"""What the ``kafka`` receiver and the ``kafka`` sink share: connection options and errors."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from quiver.ingest.receiver import TlsOptions
from quiver.runtime.errors import PermanentError, QuiverError, RetryableError

__all__ = ["KafkaConnection", "kafka_error"]


class KafkaConnection(BaseModel):
    """The brokers, and how to log in to them."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        min_length=1,
        description="Brokers to start from (host:port).",
    )
    client_id: str = Field("quiver", description="Client name shown in the broker's logs.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to talk to the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (with SASL_PLAINTEXT / SASL_SSL)."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: str | None = Field(None, description="SASL password.")
    tls: TlsOptions | None = Field(None, description="TLS settings (with SSL / SASL_SSL).")

    @model_validator(mode="after")
    def _sasl_user(self) -> KafkaConnection:
        if self.security_protocol.startswith("SASL") and self.sasl_username is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username")
        return self

    def client_options(self, base_dir: str) -> dict[str, Any]:
        """Keyword arguments of an aiokafka client for these options."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
            "ssl_context": self.tls.context(base_dir) if self.tls is not None else None,
        }


def kafka_error(exc: BaseException, where: str, doing: str) -> QuiverError:
    """An aiokafka failure as a typed error: refused logins and ACLs are permanent, the rest
    (brokers away, leaders moving, timeouts) retryable."""
    import aiokafka.errors as errors

    text = str(exc) or type(exc).__name__
    if isinstance(
        exc,
        errors.GroupAuthorizationFailedError
        | errors.TopicAuthorizationFailedError
        | errors.UnsupportedSaslMechanismError
        | errors.SaslAuthenticationFailed
        | errors.AuthenticationFailedError,
    ):
        return PermanentError.one(
            f"Kafka refused {doing}: {text}",
            where,
            "check the SASL user, password and mechanism and the ACLs of the group and topics",
        )
    if isinstance(
        exc,
        errors.MessageSizeTooLargeError
        | errors.RecordListTooLargeError
        | errors.InvalidTopicError
        | errors.UnsupportedCodecError,
    ):
        return PermanentError.one(
            f"Kafka refused {doing}: {type(exc).__name__}: {text}",
            where,
            "send smaller messages (rows_per_message), a valid topic name or another compression",
        )
    return RetryableError.one(
        f"Kafka unavailable while {doing}: {type(exc).__name__}: {text}",
        where,
        "check bootstrap_servers and that the brokers are running; the run retries with backoff",
    )
