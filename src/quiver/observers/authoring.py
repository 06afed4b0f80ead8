"""``@quiver.observer``: a Python function run on committed changes.

::

    @quiver.observer(entity="Order", on=["update"], when="changed(status) && status == 'paid'")
    async def order_paid(event: dict[str, Any]) -> None:
        ...

The function receives the event document webhooks send, plus its ``idempotency_key``. The
decorator only marks the function; ``quiver observers run --app app.py`` finds the marked
functions of that file and checks them like the observers of ``quiver.yaml``.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from quiver.runtime.errors import ConfigError

__all__ = ["ObserverSpec", "declared_in", "import_app", "observer"]

_MARK = "__quiver_observer__"
F = TypeVar("F", bound=Callable[..., Any])
_OPERATIONS = ("insert", "update", "delete")


@dataclass(frozen=True)
class ObserverSpec:
    name: str
    entity: str
    on: tuple[str, ...]
    when: str | None
    fn: Callable[[Any], Awaitable[None]]
    location: str


def observer(
    *,
    entity: str,
    on: Sequence[str] = _OPERATIONS,
    when: str | None = None,
    name: str | None = None,
) -> Callable[[F], F]:
    """Mark an async function as an observer of ``entity``'s changes."""
    unknown = [op for op in on if op not in _OPERATIONS]

    def mark(fn: F) -> F:
        where = _where(fn)
        if not inspect.iscoroutinefunction(fn):
            raise ConfigError.one(
                f"@quiver.observer {fn.__name__} is not an async function",
                where,
                "declare it with async def",
            )
        if unknown or not on:
            raise ConfigError.one(
                f"@quiver.observer on={list(on)!r}: unknown operation",
                where,
                "use insert, update and/or delete",
            )
        spec = ObserverSpec(name or fn.__name__, entity, tuple(on), when, fn, where)
        setattr(fn, _MARK, spec)
        return fn

    return mark


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    if code is None:
        return getattr(fn, "__qualname__", "observer")
    return f"{code.co_filename}:{code.co_firstlineno}"


def import_app(path: str | Path, prefix: str) -> ModuleType:
    """Import the Python file at ``path`` (an ``--app`` file) as a module named after it."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError.one(f"{file} not found", str(file), "check the --app path")
    module_name = f"{prefix}_{abs(hash(file.resolve()))}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise ConfigError.one(f"{file} is not a Python file", str(file), "name a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ConfigError.one(f"syntax error: {exc.msg}", f"{file}:{exc.lineno or 1}") from None
    return module


def declared_in(path: str | Path) -> list[ObserverSpec]:
    """Import the Python file at ``path`` and return its ``@quiver.observer`` functions."""
    module = import_app(path, "quiver_observers_app")
    found = [getattr(v, _MARK) for v in vars(module).values() if hasattr(v, _MARK)]
    return [s for s in found if isinstance(s, ObserverSpec)]
