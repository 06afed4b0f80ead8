"""The ``parquet`` source: Parquet files streamed row group by row group.

Only the columns listed in ``columns`` are read (column projection happens in the reader, so
unread columns cost nothing), and batches are produced as the row groups are decoded: memory
holds about one row group. Each row carries its 1-based record number within its file in
``__line``. Files of a glob must share a schema; a later file whose columns can be cast to the
first file's types (e.g. int32 to int64) is cast.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from quiver.pipeline.component import (
    LINE_COLUMN,
    ComponentConfig,
    RowError,
    RunContext,
    source,
)
from quiver.pipeline.files import STDIO, batches_in_thread, display_path, expand_paths, open_input
from quiver.runtime.errors import PermanentError

__all__ = ["ParquetSource", "ParquetSourceConfig", "conform"]


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


def conform(batch: pa.RecordBatch, schema: pa.Schema, path: str, first: str) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns and types, or a PermanentError saying why not."""
    if batch.schema == schema:
        return batch
    missing = [n for n in schema.names if n not in batch.schema.names]
    extra = [n for n in batch.schema.names if n not in schema.names]
    if missing or extra:
        raise PermanentError.one(
            f"columns differ from those of {display_path(first)}: missing {missing}, extra {extra}",
            display_path(path),
            "read files with different layouts in separate sources, or list `columns`",
        )
    try:
        return batch.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PermanentError.one(
            f"column types differ from those of {display_path(first)}: {exc}",
            display_path(path),
            "read files with different types in separate sources",
        ) from exc


@source("parquet", config=ParquetSourceConfig)
class ParquetSource:
    """Parquet files, streamed row group by row group with column projection."""

    def __init__(self, cfg: ParquetSourceConfig) -> None:
        self.cfg = cfg
        self.schema: pa.Schema | None = None
        self.files_done: list[str] = []
        self.skip_files: set[str] = set()

    def paths(self, ctx: RunContext) -> list[str]:
        """The input files this source will read, in order."""
        return expand_paths(self.cfg.path, ctx.base_dir)

    def take_errors(self) -> list[RowError]:
        """Parquet rows are typed: nothing is ever rejected by this source."""
        return []

    def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        return batches_in_thread(self._produce(ctx))

    def _open(self, path: str) -> pq.ParquetFile:
        try:
            if path == STDIO:
                stream = open_input(path, "none")
                return pq.ParquetFile(pa.BufferReader(stream.read()))
            return pq.ParquetFile(path, memory_map=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise PermanentError.one(
                f"not a readable Parquet file: {exc}",
                display_path(path),
                "check that the file is Parquet and complete",
            ) from exc

    def _produce(self, ctx: RunContext) -> Generator[pa.RecordBatch, None, None]:
        first = ""
        for path in self.paths(ctx):
            if path in self.skip_files:
                continue
            parquet = self._open(path)
            names = parquet.schema_arrow.names
            if self.cfg.columns is not None:
                unknown = [c for c in self.cfg.columns if c not in names]
                if unknown:
                    raise PermanentError.one(
                        f"columns {unknown} are not in the file",
                        display_path(path),
                        f"the file has {names}",
                    )
            line = 0
            try:
                for batch in parquet.iter_batches(
                    batch_size=self.cfg.batch_rows, columns=self.cfg.columns, use_threads=True
                ):
                    if self.schema is None:
                        self.schema, first = batch.schema, path
                    batch = conform(batch, self.schema, path, first)
                    numbers = pa.array(
                        np.arange(line + 1, line + batch.num_rows + 1, dtype=np.int64)
                    )
                    line += batch.num_rows
                    yield batch.append_column(LINE_COLUMN, numbers)
            finally:
                parquet.close()
            self.files_done.append(path)
