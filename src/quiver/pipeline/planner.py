"""Compile a loaded pipeline into the plan the engine runs (once per run, before any data)."""

from __future__ import annotations

from typing import Any, Protocol, cast

from quiver.pipeline.component import FileReading, FileWriting, capabilities_of
from quiver.pipeline.config import PipelineSpec, StepSpec, resolve_path
from quiver.pipeline.plan import PipelinePlan, PlanStep, RejectPolicy

__all__ = ["compile_plan"]


class _PathOptions(Protocol):
    """The config of a FileReading source or FileWriting sink: it names its file in ``path``."""

    @property
    def path(self) -> str | list[str]: ...


def compile_plan(spec: PipelineSpec) -> PipelinePlan:
    """The plan of a valid pipeline: components, hooks, edges and paths resolved once."""
    targets: dict[str, dict[str, list[str]]] = {name: {} for name in spec.steps}
    inputs: dict[str, list[str]] = {name: [] for name in spec.steps}
    for c in spec.connections:
        targets[c.source_step].setdefault(c.output, []).append(c.target)
        inputs[c.target].append(c.source_step)
    steps: dict[str, PlanStep] = {}
    for name, step in spec.steps.items():
        fed_by_sources = all(spec.steps[s].kind == "source" for s in inputs[name])
        steps[name] = _plan_step(
            spec,
            step,
            len(inputs[name]),
            {output: tuple(to) for output, to in targets[name].items()},
            fed_by_sources,
        )
    on_error = spec.on_error
    return PipelinePlan(
        file=spec.file,
        base_dir=spec.base_dir,
        name=spec.name,
        steps=steps,
        on_error=RejectPolicy(
            on_error.policy,
            resolve_path(on_error.rejects, spec.base_dir) if on_error.rejects else None,
            on_error.reject_limit,
            on_error.max_reject_ratio,
        ),
        queue_batches=spec.engine.queue_batches,
        retry=spec.engine.retry,
        circuit_breaker=spec.engine.circuit_breaker,
        taps={t.step: t.sample for t in spec.taps},
        variables=dict(spec.variables),
        warnings=tuple(spec.warnings),
        dlq=spec.dlq,
        dlq_path=resolve_path(spec.dlq.path, spec.base_dir) if spec.dlq is not None else None,
    )


def _plan_step(
    spec: PipelineSpec,
    step: StepSpec,
    inputs: int,
    targets: dict[str, tuple[str, ...]],
    fed_by_sources: bool,
) -> PlanStep:
    if step.info is None or step.config is None:
        raise ValueError(f"step '{step.name}' was not validated; load the pipeline first")
    caps = capabilities_of(step.info.cls)
    option: Any = None
    paths: tuple[str, ...] = ()
    if (step.kind == "source" and FileReading in caps) or (
        step.kind == "sink" and FileWriting in caps
    ):
        option = cast(_PathOptions, step.config).path
        listed = [option] if isinstance(option, str) else list(option or [])
        paths = tuple(resolve_path(p, spec.base_dir) for p in listed if isinstance(p, str))
    return PlanStep(
        name=step.name,
        kind=step.kind,
        component=step.component,
        where=step.where,
        cls=step.info.cls,
        config=step.config,
        capabilities=caps,
        inputs=inputs,
        targets=targets,
        fed_by_sources=fed_by_sources,
        path_option=option,
        paths=paths,
        options_path=tuple(step.path),
        positions=spec.positions,
    )
