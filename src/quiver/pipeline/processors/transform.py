"""The ``transform`` processor: set, rename and delete columns and map keys by field path.

```yaml
- transform:
    set:                                   # a literal, or a template naming other paths
      resource.deployment.environment: prod
      attributes["route"]: "{attributes.http.method} {span_name}"
      retries: 0
    rename:
      attributes.http.method: attributes.http.request.method
      span_name: name
    delete: [attributes["user.email"], body]
```
Paths are columns or keys of map columns (``attributes["k"]``, ``resource.k``, ``scope.k``;
see ``field_paths``). ``set`` runs first, then ``rename``, then ``delete``, each in the order
written. A template's ``{path}`` is replaced by that path's value (empty where it is null);
``{{`` and ``}}`` are literal braces. Setting a map key with a null value leaves the row's
old value; renaming a map key moves it only in the rows that have it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from quiver.pipeline.component import (
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RunContext,
    processor,
)
from quiver.pipeline.processors.field_paths import (
    FieldPath,
    PathText,
    delete_path,
    parse_path,
    read_path,
    write_path,
)

__all__ = ["Template", "TransformConfig", "TransformProcessor", "parse_template"]

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")

#: A template: literal text pieces and the field paths between them.
Template = list[str | FieldPath]


def parse_template(text: str) -> Template:
    """``text`` split into literal pieces and ``{path}`` placeholders."""
    parts: Template = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append(text[pos : m.start()])
        if m.group(0) in ("{{", "}}"):
            parts.append(m.group(0)[0])
        else:
            parts.append(parse_path(m.group(1)))
        pos = m.end()
    rest = text[pos:]
    if "{" in rest or "}" in rest:
        raise ValueError(f"unbalanced brace in template {text!r}; write {{{{ or }}}} for a brace")
    parts.append(rest)
    return [p for p in parts if p != ""]


def render_template(batch: pa.RecordBatch, template: Template) -> pa.Array:
    """The template filled in for every row (a null path value becomes empty text)."""
    pieces: list[Any] = [
        read_path(batch, p).cast(pa.string()) if isinstance(p, FieldPath) else p for p in template
    ]
    if not pieces:
        return constant("", batch.num_rows)
    if len(pieces) == 1 and isinstance(pieces[0], str):
        return constant(pieces[0], batch.num_rows)
    return pc.binary_join_element_wise(*pieces, "", null_handling="replace", null_replacement="")


def constant(value: Any, rows: int) -> pa.Array:
    """``value`` repeated ``rows`` times."""
    scalar = pa.scalar(value)
    return pc.fill_null(pa.nulls(rows, scalar.type), scalar)


class TransformConfig(ComponentConfig):
    """Set, rename and delete columns and map keys."""

    set: dict[PathText, Any] = Field(
        default_factory=dict,
        description="Field path -> literal value, or a text template with {path} placeholders.",
    )
    rename: dict[PathText, PathText] = Field(
        default_factory=dict, description="Field path -> new field path."
    )
    delete: list[PathText] = Field(default_factory=list, description="Field paths to remove.")

    @field_validator("set")
    @classmethod
    def _set_paths(cls, value: dict[str, Any]) -> dict[str, Any]:
        for v in value.values():
            if isinstance(v, str):
                parse_template(v)
        return value


@processor("transform", config=TransformConfig)
class TransformProcessor(Concurrent, ColumnBound):
    """Set, rename and delete columns and map keys."""

    def __init__(self, cfg: TransformConfig) -> None:
        self.cfg = cfg
        self._set: list[tuple[FieldPath, Template | Any]] = [
            (parse_path(k), parse_template(v) if isinstance(v, str) else v)
            for k, v in cfg.set.items()
        ]
        self._rename = [(parse_path(k), parse_path(v)) for k, v in cfg.rename.items()]
        self._delete = [parse_path(p) for p in cfg.delete]

    def columns_used(self) -> list[ColumnUse]:
        """The columns ``rename`` reads, but those ``set`` made (``delete`` takes a missing
        column for one already gone)."""
        made = {path.column for path, _ in self._set}
        used: list[ColumnUse] = []
        for (old, new), text in zip(self._rename, self.cfg.rename, strict=True):
            if old.column not in made:
                used.append(ColumnUse(old.column, ("rename", text)))
            made.add(new.column)
        return used

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        for path, value in self._set:
            if isinstance(value, list):
                values = render_template(batch, value)
            else:
                text = value if path.key is None else json.dumps(value)
                values = constant(text, batch.num_rows)
            batch = write_path(batch, path, values)
        for old, new in self._rename:
            if old.key is None and new.key is None:
                read_path(batch, old)  # names the missing column
                names = [new.column if n == old.column else n for n in batch.schema.names]
                batch = batch.rename_columns(names)
                continue
            values = read_path(batch, old)
            batch = write_path(delete_path(batch, old), new, values)
        for path in self._delete:
            batch = delete_path(batch, path)
        return ProcessorOutput(batch)
