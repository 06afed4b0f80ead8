"""The ``lookup`` processor: join a small CSV or Parquet table on key columns.

```yaml
- lookup:
    file: countries.csv            # or .parquet; relative to the pipeline file
    on: {country: code}            # input column -> lookup column (or a list of shared names)
    columns: [name, region]        # lookup columns to add (default: all but the keys)
    prefix: country_               # added columns become country_name, country_region
    how: left                      # left: keep unmatched rows (nulls); inner: drop them
    reject_unmatched: false        # true: unmatched rows are rejected (error policy applies)
```

The lookup table is loaded once, fully into memory, at the first batch; its keys must be
unique. Row order is preserved. Keys of different types are compared as text.
"""

from __future__ import annotations

import os
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

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
    processor,
)
from quiver.pipeline.config import resolve_path
from quiver.pipeline.processors.batch_sql import (
    BatchSql,
    quote_ident,
    read_table_file,
    require_columns,
    table_to_batch,
)
from quiver.runtime.errors import ConfigError, ErrorDetail

__all__ = ["LookupConfig", "LookupProcessor"]

_SEQ = internal_column("seq")
_FOUND = internal_column("found")


class LookupConfig(ComponentConfig):
    """Join a lookup table."""

    file: str = Field(description="CSV or Parquet file, relative to the pipeline file.")
    on: list[str] | dict[str, str] = Field(
        description="Key columns: names shared by both sides, or input column -> lookup column."
    )
    columns: list[str] | None = Field(
        default=None, description="Lookup columns to add (default: every non-key column)."
    )
    prefix: str = Field(default="", description="Prefix of the added column names.")
    how: Literal["left", "inner"] = Field(
        default="left", description="`left` keeps unmatched rows, `inner` drops them."
    )
    reject_unmatched: bool = Field(
        default=False, description="Reject unmatched rows instead (line and key in the reason)."
    )
    format: Literal["auto", "csv", "parquet"] = Field(
        default="auto", description="File format; `auto` goes by the extension."
    )
    delimiter: str = Field(default=",", description="CSV delimiter.")


@processor("lookup", config=LookupConfig)
class LookupProcessor(Concurrent, Checking, ColumnBound, Closing):
    """Join a small CSV or Parquet table on key columns."""

    def __init__(self, cfg: LookupConfig) -> None:
        self.cfg = cfg
        self.pairs = [(k, k) for k in cfg.on] if isinstance(cfg.on, list) else list(cfg.on.items())
        self._sql = BatchSql("lookup")
        self._table: pa.Table | None = None
        self._queries: dict[pa.Schema, str] = {}

    def _path(self, ctx: RunContext) -> str:
        return resolve_path(self.cfg.file, ctx.base_dir)

    def load(self, ctx: RunContext) -> pa.Table:
        if self._table is not None:
            return self._table
        path = self._path(ctx)
        table = read_table_file(path, self.cfg.format, self.cfg.delimiter, "lookup table")
        right_keys = [r for _, r in self.pairs]
        missing = [k for k in right_keys if k not in table.schema.names]
        wanted = self.cfg.columns or [n for n in table.schema.names if n not in right_keys]
        missing += [c for c in wanted if c not in table.schema.names]
        if missing:
            raise ConfigError.one(
                f"lookup table lacks column(s) {', '.join(missing)}",
                path,
                f"its columns are: {', '.join(table.schema.names)}",
            )
        counts = table.group_by(right_keys).aggregate([([], "count_all")])
        dupes = counts.filter(pc.greater(counts.column("count_all"), 1))
        if dupes.num_rows:
            example = dupes.slice(0, 1).to_pylist()[0]
            example.pop("count_all", None)
            raise ConfigError.one(
                f"lookup keys are not unique: {dupes.num_rows} key(s) repeat, e.g. {example}",
                path,
                "remove the duplicate rows from the lookup table or join on more columns",
            )
        self._table = table.select([*right_keys, *[c for c in wanted if c not in right_keys]])
        self._wanted = wanted
        self._sql.add_table("lookup", self._table)
        return self._table

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        try:
            self.load(ctx)
        except ConfigError as exc:
            return exc.details
        return []

    def columns_used(self) -> list[ColumnUse]:
        if isinstance(self.cfg.on, list):
            return [ColumnUse(key, ("on", i)) for i, key in enumerate(self.cfg.on)]
        return [ColumnUse(key, ("on", key)) for key in self.cfg.on]

    def _query(self, batch: pa.RecordBatch, table: pa.Table) -> str:
        query = self._queries.get(batch.schema)
        if query is not None:
            return query
        require_columns(batch.schema, [left for left, _ in self.pairs])
        clashes = [
            self.cfg.prefix + c for c in self._wanted if self.cfg.prefix + c in batch.schema.names
        ]
        if clashes:
            raise ConfigError.one(
                f"added column(s) {', '.join(clashes)} already exist in the input",
                "",
                "set `prefix:` or choose other `columns:`",
            )
        conds = []
        for left, right in self.pairs:
            lt, rt = batch.schema.field(left).type, table.schema.field(right).type
            lq, rq = f"i.{quote_ident(left)}", f"l.{quote_ident(right)}"
            if lt != rt:
                lq, rq = f"CAST({lq} AS VARCHAR)", f"CAST({rq} AS VARCHAR)"
            conds.append(f"{lq} = {rq}")
        added = ", ".join(
            f"l.{quote_ident(c)} AS {quote_ident(self.cfg.prefix + c)}" for c in self._wanted
        )
        seq, found = quote_ident(_SEQ), quote_ident(_FOUND)
        query = (
            f"SELECT i.* EXCLUDE ({seq}), {added}, l.{found} IS NOT NULL AS {found} "
            f"FROM input AS i LEFT JOIN (SELECT *, true AS {found} FROM lookup) AS l "
            f"ON {' AND '.join(conds)} ORDER BY i.{seq}"
        )
        self._queries[batch.schema] = query
        return query

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        table = self.load(ctx)
        numbered = batch.append_column(_SEQ, pa.array(range(batch.num_rows), pa.int64()))
        query = self._query(numbered, table)
        result = table_to_batch(await self._sql.run_async(numbered, query))
        found = result.column(_FOUND)
        result = result.drop_columns([_FOUND])
        if self.cfg.how == "left" and not self.cfg.reject_unmatched:
            return ProcessorOutput(result)
        matched = result.filter(found)
        errors: list[RowError] = []
        if self.cfg.reject_unmatched:
            unmatched = batch.filter(pc.invert(found))
            keys = [left for left, _ in self.pairs]
            for row in unmatched.to_pylist():
                key = {k: row.get(k) for k in keys}
                errors.append(
                    RowError(
                        row.get(LINE_COLUMN),
                        f"no match in {os.path.basename(self.cfg.file)} for {key}",
                        keys[0],
                        row.get(keys[0]),
                        row,
                    )
                )
        return ProcessorOutput(matched, errors=errors)

    def close(self) -> None:
        self._sql.close()
