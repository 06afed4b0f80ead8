"""The ``jsonl`` sink: one JSON object per line, written atomically.

Values keep their JSON types: numbers, strings, booleans, null; lists and structs nest; dates
and times are ISO 8601 strings, timestamps RFC 3339 text with every digit of their unit and a
zoned column's offset (``+01:00``, ``Z`` in UTC), as every text sink writes them; decimals are
written as strings so no digit is lost; binary values are base64; NaN and infinities are the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, which the JSON sources read back into
floats. The file is renamed into place on commit and deleted on abort.
"""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from quiver.pipeline import streams
from quiver.pipeline.component import (
    FileWriting,
    RunContext,
    sink,
    without_line,
)
from quiver.pipeline.json_text import dump_json, json_rows, json_strings
from quiver.pipeline.output import (
    AtomicOutput,
    Serialized,
    TextSinkConfig,
    concatenated_text,
    open_output,
    serialized_in_slices,
)
from quiver.pipeline.value_text import scalar_texts, with_kept_decimal_text

__all__ = ["JsonlSink", "JsonlSinkConfig", "json_texts"]


class JsonlSinkConfig(TextSinkConfig):
    """Write JSON Lines: one JSON object per row."""

    drop_nulls: bool = Field(False, description="Leave out fields whose value is null.")
    sort_keys: bool = Field(False, description="Write each object's keys in sorted order.")


_SLICE_BYTES = 128 << 20
_ESCAPES = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r"}
_QUOTE = pa.scalar('"')


def _needs_escaping(text: pa.Array) -> np.ndarray:
    """The distinct bytes of ``text`` that JSON strings must escape."""
    _, offsets_buffer, data_buffer = text.buffers()
    if data_buffer is None or len(text) == 0:
        return np.empty(0, np.uint8)
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    data = data[int(offsets[text.offset]) : int(offsets[text.offset + len(text)])]
    special = data[(data < 0x20) | (data == 0x22) | (data == 0x5C)]
    found: np.ndarray = np.unique(special)
    return found


def _json_string(text: pa.Array) -> pa.Array:
    """Strings as JSON string literals, escaped column-wise."""
    special = _needs_escaping(text).tolist()
    if special:
        if 0x5C in special:
            text = pc.replace_substring(text, "\\", "\\\\")
        if 0x22 in special:
            text = pc.replace_substring(text, '"', '\\"')
        for byte in special:
            if byte < 0x20:
                escape = _ESCAPES.get(byte, f"\\u{byte:04x}")
                text = pc.replace_substring(text, chr(byte), escape)
    return pc.binary_join_element_wise(_QUOTE, text, _QUOTE, "")


def json_texts(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value of ``column`` as JSON text (``null`` for nulls), computed column-wise."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        return json_texts(column.dictionary_decode())
    if pa.types.is_float16(kind):  # few kernels take half floats; a double holds each exactly
        return json_texts(column.cast(pa.float64()))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        out = _json_string(column.cast(pa.string()))
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        out = pc.cast(column, pa.string())
    elif pa.types.is_floating(kind):
        finite = pc.is_finite(column)
        text = pc.cast(column, pa.string())
        integral = pc.invert(pc.match_substring_regex(text, "[.eEn]"))
        text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
        # NaN and the infinities have no JSON number: their documented string forms, which
        # the JSON sources read back into floats (never null, which would lose them)
        special = pc.if_else(
            pc.is_nan(column),
            pa.scalar('"NaN"'),
            pc.if_else(pc.greater(column, 0), pa.scalar('"Infinity"'), pa.scalar('"-Infinity"')),
        )
        out = pc.if_else(finite, text, special)
    elif (
        pa.types.is_timestamp(kind)
        or pa.types.is_date(kind)
        or pa.types.is_time(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_duration(kind)
        or pa.types.is_interval(kind)
    ):
        out = pc.binary_join_element_wise(_QUOTE, scalar_texts(column), _QUOTE, "")
    elif pa.types.is_null(kind):
        out = pa.nulls(len(column), pa.string())
    else:  # lists, structs, maps, binary...: through orjson, value by value
        out = json_strings(column)
    return pc.fill_null(out, pa.scalar("null"))


@sink("jsonl", config=JsonlSinkConfig)
class JsonlSink(FileWriting):
    """JSON Lines files, one object per row, renamed into place on commit."""

    def __init__(self, cfg: JsonlSinkConfig) -> None:
        self.cfg = cfg
        self.output: AtomicOutput | None = None
        self.stream: pa.NativeFile | None = None
        self.rows_written = 0
        self.guard = streams.DestinationGuard(cfg.path)
        self._option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS
        if cfg.sort_keys:
            self._option |= orjson.OPT_SORT_KEYS

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        output, self.stream = await asyncio.to_thread(
            open_output, self.cfg, ctx, self.cfg.compression
        )
        self.output = output
        self.guard.path = output.path

    def encode(self, batch: pa.RecordBatch) -> Serialized:
        """The batch as JSON Lines."""
        return serialized_in_slices(batch, self._encode, _SLICE_BYTES)

    def _encode(self, batch: pa.RecordBatch) -> Serialized:
        data: pa.RecordBatch = without_line(with_kept_decimal_text(batch))
        if data.num_rows == 0:
            return b""
        nested = any(pa.types.is_nested(f.type) for f in data.schema)
        if self.cfg.drop_nulls or (self.cfg.sort_keys and nested):
            return self._encode_rows(data)
        names = data.schema.names
        order = sorted(range(len(names)), key=lambda i: names[i]) if self.cfg.sort_keys else None
        parts: list[pa.Array | pa.Scalar] = []
        for position, index in enumerate(order or range(len(names))):
            key = orjson.dumps(names[index]).decode("utf-8")
            parts.append(pa.scalar(("{" if position == 0 else ",") + key + ":"))
            parts.append(json_texts(data.column(index)))
        if not parts:
            return b"{}\n" * int(data.num_rows)
        parts.append(pa.scalar("}\n"))
        return concatenated_text(pc.binary_join_element_wise(*parts, ""))

    def _encode_rows(self, data: pa.RecordBatch) -> bytes:
        rows = json_rows(data)
        if self.cfg.drop_nulls:
            rows = [{k: v for k, v in row.items() if v is not None} for row in rows]
        option = self._option
        return b"".join([dump_json(row, option) for row in rows])

    async def write(self, batch: pa.RecordBatch) -> None:
        await asyncio.to_thread(self._write, batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        assert self.stream is not None
        data = self.encode(batch)
        with self.guard.writing():
            self.stream.write(data)
        self.rows_written += batch.num_rows

    async def commit(self) -> None:
        if self.output is not None:
            await asyncio.to_thread(self._commit)

    def _commit(self) -> None:
        assert self.output is not None
        with self.guard.writing():
            self.output.commit()

    async def abort(self) -> None:
        if self.output is not None:
            await asyncio.to_thread(self.output.abort)
