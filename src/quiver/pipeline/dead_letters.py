"""The dead-letter queue of a pipeline: batches a sink refused for good, kept on disk.

When a sink's ``open``, ``write`` or ``commit`` fails for good (a ``PermanentError``, or a
retryable error on every attempt the retry policy allows), the rows that sink received since
its last commit become one **entry** of the queue instead of failing the run: the run goes on,
the source acknowledges what it read, and ``quiver ingest dlq replay`` delivers the entry later
under the same retry rules.

On disk, in the ``dlq.path`` directory::

    20261206T071630123456Z-3f9a1c.arrow   the rows (an Arrow IPC file, what the sink writes)
    20261206T071630123456Z-3f9a1c.json    its record: pipeline, sink, error, attempts, times
    .staging/                             rows on their way to a sink, until it commits
    lock                                  held (flock) while entries are added or removed

An entry's id starts with the UTC time it was made (``max_age`` counts from it), so names sort
oldest first. Both files are written under a temporary name, ``fsync``'d and renamed into place
(the ``.arrow`` first); the record's rename makes the entry visible, so a process killed in the
middle of a write leaves no entry, only a temporary file the next start removes. Removing an
entry deletes its record first. Retention (``max_age``, ``max_bytes``) drops the oldest entries,
counts them in ``quiver_pipeline_dlq_dropped_total`` and logs each one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc as ipc

from quiver.pipeline.dead_letter_config import DeadLetterConfig, parse_duration, parse_size
from quiver.pipeline.json_text import strict_json
from quiver.pipeline.rejects import json_text
from quiver.runtime.delivery import DeadLetter, RetriesExhaustedError
from quiver.runtime.errors import ErrorDetail, PermanentError, QuiverError

__all__ = [
    "DeadLetterConfig",
    "DeadLetterEntry",
    "DeadLetterMetrics",
    "DeadLetterQueue",
    "Dropped",
    "Failure",
    "StagedRows",
    "parse_duration",
    "parse_size",
]

_DATA = ".arrow"
_RECORD = ".json"
_TMP = ".tmp"
_STAGING = ".staging"
_ID = re.compile(r"^(\d{8}T\d{12})Z-[0-9a-f]{6}$")


class DeadLetterMetrics:
    """The queue's Prometheus metrics, in a registry of its own (``quiver_pipeline_dlq_*``)."""

    def __init__(self, pipeline: str, namespace: str = "quiver") -> None:
        # imported here: a pipeline file naming no dlq never loads prometheus_client
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.pipeline = pipeline
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.entries = Gauge(
            "pipeline_dlq_entries",
            "Entries in the dead-letter queue.",
            ["pipeline"],
            namespace=namespace,
            registry=r,
        )
        self.size = Gauge(
            "pipeline_dlq_bytes",
            "Bytes the dead-letter queue holds on disk.",
            ["pipeline"],
            namespace=namespace,
            registry=r,
        )
        self.added = Counter(
            "pipeline_dlq_added",
            "Entries added to the dead-letter queue, by sink.",
            ["pipeline", "sink"],
            namespace=namespace,
            registry=r,
        )
        self.added_rows = Counter(
            "pipeline_dlq_added_rows",
            "Rows added to the dead-letter queue, by sink.",
            ["pipeline", "sink"],
            namespace=namespace,
            registry=r,
        )
        self.dropped = Counter(
            "pipeline_dlq_dropped",
            "Entries dropped by retention, by reason (max_age, max_bytes).",
            ["pipeline", "reason"],
            namespace=namespace,
            registry=r,
        )
        self.dropped_rows = Counter(
            "pipeline_dlq_dropped_rows",
            "Rows of the entries dropped by retention, by reason (max_age, max_bytes).",
            ["pipeline", "reason"],
            namespace=namespace,
            registry=r,
        )
        self.replayed = Counter(
            "pipeline_dlq_replayed",
            "Entries replayed, by outcome (delivered, failed).",
            ["pipeline", "outcome"],
            namespace=namespace,
            registry=r,
        )

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one metric (for reports and tests)."""
        value = self.registry.get_sample_value(name, {"pipeline": self.pipeline, **labels})
        return value or 0.0


@dataclass
class Failure:
    """Why a sink gave up on its rows: what the delivery runtime handed its dead-letter hook."""

    error_class: str  # permanent | retries_exhausted | unexpected
    error_type: str
    code: str
    message: str
    attempts: int
    first_failure: str  # ISO 8601, UTC
    last_failure: str

    @classmethod
    def of(cls, letter: DeadLetter) -> Failure:
        """The failure ``letter`` describes, its monotonic times made wall-clock times."""
        now_wall, now_mono = time.time(), time.monotonic()
        first = now_wall - max(0.0, now_mono - letter.first_attempt_at)
        last = now_wall - max(0.0, now_mono - letter.failed_at)
        return cls.from_error(letter.error, letter.attempts, first, last)

    @classmethod
    def from_error(cls, error: BaseException, attempts: int, first: float, last: float) -> Failure:
        if isinstance(error, RetriesExhaustedError):
            kind = "retries_exhausted"
            cause = error.last_error or error
        elif isinstance(error, QuiverError):
            kind, cause = "permanent", error
        else:
            kind, cause = "unexpected", error
        return cls(
            error_class=kind,
            error_type=type(cause).__name__,
            code=error.code if isinstance(error, QuiverError) else type(error).__name__,
            message=str(error) or type(error).__name__,
            attempts=attempts,
            first_failure=_iso(first),
            last_failure=_iso(last),
        )


@dataclass
class DeadLetterEntry:
    """The record of one entry (its ``.json`` file)."""

    id: str
    pipeline: str
    sink: str
    component: str
    run_id: str
    rows: int
    data_bytes: int
    error_class: str
    error_type: str
    code: str
    message: str
    attempts: int
    first_failure: str
    last_failure: str
    replays: int = 0
    history: list[str] = field(default_factory=list)  # earlier errors, oldest first

    @property
    def created(self) -> dt.datetime:
        return _created(self.id) or dt.datetime.fromisoformat(self.first_failure)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Dropped:
    """An entry retention dropped, and why (``max_age`` or ``max_bytes``)."""

    id: str
    reason: str
    rows: int
    bytes: int


class DeadLetterQueue:
    """One dead-letter queue directory; see the module's doc."""

    def __init__(
        self,
        path: str,
        *,
        pipeline: str = "",
        max_age: float = 7 * 86400.0,
        max_bytes: int = 1 << 30,
        metrics: DeadLetterMetrics | None = None,
        log: Callable[[str, str], None] = lambda message, level: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.pipeline = pipeline
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.metrics = metrics or DeadLetterMetrics(pipeline)
        self.log = log
        self._clock = clock
        self._mutex = threading.Lock()

    @classmethod
    def of(
        cls,
        cfg: DeadLetterConfig,
        path: str,
        pipeline: str,
        log: Callable[[str, str], None] = lambda message, level: None,
    ) -> DeadLetterQueue:
        return cls(
            path,
            pipeline=pipeline,
            max_age=cfg.max_age_seconds,
            max_bytes=cfg.max_bytes_count,
            log=log,
        )

    # ------------------------------------------------------------------ directory

    def create(self) -> None:
        """Create the directory (when missing), remove what a killed process left half-written,
        and apply retention."""
        try:
            os.makedirs(os.path.join(self.path, _STAGING), exist_ok=True)
        except OSError as exc:
            raise PermanentError.one(
                f"cannot create the dead-letter queue directory {self.path}: {exc.strerror or exc}",
                "dlq.path",
                "point dlq.path at a directory this process may write",
            ) from exc
        self.clean()
        self.enforce()

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def require(self) -> None:
        """Raise a clear error when the directory does not exist."""
        if not self.exists():
            raise PermanentError.one(
                f"no dead-letter queue at {self.path}",
                "dlq.path",
                "check dlq.path of the pipeline file; the directory is created by the "
                "first `quiver run` of the pipeline",
            )

    def clean(self) -> None:
        """Remove temporary files no process holds, and data files whose record never made it
        (a process killed between the two renames: its source was never acknowledged)."""
        with self._locked():
            names = set(_listdir(self.path))
            for name in names:
                full = os.path.join(self.path, name)
                orphan = name.endswith(_DATA) and name[: -len(_DATA)] + _RECORD not in names
                if name.endswith(_TMP) or orphan:
                    _unlink(full)
            staging = os.path.join(self.path, _STAGING)
            for name in _listdir(staging):
                _remove_unheld(os.path.join(staging, name))

    # ------------------------------------------------------------------ reading

    def ids(self) -> list[str]:
        """Ids of the visible entries, oldest first."""
        return sorted(
            n[: -len(_RECORD)]
            for n in _listdir(self.path)
            if n.endswith(_RECORD) and _ID.match(n[: -len(_RECORD)])
        )

    def entries(self) -> list[DeadLetterEntry]:
        """Every visible entry, oldest first (entries removed meanwhile are left out)."""
        out = []
        for entry_id in self.ids():
            try:
                out.append(self.get(entry_id))
            except KeyError:
                continue
            except QuiverError as exc:
                self.log(str(exc), "warning")
        return out

    def get(self, entry_id: str) -> DeadLetterEntry:
        """The record of one entry; KeyError when there is none."""
        if not _ID.match(entry_id):
            raise KeyError(entry_id)
        path = self._record(entry_id)
        try:
            with open(path, "rb") as fh:
                doc = _load(fh.read())
            known = DeadLetterEntry.__dataclass_fields__
            return DeadLetterEntry(**{k: v for k, v in doc.items() if k in known})
        except FileNotFoundError:
            raise KeyError(entry_id) from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise PermanentError.one(
                f"the dead-letter record {path} is damaged: {exc}",
                "dlq.path",
                "restore the file, or delete it and its .arrow file (quiver ingest dlq purge)",
            ) from exc

    def read(self, entry_id: str) -> pa.Table:
        """The rows of one entry; KeyError when there is none."""
        if not _ID.match(entry_id):
            raise KeyError(entry_id)
        try:
            with pa.memory_map(self._data(entry_id), "r") as source:
                return ipc.open_file(source).read_all()
        except FileNotFoundError:
            raise KeyError(entry_id) from None

    def size(self) -> tuple[int, int]:
        """Entries and bytes on disk (records and data)."""
        count, total = 0, 0
        for entry_id in self.ids():
            count += 1
            total += self._bytes_of(entry_id)
        return count, total

    # ------------------------------------------------------------------ changing

    def stage(self, sink: str, run_id: str) -> StagedRows:
        """A file collecting the rows handed to ``sink`` until it commits."""
        return StagedRows(self, sink, run_id)

    def add(
        self, staged: StagedRows, failure: Failure, component: str, run_id: str
    ) -> DeadLetterEntry:
        """Make ``staged`` an entry (durable when this returns), then apply retention."""
        entry_id = new_id(self._clock())
        data = staged.seal(self._data(entry_id))
        entry = DeadLetterEntry(
            id=entry_id,
            pipeline=self.pipeline,
            sink=staged.sink,
            component=component,
            run_id=run_id,
            rows=staged.rows,
            data_bytes=data,
            error_class=failure.error_class,
            error_type=failure.error_type,
            code=failure.code,
            message=failure.message,
            attempts=failure.attempts,
            first_failure=failure.first_failure,
            last_failure=failure.last_failure,
        )
        with self._locked():
            _write_atomic(self._record(entry_id), _dump(entry))
            _fsync_dir(self.path)
        self.metrics.added.labels(self.pipeline, staged.sink).inc()
        self.metrics.added_rows.labels(self.pipeline, staged.sink).inc(staged.rows)
        self.log(
            f"sink '{staged.sink}': {staged.rows} row(s) kept as dead-letter entry "
            f"{entry_id} in {self.path}",
            "warning",
        )
        self.enforce()
        return entry

    def failed_again(self, entry_id: str, failure: Failure) -> DeadLetterEntry:
        """Record a failed replay: more attempts, the new error, the entry kept."""
        with self._locked():
            entry = self.get(entry_id)
            entry.history.append(f"{entry.last_failure} {entry.code}: {entry.message}")
            entry.history = entry.history[-10:]
            entry.attempts += failure.attempts
            entry.replays += 1
            entry.last_failure = failure.last_failure
            entry.error_class = failure.error_class
            entry.error_type = failure.error_type
            entry.code = failure.code
            entry.message = failure.message
            _write_atomic(self._record(entry_id), _dump(entry))
            _fsync_dir(self.path)
        return entry

    def remove(self, entry_id: str) -> bool:
        """Delete one entry (its record first); False when there was none."""
        with self._locked():
            return self._remove(entry_id)

    def enforce(self) -> list[Dropped]:
        """Drop entries older than ``max_age``, then the oldest while the queue holds more than
        ``max_bytes``; count and log each."""
        dropped: list[Dropped] = []
        with self._locked():
            now = self._clock()
            sizes = {i: self._bytes_of(i) for i in self.ids()}
            total = sum(sizes.values())
            for entry_id, size in sizes.items():  # oldest first
                created = _created(entry_id)
                old = created is not None and now - created.timestamp() > self.max_age
                if not old and total <= self.max_bytes:
                    break
                reason = "max_age" if old else "max_bytes"
                rows = self._rows_of(entry_id)
                if self._remove(entry_id):
                    total -= size
                    dropped.append(Dropped(entry_id, reason, rows, size))
        for d in dropped:
            self.metrics.dropped.labels(self.pipeline, d.reason).inc()
            self.metrics.dropped_rows.labels(self.pipeline, d.reason).inc(d.rows)
            limit = (
                f"older than {_seconds_text(self.max_age)}"
                if d.reason == "max_age"
                else f"the queue holds more than {self.max_bytes:,} bytes"
            )
            self.log(
                f"dead-letter entry {d.id} dropped ({d.rows} row(s)): {limit} (dlq.{d.reason})",
                "warning",
            )
        self.refresh()
        return dropped

    def refresh(self) -> None:
        """Set the size gauges from the directory."""
        count, total = self.size()
        self.metrics.entries.labels(self.pipeline).set(count)
        self.metrics.size.labels(self.pipeline).set(total)

    # ------------------------------------------------------------------ private

    def _record(self, entry_id: str) -> str:
        return os.path.join(self.path, entry_id + _RECORD)

    def _data(self, entry_id: str) -> str:
        return os.path.join(self.path, entry_id + _DATA)

    def _bytes_of(self, entry_id: str) -> int:
        total = 0
        for name in (self._record(entry_id), self._data(entry_id)):
            with contextlib.suppress(OSError):
                total += os.path.getsize(name)
        return total

    def _rows_of(self, entry_id: str) -> int:
        try:
            return self.get(entry_id).rows
        except (KeyError, QuiverError):
            return 0

    def _remove(self, entry_id: str) -> bool:
        if not _ID.match(entry_id):
            return False
        try:
            os.unlink(self._record(entry_id))
        except FileNotFoundError:
            return False
        _unlink(self._data(entry_id))
        _fsync_dir(self.path)
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Exclusive between threads of this process and other processes on the directory."""
        with self._mutex:
            try:
                fd = os.open(os.path.join(self.path, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise _directory_error(self.path, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)


class StagedRows:
    """The rows handed to one sink since its last commit, in ``.staging/`` until the sink
    commits (then discarded) or refuses them for good (then sealed into an entry)."""

    def __init__(self, queue: DeadLetterQueue, sink: str, run_id: str) -> None:
        self.queue = queue
        self.sink = sink
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sink)[:60]
        self.path = os.path.join(
            queue.path, _STAGING, f"{safe}-{run_id}-{secrets.token_hex(4)}{_DATA}{_TMP}"
        )
        self.rows = 0
        self._io = threading.Lock()  # a cancelled run may discard while a write is under way
        self._fd = -1
        self._file: pa.OSFile | None = None
        self._writer: ipc.RecordBatchFileWriter | None = None

    def add(self, batch: pa.RecordBatch) -> None:
        """Write ``batch`` (without internal columns) to the staging file (not yet fsync'd)."""
        with self._io:
            try:
                if self._writer is None:
                    self._open(batch.schema)
                assert self._writer is not None
                self._writer.write_batch(batch)
            except OSError as exc:
                raise _directory_error(self.queue.path, exc) from exc
            self.rows += batch.num_rows

    def seal(self, target: str) -> int:
        """Close, ``fsync`` and rename the staging file to ``target``; its size."""
        with self._io:
            return self._seal(target)

    def _seal(self, target: str) -> int:
        try:
            if self._writer is None:
                self._open(pa.schema([]))
            assert self._writer is not None and self._file is not None
            self._writer.close()
            self._file.flush()
            os.fsync(self._fd)
            size = os.path.getsize(self.path)
            os.rename(self.path, target)
            _fsync_dir(os.path.dirname(target))
        except OSError as exc:
            raise _directory_error(self.queue.path, exc) from exc
        finally:
            self._close()
        return size

    def discard(self) -> None:
        """The sink committed: forget the rows."""
        with self._io:
            self._close()
            _unlink(self.path)

    def _open(self, schema: pa.Schema) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a later start leaves it alone
        self._fd = fd
        self._file = pa.OSFile(self.path, "wb")
        self._writer = ipc.new_file(self._file, schema)

    def _close(self) -> None:
        with contextlib.suppress(Exception):
            if self._writer is not None:
                self._writer.close()
        with contextlib.suppress(Exception):
            if self._file is not None:
                self._file.close()
        if self._fd >= 0:
            os.close(self._fd)
        self._writer = None
        self._file = None
        self._fd = -1


def new_id(now: float) -> str:
    """An entry id: the UTC time (microseconds) and 6 random hex digits."""
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}Z-{secrets.token_hex(3)}"


def _created(entry_id: str) -> dt.datetime | None:
    m = _ID.match(entry_id)
    if m is None:
        return None
    return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S%f").replace(tzinfo=dt.UTC)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="milliseconds")


def _seconds_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _dump(entry: DeadLetterEntry) -> bytes:
    # an error message may hold text UTF-8 cannot (a file name's undecodable bytes as lone
    # surrogates): escaped as the rejects file does, JSON escapes that read back as the same text
    return json_text(entry.to_json(), indent=True).encode()


def _load(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return strict_json(data)  # orjson refuses the escape of a lone surrogate


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``path`` as a whole or not at all: temporary file, fsync, rename."""
    tmp = f"{path}.{secrets.token_hex(4)}{_TMP}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise _directory_error(os.path.dirname(path), exc) from exc


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _remove_unheld(path: str) -> None:
    """Remove a staging file unless a running process holds its lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return
    try:
        _unlink(path)
    finally:
        os.close(fd)


def _directory_error(path: str, exc: OSError) -> QuiverError:
    return PermanentError(
        [
            ErrorDetail(
                f"cannot write the dead-letter queue {path}: {exc.strerror or exc}",
                "dlq.path",
                "free space on its file system or fix its permissions; the rows were not "
                "acknowledged and are read again by the next run",
            )
        ],
        code="DLQ_WRITE_FAILED",
    )
