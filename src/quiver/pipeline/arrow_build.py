"""Arrow values built from their bytes, not converted from Python objects.

pyarrow's conversion of Python and NumPy values (``pa.scalar("x")``, ``pa.array(ndarray)``)
imports pandas, when it is installed, to check for pandas objects: a few hundred
milliseconds that a run which never touches pandas should not pay. These builders hand
pyarrow the buffers directly.
"""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa

__all__ = ["empty_batch", "int64_array", "text_array", "text_scalar"]


def text_scalar(value: str) -> pa.Scalar:
    """A ``string`` scalar holding ``value``."""
    data = value.encode()
    offsets = struct.pack("<ii", 0, len(data))
    array = pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    return array[0]


def int64_array(values: np.ndarray) -> pa.Array:
    """An ``int64`` array of a NumPy array's values (no nulls)."""
    data = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A batch of ``schema`` with no rows."""
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


def text_array(values: list[str]) -> pa.Array:
    """A ``string`` array of ``values`` (no nulls)."""
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    data = b"".join(encoded)
    return pa.Array.from_buffers(
        pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
