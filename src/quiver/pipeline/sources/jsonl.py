"""The ``jsonl`` source: one JSON object per line (JSON Lines / NDJSON), streamed in blocks.

Blocks of whole lines are parsed by ``pyarrow.json`` in parallel; each row carries its 1-based
line number in the line column. Nested objects become structs and arrays become lists. The schema
is inferred from the first ``infer_bytes`` of the first file (or declared with ``types``) and
then fixed for the run, so every batch has the same columns. A line that is not a JSON object,
does not match the schema or is too long is handled by ``on_malformed`` (reject / skip / fail),
like the CSV source; blank lines are ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
from pydantic import Field

from quiver.pipeline.component import (
    LINE_COLUMN,
    ByteCounting,
    ComponentConfig,
    FileReading,
    RowRejecting,
    kept_text_column,
    source,
)
from quiver.pipeline.config_fields import Encoding, JsonColumnTypes
from quiver.pipeline.conform import SchemaMismatchError, conform
from quiver.pipeline.encodings import describe_bad_bytes, normalize_encoding
from quiver.pipeline.json_text import (
    MAX_JSON_DEPTH,
    DuplicateKeyError,
    JsonNumber,
    bare_constant,
    beyond_float,
    json_array,
    json_depth,
    parse_json,
    plain_json,
    strict_json,
)
from quiver.pipeline.line_numbers import line_feeds
from quiver.pipeline.paths import display_path
from quiver.pipeline.sources.file_source import FileSource, joined_pieces
from quiver.pipeline.streams import Compression
from quiver.pipeline.type_names import epoch_unit, parse_type
from quiver.pipeline.value_text import kept_text, without_decimal_text

__all__ = ["JsonlSource", "JsonlSourceConfig"]


class JsonlSourceConfig(ComponentConfig):
    """Read JSON Lines files: one JSON object per line."""

    path: str | list[str] = Field(
        description="File, glob or list of them, read in sorted order; `-` reads standard "
        "input. Relative to the pipeline file."
    )
    types: JsonColumnTypes = Field(
        default_factory=dict,
        description="Field types by name (str, int, float, bool, date, datetime, decimal(p,s)"
        ", map<str, int>, ...); other fields are inferred from the `infer_bytes` sample. A map"
        " is read from [key, value] pairs (as the jsonl sink writes it) or an object.",
    )
    unexpected_fields: Literal["reject", "ignore"] = Field(
        "reject",
        description="A field that is not in the schema fixed from the first block: reject "
        "the line (per on_malformed) or ignore the field.",
    )
    encoding: Encoding = Field("utf-8", description="Text encoding; a byte-order mark is dropped.")
    compression: Compression = Field(
        "auto", description="auto (from the extension: .gz, .zst, .bz2), none, gzip, zstd, bz2."
    )
    on_malformed: Literal["reject", "skip", "fail"] = Field(
        "reject",
        description="What to do with a line that cannot be read: reject (to the rejects "
        "file, with its line), skip (count it), fail (stop the run).",
    )
    block_size: int = Field(4 << 20, ge=1, description="Bytes read and parsed at a time.")
    infer_bytes: int = Field(
        4 << 20,
        ge=1,
        description="Size of the sample at the start of the first file from which the types "
        "of fields not in `types` are inferred. A field that is null throughout the sample "
        "is read as text.",
    )
    max_record_bytes: int = Field(
        64 << 20,
        ge=1,
        description="Longest line accepted, in bytes; a longer one is malformed (rejected "
        "with its line number).",
    )
    batch_rows: int = Field(65_536, ge=1, description="Most rows per batch handed on.")


_RAW_KEPT = 4096  # bytes of an over-long line kept for its reject
_ROW_IN_MESSAGE = re.compile(r"\s*in row \d+$")
_CHANGED = re.compile(r"Column\(([^)]*)\) changed from (\w+) to (\w+)")


@source("jsonl", config=JsonlSourceConfig)
class JsonlSource(FileSource, FileReading, RowRejecting, ByteCounting):
    """JSON Lines files, parsed in blocks by pyarrow with exact line numbers."""

    unit = "line"

    def __init__(self, cfg: JsonlSourceConfig) -> None:
        super().__init__(cfg.path, cfg.on_malformed)
        self.cfg = cfg
        self.encoding = normalize_encoding(cfg.encoding, "encoding")
        self.declared = pa.schema(
            [(name, parse_type(t, f"types.{name}", maps=True)) for name, t in cfg.types.items()]
        )
        # what pyarrow.json reads for declared fields: dates, times and decimals come as text
        # and are cast afterwards
        self.read_declared = pa.schema([f.with_type(_read_type(f.type)) for f in self.declared])
        #: Declared fields holding a map, which pyarrow.json cannot read: lines are then read
        #: one by one by the value rules, and the other fields inferred without them.
        self.maps = {f.name for f in self.declared if _has_map(f.type)}
        self.schema: pa.Schema | None = None
        self.read_schema: pa.Schema | None = None
        self.inferred_floats: list[str] = []

    def _read_path(self, path: str) -> Iterator[pa.RecordBatch]:
        blocks = self._text_blocks(path, self.cfg.compression, self.encoding, self.cfg.block_size)
        try:
            rows = 0
            for batch in self._read(path, blocks):
                rows += batch.num_rows
                yield batch
        finally:
            blocks.close()
        schema = self.schema if self.schema is not None else self.declared
        if not rows and len(schema):  # no rows, but the columns are known (`types`)
            empty = without_decimal_text(schema.empty_table(), self._decimals)
            yield pa.RecordBatch.from_pylist(
                [], empty.schema.append(pa.field(LINE_COLUMN, pa.int64()))
            )

    @property
    def _decimals(self) -> list[str]:
        """The decimal columns, whose text is kept beside them."""
        schema = self.schema if self.schema is not None else self.declared
        return [f.name for f in schema if pa.types.is_decimal(f.type)]

    def _read(self, path: str, blocks: Iterator[bytes]) -> Iterator[pa.RecordBatch]:
        buf = b""
        base = 0  # lines before buf
        discarding = False  # inside an over-long line already reported
        for chunk in blocks:
            buf = buf + chunk if buf else chunk
            if discarding:
                cut = buf.find(b"\n")
                if cut < 0:
                    buf = b""
                    continue
                buf = buf[cut + 1 :]
                base += 1
                discarding = False
            if self.schema is None and len(buf) < self.cfg.infer_bytes:
                continue  # gather a sample big enough to settle the types
            last = buf.rfind(b"\n")
            if last >= 0:
                yield from self._lines(path, buf[: last + 1], base)
                base += line_feeds(buf, last + 1)
                buf = buf[last + 1 :]
            if len(buf) > self.cfg.max_record_bytes:
                self._malformed(path, base + 1, self._too_long(None), buf[:_RAW_KEPT])
                buf = b""
                discarding = True
        if buf and not discarding:
            yield from self._lines(path, buf, base)

    def _lines(self, path: str, block: bytes, base: int) -> Iterator[pa.RecordBatch]:
        a = np.frombuffer(block, dtype=np.uint8)
        breaks = np.flatnonzero(a == 10)
        ends = breaks + 1
        if ends.size == 0 or ends[-1] < a.size:
            ends = np.append(ends, a.size)
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1]
        # a line starting with "{" has content; only the others need a closer look
        filled = a[np.minimum(starts, a.size - 1)] == ord("{")
        filled &= starts < ends
        for index in np.flatnonzero(~filled).tolist():
            filled[index] = bool(block[starts[index] : ends[index]].strip(b" \t\r\n"))
        sizes = ends - starts
        for index in np.flatnonzero(filled & (sizes > self.cfg.max_record_bytes)).tolist():
            raw = block[starts[index] : min(ends[index], starts[index] + _RAW_KEPT)]
            self._malformed(path, base + index + 1, self._too_long(int(sizes[index])), raw)
            filled[index] = False
        for index, reason in self._unreadable(block, a, starts, ends, filled):
            raw = block[starts[index] : min(ends[index], starts[index] + _RAW_KEPT)]
            self._malformed(path, base + index + 1, reason, raw)
            filled[index] = False
        records = np.flatnonzero(filled)
        if records.size == 0:
            return
        lines = records + (base + 1)
        if self.schema is None:
            self._lock_schema(path, block, starts, ends, records, lines)
        for table, subset in joined_pieces(self._parse(path, block, starts, ends, records, lines)):
            table = table.append_column(LINE_COLUMN, pa.array(lines[subset], pa.int64()))
            yield from table.to_batches(max_chunksize=self.cfg.batch_rows)

    def _unreadable(
        self,
        block: bytes,
        a: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        filled: np.ndarray,
    ) -> Iterator[tuple[int, str]]:
        """The lines of ``block`` that must not reach the parser, with why: bytes that are not
        text in the file's encoding (the parser would pass them on inside strings, as text no
        later step or sink can read), and nesting deeper than ``MAX_JSON_DEPTH`` (which would
        exhaust the stack of the parser and of every step after it). One pass over the block
        each; only lines found wanting are looked at one by one."""
        if not _utf8(block):
            for index in np.flatnonzero(filled).tolist():
                bad = describe_bad_bytes(block[starts[index] : ends[index]], self.cfg.encoding)
                if bad is not None:
                    filled[index] = False
                    yield index, bad
        # Arrow's parser reads NaN, Infinity and -Infinity written bare as floats: they are
        # not JSON, and refused as the value rules refuse them (only lines holding the
        # letters are looked at; most blocks hold none)
        if b"NaN" in block or b"Infinity" in block:
            at = [m.start() for m in _CONSTANT_LETTERS.finditer(block)]
            for index in np.unique(np.searchsorted(ends, at, side="right")).tolist():
                if filled[index]:
                    why = bare_constant(block[starts[index] : ends[index]])
                    if why is not None:
                        filled[index] = False
                        yield index, why
        # a line d levels deep has d opening and d closing brackets: shorter lines cannot be
        candidates = filled & (ends - starts > 2 * MAX_JSON_DEPTH)
        if not candidates.any():
            return
        # "{" and "[" differ in bit 0x20 only; openers up to each byte, then per line
        opened = np.cumsum((a | 0x20) == ord("{"), dtype=np.int64)
        counts = opened[ends - 1] - np.where(starts > 0, opened[starts - 1], 0)
        for index in np.flatnonzero(candidates & (counts > MAX_JSON_DEPTH)).tolist():
            depth = json_depth(block[starts[index] : ends[index]])
            if depth > MAX_JSON_DEPTH:
                yield (
                    index,
                    (
                        f"the line nests objects and arrays {depth} levels deep, more than the "
                        f"{MAX_JSON_DEPTH} a JSON Lines record may have; flatten the record, or "
                        "hold the deep part as a JSON string"
                    ),
                )

    def _too_long(self, size: int | None) -> str:
        limit = self.cfg.max_record_bytes
        length = f"of {size} bytes" if size is not None else f"of more than {limit} bytes"
        return (
            f"line {length} is longer than max_record_bytes ({limit} bytes); if such lines "
            "are genuine, raise `max_record_bytes` in the source's options"
        )

    def _options(self, schema: pa.Schema | None) -> pajson.ParseOptions:
        if schema is None:
            read = pa.schema([f for f in self.read_declared if f.name not in self.maps])
            return pajson.ParseOptions(
                explicit_schema=read if len(read) else None,
                unexpected_field_behavior="infer",
            )
        return pajson.ParseOptions(
            explicit_schema=schema,
            unexpected_field_behavior="error"
            if self.cfg.unexpected_fields == "reject"
            else "ignore",
        )

    def _read_json(self, data: bytes | memoryview, schema: pa.Schema | None) -> pa.Table:
        return pajson.read_json(
            pa.py_buffer(data),
            read_options=pajson.ReadOptions(
                use_threads=True, block_size=max(1 << 20, len(data) // 2 + 1)
            ),
            parse_options=self._options(schema),
        )

    def _lock_schema(
        self,
        path: str,
        block: bytes,
        starts: np.ndarray,
        ends: np.ndarray,
        records: np.ndarray,
        lines: np.ndarray,
    ) -> None:
        """Infer the schema from the well-formed lines of the sample."""
        data = _gather(block, starts[records], ends[records])
        if self.maps:
            data = self._without_fields(data, self.maps)
        try:
            inferred = self._read_json(data, None).schema
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            inferred = None
        if inferred is None and len(self.declared):
            # a declared field whose values Arrow cannot read as declared (lists in a text
            # field, read as their JSON text by the value rules) must not keep the other
            # fields from being inferred
            try:
                others = self._without_fields(data, set(self.declared.names))
                inferred = self._read_json(others, None).schema
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                inferred = None
        if inferred is None:
            good = [
                i
                for i, index in enumerate(records.tolist())
                if _json_problem(block[starts[index] : ends[index]]) is None
            ]
            if not good:
                self.schema = self.declared
                self.read_schema = self.read_declared
                return
            inferred = self._infer(block, starts[records[good]], ends[records[good]])
        declared = {f.name: f.type for f in self.declared}
        # Arrow infers a float for integers past int64, which would round them (and all the
        # integers beside them): integers that are all whole numbers are decimal(38,0)
        # instead, exact, as Spark infers a decimal and DuckDB a 128-bit integer
        wide = _integers_past_int64(
            data,
            [f.name for f in inferred if f.name not in declared and pa.types.is_floating(f.type)],
        )
        fields = [
            pa.field(f.name, declared[f.name])
            if f.name in declared
            else f.with_type(_WIDE_INTEGER if f.name in wide else _as_json_typed(f.type))
            for f in inferred
        ]
        fields += [f for f in self.declared if f.name not in inferred.names]
        self.schema = pa.schema(fields)
        # a float type the user did not declare: an integer it cannot hold exactly is refused
        self.inferred_floats = [
            f.name for f in fields if f.name not in declared and _has_float(f.type)
        ]
        # Arrow reads JSON numbers into a decimal exactly (a declared decimal is read as text,
        # the way the sinks write decimals)
        self.read_schema = pa.schema(
            [f if f.name in wide else f.with_type(_read_type(f.type)) for f in fields]
        )

    def _without_fields(self, data: bytes | memoryview, names: set[str]) -> bytes:
        """The JSON lines of ``data`` without their fields ``names`` (to infer the others)."""
        out = []
        for line in bytes(data).splitlines():
            try:
                record = strict_json(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(json.dumps({k: v for k, v in record.items() if k not in names}))
        return "\n".join(out).encode()

    def _infer(self, block: bytes, starts: np.ndarray, ends: np.ndarray) -> pa.Schema:
        """The schema of the given lines. When lines disagree on a field's type, the first
        line that gives the field a type wins (the others are rejected when parsed)."""
        try:
            schema: pa.Schema = self._read_json(_gather(block, starts, ends), None).schema
            return schema
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if starts.size == 1:
                return pa.schema([])
        half = starts.size // 2
        first = self._infer(block, starts[:half], ends[:half])
        second = self._infer(block, starts[half:], ends[half:])
        merged = {f.name: f for f in first}
        for f in second:
            if f.name not in merged or pa.types.is_null(merged[f.name].type):
                merged[f.name] = f
        return pa.schema(list(merged.values()))

    def _parse(
        self,
        path: str,
        block: bytes,
        starts: np.ndarray,
        ends: np.ndarray,
        records: np.ndarray,
        lines: np.ndarray,
    ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Parse the lines ``records``; a failing group is halved to isolate bad lines."""
        if self.maps:
            yield from self._parse_by_line(path, block, starts, ends, records, lines)
            return
        # subsets to read, with their table when the value rules already read them
        pending: list[tuple[np.ndarray, pa.Table | None]] = [(np.arange(records.size), None)]
        reads = 0  # Arrow reads of this block
        while pending:
            subset, read = pending.pop(0)
            if read is not None:
                yield read, subset
                continue
            chosen = records[subset]
            if reads >= _HALVING_READS and subset.size > 1:
                # Many lines Arrow refuses that the value rules may read (numbers for a
                # decimal read as text, "NaN" in a float field...): halving down to each
                # would take an Arrow read a line and more. The value rules read the rest,
                # and the lines they refuse are read alone, for Arrow's reason.
                found = self._by_value_rules_in_order(block, starts, ends, chosen)
                pending[:0] = [(subset[part], table) for part, table, _ in found]
                continue
            data = _gather(block, starts[chosen], ends[chosen])
            reads += 1
            try:
                table = self._read_json(data, self.read_schema)
                if table.num_rows != subset.size:
                    raise pa.ArrowInvalid(f"{subset.size} lines read as {table.num_rows} rows")
                assert self.schema is not None
                table = _base64_decoded(table, self.schema)
                texts = [(n, table.column(n)) for n in self._decimals if n in table.schema.names]
                table = conform(table, self.schema, where=display_path(path), origin="the schema")
                for name, text in texts:
                    if pa.types.is_string(text.type):
                        text = kept_text(text)
                    else:
                        text = pa.nulls(len(text), pa.string())
                    table = table.append_column(kept_text_column(name), text)
                if self.inferred_floats:
                    table, subset = self._exact_floats(
                        path, table, subset, chosen, block, starts, ends, lines
                    )
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, SchemaMismatchError) as exc:
                if subset.size == 1:
                    index = int(chosen[0])
                    raw = block[starts[index] : ends[index]]
                    value_table, refused = self._by_value_rules(raw)
                    if value_table is not None:
                        yield without_decimal_text(value_table, self._decimals), subset
                        continue
                    cause = exc.__cause__ if isinstance(exc, SchemaMismatchError) else None
                    reason = self._explain(cause if isinstance(cause, Exception) else exc, raw)
                    if refused is not None and (
                        refused[1] not in reason
                        or reason.startswith("Failed to convert JSON")
                        or (
                            refused[1].strip("'") in self.cfg.types
                            and "in the schema fixed from the first lines" in reason
                        )
                    ):
                        # Arrow's complaint was about another field, names no field, or is
                        # about the type Arrow reads a declared field as (text for decimals)
                        reason = refused[0]
                    self._malformed(path, int(lines[subset[0]]), reason, raw)
                    continue
                half = subset.size // 2
                pending[:0] = [(subset[:half], None), (subset[half:], None)]
                continue
            if table.num_rows:
                yield table, subset

    def _by_value_rules_in_order(
        self, block: bytes, starts: np.ndarray, ends: np.ndarray, chosen: np.ndarray
    ) -> list[tuple[slice, pa.Table | None, tuple[str, str, str] | None]]:
        """The lines ``chosen`` read by the value rules, in order: runs of lines they read
        (a table each, decimal text dropped) and each line they refuse (no table, and why
        when a value breaks the rules)."""
        raws = [block[starts[i] : ends[i]] for i in chosen.tolist()]
        whole = self._by_value_rules_at_once(raws)
        if whole is not None:
            return [(slice(0, len(raws)), without_decimal_text(whole, self._decimals), None)]
        found: list[tuple[slice, pa.Table | None, tuple[str, str, str] | None]] = []
        tables: list[pa.Table] = []

        def end_run(at: int) -> None:
            if tables:
                run = pa.concat_tables(tables).combine_chunks()
                part = slice(at - len(tables), at)
                found.append((part, without_decimal_text(run, self._decimals), None))
                tables.clear()

        for i, raw in enumerate(raws):
            table, refused = self._by_value_rules(raw)
            if table is None:
                end_run(i)
                found.append((slice(i, i + 1), None, refused))
            else:
                tables.append(table)
        end_run(len(raws))
        return found

    def _parse_by_line(
        self,
        path: str,
        block: bytes,
        starts: np.ndarray,
        ends: np.ndarray,
        records: np.ndarray,
        lines: np.ndarray,
    ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """The lines ``records`` read by the value rules (a declared map field): all at once,
        or one by one when a line is refused, to find it."""
        assert self.schema is not None
        for part, table, refused in self._by_value_rules_in_order(block, starts, ends, records):
            if table is not None:
                yield table, np.arange(part.start, part.stop)
                continue
            raw = block[starts[records[part.start]] : ends[records[part.start]]]
            reason = (
                refused[0] if refused else self._explain(_line_problem(raw, self.schema.names), raw)
            )
            self._malformed(path, int(lines[part.start]), reason, raw)

    def _exact_floats(
        self,
        path: str,
        table: pa.Table,
        subset: np.ndarray,
        chosen: np.ndarray,
        block: bytes,
        starts: np.ndarray,
        ends: np.ndarray,
        lines: np.ndarray,
    ) -> tuple[pa.Table, np.ndarray]:
        """``table`` without the lines where a field whose float type was inferred holds an
        integer a float cannot hold exactly (from 2**53 on), which are refused. Only lines with
        a float of such a size and an integer of 16 digits or more are read again, so the
        common case costs one comparison per value."""
        candidates = np.zeros(table.num_rows, dtype=bool)
        for name in self.inferred_floats:
            if name in table.column_names:
                candidates |= _large_floats(table.column(name))
        if not candidates.any():
            return table, subset
        # only a line with an integer of 16 digits or more can hold one past 2**53
        line_starts = starts[chosen]
        first, last = int(line_starts[0]), int(ends[chosen[-1]])
        at = _long_integers(block[first:last]) + first
        candidates &= np.isin(
            np.arange(table.num_rows), np.searchsorted(line_starts, at, side="right") - 1
        )
        if not candidates.any():
            return table, subset
        keep = np.ones(table.num_rows, dtype=bool)
        for i in np.flatnonzero(candidates).tolist():
            index = int(chosen[i])
            raw = block[starts[index] : ends[index]]
            why = self._inexact_integer(raw)
            if why is not None:
                self._malformed(path, int(lines[subset[i]]), why, raw)
                keep[i] = False
        if keep.all():
            return table, subset
        return table.filter(pa.array(keep)), subset[keep]

    def _inexact_integer(self, raw: bytes) -> str | None:
        """Why the line ``raw`` is refused when a field of inferred float type holds an
        integer that a float would change, else None."""
        assert self.schema is not None
        record = _json_object(raw)
        if record is None:
            return None
        for name in self.inferred_floats:
            kind = self.schema.field(name).type
            found = _inexact(record.get(name), kind)
            if found is not None:
                return _inexact_reason(name, kind, found)
        return None

    def _by_value_rules(self, raw: bytes) -> tuple[pa.Table | None, tuple[str, str, str] | None]:
        """A line pyarrow.json refused, read by the value rules every JSON source shares
        (:mod:`quiver.pipeline.json_text`): ``"NaN"`` and ``"Infinity"`` in float fields,
        epoch seconds (or the unit of ``timestamp(ms)``) in timestamp fields, ``3.0`` in an
        int field. Else no table and, when a value breaks those rules, why (with the field's
        name and the value, as they appear in messages)."""
        assert self.schema is not None
        record = _json_object(raw)
        if record is None:
            return None, None
        if self.cfg.unexpected_fields == "reject" and set(record) - set(self.schema.names):
            return None, None
        arrays = []
        for f in self.schema:
            value = record.get(f.name)
            if f.name in self.inferred_floats and (found := _inexact(value, f.type)) is not None:
                why = _inexact_reason(f.name, f.type, found)
                return None, (why, f"'{f.name}'", str(value))
            if pa.types.is_nested(f.type):
                if (overflow := beyond_float(value)) is not None:
                    why = (
                        f"field {f.name!r}: {overflow} is beyond the range of a float (about "
                        "±1.8e308); write it as a string to keep it"
                    )
                    return None, (why, f"'{f.name}'", overflow)
                try:
                    arrays.append(pa.array([_special_floats(plain_json(value), f.type)], f.type))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                    if f.name not in self.maps:
                        return None, None
                    shown = orjson.dumps(plain_json(value)).decode()[:80]
                    why = (
                        f"field {f.name!r}: {shown} is not a {f.type} (write [key, value] pairs"
                        " or an object)"
                    )
                    return None, (why, f"'{f.name}'", shown)
                continue
            unit = epoch_unit(self.cfg.types[f.name]) if f.name in self.cfg.types else "s"
            array, refused = json_array([value], f.type, unit)
            if refused:
                why = f"field {f.name!r}: {refused[0]}"
                return None, (why, f"'{f.name}'", str(value))
            arrays.append(array)
        return pa.Table.from_arrays(arrays, schema=self.schema), None

    def _by_value_rules_at_once(self, raws: list[bytes]) -> pa.Table | None:
        """The lines ``raws`` read by the value rules column by column, or None when one of
        them is refused (or a field's float type was inferred: its integers are checked one
        line at a time)."""
        assert self.schema is not None
        if self.inferred_floats:
            return None
        records = []
        for raw in raws:
            record = _json_object(raw)
            if record is None:
                return None
            if self.cfg.unexpected_fields == "reject" and set(record) - set(self.schema.names):
                return None
            records.append(record)
        arrays = []
        for f in self.schema:
            values = [r.get(f.name) for r in records]
            if pa.types.is_nested(f.type):
                try:
                    plain = [_special_floats(plain_json(v), f.type) for v in values]
                    arrays.append(pa.array(plain, f.type))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError):
                    return None
                continue
            unit = epoch_unit(self.cfg.types[f.name]) if f.name in self.cfg.types else "s"
            array, refused = json_array(values, f.type, unit)
            if refused:
                return None
            arrays.append(array)
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _mixed_list(self, raw: bytes) -> str | None:
        """Why the line ``raw`` is refused when a field that is not text holds a list whose
        values are of more than one JSON type (``[1, "a"]``): an Arrow list holds values of
        one type. None when it holds no such list."""
        assert self.schema is not None
        record = _json_object(raw)
        if record is None:
            return None
        for name, value in record.items():
            at = self.schema.get_field_index(name)
            if at >= 0 and not pa.types.is_nested(self.schema.field(at).type):
                continue  # a text field holds any JSON value as its text
            if at < 0 and self.cfg.unexpected_fields == "ignore":
                continue
            # (a field missing from the schema may be missing for its mixed list)
            found = _first_mixed_list(value, name)
            if found is None:
                continue
            where, items, kinds = found
            shown = orjson.dumps(plain_json(items)).decode()
            if len(shown) > 80:
                shown = shown[:77] + "..."
            return (
                f"field {where!r}: the list {shown} mixes {' and '.join(kinds)}, and the values "
                "of a list must all be of one type; make them one type, or declare "
                f"{name}: str under `types` to read the field as its JSON text"
            )
        return None

    def _explain(self, exc: Exception, raw: bytes) -> str:
        bad = describe_bad_bytes(raw, self.cfg.encoding)
        if bad is not None:
            return bad
        problem = _json_problem(raw)
        if problem is not None:
            return problem
        mixed = self._mixed_list(raw)
        if mixed is not None:
            return mixed
        message = _ROW_IN_MESSAGE.sub("", str(exc).removeprefix("JSON parse error: "))
        # a key named twice: say which, and where (also when its field is missing from the
        # schema because every line of the sample naming it names it twice)
        if "was specified twice" in message or "unexpected field" in message.lower():
            try:
                parse_json(raw)
            except DuplicateKeyError as duplicate:
                return str(duplicate)
            except ValueError:
                pass
        if m := _CHANGED.search(message):
            return (
                f"field '{m[1].strip('/').replace('/', '.')}' holds a {m[3]} here but a "
                f"{m[2]} in the schema fixed from the first lines (declare its type under "
                "`types` or fix the value)"
            )
        if "unexpected field" in message.lower():
            assert self.schema is not None
            known = set(self.schema.names)
            extra = sorted(set(orjson.loads(raw)) - known)
            return (
                f"field(s) {extra} not in the schema fixed from the first lines "
                "(declare them under `types`, or set `unexpected_fields: ignore`)"
            )
        return message


_CONSTANT_LETTERS = re.compile(rb"NaN|Infinity")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """The line ``raw`` as :func:`parse_json` reads it, when it is a JSON object."""
    try:
        record = parse_json(raw)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _json_kind(value: Any) -> str | None:
    """The JSON type of a value of :func:`parse_json`, as a plural noun (None for null)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "booleans"
    if isinstance(value, int | float | JsonNumber):
        return "numbers"
    if isinstance(value, str):
        return "strings"
    return "objects" if isinstance(value, dict) else "lists"


def _first_mixed_list(value: Any, where: str) -> tuple[str, list[Any], list[str]] | None:
    """The first list in ``value`` (at ``where``, depth first) whose values are of more than
    one JSON type: ``(where it is, the list, the types in the order they come)``."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _first_mixed_list(item, f"{where}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        kinds = list(dict.fromkeys(k for k in map(_json_kind, value) if k is not None))
        if len(kinds) > 1:
            return where, value, kinds
        for item in value:
            found = _first_mixed_list(item, f"{where}[]")
            if found is not None:
                return found
    return None


_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _special_floats(value: Any, kind: pa.DataType) -> Any:
    """``value`` (plain JSON) with the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``
    turned into floats wherever ``kind`` holds a float, inside lists and structs too: how the
    JSON Lines sink writes them."""
    if value is None:
        return None
    if pa.types.is_floating(kind) and isinstance(value, str):
        return _SPECIAL_FLOATS.get(value, value)
    lists = (pa.ListType, pa.LargeListType, pa.FixedSizeListType)
    if isinstance(kind, lists) and isinstance(value, list):
        return [_special_floats(v, kind.value_type) for v in value]
    if isinstance(kind, pa.StructType) and isinstance(value, dict):
        fields = {f.name: f.type for f in kind}
        return {k: _special_floats(v, fields[k]) if k in fields else v for k, v in value.items()}
    if isinstance(kind, pa.MapType):
        # the sink's [key, value] pairs, or an object of text keys
        pairs = [list(item) for item in value.items()] if isinstance(value, dict) else value
        if isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 for p in pairs):
            return [
                (_special_floats(k, kind.key_type), _special_floats(v, kind.item_type))
                for k, v in pairs
            ]
    return value


_EXACT_FLOAT_LIMIT = 2.0**53  # every integer up to here is exact as a float


def _has_float(kind: pa.DataType) -> bool:
    """Whether ``kind`` holds floats, itself or inside lists and structs."""
    if pa.types.is_floating(kind):
        return True
    if isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return _has_float(kind.value_type)
    if isinstance(kind, pa.StructType):
        return any(_has_float(f.type) for f in kind)
    return False


def _large_floats(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row, whether a float in ``column`` (inside lists and structs too) is 2**53 or more,
    where an integer may have been rounded."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    rows = np.zeros(len(column), dtype=bool)
    kind = column.type
    if pa.types.is_floating(kind):
        large = pc.greater_equal(pc.abs(column), _EXACT_FLOAT_LIMIT)
        rows = large.fill_null(False).to_numpy(zero_copy_only=False)
    elif isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        inner = _large_floats(column.flatten())
        if inner.any():
            parents = pc.list_parent_indices(column).to_numpy()
            rows = np.bincount(parents[inner], minlength=len(column)) > 0
    elif isinstance(kind, pa.StructType):
        for i in range(kind.num_fields):
            if _has_float(kind.field(i).type):
                rows |= _large_floats(column.field(i))
    return rows


_LONG = 16  # digits of 2**53 (9007199254740992): a shorter integer is exact as a float


def _long_integers(data: bytes) -> np.ndarray:
    """Where runs of at least 16 digits that are not the fraction of a number or followed by
    one start in ``data``: the integers a float may change (and some text, which is then read
    and found harmless)."""
    a = np.frombuffer(data, dtype=np.uint8)
    digit = np.zeros(a.size + 2, dtype=np.int8)
    digit[1:-1] = (a - np.uint8(ord("0"))) < 10  # uint8: the bytes below "0" wrap past 10
    edges = np.diff(digit)
    begin = np.flatnonzero(edges == 1)
    end = np.flatnonzero(edges == -1)
    long = (end - begin) >= _LONG
    begin, end = begin[long], end[long]
    if begin.size == 0:
        return begin
    before = np.where(begin > 0, a[np.maximum(begin - 1, 0)], 0)
    after = np.where(end < a.size, a[np.minimum(end, a.size - 1)], 0)
    integer = (before != ord(".")) & ~np.isin(after, np.frombuffer(b".eE", dtype=np.uint8))
    found: np.ndarray = begin[integer]
    return found


def _inexact(value: Any, kind: pa.DataType) -> int | None:
    """The first integer in ``value`` (as :func:`parse_json` reads it) that a float where
    ``kind`` holds one would change, or None."""
    if isinstance(value, bool) or value is None:
        return None
    if pa.types.is_floating(kind):
        return value if isinstance(value, int) and _as_float(value) != value else None
    if isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType) and isinstance(
        value, list
    ):
        for item in value:
            if (found := _inexact(item, kind.value_type)) is not None:
                return found
    if isinstance(kind, pa.StructType) and isinstance(value, dict):
        for f in kind:
            if (found := _inexact(value.get(f.name), f.type)) is not None:
                return found
    return None


def _inexact_reason(name: str, kind: pa.DataType, value: int) -> str:
    """Why a line is refused whose field ``name`` of inferred type ``kind`` holds the integer
    ``value``, which a float would change."""
    fix = (
        f"write such numbers as strings in field {name!r} to keep every digit"
        if pa.types.is_nested(kind)
        else f"declare {name}: decimal(38,0), int or str under `types` to keep every digit"
    )
    return (
        f"field {name!r}: the integer {value} cannot be held exactly by a float, the type "
        f"inferred for {name!r} from the first lines (it would become {_as_float(value)}); " + fix
    )


def _as_float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _base64_decoded(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Binary fields, read as base64 text, as their bytes (how binary values travel in JSON);
    text that is not base64 raises ArrowInvalid."""
    for f in schema:
        if not (pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)):
            continue
        at = table.schema.get_field_index(f.name)
        if at < 0 or not pa.types.is_string(table.schema.field(at).type):
            continue
        try:
            values = [
                None if v is None else base64.b64decode(v, validate=True)
                for v in table.column(at).to_pylist()
            ]
        except (binascii.Error, ValueError) as exc:
            raise pa.ArrowInvalid(f"field '{f.name}' is not base64 text: {exc}") from None
        table = table.set_column(at, f.name, pa.array(values, f.type))
    return table


def _has_map(kind: pa.DataType) -> bool:
    """Whether ``kind`` is a map or holds one in a list or struct."""
    if isinstance(kind, pa.MapType):
        return True
    if isinstance(kind, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        return _has_map(kind.value_type)
    if isinstance(kind, pa.StructType):
        return any(_has_map(f.type) for f in kind)
    return False


def _line_problem(raw: bytes, names: list[str]) -> pa.ArrowInvalid:
    """What :meth:`JsonlSource._explain` is told of a line the value rules could not read
    (it finds bad bytes and JSON that is no object itself)."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return pa.ArrowInvalid("the line is not JSON")
    if isinstance(record, dict) and set(record) - set(names):
        return pa.ArrowInvalid("JSON parse error: unexpected field")
    return pa.ArrowInvalid("a value does not match the schema fixed from the first lines")


def _read_type(kind: pa.DataType) -> pa.DataType:
    """The type pyarrow.json reads for a declared type (text for what JSON has no type for)."""
    if (
        pa.types.is_date(kind)
        or pa.types.is_time(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_duration(kind)
        or pa.types.is_interval(kind)
    ):
        return pa.string()
    return kind


#: The type inferred for a field of integers, one of them past int64: every integer of up to
#: 38 digits, exactly
_WIDE_INTEGER = pa.decimal128(38, 0)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _integers_past_int64(data: bytes | memoryview, names: list[str]) -> set[str]:
    """The fields among ``names`` whose values in the JSON lines ``data`` are all integers
    (or null), one of them at least past int64. The lines are read one by one only when
    ``data`` holds a run of 16 digits or more, so a sample without one costs one pass."""
    text = bytes(data)
    if not names or _long_integers(text).size == 0:
        return set()
    whole, past = set(names), set()
    for line in text.splitlines():
        try:
            record = parse_json(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        for name in list(whole):
            value = record.get(name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                whole.discard(name)
            elif not _INT64_MIN <= value <= _INT64_MAX:
                past.add(name)
        if not whole:
            break
    return whole & past


def _as_json_typed(kind: pa.DataType) -> pa.DataType:
    """The inferred type with JSON's own meaning: text that looks like a timestamp stays text
    (JSON has no dates; declare them in `types`), and all-null fields become strings."""
    if pa.types.is_null(kind) or pa.types.is_timestamp(kind):
        return pa.string()
    if pa.types.is_list(kind):
        return pa.list_(kind.value_field.with_type(_as_json_typed(kind.value_type)))
    if pa.types.is_struct(kind):
        return pa.struct([f.with_type(_as_json_typed(f.type)) for f in kind.fields])
    return kind


def _json_problem(raw: bytes) -> str | None:
    """Why a line is not a JSON object, or None when it is one."""
    try:
        value: Any = orjson.loads(raw.rstrip(b"\r\n"))
    except orjson.JSONDecodeError as exc:
        if "surrogate" in str(exc):  # say which escape, as the other JSON readers do
            try:
                parse_json(raw)
            except ValueError as refused:
                return f"invalid JSON: {refused}"
        if b"\r" in raw.rstrip(b"\r\n") and "after document" in str(exc):
            return (
                f"invalid JSON: {exc}; the line holds carriage returns between records (a file "
                "with CR line endings): JSON Lines ends each record with LF or CRLF, so convert "
                "the file's line endings"
            )
        return f"invalid JSON: {exc}"
    if not isinstance(value, dict):
        return f"expected a JSON object, found {type(value).__name__}"
    return None


def _utf8(block: bytes) -> bool:
    """Whether ``block`` is valid UTF-8 (Arrow's check: some ten times as fast as decoding it)."""
    offsets = pa.py_buffer(np.array([0, len(block)], dtype=np.int64).tobytes())
    text = pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(block))
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


#: Arrow reads of a block after which the lines left are read by the value rules rather than
#: halved further: isolating one bad line of a block takes about twice its depth (2 x 15 for
#: 20,000 lines), while many lines Arrow refuses would take one read a line and more.
_HALVING_READS = 64


def _gather(block: bytes, starts: np.ndarray, ends: np.ndarray) -> bytes | memoryview:
    view = memoryview(block)
    breaks = np.flatnonzero(starts[1:] != ends[:-1]) + 1
    if breaks.size == 0:
        return view[int(starts[0]) : int(ends[-1])]
    seg_starts = starts[np.r_[0, breaks]].tolist()
    seg_ends = ends[np.r_[breaks - 1, ends.size - 1]].tolist()
    parts = [bytes(view[s:e]) for s, e in zip(seg_starts, seg_ends, strict=True)]
    return b"".join(p if p.endswith(b"\n") else p + b"\n" for p in parts)
