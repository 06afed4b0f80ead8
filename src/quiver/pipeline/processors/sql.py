"""The ``sql`` processor: a DuckDB SELECT over each batch, visible as the table ``input``.

```yaml
- sql: {query: "select *, total * 1.2 as gross from input where country <> 'XX'"}
- sql: {file: transform.sql}
- sql:
    query: >
      select i.*, c.name as country_name
      from input i left join countries c on i.country = c.code
    tables: {countries: countries.csv}
```
The query runs once per batch, so it sees one batch at a time: row-wise work (projections,
filters, CASE, string and date functions, joins with the extra ``tables``) is exact; aggregates
apply per batch. ``quiver validate`` parses the query without running it. Keep the line numbers
in the output (``select *`` does, ``select * exclude (...)`` too) so that later row errors can
point at input lines.
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field, model_validator

from quiver.pipeline.component import (
    Checking,
    Closing,
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RunContext,
    is_internal,
    processor,
)
from quiver.pipeline.config import resolve_path
from quiver.pipeline.processors.batch_sql import (
    BatchSql,
    parse_select,
    read_table_file,
    table_to_batch,
)
from quiver.pipeline.script_text import checked_text, read_text_file
from quiver.runtime.errors import ConfigError, ErrorDetail

__all__ = ["SqlConfig", "SqlProcessor"]


class SqlConfig(ComponentConfig):
    """A DuckDB query over each batch."""

    query: str | None = Field(default=None, description="SELECT statement reading `input`.")
    file: str | None = Field(
        default=None, description="File holding the query, relative to the pipeline file."
    )
    tables: dict[str, str] = Field(
        default_factory=dict,
        description="Extra tables the query may read: name -> CSV or Parquet file (loaded "
        "once, into memory), e.g. `{countries: countries.csv}`.",
    )

    @model_validator(mode="after")
    def _one(self) -> SqlConfig:
        if (self.query is None) == (self.file is None):
            raise ValueError("set exactly one of `query` or `file`")
        return self


@processor("sql", config=SqlConfig)
class SqlProcessor(Concurrent, Checking, Closing, ColumnBound):
    """Run a DuckDB SELECT over each batch (table `input`)."""

    def __init__(self, cfg: SqlConfig) -> None:
        self.cfg = cfg
        self._sql = BatchSql("sql")
        self._query: str | None = (
            None if cfg.query is None else checked_text(cfg.query, "query", "sql.query")
        )
        self._tables_loaded = False

    def _load(self, ctx: RunContext) -> str:
        if not self._tables_loaded:
            for name, file in self.cfg.tables.items():
                path = resolve_path(file, ctx.base_dir)
                self._sql.add_table(name, read_table_file(path, what=f"table '{name}'"))
            self._tables_loaded = True
        if self._query is None:
            assert self.cfg.file is not None
            path = resolve_path(self.cfg.file, ctx.base_dir)
            try:
                self._query = read_text_file(path, "query file")
            except OSError as exc:
                raise ConfigError.one(
                    f"cannot read the query file: {exc.strerror}", path, "check `file`"
                ) from exc
        return self._query

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        try:
            query = self._load(ctx)
        except ConfigError as exc:
            return exc.details
        where = "query" if self.cfg.query is not None else f"file {self.cfg.file}"
        return [ErrorDetail(d.message, where, d.fix) for d in parse_select(query)]

    def columns_used(self) -> list[ColumnUse]:
        return []  # its query names the columns; DuckDB binds them on the empty batch

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        query = self._load(ctx)
        if "\x1f" in query:  # only a query naming an internal column holds the character
            raise ConfigError.one(
                "the query names an internal column (a name starting with U+001F, such as "
                "the line numbers'), which sinks never write",
                "query" if self.cfg.query is not None else f"file {self.cfg.file}",
                "name the columns otherwise; `select *` keeps the internal columns as they are",
            )
        table = await self._sql.run_async(batch, query)
        names = table.column_names
        if len(set(names)) != len(names):
            # (found on the empty batch the checks before a run give each step)
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError.one(
                f"the query gives {len(names)} columns but names {', '.join(map(repr, twice))} "
                "more than once; a sink would write a file whose columns cannot be told apart "
                "(its own source refuses such a header)",
                "query" if self.cfg.query is not None else f"file {self.cfg.file}",
                "give every column a name of its own: `select a, b.a as b_a ...`",
            )
        for field in table.schema:
            if not is_internal(field.name):
                continue
            at = batch.schema.get_field_index(field.name)
            if at < 0 or batch.schema.field(at).type != field.type:
                # a column named as an internal one (line numbers): sinks would drop it
                raise ConfigError.one(
                    f"the query gives a column named {field.name!r}, the name of an internal "
                    "column (line numbers), which sinks never write",
                    "query" if self.cfg.query is not None else f"file {self.cfg.file}",
                    "name the column otherwise (names starting with U+001F are internal)",
                )
        return ProcessorOutput(table_to_batch(table))

    def close(self) -> None:
        self._sql.close()
