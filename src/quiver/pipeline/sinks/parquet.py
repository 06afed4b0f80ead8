"""The ``parquet`` sink: columnar files with zstd (default), snappy, gzip, lz4 or brotli.

Batches are gathered until ``row_group_rows`` rows, then written as one row group, so readers
get row groups of a useful size whatever the batch size upstream; memory holds at most one row
group. The file is renamed into place on commit and deleted on abort.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

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
from quiver.runtime.errors import PermanentError

__all__ = ["ParquetSink", "ParquetSinkConfig"]


class ParquetSinkConfig(FileSinkConfig):
    """Write a Parquet file."""

    compression: Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"] = Field(
        "zstd", description="Column chunk compression."
    )
    compression_level: int | None = Field(
        None, description="Codec level (zstd 1-22, gzip 1-9, brotli 0-11); codec default if unset."
    )
    row_group_rows: int = Field(
        262_144, ge=1, description="Rows per row group (also the most rows held in memory)."
    )
    dictionary: bool = Field(True, description="Dictionary-encode columns where it pays.")
    statistics: bool = Field(True, description="Write min/max statistics for each column chunk.")

    @model_validator(mode="after")
    def _level_fits_codec(self) -> ParquetSinkConfig:
        if self.compression_level is not None and self.compression not in _LEVELS:
            raise ValueError(
                f"compression_level does not apply to {self.compression}; "
                f"it does to {', '.join(sorted(_LEVELS))}"
            )
        low, high = _LEVELS.get(self.compression, (0, 0))
        if self.compression_level is not None and not low <= self.compression_level <= high:
            raise ValueError(
                f"compression_level for {self.compression} must be {low}..{high}, "
                f"got {self.compression_level}"
            )
        return self


_LEVELS = {"zstd": (1, 22), "gzip": (1, 9), "brotli": (0, 11)}


@sink("parquet", config=ParquetSinkConfig)
class ParquetSink(FileWriting):
    """A Parquet file, written row group by row group and renamed into place on commit."""

    def __init__(self, cfg: ParquetSinkConfig) -> None:
        self.cfg = cfg
        self.output: AtomicOutput | None = None
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.rows_written = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.guard = streams.DestinationGuard(cfg.path)

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        await asyncio.to_thread(self._open, schema_without_line(schema), ctx)

    def _open(self, schema: pa.Schema, ctx: RunContext) -> None:
        self.schema = schema
        self.output, stream = open_output(self.cfg, ctx)
        self.guard.path = self.output.path
        try:
            with self.guard.writing():
                self.writer = self._writer(stream, schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            self.output.abort()
            raise PermanentError.one(
                f"cannot write this schema as Parquet: {exc}",
                f"parquet sink {self.cfg.path}",
                "cast the unsupported columns in a processor first",
            ) from exc

    def _writer(self, stream: pa.NativeFile, schema: pa.Schema) -> pq.ParquetWriter:
        return pq.ParquetWriter(
            stream,
            schema,
            compression=self.cfg.compression,
            compression_level=self.cfg.compression_level,
            use_dictionary=self.cfg.dictionary,
            write_statistics=self.cfg.statistics,
        )

    async def write(self, batch: pa.RecordBatch) -> None:
        data = without_line(batch)
        assert self.schema is not None
        data = conform(
            data,
            self.schema,
            where=f"parquet sink {self.cfg.path}",
            origin="the file being written",
        )
        self._pending.append(data)
        self._pending_rows += data.num_rows
        if self._pending_rows >= self.cfg.row_group_rows:
            await asyncio.to_thread(self._flush, False)

    def _flush(self, final: bool) -> None:
        assert self.writer is not None
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        size = self.cfg.row_group_rows
        full = table.num_rows if final else table.num_rows - table.num_rows % size
        if full:
            with self.guard.writing():
                self.writer.write_table(table.slice(0, full), row_group_size=size)
            self.rows_written += full
        rest = table.slice(full)
        self._pending = rest.to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows

    async def commit(self) -> None:
        await asyncio.to_thread(self._commit)

    def _commit(self) -> None:
        with self.guard.writing():
            if self.writer is not None:
                self._flush(True)
                self.writer.close()
                self.writer = None
            if self.output is not None:
                self.output.commit()

    async def abort(self) -> None:
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        self._pending = []
        if self.writer is not None:
            with contextlib.suppress(Exception):  # the file is thrown away anyway
                self.writer.close()
            self.writer = None
        if self.output is not None:
            self.output.abort()
