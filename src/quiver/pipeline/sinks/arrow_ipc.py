"""The ``arrow`` sink: Arrow IPC files (random access, ``.arrow``) or streams (``.arrows``).

``format: file`` writes the IPC file format (footer with an index; what ``pyarrow.ipc.open_file``
and DuckDB read); ``format: stream`` writes the streaming format, the only one possible on
standard output. Buffers may be compressed with lz4 or zstd inside the format. The file is
renamed into place on commit and deleted on abort.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

import pyarrow as pa
import pyarrow.ipc as ipc
from pydantic import Field

from quiver.pipeline import streams
from quiver.pipeline.component import (
    FileWriting,
    RunContext,
    schema_without_line,
    sink,
    without_line,
)
from quiver.pipeline.conform import conform
from quiver.pipeline.output import AtomicOutput, FileSinkConfig, open_output
from quiver.pipeline.paths import STDIO
from quiver.runtime.errors import PermanentError

__all__ = ["ArrowIpcSink", "ArrowIpcSinkConfig"]


class ArrowIpcSinkConfig(FileSinkConfig):
    """Write Arrow IPC (file or stream format)."""

    format: Literal["auto", "file", "stream"] = Field(
        "auto",
        description="file (random access) or stream; auto picks stream for `-` and for "
        "`.arrows` paths, file otherwise.",
    )
    compression: Literal["none", "lz4", "zstd"] = Field(
        "none", description="Compression of the record batch buffers (IPC-level)."
    )


@sink("arrow", config=ArrowIpcSinkConfig)
class ArrowIpcSink(FileWriting):
    """Arrow IPC files or streams, renamed into place on commit."""

    def __init__(self, cfg: ArrowIpcSinkConfig) -> None:
        self.cfg = cfg
        self.output: AtomicOutput | None = None
        self.writer: ipc.RecordBatchFileWriter | ipc.RecordBatchStreamWriter | None = None
        self.schema: pa.Schema | None = None
        self.rows_written = 0
        self.guard = streams.DestinationGuard(cfg.path)

    def _format(self) -> str:
        if self.cfg.format != "auto":
            return self.cfg.format
        if self.cfg.path == STDIO or self.cfg.path.endswith(".arrows"):
            return "stream"
        return "file"

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        await asyncio.to_thread(self._open, schema_without_line(schema), ctx)

    def _open(self, schema: pa.Schema, ctx: RunContext) -> None:
        if self._format() == "file":
            # a file holds one dictionary per column, but each batch may bring its own:
            # write dictionary-encoded columns as plain values
            schema = pa.schema(
                [
                    f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
                    for f in schema
                ],
                metadata=schema.metadata,
            )
        self.schema = schema
        if self._format() == "file" and self.cfg.path == STDIO:
            raise PermanentError.one(
                "the Arrow IPC file format cannot be written to standard output",
                "arrow sink path: -",
                "set `format: stream`",
            )
        self.output, stream = open_output(self.cfg, ctx)
        self.guard.path = self.output.path
        options = ipc.IpcWriteOptions(
            compression=None if self.cfg.compression == "none" else self.cfg.compression,
            emit_dictionary_deltas=True,
        )
        with self.guard.writing():
            if self._format() == "file":
                self.writer = ipc.new_file(stream, schema, options=options)
            else:
                self.writer = ipc.new_stream(stream, schema, options=options)

    async def write(self, batch: pa.RecordBatch) -> None:
        await asyncio.to_thread(self._write, batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        assert self.writer is not None and self.schema is not None
        data = without_line(batch)
        data = conform(
            data, self.schema, where=f"arrow sink {self.cfg.path}", origin="the file being written"
        )
        with self.guard.writing():
            self.writer.write_batch(data)
        self.rows_written += data.num_rows

    async def commit(self) -> None:
        await asyncio.to_thread(self._commit)

    def _commit(self) -> None:
        with self.guard.writing():
            if self.writer is not None:
                self.writer.close()
                self.writer = None
            if self.output is not None:
                self.output.commit()

    async def abort(self) -> None:
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):  # the file is thrown away anyway
                self.writer.close()
            self.writer = None
        if self.output is not None:
            self.output.abort()
