"""The ``filter`` processor: keep the rows for which a DuckDB SQL expression is true.

```yaml
- filter: {expression: "total > 100 and country <> 'XX'"}
- filter: {expression: "email like '%@%'", otherwise: invalid}   # others go to route `invalid`
```
The expression is any DuckDB expression over the batch's columns (a SQL ``WHERE`` clause).
It may name keys of map columns by field path (see ``field_paths``), e.g. on telemetry rows
``attributes["http.method"] = 'GET' and resource.service.name = 'checkout'``.
Rows where it is false or NULL are dropped, or sent to the route named by ``otherwise``
(connect it as ``step.invalid``), or rejected with ``reject: true``.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from quiver.pipeline.component import (
    LINE_COLUMN,
    Checking,
    Closing,
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RowError,
    RunContext,
    internal_column,
    is_internal,
    processor,
)
from quiver.pipeline.processors.batch_sql import (
    BatchSql,
    expression_columns,
    failed_rows,
    failure_probe,
    parse_select,
    quote_ident,
)
from quiver.pipeline.processors.field_paths import rewrite_paths, with_paths
from quiver.runtime.errors import ErrorDetail

__all__ = ["FilterConfig", "FilterProcessor"]

_KEEP = internal_column("keep")
_PATH_PREFIX = internal_column("path")


class FilterConfig(ComponentConfig):
    """Keep rows matching a condition."""

    expression: str = Field(description="DuckDB SQL boolean expression, as in a WHERE clause.")
    otherwise: str | None = Field(
        default=None, description="Route name receiving the rows that do not match."
    )
    reject: bool = Field(
        default=False, description="Reject the rows that do not match (error policy applies)."
    )
    reason: str = Field(
        default="", description="Reason written for rejected rows (default: the expression)."
    )

    @model_validator(mode="after")
    def _one(self) -> FilterConfig:
        if self.otherwise and self.reject:
            raise ValueError("use either `otherwise` or `reject`, not both")
        return self


@processor("filter", config=FilterConfig)
class FilterProcessor(Concurrent, Checking, ColumnBound, Closing):
    """Keep the rows for which a SQL expression is true."""

    def __init__(self, cfg: FilterConfig) -> None:
        self.cfg = cfg
        self._sql = BatchSql("filter")
        expression, self._paths = rewrite_paths(cfg.expression, _PATH_PREFIX)
        self._expression = expression
        # errors name a map key as the expression does, never by its helper column
        self._shown = {f"{_PATH_PREFIX}{i}": str(p) for i, p in enumerate(self._paths)}
        self._query = f"SELECT coalesce(({expression}), false) AS {quote_ident(_KEEP)} FROM input"
        self._probe = f"SELECT {failure_probe(expression)} FROM input"

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        del ctx
        return [
            ErrorDetail(d.message, "expression", "write a SQL boolean expression")
            for d in parse_select(self._query)
        ]

    def columns_used(self) -> list[ColumnUse]:
        """The columns the expression names, the map columns of its key paths among them."""
        names = [p.column for p in self._paths]
        names += [n for n in expression_columns(self._expression) if not is_internal(n)]
        return [ColumnUse(name, ("expression",)) for name in dict.fromkeys(names)]

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        rows = with_paths(batch, self._paths, _PATH_PREFIX)
        table, failed = await self._sql.run_rowwise_async(
            rows, self._query, shown=self._shown, probe=self._probe
        )
        failures = failed_rows(batch, failed)
        if failed:  # rows the expression could not take: rejected, the others filtered
            batch = batch.filter(pa.array(_all_but(batch.num_rows, [i for i, _ in failed])))
        keep = table.column(_KEEP).combine_chunks()
        kept = batch.filter(keep)
        if kept.num_rows == batch.num_rows:
            return ProcessorOutput(batch, errors=failures)
        dropped = batch.filter(pc.invert(keep))
        if self.cfg.otherwise:
            return ProcessorOutput(kept, routes={self.cfg.otherwise: [dropped]}, errors=failures)
        if self.cfg.reject:
            reason = self.cfg.reason or f"does not satisfy: {self.cfg.expression}"
            lines = (
                dropped.column(LINE_COLUMN).to_pylist()
                if LINE_COLUMN in dropped.schema.names
                else [None] * dropped.num_rows
            )
            errors = [
                RowError(line, reason, row=row)
                for line, row in zip(lines, dropped.to_pylist(), strict=True)
            ]
            return ProcessorOutput(kept, errors=failures + errors)
        return ProcessorOutput(kept, errors=failures)

    def close(self) -> None:
        self._sql.close()


def _all_but(count: int, left_out: list[int]) -> list[bool]:
    keep = [True] * count
    for i in left_out:
        keep[i] = False
    return keep
