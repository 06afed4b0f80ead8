"""The ``csv`` source (also ``tsv`` and ``psv``): delimited text files, streamed in blocks.

Files are read ``block_size`` bytes at a time, so memory stays bounded whatever the file size.
Each block is cut at a record boundary found by a vectorised scan (NumPy over the block's bytes:
line breaks outside quoted fields end a record), which also yields the exact 1-based line
number of every record, even when quoted fields hold line breaks. The complete records are
then parsed by ``pyarrow.csv``, a block at a time in the source's thread (the steps and sinks
after it use the other cores). Most blocks need no scan: once the columns are known, a block
is parsed whole first and kept when as many rows come back as it has lines (see
``CsvSource._one_line_records``); any other block is scanned. Rows that cannot be read (a
wrong number of fields, an unterminated quote, text after a closing quote (``"a"b``, which
RFC 4180 refuses and Arrow's parser would read as ``ab``), bytes invalid in the file's
encoding, a value that does not convert to its declared type) are found exactly, without
slowing down the good rows, and handled by ``on_malformed``:

* ``reject`` (default): the row becomes a :class:`~quiver.pipeline.component.RowError` with its
  line number and reason, which the engine writes to the rejects file; the rest flows on.
* ``skip``: the row is dropped and counted (see :attr:`CsvSource.skipped`).
* ``fail``: the run stops with a ``PermanentError`` naming ``file:line`` and the problem.

Values are strings unless ``types`` declares a column's type or ``infer: true`` asks for type
inference (from the first block of the first file; the types are then fixed for the run).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field, field_validator, model_validator

from quiver.pipeline import kernels as pc
from quiver.pipeline.component import (
    LINE_COLUMN,
    ByteCounting,
    ComponentConfig,
    FileReading,
    RowRejecting,
    kept_text_column,
    source,
)
from quiver.pipeline.config_fields import ColumnTypes, Encoding
from quiver.pipeline.conform import cast_column
from quiver.pipeline.encodings import describe_bad_bytes, normalize_encoding, raw_text
from quiver.pipeline.line_numbers import line_column, line_feeds
from quiver.pipeline.paths import display_path
from quiver.pipeline.sources.file_source import FileSource, MalformedPolicy, joined_pieces
from quiver.pipeline.streams import Compression
from quiver.pipeline.type_names import parse_type
from quiver.pipeline.value_text import (
    HUGE_EXPONENT,
    decimal_misfit,
    decimals_from_text,
    refuse_huge_exponents,
    without_decimal_text,
)
from quiver.runtime.errors import PermanentError
from quiver.runtime.hints import did_you_mean

__all__ = [
    "BlockBuffer",
    "CsvSource",
    "CsvSourceConfig",
    "Delimiters",
    "misquoted_body",
    "scan_records",
]

_NL = 10
_CR = 13

#: A block of UTF-8 being read: the bytes of the file, or a buffer reused for the next block
Bytes = bytes | bytearray


def _one_char(value: str | None, allow_none: bool) -> str | None:
    if value is None:
        if allow_none:
            return None
        raise ValueError("cannot be null")
    if len(value) != 1 or ord(value) > 127:
        raise ValueError(
            f"must be a single ASCII character, got {value!r}"
            + (' (write a tab as "\\t" in double quotes)' if value in ("\\t", "tab") else "")
        )
    if value in "\r\n":
        raise ValueError("cannot be a line break")
    return value


class CsvSourceConfig(ComponentConfig):
    """Read delimited text files (CSV, TSV, PSV or any single-character delimiter)."""

    path: str | list[str] = Field(
        description="File, glob (`in/*.csv`, `logs/**/*.csv.gz`) or list of them, read in "
        "sorted order; `-` reads standard input. Relative to the pipeline file."
    )
    delimiter: str = Field(",", description="Field separator: one ASCII character.")
    quote: str | None = Field(
        '"', description="Quote character around fields; null disables quoting."
    )
    double_quote: bool = Field(
        True, description='A doubled quote inside a quoted field is a literal quote ("").'
    )
    escape: str | None = Field(
        None,
        description="Escape character (e.g. `\\`) that makes the next character literal; "
        "off by default.",
    )
    strict_quotes: bool = Field(
        True,
        description='Text after the closing quote of a quoted field (`"a"b`) makes its row '
        "malformed, as RFC 4180 asks; false reads it joined to the quoted text (`ab`), as "
        "Arrow's and Python's readers do, and skips the check (about a tenth of the CPU, "
        "though little of the time, of a copy of a file full of quoted fields).",
    )
    header: bool = Field(
        True,
        description="The first record holds the column names. Without a header the columns "
        "are named by `columns` or col1, col2, ...",
    )
    columns: list[str] | None = Field(
        None,
        description="Column names. With `header: true` they replace the names in the header "
        "(whose record is skipped); their number must match the fields.",
    )
    select: list[str] | None = Field(
        None,
        description="Columns to keep, in this order (all when unset); the others are "
        "checked for the field count but never converted.",
    )
    types: ColumnTypes = Field(
        default_factory=dict,
        description="Column types by name (str, int, float, bool, date, datetime, time, "
        "decimal(p,s), ...). Columns not listed are strings (or inferred with `infer`).",
    )
    infer: bool = Field(
        False,
        description="Infer the types of columns not listed in `types` from the first block "
        "of the first file; they stay fixed for the whole run.",
    )
    null_values: list[str] = Field(
        default_factory=lambda: [""],
        description='Unquoted values read as null. A quoted empty field ("") stays an '
        "empty string.",
    )
    true_values: list[str] | None = Field(
        None, description="Values read as true in bool columns (default 1, true, True, TRUE)."
    )
    false_values: list[str] | None = Field(
        None, description="Values read as false in bool columns (default 0, false, False, FALSE)."
    )
    timestamp_formats: list[str] | None = Field(
        None,
        description="strptime formats tried for datetime columns (default: ISO 8601).",
    )
    decimal_point: str = Field(".", description="Decimal separator of float/decimal columns.")
    encoding: Encoding = Field(
        "utf-8",
        description="Text encoding (utf-8, utf-8-sig, latin-1, cp1252, utf-16, ...). A "
        "byte-order mark is dropped.",
    )
    compression: Compression = Field(
        "auto", description="auto (from the extension: .gz, .zst, .bz2), none, gzip, zstd, bz2."
    )
    skip_lines: int = Field(0, ge=0, description="Lines skipped before the header (or data).")
    on_malformed: MalformedPolicy = Field(
        "reject",
        description="What to do with a row that cannot be read: reject (to the rejects "
        "file, with its line), skip (count it), fail (stop the run).",
    )
    block_size: int = Field(
        2 << 20, ge=1, description="Bytes read and parsed at a time (bounds memory)."
    )
    max_record_bytes: int = Field(
        64 << 20,
        ge=1,
        description="Longest record accepted, in bytes, line breaks inside quotes "
        "included. A longer one is malformed (rejected whole, with its first line); a quote "
        "left open that would make the rest of the file one record is reported as such.",
    )
    batch_rows: int = Field(65_536, ge=1, description="Most rows per batch handed on.")

    @field_validator("delimiter", "decimal_point")
    @classmethod
    def _single_char(cls, value: str) -> str:
        checked = _one_char(value, allow_none=False)
        assert checked is not None
        return checked

    @field_validator("quote", "escape")
    @classmethod
    def _optional_char(cls, value: str | None) -> str | None:
        return _one_char(value, allow_none=True)

    @model_validator(mode="after")
    def _distinct_characters(self) -> CsvSourceConfig:
        chars = {"delimiter": self.delimiter, "quote": self.quote, "escape": self.escape}
        used = {k: v for k, v in chars.items() if v is not None}
        if len(set(used.values())) != len(used):
            raise ValueError(f"delimiter, quote and escape must differ, got {used}")
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            dupes = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise ValueError(f"columns: duplicate names {dupes}")
        spelt_true = self.true_values if self.true_values is not None else _TRUE_SPELLINGS
        spelt_false = self.false_values if self.false_values is not None else _FALSE_SPELLINGS
        both = sorted(set(spelt_true) & set(spelt_false))
        if both:
            raise ValueError(
                f"{', '.join(map(repr, both))} would be read both as true (true_values) and as "
                "false (false_values); list each spelling under one of them (either list left "
                f"out is {', '.join(_TRUE_SPELLINGS)} / {', '.join(_FALSE_SPELLINGS)})"
            )
        return self


#: How a bool column spells true and false unless ``true_values`` / ``false_values`` say
#: otherwise (Arrow's defaults).
_TRUE_SPELLINGS = ["1", "true", "True", "TRUE"]
_FALSE_SPELLINGS = ["0", "false", "False", "FALSE"]


# -- the record scanner -----------------------------------------------------------------------


@dataclass(frozen=True)
class Delimiters:
    """The structural bytes of a CSV file."""

    delimiter: int
    quote: int | None = 34
    escape: int | None = None
    double_quote: bool = True


@dataclass
class Scan:
    """Complete records found in a buffer of UTF-8 bytes.

    ``starts``/``ends`` are byte offsets (``ends`` just past the line break); ``lines`` is the
    0-based line of each record's start relative to the buffer; ``consumed`` is where the last
    complete record ends and ``consumed_lines`` the line breaks before it. ``open_quote``
    says the bytes after ``consumed`` start a record whose quote is still open.
    ``misquoted`` holds the offsets of closing quotes that text follows (``"a"b``).
    """

    starts: np.ndarray
    ends: np.ndarray
    lines: np.ndarray
    consumed: int
    consumed_lines: int
    quoted_newlines: bool
    open_quote: bool
    has_quotes: bool = False
    toggles: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    escaped: np.ndarray | None = None
    misquoted: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))


def _escaped_positions(a: np.ndarray, escape: int) -> np.ndarray:
    """Offsets of characters made literal by an escape character (runs pair up)."""
    esc = np.flatnonzero(a == escape)
    if esc.size == 0:
        return esc
    run_breaks = np.flatnonzero(np.diff(esc) != 1) + 1
    run_starts = esc[np.r_[0, run_breaks]]
    run_ends = esc[np.r_[run_breaks - 1, esc.size - 1]]  # last escape of each run
    lengths = run_ends - run_starts + 1
    # In a run, escapes escape each other in pairs; an odd run escapes the following char.
    targets = run_ends[lengths % 2 == 1] + 1
    targets = targets[targets < a.size]
    paired = esc[((esc - np.repeat(run_starts, lengths)) % 2) == 1]
    return np.union1d(targets, paired)


def _beside_quote(values: np.ndarray, d: Delimiters) -> np.ndarray:
    """Which of ``values`` (bytes) may stand right before an opening quote or right after a
    closing one: the delimiter, a line break, or a quote when quotes are doubled."""
    found: np.ndarray = (values == d.delimiter) | (values == _NL) | (values == _CR)
    if d.double_quote and d.quote is not None:
        found |= values == d.quote
    return found


def _parity_is_exact(
    a: np.ndarray, q: np.ndarray, d: Delimiters, escaped: np.ndarray | None = None
) -> bool:
    """True when counting quotes pairwise gives the same quoting as a field-by-field read.

    That holds when every opening quote starts a field (or continues a doubled quote) and
    every closing quote ends one: the common case, checked here without a Python loop (and
    then no text follows a closing quote). A quote next to an escaped character (``\\""``)
    is left to the field-by-field read.
    """
    if escaped is not None and escaped.size and np.isin(np.r_[q - 1, q + 1], escaped).any():
        return False
    if q.size == 0:
        return True
    # q is sorted: only the first opening quote may start the buffer, and only the last
    # closing one end it
    opens = q[0::2]
    if opens[0] == 0:
        opens = opens[1:]
    if not _beside_quote(a[opens - 1], d).all():
        return False
    closes = q[1::2]
    if closes.size and closes[-1] == a.size - 1:
        closes = closes[:-1]
    return bool(_beside_quote(a[closes + 1], d).all())


def misquoted_closes(a: np.ndarray, toggles: np.ndarray, d: Delimiters) -> np.ndarray:
    """The closing quotes among ``toggles`` (the quotes that open or close a quoted field,
    from a field-by-field read) that text follows before the field ends: ``"a"b``, which
    RFC 4180 (and Python's csv in strict mode, and DuckDB) refuse, and Arrow's parser would
    read as ``ab``."""
    closes = toggles[1::2]
    closes = closes[closes < a.size - 1]
    found: np.ndarray = closes[~_beside_quote(a[closes + 1], d)]
    return found


def _sequential_toggles(
    buf: Bytes, q: np.ndarray, d: Delimiters, escaped: np.ndarray | None = None
) -> np.ndarray:
    """Quotes that open or close a quoted field, read field by field (slow path)."""
    field_start = {d.delimiter, _NL, _CR}
    literal = set(escaped.tolist()) if escaped is not None else set()
    toggles: list[int] = []
    positions = q.tolist()
    inside = False
    i, m = 0, len(positions)
    while i < m:
        p = positions[i]
        if not inside:
            if p == 0 or (buf[p - 1] in field_start and p - 1 not in literal):
                toggles.append(p)
                inside = True
            i += 1
        elif d.double_quote and i + 1 < m and positions[i + 1] == p + 1:
            i += 2
        else:
            toggles.append(p)
            inside = False
            i += 1
    return np.asarray(toggles, dtype=np.int64)


def _toggles(
    buf: Bytes, a: np.ndarray, q: np.ndarray, d: Delimiters, escaped: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Of the quotes ``q`` of ``buf`` (``a``, its bytes), those that open or close a quoted
    field, and the closing ones that text follows (none when counting pairs them right)."""
    if _parity_is_exact(a, q, d, escaped):
        return q, np.empty(0, np.int64)
    toggles = _sequential_toggles(buf, q, d, escaped)
    return toggles, misquoted_closes(a, toggles, d)


def scan_records(buf: Bytes, d: Delimiters, final: bool) -> Scan:
    """Find the complete records of ``buf`` (all of them when ``final``)."""
    a = np.frombuffer(buf, dtype=np.uint8)
    n = a.size
    line_breaks = np.flatnonzero(a == _NL)
    if b"\r" in buf:
        cr = np.flatnonzero(a == _CR)
        following = cr + 1
        bare = cr[following < n]
        bare = bare[a[bare + 1] != _NL]
        if final and cr.size and cr[-1] == n - 1:
            bare = np.append(bare, n - 1)
        if bare.size:
            line_breaks = np.union1d(line_breaks, bare)
    escaped: np.ndarray | None = None
    if d.escape is not None and bytes([d.escape]) in buf:
        escaped = _escaped_positions(a, d.escape)
    terms = line_breaks
    if escaped is not None and escaped.size:
        terms = np.setdiff1d(terms, escaped, assume_unique=True)

    toggles = misquoted = np.empty(0, np.int64)
    has_quotes = d.quote is not None and bytes([d.quote]) in buf
    if has_quotes:
        assert d.quote is not None
        q = np.flatnonzero(a == d.quote)
        if escaped is not None and escaped.size:
            q = np.setdiff1d(q, escaped, assume_unique=True)
        toggles, misquoted = _toggles(buf, a, q, d, escaped)
    quoted_newlines = False
    open_quote = bool(toggles.size % 2)
    # index in line_breaks of each record's line break, when terms are all the line breaks
    term_index: np.ndarray | None = None
    if toggles.size:
        inside = (np.searchsorted(toggles, terms) & 1).astype(bool)
        quoted_newlines = bool(inside.any())
        if quoted_newlines:
            term_index = np.flatnonzero(~inside)
            record_terms = terms[term_index]
        else:
            record_terms = terms
    else:
        record_terms = terms
    ends = record_terms + 1
    if final and not open_quote and (ends.size == 0 or ends[-1] < n) and n > 0:
        ends = np.append(ends, n)
    starts = np.empty_like(ends)
    if ends.size:
        starts[0] = 0
        starts[1:] = ends[:-1]
    consumed = int(ends[-1]) if ends.size else 0
    if line_breaks.size == record_terms.size:
        lines = np.arange(starts.size, dtype=np.int64)
    elif term_index is not None and terms.size == line_breaks.size:
        lines = np.empty(starts.size, dtype=np.int64)
        if starts.size:
            lines[0] = 0
            lines[1:] = term_index[: starts.size - 1] + 1
    else:
        lines = np.searchsorted(line_breaks, starts).astype(np.int64)
    if not consumed:
        consumed_lines = 0
    elif consumed == n:
        consumed_lines = int(line_breaks.size)
    elif term_index is not None and terms.size == line_breaks.size:
        consumed_lines = int(term_index[record_terms.size - 1]) + 1
    else:
        consumed_lines = int(np.searchsorted(line_breaks, consumed))
    return Scan(
        starts=starts,
        ends=ends,
        lines=lines,
        consumed=consumed,
        consumed_lines=consumed_lines,
        # an escaped line break is inside a value too
        quoted_newlines=quoted_newlines or terms.size != line_breaks.size,
        open_quote=open_quote and final,
        has_quotes=has_quotes,
        toggles=toggles,
        escaped=escaped,
        misquoted=misquoted,
    )


def field_counts(buf: Bytes, scan: Scan, d: Delimiters, records: np.ndarray) -> np.ndarray:
    """Number of fields of each record in ``records`` (indices into ``scan``)."""
    a = np.frombuffer(buf, dtype=np.uint8)
    delims = np.flatnonzero(a == d.delimiter)
    if scan.escaped is not None and scan.escaped.size:
        delims = np.setdiff1d(delims, scan.escaped, assume_unique=True)
    if scan.toggles.size:
        delims = delims[(np.searchsorted(scan.toggles, delims) & 1) == 0]
    starts, ends = scan.starts[records], scan.ends[records]
    counts: np.ndarray = np.searchsorted(delims, ends) - np.searchsorted(delims, starts) + 1
    return counts


def empty_records(buf: Bytes, scan: Scan) -> np.ndarray:
    """Mask of records holding nothing but a line break (pyarrow skips those)."""
    lengths = scan.ends - scan.starts
    empty = lengths == 1
    if b"\r" in buf:
        a = np.frombuffer(buf, dtype=np.uint8)
        two = np.flatnonzero(lengths == 2)
        if two.size:
            first = scan.starts[two]
            empty[two[(a[first] == _CR) & (a[first + 1] == _NL)]] = True
        one = np.flatnonzero(empty)
        empty[one] = np.isin(a[scan.starts[one]], (_NL, _CR))
    else:
        one = np.flatnonzero(empty)
        if one.size:
            a = np.frombuffer(buf, dtype=np.uint8)
            empty[one] = a[scan.starts[one]] == _NL
    mask: np.ndarray = empty
    return mask


def gather(buf: Bytes, starts: np.ndarray, ends: np.ndarray) -> Bytes | memoryview:
    """The bytes of the given records, concatenated (a view when they are contiguous)."""
    view = memoryview(buf)
    if starts.size == 0:
        return b""
    breaks = np.flatnonzero(starts[1:] != ends[:-1]) + 1
    if breaks.size == 0:
        return view[int(starts[0]) : int(ends[-1])]
    seg_starts = starts[np.r_[0, breaks]].tolist()
    seg_ends = ends[np.r_[breaks - 1, ends.size - 1]].tolist()
    # only the last record of a file can lack its line break, and it always comes last
    return b"".join([view[s:e] for s, e in zip(seg_starts, seg_ends, strict=True)])


class BlockBuffer:
    """Joins the bytes left over from one block (a record not yet complete) to the next block
    in one buffer kept from block to block. Joining them as ``bytes`` asked the allocator for a
    new block-sized buffer each time, whose pages the kernel then zeroed on first touch: about
    as much CPU as reading the file. The buffer returned is valid until the next ``join``."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def join(self, head: Bytes, chunk: bytes) -> Bytes:
        if not head:
            return chunk
        buf = self._buf
        try:
            if head is buf:  # no record ended in the last block: it grows
                buf += chunk
                return buf
            buf.append(0)  # refused while a view of the buffer is held, before any write
        except BufferError:  # a view of an earlier block is held: leave that block alone
            self._buf = bytearray(head)
            self._buf += chunk
            return self._buf
        if len(buf) <= len(head):
            buf[:] = head
            buf += chunk
        else:
            # in place, then one resize to the new size within the allocation (which only
            # shrinks below half its size): no new memory
            buf[: len(head)] = head
            buf[len(head) :] = chunk
        return buf


# -- the source -------------------------------------------------------------------------------


class _HugeExponentError(Exception):
    """A decimal column's text that Arrow cannot convert without crashing."""


_COLUMN_ERROR = re.compile(r"In CSV column #(\d+): (.*)", re.S)
_INVALID_VALUE = re.compile(r"(?:invalid value|The string) '(.*)'", re.S)
_FIELD_COUNT = re.compile(r"Expected (\d+) columns, got (\d+)")


@dataclass
class _FileState:
    path: str
    names: list[str] | None = None
    #: blocks to read with the record scan before trying a one-parse read again, and how
    #: many the next failed try sets (doubled each time, so a file with line breaks in its
    #: values or many bad rows soon stops paying for a parse it cannot use)
    scan_only: int = 0
    backoff: int = 1


@source("csv", config=CsvSourceConfig)
class CsvSource(FileSource, FileReading, RowRejecting, ByteCounting):
    """Delimited text files (CSV/TSV/PSV), streamed in blocks with exact line numbers."""

    unit = "row"

    def __init__(self, cfg: CsvSourceConfig) -> None:
        super().__init__(cfg.path, cfg.on_malformed)
        self.cfg = cfg
        self.encoding = normalize_encoding(cfg.encoding, "encoding")
        self.delimiters = Delimiters(
            delimiter=ord(cfg.delimiter),
            quote=ord(cfg.quote) if cfg.quote is not None else None,
            escape=ord(cfg.escape) if cfg.escape is not None else None,
            double_quote=cfg.double_quote,
        )
        self.declared = {name: parse_type(t, f"types.{name}") for name, t in cfg.types.items()}
        self.names: list[str] | None = None
        self.column_types: dict[str, pa.DataType] | None = None
        #: the thread checking the quotes of a block while Arrow parses it (one per file)
        self._quote_checks: ThreadPoolExecutor | None = None

    def _read_path(self, path: str) -> Iterator[pa.RecordBatch]:
        blocks = self._text_blocks(path, self.cfg.compression, self.encoding, self.cfg.block_size)
        state = _FileState(path)
        try:
            rows = 0
            for batch in self._read_stream(state, blocks):
                rows += batch.num_rows
                yield batch
            if not rows and state.names is not None:
                # a header and no rows: no rows, but the columns are known
                yield self._empty_batch()
        finally:
            blocks.close()
            if self._quote_checks is not None:
                self._quote_checks.shutdown()
                self._quote_checks = None

    def _empty_batch(self) -> pa.RecordBatch:
        """No rows, with the columns (and types) the rows of this source have."""
        assert self.names is not None
        types = self.column_types or {n: self.declared.get(n, pa.string()) for n in self.names}
        fields = [pa.field(n, types[n]) for n in self.cfg.select or self.names]
        fields += [
            pa.field(kept_text_column(f.name), pa.string())
            for f in list(fields)
            if pa.types.is_decimal(f.type)
        ]
        fields.append(pa.field(LINE_COLUMN, pa.int64()))
        return pa.RecordBatch.from_pylist([], schema=pa.schema(fields))

    def _read_stream(self, state: _FileState, blocks: Iterator[bytes]) -> Iterator[pa.RecordBatch]:
        buf: Bytes = b""
        blocks_read = BlockBuffer()
        base = 0  # line breaks before buf
        eof = False
        to_skip = self.cfg.skip_lines
        long: _LongRecord | None = None  # a record over max_record_bytes, passed over
        while True:
            if not eof:
                chunk = next(blocks, None)
                if chunk is None:
                    eof = True
                else:
                    buf = blocks_read.join(buf, chunk)
            if long is not None:
                buf, base, passed = self._pass_over(state, long, buf, base, eof)
                if not passed:
                    continue
                long = None
            while to_skip and buf:
                cut = _first_line_end(buf)
                if cut < 0 and not eof:
                    break
                buf = buf[cut + 1 :] if cut >= 0 else b""
                base += 1
                to_skip -= 1
            if to_skip and not eof:
                continue
            if state.scan_only:
                state.scan_only -= 1
            elif not eof and state.names is not None and self.column_types is not None:
                read = self._one_line_records(buf, base)
                if read is not None:
                    state.backoff = 1
                    batches, consumed, lines = read
                    yield from batches
                    buf = buf[consumed:]
                    base += lines
                    continue
                state.scan_only, state.backoff = state.backoff, min(2 * state.backoff, 64)
            scan = scan_records(buf, self.delimiters, final=eof)
            if scan.ends.size:
                yield from self._records(state, buf, scan, base)
                buf = buf[scan.consumed :]
                base += scan.consumed_lines
            if scan.open_quote:
                reason = "unterminated quoted field: a quote opened on this line is never closed"
                cut = _first_line_end(buf)
                raw = bytes(buf[: cut + 1] if cut >= 0 else buf)
                self._malformed(state.path, base + 1, reason, raw)
                buf = buf[cut + 1 :] if cut >= 0 else b""
                base += 1
                continue
            if len(buf) > self.cfg.max_record_bytes:
                # the record under way is already too long: pass over the rest of it, with
                # the quote state at the end of what was read, holding no more of it
                opened = int(np.searchsorted(scan.toggles, scan.consumed))
                inside = bool((scan.toggles.size - opened) % 2)
                long = _LongRecord(base + 1, bytes(buf[:_RAW_KEPT]), inside)
                held = _held_cr(buf)  # a CR may be the first half of a CRLF
                long.size = len(buf) - len(held)
                base += _line_breaks(buf[: long.size])
                buf = held
                continue
            if eof and not buf:
                return

    def _records(
        self, state: _FileState, buf: Bytes, scan: Scan, base: int
    ) -> Iterator[pa.RecordBatch]:
        empty = empty_records(buf, scan)
        records = np.flatnonzero(~empty)
        if records.size == 0 and (state.names is None or len(state.names) != 1):
            return
        misquoted = _misquoted_records(scan, records) if self.cfg.strict_quotes else {}
        if state.names is None:
            header = int(records[0])
            if self.cfg.header and header in misquoted:
                message, fix, _ = self._misquote(buf, scan, header, misquoted[header], base)
                where = f"{display_path(state.path)}:{base + int(scan.lines[header]) + 1}"
                raise PermanentError.one(f"cannot read the header: {message}", where, fix)
            self._start_file(state, buf, scan, header, base)
            if self.cfg.header:
                records = records[1:]
            if len(self.names or ()) == 1:
                # one column: an empty line is a null value, not a line to skip
                first = header + 1 if self.cfg.header else header
                records = np.arange(first, scan.starts.size)
            if records.size == 0:
                return
        elif len(state.names) == 1:
            records = np.arange(scan.starts.size)
        names = state.names
        assert names is not None
        expected = len(names)
        known = len(self._errors)  # the block's rejections are reported in line order
        records = self._drop_long(state, buf, scan, records, base)
        if misquoted:
            records = self._drop_misquoted(state, buf, scan, records, base, misquoted)
        if self.column_types is None:
            self._lock_types(state, buf, scan, records)
        parsed = list(joined_pieces(self._parse(state, buf, scan, records, base, expected)))
        self._errors[known:] = sorted(self._errors[known:], key=lambda e: e.line or 0)
        for table, subset in parsed:
            lines = line_column(scan.lines[subset] + (base + 1))
            table = table.append_column(LINE_COLUMN, lines)
            yield from table.to_batches(max_chunksize=self.cfg.batch_rows)

    def _one_line_records(
        self, buf: Bytes, base: int
    ) -> tuple[list[pa.RecordBatch], int, int] | None:
        """The complete lines of ``buf`` read in one parse, when each of them is exactly one
        good record: ``(batches, bytes consumed, line breaks consumed)``, else None (the
        caller then finds the records with :func:`scan_records`).

        Most blocks of most files hold no line break inside a value, no empty line and no
        row in error. Arrow's parser (line breaks in values allowed) returns one row per line
        then, and a count proves it: as many rows as line breaks means no record spans two
        lines, so the line numbers follow from the first. The one case a count cannot tell,
        a quote left open on the last line (Arrow reads it to the end of the data), is ruled
        out by scanning that line alone. Anything else (a lone CR, an error, another count)
        returns None before a row is handed on, and the exact scan reads the block.
        """
        cut = buf.rfind(b"\n") + 1
        if cut == 0 or cut > self.cfg.max_record_bytes:
            return None
        data = memoryview(buf)[:cut]
        breaks = line_feeds(buf, cut)
        if buf.find(b"\r", 0, cut) >= 0 and buf.count(b"\r", 0, cut) != buf.count(b"\r\n", 0, cut):
            return None  # a lone CR is a line break of its own
        last = buf.rfind(b"\n", 0, cut - 1) + 1
        if scan_records(buf[last:cut], self.delimiters, final=False).consumed != cut - last:
            return None  # the last line ends inside a quoted value
        # Arrow's parser would join text after a closing quote to the quoted value: the
        # quotes are checked on another thread while Arrow parses (both release the GIL)
        quote = self.delimiters.quote
        check: Future[bool] | None = None
        if self.cfg.strict_quotes and quote is not None and buf.find(bytes([quote]), 0, cut) >= 0:
            if self._quote_checks is None:
                self._quote_checks = ThreadPoolExecutor(1, thread_name_prefix="quiver-csv")
            check = self._quote_checks.submit(self._text_after_a_closing_quote, buf, cut)
        try:
            table = self._read_block(data, True)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        finally:
            misquoted = check is not None and check.result()
        if misquoted or table.num_rows != breaks:
            return None
        lines = line_column(np.arange(base + 1, base + 1 + breaks, dtype=np.int64))
        table = table.append_column(LINE_COLUMN, lines)
        return table.to_batches(max_chunksize=self.cfg.batch_rows), cut, breaks

    def _text_after_a_closing_quote(self, buf: Bytes, cut: int) -> bool:
        """Whether text follows the closing quote of a quoted field (``"a"b``) in the first
        ``cut`` bytes of ``buf``. The quotes are paired by counting first (about a
        millisecond for a block of 2 MB full of quoted fields, a fifth of Arrow's parse of
        it, which runs meanwhile); only a block where that pairing is not the field-by-field
        one (a quote inside an unquoted field, or misplaced) is read quote by quote."""
        d = self.delimiters
        if d.quote is None or buf.find(bytes([d.quote]), 0, cut) < 0:
            return False
        a = np.frombuffer(buf, dtype=np.uint8, count=cut)
        escaped: np.ndarray | None = None
        if d.escape is not None and buf.find(bytes([d.escape]), 0, cut) >= 0:
            escaped = _escaped_positions(a, d.escape)
        q = np.flatnonzero(a == d.quote)
        if escaped is not None and escaped.size:
            q = np.setdiff1d(q, escaped, assume_unique=True)
        return bool(_toggles(buf, a, q, d, escaped)[1].size)

    def _drop_misquoted(
        self,
        state: _FileState,
        buf: Bytes,
        scan: Scan,
        records: np.ndarray,
        base: int,
        misquoted: dict[int, int],
    ) -> np.ndarray:
        """``records`` without those where text follows a closing quote (reported)."""
        bad = np.isin(records, np.fromiter(misquoted, dtype=np.int64))
        for index in records[bad].tolist():
            message, fix, column = self._misquote(buf, scan, index, misquoted[index], base)
            self._malformed(
                state.path,
                base + int(scan.lines[index]) + 1,
                f"{message}; {fix}",
                raw=bytes(buf[scan.starts[index] : scan.ends[index]]),
                column=column,
            )
        kept: np.ndarray = records[~bad]
        return kept

    def _field_bounds(self, buf: Bytes, scan: Scan, index: int, at: int) -> tuple[int, int, int]:
        """``(field number from 0, first byte, end)`` of the field of record ``index`` that
        holds the byte at offset ``at``."""
        start, end = int(scan.starts[index]), int(scan.ends[index])
        a = np.frombuffer(buf, dtype=np.uint8, count=end)
        delims = np.flatnonzero(a[start:end] == self.delimiters.delimiter) + start
        if scan.escaped is not None and scan.escaped.size:
            delims = np.setdiff1d(delims, scan.escaped, assume_unique=True)
        delims = delims[(np.searchsorted(scan.toggles, delims) & 1) == 0]
        before = int(np.searchsorted(delims, at))
        first = int(delims[before - 1]) + 1 if before else start
        last = int(delims[before]) if before < delims.size else end
        while last > first and buf[last - 1] in (_NL, _CR):
            last -= 1
        return before, first, last

    def _misquote(
        self, buf: Bytes, scan: Scan, index: int, quote: int, base: int
    ) -> tuple[str, str, str | None]:
        """What is wrong with record ``index``, whose field's closing quote at offset
        ``quote`` text follows, how to fix it, and the field's column name (when the columns
        are known): ``(message, fix, column)``."""
        start = int(scan.starts[index])
        line_start, column = _quote_column(buf, start, quote)
        number, first, last = self._field_bounds(buf, scan, index, quote)
        field_text = bytes(buf[first:last]).decode("utf-8", "replace")
        if len(field_text) > 60:
            field_text = field_text[:57] + "..."
        names = self.names or ()
        column_name = names[number] if number < len(names) else None
        name = f" {column_name!r}" if column_name is not None else ""
        where = f"column {column}"
        if line_start > start:
            line = base + int(scan.lines[index]) + 1 + _line_breaks(buf[start:line_start])
            where = f"line {line}, column {column}"
        message = (
            f"text after the closing quote at {where}, in field {number + 1}{name}: {field_text!r}"
        )
        return message, _DOUBLE_THE_QUOTE, column_name

    def _drop_long(
        self, state: _FileState, buf: Bytes, scan: Scan, records: np.ndarray, base: int
    ) -> np.ndarray:
        """``records`` without those longer than ``max_record_bytes`` (reported)."""
        sizes = scan.ends[records] - scan.starts[records]
        long = sizes > self.cfg.max_record_bytes
        if not long.any():
            return records
        for index in records[long].tolist():
            start, end = int(scan.starts[index]), int(scan.ends[index])
            first = base + int(scan.lines[index]) + 1
            last = first + _line_breaks(buf[start:end].rstrip(b"\r\n"))
            self._malformed(
                state.path,
                first,
                self._too_long(end - start, first, last),
                raw=bytes(buf[start : min(end, start + _RAW_KEPT)]),
            )
        kept: np.ndarray = records[~long]
        return kept

    def _too_long(self, size: int, first: int, last: int) -> str:
        limit = self.cfg.max_record_bytes
        lines = f"line {first}" if last == first else f"lines {first}-{last}"
        return (
            f"record of {size} bytes ({lines}) is longer than max_record_bytes ({limit} bytes); "
            "if such records are genuine, raise `max_record_bytes` in the source's options"
        )

    def _pass_over(
        self, state: _FileState, long: _LongRecord, buf: Bytes, base: int, eof: bool
    ) -> tuple[Bytes, int, bool]:
        """Pass over the next bytes of an over-long record: ``(rest, base, passed)``, where
        ``rest`` follows the record once it ended (``passed``). Only the quote state is kept
        between blocks, so memory stays bounded however long the record is."""
        quote = self.delimiters.quote
        data = bytes([quote]) + buf if long.inside and quote is not None else buf
        scan = scan_records(data, self.delimiters, final=eof)
        extra = len(data) - len(buf)
        if scan.ends.size:
            end = int(scan.ends[0])
            record = data[:end]
            long.size += end - extra
            last = base + _line_breaks(record.rstrip(b"\r\n")) + 1
            reason = self._too_long(long.size, long.line, last)
            self._malformed(state.path, long.line, reason, raw=long.raw)
            return data[end:], base + _line_breaks(record), True
        held = b"" if eof else _held_cr(buf)  # a CR may be the first half of a CRLF
        base += _line_breaks(buf[: len(buf) - len(held)])
        long.size += len(buf) - len(held)
        if eof:
            reason = (
                f"unterminated quoted field: a quote opened on this line is never closed, so "
                f"the rest of the file (to line {base + 1}) would be one record longer than "
                f"max_record_bytes ({self.cfg.max_record_bytes} bytes)"
                if long.inside or scan.open_quote
                else self._too_long(long.size, long.line, base + 1)
            )
            self._malformed(state.path, long.line, reason, raw=long.raw)
            return b"", base, True
        long.inside = bool(scan.toggles.size % 2)
        return held, base, False

    def _start_file(self, state: _FileState, buf: Bytes, scan: Scan, first: int, base: int) -> None:
        where = f"{display_path(state.path)}:{base + int(scan.lines[first]) + 1}"
        record = buf[scan.starts[first] : scan.ends[first]]
        if not record.endswith((b"\n", b"\r")):
            record += b"\n"  # a file of one line without a final line break
        count = int(field_counts(buf, scan, self.delimiters, np.array([first]))[0])
        try:
            table = pacsv.read_csv(
                pa.py_buffer(record),
                read_options=pacsv.ReadOptions(autogenerate_column_names=True),
                parse_options=self._parse_options(scan.quoted_newlines),
                convert_options=pacsv.ConvertOptions(
                    null_values=[],
                    strings_can_be_null=False,
                    auto_dict_encode=False,
                    # bytes: text invalid in the encoding matters only in a header that names
                    # the columns (a first record of data is read, or rejected, as the others)
                    column_types={f"f{i}": pa.binary() for i in range(count)},
                ),
            )
        except pa.ArrowInvalid as exc:
            raise PermanentError.one(
                f"cannot read the first record: {_clean(str(exc))}",
                where,
                "check the delimiter, quote and encoding settings",
            ) from exc
        raw = (
            [bytes(v) for v in table.slice(0, 1).to_pylist()[0].values()] if table.num_rows else []
        )
        if self.cfg.header and self.cfg.columns is None:
            for value in raw:
                bad = describe_bad_bytes(value, self.encoding)
                if bad is not None:
                    bad = bad.replace("of the row", "of the field")
                    raise PermanentError.one(
                        f"the header is not {self.encoding} text: {bad}{_utf16_hint(raw[0])}",
                        where,
                        "set `encoding` to the file's encoding (latin-1, cp1252, utf-16...), or "
                        "name the columns with `columns`",
                    )
        fields = [v.decode("utf-8", "surrogateescape") for v in raw]
        if self.cfg.columns is not None:
            if self.cfg.header and len(self.cfg.columns) != len(fields):
                raise PermanentError.one(
                    f"`columns` names {len(self.cfg.columns)} columns but the header has "
                    f"{len(fields)}: {fields}",
                    where,
                    "list one name per field, or drop `columns` to use the header's names",
                )
            names = list(self.cfg.columns)
        elif self.cfg.header:
            names = fields  # an empty name stays empty, so the header is written back as read
            blanks = [i + 1 for i, n in enumerate(names) if not n]
            if len(blanks) > 1:
                raise PermanentError.one(
                    f"the header has {len(blanks)} empty column names (fields "
                    f"{', '.join(map(str, blanks))}), and columns need distinct names",
                    where,
                    "name them in the header, or name all columns with `columns`",
                )
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise PermanentError.one(
                    f"the header repeats column names {dupes}",
                    where,
                    "rename them in the file, or name all columns with `columns`",
                )
        else:
            names = [f"col{i + 1}" for i in range(len(fields))]
        if self.names is None:
            unknown = sorted(set(self.declared) - set(names))
            if unknown:
                raise PermanentError.one(
                    f"`types` names columns that the file does not have: {unknown}",
                    where,
                    f"the columns are {names}",
                )
            missing = [c for c in self.cfg.select or [] if c not in names]
            if missing:
                hints = [h for h in (did_you_mean(c, names) for c in missing) if h]
                raise PermanentError.one(
                    f"`select` names columns that the file does not have: {missing}",
                    where,
                    (hints[0] + " " if hints else "") + f"the columns are {names}",
                )
            self.names = names
        elif names != self.names:
            raise PermanentError.one(
                f"the columns {names} differ from those of the first file {self.names}",
                where,
                "read files with different layouts in separate sources",
            )
        state.names = names

    def _lock_types(self, state: _FileState, buf: Bytes, scan: Scan, records: np.ndarray) -> None:
        assert self.names is not None
        types: dict[str, pa.DataType] = {name: pa.string() for name in self.names}
        if self.cfg.infer and records.size:
            sample = gather(buf, scan.starts[records], scan.ends[records])
            try:
                inferred = pacsv.read_csv(
                    pa.py_buffer(sample),
                    read_options=pacsv.ReadOptions(column_names=self.names),
                    parse_options=self._parse_options(scan.quoted_newlines),
                    convert_options=self._convert_options(None),
                ).schema
            except pa.ArrowInvalid:
                inferred = None  # a bad row in the sample: keep strings for safety
            if inferred is not None:
                for f in inferred:
                    if not (pa.types.is_null(f.type) or pa.types.is_binary(f.type)):
                        types[f.name] = f.type
        types.update(self.declared)
        self.column_types = types

    def _parse_options(self, newlines_in_values: bool) -> pacsv.ParseOptions:
        d = self.cfg
        return pacsv.ParseOptions(
            delimiter=d.delimiter,
            quote_char=d.quote if d.quote is not None else False,
            double_quote=d.double_quote,
            escape_char=d.escape if d.escape is not None else False,
            newlines_in_values=newlines_in_values,
            ignore_empty_lines=len(self.names or ()) != 1,
        )

    def _convert_options(self, types: dict[str, pa.DataType] | None) -> pacsv.ConvertOptions:
        d = self.cfg
        options: dict[str, Any] = {
            "null_values": d.null_values,
            "strings_can_be_null": True,
            "quoted_strings_can_be_null": False,
            "decimal_point": d.decimal_point,
        }
        if types is not None:
            options["column_types"] = types
        if d.select is not None:
            options["include_columns"] = d.select
        if d.true_values is not None:
            options["true_values"] = d.true_values
        if d.false_values is not None:
            options["false_values"] = d.false_values
        if d.timestamp_formats is not None:
            options["timestamp_parsers"] = d.timestamp_formats
        return pacsv.ConvertOptions(**options)

    def _read_block(self, data: Bytes | memoryview, newlines: bool) -> pa.Table:
        """The rows of ``data``; a decimal column keeps the text of each value beside it, and
        a duration or interval column is read from its ISO 8601 text (``PT90000.5S``). A
        block that Arrow refuses is read again with its nanosecond timestamp columns as text,
        converted by :func:`cast_column`: Arrow's CSV parser refuses the earliest of them
        (``1677-09-21T00:12:43.145224193``)."""
        durations = self._text_read(lambda t: pa.types.is_duration(t) or pa.types.is_interval(t))
        try:
            return self._read_as_text(data, newlines, durations)
        except pa.ArrowInvalid as exc:
            nanos = self._text_read(lambda t: pa.types.is_timestamp(t) and t.unit == "ns")
            if not nanos or self.cfg.timestamp_formats is not None:
                raise
            try:
                return self._read_as_text(data, newlines, {**durations, **nanos})
            except pa.ArrowInvalid:
                raise exc from None  # Arrow's words name the bad value

    def _text_read(self, wanted: Callable[[pa.DataType], bool]) -> dict[str, pa.DataType]:
        """The read columns whose declared type is ``wanted``."""
        return {
            n: t
            for n, t in (self.column_types or {}).items()
            if wanted(t) and (self.cfg.select is None or n in self.cfg.select)
        }

    def _read_as_text(
        self, data: Bytes | memoryview, newlines: bool, as_text: dict[str, pa.DataType]
    ) -> pa.Table:
        """The rows of ``data``, the columns of ``as_text`` read as text and converted by
        :func:`cast_column`."""
        types = self.column_types
        if not as_text:
            return self._read_decimals(data, newlines, types)
        assert types is not None
        table = self._read_decimals(
            data, newlines, {**types, **dict.fromkeys(as_text, pa.string())}
        )
        for name, kind in as_text.items():
            at = table.schema.get_field_index(name)
            try:
                table = table.set_column(at, name, cast_column(table.column(at), kind))
            except pa.ArrowInvalid as exc:
                assert self.names is not None
                index = self.names.index(name)
                raise pa.ArrowInvalid(f"In CSV column #{index}: {exc}") from None
        return table

    def _read_decimals(
        self, data: Bytes | memoryview, newlines: bool, types: dict[str, pa.DataType] | None
    ) -> pa.Table:
        """The rows of ``data`` as ``types``; a decimal column keeps the text of each value."""
        decimals = {n: t for n, t in (types or {}).items() if pa.types.is_decimal(t)}
        if self.cfg.select is not None:
            decimals = {n: t for n, t in decimals.items() if n in self.cfg.select}
        if not decimals:
            return self._read_table(data, newlines, types)
        assert types is not None
        as_text = {**types, **dict.fromkeys(decimals, pa.string())}
        try:
            table = self._read_table(data, newlines, as_text)
            self._refuse_huge_exponents(table, decimals)
            return decimals_from_text(table, decimals, self.cfg.decimal_point)
        except _HugeExponentError as exc:
            raise pa.ArrowInvalid(str(exc)) from None  # Arrow's own reading would crash
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            # a value the text cast refuses (e.g. padded with spaces): read as Arrow converts
            # it, which also raises the error that names a bad value; no text kept
            table = self._read_table(data, newlines, types)
            self._refuse_beyond_precision(table, decimals)
            return without_decimal_text(table, list(decimals))

    def _refuse_beyond_precision(self, table: pa.Table, decimals: dict[str, pa.DataType]) -> None:
        """An ArrowInvalid naming the column, in the words of Arrow's CSV reader, when a decimal
        column holds a value with more digits than its precision: the reader keeps such a
        value (``123456789`` as ``decimal(10,2)``), which no writer or reader after it can
        take for that type."""
        assert self.names is not None
        for name, kind in decimals.items():
            at = table.schema.get_field_index(name)
            if at < 0:
                continue
            try:
                table.column(at).validate(full=True)
            except pa.ArrowInvalid:
                raise pa.ArrowInvalid(
                    f"In CSV column #{self.names.index(name)}: a value has more digits than "
                    f"{kind} holds"
                ) from None

    def _refuse_huge_exponents(self, table: pa.Table, decimals: dict[str, pa.DataType]) -> None:
        """A :class:`_HugeExponentError` naming the column and value, in the words of Arrow's
        CSV reader, when a decimal column's text has an exponent of 1000 or more
        (``1e-1000000000``): Arrow's conversion of such text to a decimal crashes the process
        (pyarrow 26), its CSV reader's included, instead of refusing it."""
        assert self.names is not None
        for name, kind in decimals.items():
            at = table.schema.get_field_index(name)
            if at < 0:
                continue
            text = table.column(at)
            try:
                refuse_huge_exponents(text)
            except pa.ArrowInvalid:
                huge = pc.match_substring_regex(text, HUGE_EXPONENT)
                value = text.filter(pc.fill_null(huge, False))[0].as_py()
                raise _HugeExponentError(
                    f"In CSV column #{self.names.index(name)}: CSV conversion error to {kind}:"
                    f" invalid value '{value}'"
                ) from None

    def _read_table(
        self, data: Bytes | memoryview, newlines: bool, types: dict[str, pa.DataType] | None
    ) -> pa.Table:
        # One parse on this thread, of the whole block: cutting it for Arrow's threads costs
        # a lexing pass to find the cuts (line breaks may stand inside quotes), and the cores
        # are better spent on the rest of the pipeline (steps and sinks run beside the source).
        return pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(
                column_names=self.names, use_threads=False, block_size=len(data) + 1
            ),
            parse_options=self._parse_options(newlines),
            convert_options=self._convert_options(types),
        )

    def _drop_ragged(
        self,
        state: _FileState,
        buf: Bytes,
        scan: Scan,
        records: np.ndarray,
        base: int,
        expected: int,
    ) -> np.ndarray:
        """``records`` without those whose number of fields is wrong (reported)."""
        counts = field_counts(buf, scan, self.delimiters, records)
        bad = counts != expected
        for index, count in zip(records[bad].tolist(), counts[bad].tolist(), strict=True):
            self._malformed(
                state.path,
                base + int(scan.lines[index]) + 1,
                _field_count_reason(expected, count),
                raw=bytes(buf[scan.starts[index] : scan.ends[index]]),
            )
        kept: np.ndarray = records[~bad]
        return kept

    def _parse(
        self,
        state: _FileState,
        buf: Bytes,
        scan: Scan,
        records: np.ndarray,
        base: int,
        expected: int | None = None,
    ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """Parse ``records``; a failing group is halved until the bad records are isolated.

        On the first failure of a block (``expected`` set), records with a wrong number of
        fields are found in one vectorised pass first, so ragged rows cost no halving.
        """
        if records.size == 0:
            return
        data = gather(buf, scan.starts[records], scan.ends[records])
        try:
            table = self._read_block(data, scan.quoted_newlines)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            if expected is not None:
                kept = self._drop_ragged(state, buf, scan, records, base, expected)
                if kept.size != records.size:
                    yield from self._parse(state, buf, scan, kept, base)
                    return
            split = (
                self._suspects(data, scan.quoted_newlines, records)
                if records.size >= _SUSPECTS_FROM and self._refused_in_cast_column(exc)
                else None
            )
            if split is not None:
                yield from self._parse_apart(state, buf, scan, base, *split)
                return
            if records.size == 1:
                index = int(records[0])
                raw = bytes(buf[scan.starts[index] : scan.ends[index]])
                column, value, reason = self._explain(exc, raw)
                self._malformed(
                    state.path,
                    base + int(scan.lines[index]) + 1,
                    reason,
                    raw=raw,
                    column=column,
                    value=value,
                )
                return
            half = records.size // 2
            yield from self._parse(state, buf, scan, records[:half], base)
            yield from self._parse(state, buf, scan, records[half:], base)
            return
        if table.num_rows != records.size:
            if records.size == 1:
                index = int(records[0])
                self._malformed(
                    state.path,
                    base + int(scan.lines[index]) + 1,
                    f"record reads as {table.num_rows} rows",
                    raw=bytes(buf[scan.starts[index] : scan.ends[index]]),
                )
                return
            half = records.size // 2
            yield from self._parse(state, buf, scan, records[:half], base)
            yield from self._parse(state, buf, scan, records[half:], base)
            return
        yield table, records

    def _checked_by_cast(self, kind: pa.DataType) -> bool:
        """Whether a cast of text to ``kind`` reads values as Arrow's CSV reader does (the
        same parsers): integers, floats with ``.`` as the decimal point, dates, and
        timestamps without ``timestamp_formats``."""
        return (
            pa.types.is_integer(kind)
            or (pa.types.is_floating(kind) and self.cfg.decimal_point == ".")
            or pa.types.is_date(kind)
            or (pa.types.is_timestamp(kind) and self.cfg.timestamp_formats is None)
        )

    def _refused_in_cast_column(self, exc: Exception) -> bool:
        """Whether Arrow's reader refused a value of a column :meth:`_suspects` checks."""
        m = _COLUMN_ERROR.search(str(exc))
        if m is None or self.names is None or int(m[1]) >= len(self.names):
            return False
        kind = (self.column_types or {}).get(self.names[int(m[1])])
        return kind is not None and self._checked_by_cast(kind)

    def _suspects(
        self, data: Bytes | memoryview, newlines: bool, records: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """``records`` split into those whose number, date and time columns hold such values
        and those where a value is neither that nor a null value (the suspects), from one
        read of the rows as text and a cast of each such column; None when none is found so.

        Halving isolates a bad record in about twice the depth of its block in reads of
        Arrow's CSV reader (each at least 0.1 ms), which is cheap for a few bad records and
        slow for many (a column of bad values in every other row took 1.6 ms a record).
        The cast uses the parsers Arrow's CSV reader converts with; any record it gets wrong
        is read again as before: the others in one read, each suspect alone."""
        types = self.column_types or {}
        numbers = {n: t for n, t in types.items() if self._checked_by_cast(t)}
        if self.cfg.select is not None:
            numbers = {n: t for n, t in numbers.items() if n in self.cfg.select}
        if not numbers:
            return None
        try:
            text = self._read_table(data, newlines, dict.fromkeys(types, pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if text.num_rows != records.size:
            return None
        nulls = pa.array(self.cfg.null_values, pa.string())
        suspect = np.zeros(records.size, dtype=bool)
        for name, kind in numbers.items():
            values = text.column(name).combine_chunks()
            given = pc.invert(pc.or_kleene(pc.is_null(values), pc.is_in(values, nulls)))
            at = np.flatnonzero(given.to_numpy(zero_copy_only=False))
            suspect[at[_cast_failures(values.take(pa.array(at)), kind)]] = True
        if not suspect.any():
            return None
        return records[~suspect], records[suspect]

    def _parse_apart(
        self,
        state: _FileState,
        buf: Bytes,
        scan: Scan,
        base: int,
        good: np.ndarray,
        suspects: np.ndarray,
    ) -> Iterator[tuple[pa.Table, np.ndarray]]:
        """The records ``good`` (read together) and ``suspects`` (each alone, so that a bad
        one is rejected with its reason), in the order of the records."""
        pieces = list(self._parse(state, buf, scan, good, base))
        taken: list[tuple[pa.Table, np.ndarray]] = []
        for record in suspects.tolist():
            taken.extend(self._parse(state, buf, scan, np.array([record]), base))
        if taken:  # suspects read after all: the pieces they fall between are cut there
            cuts = np.array([int(r[0]) for _, r in taken])
            cut_pieces = []
            for table, recs in pieces:
                at = np.searchsorted(recs, cuts[(cuts > recs[0]) & (cuts < recs[-1])])
                bounds = [0, *at.tolist(), recs.size]
                for lo, hi in itertools.pairwise(bounds):
                    if hi > lo:
                        cut_pieces.append((table.slice(lo, hi - lo), recs[lo:hi]))
            pieces = cut_pieces + taken
            pieces.sort(key=lambda piece: int(piece[1][0]))
        yield from pieces

    def _text_of(self, raw: bytes, column: str) -> str | None:
        """The text of ``column`` in the one record ``raw`` (None when it cannot be read)."""
        try:
            table = self._read_table(raw, True, dict.fromkeys(self.names or (), pa.string()))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if table.num_rows != 1 or column not in table.column_names:
            return None
        value = table.column(column)[0].as_py()
        return value if isinstance(value, str) else None

    def _explain(self, exc: Exception, raw: bytes) -> tuple[str | None, Any, str]:
        message = str(exc)
        bad_bytes = describe_bad_bytes(raw, self.cfg.encoding)
        if bad_bytes is not None:
            return None, None, bad_bytes
        if m := _FIELD_COUNT.search(message):
            return None, None, _field_count_reason(int(m[1]), int(m[2]))
        if m := _COLUMN_ERROR.search(message):
            assert self.names is not None
            column = self.names[int(m[1])]
            kind = (self.column_types or {}).get(column, pa.string())
            value_match = _INVALID_VALUE.search(m[2])
            value = value_match[1] if value_match is not None else self._text_of(raw, column)
            if isinstance(kind, pa.Decimal128Type | pa.Decimal256Type) and value is not None:
                # Arrow's words ("Rescaling Decimal value would cause data loss") name neither
                # the value nor the digits at fault
                plain = value.replace(self.cfg.decimal_point, ".")
                return column, value, f"column '{column}': {decimal_misfit(plain, kind)}"
            if value_match is None:
                return column, value, f"column '{column}': {_clean(m[2])}"
            return column, value, f"column '{column}': {value!r} is not a valid {kind}"
        return None, None, _clean(message)


#: Records from which a refused block is split by :meth:`CsvSource._suspects` before halving.
_SUSPECTS_FROM = 16


def _cast_failures(values: pa.Array, kind: pa.DataType) -> np.ndarray:
    """The positions of the text ``values`` (no nulls) that do not cast to ``kind``: the
    whole array in one cast, halved where one fails (casts of slices cost microseconds)."""
    failed: list[int] = []
    pending = [(0, len(values))]
    while pending:
        lo, hi = pending.pop()
        try:
            pc.cast(values.slice(lo, hi - lo), kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if hi - lo == 1:
                failed.append(lo)
            else:
                mid = (lo + hi) // 2
                pending += [(mid, hi), (lo, mid)]
    return np.array(sorted(failed), dtype=np.int64)


def misquoted_body(body: bytes, delimiter: str) -> str | None:
    """Why the CSV text ``body`` (a message, read whole) is malformed when text follows the
    closing quote of a quoted field (``"Ann"ie``), naming the line and column; None when no
    such text does. Arrow's parser would join it to the quoted text, where RFC 4180 and the
    file source refuse it."""
    if b'"' not in body:
        return None
    scan = scan_records(body, Delimiters(ord(delimiter)), final=True)
    if not scan.misquoted.size:
        return None
    at = int(scan.misquoted[0])  # the closing quote
    line_start, column = _quote_column(body, 0, at)
    line = _line_breaks(body[:line_start]) + 1
    return f"text after the closing quote at line {line}, column {column}: {_DOUBLE_THE_QUOTE}"


#: How to mend text after a closing quote.
_DOUBLE_THE_QUOTE = 'a quote inside a quoted field must be doubled (""), as RFC 4180 asks'


def _quote_column(buf: Bytes, start: int, quote: int) -> tuple[int, int]:
    """The first byte of the line (LF, CRLF or CR ended, not before ``start``) holding the
    closing quote at offset ``quote``, and the column of the character after the quote."""
    line_start = max(buf.rfind(b"\n", start, quote), buf.rfind(b"\r", start, quote)) + 1
    line_start = max(line_start, start)
    return line_start, len(bytes(buf[line_start : quote + 1]).decode("utf-8", "replace")) + 1


def _misquoted_records(scan: Scan, records: np.ndarray) -> dict[int, int]:
    """The records of ``records`` where text follows a closing quote, each with the offset
    of the first such quote."""
    if not scan.misquoted.size:
        return {}
    owners = np.searchsorted(scan.ends, scan.misquoted, side="right")
    found: dict[int, int] = {}
    for owner, quote in zip(owners.tolist(), scan.misquoted.tolist(), strict=True):
        found.setdefault(owner, quote)
    wanted = set(records.tolist())
    return {k: v for k, v in found.items() if k in wanted}


def _field_count_reason(expected: int, found: int) -> str:
    return f"expected {expected} field{'' if expected == 1 else 's'}, found {found}"


_RAW_KEPT = 4096  # bytes of an over-long record kept for its reject


@dataclass
class _LongRecord:
    """A record over ``max_record_bytes`` being passed over: its first line, its first
    bytes, whether a quoted field is open where reading stopped, and its size so far."""

    line: int
    raw: bytes
    inside: bool
    size: int = 0


def _held_cr(data: Bytes) -> bytes:
    """The CR ending ``data``, kept until the next block says whether an LF follows."""
    return b"\r" if data.endswith(b"\r") else b""


def _line_breaks(data: Bytes) -> int:
    """Line breaks in ``data``: LF, CRLF and a lone CR each count once."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _first_line_end(buf: Bytes) -> int:
    nl = buf.find(b"\n")
    cr = buf.find(b"\r")
    if cr >= 0 and (nl < 0 or cr < nl):
        return cr + 1 if cr + 1 == nl else cr
    return nl


def _clean(message: str) -> str:
    return re.sub(r"^(CSV parse error|CSV conversion error): ", "", message).strip()


_UTF16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def _utf16_hint(first: bytes) -> str:
    """What the first field of a file tells of its encoding when it is not the one set: a
    UTF-16 byte-order mark (as bytes, or as the markers of bytes invalid in the encoding)."""
    if first.startswith(_UTF16_MARKS) or raw_text(first[:12]).startswith(
        ("\\xff\\xfe", "\\xfe\\xff")
    ):
        return " (the file starts with a UTF-16 byte-order mark: set `encoding: utf-16`)"
    return ""
