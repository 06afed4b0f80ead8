"""The options of the ``otlp`` source."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from quiver.ingest.access import AuthConfig, TlsConfig
from quiver.ingest.arrow_layout import SIGNALS, Signal
from quiver.ingest.otap.config import ArrowReceiverConfig
from quiver.ingest.receiver import CheckpointOptions
from quiver.ingest.tenancy import TenancyConfig
from quiver.pipeline.component import ComponentConfig

__all__ = [
    "GrpcReceiverConfig",
    "HttpReceiverConfig",
    "OtlpSourceConfig",
    "SpoolConfig",
    "split_endpoint",
]

_MIB = 1 << 20


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) as ``(host, port)``; ValueError if malformed."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{endpoint!r} is not host:port (e.g. 127.0.0.1:4318)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _Listener(ComponentConfig):
    endpoint: str
    tls: TlsConfig | None = Field(None, description="Serve over TLS.")

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        split_endpoint(value)
        return value


class HttpReceiverConfig(_Listener):
    """OTLP/HTTP: POST /v1/traces, /v1/metrics, /v1/logs (protobuf or JSON, gzip)."""

    endpoint: str = Field("127.0.0.1:4318", description="host:port to listen on.")
    max_body_bytes: int = Field(
        20 * _MIB, ge=1, description="Largest body accepted, after decompression (413 above)."
    )
    read_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="A connection whose request headers are not whole this long after it "
        "opened (or after the previous answer) is closed, and a body that sends nothing for "
        "this long is answered 408.",
    )


class GrpcReceiverConfig(_Listener):
    """OTLP/gRPC: the TraceService, MetricsService and LogsService Export calls."""

    endpoint: str = Field("127.0.0.1:4317", description="host:port to listen on.")
    max_message_bytes: int = Field(20 * _MIB, ge=1, description="Largest request message accepted.")


class SpoolConfig(ComponentConfig):
    """The persistent queue between the receivers and the pipeline."""

    path: str | None = Field(
        None,
        description="Spool directory (relative to the pipeline file); default "
        ".quiver/spool/<pipeline name>/otlp.",
    )
    max_bytes: int = Field(
        1 << 30, ge=1, description="Bytes held before the receivers push back (429)."
    )
    segment_bytes: int = Field(64 * _MIB, ge=4096, description="Size of one spool file.")
    fsync: bool = Field(
        True, description="fsync before acknowledging (off: faster, loses data on power loss)."
    )
    compression: Literal["lz4", "none"] = Field(
        "lz4",
        description="Compress the batches written to the spool (Arrow IPC LZ4): about a third "
        "of the bytes, which costs less CPU to write than the uncompressed batch does.",
    )


class OtlpSourceConfig(CheckpointOptions, ComponentConfig):
    """Receive OTLP traces, metrics and logs over gRPC and/or HTTP until stopped."""

    grpc: GrpcReceiverConfig | None = Field(None, description="Listen for OTLP/gRPC.")
    http: HttpReceiverConfig | None = Field(None, description="Listen for OTLP/HTTP.")
    arrow: ArrowReceiverConfig | None = Field(
        None,
        description="Also serve OTAP (OpenTelemetry Arrow) streams on the gRPC listener's port.",
    )
    auth: AuthConfig | None = Field(None, description="Require an API key or bearer token.")
    tenancy: TenancyConfig | None = Field(
        None,
        description="Resolve a tenant for every row (the tenant_id column), refuse requests "
        "without one, and limit each tenant's rate.",
    )
    signals: list[Signal] = Field(
        default_factory=lambda: list(SIGNALS),
        description="Signals accepted; others are answered 404 / UNIMPLEMENTED.",
    )
    spool: SpoolConfig = Field(
        default_factory=lambda: SpoolConfig.model_validate({}), description="The on-disk queue."
    )
    max_queued_batches: int = Field(
        64, ge=1, description="Requests waiting for the pipeline before pushing back (429)."
    )
    retry_after_seconds: int = Field(
        1, ge=1, description="Delay suggested to clients when pushing back."
    )
    stop_seconds: float = Field(
        10.0, gt=0, description="On stop, how long requests in flight may take to finish."
    )

    @model_validator(mode="after")
    def _listens(self) -> OtlpSourceConfig:
        if self.grpc is None and self.http is None:
            raise ValueError(
                "set grpc, http or both, e.g. {grpc: {endpoint: '127.0.0.1:4317'}, "
                "http: {endpoint: '127.0.0.1:4318'}}"
            )
        if self.arrow is not None and self.grpc is None:
            raise ValueError(
                "arrow (OTAP) is served on the gRPC listener: set grpc too, e.g. "
                "{grpc: {endpoint: '127.0.0.1:4317'}, arrow: {}}"
            )
        if not self.signals:
            raise ValueError("signals is empty: name traces, metrics and/or logs")
        if self.tenancy is not None:
            self.tenancy.check_auth(self.auth)
        elif self.auth is not None and self.auth.tenants():
            raise ValueError(
                "auth binds keys to tenants but tenancy is not set: add tenancy: {} (or "
                "tenancy: {sources: []} to take tenants from the keys only)"
            )
        return self
