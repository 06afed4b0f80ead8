"""Arrow's compute functions, with ``pyarrow.compute`` imported when a run first needs it.

Importing ``pyarrow.compute`` writes a Python function, with its signature and docstring, for
each of Arrow's several hundred kernels: about 26 ms of CPU, close to a tenth of the start of
a short ``quiver run``. A module reads ``kernels.NAME`` (imported ``as pc``) where it would
read ``pyarrow.compute.NAME``, and gets ``pyarrow.compute``'s own function, imported at its
first use. The kernels that a CSV -> CSV run calls for every batch, and those of the
JavaScript step's hand-over, are defined here instead, calling Arrow's function by name
through ``call_function`` of ``pyarrow._compute`` (the extension that ``pyarrow.compute``
itself wraps, 4 ms to load), with the same results, so that such a run never imports
``pyarrow.compute``.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

try:
    from pyarrow._compute import (
        CastOptions,
        ReplaceSliceOptions,
        ReplaceSubstringOptions,
        call_function,
    )
except ImportError:  # pragma: no cover  (where a pyarrow release keeps them elsewhere)
    from pyarrow.compute import (
        CastOptions,
        ReplaceSliceOptions,
        ReplaceSubstringOptions,
        call_function,
    )

__all__ = [
    "binary_join_element_wise",
    "binary_replace_slice",
    "cast",
    "fill_null",
    "if_else",
    "min_max",
    "replace_substring",
    "utf8_length",
]


def cast(arr: Any, target_type: pa.DataType, safe: bool | None = None) -> Any:
    """``arr`` as ``target_type``; ``safe=False`` lets values overflow or lose precision
    (``pyarrow.compute.cast``)."""
    options = CastOptions.unsafe(target_type) if safe is False else CastOptions.safe(target_type)
    return call_function("cast", [arr], options)


def fill_null(values: Any, fill_value: Any) -> Any:
    """Each null of ``values`` replaced by ``fill_value`` (``pyarrow.compute.fill_null``)."""
    if not isinstance(fill_value, pa.Array | pa.ChunkedArray | pa.Scalar):
        fill_value = pa.scalar(fill_value, type=values.type)
    elif values.type != fill_value.type:
        fill_value = pa.scalar(fill_value.as_py(), type=values.type)
    return call_function("coalesce", [values, fill_value])


def if_else(cond: Any, left: Any, right: Any) -> Any:
    """``left`` where ``cond`` is true, ``right`` where false (``pyarrow.compute.if_else``)."""
    return call_function("if_else", [cond, left, right])


def replace_substring(
    values: Any, pattern: str, replacement: str, *, max_replacements: int | None = None
) -> Any:
    """``pattern`` replaced by ``replacement`` in each value
    (``pyarrow.compute.replace_substring``)."""
    options = ReplaceSubstringOptions(pattern, replacement, max_replacements=max_replacements)
    return call_function("replace_substring", [values], options)


def binary_replace_slice(values: Any, *, start: int, stop: int, replacement: str) -> Any:
    """The bytes from ``start`` to ``stop`` of each value replaced by ``replacement``
    (``pyarrow.compute.binary_replace_slice``)."""
    options = ReplaceSliceOptions(start, stop, replacement)
    return call_function("binary_replace_slice", [values], options)


def binary_join_element_wise(*strings: Any) -> Any:
    """The values of each row joined with the separator, the last argument
    (``pyarrow.compute.binary_join_element_wise``; a null anywhere gives null)."""
    return call_function("binary_join_element_wise", list(strings))


def utf8_length(strings: Any) -> Any:
    """Each value's length in characters (``pyarrow.compute.utf8_length``)."""
    return call_function("utf8_length", [strings])


def min_max(array: Any) -> Any:
    """The least and greatest value, as a struct scalar of ``min`` and ``max``, nulls skipped
    (``pyarrow.compute.min_max``)."""
    return call_function("min_max", [array])


def __getattr__(name: str) -> Any:
    """Any other name: ``pyarrow.compute``'s own, which is imported now if it was not yet."""
    if name.startswith("__"):
        raise AttributeError(name)
    import pyarrow.compute

    return getattr(pyarrow.compute, name)
