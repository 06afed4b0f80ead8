"""The spool: a persistent on-disk queue of Arrow record batches between a receiver and the
pipeline.

A receiver acknowledges data to its client only once :meth:`Spool.append` has returned, and
that happens after the batch is written and ``fsync``'d: whatever a client was told is
accepted survives a crash or ``SIGKILL`` of the process. When the pipeline's sinks have
committed, :meth:`Spool.commit` drops what they hold; what was not committed is read again
(:meth:`Spool.replay`) by the next run on the same spool directory.

On disk: numbered segment files (``00000000000000000001.seg`` ...), each a magic header and
records of ``[length u32][crc32 u32][payload]``, the payload being ``S`` + an Arrow IPC schema
(a segment's first record, and again when the schema changes) or ``B`` + an Arrow IPC record
batch, its buffers LZ4-compressed by default (``compression``; Arrow's IPC body compression,
which reading undoes from the message itself). Writing a batch costs the kernel's copy of it
into the page cache more than compressing it: a third of the bytes is the cheaper write.
Columns that are null in every row of a batch are left out of its record (the wide telemetry
layout leaves most columns null): the ``S`` record then holds the schema of the
columns written, with the whole schema in its metadata, and reading puts the null columns
back. A torn or corrupt record (a crash in the middle of a write, before the client was told
anything) ends the reading of its segment. ``committed`` holds the position up to which
everything is committed (``segment offset``), replaced atomically. ``lock`` is held with
``flock`` while a spool is open, so two processes never share a directory.

Appends made while a write is on its way are written and ``fsync``'d together (group commit),
so many concurrent requests cost one ``fsync``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.ipc as ipc

from quiver.runtime.errors import PermanentError

__all__ = ["Position", "Spool", "SpoolFullError"]

_MAGIC = b"QVSPOOL1"
_HEAD = struct.Struct("<II")
_SUFFIX = ".seg"
_COMMITTED = "committed"
_IOV_MAX = 1020  # buffers per writev call (POSIX guarantees 16, Linux takes 1024)
_WHOLE = b"quiver.spool.schema"  # S record metadata: the schema with the null columns
_KEPT = b"quiver.spool.columns"  # and the positions in it of the columns written


@dataclass(frozen=True, order=True)
class Position:
    """The end of a record: segment number and byte offset."""

    segment: int
    offset: int


class SpoolFullError(Exception):
    """The spool holds ``max_bytes`` not yet committed: the receiver must push back."""


class Spool:
    """A spool directory; see the module's doc. Open with :meth:`open`, close with
    :meth:`close`."""

    def __init__(
        self,
        path: str,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 64 << 20,
        fsync: bool = True,
        compression: Literal["lz4", "none"] = "lz4",
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._options = ipc.IpcWriteOptions(
            compression=None if compression == "none" else "lz4", use_threads=False
        )
        self._lock_fd = -1
        self._io = threading.Lock()
        self._file: int = -1  # fd of the segment being written
        self._segment = 0
        self._offset = 0
        self._schema: pa.Schema | None = None
        self._kept: tuple[int, ...] = ()  # the columns of self._schema written
        self._sizes: dict[int, int] = {}  # segment -> bytes on disk
        self._committed = Position(0, 0)
        self._pending: list[tuple[pa.RecordBatch, asyncio.Future[Position]]] = []
        self._writer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ open / close

    def open(self) -> None:
        """Create or open the directory and take its lock."""
        try:
            os.makedirs(self.path, exist_ok=True)
            fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise PermanentError.one(
                f"cannot open the spool directory {self.path}: {exc.strerror}",
                "spool.path",
                "point spool.path at a directory this process may write",
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise PermanentError.one(
                f"the spool directory {self.path} is in use by another running process",
                "spool.path",
                "stop the other receiver, or give each receiver a spool.path of its own",
            ) from exc
        self._lock_fd = fd
        self._committed = self._read_committed()
        for seg in self._segments():
            with contextlib.suppress(OSError):
                self._sizes[seg] = os.path.getsize(self._seg_path(seg))
        self._segment = max(self._sizes, default=0)  # appends start a new segment

    def close(self) -> None:
        if self._file >= 0:
            os.close(self._file)
            self._file = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    @property
    def held_bytes(self) -> int:
        """Bytes on disk not yet committed (approximately: whole segments)."""
        return sum(self._sizes.values())

    # ------------------------------------------------------------------ replay

    def replay(self) -> Iterator[tuple[Position, pa.RecordBatch]]:
        """Every batch written and not committed, oldest first, from segments that existed
        when the spool was opened."""
        for seg in sorted(s for s in self._sizes if s <= self._segment):
            if seg < self._committed.segment:
                continue
            start = self._committed.offset if seg == self._committed.segment else 0
            yield from self._read_segment(seg, start)

    def _read_segment(self, seg: int, start: int) -> Iterator[tuple[Position, pa.RecordBatch]]:
        try:
            with open(self._seg_path(seg), "rb") as fh:
                data = fh.read()
        except OSError:
            return
        offset = len(_MAGIC) if data.startswith(_MAGIC) else len(data)
        schema: pa.Schema | None = None
        whole: tuple[pa.Schema, list[int]] | None = None
        while offset + _HEAD.size <= len(data):
            length, crc = _HEAD.unpack_from(data, offset)
            body = data[offset + _HEAD.size : offset + _HEAD.size + length]
            if len(body) != length or zlib.crc32(body) != crc or not body:
                break  # torn or corrupt: nothing after it was acknowledged
            end = offset + _HEAD.size + length
            buf = pa.py_buffer(body[1:])
            if body[:1] == b"S":
                schema = ipc.read_schema(buf)
                whole = _whole_schema(schema)
            elif body[:1] == b"B" and schema is not None and end > start:
                batch = ipc.read_record_batch(buf, schema)
                yield Position(seg, end), batch if whole is None else _with_nulls(batch, *whole)
            offset = end
        self._sizes[seg] = offset  # a torn tail is garbage: the segment ends here

    # ------------------------------------------------------------------ append

    async def append(self, batch: pa.RecordBatch) -> Position:
        """Write ``batch`` durably; returns its position once it is on disk.

        Raises :class:`SpoolFullError` when ``max_bytes`` are held, ``OSError`` when the disk
        refuses the write.
        """
        if self.held_bytes >= self.max_bytes:
            raise SpoolFullError(
                f"the spool holds {self.held_bytes:,} bytes not yet committed (max_bytes "
                f"{self.max_bytes:,})"
            )
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        self._pending.append((batch, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_pending())
        return await asyncio.shield(future)

    async def _write_pending(self) -> None:
        while self._pending:
            group, self._pending = self._pending, []
            try:
                positions = await asyncio.to_thread(self._write, [b for b, _ in group])
            except Exception as exc:
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), pos in zip(group, positions, strict=True):
                if not future.done():
                    future.set_result(pos)

    def _write(self, batches: list[pa.RecordBatch]) -> list[Position]:
        with self._io:
            try:
                return self._write_records(batches)
            except BaseException:
                self._abandon_segment()
                raise

    def _abandon_segment(self) -> None:
        """After a write that failed (a full disk): cut the segment back to the records
        written whole and ``fsync``'d, or remove it when it holds none, and let the next write
        begin a new segment. Reading a segment stops at a torn record, so a record written
        after one would be lost on replay; and the records of the failed write were counted
        (offset, schema) as if written."""
        if self._file < 0:
            return
        size = self._sizes.get(self._segment, 0)
        with contextlib.suppress(OSError):
            if size <= len(_MAGIC):
                os.unlink(self._seg_path(self._segment))
                self._sizes.pop(self._segment, None)
            else:
                os.ftruncate(self._file, size)
        with contextlib.suppress(OSError):
            os.close(self._file)
        self._file = -1
        self._schema = None

    def _write_records(self, batches: list[pa.RecordBatch]) -> list[Position]:
        positions = []
        parts: list[bytes | memoryview] = []
        for batch in batches:
            if self._file < 0 or self._offset >= self.segment_bytes:
                self._flush(parts)
                parts = []
                self._new_segment()
            kept = _not_null(batch)
            if batch.schema != self._schema or kept != self._kept:
                self._schema, self._kept = batch.schema, kept
                parts.extend(self._record(b"S", _stored_schema(batch.schema, kept)))
            if len(kept) < batch.num_columns:
                batch = batch.select(list(kept))
            parts.extend(self._record(b"B", _batch_message(batch, self._options)))
            positions.append(Position(self._segment, self._offset))
        self._flush(parts)
        return positions

    def _record(self, kind: bytes, payload: pa.Buffer) -> list[bytes | memoryview]:
        data = memoryview(payload)  # no copy: the batch's own serialized buffer
        length = len(kind) + len(data)
        self._offset += _HEAD.size + length
        return [_HEAD.pack(length, zlib.crc32(data, zlib.crc32(kind))), kind, data]

    def _flush(self, parts: list[bytes | memoryview]) -> None:
        if not parts:
            return
        for start in range(0, len(parts), _IOV_MAX):
            chunk = parts[start : start + _IOV_MAX]
            written = os.writev(self._file, chunk)
            if written < sum(len(p) for p in chunk):  # a short write: the rest in one piece
                rest = memoryview(b"".join(chunk))[written:]
                while rest:
                    rest = rest[os.write(self._file, rest) :]
        if self.fsync:
            os.fsync(self._file)
        self._sizes[self._segment] = self._offset

    def _new_segment(self) -> None:
        if self._file >= 0:
            os.close(self._file)
            self._file = -1
        self._segment += 1
        path = self._seg_path(self._segment)
        self._file = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        self._schema = None
        if os.write(self._file, _MAGIC) < len(_MAGIC):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        self._offset = len(_MAGIC)
        self._sizes[self._segment] = self._offset
        if self.fsync:
            os.fsync(self._file)
            self._fsync_dir()

    # ------------------------------------------------------------------ commit

    def commit(self, upto: Position) -> None:
        """Everything up to ``upto`` is held by the sinks: drop it from disk."""
        with self._io:
            # the segments wholly committed go first: removing them needs no space, and on a
            # full disk frees what the marker needs (a crash before the marker is written
            # replays from the previous one, as it would have anyway)
            for seg in sorted(self._sizes):
                done = seg < upto.segment or (
                    seg == upto.segment and upto.offset >= self._sizes[seg]
                )
                if done and seg != self._segment:
                    with contextlib.suppress(OSError):
                        os.unlink(self._seg_path(seg))
                    del self._sizes[seg]
            self._write_committed(upto)
            self._committed = upto

    def _read_committed(self) -> Position:
        try:
            with open(os.path.join(self.path, _COMMITTED)) as fh:
                seg, offset = fh.read().split()
            return Position(int(seg), int(offset))
        except (OSError, ValueError):
            return Position(0, 0)

    def _write_committed(self, pos: Position) -> None:
        final = os.path.join(self.path, _COMMITTED)
        temp = final + ".tmp"
        with open(temp, "w") as fh:
            fh.write(f"{pos.segment} {pos.offset}\n")
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        os.replace(temp, final)
        if self.fsync:
            self._fsync_dir()

    # ------------------------------------------------------------------ files

    def _seg_path(self, seg: int) -> str:
        return os.path.join(self.path, f"{seg:020d}{_SUFFIX}")

    def _segments(self) -> list[int]:
        found = []
        for name in os.listdir(self.path):
            if name.endswith(_SUFFIX) and name[: -len(_SUFFIX)].isdigit():
                found.append(int(name[: -len(_SUFFIX)]))
        return sorted(found)

    def _fsync_dir(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _batch_message(batch: pa.RecordBatch, options: ipc.IpcWriteOptions) -> pa.Buffer:
    """The IPC record batch message of ``batch`` written with ``options`` (which
    ``RecordBatch.serialize`` does not take): an IPC stream's bytes past its Schema message."""
    sink = pa.BufferOutputStream()
    writer = ipc.new_stream(sink, batch.schema, options=options)
    writer.write_batch(batch)  # not closed: no end-of-stream marker after the batch
    stream = sink.getvalue()
    reader = pa.BufferReader(stream)
    ipc.read_message(reader)  # the Schema message
    return stream.slice(reader.tell())


def _not_null(batch: pa.RecordBatch) -> tuple[int, ...]:
    """The columns of ``batch`` with a value in some row (all of them when it has no rows)."""
    rows = batch.num_rows
    return tuple(
        i for i, column in enumerate(batch.columns) if not rows or column.null_count < rows
    )


def _stored_schema(schema: pa.Schema, kept: tuple[int, ...]) -> pa.Buffer:
    """The ``S`` record of batches of ``schema`` written with the columns ``kept``."""
    if len(kept) == len(schema):
        return schema.serialize()
    meta = dict(schema.metadata or {})
    meta[_WHOLE] = schema.serialize().to_pybytes()
    meta[_KEPT] = ",".join(map(str, kept)).encode()
    return pa.schema([schema.field(i) for i in kept], metadata=meta).serialize()


def _whole_schema(stored: pa.Schema) -> tuple[pa.Schema, list[int]] | None:
    """For an ``S`` record written without null columns, the whole schema and the positions
    in it of the columns written; None for a schema written whole."""
    meta = stored.metadata or {}
    if _WHOLE not in meta:
        return None
    kept = [int(i) for i in meta[_KEPT].split(b",")] if meta[_KEPT] else []
    return ipc.read_schema(pa.py_buffer(meta[_WHOLE])), kept


def _with_nulls(batch: pa.RecordBatch, whole: pa.Schema, kept: list[int]) -> pa.RecordBatch:
    """A batch written without its null columns, with them put back (schema ``whole``)."""
    rows = batch.num_rows
    arrays = [pa.nulls(rows, f.type) for f in whole]
    for column, i in zip(batch.columns, kept, strict=True):
        arrays[i] = column
    return pa.RecordBatch.from_arrays(arrays, schema=whole)
