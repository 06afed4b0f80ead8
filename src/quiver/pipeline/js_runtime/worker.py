"""A JavaScript worker process: one isolate, batches in over stdin, results out over stdout.

Started by :class:`quiver.pipeline.js_runtime.pool.WorkerPool` as
``python -m quiver.pipeline.js_runtime.worker``. Frames on the pipes are a 4-byte big-endian
length and a JSON payload: the first frame in holds the isolate options; each later frame names
a file in shared memory (``/dev/shm``) holding one batch as an Arrow IPC stream. Each answer
names a file holding the kept rows and the rows of each named route, one IPC stream after the
other, with their offsets; columns of the kept rows that are input columns unchanged, row for
row, are named in the answer instead of sent. Batches never go through the pipes: the reader
maps the file. The process imports only pyarrow, orjson and mini-racer, so it starts in a
fraction of a second.

A worker dies with the process that started it, even in the middle of a script: on Linux the
kernel sends it SIGKILL when its parent goes (``prctl(PR_SET_PDEATHSIG)``), and a watchdog
thread that checks the parent every quarter second covers the other platforms. Hand-over files
are named ``quiver-js-<pid>-<process start>-<n>.arrow`` after the process that wrote them, so a
pool that starts removes those whose writer is gone (:func:`remove_stale_exchange_files`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import struct
import sys
import threading
import time
from typing import IO, Any

import orjson
import pyarrow as pa

__all__ = [
    "exchange_dir",
    "from_ipc",
    "main",
    "read_batches",
    "read_frame",
    "remove_exchange_files",
    "remove_stale_exchange_files",
    "to_ipc",
    "write_batches",
    "write_frame",
]

_LEN = struct.Struct(">I")


def write_frame(out: IO[bytes], payload: bytes | memoryview) -> None:
    out.write(_LEN.pack(len(payload)))
    out.write(payload)


def read_frame(inp: IO[bytes]) -> bytes | None:
    head = inp.read(_LEN.size)
    if len(head) < _LEN.size:
        return None
    (size,) = _LEN.unpack(head)
    data = inp.read(size)
    if len(data) < size:
        return None
    return data


def to_ipc(batch: pa.RecordBatch) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return sink.getvalue()


def from_ipc(data: bytes | pa.Buffer) -> pa.RecordBatch:
    reader = pa.ipc.open_stream(data)
    for batch in reader:
        return batch
    return pa.RecordBatch.from_pylist([], schema=reader.schema)


def exchange_dir() -> str:
    """Where batches are handed over: shared memory when there is some, else the temp dir."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        return "/dev/shm"
    import tempfile

    return tempfile.gettempdir()


_SEQ = itertools.count()
#: ``quiver-js-<pid>-<process start>-<n>.arrow`` (older releases: ``quiver-js-<pid>-<n>.arrow``).
_EXCHANGE_NAME = re.compile(r"^quiver-js-(\d+)-(?:(\d+)-)?\d+\.arrow$")
#: Environment variable naming the pool's process id, read by the worker at start.
PARENT_ENV = "QUIVER_JS_PARENT"
#: How often the worker's watchdog checks that its parent is still there.
PARENT_CHECK_SECONDS = 0.25


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), 0 where unknown, None if gone.

    A process id alone is not an owner: ids are reused. With the start time, a file of a
    process that is gone is told apart from one of a new process with the same id.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return None
    except OSError:
        stat = b""
    if stat:
        return int(stat.rsplit(b")", 1)[1].split()[19])
    try:  # no /proc: only whether the id is in use
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0


_OWN_START: int | None = None


def _own_start() -> int:
    global _OWN_START
    if _OWN_START is None:
        _OWN_START = process_start(os.getpid()) or 0
    return _OWN_START


def write_batches(batches: list[pa.RecordBatch], directory: str) -> dict[str, Any]:
    """Write batches (one IPC stream each) into a new file; its path and the stream offsets."""
    name = f"quiver-js-{os.getpid()}-{_own_start()}-{next(_SEQ)}.arrow"
    path = os.path.join(directory, name)
    parts: list[list[int]] = []
    with pa.OSFile(path, "wb") as f:
        for b in batches:
            start = f.tell()
            with pa.ipc.new_stream(f, b.schema) as writer:
                writer.write_batch(b)
            parts.append([start, f.tell() - start])
    return {"file": path, "parts": parts}


def remove_exchange_files(pid: int) -> None:
    """Delete the hand-over files a process left behind (it exited or was killed)."""
    import glob

    for path in glob.glob(os.path.join(exchange_dir(), f"quiver-js-{pid}-*.arrow")):
        with contextlib.suppress(OSError):
            os.unlink(path)


def remove_stale_exchange_files(directory: str | None = None) -> list[str]:
    """Delete hand-over files whose writer is gone (killed mid-batch); the paths removed."""
    directory = directory or exchange_dir()
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    starts: dict[int, int | None] = {}
    for name in names:
        m = _EXCHANGE_NAME.match(name)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid not in starts:
            starts[pid] = process_start(pid)
        start = starts[pid]
        alive = start is not None and (m.group(2) is None or start == 0 or start == int(m.group(2)))
        if alive:
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(OSError):  # e.g. another user's file
            os.unlink(path)
            removed.append(path)
    return removed


def read_batches(ref: dict[str, Any], *, unlink: bool) -> list[pa.RecordBatch]:
    """The batches of a file written by :func:`write_batches` (mapped, not copied)."""
    path = ref["file"]
    with pa.memory_map(path, "r") as mm:
        data = mm.read_buffer()
    if unlink:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return [from_ipc(data.slice(start, size)) for start, size in ref["parts"]]


def _answer(out: IO[bytes], header: dict[str, Any], batches: list[pa.RecordBatch]) -> None:
    if batches:
        header["data"] = write_batches(batches, exchange_dir())
    write_frame(out, orjson.dumps(header))
    out.flush()


def _die_with_parent() -> None:
    """Make this process end when the pool's process ends, even while V8 is busy."""
    try:
        parent = int(os.environ.get(PARENT_ENV, ""))
    except ValueError:
        parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    def orphaned() -> bool:
        return os.getppid() != parent

    if orphaned():  # the parent was gone before the signal was armed
        os._exit(1)

    def watch() -> None:
        while not orphaned():
            time.sleep(PARENT_CHECK_SECONDS)
        remove_exchange_files(os.getpid())
        os._exit(1)

    threading.Thread(target=watch, name="quiver-js-parent-watch", daemon=True).start()


def main() -> int:
    from quiver.pipeline.js_runtime.v8 import as_batch_work

    as_batch_work()  # before the threads started from here on, V8's among them, inherit it
    _die_with_parent()
    from quiver.pipeline.js_runtime.isolate import (
        Isolate,
        IsolateOptions,
        ScriptAbortError,
        ScriptLoadError,
    )

    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    # Anything printed by accident goes to stderr, never into the protocol stream.
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    first = read_frame(inp)
    if first is None:
        return 0
    options = IsolateOptions.from_json(orjson.loads(first))
    try:
        isolate = Isolate(options)
    except ScriptLoadError as exc:
        _answer(out, {"ok": False, "kind": "load", "message": exc.message, "where": exc.where}, [])
        return 0
    _answer(out, {"ok": True, "style": isolate.style, "pid": os.getpid()}, [])

    while True:
        frame = read_frame(inp)
        if frame is None:
            isolate.close()
            remove_exchange_files(os.getpid())
            return 0
        (batch,) = read_batches(orjson.loads(frame), unlink=False)
        try:
            result = isolate.run(batch)
        except ScriptAbortError as exc:
            _answer(out, {"ok": False, "kind": exc.kind, "message": exc.message}, [])
            continue
        except ScriptLoadError as exc:  # the isolate could not be rebuilt after an abort
            _answer(
                out, {"ok": False, "kind": "load", "message": exc.message, "where": exc.where}, []
            )
            return 1
        names = list(result.routes)
        main = result.batch
        # Columns passed through unchanged stay behind: the pool has them already.
        sent = [n for n in main.schema.names if n not in result.passthrough]
        header = {
            "ok": True,
            "errors": result.errors,
            "logs": result.logs,
            "meta": result.metadata,
            "routes": names,
            "columns": main.schema.names,
            "passthrough": result.passthrough,
        }
        if len(sent) < main.num_columns:
            main = main.select(sent)
        _answer(out, header, [main, *(result.routes[n] for n in names)])


if __name__ == "__main__":
    sys.exit(main())
