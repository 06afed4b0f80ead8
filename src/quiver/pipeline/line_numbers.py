"""The line column (``LINE_COLUMN``): numbering the rows a source reads, and leaving it out
of what a sink writes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from quiver.pipeline.arrow_build import int64_array
from quiver.pipeline.component import LINE_COLUMN

__all__ = ["line_column", "line_feeds", "numbered"]


def numbered(batch: pa.RecordBatch, first: int) -> pa.RecordBatch:
    """``batch`` with the line column numbering its rows from ``first``."""
    numbers = np.arange(first, first + batch.num_rows, dtype=np.int64)
    return batch.append_column(LINE_COLUMN, line_column(numbers))


def line_column(numbers: np.ndarray) -> pa.Array:
    """Line numbers as the line column's int64 array, sharing their buffer (``pa.array`` of
    an ndarray would import ``numpy.ma`` on first use, tens of milliseconds)."""
    return int64_array(numbers)


def line_feeds(data: bytes | bytearray, end: int) -> int:
    """How many LF bytes ``data[:end]`` holds. NumPy counts a block of a few megabytes three
    to four times as fast as ``bytes.count``, which matters once per block of every file."""
    if end < 1 << 16:
        return data.count(b"\n", 0, end)
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8, count=end) == 10))
