"""The observers of a configuration, checked against the entities they watch.

:func:`build_observers` validates every observer of ``quiver.yaml`` (and those declared in
Python with ``@quiver.observer``) together: unknown entities, conditions that do not parse or
read fields the entity lacks, unknown action types and action keys are all reported at once,
each with its location (``observers[0].when``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from quiver.config.settings import ObserverSettings
from quiver.observers.actions.builtins import ACTIONS
from quiver.observers.condition import (
    Condition,
    ConditionError,
    Kind,
    check_comparisons,
    check_fields,
    parse_condition,
    typed_condition,
)
from quiver.observers.event import Action, Job
from quiver.runtime.errors import ErrorDetail, QuiverError

__all__ = ["BoundAction", "Locate", "Observer", "ObserverConfigError", "build_observers"]


class ObserverConfigError(QuiverError):
    """Observers that cannot run as configured; every problem is listed."""


@dataclass
class BoundAction:
    name: str
    action: Action
    kind: str = "python"  # the action's type (webhook, log, ...): a label of its metrics


@dataclass
class Observer:
    name: str
    entity: str
    on: frozenset[str]
    condition: Condition
    actions: list[BoundAction] = field(default_factory=list)
    #: The entity's fields that may hold the JSON value null: absent from an event document
    #: when they hold SQL NULL (see :func:`quiver.sql.changelog.image_document`).
    json_fields: frozenset[str] = frozenset()


class _CallableAction:
    """A Python function as an action (``@quiver.observer``)."""

    def __init__(self, fn: Callable[[Mapping[str, Any]], Awaitable[None]]) -> None:
        self.fn = fn

    async def run(self, job: Job) -> None:
        await self.fn(job.document())

    async def close(self) -> None:
        return None


Locate = Callable[[tuple[str | int, ...]], str | None]


def build_observers(
    configured: Sequence[ObserverSettings],
    entity_fields: Mapping[str, Sequence[str]],
    declared: Sequence[Any] = (),
    locate: Locate | None = None,
    field_kinds: Mapping[str, Mapping[str, Kind]] | None = None,
) -> list[Observer]:
    """Observers ready to run, or ObserverConfigError listing every problem.

    ``entity_fields`` maps each entity's name to its field names; ``declared`` holds the
    specs of ``@quiver.observer`` functions; ``locate`` gives the ``file:line:column`` of a
    setting of ``quiver.yaml`` by its path, put before each problem's location;
    ``field_kinds`` says how each entity's fields compare in conditions (see
    :func:`typed_condition`).
    """
    kinds = field_kinds or {}
    errors: list[ErrorDetail] = []
    observers: list[Observer] = []
    seen: set[str] = set()
    for i, cfg in enumerate(configured):
        where = f"observers[{i}] ({cfg.name})"
        mark = locate(("observers", i)) if locate is not None else None
        first = len(errors)
        observer = _observer(
            cfg.name, cfg.entity, cfg.on, cfg.when, where, entity_fields, kinds, errors
        )
        if cfg.name in seen:
            errors.append(ErrorDetail(f"a second observer named {cfg.name!r}", where, "rename it"))
        seen.add(cfg.name)
        for j, raw in enumerate(cfg.actions):
            fields = entity_fields.get(cfg.entity)
            bound = _action(raw, f"{where}.actions[{j}]", j, fields, errors)
            if bound is not None:
                if any(b.name == bound.name for b in observer.actions):
                    errors.append(
                        ErrorDetail(
                            f"a second action named {bound.name!r}",
                            f"{where}.actions[{j}]",
                            "give each action of an observer its own name",
                        )
                    )
                observer.actions.append(bound)
        observers.append(observer)
        if mark:
            errors[first:] = [_placed(d, where, i, locate) for d in errors[first:]]
    for spec in declared:
        where = f"{spec.location} (@quiver.observer {spec.name})"
        observer = _observer(
            spec.name, spec.entity, spec.on, spec.when, where, entity_fields, kinds, errors
        )
        if spec.name in seen:
            errors.append(ErrorDetail(f"a second observer named {spec.name!r}", where, "rename it"))
        seen.add(spec.name)
        observer.actions.append(BoundAction("call", _CallableAction(spec.fn)))
        observers.append(observer)
    if errors:
        raise ObserverConfigError(errors, code="INVALID_OBSERVER")
    return observers


def _placed(detail: ErrorDetail, where: str, index: int, locate: Locate | None) -> ErrorDetail:
    """``detail`` with the ``file:line:column`` of the setting it is about in front."""
    if locate is None or not detail.where.startswith(where):
        return detail
    rest = detail.where[len(where) :]
    loc: list[str | int] = ["observers", index]
    for name, item in re.findall(r"\.([A-Za-z_]\w*)|\[(\d+)\]", rest):
        loc.append(name if name else int(item))
    mark = locate(tuple(loc)) or locate(("observers", index))
    return ErrorDetail(detail.message, f"{mark} {detail.where}", detail.fix) if mark else detail


def _observer(
    name: str,
    entity: str,
    on: Sequence[str],
    when: str | None,
    where: str,
    entity_fields: Mapping[str, Sequence[str]],
    kinds: Mapping[str, Mapping[str, Kind]],
    errors: list[ErrorDetail],
) -> Observer:
    condition = Condition(when or "", None)
    try:
        condition = parse_condition(when, f"{where}.when")
    except ConditionError as exc:
        errors.extend(exc.details)
    fields = entity_fields.get(entity)
    if fields is None:
        known = ", ".join(sorted(entity_fields)) or "none"
        errors.append(ErrorDetail(f"no entity {entity!r}", f"{where}.entity", f"entities: {known}"))
    else:
        errors.extend(check_fields(condition, fields, entity, f"{where}.when"))
        typed = kinds.get(entity, {})
        errors.extend(check_comparisons(condition, typed, entity, f"{where}.when"))
    typed = kinds.get(entity, {})
    condition = typed_condition(condition, typed)
    json_fields = frozenset(n for n, k in typed.items() if k == "json")
    return Observer(name, entity, frozenset(on), condition, json_fields=json_fields)


def _action(
    raw: Mapping[str, Any],
    where: str,
    index: int,
    fields: Sequence[str] | None,
    errors: list[ErrorDetail],
) -> BoundAction | None:
    kind = raw.get("type")
    entry = ACTIONS.get(kind) if isinstance(kind, str) else None
    if entry is None:
        errors.append(
            ErrorDetail(
                f"unknown action type {kind!r}",
                f"{where}.type",
                f"use one of: {', '.join(sorted(ACTIONS))}",
            )
        )
        return None
    model, build = entry
    try:
        cfg: BaseModel = model.model_validate(raw)
    except ValidationError as exc:
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"])
            fix = "remove it" if e["type"] == "extra_forbidden" else ""
            errors.append(ErrorDetail(e["msg"], f"{where}.{loc}", fix))
        return None
    name = getattr(cfg, "name", None) or f"{kind}{index}"
    return BoundAction(name, build(cfg, fields, where, errors), str(kind))
