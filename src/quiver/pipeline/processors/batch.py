"""The ``batch`` processor: gather small batches into larger ones before the next steps.

```yaml
- batch: {size: 8192, timeout: 2}
```
A receiver hands on a few spans per request; sinks write far more cheaply in batches of
thousands of rows. The rows held are handed on, as one batch and in their order, once
``size`` rows are held, when a batch arrives ``timeout`` seconds or more after the oldest row
held came in, and at the end of the input (a stopped receiver ends its input too). A batch
already larger than ``size`` passes at once, whole.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import (
    ComponentConfig,
    Flushing,
    ProcessorOutput,
    RunContext,
    processor,
)
from quiver.pipeline.processors.batch_sql import table_to_batch

__all__ = ["BatchConfig", "BatchProcessor"]


class BatchConfig(ComponentConfig):
    """Gather rows into larger batches, by count and age."""

    size: int = Field(default=8192, gt=0, description="Rows held before they are handed on.")
    timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds after which the rows held are handed on, however few (checked "
        "as batches arrive, and at the end of the input).",
    )


@processor("batch", config=BatchConfig)
class BatchProcessor(Flushing):
    """Gather rows into larger batches, by count and age."""

    def __init__(self, cfg: BatchConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self._held: list[pa.RecordBatch] = []
        self._rows = 0
        self._since: float | None = None
        self._clock = clock

    def _take(self) -> pa.RecordBatch | None:
        if not self._held:
            return None
        batch = table_to_batch(pa.Table.from_batches(self._held))
        self._held, self._rows, self._since = [], 0, None
        return batch

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        if batch.num_rows:
            if self._since is None:
                self._since = self._clock()
            self._held.append(batch)
            self._rows += batch.num_rows
        expired = (
            self.cfg.timeout is not None
            and self._since is not None
            and self._clock() - self._since >= self.cfg.timeout
        )
        if self._rows >= self.cfg.size or expired:
            return ProcessorOutput(self._take())
        return ProcessorOutput(None)

    async def flush(self, ctx: RunContext) -> AsyncIterator[ProcessorOutput]:
        del ctx
        batch = self._take()
        if batch is not None:
            yield ProcessorOutput(batch)
