"""File formats chosen by name for steps that hold their data elsewhere (the ``s3`` source
and sink): ``format: csv`` or ``format: {csv: {delimiter: ';'}}`` builds the file source or
sink of that name on a local file."""

from __future__ import annotations

from typing import Any

from quiver.pipeline.component import ComponentKind
from quiver.runtime.errors import ConfigError

__all__ = ["FormatOption", "build_format"]

#: A format name, or one name mapped to that file component's options (all but ``path``).
FormatOption = str | dict[str, dict[str, Any]]


def build_format(kind: ComponentKind, fmt: FormatOption, local_path: str, where: str) -> Any:
    """An instance of the file ``kind`` named by ``fmt`` reading or writing ``local_path``."""
    from quiver.pipeline.registry import default_registry

    options: dict[str, Any] = {}
    if isinstance(fmt, str):
        name = fmt
    else:
        if len(fmt) != 1:
            raise ConfigError.one(
                f"`format` names {len(fmt)} formats", f"{where}.format", "name exactly one"
            )
        name, options = next(iter(fmt.items()))
        options = dict(options or {})
    if "path" in options:
        raise ConfigError.one(
            "`path` is set by the s3 step", f"{where}.format.{name}.path", "remove it"
        )
    spec = default_registry().find(kind, name, f"{where}.format")
    info = spec.load()
    if "path" not in info.config.model_fields:
        files = [n for n in default_registry().names(kind) if _is_file_format(kind, n)]
        raise ConfigError.one(
            f"{kind} '{name}' does not read or write files",
            f"{where}.format",
            f"use a file format: {', '.join(files)}",
        )
    try:
        cfg = info.config.model_validate({**spec.preset, **options, "path": local_path})
    except Exception as exc:
        raise ConfigError.one(
            f"bad options for format {name!r}: {exc}", f"{where}.format.{name}", "see its docs"
        ) from exc
    return info.cls(cfg)


def _is_file_format(kind: ComponentKind, name: str) -> bool:
    from quiver.pipeline.registry import default_registry

    try:
        return "path" in default_registry().get(kind, name).config.model_fields
    except ConfigError:  # a plugin that does not import
        return False
