"""The ``arrow`` source: Arrow IPC files (``.arrow``, ``.feather`` v2) and streams (``.arrows``).

The format is recognised from the data (a file starts with ``ARROW1``), so ``format`` rarely
needs setting. Files are memory-mapped and read batch by batch; streams (also compressed ones,
``.arrows.zst``, and standard input) are read as they arrive. ``columns`` keeps only the named
columns. Each row carries its 1-based record number within its file in the line column.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from typing import Literal

import pyarrow as pa
import pyarrow.ipc as ipc
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
from quiver.pipeline.streams import Compression, native_path, open_input
from quiver.runtime.errors import PermanentError

__all__ = ["ArrowIpcSource", "ArrowIpcSourceConfig"]

_MAGIC = b"ARROW1"


class ArrowIpcSourceConfig(ComponentConfig):
    """Read Arrow IPC files or streams."""

    path: str | list[str] = Field(
        description="File, glob or list of them, read in sorted order; `-` reads a stream "
        "from standard input."
    )
    format: Literal["auto", "file", "stream"] = Field(
        "auto", description="auto recognises the format from the data."
    )
    columns: list[str] | None = Field(None, description="Columns to keep (all when unset).")
    compression: Compression = Field(
        "auto",
        description="Whole-stream compression: auto (from the extension: .gz, .zst, .bz2), "
        "none, gzip, zstd, bz2. Buffer compression inside the format is always handled.",
    )


@source("arrow", config=ArrowIpcSourceConfig)
class ArrowIpcSource(FileSource, FileReading, RowRejecting, ByteCounting):
    """Arrow IPC files and streams, read batch by batch."""

    def __init__(self, cfg: ArrowIpcSourceConfig) -> None:
        super().__init__(cfg.path)
        self.cfg = cfg

    def _batches(self, path: str) -> Generator[pa.RecordBatch, None, pa.Schema]:
        """The batches of ``path``; returns its schema."""
        stream = open_input(path, self.cfg.compression)
        batches, records = 0, 0  # read so far
        try:
            fmt = self.cfg.format
            compressed = isinstance(stream, pa.CompressedInputStream)
            if fmt == "auto":
                if path == STDIO or compressed:
                    fmt = "stream"
                else:
                    fmt = "file" if stream.read(len(_MAGIC)) == _MAGIC else "stream"
                    stream.seek(0)
            if fmt == "file":
                if path == STDIO or compressed:
                    data = pa.BufferReader(stream.read())
                    reader = ipc.open_file(data)
                else:
                    stream.close()
                    stream = pa.memory_map(native_path(path))
                    reader = ipc.open_file(stream)
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    batches, records = batches + 1, records + batch.num_rows
                    yield batch
                return reader.schema
            else:
                streamed = ipc.open_stream(stream)
                for batch in streamed:
                    batches, records = batches + 1, records + batch.num_rows
                    yield batch
                return streamed.schema
        except (pa.ArrowException, OSError) as exc:
            if batches or records or not isinstance(exc, pa.ArrowInvalid):
                # the file opened: a batch after those read is damaged or cut short
                raise PermanentError.one(
                    f"record batch {batches + 1} (from record {records + 1}) cannot be read: {exc}",
                    display_path(path),
                    "the file is damaged or incomplete: write it again from its source",
                ) from exc
            kind = f"{self.cfg.format} " if self.cfg.format != "auto" else ""
            raise PermanentError.one(
                f"not a readable Arrow IPC {kind}file: {exc}",
                display_path(path),
                "check the file is Arrow IPC (file or stream format) and complete",
            ) from exc
        finally:
            stream.close()

    def _read_path(self, path: str) -> Iterator[pa.RecordBatch]:
        line = 1
        batches = self._batches(path)
        while True:
            try:
                batch = self._numbered(next(batches), path, line)
            except StopIteration as end:
                if line == 1:  # no rows, but the columns are known
                    yield self._numbered(pa.RecordBatch.from_pylist([], end.value), path, 1)
                break
            line += batch.num_rows
            yield self._with_valid_text(batch, path)
        if path != STDIO:
            self.bytes_read += os.path.getsize(path)

    def _numbered(self, batch: pa.RecordBatch, path: str, line: int) -> pa.RecordBatch:
        """``batch`` with the wanted columns, like the first file's, numbered from ``line``."""
        if self.cfg.columns is not None:
            unknown = [c for c in self.cfg.columns if c not in batch.schema.names]
            if unknown:
                raise PermanentError.one(
                    f"columns {unknown} are not in the file",
                    display_path(path),
                    f"the file has {batch.schema.names}",
                )
            batch = batch.select(self.cfg.columns)
        return numbered(self._like_first_file(batch, path), line)
