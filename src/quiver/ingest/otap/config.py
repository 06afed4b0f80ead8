"""The options of the OTAP receiver (the ``arrow`` section of the ``otlp`` source)."""

from __future__ import annotations

from pydantic import Field

from quiver.pipeline.component import ComponentConfig

__all__ = ["ArrowReceiverConfig"]


class ArrowReceiverConfig(ComponentConfig):
    """OTAP (OpenTelemetry Arrow Protocol): the ArrowTracesService, ArrowLogsService and
    ArrowMetricsService streams, served on the OTLP/gRPC listener's port as the Collector's
    ``otelarrow`` receiver does."""

    max_streams: int = Field(
        64,
        ge=1,
        description="OTAP streams open at once; a stream beyond them is refused "
        "RESOURCE_EXHAUSTED.",
    )
