"""The ``cast`` processor: convert columns to other types; values that do not convert are rejected.

```yaml
- cast:
    columns: {qty: int, price: {type: decimal, scale: 2}, day: {type: date, format: "%d/%m/%Y"}}
```

Uses the same types as ``validate`` (without the checks). A value that cannot be converted
rejects its row (line, column, value, ``expected <type>``); empty values become null.
"""

from __future__ import annotations

import asyncio

import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import (
    Closing,
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RunContext,
    processor,
)
from quiver.pipeline.processors.field_rules import FieldRule, RuleSet, TypeName

__all__ = ["CastConfig", "CastProcessor"]


class CastRule(ComponentConfig):
    """A target type with its options."""

    type: TypeName = Field(description="Target type.")
    format: str | None = Field(
        default=None, description="strptime format for date/datetime/time text."
    )
    precision: int = Field(default=38, ge=1, le=38, description="Decimal digits in total.")
    scale: int = Field(default=9, ge=0, le=38, description="Decimal digits after the point.")


class CastConfig(ComponentConfig):
    """Convert columns to other types."""

    columns: dict[str, TypeName | CastRule] = Field(
        description="Column name -> type name or `{type, format, precision, scale}`."
    )


@processor("cast", config=CastConfig)
class CastProcessor(Concurrent, ColumnBound, Closing):
    """Convert columns to other types; rows whose values do not convert are rejected."""

    def __init__(self, cfg: CastConfig) -> None:
        rules = {
            name: FieldRule(type=r)
            if isinstance(r, str)
            else FieldRule(type=r.type, format=r.format, precision=r.precision, scale=r.scale)
            for name, r in cfg.columns.items()
        }
        self._rules = RuleSet(rules, "cast", checks=False)

    def columns_used(self) -> list[ColumnUse]:
        return [ColumnUse(name, ("columns", name)) for name in self._rules.rules]

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        valid, errors = await asyncio.to_thread(self._rules.apply, batch)
        return ProcessorOutput(valid, errors=errors)

    def close(self) -> None:
        self._rules.sql.close()
