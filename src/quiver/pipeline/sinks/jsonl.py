"""The ``jsonl`` sink: one JSON object per line, written atomically.

Values keep their JSON types: numbers, strings, booleans, null; lists and structs nest; dates
and times are ISO 8601 strings; decimals are written as strings so no digit is lost; binary
values are base64. The file is renamed into place on commit and deleted on abort.
"""

from __future__ import annotations

import asyncio

import orjson
import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import RunContext, sink
from quiver.pipeline.files import (
    AtomicOutput,
    TextSinkConfig,
    drop_line_column,
    json_default,
    open_output,
)

__all__ = ["JsonlSink", "JsonlSinkConfig"]


class JsonlSinkConfig(TextSinkConfig):
    """Write JSON Lines: one JSON object per row."""

    drop_nulls: bool = Field(False, description="Leave out fields whose value is null.")
    sort_keys: bool = Field(False, description="Write each object's keys in sorted order.")


@sink("jsonl", config=JsonlSinkConfig)
class JsonlSink:
    """JSON Lines files, one object per row, renamed into place on commit."""

    def __init__(self, cfg: JsonlSinkConfig) -> None:
        self.cfg = cfg
        self.output: AtomicOutput | None = None
        self.stream: pa.NativeFile | None = None
        self.rows_written = 0
        self._option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
        if cfg.sort_keys:
            self._option |= orjson.OPT_SORT_KEYS

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        self.output, self.stream = await asyncio.to_thread(
            open_output, self.cfg, ctx, self.cfg.compression
        )

    def encode(self, batch: pa.RecordBatch) -> bytes:
        """The batch as JSON Lines."""
        rows = drop_line_column(batch).to_pylist()
        if self.cfg.drop_nulls:
            rows = [{k: v for k, v in row.items() if v is not None} for row in rows]
        dumps, option = orjson.dumps, self._option
        return b"".join([dumps(row, default=json_default, option=option) for row in rows])

    async def write(self, batch: pa.RecordBatch) -> None:
        await asyncio.to_thread(self._write, batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        assert self.stream is not None
        self.stream.write(self.encode(batch))
        self.rows_written += batch.num_rows

    async def commit(self) -> None:
        if self.output is not None:
            await asyncio.to_thread(self.output.commit)

    async def abort(self) -> None:
        if self.output is not None:
            await asyncio.to_thread(self.output.abort)
