"""Checks made before any data is processed: each component's own ``check(ctx)``, the input
files, and the column names of the SQL steps bound against the input's real columns.

Only components declaring :class:`~quiver.pipeline.component.Checking` are asked; those
declaring :class:`~quiver.pipeline.component.Closing` are closed again afterwards.

Every local input file must exist. The columns a file source gives are learnt from its first
batch. Each step declaring :class:`~quiver.pipeline.component.ColumnBound` it feeds is then
run once on an empty batch of those columns, so DuckDB binds every column name and type of
its SQL and the others check their names, as the run would; when that fails, every column
the step's options name (``columns_used``) that its input lacks is reported at the line that
names it, with a did-you-mean. The step's output columns (with any missing ones added, as
nulls or text) feed the next such step. Steps of other kinds (scripts) end that chain: what
they give is only known once they run.

``quiver validate`` reports them; ``quiver run`` makes them first and stops with exit code 2,
so a SQL typo or a missing Python function is found before a long run starts rather than at
its first batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import uuid
from typing import Any, cast

import pyarrow as pa

from quiver.config.yaml_source import format_path
from quiver.pipeline.arrow_build import empty_batch
from quiver.pipeline.component import (
    Checking,
    Closing,
    ColumnBound,
    ColumnUse,
    FileReading,
    Processor,
    RunContext,
    Source,
    Starting,
    capabilities_of,
    is_internal,
)
from quiver.pipeline.config import PipelineSpec, StepSpec
from quiver.pipeline.paths import STDIO, expand_paths
from quiver.pipeline.plan import DEFAULT_OUTPUT
from quiver.runtime.errors import ConfigError, ErrorDetail, QuiverError
from quiver.runtime.hints import did_you_mean

__all__ = ["check_pipeline"]


def _settle(value: Any) -> None:
    """Wait for what an asynchronous ``close`` returned."""
    if inspect.iscoroutine(value):
        asyncio.run(value)


def check_pipeline(spec: PipelineSpec) -> list[ErrorDetail]:
    """Every problem the components find in their own options and files, with positions."""
    ctx = RunContext(uuid.uuid4().hex[:12], spec.base_dir, dict(spec.variables))
    details: list[ErrorDetail] = []
    failed: set[str] = set()  # steps with problems of their own: not bound to columns
    for step in spec.steps.values():
        if step.info is None or step.config is None:
            continue
        if step.unfilled:  # a `${...}` is not set (reported): its options are not the run's
            failed.add(step.name)
            continue
        before = len(details)
        try:
            component = step.info.cls(step.config)
        except ConfigError as exc:
            details.extend(
                ErrorDetail(d.message, f"{step.where} {d.where}".strip(), d.fix)
                for d in exc.details
            )
            failed.add(step.name)
            continue
        except Exception as exc:
            details.append(
                ErrorDetail(f"{type(exc).__name__}: {exc}", step.where, "check the options")
            )
            failed.add(step.name)
            continue
        capabilities = capabilities_of(step.info.cls)
        found: list[ErrorDetail] = []
        if Checking in capabilities:
            try:
                found = list(cast(Checking, component).check(ctx) or [])
            except Exception as exc:
                found = [ErrorDetail(f"check failed: {type(exc).__name__}: {exc}", "", "")]
        details.extend(_placed(spec, step, d) for d in found)
        if Closing in capabilities:
            with contextlib.suppress(Exception):
                _settle(cast(Closing, component).close())
        if len(details) > before:
            failed.add(step.name)
    details.extend(_bind_columns(spec, ctx, failed))
    return details


def _placed(spec: PipelineSpec, step: StepSpec, detail: ErrorDetail) -> ErrorDetail:
    """A component's problem at its step; one naming an option of the component by its dotted
    path (``otlp.grpc.tls.cert_file``) at that option's line."""
    where = f"{step.where} {step.name}"
    if detail.where:
        where += f" ({detail.where})"
        head, _, option = detail.where.partition(".")
        if option and head == step.component and spec.positions is not None:
            mark = spec.positions.nearest_key((*step.path, *option.split(".")))
            if mark is not None:
                where = f"{mark.render()} {step.name} ({detail.where})"
    return ErrorDetail(detail.message, where, detail.fix)


def _bind_columns(spec: PipelineSpec, ctx: RunContext, failed: set[str]) -> list[ErrorDetail]:
    """Missing input files, and column names the steps use that their input lacks."""
    details: list[ErrorDetail] = []
    schemas: dict[tuple[str, str], pa.Schema] = {}  # (step, output) -> the columns it gives
    invented: set[str] = set()  # columns added for names found missing: never suggested
    for name in spec.order():
        step = spec.steps[name]
        if step.info is None or step.config is None or name in failed:
            continue
        if step.kind == "source":
            bound = any(_column_bound(spec.steps[c.target]) for c in spec.outgoing(name))
            schema = _source_columns(spec, step, ctx, details, read=bound)
            if schema is not None:
                schemas[(name, DEFAULT_OUTPUT)] = schema
            continue
        if step.kind != "processor" or not _column_bound(step):
            continue
        feeding = [schemas.get((c.source_step, c.output)) for c in spec.incoming(name)]
        first = feeding[0] if feeding else None
        if first is None or any(f is None or not f.equals(first) for f in feeding):
            continue
        outputs = _bind_step(spec, step, first, ctx, details, invented)
        for output, schema in outputs.items():
            schemas[(name, output)] = schema
    return details


def _column_bound(step: StepSpec) -> bool:
    return step.info is not None and ColumnBound in capabilities_of(step.info.cls)


def _bind_step(
    spec: PipelineSpec,
    step: StepSpec,
    schema: pa.Schema,
    ctx: RunContext,
    details: list[ErrorDetail],
    invented: set[str],
) -> dict[str, pa.Schema]:
    """Check the columns ``step`` names against ``schema``, run it on an empty batch of them,
    and return the columns of each of its outputs (none when they are not known)."""
    assert step.info is not None
    where = f"{step.where} {step.name}"
    try:
        return _run_on_empty(step, schema, ctx)
    except QuiverError as exc:
        problems = exc.details
    except Exception as exc:  # a component's own failure: the run would meet it too
        problems = [ErrorDetail(f"{type(exc).__name__}: {exc}", "", "")]
    # the step does not bind: name each column it uses that its input lacks, if any
    try:
        used = cast(ColumnBound, step.info.cls(step.config)).columns_used()
    except Exception:
        used = []
    names = [n for n in schema.names if not is_internal(n) and n not in invented]
    unknown = [u for u in used if u.column not in schema.names]
    if not unknown:
        details.extend(
            ErrorDetail(d.message, where, d.fix or "check the column names") for d in problems
        )
        return {}
    for use in unknown:
        hint = did_you_mean(use.column, names)
        details.append(
            ErrorDetail(
                f"step '{step.name}' uses column {use.column!r}, which its input lacks"
                + (f"; {hint}" if hint else ""),
                _column_where(spec, step, use),
                f"the columns reaching '{step.name}' are: {', '.join(names) or 'none'}",
            )
        )
    # carry on with the missing columns added (as nulls, else as text), so later steps are
    # checked too
    missing = list(dict.fromkeys(u.column for u in unknown))
    invented.update(missing)
    for kind in (pa.null(), pa.string()):
        padded = pa.schema([*schema, *(pa.field(c, kind) for c in missing)])
        try:
            return _run_on_empty(step, padded, ctx)
        except Exception:
            continue
    return {}


def _column_where(spec: PipelineSpec, step: StepSpec, use: ColumnUse) -> str:
    """Where the option naming ``use.column`` is written: at the name itself when the option
    is a text holding it (an expression), else at the option."""
    if spec.positions is None:
        return f"{step.where} {step.name}"
    option = (*step.path, *use.option)
    value: Any = step.options
    for part in use.option:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
            value = value[part]
        else:
            value = None
    if isinstance(value, str):
        found = re.search(rf"(?<![\w.]){re.escape(use.column)}(?!\w)", value)
        mark = spec.positions.inside(option, value, found.start()) if found else None
        if mark is not None:
            return f"{mark.render()} {format_path(option)}"
    return spec.positions.where(option)


def _source_columns(
    spec: PipelineSpec, step: StepSpec, ctx: RunContext, details: list[ErrorDetail], *, read: bool
) -> pa.Schema | None:
    """Whether a local file source's input exists, and the columns of its first batch when
    ``read`` (None when not read or not knowable here)."""
    assert step.info is not None
    if FileReading not in capabilities_of(step.info.cls):
        return None
    option = getattr(step.config, "path", None)
    listed = [option] if isinstance(option, str) else list(option or [])
    if not listed or any(not isinstance(p, str) or p == STDIO or "://" in p for p in listed):
        return None
    where = f"{spec.positions.where((*step.path, 'path')) if spec.positions else step.where}"
    try:
        expand_paths(listed, spec.base_dir, where=where)
    except QuiverError as exc:
        details.extend(exc.details)
        return None
    if not read:
        return None
    try:
        source = cast(Source, step.info.cls(step.config))
        closes = Closing in capabilities_of(step.info.cls)
        return asyncio.run(_first_schema(source, closes, ctx))
    except Exception:  # a bad file is reported by the run, with its line
        return None


async def _first_schema(source: Source, closes: bool, ctx: RunContext) -> pa.Schema | None:
    gen = source.batches(ctx)
    try:
        async for batch in gen:
            return batch.schema
        return None
    finally:
        with contextlib.suppress(Exception):
            await gen.aclose()  # type: ignore[attr-defined]
        if closes:
            with contextlib.suppress(Exception):
                res = cast(Closing, source).close()
                if inspect.isawaitable(res):
                    await res


def _run_on_empty(step: StepSpec, schema: pa.Schema, ctx: RunContext) -> dict[str, pa.Schema]:
    """The columns of each output of ``step`` run on an empty batch of ``schema``."""
    assert step.info is not None
    processor = cast(Processor, step.info.cls(step.config))
    capabilities = capabilities_of(step.info.cls)

    async def once() -> dict[str, pa.Schema]:
        if Starting in capabilities:
            await cast(Starting, processor).start(ctx)
        out = await processor.process(empty_batch(schema), ctx)
        found = {name: batches[0].schema for name, batches in out.routes.items() if batches}
        if out.batch is not None:
            found[DEFAULT_OUTPUT] = out.batch.schema
        return found

    try:
        return asyncio.run(once())
    finally:
        if Closing in capabilities:
            with contextlib.suppress(Exception):
                _settle(cast(Closing, processor).close())
