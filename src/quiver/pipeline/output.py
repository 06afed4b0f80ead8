"""What file sinks write through: atomic output files and the options every file sink shares.

Outputs are written to ``<name>.tmp-<run id>`` in the destination directory, flushed with
``fsync`` and renamed over the destination on commit, or deleted on abort: a reader never
sees a half-written file. The writer holds an exclusive lock on its temp file; a temp file
nobody holds (left by a killed run) is removed by the next run writing the same path.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import ComponentConfig, RunContext
from quiver.pipeline.paths import STDIO, resolve_path
from quiver.pipeline.streams import Compression, UnclosingStream, codec_for
from quiver.runtime.delivery import file_error
from quiver.runtime.errors import PermanentError

__all__ = [
    "WRITEBACK_BYTES",
    "AtomicOutput",
    "FileSinkConfig",
    "Serialized",
    "TextSinkConfig",
    "WritingBack",
    "concatenated_text",
    "lock_exclusively",
    "open_output",
    "remove_stale_temps",
    "serialized_in_slices",
]


def remove_stale_temps(final_path: str) -> list[str]:
    """Delete ``<name>.tmp-*`` files next to ``final_path`` that no running writer holds."""
    directory = os.path.dirname(final_path) or "."
    prefix = os.path.basename(final_path) + ".tmp-"
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        temp = os.path.join(directory, name)
        try:
            fd = os.open(temp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live writer holds it
        try:
            os.unlink(temp)
            removed.append(temp)
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


#: Bytes of an output written between two requests to the kernel to write them to disk.
WRITEBACK_BYTES = 8 << 20


class WritingBack(io.FileIO):
    """An output file whose bytes the kernel starts writing to disk as they are written.

    Each :data:`WRITEBACK_BYTES` written, the kernel is asked to start writing them out
    without waiting (Linux ``sync_file_range``), so the disk works while the run does and the
    ``fsync`` on commit waits only for the last of them, not for the whole file at once (about
    0.15 s per 100 MB on an SSD). Elsewhere, and where the call fails, only the fsync writes.
    """

    def __init__(self, fd: int) -> None:
        super().__init__(fd, "wb", closefd=True)
        self.written = 0
        self.requested = 0  # bytes the kernel was asked to write out
        self.requests = 0

    def write(self, data: Any, /) -> int:
        count = super().write(data)
        if count:
            self.written += count
            if self.written - self.requested >= WRITEBACK_BYTES:
                start = _start_writeback()
                if start is not None:
                    start(self.fileno(), self.requested, self.written - self.requested)
                    self.requests += 1
                self.requested = self.written
        return count if count is not None else 0


@functools.cache
def _start_writeback() -> Callable[[int, int, int], None] | None:
    """``(fd, offset, size)``: start writing that range of the file to disk, without waiting
    (``sync_file_range(SYNC_FILE_RANGE_WRITE)``); None where the system has no such call."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    write_only = 2  # SYNC_FILE_RANGE_WRITE: start the writes of dirty pages, wait for none

    def start(fd: int, offset: int, size: int) -> None:
        call(fd, offset, size, write_only)  # an error leaves the writing to the fsync

    return start


@dataclass
class _Open:
    fd: int
    raw: pa.NativeFile
    stream: pa.NativeFile


class AtomicOutput:
    """A file written under a temporary name and renamed into place on :meth:`commit`.

    ``-`` writes to standard output directly (nothing to rename; abort cannot take back what
    was already written, so pipelines writing to stdout should run with ``fail_fast``).
    """

    def __init__(
        self,
        path: str,
        run_id: str,
        *,
        compression: Compression = "auto",
        create_dirs: bool = True,
        overwrite: bool = True,
        where: str = "path",
    ) -> None:
        self.path = path
        self.where = where
        self.codec = codec_for(path, compression)
        safe_run = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id) or "run"
        self.temp_path = f"{path}.tmp-{safe_run}"
        self.create_dirs = create_dirs
        self.overwrite = overwrite
        self._open: _Open | None = None
        self._stdout: pa.NativeFile | None = None

    @property
    def is_stdout(self) -> bool:
        return self.path == STDIO

    def open(self) -> pa.NativeFile:
        """Create the temp file (and parent directories when allowed) and return its stream."""
        if self.is_stdout:
            out: pa.NativeFile = pa.PythonFile(UnclosingStream(sys.stdout.buffer), mode="w")
            self._stdout = pa.CompressedOutputStream(out, self.codec) if self.codec else out
            return self._stdout
        directory = os.path.dirname(self.path) or "."
        if not os.path.isdir(directory):
            if not self.create_dirs:
                raise PermanentError.one(
                    f"output directory does not exist: {directory}",
                    self.where,
                    "create it, or set `create_dirs: true`",
                )
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise file_error(exc, directory, self.where) from exc
        if not self.overwrite and os.path.exists(self.path):
            raise PermanentError.one(
                f"output file already exists: {self.path}",
                self.where,
                "delete it, choose another path, or set `overwrite: true`",
            )
        remove_stale_temps(self.path)
        if os.path.isdir(self.path):
            raise PermanentError.one(
                f"{self.path} is a directory", self.where, "name a file, not a directory"
            )
        try:
            fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT, 0o666)
        except OSError as exc:
            raise file_error(exc, self.path, self.where) from exc
        lock_exclusively(fd, self.temp_path, self.where)
        os.ftruncate(fd, 0)
        raw = pa.PythonFile(io.BufferedWriter(WritingBack(os.dup(fd)), 1 << 20), mode="w")
        stream = pa.CompressedOutputStream(raw, self.codec) if self.codec else raw
        self._open = _Open(fd, raw, stream)
        return stream

    def commit(self) -> None:
        """Flush, fsync and rename the temp file over the destination."""
        if self.is_stdout:
            if self._stdout is not None:
                if self.codec:
                    self._stdout.close()
                else:
                    self._stdout.flush()
                sys.stdout.buffer.flush()
                self._stdout = None
            return
        state = self._open
        if state is None:
            return
        try:
            _close_stream(state)
            os.fsync(state.fd)
            os.replace(self.temp_path, self.path)
            _fsync_dir(os.path.dirname(self.path) or ".")
        except OSError as exc:
            self.abort()
            raise file_error(exc, self.path, self.where) from exc
        finally:
            if self._open is not None:
                os.close(state.fd)
                self._open = None

    def abort(self) -> None:
        """Delete the temp file; the destination keeps whatever it held before the run."""
        if self.is_stdout:
            self._stdout = None
            return
        state = self._open
        self._open = None
        if state is None:
            return
        with contextlib.suppress(Exception):  # the file is being thrown away
            _close_stream(state)
        try:
            os.unlink(self.temp_path)
        except FileNotFoundError:
            pass
        finally:
            os.close(state.fd)


def lock_exclusively(fd: int, path: str, where: str) -> None:
    """Take the exclusive lock of a temporary output file without waiting: a file locked
    already is being written by another writer (another sink, or another run, with the same
    destination), and waiting for it would wait for that writer to finish."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise PermanentError.one(
            f"{path} is being written by another writer at the same time",
            where,
            "give each sink, the rejects file and each concurrent run an output path of its own",
        ) from exc


def _close_stream(state: _Open) -> None:
    if not state.stream.closed:
        state.stream.close()
    if not state.raw.closed:
        state.raw.close()


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FileSinkConfig(ComponentConfig):
    """Options every file sink shares."""

    path: str = Field(
        description="Output file, relative to the pipeline file; `-` writes standard output."
    )
    create_dirs: bool = Field(True, description="Create missing parent directories.")
    overwrite: bool = Field(
        True, description="Replace an existing file (atomically); false makes it an error."
    )

    @property
    def writes_directory(self) -> bool:
        """Whether ``path`` names a directory that gets new files at every commit (so a run
        committing in checkpoints needs no ``{stem}`` in it)."""
        return False


class TextSinkConfig(FileSinkConfig):
    """Options of sinks writing text, which may be compressed as a whole."""

    compression: Compression = Field(
        "auto", description="auto (from the extension: .gz, .zst, .bz2), none, gzip, zstd, bz2."
    )


def open_output(
    cfg: FileSinkConfig, ctx: RunContext, compression: Compression = "none"
) -> tuple[AtomicOutput, pa.NativeFile]:
    """The atomic output for a file sink's ``path`` and its open stream."""
    output = AtomicOutput(
        resolve_path(cfg.path, ctx.base_dir),
        ctx.run_id,
        compression=compression,
        create_dirs=cfg.create_dirs,
        overwrite=cfg.overwrite,
    )
    return output, output.open()


#: Serialised rows: bytes, or a view of the Arrow buffer that holds them (never copied).
Serialized = bytes | memoryview


def serialized_in_slices(
    batch: pa.RecordBatch, serialize: Callable[[pa.RecordBatch], Serialized], most_bytes: int
) -> Serialized:
    """``serialize(batch)``, done on slices of about ``most_bytes`` of the batch each when it is
    bigger: the text of one Arrow string array holds at most 2 GiB."""
    if batch.nbytes <= most_bytes or batch.num_rows <= 1:
        return serialize(batch)
    step = max(1, batch.num_rows * most_bytes // batch.nbytes)
    return b"".join(serialize(batch.slice(start, step)) for start in range(0, batch.num_rows, step))


def concatenated_text(strings: pa.Array) -> Serialized:
    """The bytes of every value of a string array, back to back: a view of the array's own
    buffer (no copy at all)."""
    if strings.null_count:
        raise AssertionError("rows must not be null")
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)
    first, last = int(offsets[strings.offset]), int(offsets[strings.offset + len(strings)])
    if data_buffer is None:
        return b""
    return memoryview(data_buffer)[first:last]
