"""The line column (``LINE_COLUMN``): numbering the rows a source reads, and leaving it out
of what a sink writes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from quiver.pipeline.component import LINE_COLUMN

__all__ = ["line_column", "numbered"]


def numbered(batch: pa.RecordBatch, first: int) -> pa.RecordBatch:
    """``batch`` with the line column numbering its rows from ``first``."""
    numbers = np.arange(first, first + batch.num_rows, dtype=np.int64)
    return batch.append_column(LINE_COLUMN, line_column(numbers))


def line_column(numbers: np.ndarray) -> pa.Array:
    """Line numbers as the line column's int64 array, sharing their buffer (``pa.array`` of
    an ndarray would import ``numpy.ma`` on first use, tens of milliseconds)."""
    numbers = np.ascontiguousarray(numbers, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), numbers.size, [None, pa.py_buffer(numbers)])
