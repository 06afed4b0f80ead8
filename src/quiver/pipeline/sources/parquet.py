"""The ``parquet`` source: Parquet files streamed row group by row group.

Only the columns listed in ``columns`` are read (column projection happens in the reader, so
unread columns cost nothing), and batches are produced as the row groups are decoded: memory
holds about one row group. Each row carries its 1-based record number within its file in
the line column. Files of a glob must share a schema; a later file whose columns can be cast to the
first file's types (e.g. int32 to int64) is cast.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from quiver.pipeline.component import (
    ByteCounting,
    ComponentConfig,
    FileReading,
    RowRejecting,
    source,
)
from quiver.pipeline.line_numbers import numbered
from quiver.pipeline.paths import STDIO, display_path
from quiver.pipeline.sources.file_source import FileSource
from quiver.pipeline.streams import native_path, open_input
from quiver.runtime.errors import PermanentError

__all__ = ["ParquetSource", "ParquetSourceConfig"]


class ParquetSourceConfig(ComponentConfig):
    """Read Parquet files."""

    path: str | list[str] = Field(
        description="File, glob or list of them, read in sorted order; `-` reads standard "
        "input (buffered in memory, as Parquet needs random access)."
    )
    columns: list[str] | None = Field(
        None, description="Columns to read (all when unset); the others are never decoded."
    )
    batch_rows: int = Field(65_536, ge=1, description="Most rows per batch handed on.")


@source("parquet", config=ParquetSourceConfig)
class ParquetSource(FileSource, FileReading, RowRejecting, ByteCounting):
    """Parquet files, streamed row group by row group with column projection."""

    def __init__(self, cfg: ParquetSourceConfig) -> None:
        super().__init__(cfg.path)
        self.cfg = cfg

    def _open(self, path: str) -> pq.ParquetFile:
        try:
            if path == STDIO:
                stream = open_input(path, "none")
                return pq.ParquetFile(pa.BufferReader(stream.read()))
            native = native_path(path)  # ParquetFile takes a name only as str
            source = native if isinstance(native, str) else pa.OSFile(native, "rb")
            return pq.ParquetFile(source, memory_map=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise PermanentError.one(
                f"not a readable Parquet file: {exc}",
                display_path(path),
                "check that the file is Parquet and complete",
            ) from exc

    def _read_path(self, path: str) -> Iterator[pa.RecordBatch]:
        parquet = self._open(path)
        try:
            names = parquet.schema_arrow.names
            unknown = [c for c in self.cfg.columns or [] if c not in names]
            if unknown:
                raise PermanentError.one(
                    f"columns {unknown} are not in the file",
                    display_path(path),
                    f"the file has {names}",
                )
            line = 1
            restore = _coerced_types(parquet)
            for batch in _decoded(parquet, self.cfg, path):
                batch = self._like_first_file(_restored(batch, restore), path)
                yield self._with_valid_text(numbered(batch, line), path)
                line += batch.num_rows
            if line == 1:  # no rows, but the columns are known
                schema = parquet.schema_arrow
                if self.cfg.columns is not None:
                    schema = pa.schema([schema.field(c) for c in self.cfg.columns])
                yield numbered(self._like_first_file(_restored(_no_rows(schema), restore), path), 1)
            if path != STDIO:
                self.bytes_read += os.path.getsize(path)
        finally:
            parquet.close()


def _decoded(
    parquet: pq.ParquetFile, cfg: ParquetSourceConfig, path: str
) -> Iterator[pa.RecordBatch]:
    """The batches of ``parquet``; data that cannot be decoded (a damaged page, a file cut
    short after its footer was written) is a PermanentError naming the file and the row group
    at fault with its records, where Arrow would raise a bare OSError."""
    batches = parquet.iter_batches(batch_size=cfg.batch_rows, columns=cfg.columns, use_threads=True)
    done = 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowException, OSError) as exc:
            raise PermanentError.one(
                f"{_damaged_part(parquet, cfg.columns, done)} cannot be decoded: {exc}",
                display_path(path),
                "the file is damaged: write it again from its source",
            ) from exc
        done += batch.num_rows
        yield batch


def _damaged_part(parquet: pq.ParquetFile, columns: list[str] | None, done: int) -> str:
    """Which part of ``parquet`` fails to decode, its first ``done`` records having been read:
    the first row group after them that does not read on its own, with its records."""
    meta = parquet.metadata
    first = 1
    for group in range(meta.num_row_groups):
        rows = meta.row_group(group).num_rows
        if first + rows > done + 1:
            try:
                parquet.read_row_group(group, columns=columns)
            except (pa.ArrowException, OSError):
                return (
                    f"row group {group + 1} of {meta.num_row_groups} (records {first} to "
                    f"{first + rows - 1})"
                )
        first += rows
    return f"the records from {done + 1} on"


def _coerced_types(parquet: pq.ParquetFile) -> dict[str, pa.DataType]:
    """The Arrow types a writer stored (``ARROW:schema``) for the columns Parquet had to hold
    in another unit: ``timestamp[s]`` as milliseconds, ``date64`` as days, ``time32[s]`` as
    milliseconds. Those columns are cast back, so what a Parquet sink wrote reads back with
    its own types."""
    metadata = parquet.metadata.metadata or {}
    stored_text = metadata.get(b"ARROW:schema")
    if stored_text is None:
        return {}
    try:
        stored = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(stored_text)))
    except (ValueError, pa.ArrowInvalid):
        return {}  # not a schema this reader understands: keep the file's types
    read = parquet.schema_arrow
    out: dict[str, pa.DataType] = {}
    for f in stored:
        at = read.get_field_index(f.name)
        if at < 0:
            continue
        kind = read.field(at).type
        if kind != f.type and _same_kind(kind, f.type):
            out[f.name] = f.type
    return out


def _same_kind(read: pa.DataType, stored: pa.DataType) -> bool:
    """Whether ``read`` is ``stored`` held in Parquet's coarser or finer unit."""
    for kind in (pa.types.is_timestamp, pa.types.is_date, pa.types.is_time):
        if kind(read) and kind(stored):
            return not pa.types.is_timestamp(read) or read.tz == stored.tz
    return False


def _restored(batch: pa.RecordBatch, types: dict[str, pa.DataType]) -> pa.RecordBatch:
    """``batch`` with the columns of ``types`` cast back to them (exact: a value that would
    change keeps the file's type)."""
    for name, kind in types.items():
        at = batch.schema.get_field_index(name)
        if at < 0:
            continue
        try:
            column = batch.column(at).cast(kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        batch = batch.set_column(at, name, column)
    return batch


def _no_rows(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)
