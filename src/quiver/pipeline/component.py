"""The contract every pipeline component follows: sources, processors and sinks.

A component is a class with a config model beside it, marked with :func:`source`,
:func:`processor` or :func:`sink`. Marking has no side effect: built-in components are
listed in ``quiver.pipeline.builtins`` and plugins arrive through the entry-point groups
``quiver.sources``, ``quiver.processors`` and ``quiver.sinks``.

Data moves as ``pyarrow.RecordBatch``. A component handles one batch and raises a typed
error (``RetryableError`` / ``PermanentError`` from ``quiver.runtime.errors``); the engine
owns retries, rejects, metrics and the progress display.

Optional capabilities are declared, never probed: a component subclasses the hook Protocols
it implements (``class MySource(Acknowledging): ...``), the pipeline plan reads them once with
:func:`capabilities_of`, and the engine calls exactly the declared hooks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from quiver.runtime.errors import ErrorDetail

__all__ = [
    "HOOKS",
    "KEPT_TEXT_PREFIX",
    "LINE_COLUMN",
    "Acknowledging",
    "ByteCounting",
    "Checking",
    "Checkpointing",
    "Closing",
    "ColumnBound",
    "ColumnUse",
    "ComponentConfig",
    "ComponentInfo",
    "ComponentKind",
    "Concurrent",
    "Draining",
    "FileReading",
    "FileWriting",
    "Flushing",
    "Listening",
    "Processor",
    "ProcessorOutput",
    "RowError",
    "RowErrorKind",
    "RowRejecting",
    "RunContext",
    "Sink",
    "Source",
    "Starting",
    "capabilities_of",
    "component_info",
    "internal_column",
    "is_internal",
    "kept_text_column",
    "kept_text_of",
    "processor",
    "schema_without_line",
    "sink",
    "source",
    "without_kept_text",
    "without_line",
]

ComponentKind = Literal["source", "processor", "sink"]

#: Name of the column a source may add with the 1-based line (or record) number of each row
#: in its input, so row-level errors can point at it. It reaches the sinks, which leave it out
#: of what they write (:func:`without_line`) but may name it in their errors. The name starts
#: with a control character (U+001F, the unit separator), which no column name a user can
#: write holds: a user column called ``__line`` or ``line`` is ordinary data, and an input
#: column with this very name is refused.
LINE_COLUMN = "\x1fline"

#: Prefix of the internal columns that keep, beside a decimal column read from text, the text
#: each value was read from (``310.00`` where the column holds ``310.000000000``): the text
#: sinks write it back as it was while the value still equals it. Same reserved namespace as
#: :data:`LINE_COLUMN`; every sink leaves these columns out of what it writes.
KEPT_TEXT_PREFIX = "\x1ftext\x1f"


def internal_column(name: str) -> str:
    """The name of a helper column a component adds for its own work (a row number to keep
    the order of a join, a marker of matched rows), in the reserved namespace of
    :data:`LINE_COLUMN`: an input column of any name a user can write never collides with it."""
    return "\x1fquiver\x1f" + name


def kept_text_column(name: str) -> str:
    """The internal column holding the text the decimal column ``name`` was read from."""
    return KEPT_TEXT_PREFIX + name


def kept_text_of(name: str) -> str | None:
    """The column whose text the internal column ``name`` keeps, or None for other names."""
    return name[len(KEPT_TEXT_PREFIX) :] if name.startswith(KEPT_TEXT_PREFIX) else None


def is_internal(name: str) -> bool:
    """Whether ``name`` is one of Quiver's internal columns (line numbers, kept text)."""
    return name.startswith("\x1f")


_Rows = TypeVar("_Rows", pa.RecordBatch, pa.Table)


def without_line(rows: _Rows) -> _Rows:
    """``rows`` (a batch or a table) without its internal columns: what a sink writes."""
    internal = [n for n in rows.schema.names if is_internal(n)]
    return rows.drop_columns(internal) if internal else rows


def without_kept_text(rows: _Rows) -> _Rows:
    """``rows`` without the kept text of its decimal columns (the line column stays)."""
    kept = [n for n in rows.schema.names if n.startswith(KEPT_TEXT_PREFIX)]
    return rows.drop_columns(kept) if kept else rows


def schema_without_line(schema: pa.Schema) -> pa.Schema:
    """``schema`` without its internal columns: what a sink is opened with."""
    return pa.schema([f for f in schema if not is_internal(f.name)], schema.metadata)


class ComponentConfig(BaseModel):
    """Base of every component's config. Unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ComponentInfo:
    """What ``quiver plugins describe`` shows: the manifest of a component."""

    kind: ComponentKind
    name: str
    config: type[ComponentConfig]
    cls: type[Any]
    version: str = "builtin"
    summary: str = ""


#: Whose fault a rejected row is: its values (``data``) or the script that handled it.
RowErrorKind = Literal["data", "script"]


@dataclass(frozen=True)
class RowError:
    """One rejected row: where it came from, what was wrong with it, and its values.

    ``kind`` says whose fault it is: ``data`` (the row's values: fix the input) or ``script``
    (a script threw or produced what cannot be written: fix the script).
    """

    line: int | None
    reason: str
    column: str | None = None
    value: Any = None
    row: dict[str, Any] | None = None
    step: str = ""
    kind: RowErrorKind = "data"


@dataclass
class ProcessorOutput:
    """What a processor returns for one input batch.

    ``batch`` flows on to the default output; ``routes`` holds batches sent to named outputs
    (``context.route.send(name)`` in JavaScript); ``errors`` holds rows rejected by this step.
    """

    batch: pa.RecordBatch | None
    routes: dict[str, list[pa.RecordBatch]] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)


@dataclass
class RunContext:
    """Per-run facts every component may read: variables, base directory, run id, logger,
    pipeline name."""

    run_id: str
    base_dir: str
    variables: dict[str, str] = field(default_factory=dict)
    log: Callable[[str, str], None] = lambda message, level: None
    pipeline: str = ""  # the pipeline's name (its file's stem unless it names itself)
    #: the name of the current unit's output: a checkpoint's stem (its UTC start and number)
    #: or the input file's when running per input file; None for a run writing once
    stem: str | None = None


@runtime_checkable
class Source(Protocol):
    def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]: ...


@runtime_checkable
class Processor(Protocol):
    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput: ...


@runtime_checkable
class Sink(Protocol):
    async def open(self, schema: pa.Schema, ctx: RunContext) -> None: ...
    async def write(self, batch: pa.RecordBatch) -> None: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


# ----------------------------------------------------------------------------- optional hooks
#
# A component subclasses the Protocols below for the hooks it implements; the engine calls a
# hook only when the component's class declares it (see ``capabilities_of``).


class Starting(Protocol):
    """A processor preparing before its first batch (e.g. starting JavaScript isolates).

    Each step runs as its own task, so the start-up overlaps the source reading its first batch.
    """

    async def start(self, ctx: RunContext) -> None: ...


class Flushing(Protocol):
    """A processor holding rows back (e.g. ``dedupe``) that hands them on once its input ends."""

    def flush(self, ctx: RunContext) -> AsyncIterator[ProcessorOutput]: ...


class Concurrent(Protocol):
    """A processor whose ``process`` may run on several batches at once (``--workers``).

    Outputs are still delivered in input order.
    """


class Closing(Protocol):
    """A component holding resources (threads, connections) freed after the run, ok or not."""

    def close(self) -> Awaitable[None] | None: ...


class Checking(Protocol):
    """A component checking its own options and files before any data is read.

    ``quiver validate`` reports the problems; ``quiver run`` stops on them before starting.
    """

    def check(self, ctx: RunContext) -> list[ErrorDetail]: ...


@dataclass(frozen=True)
class ColumnUse:
    """An input column a component's options name, and the option naming it: its path inside
    the component's options (``("keys", 1)``, ``("columns", "total")``), so an unknown name is
    reported at the line it is written on.

    ``optional`` marks a name whose absence changes nothing in the run (a column to delete):
    an unknown one is a warning, not an error, since a misspelt name there silently does
    nothing (and may leave personal data in place)."""

    column: str
    option: tuple[str | int, ...]
    optional: bool = False


class ColumnBound(Protocol):
    """A component naming input columns in its options.

    A processor declaring it has output columns that follow from its input columns and options
    alone and no effect outside the run (``sql``, ``derive``, ``rename``, ``cast``, ``dedupe``,
    ``lookup``, ...); a sink declaring it names columns of the rows it writes (upsert
    ``keys``, ``partition_by``).

    Before any data is read, ``quiver validate`` (and ``quiver run``) checks each column of
    ``columns_used`` against the columns flowing into the step (what the source's first batch
    and the steps before give), reporting every unknown one at once with its position and a
    did-you-mean. A processor is then run once on an empty batch of those columns, which binds
    any SQL it holds and gives the columns the next step sees. A step naming no column in
    plain options (its SQL names them) returns an empty list.
    """

    def columns_used(self) -> list[ColumnUse]: ...


class Acknowledging(Protocol):
    """A source that settles what it read once the run is decided (a broker, a cursor).

    ``commit`` is called after every sink committed: acknowledge the messages, store the new
    position. ``abort`` is called when the run failed or was interrupted, and after a dry run:
    hand the work back (requeue) so a later run reads it again.
    """

    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


class Draining(Protocol):
    """A source reading an input with no end of its own (a broker, a socket) that can end it.

    On SIGINT / SIGTERM ``quiver run`` calls ``drain`` instead of cancelling the run when every
    source of the pipeline declares it: the source stops taking input, hands on what it holds
    and ends its batches. The run then finishes as if the input had ended: the sinks commit,
    then ``commit`` (:class:`Acknowledging`) settles what was read. ``drain`` is called on the
    event loop and returns at once.
    """

    def drain(self) -> None: ...


class Listening(Protocol):
    """A source taking input from a server it runs or a subscription it holds (a receiver).

    ``listening`` is true once it takes input (its sockets are bound, its subscription is
    made) and until it stops taking it; the monitoring endpoint's ``/readyz`` waits for it.
    The engine reads it from another thread: it only reads.
    """

    @property
    def listening(self) -> bool: ...


class Checkpointing(Protocol):
    """A source whose endless input is committed in checkpoints (a receiver's
    ``commit_every`` / ``commit_seconds``), so a long run settles what it read as it goes.

    When ``checkpoints()`` says so, the same source instance runs unit after unit: its batches
    end at each checkpoint, the engine commits the sinks, then the source (``commit`` of
    :class:`Acknowledging`), and starts the next unit while ``more()`` is true. ``{stem}`` in a
    sink path names each checkpoint's output (its UTC start and number), so file sinks write
    one file per checkpoint; the source is closed after the last one.
    """

    def checkpoints(self) -> bool: ...
    def more(self) -> bool: ...


class RowRejecting(Protocol):
    """A source setting aside rows it could not read (malformed lines), for the rejects file.

    The engine takes them after every batch and at the end of the input.
    """

    def take_errors(self) -> list[RowError]: ...


class ByteCounting(Protocol):
    """A source counting the bytes of input it has read so far (the progress display)."""

    bytes_read: int


class FileReading(Protocol):
    """A source reading the local file(s) or glob named by its config's ``path`` option.

    The engine may run it once per input file (``--resume``, ``{stem}`` in sink paths) with
    ``path`` set to that file, and sums the files' sizes for the progress display.
    """


class FileWriting(Protocol):
    """A sink writing the file named by its config's ``path`` option.

    ``{stem}`` in that path is replaced by the input file's name per input file; the written
    path is listed among the run's outputs.
    """


#: Every optional hook, in the order ``quiver plugins describe`` would list them.
HOOKS: tuple[type[Any], ...] = (
    Starting,
    Flushing,
    Concurrent,
    Closing,
    Checking,
    ColumnBound,
    Acknowledging,
    Draining,
    Checkpointing,
    RowRejecting,
    ByteCounting,
    FileReading,
    FileWriting,
    Listening,
)


def capabilities_of(cls: type[Any]) -> frozenset[type[Any]]:
    """The hook Protocols a component class declares (subclasses), from :data:`HOOKS`."""
    bases = cls.__mro__
    return frozenset(hook for hook in HOOKS if hook in bases)


_C = TypeVar("_C", bound=type[Any])
_INFO_ATTR = "__quiver_component__"


def _mark(
    kind: ComponentKind, name: str, config: type[ComponentConfig], summary: str
) -> Callable[[_C], _C]:
    def decorate(cls: _C) -> _C:
        text = summary or next(iter((cls.__doc__ or "").strip().splitlines()), "")
        setattr(cls, _INFO_ATTR, ComponentInfo(kind, name, config, cls, summary=text))
        return cls

    return decorate


def source(name: str, *, config: type[ComponentConfig], summary: str = "") -> Callable[[_C], _C]:
    """Mark a class as the source ``name`` configured by ``config``."""
    return _mark("source", name, config, summary)


def processor(name: str, *, config: type[ComponentConfig], summary: str = "") -> Callable[[_C], _C]:
    """Mark a class as the processor ``name`` configured by ``config``."""
    return _mark("processor", name, config, summary)


def sink(name: str, *, config: type[ComponentConfig], summary: str = "") -> Callable[[_C], _C]:
    """Mark a class as the sink ``name`` configured by ``config``."""
    return _mark("sink", name, config, summary)


def component_info(cls: type[Any]) -> ComponentInfo:
    """The manifest attached by :func:`source` / :func:`processor` / :func:`sink`."""
    info: ComponentInfo | None = getattr(cls, _INFO_ATTR, None)
    if info is None:
        raise TypeError(f"{cls.__qualname__} is not marked with @source, @processor or @sink")
    return info
