"""The ``validate`` processor: check each row against a schema; bad rows become row errors.

```yaml
- validate:
    schema:
      id: int
      email: {type: str, required: true, pattern: ".+@.+"}
      total: {type: decimal, min: 0, scale: 2}
      country: {type: str, enum: [DE, FR, US]}
```

Each failing row is rejected once, pointing at its line, the first failing column, that
column's value and every reason. Valid rows go on with the checked columns converted to their
declared types (set ``convert: false`` to keep the original values).
"""

from __future__ import annotations

import asyncio

import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import (
    Checking,
    Closing,
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RunContext,
    processor,
)
from quiver.pipeline.processors.field_rules import FieldRule, RuleSet, TypeName, check_rules
from quiver.runtime.errors import ErrorDetail

__all__ = ["ValidateConfig", "ValidateProcessor"]


class ValidateConfig(ComponentConfig):
    """Check rows against a schema of field rules."""

    schema_: dict[str, TypeName | FieldRule] = Field(
        alias="schema",
        description="Column name -> type name (`int`, `long`, `float`, `decimal`, `str`, `bool`, "
        "`date`, `datetime`, `time`) or a rule with `type`, `required`, `pattern`, `min`, `max`, "
        "`min_length`, `max_length`, `enum`, `format`.",
    )
    convert: bool = Field(
        default=True, description="Pass checked columns on converted to their declared types."
    )

    def rules(self) -> dict[str, FieldRule]:
        return {
            name: rule if isinstance(rule, FieldRule) else FieldRule(type=rule)
            for name, rule in self.schema_.items()
        }


@processor("validate", config=ValidateConfig)
class ValidateProcessor(Concurrent, Checking, ColumnBound, Closing):
    """Check each row against a schema; rows that fail are rejected with line, column and reason."""

    def __init__(self, cfg: ValidateConfig) -> None:
        self.cfg = cfg
        self._rules = RuleSet(cfg.rules(), "validate")

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        del ctx
        return check_rules(self._rules.rules)

    def columns_used(self) -> list[ColumnUse]:
        return [ColumnUse(name, ("schema", name)) for name in self._rules.rules]

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        valid, errors = await asyncio.to_thread(self._rules.apply, batch, convert=self.cfg.convert)
        return ProcessorOutput(valid, errors=errors)

    def close(self) -> None:
        self._rules.sql.close()
