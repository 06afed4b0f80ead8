"""The ``parquet`` sink: columnar files with zstd (default), snappy, gzip, lz4 or brotli.

Batches are gathered until ``row_group_rows`` rows, then written as one row group, so readers
get row groups of a useful size whatever the batch size upstream; memory holds at most one row
group. The file is renamed into place on commit and deleted on abort.

A directory ``path`` (ending in ``/``, or with ``partition_by`` / ``time_partition``) gets
hive-style partitions instead: ``<dir>/<key>=<value>/.../part-<run>-<NNNNNN>.parquet``, one
file per partition and commit (``NNNNNN`` is ``000000`` for a run that commits once; a source
committing in checkpoints names each checkpoint's files with its stem, UTC start and number),
each written under a hidden temporary name and renamed on commit. Partition columns are left
out of the files (readers take them from the directory names); a time partition adds
``day=YYYY-MM-DD`` or ``hour=YYYY-MM-DDTHH`` (UTC) from a timestamp or nanoseconds-since-epoch
column.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from typing import Literal
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from quiver.pipeline import streams
from quiver.pipeline.component import (
    Checking,
    ColumnBound,
    ColumnUse,
    FileWriting,
    RunContext,
    schema_without_line,
    sink,
    without_line,
)
from quiver.pipeline.conform import conform
from quiver.pipeline.output import (
    AtomicOutput,
    FileSinkConfig,
    open_output,
    remove_stale_temps,
)
from quiver.pipeline.paths import resolve_path
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError

__all__ = ["ParquetSink", "ParquetSinkConfig"]


class TimePartition(BaseModel):
    """A partition by time: ``day=YYYY-MM-DD`` or ``hour=YYYY-MM-DDTHH`` (UTC)."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(
        "time", description="Timestamp column, or integer nanoseconds since the epoch."
    )
    granularity: Literal["hour", "day"] = Field("hour", description="Size of a partition.")


_TIME_FORMATS = {"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d"}
_NULL_VALUE = "__HIVE_DEFAULT_PARTITION__"


class ParquetSinkConfig(FileSinkConfig):
    """Write a Parquet file, or partitioned Parquet files under a directory."""

    partition_by: list[str] = Field(
        default_factory=list,
        description="Columns whose values name the partition directories (`path` is then a "
        "directory): `service_name=checkout/part-<run>-000000.parquet`.",
    )
    time_partition: TimePartition | None = Field(
        None,
        description="Partition by time as well, after `partition_by` (`path` is then a "
        "directory), e.g. `{column: time, granularity: hour}`.",
    )

    compression: Literal["zstd", "snappy", "gzip", "lz4", "brotli", "none"] = Field(
        "zstd", description="Column chunk compression."
    )
    compression_level: int | None = Field(
        None, description="Codec level (zstd 1-22, gzip 1-9, brotli 0-11); codec default if unset."
    )
    row_group_rows: int = Field(
        262_144, ge=1, description="Rows per row group (also the most rows held in memory)."
    )
    dictionary: bool = Field(True, description="Dictionary-encode columns where it pays.")
    no_dictionary: list[str] = Field(
        default_factory=list,
        description="Columns never dictionary-encoded: those of many distinct values (ids, "
        "times), whose dictionary only grows until the writer gives up on it.",
    )
    statistics: bool = Field(True, description="Write min/max statistics for each column chunk.")
    nested_statistics: bool = Field(
        False,
        description="Also write min/max statistics for the leaves of list, map and struct "
        "columns (readers seldom filter on them, and they cost about as much to write as "
        "the values).",
    )

    @property
    def writes_directory(self) -> bool:
        """Whether ``path`` names a directory of part files rather than one file."""
        return bool(self.partition_by or self.time_partition or self.path.endswith("/"))

    @model_validator(mode="after")
    def _level_fits_codec(self) -> ParquetSinkConfig:
        if self.compression_level is not None and self.compression not in _LEVELS:
            raise ValueError(
                f"compression_level does not apply to {self.compression}; "
                f"it does to {', '.join(sorted(_LEVELS))}"
            )
        low, high = _LEVELS.get(self.compression, (0, 0))
        if self.compression_level is not None and not low <= self.compression_level <= high:
            raise ValueError(
                f"compression_level for {self.compression} must be {low}..{high}, "
                f"got {self.compression_level}"
            )
        return self


_LEVELS = {"zstd": (1, 22), "gzip": (1, 9), "brotli": (0, 11)}


@sink("parquet", config=ParquetSinkConfig)
class ParquetSink(Checking, ColumnBound, FileWriting):
    """A Parquet file, written row group by row group and renamed into place on commit."""

    def __init__(self, cfg: ParquetSinkConfig) -> None:
        self.cfg = cfg
        self.output: AtomicOutput | None = None
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.rows_written = 0
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.guard = streams.DestinationGuard(cfg.path)
        self.parts: _Partitioned | None = None

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        path = resolve_path(self.cfg.path, ctx.base_dir)
        if not self.cfg.writes_directory and os.path.isdir(path):
            return [
                ErrorDetail(
                    f"{self.cfg.path} is a directory, and the parquet sink writes one file "
                    "unless told to write a directory",
                    "sink parquet.path",
                    "end the path with '/' to write part files into the directory, add "
                    "`partition_by: [columns]` or `time_partition: {column: time}` to "
                    "partition them, or name a file",
                )
            ]
        return []

    def columns_used(self) -> list[ColumnUse]:
        uses = [ColumnUse(c, ("partition_by", i)) for i, c in enumerate(self.cfg.partition_by)]
        if self.cfg.time_partition is not None:
            uses.append(ColumnUse(self.cfg.time_partition.column, ("time_partition", "column")))
        uses += [ColumnUse(c, ("no_dictionary", i)) for i, c in enumerate(self.cfg.no_dictionary)]
        return uses

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        await asyncio.to_thread(self._open, schema_without_line(schema), ctx)

    def _open(self, schema: pa.Schema, ctx: RunContext) -> None:
        _refuse_unwritable(schema, f"parquet sink {self.cfg.path}")
        self.schema = schema
        unknown = [c for c in self.cfg.no_dictionary if c not in schema.names]
        if unknown and schema.names:
            raise ConfigError.one(
                f"parquet sink {self.cfg.path}: no_dictionary names column(s)"
                f" {', '.join(map(repr, unknown))} not in the rows"
                f" (columns: {', '.join(schema.names)})",
                "no_dictionary",
                "name columns the rows have",
            )
        if self.cfg.writes_directory:
            self.parts = _Partitioned(self, schema, ctx)
            return
        self.output, stream = open_output(self.cfg, ctx)
        self.guard.path = self.output.path
        try:
            with self.guard.writing():
                self.writer = self._writer(stream, schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            self.output.abort()
            raise PermanentError.one(
                f"cannot write this schema as Parquet: {exc}",
                f"parquet sink {self.cfg.path}",
                "cast the unsupported columns in a processor first",
            ) from exc

    def _writer(self, stream: pa.NativeFile, schema: pa.Schema) -> pq.ParquetWriter:
        return pq.ParquetWriter(
            stream,
            schema,
            compression=self.cfg.compression,
            compression_level=self.cfg.compression_level,
            use_dictionary=self._dictionary(schema),
            write_statistics=self._statistics(schema),
        )

    def _dictionary(self, schema: pa.Schema) -> bool | list[str]:
        """The ``use_dictionary`` of a file of ``schema``: the leaf columns (Parquet paths)
        of every column not in ``no_dictionary``."""
        if not self.cfg.dictionary or not self.cfg.no_dictionary:
            return self.cfg.dictionary
        skip = set(self.cfg.no_dictionary)
        return [path for f in schema if f.name not in skip for path in _leaf_paths(f.name, f.type)]

    def _statistics(self, schema: pa.Schema) -> bool | list[str]:
        """The ``write_statistics`` of a file of ``schema``: every column, or only those
        that are not nested (see ``nested_statistics``)."""
        if not self.cfg.statistics or self.cfg.nested_statistics:
            return self.cfg.statistics
        flat = [f.name for f in schema if not pa.types.is_nested(f.type)]
        if len(flat) == len(schema):
            return True
        return flat or False

    async def write(self, batch: pa.RecordBatch) -> None:
        data = without_line(batch)
        assert self.schema is not None
        data = conform(
            data,
            self.schema,
            where=f"parquet sink {self.cfg.path}",
            origin="the file being written",
        )
        if self.parts is not None:
            await asyncio.to_thread(self.parts.write, data)
            return
        self._pending.append(data)
        self._pending_rows += data.num_rows
        if self._pending_rows >= self.cfg.row_group_rows:
            await asyncio.to_thread(self._flush, False)

    def _flush(self, final: bool) -> None:
        assert self.writer is not None
        if not self._pending:
            return
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        size = self.cfg.row_group_rows
        full = table.num_rows if final else table.num_rows - table.num_rows % size
        if full:
            with self.guard.writing():
                self.writer.write_table(table.slice(0, full), row_group_size=size)
            self.rows_written += full
        rest = table.slice(full)
        self._pending = rest.to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows

    async def commit(self) -> None:
        await asyncio.to_thread(self._commit)

    def _commit(self) -> None:
        if self.parts is not None:
            self.parts.commit()
            return
        with self.guard.writing():
            if self.writer is not None:
                self._flush(True)
                self.writer.close()
                self.writer = None
            if self.output is not None:
                self.output.commit()

    async def abort(self) -> None:
        await asyncio.to_thread(self._abort)

    def _abort(self) -> None:
        if self.parts is not None:
            self.parts.abort()
        self._pending = []
        if self.writer is not None:
            with contextlib.suppress(Exception):  # the file is thrown away anyway
                self.writer.close()
            self.writer = None
        if self.output is not None:
            self.output.abort()


def _unwritable(name: str, kind: pa.DataType, where: str) -> list[ErrorDetail]:
    """Why column ``name`` of type ``kind`` (or a field inside it) has no Parquet form."""
    if pa.types.is_interval(kind):
        return [
            ErrorDetail(
                f"column {name!r} is {kind}, which Parquet cannot hold",
                where,
                "write it with the arrow sink, or to csv or jsonl (ISO 8601 text such as "
                "P1M2DT0.5S), or drop it in a `select` step",
            )
        ]
    if pa.types.is_decimal(kind) and kind.scale < 0:
        digits = kind.precision - kind.scale
        return [
            ErrorDetail(
                f"column {name!r} is {kind}, a decimal with a negative scale, which Parquet "
                "cannot hold",
                where,
                "cast it to a decimal of scale 0 first (a `cast` step: "
                f'{{columns: {{{name}: "decimal({digits},0)"}}}})',
            )
        ]
    if isinstance(kind, pa.StructType):
        return [e for f in kind for e in _unwritable(f"{name}.{f.name}", f.type, where)]
    if isinstance(kind, pa.MapType):
        return _unwritable(f"{name}.key", kind.key_type, where) + _unwritable(
            f"{name}.value", kind.item_type, where
        )
    if (
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or (pa.types.is_fixed_size_list(kind) or pa.types.is_list_view(kind))
    ):
        return _unwritable(f"{name}[]", kind.value_type, where)
    if pa.types.is_dictionary(kind):
        return _unwritable(name, kind.value_type, where)
    return []


def _refuse_unwritable(schema: pa.Schema, where: str) -> None:
    """Refuse, before any file is opened, a schema with columns Parquet has no type for:
    every such column named with its type and the fix (rather than the writer's own error,
    which names neither)."""
    problems = [e for f in schema for e in _unwritable(f.name, f.type, where)]
    if problems:
        raise PermanentError(problems)


class _Partitioned:
    """The part files of a directory output: one writer per partition, each renamed into
    place on commit."""

    def __init__(self, sink: ParquetSink, schema: pa.Schema, ctx: RunContext) -> None:
        cfg = sink.cfg
        self.sink = sink
        self.where = f"parquet sink {cfg.path}"
        self.directory = resolve_path(cfg.path, ctx.base_dir)
        keys = list(cfg.partition_by)
        if cfg.time_partition is not None:
            keys.append(cfg.time_partition.column)
        missing = [k for k in keys if k not in schema.names]
        if missing:
            # found only now when the steps before make columns validate cannot know (a
            # script without output_schema): the option is at fault, as validate would say
            option = (
                "partition_by"
                if any(k in cfg.partition_by for k in missing)
                else "time_partition.column"
            )
            raise ConfigError.one(
                f"{self.where}: partition column(s) {', '.join(map(repr, missing))} not in the"
                f" rows (columns: {', '.join(schema.names)})",
                option,
                "name columns the rows have in `partition_by` / `time_partition.column`",
            )
        self.file_schema = pa.schema([f for f in schema if f.name not in cfg.partition_by])
        safe_run = _safe(ctx.run_id) or "run"
        unit = _safe(ctx.stem) if ctx.stem else "000000"
        self.file_name = f"part-{safe_run}-{unit}.parquet"
        self.safe_run = safe_run
        self.run_id = ctx.run_id
        self.writers: dict[str, tuple[AtomicOutput, pq.ParquetWriter]] = {}
        # rows gathered per partition until a row group is full; at most ``row_group_rows``
        # rows are held over all partitions (then the biggest is written)
        self.pending: dict[str, list[pa.Table]] = {}
        self.pending_rows: dict[str, int] = {}
        _remove_stale_parts(self.directory)  # a live writer's files are left alone

    def _labels(self, table: pa.Table) -> list[pa.Array]:
        """Per row, the value of each partition level as text."""
        cfg = self.sink.cfg
        labels = [pc.cast(table.column(c), pa.string()) for c in cfg.partition_by]
        tp = cfg.time_partition
        if tp is not None:
            times = table.column(tp.column)
            if pa.types.is_integer(times.type):
                times = pc.cast(pc.cast(times, pa.int64()), pa.timestamp("ns", tz="UTC"))
            elif not pa.types.is_timestamp(times.type):
                raise PermanentError.one(
                    f"time partition column {tp.column!r} is {times.type}",
                    self.where,
                    "name a timestamp column or one of integer nanoseconds since the epoch",
                )
            elif times.type.tz is None:
                times = pc.assume_timezone(times, "UTC")
            labels.append(pc.strftime(times, format=_TIME_FORMATS[tp.granularity], locale="C"))
        return [pc.fill_null(lab.combine_chunks(), _NULL_VALUE) for lab in labels]

    def write(self, data: pa.RecordBatch) -> None:
        cfg = self.sink.cfg
        table = pa.Table.from_batches([data])
        names = list(cfg.partition_by)
        if cfg.time_partition is not None:
            names.append(cfg.time_partition.granularity)
        labels = self._labels(table)
        body = table.select(self.file_schema.names)
        if not labels:  # a directory without partitions
            self._hold("", body)
            self.sink.rows_written += table.num_rows
            return
        keys = pa.table({str(i): lab for i, lab in enumerate(labels)})
        groups = keys.group_by([str(i) for i in range(len(labels))]).aggregate([])
        for row in groups.to_pylist():
            mask = None
            for i, lab in enumerate(labels):
                hit = pc.equal(lab, row[str(i)])
                mask = hit if mask is None else pc.and_(mask, hit)
            assert mask is not None
            part = "/".join(f"{n}={quote(str(row[str(i)]), safe='')}" for i, n in enumerate(names))
            self._hold(part, body.filter(mask))
        self.sink.rows_written += table.num_rows

    def _hold(self, part: str, rows: pa.Table) -> None:
        self.pending.setdefault(part, []).append(rows)
        self.pending_rows[part] = self.pending_rows.get(part, 0) + rows.num_rows
        limit = self.sink.cfg.row_group_rows
        while sum(self.pending_rows.values()) >= limit:
            self._write_out(max(self.pending_rows, key=self.pending_rows.__getitem__))

    def _write_out(self, part: str) -> None:
        table = pa.concat_tables(self.pending.pop(part))
        del self.pending_rows[part]
        self._writer(part).write_table(table, row_group_size=self.sink.cfg.row_group_rows)

    def _writer(self, part: str) -> pq.ParquetWriter:
        if part not in self.writers:
            path = os.path.join(self.directory, part, self.file_name)
            output = AtomicOutput(
                path, self.run_id, create_dirs=self.sink.cfg.create_dirs, where=self.where
            )
            # hidden while written: dataset readers skip names starting with a dot
            output.temp_path = os.path.join(
                os.path.dirname(path), f".{self.file_name}.tmp-{self.safe_run}"
            )
            stream = output.open()
            self.writers[part] = (output, self.sink._writer(stream, self.file_schema))
        return self.writers[part][1]

    def commit(self) -> None:
        for part in list(self.pending):
            self._write_out(part)
        for output, writer in self.writers.values():
            writer.close()
            output.commit()
        self.writers.clear()

    def abort(self) -> None:
        self.pending.clear()
        for output, writer in self.writers.values():
            with contextlib.suppress(Exception):
                writer.close()
            output.abort()
        self.writers.clear()


def _leaf_paths(path: str, kind: pa.DataType) -> list[str]:
    """The Parquet column paths of the leaves of an Arrow column (as pyarrow writes nested
    types: ``m.key_value.key``, ``l.list.element``, ``s.field``)."""
    if pa.types.is_map(kind):
        return _leaf_paths(f"{path}.key_value.key", kind.key_type) + _leaf_paths(
            f"{path}.key_value.value", kind.item_type
        )
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaf_paths(f"{path}.list.element", kind.value_type)
    if pa.types.is_struct(kind):
        return [leaf for f in kind for leaf in _leaf_paths(f"{path}.{f.name}", f.type)]
    return [path]


def _safe(name: str) -> str:
    """``name`` with only letters, digits, ``_`` and ``-`` (for a file name)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _remove_stale_parts(directory: str) -> None:
    """Delete the hidden temporary part files a killed run left under ``directory``."""
    for root, _, names in os.walk(directory):
        for name in names:
            if name.startswith(".part-") and ".tmp-" in name:
                final = name[1:].split(".tmp-", 1)[0]
                remove_stale_temps(os.path.join(root, "." + final))
