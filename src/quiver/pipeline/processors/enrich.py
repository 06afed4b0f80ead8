"""The ``enrich`` processor: add static values, the host name, the service, the processing
time, and values looked up in a CSV or Parquet file, at columns or map keys.

```yaml
- enrich:
    static: {resource.deployment.environment: prod, team: core}
    host_name: resource.host.name      # this machine's host name goes here
    service: checkout                  # fills service_name and resource.service.name where unset
    timestamp: attributes.received_at  # when the batch was processed (map keys get ISO text)
    lookup:
      file: owners.csv                 # relative to the pipeline file
      key: resource.service.name       # field path whose value is looked up...
      on: service                      # ...in this column of the file (its values unique)
      fields: {owner: attributes.owner, tier: resource.tier}   # file column -> where it goes
```
Targets are field paths (see ``field_paths``). The lookup file is read once; rows whose key is
not in it get nothing from it. Keys are compared as text.
"""

from __future__ import annotations

import datetime as dt
import socket

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from quiver.pipeline.component import (
    Checking,
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RunContext,
    processor,
)
from quiver.pipeline.config import resolve_path
from quiver.pipeline.processors.batch_sql import read_table_file
from quiver.pipeline.processors.field_paths import (
    FieldPath,
    PathText,
    parse_path,
    read_path,
    write_path,
)
from quiver.pipeline.processors.transform import constant
from quiver.runtime.errors import ConfigError, ErrorDetail

__all__ = ["EnrichConfig", "EnrichLookup", "EnrichProcessor"]


class EnrichLookup(ComponentConfig):
    """A table joined on one key."""

    file: str = Field(description="CSV or Parquet file, relative to the pipeline file.")
    key: PathText = Field(description="Field path whose value is looked up.")
    on: str = Field(description="Column of the file holding the keys (unique).")
    fields: dict[str, PathText] = Field(
        default_factory=dict,
        description="File column -> field path it is written to (default: every other column, "
        "under its own name).",
    )
    delimiter: str = Field(default=",", description="CSV delimiter.")


class EnrichConfig(ComponentConfig):
    """Add static, host, service, time and looked-up values."""

    static: dict[PathText, str | int | float | bool] = Field(
        default_factory=dict, description="Field path -> value written to every row."
    )
    host_name: PathText | None = Field(
        default=None, description="Field path receiving this machine's host name."
    )
    service: str | None = Field(
        default=None,
        description="Service name written to `service_name` and `resource.service.name` "
        "where they are unset (the latter only if the rows have resource attributes).",
    )
    timestamp: PathText | None = Field(
        default=None, description="Field path receiving the time the batch was processed."
    )
    lookup: EnrichLookup | None = Field(default=None, description="A table joined on a key.")


@processor("enrich", config=EnrichConfig)
class EnrichProcessor(Concurrent, Checking, ColumnBound):
    """Add static, host, service, time and looked-up values."""

    def __init__(self, cfg: EnrichConfig) -> None:
        self.cfg = cfg
        self._static = [(parse_path(k), v) for k, v in cfg.static.items()]
        self._host = socket.gethostname()
        self._table: tuple[pa.Array, list[tuple[pa.Array, FieldPath]]] | None = None

    def _load(self, ctx: RunContext) -> tuple[pa.Array, list[tuple[pa.Array, FieldPath]]]:
        if self._table is not None:
            return self._table
        lookup = self.cfg.lookup
        assert lookup is not None
        path = resolve_path(lookup.file, ctx.base_dir)
        table = read_table_file(path, "auto", lookup.delimiter, "lookup table")
        fields = lookup.fields or {n: n for n in table.schema.names if n != lookup.on}
        missing = [c for c in [lookup.on, *fields] if c not in table.schema.names]
        if missing:
            raise ConfigError.one(
                f"lookup table lacks column(s) {', '.join(missing)}",
                path,
                f"its columns are: {', '.join(table.schema.names)}",
            )
        keys = table.column(lookup.on).combine_chunks().cast(pa.string())
        if len(pc.unique(keys)) != len(keys):
            raise ConfigError.one(
                f"the keys in column {lookup.on!r} are not unique",
                path,
                "remove the duplicate rows from the lookup table",
            )
        columns = [(table.column(c).combine_chunks(), parse_path(t)) for c, t in fields.items()]
        self._table = (keys, columns)
        return self._table

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        if self.cfg.lookup is None:
            return []
        try:
            self._load(ctx)
        except ConfigError as exc:
            return exc.details
        return []

    def _fill(self, batch: pa.RecordBatch, path: FieldPath, value: str) -> pa.RecordBatch:
        """``value`` at ``path`` where it is unset."""
        if path.column not in batch.schema.names and path.key is not None:
            return batch
        current = (
            read_path(batch, path)
            if path.column in batch.schema.names
            else pa.nulls(batch.num_rows, pa.string())
        )
        return write_path(batch, path, pc.fill_null(current.cast(pa.string()), value))

    def columns_used(self) -> list[ColumnUse]:
        """The column of the lookup key, unless a static value makes it."""
        if self.cfg.lookup is None:
            return []
        key = parse_path(self.cfg.lookup.key).column
        if key in {path.column for path, _ in self._static}:
            return []
        return [ColumnUse(key, ("lookup", "key"))]

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        rows = batch.num_rows
        for path, value in self._static:
            if path.key is not None and not isinstance(value, str):
                value = str(value).lower() if isinstance(value, bool) else str(value)
            batch = write_path(batch, path, constant(value, rows))
        if self.cfg.host_name:
            batch = write_path(batch, parse_path(self.cfg.host_name), constant(self._host, rows))
        if self.cfg.service:
            batch = self._fill(batch, FieldPath("service_name"), self.cfg.service)
            batch = self._fill(
                batch, FieldPath("resource_attributes", "service.name"), self.cfg.service
            )
        if self.cfg.timestamp:
            target = parse_path(self.cfg.timestamp)
            now = dt.datetime.now(dt.UTC)
            stamp = constant(now.isoformat() if target.key is not None else now, rows)
            if target.key is None:
                stamp = stamp.cast(pa.timestamp("ns", tz="UTC"))
            batch = write_path(batch, target, stamp)
        if self.cfg.lookup is not None:
            keys, columns = self._load(ctx)
            wanted = read_path(batch, parse_path(self.cfg.lookup.key)).cast(pa.string())
            index = pc.index_in(wanted, value_set=keys)
            for column, target in columns:
                values = column.take(index)
                if target.key is not None:
                    values = values.cast(pa.string())
                batch = write_path(batch, target, values)
        return ProcessorOutput(batch)
