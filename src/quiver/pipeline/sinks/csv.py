"""The ``csv`` sink (also ``tsv`` and ``psv``): delimited text, written atomically.

Rows are serialised column-wise with ``pyarrow.compute`` (no per-row Python): every column is
turned into text (lists, structs and maps as JSON), quoted as asked, joined with the delimiter
and the line terminator (with ``quoting: all`` or ``none``, a quote of ``"`` and a one-byte
delimiter, Arrow's CSV writer quotes and joins the text columns in one pass and writes the same
bytes). The output is lossless for the ``csv`` source's defaults: a null is
written as ``null_string`` (empty by default) and an empty string as ``""``, and any value that
equals ``null_string`` or holds a delimiter, quote or line break is quoted.

The file is written as ``<name>.tmp-<run id>`` and renamed into place on commit; abort deletes
it, so a failed run never leaves a partial file.
"""

from __future__ import annotations

import asyncio
import codecs
import re
from typing import Literal, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field, field_validator, model_validator

from quiver.pipeline import kernels as pc
from quiver.pipeline import streams
from quiver.pipeline.arrow_build import text_array, text_scalar
from quiver.pipeline.component import (
    LINE_COLUMN,
    FileWriting,
    RunContext,
    schema_without_line,
    sink,
    without_line,
)
from quiver.pipeline.config_fields import Encoding
from quiver.pipeline.encodings import normalize_encoding
from quiver.pipeline.json_text import json_strings
from quiver.pipeline.output import (
    AtomicOutput,
    Serialized,
    TextSinkConfig,
    concatenated_text,
    open_output,
    serialized_in_slices,
)
from quiver.pipeline.value_text import scalar_texts, with_kept_decimal_text
from quiver.runtime.errors import PermanentError, QuiverError

__all__ = ["CsvSink", "CsvSinkConfig", "serialize_csv"]

Quoting = Literal["minimal", "all", "none"]

_SLICE_BYTES = 256 << 20
_TERMINATORS = {"\n": "\n", "\r\n": "\r\n", "\r": "\r", "lf": "\n", "crlf": "\r\n", "cr": "\r"}


class CsvSinkConfig(TextSinkConfig):
    """Write delimited text (CSV, TSV, PSV or any delimiter)."""

    delimiter: str = Field(",", description="Field separator (one or more characters).")
    quote: str = Field('"', description="Quote character.")
    escape: str | None = Field(
        None,
        description='Write quotes inside quoted fields as escape+quote (e.g. \\") instead '
        "of doubling them; with `quoting: none` the delimiter and line breaks are escaped.",
    )
    quoting: Quoting = Field(
        "minimal",
        description="minimal: quote only fields that need it (delimiter, quote, line break, "
        "empty string, the null string); all: quote every non-null field; none: never quote "
        "(a value that would need quotes is an error unless `escape` is set).",
    )
    header: bool = Field(True, description="Write the column names first.")
    line_terminator: str = Field(
        "\n", description='Line terminator: "\\n" (lf), "\\r\\n" (crlf) or "\\r" (cr).'
    )
    null_string: str = Field("", description="Text written for a null value.")
    encoding: Encoding = Field(
        "utf-8", description="Output encoding (utf-8, utf-8-sig for a BOM, latin-1, cp1252...)."
    )

    @field_validator("line_terminator")
    @classmethod
    def _known_terminator(cls, value: str) -> str:
        if value.lower() not in _TERMINATORS:
            raise ValueError(f"must be lf, crlf or cr, got {value!r}")
        return _TERMINATORS[value.lower()]

    @field_validator("quote")
    @classmethod
    def _one_quote(cls, value: str) -> str:
        if len(value) != 1 or value in "\r\n":
            raise ValueError(f"must be one character other than a line break, got {value!r}")
        return value

    @field_validator("delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if not value or "\n" in value or "\r" in value:
            raise ValueError(f"must be non-empty and hold no line break, got {value!r}")
        return value

    @model_validator(mode="after")
    def _delimiter_apart_from_quote(self) -> CsvSinkConfig:
        clash = [c for c in (self.quote, self.escape) if c and c in self.delimiter]
        if clash:
            raise ValueError(
                f"the delimiter {self.delimiter!r} holds the quote or escape character "
                f"{clash[0]!r}, so values could not be told apart; choose another delimiter"
            )
        # a null is written as it is, never quoted (quoted text reads back as a value)
        null = self.null_string
        breaking = [
            (what, part)
            for what, part in (
                ("holds the delimiter", self.delimiter),
                ("holds a line break", "\n"),
                ("holds a line break", "\r"),
                ("holds the escape character", self.escape or ""),
            )
            if part and part in null
        ]
        q = self.quote
        if null.startswith(q) and not (
            len(null) >= 2 and null.endswith(q) and q not in null[1:-1].replace(q + q, "")
        ):  # a whole quoted field ('"null"') reads back as one, as its text
            breaking.append(("opens a quote it does not close with", q))
        if breaking:
            what, part = breaking[0]
            raise ValueError(
                f"null_string {null!r} {what} {part!r}: written unquoted, as nulls are, "
                "it would not read back as one field; choose a null string without it"
            )
        return self


def _text(column: pa.Array | pa.ChunkedArray, name: str, lines: pa.Array | None = None) -> pa.Array:
    """The column as strings, the way the CSV source reads them back (``lines``: the rows'
    input lines, for the message naming a value that cannot be text)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return column.cast(pa.string())
    if pa.types.is_dictionary(kind):
        return _text(column.dictionary_decode(), name, lines)
    if pa.types.is_nested(kind):
        return json_strings(column)
    if pa.types.is_fixed_size_binary(kind):
        return _text(column.cast(pa.binary()), name, lines)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:
            return column.cast(pa.string())
        except pa.ArrowInvalid as exc:
            at, value = next(
                (k, v)
                for k, v in enumerate(column.to_pylist())
                if v is not None and not _is_utf8(v)
            )
            line = lines[at].as_py() if lines is not None else None
            shown = value[:40].decode("utf-8", "backslashreplace")
            raise PermanentError.one(
                f"column {name!r} holds bytes that are not UTF-8 text: '{shown}'"
                + ("..." if len(value) > 40 else ""),
                f"row from line {line}" if line is not None else f"column {name}",
                "write binary data to parquet or arrow, or encode it first (sql: base64(...))",
            ) from exc
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.string())
    return scalar_texts(column)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _structural_pattern(cfg: CsvSinkConfig) -> str:
    """What makes a value need quotes: the quote, a line break, the escape, the delimiter, and
    for a delimiter of several characters, a value ending with its beginning or starting with
    its end, which would merge with the delimiter beside it (``a|`` + ``||``)."""
    chars = {cfg.quote, "\r", "\n"}
    if cfg.escape:
        chars.add(cfg.escape)
    parts = [re.escape(c) for c in sorted(chars)] + [re.escape(cfg.delimiter)]
    parts += [re.escape(head) + "$" for head in _delimiter_heads(cfg.delimiter)]
    parts += ["^" + re.escape(tail) for tail in _delimiter_tails(cfg.delimiter)]
    return "|".join(parts)


def _delimiter_heads(delimiter: str) -> list[str]:
    """The proper beginnings of a delimiter of several characters (``;`` of ``;;``)."""
    return [delimiter[:i] for i in range(1, len(delimiter))]


def _delimiter_tails(delimiter: str) -> list[str]:
    """The proper ends of a delimiter of several characters."""
    return [delimiter[i:] for i in range(1, len(delimiter))]


_ARROW_STYLES: dict[Quoting, str] = {"all": "all_valid", "none": "none"}


def _arrow_options(cfg: CsvSinkConfig) -> pacsv.WriteOptions | None:
    """Options with which Arrow's CSV writer writes exactly what the column-wise path writes
    for text columns, or None: Arrow always quotes with ``"`` and doubles it inside, takes a
    one-byte delimiter and a null string without quotes, and quotes every string or none."""
    style = _ARROW_STYLES.get(cfg.quoting)
    if (
        style is None
        or cfg.quote != '"'
        or cfg.escape is not None
        or len(cfg.delimiter.encode()) != 1
        or '"' in cfg.null_string
    ):
        return None
    return pacsv.WriteOptions(
        include_header=False,
        batch_size=_ARROW_BATCH_ROWS,
        delimiter=cfg.delimiter,
        eol=cfg.line_terminator,
        null_string=cfg.null_string,
        quoting_style=style,
    )


_ARROW_BATCH_ROWS = 1 << 16


_END = 1 << 62  # past the end of any value: a slice there appends


def _prepended(values: pa.Array, text: str) -> pa.Array:
    """Each value with ``text`` before it (a null stays null)."""
    return pc.binary_replace_slice(values, start=0, stop=0, replacement=text)


def _appended(values: pa.Array, text: str) -> pa.Array:
    """Each value with ``text`` after it (a null stays null)."""
    return pc.binary_replace_slice(values, start=_END, stop=_END, replacement=text)


def _offsets_and_text(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string array's offsets (``len + 1`` of them) and the bytes of its values, as views."""
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)
    offsets = offsets[values.offset : values.offset + len(values) + 1]
    if data_buffer is None:
        return offsets, np.zeros(0, dtype=np.uint8)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    return offsets, data


def _valid_values(values: pa.Array) -> np.ndarray:
    """Which values of ``values`` are not null, from its validity bitmap."""
    bitmap = values.buffers()[0]
    if bitmap is None:
        return np.ones(len(values), dtype=bool)
    bits = np.unpackbits(
        np.frombuffer(bitmap, dtype=np.uint8), count=values.offset + len(values), bitorder="little"
    )
    valid: np.ndarray = bits[values.offset :].view(bool)
    return valid


class _Serializer:
    def __init__(self, cfg: CsvSinkConfig, *, arrow_writer: bool = True) -> None:
        self.cfg = cfg
        self.arrow_options = _arrow_options(cfg) if arrow_writer else None
        self.pattern = _structural_pattern(cfg)
        self.quote_scalar = text_scalar(cfg.quote)
        self.null_scalar = text_scalar(cfg.null_string)
        self.empty_scalar = text_scalar("")
        self.quote_bytes = cfg.quote.encode()
        self.delimiter_scalar = text_scalar(cfg.delimiter)
        parts = {cfg.quote, "\r", "\n", cfg.delimiter} | ({cfg.escape} if cfg.escape else set())
        if len(cfg.delimiter) > 1:  # a value may end with its first or start with its last
            parts |= {cfg.delimiter[0], cfg.delimiter[-1]}
        encoded = [part.encode() for part in parts]
        self.structural_bytes = [e[0] for e in encoded if len(e) == 1]
        self.structural_texts = [e for e in encoded if len(e) > 1]

    def _unquotable(self, values: pa.Array) -> bool:
        """Whether a value holds what ``quoting: none`` cannot write as it is."""
        return (
            len(values) > 0
            and self._may_need_quotes(values)
            and pc.any(pc.match_substring_regex(values, self.pattern)).as_py()
        )

    def _refuse_unquotable(self, values: pa.Array, name: str, lines: pa.Array | None) -> NoReturn:
        bad = pc.index(pc.match_substring_regex(values, self.pattern), True).as_py()
        line = lines[bad].as_py() if lines is not None else None
        raise PermanentError.one(
            f"column {name!r}: value {values[bad].as_py()!r} holds the delimiter, "
            "the quote or a line break and cannot be written unquoted",
            f"row from line {line}" if line else f"column {name}",
            "use `quoting: minimal`, or set `escape`",
        )

    def field(self, values: pa.Array, name: str, lines: pa.Array | None) -> pa.Array:
        cfg = self.cfg
        if cfg.quoting == "none":
            if self._unquotable(values):
                if not cfg.escape:
                    self._refuse_unquotable(values, name, lines)
                values = pc.replace_substring(values, cfg.escape, cfg.escape * 2)
                # every character of the delimiter, so no part of one merges with the next
                for char in dict.fromkeys((cfg.quote, *cfg.delimiter, "\r", "\n")):
                    values = pc.replace_substring(values, char, cfg.escape + char)
            out = values
        else:
            if cfg.quoting == "all":
                out = self._quoted(values)
            else:
                out = self._quoted_where_needed(values)
        return pc.fill_null(out, self.null_scalar)

    def _quoted(self, values: pa.Array, quotes: bool | None = None) -> pa.Array:
        """``values`` in quotes; ``quotes``: whether any holds the quote, when already known."""
        # inserting at both ends is several times faster than joining three pieces per row
        return _appended(_prepended(self._escape(values, quotes), self.cfg.quote), self.cfg.quote)

    def _quoted_where_needed(self, values: pa.Array) -> pa.Array:
        if self.structural_texts:
            if not self._may_need_quotes(values):
                return values
            found = pc.or_(
                pc.match_substring_regex(values, self.pattern),
                pc.equal(values, self.null_scalar),
            )
            if self.cfg.null_string != "":
                found = pc.or_(found, pc.equal(values, self.empty_scalar))
            return pc.if_else(found, self._quoted(values), values)
        needs, quotes = self._rows_needing_quotes(values)
        count = int(np.count_nonzero(needs))
        if count == 0:
            return values
        if count + values.null_count == len(values):  # a null is null in both
            return self._quoted(values, quotes)
        # a boolean array from the packed bits (pa.array of an ndarray imports numpy.ma)
        bits = pa.py_buffer(np.packbits(needs, bitorder="little"))
        mask = pa.Array.from_buffers(pa.bool_(), len(needs), [None, bits])
        return pc.if_else(mask, self._quoted(values, quotes), values)

    def _rows_needing_quotes(self, values: pa.Array) -> tuple[np.ndarray, bool]:
        """Which values need quotes (the empty string, the null string, or a structural
        character; never a null), and whether any holds the quote character: found in one
        pass over the text buffer with NumPy (every structural character is one byte)."""
        offsets, data = _offsets_and_text(values)
        needs: np.ndarray = offsets[1:] == offsets[:-1]  # empty (or null: cleared below)
        if self.cfg.null_string:
            same = pc.fill_null(pc.equal(values, self.null_scalar), False)
            needs |= same.to_numpy(zero_copy_only=False)
        # Only the structural bytes the text holds at all are looked for value by value: a
        # search of the bytes for each (memchr) costs a fraction of a comparison pass, and
        # most columns hold none of them, or one.
        text = data.tobytes()
        present = [byte for byte in self.structural_bytes if text.find(byte) >= 0]
        quotes = self.quote_bytes[0] in present
        if present:
            # One byte more at the end, so that empty values there start inside the array
            # (moving their start back would cut the value before them short); an empty
            # value reads its neighbour's first byte, but needs quotes anyway (or is null).
            padded = np.zeros(data.size + 1, dtype=bool)
            hit = padded[:-1]
            np.equal(data, present[0], out=hit)
            for byte in present[1:]:
                hit |= data == byte
            hits = int(np.count_nonzero(hit))
            if hits * 2 < len(needs):  # few: find the value of each
                at = np.flatnonzero(hit) + offsets[0]
                needs[np.searchsorted(offsets, at, side="right") - 1] = True
            else:  # many: whether each value's bytes hold one, in one pass
                needs |= np.logical_or.reduceat(padded, offsets[:-1] - offsets[0])
        if values.null_count:
            needs &= _valid_values(values)
        return needs, quotes

    def _escape(self, values: pa.Array, quotes: bool | None = None) -> pa.Array:
        cfg = self.cfg
        if cfg.escape:
            values = pc.replace_substring(values, cfg.escape, cfg.escape * 2)
            values = pc.replace_substring(values, cfg.quote, cfg.escape + cfg.quote)
        elif len(self.quote_bytes) > 1 or (
            quotes
            if quotes is not None
            else (_offsets_and_text(values)[1] == self.quote_bytes[0]).any()
        ):
            values = pc.replace_substring(values, cfg.quote, cfg.quote * 2)
        return values

    def _may_need_quotes(self, values: pa.Array) -> bool:
        """Whether any value could need quotes, from one pass over the column's text buffer."""
        if len(values) == 0 or values.null_count == len(values):
            return False
        offsets, data = _offsets_and_text(values)
        if (np.diff(offsets) == 0).any() and (
            values.null_count == 0 or pc.any(pc.equal(values, self.empty_scalar)).as_py()
        ):
            return True  # an empty string must be quoted to differ from a null
        if self.cfg.null_string and pc.any(pc.equal(values, self.null_scalar)).as_py():
            return True
        if any((data == byte).any() for byte in self.structural_bytes):
            return True
        if self.structural_texts:
            text = data.tobytes()
            return any(part in text for part in self.structural_texts)
        return False

    def header(self, names: list[str]) -> str:
        values = text_array(list(names))
        fields = self.field(values, "header", None).to_pylist()
        return self.cfg.delimiter.join(fields) + self.cfg.line_terminator

    def rows(self, batch: pa.RecordBatch) -> Serialized:
        """The batch's rows as CSV bytes (UTF-8)."""
        return serialized_in_slices(batch, self._rows, _SLICE_BYTES)

    def _rows(self, batch: pa.RecordBatch) -> Serialized:
        lines = batch.column(LINE_COLUMN) if LINE_COLUMN in batch.schema.names else None
        data: pa.RecordBatch = without_line(with_kept_decimal_text(batch))
        if data.num_rows == 0:
            return b""
        if self.arrow_options is not None and data.num_columns:
            return self._rows_by_arrow(data, lines)
        fields = [
            self.field(_text(data.column(i), name, lines), name, lines)
            for i, name in enumerate(data.schema.names)
        ]
        if not fields:
            return self.cfg.line_terminator.encode() * int(data.num_rows)
        # The line terminator goes onto the last field, so the rows are joined in one pass.
        fields[-1] = _appended(fields[-1], self.cfg.line_terminator)
        rows = pc.binary_join_element_wise(*fields, self.delimiter_scalar)
        return concatenated_text(rows)

    def _rows_by_arrow(self, data: pa.RecordBatch, lines: pa.Array | None) -> Serialized:
        """The rows written by Arrow's CSV writer from the same text columns."""
        columns = [_text(data.column(i), name, lines) for i, name in enumerate(data.schema.names)]
        if self.cfg.quoting == "none":
            for values, name in zip(columns, data.schema.names, strict=True):
                if self._unquotable(values):
                    self._refuse_unquotable(values, name, lines)
        text = pa.RecordBatch.from_arrays(columns, names=[str(i) for i in range(len(columns))])
        out = pa.BufferOutputStream()
        pacsv.write_csv(text, out, self.arrow_options)
        return memoryview(out.getvalue())


def serialize_csv(batch: pa.RecordBatch, cfg: CsvSinkConfig, header: bool = False) -> str:
    """A batch as CSV text with ``cfg``'s options (used by tests and the dry-run preview)."""
    serializer = _Serializer(cfg)
    head = serializer.header(schema_without_line(batch.schema).names) if header else ""
    return head + bytes(serializer.rows(batch)).decode("utf-8")


@sink("csv", config=CsvSinkConfig)
class CsvSink(FileWriting):
    """Delimited text files, serialised column-wise and renamed into place on commit."""

    def __init__(self, cfg: CsvSinkConfig) -> None:
        self.cfg = cfg
        self.encoding = normalize_encoding(cfg.encoding, "encoding")
        self.serializer = _Serializer(cfg)
        self.output: AtomicOutput | None = None
        self.stream: pa.NativeFile | None = None
        self.rows_written = 0
        self._encoder: codecs.IncrementalEncoder | None = None
        self._bom = b""
        self._schema: pa.Schema | None = None
        self.guard = streams.DestinationGuard(cfg.path)

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        self._schema = schema_without_line(schema)
        await asyncio.to_thread(self._open, ctx)

    def _open(self, ctx: RunContext) -> None:
        assert self._schema is not None
        self.output, self.stream = open_output(self.cfg, ctx, self.cfg.compression)
        self.guard.path = self.output.path
        if self.encoding == "utf-8-sig":  # the byte order mark, then the UTF-8 as it is
            self._bom = codecs.BOM_UTF8
        elif self.encoding != "utf-8":
            self._encoder = codecs.getincrementalencoder(self.encoding)(errors="strict")
        if self.cfg.header and self._schema.names:  # no columns known: an empty file
            self._write_text(self.serializer.header(self._schema.names).encode("utf-8"), None)

    def _write_text(self, data: Serialized, batch: pa.RecordBatch | None) -> None:
        assert self.stream is not None
        if self._encoder is not None:
            text = bytes(data).decode("utf-8")
            try:
                data = self._encoder.encode(text)
            except UnicodeEncodeError as exc:
                raise self._encoding_error(exc, text, batch) from exc
        if self._bom:  # before the first bytes written, as an encoder would
            data, self._bom = self._bom + data, b""
        with self.guard.writing():
            self.stream.write(data)

    def _encoding_error(
        self, exc: UnicodeEncodeError, text: str, batch: pa.RecordBatch | None
    ) -> QuiverError:
        row = text.count(self.cfg.line_terminator, 0, exc.start)
        where = f"column names of {self.cfg.path}"
        if batch is not None:
            where = f"row {row + 1} of the batch"
            if LINE_COLUMN in batch.schema.names and row < batch.num_rows:
                where = f"row from line {batch.column(LINE_COLUMN)[row].as_py()}"
        char = exc.object[exc.start : exc.end]
        return PermanentError.one(
            f"{char!r} cannot be written in {self.cfg.encoding}",
            where,
            "write utf-8 (the default), or replace the character in a processor",
        )

    async def write(self, batch: pa.RecordBatch) -> None:
        await asyncio.to_thread(self._write, batch)

    def _write(self, batch: pa.RecordBatch) -> None:
        data = self.serializer.rows(batch)
        if data:
            self._write_text(data, batch)
        self.rows_written += batch.num_rows

    async def commit(self) -> None:
        if self.output is not None:
            await asyncio.to_thread(self._commit)

    def _commit(self) -> None:
        assert self.output is not None
        with self.guard.writing():
            if self._encoder is not None and self.stream is not None:
                tail = self._encoder.encode("", final=True)
                if tail:
                    self.stream.write(tail)
            self.output.commit()

    async def abort(self) -> None:
        if self.output is not None:
            await asyncio.to_thread(self.output.abort)
