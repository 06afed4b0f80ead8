"""Field paths: a column, or one key of a ``map<string, string>`` column such as the telemetry
layout's ``attributes`` and ``resource_attributes``.

```text
status_code                      a column
attributes["http.method"]        a key of the attributes map (single quotes work too)
attributes.http.method           the same, dotted
resource.service.name            a key of resource_attributes ("resource" and "scope" are
scope["otel.library"]            short for resource_attributes and scope_attributes)
labels["env"]                    a key of any other map column (brackets only)
```

Reading and writing are vectorised with ``pyarrow.compute``: a map key is read with
``map_lookup`` and written by rebuilding the map's flat key and value arrays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import AfterValidator

from quiver.pipeline.component import internal_column
from quiver.pipeline.processors.batch_sql import require_columns
from quiver.runtime.errors import PermanentError

__all__ = [
    "PATH_IN_TEXT",
    "FieldPath",
    "PathText",
    "delete_path",
    "parse_path",
    "read_path",
    "rewrite_paths",
    "with_paths",
    "write_path",
]

#: Short names of the telemetry layout's map columns.
_ALIASES = {
    "attributes": "attributes",
    "resource": "resource_attributes",
    "resource_attributes": "resource_attributes",
    "scope": "scope_attributes",
    "scope_attributes": "scope_attributes",
}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_BRACKET = r"\[\s*(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)')\s*\]"
_DOTTED = r"\.(?P<dot>[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)"
_ALIAS = "|".join(sorted(_ALIASES, key=len, reverse=True))

#: A map-key path inside an expression: ``name["key"]`` or ``attributes.dotted.key``.
PATH_IN_TEXT = re.compile(
    rf"(?<![A-Za-z0-9_.\"])(?:(?P<col>{_NAME}){_BRACKET}|(?P<alias>{_ALIAS}){_DOTTED})"
)
_WHOLE = re.compile(rf"\s*(?:(?P<col>{_NAME})\s*{_BRACKET}|(?P<alias>{_ALIAS}){_DOTTED})\s*")


@dataclass(frozen=True)
class FieldPath:
    """A column (``key`` None) or one key of a map column."""

    column: str
    key: str | None = None

    def __str__(self) -> str:
        return self.column if self.key is None else f'{self.column}["{self.key}"]'


def _from_match(m: re.Match[str]) -> FieldPath:
    if m.group("col") is not None:
        col = m.group("col")
        key = m.group("dq") if m.group("dq") is not None else m.group("sq")
        return FieldPath(_ALIASES.get(col, col), key)
    return FieldPath(_ALIASES[m.group("alias")], m.group("dot"))


def parse_path(text: str) -> FieldPath:
    """The path written as ``text``; ValueError says what is wrong with a malformed one."""
    if not text or not text.strip():
        raise ValueError('empty field path; write a column name or attributes["key"]')
    m = _WHOLE.fullmatch(text)
    if m is not None:
        return _from_match(m)
    if "[" in text or "]" in text:
        raise ValueError(
            f'malformed field path {text!r}; write a map key as column["key"], '
            'e.g. attributes["http.method"]'
        )
    head = text.split(".", 1)[0]
    if "." in text and head in _ALIASES and text.endswith("."):
        raise ValueError(f"field path {text!r} has no key after the dot")
    return FieldPath(text.strip())


def _checked(text: str) -> str:
    parse_path(text)
    return text


#: A config option holding a field path: refused at load time when malformed.
PathText = Annotated[str, AfterValidator(_checked)]


def _map_column(batch: pa.RecordBatch, path: FieldPath) -> pa.MapArray:
    require_columns(batch.schema, [path.column])
    column = batch.column(path.column)
    if not pa.types.is_map(column.type):
        raise PermanentError.one(
            f"field path {path} reads a key of column {path.column!r}, which is "
            f"{column.type}, not a map",
            path.column,
            f"write just {path.column!r} for the column itself",
        )
    assert isinstance(column, pa.MapArray)
    return column


def read_path(batch: pa.RecordBatch, path: FieldPath) -> pa.Array:
    """The values at ``path``, one per row (null where a map lacks the key)."""
    if path.key is None:
        require_columns(batch.schema, [path.column])
        return batch.column(path.column)
    column = _map_column(batch, path)
    return pc.map_lookup(column, pa.scalar(path.key, column.type.key_type), "first")


def _flat(column: pa.MapArray) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """Per-entry row index, keys and values of a (possibly sliced) map array."""
    offsets = column.offsets.to_numpy(zero_copy_only=False)
    start, end = int(offsets[0]), int(offsets[-1])
    rows = np.repeat(np.arange(len(column), dtype=np.int64), np.diff(offsets))
    return rows, column.keys.slice(start, end - start), column.items.slice(start, end - start)


def _rebuild(
    column: pa.MapArray, rows: np.ndarray, keys: pa.Array, items: pa.Array, touched: np.ndarray
) -> pa.MapArray:
    order = np.argsort(rows, kind="stable")
    counts = np.bincount(rows, minlength=len(column)) if len(rows) else np.zeros(len(column))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    valid = column.is_valid().to_numpy(zero_copy_only=False) | touched
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()),
        keys.take(pa.array(order)),
        items.take(pa.array(order)),
        type=column.type,
        mask=pa.array(~valid),
    )


def _replace(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    index = batch.schema.get_field_index(name)
    if index < 0:
        return batch.append_column(name, values)
    return batch.set_column(index, pa.field(name, values.type), values)


def write_path(batch: pa.RecordBatch, path: FieldPath, values: pa.Array) -> pa.RecordBatch:
    """``batch`` with ``values`` at ``path``. A map key is set where the value is not null
    (other rows keep what they had); a missing column is added."""
    if path.key is None:
        return _replace(batch, path.column, values)
    column = _map_column(batch, path)
    values = values.cast(column.type.item_type)
    rows, keys, items = _flat(column)
    keep = pc.invert(pc.fill_null(pc.equal(keys, path.key), False))
    setting = values.is_valid().to_numpy(zero_copy_only=False)
    # entries of other keys stay; the key's old entry stays only where no new value is given
    keep_np = keep.to_numpy(zero_copy_only=False) | ~setting[rows] if len(rows) else np.array([])
    keep_np = keep_np.astype(bool)
    new_rows = np.flatnonzero(setting)
    all_rows = np.concatenate([rows[keep_np], new_rows])
    all_keys = pa.concat_arrays(
        [keys.filter(pa.array(keep_np)), pa.array([path.key] * len(new_rows), keys.type)]
    )
    all_items = pa.concat_arrays([items.filter(pa.array(keep_np)), values.filter(setting)])
    rebuilt = _rebuild(column, all_rows, all_keys, all_items, setting)
    return _replace(batch, path.column, rebuilt)


def delete_path(batch: pa.RecordBatch, path: FieldPath) -> pa.RecordBatch:
    """``batch`` without ``path``: the column dropped, or the key removed from every map."""
    if path.key is None:
        return batch.drop_columns([path.column]) if path.column in batch.schema.names else batch
    column = _map_column(batch, path)
    rows, keys, items = _flat(column)
    keep = pc.invert(pc.fill_null(pc.equal(keys, path.key), False))
    keep_np = keep.to_numpy(zero_copy_only=False).astype(bool)
    rebuilt = _rebuild(
        column,
        rows[keep_np],
        keys.filter(keep),
        items.filter(keep),
        np.zeros(len(column), dtype=bool),
    )
    return _replace(batch, path.column, rebuilt)


#: Prefix of the columns holding the values of the map-key paths an expression names.
_PATH_PREFIX = internal_column("path")

#: A SQL string literal, or a map-key path: scanned together, so a literal is skipped whole.
_LITERAL_OR_PATH = re.compile(rf"(?P<lit>'(?:[^']|'')*')|{PATH_IN_TEXT.pattern}")


def rewrite_paths(expression: str, prefix: str = _PATH_PREFIX) -> tuple[str, list[FieldPath]]:
    """``expression`` with every map-key path outside string literals replaced by a column
    name ``prefix0``, ``prefix1``...; and the paths, in that order (see :func:`with_paths`)."""
    paths: list[FieldPath] = []

    def swap(m: re.Match[str]) -> str:
        if m.group("lit") is not None:
            return m.group(0)
        path = _from_match(m)
        if path not in paths:
            paths.append(path)
        return f'"{prefix}{paths.index(path)}"'

    return _LITERAL_OR_PATH.sub(swap, expression), paths


def with_paths(
    batch: pa.RecordBatch, paths: list[FieldPath], prefix: str = _PATH_PREFIX
) -> pa.RecordBatch:
    """``batch`` with one extra column per path, named as :func:`rewrite_paths` names them."""
    for i, path in enumerate(paths):
        batch = batch.append_column(f"{prefix}{i}", read_path(batch, path))
    return batch
