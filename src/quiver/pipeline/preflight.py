"""Checks made before any data is read: each component's own ``check(ctx)``.

Only components declaring :class:`~quiver.pipeline.component.Checking` are asked; those
declaring :class:`~quiver.pipeline.component.Closing` are closed again afterwards.

``quiver validate`` reports them; ``quiver run`` makes them first and stops with exit code 2,
so a SQL typo or a missing Python function is found before a long run starts rather than at
its first batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from typing import Any, cast

from quiver.pipeline.component import Checking, Closing, RunContext, capabilities_of
from quiver.pipeline.config import PipelineSpec
from quiver.runtime.errors import ConfigError, ErrorDetail

__all__ = ["check_pipeline"]


def _settle(value: Any) -> None:
    """Wait for what an asynchronous ``close`` returned."""
    if inspect.iscoroutine(value):
        asyncio.run(value)


def check_pipeline(spec: PipelineSpec) -> list[ErrorDetail]:
    """Every problem the components find in their own options and files, with positions."""
    ctx = RunContext(uuid.uuid4().hex[:12], spec.base_dir, dict(spec.variables))
    details: list[ErrorDetail] = []
    for step in spec.steps.values():
        if step.info is None or step.config is None:
            continue
        try:
            component = step.info.cls(step.config)
        except ConfigError as exc:
            details.extend(
                ErrorDetail(d.message, f"{step.where} {d.where}".strip(), d.fix)
                for d in exc.details
            )
            continue
        except Exception as exc:
            details.append(
                ErrorDetail(f"{type(exc).__name__}: {exc}", step.where, "check the options")
            )
            continue
        capabilities = capabilities_of(step.info.cls)
        found: list[ErrorDetail] = []
        if Checking in capabilities:
            try:
                found = list(cast(Checking, component).check(ctx) or [])
            except Exception as exc:
                found = [ErrorDetail(f"check failed: {type(exc).__name__}: {exc}", "", "")]
        for d in found:
            where = f"{step.where} {step.name}"
            if d.where:
                where += f" ({d.where})"
            details.append(ErrorDetail(d.message, where, d.fix))
        if Closing in capabilities:
            with contextlib.suppress(Exception):
                _settle(cast(Closing, component).close())
    return details
