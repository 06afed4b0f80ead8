"""The ``__line`` column: numbering the rows a source reads, and leaving it out of what a
sink writes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from quiver.pipeline.component import LINE_COLUMN

__all__ = ["drop_line_column", "numbered"]


def drop_line_column(data: Any) -> Any:
    """``data`` (a RecordBatch, Table or Schema) without the ``__line`` column."""
    if isinstance(data, pa.Schema):
        index = data.get_field_index(LINE_COLUMN)
        return data if index < 0 else data.remove(index)
    index = data.schema.get_field_index(LINE_COLUMN)
    return data if index < 0 else data.remove_column(index)


def numbered(batch: pa.RecordBatch, first: int) -> pa.RecordBatch:
    """``batch`` with the ``__line`` column numbering its rows from ``first``."""
    numbers = np.arange(first, first + batch.num_rows, dtype=np.int64)
    return batch.append_column(LINE_COLUMN, pa.array(numbers))
