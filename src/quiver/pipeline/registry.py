"""Find pipeline components by kind and name: built-ins first, then entry-point plugins.

Built-ins are listed as import strings in :mod:`quiver.pipeline.builtins`; plugins are
declared by installed distributions in the entry-point groups ``quiver.sources``,
``quiver.processors`` and ``quiver.sinks`` (``name = "package.module:Class"``). A module is
imported only when a component in it is looked up, so a pipeline pays only for what it uses.
A step may also name a component by import string (``my_package.module:MyClass``), which
is handy for components that are not packaged yet.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from quiver.pipeline.builtins import BUILTINS
from quiver.pipeline.component import ComponentInfo, ComponentKind, component_info
from quiver.runtime.errors import ConfigError
from quiver.runtime.hints import did_you_mean

__all__ = [
    "ENTRY_POINT_GROUPS",
    "ComponentRegistry",
    "ComponentSpec",
    "default_registry",
]

ENTRY_POINT_GROUPS: dict[ComponentKind, str] = {
    "source": "quiver.sources",
    "processor": "quiver.processors",
    "sink": "quiver.sinks",
}

KINDS: tuple[ComponentKind, ...] = ("source", "processor", "sink")


@dataclass
class ComponentSpec:
    """Where a component lives, before it is imported."""

    kind: ComponentKind
    name: str
    target: str
    preset: dict[str, Any] = field(default_factory=dict)
    origin: str = "builtin"
    _info: ComponentInfo | None = field(default=None, repr=False)

    def load(self) -> ComponentInfo:
        """Import the component and return its manifest (raises ConfigError when it fails)."""
        if self._info is None:
            self._info = _import_component(self)
        return self._info


def _import_component(spec: ComponentSpec) -> ComponentInfo:
    module_name, _, attr = spec.target.partition(":")
    where = f"{spec.kind} '{spec.name}'"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        fix = (
            "this component is not available in this installation"
            if missing == module_name
            else f"install the missing package: pip install {missing.split('.')[0]}"
        )
        raise ConfigError.one(f"cannot import {spec.target}: {exc}", where, fix) from exc
    except Exception as exc:
        raise ConfigError.one(
            f"importing {module_name} failed: {type(exc).__name__}: {exc}",
            where,
            "fix the error in the component module",
        ) from exc
    cls = getattr(module, attr, None) if attr else None
    if cls is None:
        for _, candidate in inspect.getmembers(module, inspect.isclass):
            try:
                info = component_info(candidate)
            except TypeError:
                continue
            if info.kind == spec.kind and info.name in (spec.name, _base_name(spec)):
                cls = candidate
                break
    if cls is None:
        raise ConfigError.one(
            f"{spec.target} does not define the {spec.kind} '{spec.name}'",
            where,
            f"mark a class in {module_name} with @{spec.kind}({spec.name!r}, config=...)",
        )
    try:
        info = component_info(cls)
    except TypeError as exc:
        raise ConfigError.one(
            str(exc), where, f"decorate the class with @{spec.kind}(name, config=Model)"
        ) from exc
    if info.kind != spec.kind:
        raise ConfigError.one(
            f"{spec.target} is a {info.kind}, registered as a {spec.kind}",
            where,
            f"register it in the entry-point group {ENTRY_POINT_GROUPS[info.kind]}",
        )
    if spec.origin not in ("builtin", "import"):
        info = ComponentInfo(
            info.kind, spec.name, info.config, info.cls, version=spec.origin, summary=info.summary
        )
    return info


def _base_name(spec: ComponentSpec) -> str:
    """The name of the component an alias (``tsv`` -> ``csv``) points at."""
    module = spec.target.partition(":")[0].rsplit(".", 1)[-1]
    return module


class ComponentRegistry:
    """Components by kind and name. Built-ins win over plugins of the same name."""

    def __init__(self, *, plugins: bool = True) -> None:
        self._specs: dict[ComponentKind, dict[str, ComponentSpec]] = {k: {} for k in KINDS}
        for kind, name, target, preset in BUILTINS:
            self._specs[kind][name] = ComponentSpec(kind, name, target, dict(preset))
        # Installed plugins are looked up when first needed (a name that is not built in, or a
        # listing): scanning every installed distribution costs tens of milliseconds, and
        # built-ins win over plugins of the same name anyway.
        self._plugins_pending = plugins

    def _load_entry_points(self) -> None:
        if not self._plugins_pending:
            return
        self._plugins_pending = False
        # imported here: `importlib.metadata` costs 20 ms of CPU to import, for nothing when a
        # run names only built-in components
        from importlib import metadata

        installed = metadata.entry_points()
        for kind, group in ENTRY_POINT_GROUPS.items():
            for ep in installed.select(group=group):
                if ep.name in self._specs[kind]:
                    continue
                dist = ep.dist
                origin = f"{dist.name} {dist.version}" if dist is not None else "plugin"
                self._specs[kind][ep.name] = ComponentSpec(kind, ep.name, ep.value, origin=origin)

    def add(self, spec: ComponentSpec) -> None:
        """Register a component programmatically (tests, embedding applications)."""
        self._specs[spec.kind][spec.name] = spec

    def names(self, kind: ComponentKind) -> list[str]:
        self._load_entry_points()
        return sorted(self._specs[kind])

    def specs(self, kind: ComponentKind | None = None) -> list[ComponentSpec]:
        self._load_entry_points()
        kinds = KINDS if kind is None else (kind,)
        return [self._specs[k][n] for k in kinds for n in sorted(self._specs[k])]

    def find(self, kind: ComponentKind, name: str, where: str = "") -> ComponentSpec:
        """The spec of ``name`` or a ConfigError listing the known names."""
        spec = self._specs[kind].get(name)
        if spec is None:
            self._load_entry_points()
            spec = self._specs[kind].get(name)
        if spec is not None:
            return spec
        if ":" in name:
            # `package.module:Class` names a component by import string, without packaging
            return ComponentSpec(kind, name, name, origin="import")
        known = self.names(kind)
        other = [k for k in KINDS if k != kind and name in self._specs[k]]
        hint = did_you_mean(name, known)
        if other:
            message = f"'{name}' is a {' and a '.join(other)}, not a {kind}"
            roles = {
                "source": "a step with no incoming connection is a source",
                "processor": "a step with incoming and outgoing connections is a processor",
                "sink": "a step with no outgoing connection is a sink",
            }
            raise ConfigError.one(
                message,
                where,
                f"{roles[kind]}; use a {kind} here (known: {', '.join(known)}) or reconnect "
                "the step",
            )
        else:
            message = f"unknown {kind} '{name}'"
            if hint:
                message += f"; {hint}"
        raise ConfigError.one(
            message,
            where,
            f"known {kind}s: {', '.join(known)}; plugins add more through the "
            f"'{ENTRY_POINT_GROUPS[kind]}' entry-point group",
        )

    def get(self, kind: ComponentKind, name: str, where: str = "") -> ComponentInfo:
        """Look up and import ``name``."""
        return self.find(kind, name, where).load()

    def kinds_of(self, name: str) -> list[ComponentKind]:
        self._load_entry_points()
        return [k for k in KINDS if name in self._specs[k]]


@cache
def default_registry() -> ComponentRegistry:
    """The process-wide registry with built-ins and installed plugins."""
    return ComponentRegistry()
