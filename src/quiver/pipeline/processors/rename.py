"""The ``rename`` processor: give columns new names.

```yaml
- rename: {columns: {cust_id: customer_id, amt: amount}}
```
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import (
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RunContext,
    kept_text_column,
    kept_text_of,
    processor,
)
from quiver.pipeline.processors.batch_sql import require_columns
from quiver.runtime.errors import PermanentError

__all__ = ["RenameConfig", "RenameProcessor"]


class RenameConfig(ComponentConfig):
    """Rename columns."""

    columns: dict[str, str] = Field(description="Old name -> new name.")


@processor("rename", config=RenameConfig)
class RenameProcessor(Concurrent, ColumnBound):
    """Give columns new names."""

    def __init__(self, cfg: RenameConfig) -> None:
        self.cfg = cfg

    def columns_used(self) -> list[ColumnUse]:
        return [ColumnUse(name, ("columns", name)) for name in self.cfg.columns]

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        require_columns(batch.schema, list(self.cfg.columns))
        names = [self._renamed(n) for n in batch.schema.names]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise PermanentError.one(
                f"renaming would create duplicate column(s): {', '.join(dupes)}",
                "",
                "pick new names that are not already used, or drop the old column first",
            )
        return ProcessorOutput(batch.rename_columns(names))

    def _renamed(self, name: str) -> str:
        """The new name of column ``name``; the kept text of a column follows the column."""
        of = kept_text_of(name)
        if of is not None:
            return kept_text_column(self.cfg.columns.get(of, of))
        return self.cfg.columns.get(name, name)
