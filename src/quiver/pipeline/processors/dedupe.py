"""The ``dedupe`` processor: drop rows whose key columns repeat an earlier (or later) row.

```yaml
- dedupe: {keys: [customer_id, order_id]}              # keep the first row of each key
- dedupe: {keys: [customer_id], keep: last}            # keep the last one
```

Keys are remembered as 64-bit hashes (DuckDB's ``hash(k1, k2, ...)``) in sorted numpy arrays
merged like a log-structured tree: **8 bytes per distinct key**, so the default bound of
``max_keys: 10_000_000`` keeps at most ~80 MB of key state; the run fails with a clear error
when more distinct keys arrive (raise ``max_keys`` if memory allows). NULL keys compare equal.
Two different keys collide with probability ~n²/2⁶⁵ (about 3 in a million for 10M keys).

``keep: first`` streams: each row is emitted as soon as it is seen the first time.
``keep: last`` must see the whole input first: it spools the batches to a temporary Arrow
file on disk (not memory), keeps 16 bytes per row in memory (hash and position), and emits
the last row of each key, in input order, when the input ends.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
from pydantic import Field

from quiver.pipeline.component import (
    Closing,
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Flushing,
    ProcessorOutput,
    RunContext,
    processor,
)
from quiver.pipeline.processors.batch_sql import BatchSql, quote_ident, require_columns
from quiver.runtime.errors import PermanentError

__all__ = ["DedupeConfig", "DedupeProcessor", "HashSet"]


class DedupeConfig(ComponentConfig):
    """Drop rows with repeated keys."""

    keys: list[str] = Field(min_length=1, description="Columns that together identify a row.")
    keep: Literal["first", "last"] = Field(default="first", description="Which duplicate stays.")
    max_keys: int = Field(
        default=10_000_000,
        ge=1,
        description="Most distinct keys remembered (8 bytes each); more fails the run.",
    )


class HashSet:
    """A set of uint64 hashes in sorted arrays of doubling sizes (amortised O(log n) insert)."""

    def __init__(self) -> None:
        self.levels: list[np.ndarray[Any, np.dtype[np.uint64]]] = []
        self.size = 0

    def contains(self, values: np.ndarray[Any, np.dtype[np.uint64]]) -> np.ndarray[Any, Any]:
        found = np.zeros(len(values), dtype=bool)
        for level in self.levels:
            idx = np.searchsorted(level, values)
            idx[idx == len(level)] = 0
            found |= level[idx] == values
        return found

    def add(self, values: np.ndarray[Any, np.dtype[np.uint64]]) -> None:
        """Add hashes known to be absent and unique."""
        new = np.sort(values)
        self.size += len(new)
        while self.levels and len(self.levels[-1]) <= len(new):
            new = np.sort(np.concatenate([self.levels.pop(), new]), kind="mergesort")
        self.levels.append(new)


@processor("dedupe", config=DedupeConfig)
class DedupeProcessor(Flushing, ColumnBound, Closing):
    """Drop rows whose key columns repeat those of another row."""

    def __init__(self, cfg: DedupeConfig) -> None:
        self.cfg = cfg
        self._sql = BatchSql("dedupe")
        self._seen = HashSet()
        self._query = f"SELECT hash({', '.join(quote_ident(k) for k in cfg.keys)}) AS h FROM input"
        self._spool: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._writer: ipc.RecordBatchStreamWriter | None = None
        self._hashes: list[np.ndarray[Any, np.dtype[np.uint64]]] = []

    def columns_used(self) -> list[ColumnUse]:
        return [ColumnUse(key, ("keys", i)) for i, key in enumerate(self.cfg.keys)]

    def _hash(self, batch: pa.RecordBatch) -> np.ndarray[Any, np.dtype[np.uint64]]:
        require_columns(batch.schema, self.cfg.keys)
        column = self._sql.run(batch, self._query).column("h")
        return np.asarray(column.to_numpy(), dtype=np.uint64)

    def _first(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        hashes = self._hash(batch)
        _, first_idx = np.unique(hashes, return_index=True)
        first_idx.sort()
        candidates = hashes[first_idx]
        fresh = ~self._seen.contains(candidates)
        keep_idx = first_idx[fresh]
        if self._seen.size + len(keep_idx) > self.cfg.max_keys:
            raise PermanentError.one(
                f"more than max_keys={self.cfg.max_keys} distinct keys",
                "",
                "raise dedupe.max_keys (8 bytes of memory per key) or dedupe on fewer rows",
            )
        self._seen.add(candidates[fresh])
        if len(keep_idx) == batch.num_rows:
            return batch
        return batch.take(pa.array(keep_idx))

    def _spool_batch(self, batch: pa.RecordBatch) -> None:
        hashes = self._hash(batch)
        if self._writer is None:
            self._spool = tempfile.NamedTemporaryFile(prefix="quiver-dedupe-", suffix=".arrow")  # noqa: SIM115
            self._writer = ipc.new_stream(self._spool, batch.schema)
        self._writer.write_batch(batch)
        self._hashes.append(hashes)
        if sum(len(h) for h in self._hashes) > self.cfg.max_keys:
            raise PermanentError.one(
                f"keep: last holds more than max_keys={self.cfg.max_keys} rows",
                "",
                "raise dedupe.max_keys (16 bytes of memory per row with keep: last)",
            )

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        if self.cfg.keep == "first":
            return ProcessorOutput(await asyncio.to_thread(self._first, batch))
        await asyncio.to_thread(self._spool_batch, batch)
        return ProcessorOutput(None)

    async def flush(self, ctx: RunContext) -> AsyncIterator[ProcessorOutput]:
        """With ``keep: last``: the kept rows, one spooled batch at a time, in input order."""
        del ctx
        if self.cfg.keep == "first" or self._writer is None or self._spool is None:
            return
        self._writer.close()
        self._spool.flush()
        keep = await asyncio.to_thread(self._last_mask)
        offset = 0
        try:
            with pa.OSFile(self._spool.name, "rb") as fh:
                for batch in ipc.open_stream(fh):
                    mask = keep[offset : offset + batch.num_rows]
                    offset += batch.num_rows
                    if mask.any():
                        yield ProcessorOutput(batch.filter(pa.array(mask)))
        finally:
            self.close()

    def _last_mask(self) -> np.ndarray[Any, Any]:
        hashes = np.concatenate(self._hashes)
        self._hashes.clear()
        _, idx_rev = np.unique(hashes[::-1], return_index=True)
        keep = np.zeros(len(hashes), dtype=bool)
        keep[len(hashes) - 1 - idx_rev] = True
        return keep

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._writer = None
