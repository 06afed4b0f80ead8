"""The ``select`` processor: keep (and order) some columns, or drop some.

```yaml
- select: {columns: [id, email, total]}     # keep these, in this order
- select: {exclude: [internal_note]}        # keep everything else
```
The engine's line column is always kept, so later errors still point at input lines.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field, model_validator

from quiver.pipeline.component import (
    LINE_COLUMN,
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RunContext,
    is_internal,
    kept_text_of,
    processor,
)
from quiver.pipeline.processors.batch_sql import require_columns
from quiver.runtime.errors import ConfigError

__all__ = ["SelectConfig", "SelectProcessor"]


class SelectConfig(ComponentConfig):
    """Keep or drop columns."""

    columns: list[str] | None = Field(default=None, description="Columns to keep, in order.")
    exclude: list[str] | None = Field(default=None, description="Columns to drop.")

    @model_validator(mode="after")
    def _one(self) -> SelectConfig:
        if (self.columns is None) == (self.exclude is None):
            raise ValueError("set exactly one of `columns` or `exclude`")
        if self.columns is not None and not self.columns:
            raise ValueError("`columns` is empty: name at least one column to keep")
        listed = self.columns if self.columns is not None else self.exclude or []
        twice = sorted({n for n in listed if listed.count(n) > 1})
        if twice:
            raise ValueError(f"{', '.join(map(repr, twice))} listed more than once")
        return self


@processor("select", config=SelectConfig)
class SelectProcessor(Concurrent, ColumnBound):
    """Keep (and order) some columns, or drop some."""

    def __init__(self, cfg: SelectConfig) -> None:
        self.cfg = cfg

    def columns_used(self) -> list[ColumnUse]:
        option = "columns" if self.cfg.columns is not None else "exclude"
        names = self.cfg.columns if self.cfg.columns is not None else self.cfg.exclude or []
        return [ColumnUse(name, (option, i)) for i, name in enumerate(names)]

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        if self.cfg.columns is not None:
            require_columns(batch.schema, self.cfg.columns)
            keep = list(self.cfg.columns)
            # internal columns stay: the line numbers, and the kept text of kept columns
            keep += [
                n
                for n in batch.schema.names
                if n == LINE_COLUMN or kept_text_of(n) in self.cfg.columns
            ]
            return ProcessorOutput(batch.select(list(dict.fromkeys(keep))))
        assert self.cfg.exclude is not None
        require_columns(batch.schema, self.cfg.exclude)
        if all(n in self.cfg.exclude or is_internal(n) for n in batch.schema.names):
            # rows without a column: a CSV file holds them as empty lines, read as none
            raise ConfigError.one(
                f"`exclude` drops every column ({', '.join(self.cfg.exclude)}), so no column "
                "would be left to write",
                "exclude",
                "leave out the step, or keep at least one column",
            )
        dropped = [c for c in self.cfg.exclude if c != LINE_COLUMN]
        dropped += [n for n in batch.schema.names if kept_text_of(n) in self.cfg.exclude]
        return ProcessorOutput(batch.drop_columns(dropped))
