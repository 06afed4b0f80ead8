"""The options of the OTAP receiver (the ``arrow`` section of the ``otlp`` source)."""

from __future__ import annotations

from pydantic import Field

from quiver.pipeline.component import ComponentConfig

__all__ = ["ArrowReceiverConfig"]


class ArrowReceiverConfig(ComponentConfig):
    """OTAP (OpenTelemetry Arrow) streams, served on the OTLP/gRPC listener's port.

    The ArrowTracesService, ArrowLogsService and ArrowMetricsService streams, as the
    Collector's ``otelarrow`` receiver serves them."""

    max_streams: int = Field(
        64,
        ge=1,
        description="OTAP streams open at once; a stream beyond them is refused "
        "RESOURCE_EXHAUSTED.",
    )
    max_stream_bytes: int = Field(
        128 << 20,
        ge=1 << 20,
        description="Dictionaries (delta dictionaries add up) and payload bytes not yet read "
        "that one stream's Arrow IPC streams may hold; a batch past it is INVALID_ARGUMENT "
        "and its payload type must begin a new IPC stream.",
    )
