"""What every file source and sink shares: paths, compression, encodings and atomic output.

* Inputs: a path, a glob (``data/*.csv``, ``logs/**/*.jsonl.gz``) or a list of them, expanded
  in sorted order; ``-`` is standard input. Relative paths resolve against the pipeline file's
  directory. Compression is chosen from the extension (``.gz``, ``.zst``/``.zstd``, ``.bz2``)
  unless set explicitly.
* Text inputs are read in blocks of UTF-8 bytes whatever the file's encoding: other encodings
  are transcoded on the way in, a byte-order mark is dropped, and bytes that are not valid in
  the declared encoding are kept as markers that :func:`describe_bad_bytes` explains, so the
  row holding them can be rejected with its line number instead of failing the whole file.
* Outputs are written to ``<name>.tmp-<run id>`` in the destination directory, flushed with
  ``fsync`` and renamed over the destination on commit, or deleted on abort: a reader never
  sees a half-written file. The writer holds an exclusive lock on its temp file; a temp file
  nobody holds (left by a killed run) is removed by the next run writing the same path.
* :class:`FileSource` is the base of the file sources: inputs, rows they could not read
  (``take_errors``, sent to the rejects by the engine) and progress (``bytes_read``).
"""

from __future__ import annotations

import abc
import asyncio
import codecs
import contextlib
import fcntl
import glob
import io
import os
import re
import sys
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import AfterValidator, Field

from quiver.pipeline.component import LINE_COLUMN, ComponentConfig, RowError, RunContext
from quiver.runtime.errors import ConfigError, PermanentError, RetryableError

__all__ = [
    "STDIO",
    "AtomicOutput",
    "ColumnTypes",
    "Compression",
    "Encoding",
    "FileSinkConfig",
    "FileSource",
    "MalformedPolicy",
    "TextBlocks",
    "TextSinkConfig",
    "as_value_error",
    "batches_in_thread",
    "checked_encoding",
    "checked_types",
    "concatenated_text",
    "conform_batch",
    "describe_bad_bytes",
    "display_path",
    "drop_line_column",
    "expand_paths",
    "json_default",
    "json_strings",
    "normalize_encoding",
    "numbered",
    "open_input",
    "open_input_pair",
    "open_output",
    "parse_type",
    "position",
    "raw_text",
    "remove_stale_temps",
    "resolve_path",
]

#: The path that means standard input (for sources) or standard output (for sinks).
STDIO = "-"

Compression = Literal["auto", "none", "gzip", "zstd", "bz2"]

_EXTENSIONS: dict[str, str] = {".gz": "gzip", ".gzip": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_EXTENSIONS[".bz2"] = "bz2"
_GLOB_CHARS = re.compile(r"[*?\[]")
_MARK_ERRORS = "quiver-bad-bytes"


def resolve_path(path: str, base_dir: str) -> str:
    """``path`` with ``~`` expanded, relative to ``base_dir`` unless absolute or ``-``."""
    if path == STDIO:
        return path
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base_dir, path))


def display_path(path: str) -> str:
    """How a path appears in messages: ``<stdio>`` for ``-`` (standard input or output)."""
    return "<stdio>" if path == STDIO else path


def expand_paths(patterns: str | list[str], base_dir: str, *, where: str = "path") -> list[str]:
    """Every file matched by ``patterns`` (paths or globs), sorted within each pattern.

    A plain path that does not exist and a glob that matches nothing are errors that say so;
    a file matched by two patterns is read once.
    """
    items = [patterns] if isinstance(patterns, str) else list(patterns)
    if not items:
        raise ConfigError.one("no input path given", where, "set `path` to a file or a glob")
    found: list[str] = []
    seen: set[str] = set()
    for item in items:
        if item == STDIO:
            matches = [STDIO]
        else:
            full = resolve_path(item, base_dir)
            if _GLOB_CHARS.search(full):
                matches = sorted(p for p in glob.glob(full, recursive=True) if os.path.isfile(p))
                if not matches:
                    raise PermanentError.one(
                        f"no file matches {item!r} (looked for {full})",
                        where,
                        "check the pattern and the directory; paths are relative to the "
                        "pipeline file",
                    )
            elif not os.path.exists(full):
                raise PermanentError.one(
                    f"input file not found: {full}",
                    where,
                    _near_names(full) or "check the path; it is relative to the pipeline file",
                )
            elif os.path.isdir(full):
                raise PermanentError.one(
                    f"{full} is a directory",
                    where,
                    f"use a glob such as {os.path.join(item, '*')!r} to read the files in it",
                )
            else:
                matches = [full]
        for match in matches:
            if match not in seen:
                seen.add(match)
                found.append(match)
    return found


def _near_names(full: str) -> str:
    import difflib

    directory = os.path.dirname(full) or "."
    try:
        names = os.listdir(directory)
    except OSError:
        return ""
    close = difflib.get_close_matches(os.path.basename(full), names, n=1, cutoff=0.6)
    return f"did you mean {os.path.join(directory, close[0])!r}?" if close else ""


def _codec_for(path: str, compression: Compression) -> str | None:
    if compression == "none":
        return None
    if compression != "auto":
        return compression
    if path == STDIO:
        return None
    return _EXTENSIONS.get(os.path.splitext(path)[1].lower())


def open_input(path: str, compression: Compression = "auto") -> pa.NativeFile:
    """A binary input stream for ``path`` (``-`` is stdin), decompressed when needed."""
    return open_input_pair(path, compression)[0]


def open_input_pair(
    path: str, compression: Compression = "auto"
) -> tuple[pa.NativeFile, pa.NativeFile]:
    """The (maybe decompressing) input stream for ``path`` and the raw file under it, whose
    ``tell()`` says how many bytes of the file were read (for progress)."""
    codec = _codec_for(path, compression)
    try:
        raw: pa.NativeFile = (
            pa.PythonFile(_Unclosed(sys.stdin.buffer), mode="r")
            if path == STDIO
            else pa.OSFile(path, "rb")
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


class _Unclosed(io.RawIOBase):
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


# -- text input in UTF-8 blocks -------------------------------------------------------------


def _mark_bad_bytes(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: keep each undecodable byte as a lone surrogate U+DC00+byte."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + b) for b in bad), exc.end


def _register_error_handler() -> None:
    try:
        codecs.lookup_error(_MARK_ERRORS)
    except LookupError:
        codecs.register_error(_MARK_ERRORS, _mark_bad_bytes)


def normalize_encoding(encoding: str, where: str) -> str:
    """The codec name for ``encoding``, or a ConfigError listing a few valid names."""
    try:
        return codecs.lookup(encoding).name
    except LookupError as exc:
        raise ConfigError.one(
            f"unknown encoding {encoding!r}",
            where,
            "use a Python codec name such as utf-8, utf-8-sig, latin-1, cp1252, utf-16",
        ) from exc


class TextBlocks:
    """Blocks of UTF-8 bytes read from a text input in any encoding.

    ``utf-8`` input is passed through untouched (a leading BOM is dropped); other encodings are
    decoded incrementally and re-encoded as UTF-8. Bytes that are invalid in the source
    encoding become the UTF-8 encoding of lone surrogates, which are themselves invalid UTF-8:
    the parser then rejects just the rows holding them, and :func:`describe_bad_bytes` turns
    them back into the original byte values for the message.
    """

    def __init__(self, stream: pa.NativeFile, encoding: str, block_size: int) -> None:
        self.stream = stream
        self.block_size = block_size
        self.codec = codecs.lookup(encoding).name
        self._first = True
        self._decoder: codecs.IncrementalDecoder | None = None
        if self.codec not in ("utf-8", "utf-8-sig"):
            _register_error_handler()
            self._decoder = codecs.getincrementaldecoder(self.codec)(errors=_MARK_ERRORS)

    def __iter__(self) -> Iterator[bytes]:
        while True:
            raw = self.stream.read(self.block_size)
            final = not raw
            block = self._convert(raw, final)
            if block:
                yield block
            if final:
                return

    def _convert(self, raw: bytes, final: bool) -> bytes:
        if self._decoder is None:
            if self._first and raw:
                self._first = False
                if raw.startswith(codecs.BOM_UTF8):
                    raw = raw[3:]
                elif len(raw) < 3 and codecs.BOM_UTF8.startswith(raw):
                    more = self.stream.read(3 - len(raw))
                    raw = (raw + more).removeprefix(codecs.BOM_UTF8)
            return raw
        text = self._decoder.decode(raw, final)
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        return text.encode("utf-8", "surrogatepass")


_SURROGATE = re.compile(rb"\xed[\xb0-\xbf][\x80-\xbf]")


def describe_bad_bytes(data: bytes, encoding: str) -> str | None:
    """Why ``data`` (UTF-8 from :class:`TextBlocks`) is not valid text, or None if it is."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        match = _SURROGATE.match(data, exc.start)
        if match is not None:
            code = 0xD000 | (match[0][1] & 0x3F) << 6 | (match[0][2] & 0x3F)
            original = code - 0xDC00
            return (
                f"byte 0x{original:02x} is not valid {encoding} (byte {exc.start + 1} of the row)"
            )
        bad = data[exc.start : exc.end]
        return f"invalid {encoding} byte sequence {bad.hex(' ')} at byte {exc.start + 1} of the row"
    return None


# -- atomic output --------------------------------------------------------------------------


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
        self.codec = _codec_for(path, compression)
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
            out: pa.NativeFile = pa.PythonFile(_Unclosed(sys.stdout.buffer), mode="w")
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
                raise RetryableError.one(
                    f"cannot create output directory {directory}: {exc}", self.where
                ) from exc
        if not self.overwrite and os.path.exists(self.path):
            raise PermanentError.one(
                f"output file already exists: {self.path}",
                self.where,
                "delete it, choose another path, or set `overwrite: true`",
            )
        remove_stale_temps(self.path)
        try:
            fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        except PermissionError as exc:
            raise PermanentError.one(
                f"cannot write in {directory}: permission denied",
                self.where,
                "check the directory's permissions or choose another path",
            ) from exc
        except OSError as exc:
            raise RetryableError.one(f"cannot create {self.temp_path}: {exc}", self.where) from exc
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = pa.PythonFile(os.fdopen(os.dup(fd), "wb", buffering=1 << 20), mode="w")
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
            raise RetryableError.one(
                f"cannot finish writing {self.path}: {exc}", self.where
            ) from exc
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


# -- shared small pieces ----------------------------------------------------------------------


def drop_line_column(data: Any) -> Any:
    """``data`` (a RecordBatch, Table or Schema) without the ``__line`` column."""
    if isinstance(data, pa.Schema):
        index = data.get_field_index(LINE_COLUMN)
        return data if index < 0 else data.remove(index)
    index = data.schema.get_field_index(LINE_COLUMN)
    return data if index < 0 else data.remove_column(index)


_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "str": pa.string(),
    "string": pa.string(),
    "text": pa.string(),
    "large_string": pa.large_string(),
    "int": pa.int64(),
    "long": pa.int64(),
    "int64": pa.int64(),
    "int32": pa.int32(),
    "int16": pa.int16(),
    "int8": pa.int8(),
    "uint64": pa.uint64(),
    "uint32": pa.uint32(),
    "float": pa.float64(),
    "double": pa.float64(),
    "float64": pa.float64(),
    "float32": pa.float32(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
    "timestamp": pa.timestamp("us"),
    "datetimetz": pa.timestamp("us", tz="UTC"),
    "time": pa.time64("us"),
    "decimal": pa.decimal128(38, 9),
    "binary": pa.binary(),
}
_DECIMAL = re.compile(r"decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)")
_TIMESTAMP = re.compile(r"timestamp\(\s*(s|ms|us|ns)\s*(?:,\s*([^)]+?)\s*)?\)")


def parse_type(name: str, where: str) -> pa.DataType:
    """The Arrow type for a type name used in pipeline files (``int``, ``decimal(10,2)``...)."""
    key = name.strip().lower()
    if key in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[key]
    if m := _DECIMAL.fullmatch(key):
        precision, scale = int(m[1]), int(m[2])
        if not 1 <= precision <= 76 or scale > precision:
            raise ConfigError.one(
                f"invalid decimal type {name!r}",
                where,
                "precision must be 1..76 and scale at most the precision",
            )
        return (
            pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        )
    if m := _TIMESTAMP.fullmatch(name.strip()):
        return pa.timestamp(m[1], tz=m[2])
    from quiver.runtime.hints import did_you_mean as suggest

    hint = suggest(key, list(_SIMPLE_TYPES))
    raise ConfigError.one(
        f"unknown type {name!r}",
        where,
        (hint + " " if hint else "")
        + "use one of: str, int, int32, float, bool, date, datetime, time, decimal, "
        "decimal(p,s), timestamp(unit[, tz]), binary",
    )


def json_default(value: Any) -> Any:
    """How values orjson does not know are written as JSON: exact decimals as strings, bytes
    as base64, sets as lists."""
    import base64
    import decimal

    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def json_strings(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value of ``array`` (lists, structs, maps...) as its JSON text; nulls stay null."""
    import orjson

    values = array.to_pylist()
    return pa.array(
        [
            None if v is None else orjson.dumps(v, default=json_default).decode("utf-8")
            for v in values
        ],
        pa.string(),
    )


class FileSinkConfig(ComponentConfig):
    """Options every file sink shares."""

    path: str = Field(
        description="Output file, relative to the pipeline file; `-` writes standard output."
    )
    create_dirs: bool = Field(True, description="Create missing parent directories.")
    overwrite: bool = Field(
        True, description="Replace an existing file (atomically); false makes it an error."
    )


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


def serialized_in_slices(
    batch: pa.RecordBatch, serialize: Callable[[pa.RecordBatch], bytes], most_bytes: int
) -> bytes:
    """``serialize(batch)``, done on slices of about ``most_bytes`` of the batch each when it is
    bigger: the text of one Arrow string array holds at most 2 GiB."""
    if batch.nbytes <= most_bytes or batch.num_rows <= 1:
        return serialize(batch)
    step = max(1, batch.num_rows * most_bytes // batch.nbytes)
    return b"".join(serialize(batch.slice(start, step)) for start in range(0, batch.num_rows, step))


def concatenated_text(strings: pa.Array) -> bytes:
    """The bytes of every value of a string array, back to back (no copy per value)."""
    if strings.null_count:
        raise AssertionError("rows must not be null")
    _, offsets_buffer, data_buffer = strings.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)
    first, last = int(offsets[strings.offset]), int(offsets[strings.offset + len(strings)])
    if data_buffer is None:
        return b""
    result: bytes = data_buffer.slice(first, last - first).to_pybytes()
    return result


def raw_text(raw: bytes, limit: int = 4096) -> str:
    """A record's bytes as text for a rejects file: bytes that were invalid in the source
    encoding appear as ``\\xNN``, the line break is dropped, and long records are cut."""
    try:
        text = raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "backslashreplace")
    text = _MARKED.sub(lambda m: f"\\x{ord(m[0]) - 0xDC00:02x}", text).rstrip("\r\n")
    return text if len(text) <= limit else text[:limit] + "..."


_MARKED = re.compile("[\udc00-\udcff]")


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


def as_value_error(exc: ConfigError) -> ValueError:
    """A ConfigError as the ValueError a pydantic validator raises (the field path is added
    by the config loader, so only the message and the fix are kept)."""
    return ValueError(
        "; ".join(f"{d.message} ({d.fix})" if d.fix else d.message for d in exc.details)
    )


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
                row={"__file": display_path(path), "__raw": raw_text(raw, _MAX_RAW)},
            )
        )


def conform_batch(
    batch: pa.RecordBatch, schema: pa.Schema, where: str, other: str
) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns, in its order and types, or a PermanentError saying
    what differs from ``other`` (what the schema came from, e.g. "the first file")."""
    if batch.schema == schema:
        return batch
    missing = [n for n in schema.names if n not in batch.schema.names]
    extra = [n for n in batch.schema.names if n not in schema.names]
    if missing or extra:
        raise PermanentError.one(
            f"columns differ from those of {other}: missing {missing}, extra {extra}",
            where,
            "give every batch the same columns (read files of other layouts in another "
            "source, or select columns)",
        )
    try:
        return batch.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PermanentError.one(
            f"column types differ from those of {other}: {exc}",
            where,
            "give every batch the same column types (cast them in a processor)",
        ) from exc


def numbered(batch: pa.RecordBatch, first: int) -> pa.RecordBatch:
    """``batch`` with the ``__line`` column numbering its rows from ``first``."""
    numbers = np.arange(first, first + batch.num_rows, dtype=np.int64)
    return batch.append_column(LINE_COLUMN, pa.array(numbers))


def checked_encoding(value: str) -> str:
    """``value`` if it names a text encoding, else the ValueError a config validator raises."""
    try:
        normalize_encoding(value, "encoding")
    except ConfigError as exc:
        raise as_value_error(exc) from None
    return value


#: A config field naming a text encoding, checked when the config is loaded.
Encoding = Annotated[str, AfterValidator(checked_encoding)]


def checked_types(value: dict[str, str]) -> dict[str, str]:
    """``value`` (column name to type name) if every type name is known, else a ValueError."""
    for name, type_name in value.items():
        try:
            parse_type(type_name, f"types.{name}")
        except ConfigError as exc:
            raise ValueError(f"column {name!r}: {as_value_error(exc)}") from None
    return value


#: A config field of column types by name, checked when the config is loaded.
ColumnTypes = Annotated[dict[str, str], AfterValidator(checked_types)]
