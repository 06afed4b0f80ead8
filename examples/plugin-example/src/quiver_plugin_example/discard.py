"""The ``discard`` sink: count rows and throw them away (for benchmarks and dry plumbing)."""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import ComponentConfig, RunContext, sink

__all__ = ["DiscardConfig", "DiscardSink"]


class DiscardConfig(ComponentConfig):
    """Nothing to set but whether to log the count."""

    log_count: bool = Field(True, description="Log the number of rows at commit.")


@sink("discard", config=DiscardConfig)
class DiscardSink:
    """Counts rows and keeps none of them."""

    def __init__(self, cfg: DiscardConfig) -> None:
        self.cfg = cfg
        self.rows = 0
        self.ctx: RunContext | None = None

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        self.ctx = ctx

    async def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows

    async def commit(self) -> None:
        if self.cfg.log_count and self.ctx is not None:
            self.ctx.log(f"discard: {self.rows} rows", "info")

    async def abort(self) -> None:
        self.rows = 0
