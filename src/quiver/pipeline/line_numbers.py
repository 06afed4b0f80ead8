"""The line column (``LINE_COLUMN``): numbering the rows a source reads, and leaving it out
of what a sink writes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from quiver.pipeline.component import LINE_COLUMN

__all__ = ["numbered"]


def numbered(batch: pa.RecordBatch, first: int) -> pa.RecordBatch:
    """``batch`` with the line column numbering its rows from ``first``."""
    numbers = np.arange(first, first + batch.num_rows, dtype=np.int64)
    return batch.append_column(LINE_COLUMN, pa.array(numbers))
