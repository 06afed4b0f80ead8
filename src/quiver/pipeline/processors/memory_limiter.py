"""The ``memory_limiter`` processor: hold the pipeline back while the process uses too much
memory.

```yaml
- memory_limiter: {limit_mib: 1024, spike_mib: 256, on_limit: wait}
```
Before handing a batch on, the processor reads the process's resident memory. Above
``limit_mib`` it first collects garbage; if that is not enough, ``on_limit: wait`` holds the
batch until memory is back under ``limit_mib - spike_mib`` (the pipeline stalls, so a receiver
in front of it stops taking data and tells its clients to retry later), and ``on_limit: drop``
drops the batch, counting the rows in the run's log. Put it first, right after the source.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import time
from collections.abc import Callable
from typing import Literal

import pyarrow as pa
from pydantic import Field, model_validator

from quiver.pipeline.component import (
    ComponentConfig,
    ProcessorOutput,
    RunContext,
    processor,
)

__all__ = ["MemoryLimiterConfig", "MemoryLimiterProcessor", "resident_bytes"]

_MIB = 1024 * 1024


def resident_bytes() -> int:
    """The resident memory of this process (its peak where the current figure is not known)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class MemoryLimiterConfig(ComponentConfig):
    """Hold back or drop batches while memory is above a limit."""

    limit_mib: int = Field(gt=0, description="Resident memory (MiB) above which it acts.")
    spike_mib: int = Field(
        default=0, ge=0, description="`wait` resumes once memory is this far under the limit."
    )
    on_limit: Literal["wait", "drop"] = Field(
        default="wait", description="`wait` until memory goes down, or `drop` the batch."
    )
    check_seconds: float = Field(
        default=0.1, gt=0, description="While waiting: how often memory is read again."
    )

    @model_validator(mode="after")
    def _spike(self) -> MemoryLimiterConfig:
        if self.spike_mib >= self.limit_mib:
            raise ValueError("`spike_mib` must be below `limit_mib`")
        return self


@processor("memory_limiter", config=MemoryLimiterConfig)
class MemoryLimiterProcessor:
    """Hold back or drop batches while memory is above a limit."""

    def __init__(self, cfg: MemoryLimiterConfig, meter: Callable[[], int] = resident_bytes) -> None:
        self.cfg = cfg
        self._meter = meter
        self.dropped_rows = 0

    def _over(self, limit_mib: int) -> bool:
        return self._meter() > limit_mib * _MIB

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        if not self._over(self.cfg.limit_mib):
            return ProcessorOutput(batch)
        gc.collect()
        if not self._over(self.cfg.limit_mib):
            return ProcessorOutput(batch)
        if self.cfg.on_limit == "drop":
            self.dropped_rows += batch.num_rows
            ctx.log(
                f"memory_limiter: dropped {batch.num_rows} row(s), memory above "
                f"{self.cfg.limit_mib} MiB ({self.dropped_rows} in all)",
                "warning",
            )
            return ProcessorOutput(None)
        resume = self.cfg.limit_mib - self.cfg.spike_mib
        ctx.log(f"memory_limiter: memory above {self.cfg.limit_mib} MiB, holding input", "warning")
        started = time.monotonic()
        while self._over(resume):
            await asyncio.sleep(self.cfg.check_seconds)
        waited = time.monotonic() - started
        ctx.log(f"memory_limiter: resumed after {waited:.1f}s", "info")
        return ProcessorOutput(batch)
