"""Binary input and output streams of the file steps: compression chosen from the extension
(``.gz``, ``.zst``/``.zstd``, ``.bz2``) unless set, standard input and output behind ``-``,
how far a stream was read (for progress), and the errors of writing one
(:class:`DestinationGuard`)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import sys
from collections.abc import Iterator
from typing import Any, Literal

import pyarrow as pa

from quiver.pipeline.paths import STDIO
from quiver.runtime.errors import OutputClosedError, PermanentError, RetryableError

__all__ = [
    "Compression",
    "DestinationGuard",
    "UnclosingStream",
    "codec_for",
    "native_path",
    "open_input",
    "open_input_pair",
    "position",
]

Compression = Literal["auto", "none", "gzip", "zstd", "bz2"]
_EXTENSIONS: dict[str, str] = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_EXTENSIONS[".bz2"] = "bz2"


def codec_for(path: str, compression: Compression) -> str | None:
    """The pyarrow codec that ``compression`` means for ``path``, or None for plain bytes."""
    if compression == "none":
        return None
    if compression != "auto":
        return compression
    if path == STDIO:
        return None
    return _EXTENSIONS.get(os.path.splitext(path)[1].lower())


def native_path(path: str) -> str | bytes:
    """``path`` as Arrow's file functions take it: a file name that is not UTF-8 (its bytes
    kept as surrogates by Python, e.g. from a glob) as the bytes the file system holds, which
    Arrow passes on as they are (it encodes a ``str`` as UTF-8, and cannot encode those)."""
    try:
        path.encode()
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def open_input(path: str, compression: Compression = "auto") -> pa.NativeFile:
    """A binary input stream for ``path`` (``-`` is stdin), decompressed when needed."""
    return open_input_pair(path, compression)[0]


def open_input_pair(
    path: str, compression: Compression = "auto"
) -> tuple[pa.NativeFile, pa.NativeFile]:
    """The (maybe decompressing) input stream for ``path`` and the raw file under it, whose
    ``tell()`` says how many bytes of the file were read (for progress)."""
    codec = codec_for(path, compression)
    try:
        raw: pa.NativeFile = (
            pa.PythonFile(UnclosingStream(sys.stdin.buffer), mode="r")
            if path == STDIO
            else pa.OSFile(native_path(path), "rb")
        )
    except FileNotFoundError as exc:
        raise PermanentError.one(f"input file not found: {path}", path) from exc
    except PermissionError as exc:
        raise PermanentError.one(
            f"cannot read {path}: permission denied", path, "check the file's permissions"
        ) from exc
    except OSError as exc:
        raise RetryableError.one(f"cannot open {path}: {exc}", path) from exc
    if codec is None:
        return raw, raw
    return pa.CompressedInputStream(raw, codec), raw


class UnclosingStream(io.RawIOBase):
    """Standard input or output seen through a stream whose close leaves it open (closing a
    pyarrow stream closes what it wraps; the process may still print afterwards)."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream = stream

    def readable(self) -> bool:
        return bool(self.stream.readable())

    def writable(self) -> bool:
        return bool(self.stream.writable())

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.stream.read(size)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        written: int = self.stream.write(data)
        return written

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        if not self.closed and self.stream.writable():
            self.stream.flush()
        super().close()


def position(raw: pa.NativeFile) -> int:
    """How far ``raw`` was read, or 0 when it cannot tell (a pipe)."""
    try:
        return int(raw.tell())
    except (OSError, ValueError, pa.ArrowException):
        return 0


class DestinationGuard:
    """What a file sink's writes go through: an operating-system error of writing (a full
    disk, a read-only file system, an I/O error) is raised again as the same kind of
    ``OSError``, its errno kept, naming the destination (not its temporary file). A failure is
    remembered: once a write or a commit failed (the temporary file may hold part of a batch,
    or was already thrown away), every later one raises it again, so a retry can never
    publish an output that lost or doubled data::

        with self.guard.writing():
            self.stream.write(data)
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.failed: Exception | None = None

    @property
    def name(self) -> str:
        """The destination as error messages name it."""
        return "standard output" if self.path == STDIO else self.path

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        if self.failed is not None:
            raise self.failed
        try:
            yield
        except OSError as exc:
            if exc.errno == errno.EPIPE and self.path == STDIO:
                closed = OutputClosedError.one(
                    "the reader of standard output closed it", self.name, ""
                )
                self.failed = closed
                raise closed from exc
            self.failed = self._named(exc)
            if self.failed is exc:
                raise
            raise self.failed from exc
        except Exception as exc:
            self.failed = exc
            raise

    def _named(self, exc: OSError) -> OSError:
        if exc.errno is None or exc.filename == self.name:
            return exc
        reason = exc.strerror or os.strerror(exc.errno)
        return OSError(exc.errno, reason, self.name)  # OSError picks the subclass for errno
