"""The compiled form of a pipeline: what the engine runs.

A pipeline file is parsed and validated once (:mod:`quiver.pipeline.config`) and compiled once
(:func:`quiver.pipeline.planner.compile_plan`) into a :class:`PipelinePlan`: every step with
its component class, its validated config and the hooks it declares, the targets of each of
its outputs, and the paths it reads or writes made absolute. The engine only schedules steps
and delivers batches along the plan; it never goes back to the parsed file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from quiver.config.yaml_source import Positions
from quiver.pipeline.component import (
    Acknowledging,
    ByteCounting,
    Checkpointing,
    Closing,
    ComponentConfig,
    ComponentKind,
    Concurrent,
    Draining,
    FileReading,
    FileWriting,
    Flushing,
    Listening,
    RowRejecting,
    Starting,
)
from quiver.pipeline.dead_letter_config import DeadLetterConfig
from quiver.runtime.delivery import CircuitBreakerPolicy, RetryPolicy

__all__ = ["DEFAULT_OUTPUT", "PipelinePlan", "PlanStep", "RejectPolicy"]

#: The name of a step's main output (the others are routes, ``step.route``).
DEFAULT_OUTPUT = "default"


@dataclass(frozen=True)
class PlanStep:
    """One step, resolved: its component, config, declared hooks and where its outputs go."""

    name: str
    kind: ComponentKind
    component: str
    where: str
    cls: type[Any]
    config: ComponentConfig
    capabilities: frozenset[type[Any]]
    inputs: int  # incoming connections; the step ends when all of them have ended
    targets: Mapping[str, tuple[str, ...]]  # output name -> the steps it feeds
    fed_by_sources: bool  # every incoming connection comes from a source
    path_option: str | list[str] | None = None  # `path` of a FileReading/FileWriting step
    paths: tuple[str, ...] = ()  # that `path`, absolute (one item per listed path)
    #: where the step's options are in the pipeline file (the component's key), for errors
    #: the component raises while running
    options_path: tuple[str | int, ...] = ()
    positions: Positions | None = field(default=None, compare=False, repr=False)
    # the declared hooks, read once here so the engine tests a flag, not a class
    starts: bool = field(init=False)
    flushes: bool = field(init=False)
    concurrent: bool = field(init=False)
    closes: bool = field(init=False)
    acknowledges: bool = field(init=False)
    drains: bool = field(init=False)
    checkpoints: bool = field(init=False)
    rejects_rows: bool = field(init=False)
    counts_bytes: bool = field(init=False)
    reads_files: bool = field(init=False)
    writes_files: bool = field(init=False)
    listens: bool = field(init=False)

    def __post_init__(self) -> None:
        caps = self.capabilities
        for flag, hook in (
            ("starts", Starting),
            ("flushes", Flushing),
            ("concurrent", Concurrent),
            ("closes", Closing),
            ("acknowledges", Acknowledging),
            ("drains", Draining),
            ("checkpoints", Checkpointing),
            ("rejects_rows", RowRejecting),
            ("counts_bytes", ByteCounting),
            ("reads_files", FileReading),
            ("writes_files", FileWriting),
            ("listens", Listening),
        ):
            object.__setattr__(self, flag, hook in caps)

    def option_where(self, where: str) -> str:
        """``where`` of an error the component raised, as the file and line of the option it
        names when it names one (``otlp.grpc.endpoint``, ``source otlp.grpc.endpoint`` or
        ``port``): ``pipeline.yaml:4:7 source.otlp.grpc.endpoint`` (the line of the nearest
        key written, for an option left at its default); else ``where`` itself."""
        if self.positions is None or not self.options_path or not where:
            return where
        text = where
        for prefix in (f"{self.name} ", f"{self.kind} ", f"step '{self.name}' "):
            if text.startswith(prefix):
                text = text[len(prefix) :]
                break
        if text.startswith(f"{self.component}."):
            text = text[len(self.component) + 1 :]
        parts = text.split(".")
        if not all(p and p.isidentifier() for p in parts):
            return where
        # an option the file leaves at its default: the step's line, with the option's path
        if parts[0] not in type(self.config).model_fields:
            return where
        return self.positions.where((*self.options_path, *parts))


@dataclass(frozen=True)
class RejectPolicy:
    """What happens to rejected rows (``on_error``), with the rejects file made absolute."""

    policy: Literal["fail_fast", "reject"] = "fail_fast"
    rejects: str | None = None
    max_errors: int | None = None  # the most rows that may be rejected (`max_rejects`)
    max_reject_ratio: float | None = None  # the largest share of the rows read


@dataclass(frozen=True)
class PipelinePlan:
    """A compiled pipeline: its steps in file order and the settings of the run."""

    file: str
    base_dir: str
    name: str
    steps: Mapping[str, PlanStep]
    on_error: RejectPolicy
    queue_batches: int
    retry: RetryPolicy
    circuit_breaker: CircuitBreakerPolicy
    taps: Mapping[str, int]  # `step` or `step.route` -> rows to show
    variables: Mapping[str, str]
    warnings: tuple[str, ...] = ()
    dlq: DeadLetterConfig | None = None
    dlq_path: str | None = None  # dlq.path, absolute
    sources: tuple[PlanStep, ...] = field(init=False)
    sinks: tuple[PlanStep, ...] = field(init=False)

    def __post_init__(self) -> None:
        steps = self.steps.values()
        object.__setattr__(self, "sources", tuple(s for s in steps if s.kind == "source"))
        object.__setattr__(self, "sinks", tuple(s for s in steps if s.kind == "sink"))

    def dead_letters_of(self, sink: str) -> bool:
        """Whether batches ``sink`` refuses for good go to the dead-letter queue."""
        return self.dlq is not None and self.dlq_path is not None and self.dlq.covers(sink)
