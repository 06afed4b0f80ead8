"""The ``derive`` processor: add or replace columns computed by DuckDB SQL expressions.

```yaml
- derive:
    columns:
      gross: "total * 1.2"
      email: "lower(trim(email))"          # replaces the existing column in place
      label: "concat(country, '-', id)"
      tier: "case when gross > 1000 then 'gold' else 'std' end"   # may use `gross` above
```
Expressions are evaluated in order, each seeing the columns derived before it.
"""

from __future__ import annotations

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
    internal_column,
    processor,
)
from quiver.pipeline.processors.batch_sql import (
    BatchSql,
    expression_columns,
    failed_rows,
    failure_probe,
    parse_select,
    quote_ident,
    table_to_batch,
)
from quiver.runtime.errors import ErrorDetail

__all__ = ["DeriveConfig", "DeriveProcessor"]

#: The columns of the probe query saying whether each expression fails on a row.
_PROBE_FLAG = internal_column("fails")


class DeriveConfig(ComponentConfig):
    """Computed columns."""

    columns: dict[str, str] = Field(
        description="New (or replaced) column name -> DuckDB SQL expression, evaluated in order."
    )


@processor("derive", config=DeriveConfig)
class DeriveProcessor(Concurrent, Checking, ColumnBound, Closing):
    """Add or replace columns computed by SQL expressions."""

    def __init__(self, cfg: DeriveConfig) -> None:
        self.cfg = cfg
        self._sql = BatchSql("derive")
        self._cache: dict[tuple[tuple[str, ...], bool], str] = {}

    def _query(self, names: list[str], probe: bool = False) -> str:
        """:meth:`_build`'s query for input columns ``names``, made once per columns."""
        key = (tuple(names), probe)
        query = self._cache.get(key)
        if query is None:
            query = self._cache[key] = self._build(names, probe)
        return query

    def _build(self, names: list[str], probe: bool = False) -> str:
        """The query deriving the columns, each expression seeing those before it; with
        ``probe``, the query saying of each row whether an expression fails on it (each
        derived value made with ``try``, null where it fails)."""
        present = list(names)
        ctes = ["s0 AS (SELECT * FROM input)"]
        flags = []
        for i, (column, expr) in enumerate(self.cfg.columns.items(), start=1):
            q = quote_ident(column)
            value = f"try({expr})" if probe else f"({expr})"
            flag = ""
            if probe:
                flags.append(quote_ident(f"{_PROBE_FLAG}{i}"))
                flag = f", {failure_probe(expr)} AS {flags[-1]}"
            if column in present:
                body = f"SELECT * REPLACE ({value} AS {q}){flag} FROM s{i - 1}"
            else:
                body = f"SELECT *, {value} AS {q}{flag} FROM s{i - 1}"
                present.append(column)
            ctes.append(f"s{i} AS ({body})")
        last = f"s{len(self.cfg.columns)}"
        if probe:
            return f"WITH {', '.join(ctes)} SELECT ({' OR '.join(flags)}) FROM {last}"
        return f"WITH {', '.join(ctes)} SELECT * FROM {last}"

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        del ctx
        details = []
        for column, expr in self.cfg.columns.items():
            for d in parse_select(f"SELECT ({expr}) AS x FROM input"):
                details.append(ErrorDetail(d.message, f"columns.{column}", "fix the expression"))
        return details

    def columns_used(self) -> list[ColumnUse]:
        """The columns each expression names, but those derived before it."""
        used: list[ColumnUse] = []
        derived: set[str] = set()
        for column, expr in self.cfg.columns.items():
            used += [
                ColumnUse(name, ("columns", column))
                for name in expression_columns(expr)
                if name not in derived
            ]
            derived.add(column)
        return used

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        query = self._query(batch.schema.names)
        probe = self._query(batch.schema.names, probe=True)
        table, failed = await self._sql.run_rowwise_async(batch, query, probe=probe)
        return ProcessorOutput(table_to_batch(table), errors=failed_rows(batch, failed))

    def close(self) -> None:
        self._sql.close()
