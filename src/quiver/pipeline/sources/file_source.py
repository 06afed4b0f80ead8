"""The base of the file sources: their inputs, the rows they could not read (``take_errors``,
sent to the rejects by the engine) and progress (``bytes_read``).

Inputs are a path, a glob or a list of them (see :mod:`quiver.pipeline.paths`); a blocking
reader runs in a worker thread so file reads never block the event loop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from quiver.pipeline.component import LINE_COLUMN, RowError, RunContext, is_internal
from quiver.pipeline.conform import conform
from quiver.pipeline.encodings import TextBlocks, raw_text
from quiver.pipeline.paths import display_path, expand_paths
from quiver.pipeline.streams import Compression, open_input_pair, position
from quiver.runtime.errors import PermanentError

__all__ = ["FileSource", "MalformedPolicy", "batches_in_thread", "joined_pieces"]

_SAME_COLUMNS_FIX = (
    "give every batch the same columns (read files of other layouts in another source, or "
    "select columns)"
)


async def batches_in_thread(
    produce: Generator[pa.RecordBatch, None, None],
) -> AsyncIterator[pa.RecordBatch]:
    """Run a blocking batch generator in a worker thread, one batch at a time, so file reads,
    decompression and parsing never block the event loop (pyarrow releases the GIL, so this
    also uses a second core). Closing the iterator closes the generator and its files."""
    try:
        while True:
            batch = await asyncio.to_thread(next, produce, None)
            if batch is None:
                return
            yield batch
    finally:
        # if a read is still running in its thread (the run was cancelled), the generator
        # closes its files itself when that read returns
        with contextlib.suppress(ValueError):
            await asyncio.to_thread(produce.close)


MalformedPolicy = Literal["reject", "skip", "fail"]
_MAX_RAW = 4096  # characters of a malformed record kept in its RowError


class FileSource(abc.ABC):
    """What the file sources share: their input files, the rows they could not read, and
    how far they got (for the progress bar). A subclass reads one file in ``_read_path``.

    The engine calls :meth:`take_errors` after each batch and sends the rows to the rejects;
    ``bytes_read`` feeds the progress bar; ``skip_files`` lists files to leave out.
    """

    #: how an unreadable record is called in messages ("row", "line")
    unit = "row"

    def __init__(self, path: str | list[str], on_malformed: MalformedPolicy = "reject") -> None:
        self.path = path
        self.on_malformed: MalformedPolicy = on_malformed
        self.skipped = 0
        self.rejected = 0
        self.bytes_read = 0
        self.files_done: list[str] = []
        self.skip_files: set[str] = set()
        self._errors: list[RowError] = []
        self._bytes_done = 0
        self._raw: pa.NativeFile | None = None
        self._first_file: tuple[pa.Schema, str] | None = None

    def take_errors(self) -> list[RowError]:
        """Rows rejected since the last call (``on_malformed: reject``), oldest first."""
        errors, self._errors = self._errors, []
        return errors

    def paths(self, ctx: RunContext) -> list[str]:
        """The input files this source will read, in order."""
        return expand_paths(self.path, ctx.base_dir)

    def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        return batches_in_thread(self._produce(ctx))

    def _produce(self, ctx: RunContext) -> Generator[pa.RecordBatch, None, None]:
        for path in self.paths(ctx):
            if path in self.skip_files:
                continue
            before = self.skipped
            yield from self._read_path(path)
            self.files_done.append(path)
            if self.skipped > before:
                ctx.log(
                    f"{display_path(path)}: skipped {self.skipped - before} malformed {self.unit}s",
                    "warning",
                )

    @abc.abstractmethod
    def _read_path(self, path: str) -> Iterator[pa.RecordBatch]:
        """The batches of one input file."""

    def _like_first_file(self, batch: pa.RecordBatch, path: str) -> pa.RecordBatch:
        """``batch`` of ``path`` with the columns and types of the first batch read (from the
        first file), or a SchemaMismatchError saying what differs."""
        if self._first_file is None:
            self._first_file = (batch.schema, display_path(path))
        schema, first = self._first_file
        return conform(
            batch,
            schema,
            where=display_path(path),
            origin=first,
            fix_columns=_SAME_COLUMNS_FIX,
        )

    def _with_valid_text(self, batch: pa.RecordBatch, path: str) -> pa.RecordBatch:
        """``batch`` (numbered) without the rows holding text that is not UTF-8, each handled
        by ``on_malformed`` with its record number: a binary format (Parquet, Arrow) can carry
        any bytes in a text column, which no later step or sink could read."""
        if not any(_holds_text(f.type) for f in batch.schema) or _valid(batch):
            return batch
        bad: dict[int, str] = {}  # row -> its first column holding such text
        lines = batch.column(LINE_COLUMN) if LINE_COLUMN in batch.schema.names else None
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            problem = _problem(column)
            if problem is None:
                continue
            if "UTF8" not in problem:  # not the text: the data itself is damaged
                span = (1, batch.num_rows)
                if lines is not None and len(lines) > 0:
                    span = (lines[0].as_py(), lines[-1].as_py())
                raise PermanentError.one(
                    f"column {name!r} of records {span[0]} to {span[1]} is damaged: {problem}",
                    display_path(path),
                    "the file is damaged: write it again from its source",
                )
            for i in range(batch.num_rows):
                if i not in bad and not _valid(column.slice(i, 1)):
                    bad[i] = name
        if not bad:  # not a text problem: let the next step meet it as it is
            return batch
        for i, name in sorted(bad.items()):
            line = lines[i].as_py() if lines is not None else i + 1
            row = {
                n: _value(c.slice(i, 1))
                for n, c in zip(batch.schema.names, batch.columns, strict=True)
                if not is_internal(n)
            }
            value = row.get(name)
            shown = f": {value.hex(' ')}" if isinstance(value, bytes) and len(value) <= 32 else ""
            self._malformed(
                path,
                line,
                f"column {name!r} holds bytes that are not UTF-8 text{shown}",
                b"",
                column=name,
                value=value,
                row=row,
            )
        keep = pa.array([i not in bad for i in range(batch.num_rows)])
        return batch.filter(keep)

    def _text_blocks(
        self, path: str, compression: Compression, encoding: str, block_size: int
    ) -> Generator[bytes, None, None]:
        """UTF-8 blocks of ``path``, keeping ``bytes_read`` up to date; closes the file."""
        stream, self._raw = open_input_pair(path, compression)
        try:
            for block in TextBlocks(stream, encoding, block_size):
                self.bytes_read = self._bytes_done + position(self._raw)
                yield block
        finally:
            self._bytes_done += position(self._raw)
            self.bytes_read = self._bytes_done
            self._raw = None
            stream.close()

    def _malformed(
        self,
        path: str,
        line: int,
        reason: str,
        raw: bytes,
        *,
        column: str | None = None,
        value: Any = None,
        row: dict[str, Any] | None = None,
    ) -> None:
        """Apply ``on_malformed`` to the record at ``path:line``."""
        where = f"{display_path(path)}:{line}"
        if self.on_malformed == "fail":
            raise PermanentError.one(
                reason,
                where,
                f"fix the {self.unit}, or set `on_malformed: reject` to send bad {self.unit}s "
                "to the rejects file (or `skip` to drop them)",
            )
        if self.on_malformed == "skip":
            self.skipped += 1
            return
        self.rejected += 1
        self._errors.append(
            RowError(
                line=line,
                reason=f"{where}: {reason}",
                column=column,
                value=value,
                row=row
                if row is not None
                else {"__file": display_path(path), "__raw": raw_text(raw, _MAX_RAW)},
            )
        )


def _holds_text(kind: pa.DataType) -> bool:
    """Whether values of ``kind`` hold text (a text column, or one nested inside)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return True
    if pa.types.is_string_view(kind):
        return True
    if pa.types.is_dictionary(kind):
        return _holds_text(kind.value_type)
    return any(_holds_text(kind.field(i).type) for i in range(kind.num_fields))


def _valid(values: pa.Array | pa.RecordBatch) -> bool:
    try:
        values.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _problem(values: pa.Array | pa.ChunkedArray) -> str | None:
    """What full validation finds wrong with ``values``, or None."""
    try:
        values.validate(full=True)
    except pa.ArrowInvalid as exc:
        return str(exc)
    return None


def _value(one: pa.Array) -> Any:
    """The value of a one-row array; text that is not UTF-8 as its bytes (see the rejects
    file's escapes), other values that cannot be read as None."""
    try:
        return one.to_pylist()[0]
    except (UnicodeDecodeError, pa.ArrowInvalid):
        pass
    if _holds_text(one.type) and one.type.num_fields == 0:
        with contextlib.suppress(pa.ArrowException):
            return one.cast(pa.large_binary()).to_pylist()[0]
    return None


def joined_pieces(
    pieces: Iterator[tuple[pa.Table, np.ndarray]],
) -> Iterator[tuple[pa.Table, np.ndarray]]:
    """``pieces`` (tables and the records of their rows), the ones of one schema in a row
    joined: a block whose bad lines alternate with good ones is read as many small tables,
    and each batch costs the steps after the source about as much as thousands of rows."""
    run: list[tuple[pa.Table, np.ndarray]] = []

    def joined() -> tuple[pa.Table, np.ndarray]:
        if len(run) == 1:
            return run[0]
        table = pa.concat_tables([t for t, _ in run]).combine_chunks()
        return table, np.concatenate([r for _, r in run])

    for table, records in pieces:
        if run and not table.schema.equals(run[0][0].schema):
            yield joined()
            run.clear()
        run.append((table, records))
    if run:
        yield joined()
