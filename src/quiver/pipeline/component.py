"""The contract every pipeline component follows: sources, processors and sinks.

A component is a class with a config model beside it, marked with :func:`source`,
:func:`processor` or :func:`sink`. Marking has no side effect: built-in components are
listed in ``quiver.pipeline.builtins`` and plugins arrive through the entry-point groups
``quiver.sources``, ``quiver.processors`` and ``quiver.sinks``.

Data moves as ``pyarrow.RecordBatch``. A component handles one batch and raises a typed
error (``RetryableError`` / ``PermanentError`` from ``quiver.runtime.errors``); the engine
owns retries, rejects, metrics and the progress display.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

__all__ = [
    "ComponentConfig",
    "ComponentInfo",
    "ComponentKind",
    "Processor",
    "ProcessorOutput",
    "RowError",
    "RunContext",
    "Sink",
    "Source",
    "component_info",
    "processor",
    "sink",
    "source",
]

ComponentKind = Literal["source", "processor", "sink"]

#: Name of the column a source may add with the 1-based line (or record) number of each row
#: in its input, so row-level errors can point at it. Sinks drop it before writing.
LINE_COLUMN = "__line"


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


@dataclass(frozen=True)
class RowError:
    """One rejected row: where it came from, what was wrong with it, and its values."""

    line: int | None
    reason: str
    column: str | None = None
    value: Any = None
    row: dict[str, Any] | None = None
    step: str = ""


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
    """Per-run facts every component may read: variables, base directory, run id, logger."""

    run_id: str
    base_dir: str
    variables: dict[str, str] = field(default_factory=dict)
    log: Callable[[str, str], None] = lambda message, level: None


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
