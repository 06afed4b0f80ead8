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
