"""Pipeline files: YAML with source positions, ``${VAR}`` substitution, the linear and graph forms.

:func:`load_pipeline` reads a pipeline file and returns a :class:`PipelineSpec`: the graph
(steps, connections, taps, error policy) with every step's options validated against its
component's config model. Every problem found is reported at once in one ``ConfigError``,
each with ``file:line:column``, the field path, and a fix (``did you mean ...`` for typos).

Two native forms exist. The linear form (``source`` / ``processors`` / ``sink``) compiles to
the graph form (``steps`` / ``connections``): the source step is named ``source``, the sink
``sink``, and each processor by its component name (``validate``, ``validate_2``, ...).
FlowEngine files (top-level ``pipeline:``) are translated by ``quiver.pipeline.flowengine``.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from quiver.config.yaml_source import (
    MAX_YAML_BYTES,
    Positions,
    Variables,
    YamlDocument,
    format_path,
    load_yaml,
    substitute,
)
from quiver.pipeline.component import (
    ComponentConfig,
    ComponentInfo,
    ComponentKind,
    FileReading,
    FileWriting,
    capabilities_of,
)
from quiver.pipeline.dead_letter_config import DeadLetterConfig
from quiver.pipeline.path_map import PathMap, is_windows_path
from quiver.pipeline.paths import STDIO, NamedPath, path_collisions
from quiver.pipeline.plan import DEFAULT_OUTPUT
from quiver.pipeline.registry import ComponentRegistry, default_registry
from quiver.runtime.delivery import CircuitBreakerPolicy, RetryPolicy
from quiver.runtime.errors import ConfigError, ErrorDetail
from quiver.runtime.hints import did_you_mean

__all__ = [
    "ConnectionConfig",
    "ConnectionSpec",
    "EngineSettings",
    "GraphPipelineConfig",
    "LinearPipelineConfig",
    "MetricsEndpointConfig",
    "OnErrorConfig",
    "PipelineSpec",
    "StepSpec",
    "TapConfig",
    "TelemetryConfig",
    "load_pipeline",
    "parse_pipeline",
    "report_problems",
]

Path_ = tuple[str | int, ...]


_T = TypeVar("_T")


def _made_by(make: Callable[[], _T]) -> Callable[[], _T]:
    """A ``default_factory`` calling ``make``: a function of our own. Pydantic reads the
    signature of a default factory when it builds the model (does it take the validated
    data?); a class's signature is generated from its fields, a builtin's is parsed from text
    with the tokenizer (compiled on first use), a function's is read at once. About 3 ms of
    every ``quiver`` start for this module's models."""
    return lambda: make()


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OnErrorConfig(_Model):
    """What happens to a row a step rejects (validation failure, bad value, script error)."""

    policy: Literal["fail_fast", "reject"] = Field(
        default="fail_fast",
        description="`fail_fast`: the first rejected row fails the run and nothing is written. "
        "`reject`: rejected rows go to the rejects file and the run goes on.",
    )
    rejects: str | None = Field(
        default=None,
        description="CSV file receiving rejected rows (line, column, value, reason, row); "
        "required with `policy: reject`. Relative to the pipeline file.",
    )
    max_errors: int | None = Field(
        default=None,
        ge=0,
        description="The former name of `max_rejects`.",
    )
    max_rejects: int | None = Field(
        default=None,
        ge=0,
        description="With `policy: reject`: fail the run (writing nothing) once more than this "
        "many rows are rejected (null: no limit). `quiver run --max-rejects` overrides it.",
    )
    max_reject_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="With `policy: reject`: fail the run (writing nothing) when more than this "
        "share of the rows read (0.05: 5%) was rejected, checked when the input is read "
        "and before anything is written (null: no limit). `quiver run --max-reject-ratio` "
        "overrides it.",
    )

    @property
    def reject_limit(self) -> int | None:
        """The most rows that may be rejected (``max_rejects``, or its former name)."""
        limits = [n for n in (self.max_rejects, self.max_errors) if n is not None]
        return min(limits) if limits else None


class TapConfig(_Model):
    """A debug tap: show sampled rows flowing out of a step."""

    step: str = Field(description="Step to watch; `step.route` watches a named route output.")
    sample: int = Field(default=10, ge=1, description="How many rows to show (the first ones).")


class ConnectionConfig(_Model):
    """An edge of the graph: `from` a step's output (`step` or `step.route`) `to` steps."""

    from_: str = Field(alias="from", description="`step` (default output) or `step.route`.")
    to: str | list[str] = Field(description="Step name, or a list of them (fan-out).")


class EngineSettings(_Model):
    """Tuning of the engine; the defaults suit most pipelines."""

    queue_batches: int = Field(
        default=4,
        ge=1,
        description="Batches buffered between two steps; bounds memory and applies "
        "back-pressure to fast sources.",
    )
    retry: RetryPolicy = Field(
        default_factory=_made_by(RetryPolicy),
        description="Retry policy around source reads and sink writes.",
    )
    circuit_breaker: CircuitBreakerPolicy = Field(
        default_factory=_made_by(CircuitBreakerPolicy),
        description="Circuit breaker per sink.",
    )


class MetricsEndpointConfig(_Model):
    """Where `quiver run` serves its own Prometheus metrics."""

    endpoint: str = Field(
        description="host:port to listen on, e.g. `127.0.0.1:8888` (`0.0.0.0:8888`: every "
        "interface); `quiver run --metrics` overrides it."
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        from quiver.runtime.monitoring import parse_endpoint

        parse_endpoint(value)
        return value


class TelemetryConfig(_Model):
    """The run's own monitoring endpoint: Prometheus `/metrics`, `/healthz` and `/readyz`."""

    metrics: MetricsEndpointConfig | None = Field(
        default=None,
        description="Serve `/metrics` (the engine's, the dead-letter queue's and the "
        "receivers' metrics) on this endpoint while the run goes on (null: not served).",
    )
    health: bool = Field(
        default=True,
        description="Also serve `/healthz` (200 while the process runs) and `/readyz` (200 once "
        "the sources take input, 503 before and while draining) on the metrics endpoint.",
    )


class _Common(_Model):
    name: str | None = Field(default=None, description="Pipeline name shown in logs and reports.")
    description: str | None = Field(default=None, description="Free text.")
    variables: dict[str, str] = Field(
        default_factory=_made_by(dict),
        description="Default values of `${VAR}` references; `--variable` and the environment "
        "override them.",
    )
    on_error: OnErrorConfig = Field(
        default_factory=_made_by(OnErrorConfig), description="Error policy."
    )
    taps: list[TapConfig] = Field(default_factory=_made_by(list), description="Debug taps.")
    engine: EngineSettings = Field(
        default_factory=_made_by(EngineSettings), description="Engine tuning."
    )
    dlq: DeadLetterConfig | None = Field(
        default=None,
        description="Dead-letter queue: batches a sink refuses for good are kept here "
        "instead of failing the run (null: a failing sink fails the run).",
    )
    telemetry: TelemetryConfig = Field(
        default_factory=_made_by(TelemetryConfig),
        description="The run's own monitoring endpoint (off unless `metrics` is set).",
    )


StepBody = dict[str, dict[str, Any] | None]


class LinearPipelineConfig(_Common):
    """The linear form: one source, processors in order, one sink."""

    source: StepBody = Field(description="`{component: {options}}`, e.g. `{csv: {path: in.csv}}`.")
    processors: list[StepBody] = Field(
        default_factory=_made_by(list), description="Processors applied in order."
    )
    sink: StepBody = Field(description="`{component: {options}}`, e.g. `{parquet: {path: o.pq}}`.")


class GraphPipelineConfig(_Common):
    """The graph form: named steps and the connections between them."""

    steps: dict[str, StepBody] = Field(
        description="Steps by name, each `{component: {options}}`. A step with no incoming "
        "connection is a source, one with no outgoing connection a sink."
    )
    connections: list[ConnectionConfig] = Field(description="Edges between steps.")


# --------------------------------------------------------------------------- YAML + positions


def _locate_inline_scripts(data: Any, positions: Positions, lines: list[str], file: str) -> None:
    """Tell each ``js`` step with an inline ``script:`` where that script starts in the file,
    so its syntax and run-time errors point at the pipeline file's own line and column."""
    found: list[tuple[Path_, dict[str, Any]]] = []
    if isinstance(data.get("processors"), list):
        found += [(("processors", i), p) for i, p in enumerate(data["processors"])]
    if isinstance(data.get("steps"), dict):
        found += [(("steps", k), v) for k, v in data["steps"].items()]
    for base, step in found:
        js = step.get("js") if isinstance(step, dict) else None
        if not isinstance(js, dict) or not isinstance(js.get("script"), str):
            continue
        if {"script_line", "script_name"} & set(js):
            continue
        key_line = positions.line_of((*base, "js", "script"))
        if key_line is None or key_line > len(lines):
            continue
        text = lines[key_line - 1]
        head = text.split("script:", 1)[-1] if "script:" in text else ""
        value = head.lstrip()
        if value.startswith(("|", ">")):  # block scalar: the script starts on a later line
            first = key_line
            while first < len(lines) and not lines[first].strip():
                first += 1
            if first >= len(lines):
                continue
            body = lines[first]
            line, indent = first + 1, len(body) - len(body.lstrip(" "))
        elif value:
            quoted = value[0] in "'\""
            line = key_line
            indent = len(text) - len(value) + (1 if quoted else 0)
        else:
            continue
        js.update(script_name=Path(file).name, script_line=line, script_indent=indent)


# --------------------------------------------------------------------------- the graph


@dataclass
class StepSpec:
    """One step of the graph with its component resolved and its options validated."""

    name: str
    kind: ComponentKind
    component: str
    options: dict[str, Any]
    path: Path_
    where: str
    info: ComponentInfo | None = None
    config: ComponentConfig | None = None
    #: whether an option holds a ``${...}`` whose variable is not set (reported by the
    #: substitution): its options are not what the run would see, so they are not checked
    unfilled: bool = False


@dataclass(frozen=True)
class ConnectionSpec:
    """``source_step``'s output ``output`` feeds ``target``."""

    source_step: str
    output: str
    target: str
    where: str = ""


@dataclass
class PipelineSpec:
    """A loaded, validated pipeline: what the engine runs."""

    file: str
    base_dir: str
    name: str
    steps: dict[str, StepSpec]
    connections: list[ConnectionSpec]
    taps: list[TapConfig]
    on_error: OnErrorConfig
    engine: EngineSettings
    variables: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    dlq: DeadLetterConfig | None = None
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    positions: Positions | None = None
    errors: list[ErrorDetail] = field(default_factory=list)

    def sources(self) -> list[StepSpec]:
        return [s for s in self.steps.values() if s.kind == "source"]

    def sinks(self) -> list[StepSpec]:
        return [s for s in self.steps.values() if s.kind == "sink"]

    def outgoing(self, step: str) -> list[ConnectionSpec]:
        return [c for c in self.connections if c.source_step == step]

    def incoming(self, step: str) -> list[ConnectionSpec]:
        return [c for c in self.connections if c.target == step]

    def order(self) -> list[str]:
        """Steps in topological order (sources first)."""
        indegree = {n: 0 for n in self.steps}
        for c in self.connections:
            indegree[c.target] += 1
        ready = [n for n in self.steps if indegree[n] == 0]
        out: list[str] = []
        while ready:
            n = ready.pop(0)
            out.append(n)
            for c in self.outgoing(n):
                indegree[c.target] -= 1
                if indegree[c.target] == 0:
                    ready.append(c.target)
        return out

    def resolve(self, path: str) -> str:
        """A path option made absolute against the pipeline file's directory."""
        return resolve_path(path, self.base_dir)


def resolve_path(path: str, base_dir: str) -> str:
    """``path`` relative to ``base_dir`` unless it is absolute or a URL."""
    if "://" in path or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def load_pipeline(
    file: str | os.PathLike[str],
    variables: Mapping[str, str] | None = None,
    *,
    registry: ComponentRegistry | None = None,
    environ: Mapping[str, str] | None = None,
    collect: bool = False,
    path_map: PathMap | None = None,
) -> PipelineSpec:
    """Read, substitute, validate and compile a pipeline file (ConfigError with every problem).

    With ``collect=True`` problems found in the steps are returned in ``spec.errors`` instead
    of raised (``quiver validate`` then goes on to check the valid steps' scripts); problems
    that leave no usable graph are raised either way.
    """
    path = Path(file)
    try:
        size = path.stat().st_size if path.is_file() else 0
        if size > MAX_YAML_BYTES:  # refused before it is read into memory
            raise ConfigError.one(
                f"the file is {size:,} bytes, more than the {MAX_YAML_BYTES:,} a pipeline file "
                "may have",
                str(path),
                "keep large data (scripts, lookup tables) in files of their own and name them",
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError.one(
            "pipeline file not found", str(path), "check the path of the pipeline file"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError.one(
            f"cannot read the pipeline file: {exc}", str(path), "check the file"
        ) from exc
    return parse_pipeline(
        text,
        str(path),
        variables,
        registry=registry,
        environ=environ,
        collect=collect,
        path_map=path_map,
    )


def parse_pipeline(
    text: str,
    file: str,
    variables: Mapping[str, str] | None = None,
    *,
    registry: ComponentRegistry | None = None,
    environ: Mapping[str, str] | None = None,
    base_dir: str | None = None,
    collect: bool = False,
    path_map: PathMap | None = None,
) -> PipelineSpec:
    """Like :func:`load_pipeline` for YAML text already in memory.

    ``path_map`` maps the Windows paths of FlowEngine files (``--path-map``)."""
    registry = registry or default_registry()
    base = base_dir or str(Path(file).resolve().parent)
    source = load_yaml(text, file)
    data, positions = source.data, source.positions
    errors: list[ErrorDetail] = _key_problems(source)
    warnings: list[str] = []
    from_flowengine = False
    if not isinstance(data, dict):
        raise ConfigError.one(
            "a pipeline file must be a mapping",
            positions.where(()),
            "start with `source:` / `processors:` / `sink:` or `steps:` / `connections:`",
        )
    if any(str(k).lower() == "pipeline" for k in data) and not {"steps", "source"} & set(data):
        # imported here: the translator and the JavaScript codec it uses load only for
        # FlowEngine files
        from quiver.pipeline.flowengine import translate as translate_flowengine

        data, fe_warnings = translate_flowengine(data, file, positions, text.splitlines(), path_map)
        warnings.extend(fe_warnings)
        positions = Positions(file)
        from_flowengine = True

    env = os.environ if environ is None else environ
    defaults = data.get("variables") if isinstance(data.get("variables"), dict) else {}
    merged: dict[str, str] = {str(k): str(v) for k, v in (defaults or {}).items()}
    merged.update({k: v for k, v in env.items()})
    merged.update(variables or {})
    done = substitute(
        data,
        Variables(env, Path(base), names=merged, how_to_set=_how_to_set, legacy_escapes=True),
        positions,
    )
    data = done.data
    errors.extend(ErrorDetail(i.message, i.located(file), i.fix) for i in done.errors)
    unfilled = _Unfilled([i.path for i in done.errors], positions)
    if not from_flowengine:
        # A translated FlowEngine document writes a literal '$' as '$$' (flowengine._subst):
        # its author never wrote the deprecated escape, so nothing to warn about.
        warnings.extend(i.render(file) for i in done.deprecations)
    _locate_inline_scripts(data, positions, text.splitlines(), file)

    model: type[_Common]
    if "steps" in data or "connections" in data:
        model = GraphPipelineConfig
    elif "source" in data or "sink" in data or "processors" in data:
        model = LinearPipelineConfig
    else:
        raise ConfigError.one(
            "the file has neither `source`/`sink` (linear form) nor `steps`/`connections` "
            "(graph form)",
            positions.where(()),
            "see docs/pipelines/quickstart.md for both forms",
        )
    doc: _Common
    dropped: set[str] = set()  # steps refused whole: their neighbours' links are not missing
    try:
        doc = model.model_validate(data)
    except ValidationError as exc:
        errors.extend(_pydantic_details(exc, model, positions, ()))
        # go on with the parts that are well-formed, so one pass reports everything
        salvaged = _salvage(data, model, exc, dropped)
        if salvaged is None:
            for step in _loose_steps(data, registry):
                _resolve_component(step, registry, positions, errors, unfilled)
            raise ConfigError(errors) from None
        doc = salvaged

    if isinstance(doc, LinearPipelineConfig):
        steps, connections = _compile_linear(doc, positions, errors)
    else:
        assert isinstance(doc, GraphPipelineConfig)
        steps, connections = _compile_graph(doc, positions, errors)
        if dropped:
            linked = _linked_to(data.get("connections"), dropped)
            errors[:] = [
                e
                for e in errors
                if not any(e.message == f"step '{n}' is not connected to anything" for n in linked)
            ]

    spec = PipelineSpec(
        file=file,
        base_dir=base,
        name=doc.name or Path(file).stem,
        steps=steps,
        connections=connections,
        taps=doc.taps,
        on_error=doc.on_error,
        engine=doc.engine,
        variables=merged,
        warnings=warnings,
        positions=positions,
        dlq=doc.dlq,
        telemetry=doc.telemetry,
    )
    _check_graph(spec, doc, positions, errors)
    _check_on_error(doc, positions, errors)
    _check_dlq(spec, positions, errors)
    for step in steps.values():
        _resolve_component(step, registry, positions, errors, unfilled)
    errors.extend(_check_paths(spec, positions))
    errors.extend(_check_routes(spec))
    if errors and not collect:
        raise ConfigError(errors)
    spec.errors = errors
    return spec


def _salvage(
    data: dict[str, Any], model: type[_Common], exc: ValidationError, dropped: set[str]
) -> _Common | None:
    """The document without the parts pydantic refused (their errors are reported already),
    so the graph and the steps of an otherwise valid file are checked in the same pass.

    A refused connection or processor is left out; a refused step is left out with the
    connections naming it; any other refused key is left out whole. None when what is
    refused is needed to make a graph at all (a missing `steps`, `source` ...).
    """
    current = dict(data)
    for _ in range(4):
        broken_steps: set[str] = set()
        drop_items: dict[str, set[int]] = {}
        for err in exc.errors():
            loc = tuple(err["loc"])
            if not loc:
                return None
            top = loc[0]
            if err["type"] == "missing" and len(loc) == 1:
                return None
            if top in ("connections", "processors") and len(loc) > 1 and isinstance(loc[1], int):
                drop_items.setdefault(str(top), set()).add(loc[1])
            elif top == "steps" and len(loc) > 1:
                broken_steps.add(str(loc[1]))
            elif isinstance(top, str):
                if top in ("steps", "connections", "source", "sink", "processors"):
                    return None
                current.pop(top, None)
        for key, indexes in drop_items.items():
            items = current.get(key)
            if isinstance(items, list):
                current[key] = [v for i, v in enumerate(items) if i not in indexes]
        dropped.update(broken_steps)
        if broken_steps and isinstance(current.get("steps"), dict):
            current["steps"] = {k: v for k, v in current["steps"].items() if k not in broken_steps}
            conns = current.get("connections")
            if isinstance(conns, list):
                current["connections"] = [c for c in conns if not _names_any(c, broken_steps)]
        try:
            return model.model_validate(current)
        except ValidationError as again:
            exc = again
    return None


def _linked_to(connections: Any, steps: set[str]) -> set[str]:
    """The steps a (raw) list of connections links to one of ``steps``."""
    linked: set[str] = set()
    for c in connections if isinstance(connections, list) else []:
        if _names_any(c, steps):
            linked.update(_names_of(c))
    return linked - steps


def _names_of(connection: dict[str, Any]) -> set[str]:
    names = {str(connection.get("from", "")).partition(".")[0]}
    to = connection.get("to")
    names.update(map(str, to) if isinstance(to, list) else [str(to)])
    return names


def _names_any(connection: Any, steps: set[str]) -> bool:
    """Whether a (raw) connection mentions one of ``steps``."""
    if not isinstance(connection, dict):
        return False
    return bool(_names_of(connection) & steps)


def _key_problems(source: YamlDocument) -> list[ErrorDetail]:
    """Every key written twice in one mapping (YAML would keep only the last), with both
    positions."""
    errors: list[ErrorDetail] = []
    for twice in source.duplicate_keys:
        dotted = format_path(twice.path)
        errors.append(
            ErrorDetail(
                f"key '{twice.path[-1]}' is written twice in the same mapping (first at "
                f"{twice.first.render()}, again at {twice.again.render()}); YAML would keep "
                "only the last one",
                f"{twice.again.render()} {dotted}",
                f"keep one '{twice.path[-1]}': merge the two, or remove one of them",
            )
        )
    return errors


def _how_to_set(name: str) -> str:
    return (
        f"pass --variable {name}=VALUE, export {name}, add it under `variables:`, "
        f"or write ${{{name}:-default}}"
    )


def _loose_steps(data: dict[str, Any], registry: ComponentRegistry) -> list[StepSpec]:
    """Well-formed steps of a document whose other parts are invalid (kinds guessed by name)."""
    found: list[tuple[ComponentKind | None, Any, Path_]] = []
    if "steps" in data and isinstance(data["steps"], dict):
        found += [(None, body, ("steps", name)) for name, body in data["steps"].items()]
    else:
        found.append(("source", data.get("source"), ("source",)))
        procs = data.get("processors")
        if isinstance(procs, list):
            found += [("processor", body, ("processors", i)) for i, body in enumerate(procs)]
        found.append(("sink", data.get("sink"), ("sink",)))
    steps: list[StepSpec] = []
    for kind, body, path in found:
        if not (isinstance(body, dict) and len(body) == 1):
            continue
        component, options = next(iter(body.items()))
        if not isinstance(component, str) or not isinstance(options, dict | None):
            continue
        if kind is None:
            kinds = registry.kinds_of(component)
            if len(kinds) != 1:
                continue
            kind = kinds[0]
        steps.append(
            StepSpec(str(path[-1]), kind, component, dict(options or {}), (*path, component), "")
        )
    return steps


def _split_body(
    body: StepBody, path: Path_, positions: Positions, errors: list[ErrorDetail]
) -> tuple[str, dict[str, Any]] | None:
    if len(body) != 1:
        keys = ", ".join(map(str, body)) or "nothing"
        errors.append(
            ErrorDetail(
                f"a step names exactly one component, found {keys}",
                positions.where(path),
                "write `{component: {options}}`, e.g. `{csv: {path: in.csv}}`",
            )
        )
        return None
    component, options = next(iter(body.items()))
    return component, dict(options or {})


def _compile_linear(
    doc: LinearPipelineConfig, positions: Positions, errors: list[ErrorDetail]
) -> tuple[dict[str, StepSpec], list[ConnectionSpec]]:
    steps: dict[str, StepSpec] = {}
    chain: list[str] = []
    items: list[tuple[str, ComponentKind, StepBody, Path_]] = [
        ("source", "source", doc.source, ("source",))
    ]
    items += [("", "processor", body, ("processors", i)) for i, body in enumerate(doc.processors)]
    items.append(("sink", "sink", doc.sink, ("sink",)))
    for name, kind, body, path in items:
        split = _split_body(body, path, positions, errors)
        if split is None:
            continue
        component, options = split
        if not name:
            name = component.rsplit(":", 1)[-1]
            base = name
            n = 2
            while name in steps or name in ("source", "sink"):
                name = f"{base}_{n}"
                n += 1
        steps[name] = StepSpec(
            name, kind, component, options, (*path, component), positions.where(path)
        )
        chain.append(name)
    connections = [ConnectionSpec(a, DEFAULT_OUTPUT, b) for a, b in itertools.pairwise(chain)]
    return steps, connections


def _compile_graph(
    doc: GraphPipelineConfig, positions: Positions, errors: list[ErrorDetail]
) -> tuple[dict[str, StepSpec], list[ConnectionSpec]]:
    connections: list[ConnectionSpec] = []
    names = list(doc.steps)
    for i, conn in enumerate(doc.connections):
        step, _, output = conn.from_.partition(".")
        targets = [conn.to] if isinstance(conn.to, str) else conn.to
        for j, target in enumerate(targets):
            to_path: Path_ = (
                ("connections", i, "to")
                if isinstance(conn.to, str)
                else (
                    "connections",
                    i,
                    "to",
                    j,
                )
            )
            for ref, ref_path in ((step, ("connections", i, "from")), (target, to_path)):
                if ref not in doc.steps:
                    hint = did_you_mean(ref, names)
                    errors.append(
                        ErrorDetail(
                            f"unknown step '{ref}'" + (f"; {hint}" if hint else ""),
                            positions.where(ref_path),
                            f"steps are: {', '.join(names)}",
                        )
                    )
            connections.append(
                ConnectionSpec(
                    step, output or DEFAULT_OUTPUT, target, positions.where(("connections", i))
                )
            )
    connections = [c for c in connections if c.source_step in doc.steps and c.target in doc.steps]
    has_in = {c.target for c in connections}
    has_out = {c.source_step for c in connections}
    steps: dict[str, StepSpec] = {}
    for name, body in doc.steps.items():
        path: Path_ = ("steps", name)
        split = _split_body(body, path, positions, errors)
        if split is None:
            continue
        component, options = split
        if name not in has_in and name not in has_out:
            errors.append(
                ErrorDetail(
                    f"step '{name}' is not connected to anything",
                    positions.where(path),
                    f"add a connection from or to '{name}', or remove the step",
                )
            )
            continue
        kind: ComponentKind = (
            "source" if name not in has_in else "sink" if name not in has_out else "processor"
        )
        if "." in name:
            errors.append(
                ErrorDetail(
                    f"step name '{name}' contains '.'",
                    positions.where(path),
                    "'.' separates a step from its route output; rename the step",
                )
            )
        steps[name] = StepSpec(
            name, kind, component, options, (*path, component), positions.where(path)
        )
    return steps, connections


def _check_graph(
    spec: PipelineSpec, doc: _Common, positions: Positions, errors: list[ErrorDetail]
) -> None:
    order = spec.order()
    if len(order) < len(spec.steps):
        cyclic = [n for n in spec.steps if n not in order]
        errors.append(
            ErrorDetail(
                f"the connections form a cycle through {', '.join(cyclic)}",
                positions.where(("connections",)),
                "remove a connection so data flows one way from sources to sinks",
            )
        )
    seen: set[tuple[str, str, str]] = set()
    for c in spec.connections:
        key = (c.source_step, c.output, c.target)
        if key in seen:
            errors.append(
                ErrorDetail(
                    f"duplicate connection {c.source_step}.{c.output} -> {c.target}",
                    c.where,
                    "remove one of them",
                )
            )
        seen.add(key)
        src = spec.steps.get(c.source_step)
        if src is not None and src.kind == "source" and c.output != DEFAULT_OUTPUT:
            errors.append(
                ErrorDetail(
                    f"source '{c.source_step}' has no route output '{c.output}'",
                    c.where,
                    f"connect from '{c.source_step}'",
                )
            )
    for i, tap in enumerate(doc.taps):
        step = tap.step.partition(".")[0]
        if step not in spec.steps:
            hint = did_you_mean(step, list(spec.steps))
            errors.append(
                ErrorDetail(
                    f"tap on unknown step '{step}'" + (f"; {hint}" if hint else ""),
                    positions.where(("taps", i, "step")),
                    f"steps are: {', '.join(spec.steps)}",
                )
            )


def _check_paths(spec: PipelineSpec, positions: Positions) -> list[ErrorDetail]:
    """Files written twice, or written over an input, in one run (see ``path_collisions``),
    and Windows paths on a system that would take them for relative file names."""
    problems, named, stems = _named_paths(spec, positions)
    return problems + path_collisions(named, stems)


def report_problems(spec: PipelineSpec, report: str) -> list[ErrorDetail]:
    """Why ``quiver run --report PATH`` could not write its report at ``report`` (relative to
    the working directory) once the run is over, found before it starts: a directory there,
    a directory of its path that is a file, or a file the run reads or writes (which the
    report would replace: an input, an output, the rejects file)."""
    path = os.path.abspath(report)
    where = "--report"
    if os.path.isdir(path):
        return [ErrorDetail(f"{path} is a directory", where, "name a file for the report")]
    problems = [ErrorDetail(m, where, fix) for m, fix in _unwritable_place(path, True)]
    _, named, stems = _named_paths(spec, spec.positions or Positions(spec.file))
    known = {(d.message, d.where) for d in path_collisions(named, stems)}
    report_path = NamedPath("output", "the report (--report)", path, where)
    problems += [
        ErrorDetail(d.message, where, "write the report to a path of its own")
        for d in path_collisions([*named, report_path], stems)
        if (d.message, d.where) not in known
    ]
    return problems


def _named_paths(
    spec: PipelineSpec, positions: Positions
) -> tuple[list[ErrorDetail], list[NamedPath], list[str] | None]:
    """The files the run reads and writes (with the problems of their paths found on the
    way), and the stems of the input files when there is one file source."""
    problems: list[ErrorDetail] = []
    named: list[NamedPath] = []
    readers: list[tuple[StepSpec, list[str]]] = []
    for step in spec.steps.values():
        if step.info is None or step.unfilled:
            continue
        caps = capabilities_of(step.info.cls)
        kind: Literal["input", "output"]
        if step.kind == "source" and FileReading in caps:
            kind = "input"
        elif step.kind == "sink" and FileWriting in caps:
            kind = "output"
        else:
            continue
        # a step whose other options are wrong still names its file
        option = getattr(step.config, "path", None) if step.config else step.options.get("path")
        # an option of the wrong type (a number, a mapping) is reported by its model already
        listed = [option] if isinstance(option, str) else option if isinstance(option, list) else []
        windows = [p for p in listed if isinstance(p, str) and is_windows_path(p)]
        for p in windows:
            problems.append(
                ErrorDetail(
                    f"{p!r} is a Windows path, which names no file on this system",
                    positions.where((*step.path, "path")),
                    "write a path of this system (relative paths are relative to the pipeline "
                    "file), or name the folder with a variable: ${DATA_DIR}/in.csv",
                )
            )
        listed = [p for p in listed if p not in windows]
        full = [spec.resolve(p) for p in listed if isinstance(p, str) and p != STDIO]
        if kind == "input":
            readers.append((step, full))
        where = positions.where((*step.path, "path"))
        if kind == "output":
            create = getattr(step.config, "create_dirs", True) is not False
            problems += [
                ErrorDetail(message, where, fix)
                for p in full
                for message, fix in _unwritable_place(p, create)
            ]
        named += [NamedPath(kind, f"{step.kind} '{step.name}'", p, where) for p in full]
    if spec.on_error.rejects:
        problems += [
            ErrorDetail(message, positions.where(("on_error", "rejects")), fix)
            for message, fix in _unwritable_place(spec.resolve(spec.on_error.rejects), True)
        ]
        named.append(
            NamedPath(
                "rejects",
                "the rejects file",
                spec.resolve(spec.on_error.rejects),
                positions.where(("on_error", "rejects")),
            )
        )
    stems: list[str] | None = None
    if len(readers) == 1 and len(readers[0][1]) == 1:
        pattern = readers[0][1][0]
        files = sorted(glob.glob(pattern, recursive=True)) if _has_glob(pattern) else [pattern]
        stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    return problems, named, stems


def _unwritable_place(path: str, create_dirs: bool) -> list[tuple[str, str]]:
    """Why a run could not write the file ``path`` where it is (with the fix), found before
    any data is read: a directory of its path that is a file, or a directory that is missing
    while ``create_dirs`` is off. (A directory where the file should be is refused when the
    sink opens it, as one may be made or removed in between.)"""
    if "://" in path:
        return []
    parent = os.path.dirname(path)
    existing = parent
    while existing and not os.path.lexists(existing):
        up = os.path.dirname(existing)
        if up == existing:
            break
        existing = up
    if existing and os.path.lexists(existing) and not os.path.isdir(existing):
        return [
            (
                f"{existing} is a file, so the directory {parent} for the output {path} "
                "cannot be made",
                "choose another path for the output, or move the file away",
            )
        ]
    if not create_dirs and existing != parent:
        return [
            (
                f"the output directory {parent} does not exist",
                "create it, or set `create_dirs: true`",
            )
        ]
    return []


_ROUTE_CALL = re.compile(
    r"\b(?:route\s*\.\s*send(?:Copy)?|emit)\s*\(\s*(['\"`])([^'\"`\\$]*)\1\s*[,)]"
)
_ROUTE_WORD = re.compile(r"\b(?:route|emit)\b")


def _check_routes(spec: PipelineSpec) -> list[ErrorDetail]:
    """Connections from a route output the step never sends to (a misspelt name would drop
    every row sent to the real one)."""
    errors: list[ErrorDetail] = []
    for c in spec.connections:
        step = spec.steps.get(c.source_step)
        if c.output == DEFAULT_OUTPUT or step is None or step.kind != "processor":
            continue
        if step.unfilled:
            continue
        known = _declared_routes(step, spec.base_dir)
        if known is None or c.output in known:
            continue
        hint = did_you_mean(c.output, sorted(known))
        errors.append(
            ErrorDetail(
                f"step '{step.name}' has no route output '{c.output}'"
                + (f"; {hint}" if hint else ""),
                c.where,
                f"its route outputs are: {', '.join(sorted(known))}"
                if known
                else f"'{step.name}' sends rows to its default output only: connect from "
                f"'{step.name}'",
            )
        )
    return errors


def _declared_routes(step: StepSpec, base_dir: str) -> set[str] | None:
    """The route outputs a built-in processor may send rows to (None when not knowable: a
    plugin, or a script choosing route names at run time)."""
    if step.info is None or step.config is None:
        return None
    if not step.info.cls.__module__.startswith("quiver.pipeline.processors."):
        return None
    config = step.config
    if step.component == "filter":
        otherwise = getattr(config, "otherwise", None)
        return {otherwise} if otherwise else set()
    if step.component == "aggregate":
        late = getattr(config, "late", "drop")
        return set() if late == "drop" else {late}
    if step.component != "js":
        return set()
    routes = getattr(config, "routes", None)
    if routes is not None:
        return set(routes)
    script = getattr(config, "script", None)
    file = getattr(config, "file", None)
    if script is None and isinstance(file, str):
        try:
            script = Path(resolve_path(file, base_dir)).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None  # the script's own check reports it
    if not isinstance(script, str):
        return None
    calls = _ROUTE_CALL.findall(script)
    if len(calls) != len(_ROUTE_WORD.findall(script)):
        return None  # a name computed at run time, or the route object passed around
    return {name for _, name in calls}


def _has_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _check_on_error(doc: _Common, positions: Positions, errors: list[ErrorDetail]) -> None:
    on_error = doc.on_error
    if on_error.policy == "reject" and not on_error.rejects:
        errors.append(
            ErrorDetail(
                "`policy: reject` needs a rejects file",
                positions.where(("on_error", "policy")),
                "add `rejects: out/rejects.csv` under on_error",
            )
        )
    if on_error.policy == "fail_fast":
        for name in ("max_rejects", "max_reject_ratio", "max_errors"):
            if getattr(on_error, name) is not None:
                errors.append(
                    ErrorDetail(
                        f"`{name}` has no effect with `policy: fail_fast`: the first rejected "
                        "row fails the run",
                        positions.where(("on_error", name)),
                        "set `policy: reject` with a `rejects:` file, or remove the limit",
                    )
                )


def _check_dlq(spec: PipelineSpec, positions: Positions, errors: list[ErrorDetail]) -> None:
    """``dlq.path`` is a directory (or not there yet) and ``dlq.sinks`` names sinks."""
    if spec.dlq is None:
        return
    path = spec.resolve(spec.dlq.path)
    if os.path.exists(path) and not os.path.isdir(path):
        errors.append(
            ErrorDetail(
                f"{path} is a file, not a directory",
                positions.where(("dlq", "path")),
                "name a directory (it is created when missing)",
            )
        )
    if spec.dlq.sinks is None:
        return
    sinks = [s.name for s in spec.sinks()]
    for i, name in enumerate(spec.dlq.sinks):
        if name not in sinks:
            errors.append(
                ErrorDetail(
                    f"dlq.sinks: '{name}' is not a sink of this pipeline",
                    positions.where(("dlq", "sinks", i)),
                    did_you_mean(name, sinks) or f"its sinks: {', '.join(sinks) or 'none'}",
                )
            )


class _Unfilled:
    """The values holding a ``${...}`` left unfilled (its variable is not set): what is
    found wrong with them follows from that, and is not reported again."""

    def __init__(self, paths: list[Path_], positions: Positions) -> None:
        self.paths = [tuple(p) for p in paths]
        self.wheres = {positions.where(p) for p in self.paths}

    def holds(self, step: StepSpec) -> bool:
        """Whether an option of ``step`` holds an unfilled reference."""
        return any(p[: len(step.path)] == step.path for p in self.paths)


def _resolve_component(
    step: StepSpec,
    registry: ComponentRegistry,
    positions: Positions,
    errors: list[ErrorDetail],
    unfilled: _Unfilled | None = None,
) -> None:
    step.unfilled = unfilled is not None and unfilled.holds(step)
    where = positions.where(step.path)
    try:
        spec = registry.find(step.kind, step.component, where)
        info = spec.load()
    except ConfigError as exc:
        errors.extend(exc.details)
        return
    step.info = info
    options = {**spec.preset, **step.options}
    try:
        step.config = info.config.model_validate(options)
    except ValidationError as exc:
        found = _pydantic_details(exc, info.config, positions, step.path)
        errors.extend(d for d in found if unfilled is None or d.where not in unfilled.wheres)


def _is_union_tag(part: str | int) -> bool:
    return isinstance(part, str) and ("[" in part or "(" in part)


# Errors saying the value has the wrong shape for a union member (a mapping where a type name
# is expected, a number where a mapping is expected): noise when another member accepted it.
_SHAPE_ERRORS = frozenset(
    {
        "model_type",
        "model_attributes_type",
        "dict_type",
        "list_type",
        "string_type",
        "int_type",
        "int_parsing",
        "float_type",
        "float_parsing",
        "bool_type",
        "bool_parsing",
        "is_instance_of",
    }
)


@dataclass(frozen=True)
class _LocatedError:
    """A pydantic error with union member tags taken out of its location."""

    loc: Path_
    err: Any
    in_union: bool  # raised by one member of a union, at the union's own location
    shape: bool  # the value's shape does not fit that member at all

    @property
    def rank(self) -> int:
        """Lower is more telling: a real problem first, a list of allowed values next."""
        if not self.shape:
            return 0 if self.err["type"] != "literal_error" else 1
        return 2


def _member_types(tp: Any) -> list[Any]:
    return [a for a in get_args(tp) if a is not type(None)]


def _strip_annotated(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _union_member(members: list[Any], tag: str) -> Any:
    """The member of a union that pydantic names ``tag`` in an error location."""
    prefixes: dict[Any, str] = {list: "list[", dict: "dict[", Literal: "literal["}
    for member in members:
        if isinstance(member, type) and issubclass(member, BaseModel):
            name = member.__name__
            if tag == name or tag.endswith((f", {name}]", f" {name}]")):
                return member
            continue
        prefix = prefixes.get(get_origin(member))
        if prefix is not None and tag.startswith(prefix):
            return member
    return None


def _walk_loc(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Path_, Any, bool]:
    """Follow a pydantic error location through ``model``'s types.

    Returns the field path without union member tags, the type reached (None when unknown)
    and whether the last part of ``loc`` was a union member tag.
    """
    clean: list[str | int] = []
    current: Any = model
    ended_on_tag = False
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        tp = _strip_annotated(current)
        if get_origin(tp) in (Union, types.UnionType):
            members = _member_types(tp)
            if len(members) == 1:
                current = members[0]
                continue
            if isinstance(part, str):  # pydantic names the member it tried
                current = _union_member(members, part)
                ended_on_tag = True
                i += 1
                continue
        ended_on_tag = False
        if current is None:
            if isinstance(part, str | int) and not _is_union_tag(part):
                clean.append(part)
            i += 1
            continue
        if isinstance(part, str | int):
            clean.append(part)
        current = _unwrap(tp, part)
        i += 1
    return tuple(clean), current, ended_on_tag


def _pydantic_details(
    exc: ValidationError, model: type[BaseModel], positions: Positions, prefix: Path_
) -> list[ErrorDetail]:
    # A value matching no member of a union yields one error per member. When a member took
    # the value's shape (a mapping into a rule model), only its errors are kept: they point at
    # the key that is wrong. Otherwise the most telling error per field is kept.
    located: list[_LocatedError] = []
    for err in exc.errors():
        loc, _, in_union = _walk_loc(model, tuple(err["loc"]))
        shape = err["type"] in _SHAPE_ERRORS or (
            err["type"] == "literal_error" and isinstance(err.get("input"), dict | list)
        )
        located.append(_LocatedError(loc, err, in_union, shape))
    deeper = {e.loc[:n] for e in located for n in range(len(e.loc))}
    chosen: dict[Path_, _LocatedError] = {}
    expected: dict[Path_, list[str]] = {}  # what each union member wanted, if none fits
    for e in located:
        if e.in_union and e.loc in deeper:
            continue  # another member of the union accepted the value and found what is wrong
        if e.in_union and e.shape:
            expected.setdefault(e.loc, []).append(
                str(e.err["msg"]).removeprefix("Input should be ")
            )
        current = chosen.get(e.loc)
        if current is None or e.rank < current.rank:
            chosen[e.loc] = e
    details: list[ErrorDetail] = []
    for loc, located_err in chosen.items():
        err = located_err.err
        full = (*prefix, *loc)
        kind = err["type"]
        if kind == "extra_forbidden":
            known = _fields_at(model, tuple(err["loc"])[:-1])
            hint = did_you_mean(str(loc[-1]), known) if loc else ""
            message = f"unknown key '{loc[-1]}'" + (f"; {hint}" if hint else "")
            fix = f"allowed keys: {', '.join(sorted(known))}" if known else "remove the key"
        elif kind == "missing":
            message = f"'{loc[-1]}' is required" if loc else "a value is required"
            fix = "add it"
        else:
            value = err.get("input")
            text = str(err["msg"]).removeprefix("Value error, ")
            wanted = expected.get(loc, [])
            if located_err.shape and len(wanted) > 1:
                text = f"Input should be {' or '.join(dict.fromkeys(wanted))}"
            # a validator's words may show the value already (`got ';;'`): once is enough
            shown = isinstance(value, dict | list) or f"got {value!r}" in text
            message = text if shown else f"{text} (got {value!r})"
            fix = _fix_for(err)
        details.append(ErrorDetail(message, positions.where(full), fix))
    return details


def _fix_for(err: Any) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"use one of {ctx['expected']}"
    if err["type"].startswith(("int_", "float_", "decimal_")):
        return "write a number"
    if err["type"].startswith("bool"):
        return "write true or false"
    if err["type"] in ("dict_type", "model_type"):
        return "write a mapping of `key: value` lines"
    if err["type"] == "list_type":
        return "write a list (`- item` lines)"
    if err["type"] == "value_error":
        return "see `quiver plugins describe` for the options"
    return "correct the value"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Known keys of the (nested) model reached by the pydantic location ``loc``."""
    _, current, _ = _walk_loc(model, loc)
    current = _strip_annotated(current)
    if get_origin(current) in (Union, types.UnionType):
        models = [m for m in _member_types(current) if isinstance(m, type)]
        current = next((m for m in models if issubclass(m, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _unwrap(tp: Any, part: str | int) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            if part in (name, f.alias):
                return f.annotation
        return None
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            found = _unwrap(arg, part)
            if found is not None:
                return found
        return None
    if origin in (list, dict):
        args = get_args(tp)
        return args[-1] if args else None
    return None
