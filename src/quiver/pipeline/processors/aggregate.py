"""The ``aggregate`` processor: metrics over time windows, grouped by field paths.

```yaml
- aggregate:
    time: time                          # a timestamp column: the event time
    window: 10s                         # tumbling windows of 10 seconds (ms, s, m, h, d)
    slide: 5s                           # optional: sliding windows, a new one every 5 s
    group_by: [service_name, attributes["http.method"]]
    metrics:
      requests: count
      errors: {fn: count, field: attributes["error.type"]}    # rows where it is set
      total_ns: {fn: sum, field: duration_ns}
      avg_ns: {fn: avg, field: duration_ns}
      p95_ns: {fn: percentile, field: duration_ns, q: 0.95}
    allowed_lateness: 5s                # how long a window waits for stragglers
    late: drop                          # or the name of a route that receives late rows
```
Each output row is one window and group: ``window_start``, ``window_end``, the group fields
(a map key is named by the key, e.g. ``http.method``) and the metrics. A window is emitted once
the newest event time seen, less ``allowed_lateness``, has passed its end (and the rest at the
end of the input). A row arriving for a window already emitted is late: dropped and counted in
the run's log, or sent to the ``late`` route. Percentiles are t-digest estimates; ``min``,
``max``, ``sum``, ``avg`` and ``count`` are exact. Map values are read as numbers for sums.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from quiver.pipeline.component import (
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Flushing,
    ProcessorOutput,
    RunContext,
    processor,
)
from quiver.pipeline.processors.field_paths import FieldPath, PathText, parse_path, read_path
from quiver.runtime.errors import PermanentError

__all__ = ["AggregateConfig", "AggregateProcessor", "MetricSpec", "parse_duration"]

_UNITS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_UNITS["d"] = 24 * _UNITS["h"]
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*")
_TS = pa.timestamp("ns", tz="UTC")
_START, _END = "window_start", "window_end"


def parse_duration(text: str) -> int:
    """Nanoseconds in ``text`` such as ``500ms``, ``10s``, ``5m``, ``1h``, ``1d``."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration; write a number and a unit: 500ms, 10s, 5m")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def _out_name(path: FieldPath) -> str:
    return path.column if path.key is None else path.key


class MetricSpec(ComponentConfig):
    """One metric: a function over a field."""

    fn: Literal["count", "sum", "avg", "min", "max", "percentile"] = Field(
        description="Aggregate function."
    )
    field: PathText | None = Field(
        default=None, description="Field path it reads (none for `count`: every row)."
    )
    q: float | None = Field(default=None, description="Percentile: the quantile, 0 to 1.")

    @model_validator(mode="after")
    def _complete(self) -> MetricSpec:
        if self.fn != "count" and self.field is None:
            raise ValueError(f"`{self.fn}` needs a `field`")
        if self.fn == "percentile" and (self.q is None or not 0 <= self.q <= 1):
            raise ValueError("`percentile` needs `q` between 0 and 1, e.g. q: 0.95")
        if self.fn != "percentile" and self.q is not None:
            raise ValueError("`q` only applies to `fn: percentile`")
        return self


class AggregateConfig(ComponentConfig):
    """Metrics over tumbling or sliding time windows."""

    time: str = Field(default="time", description="Timestamp column giving the event time.")
    window: str = Field(description="Window length, e.g. 10s, 1m.")
    slide: str | None = Field(
        default=None, description="Sliding windows: how often a new window starts."
    )
    group_by: list[PathText] = Field(default_factory=list, description="Field paths to group by.")
    metrics: dict[str, MetricSpec | Literal["count"]] = Field(
        description="Output column -> metric (`count`, or {fn, field, q})."
    )
    allowed_lateness: str = Field(
        default="0s", description="How long after its end a window still takes rows."
    )
    late: str = Field(
        default="drop", description="`drop` (and count) late rows, or a route name for them."
    )

    @field_validator("window", "slide", "allowed_lateness")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @model_validator(mode="after")
    def _windows(self) -> AggregateConfig:
        size = parse_duration(self.window)
        if size <= 0:
            raise ValueError("`window` must be longer than 0")
        if self.slide is not None:
            slide = parse_duration(self.slide)
            if slide <= 0 or slide > size or size % slide:
                raise ValueError("`slide` must be above 0 and divide `window` (e.g. 10s by 5s)")
        names = [_START, _END, *(_out_name(parse_path(g)) for g in self.group_by), *self.metrics]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(
                f"output column(s) {', '.join(clashes)} named twice (window_start, window_end, "
                "the group fields and the metrics share the output); rename the metric"
            )
        return self


@processor("aggregate", config=AggregateConfig)
class AggregateProcessor(Flushing, ColumnBound):
    """Metrics over tumbling or sliding time windows."""

    def __init__(self, cfg: AggregateConfig) -> None:
        self.cfg = cfg
        self.size = parse_duration(cfg.window)
        self.slide = parse_duration(cfg.slide) if cfg.slide else self.size
        self.lateness = parse_duration(cfg.allowed_lateness)
        self.groups = [parse_path(g) for g in cfg.group_by]
        self.specs = {
            name: MetricSpec(fn="count") if isinstance(spec, str) else spec
            for name, spec in cfg.metrics.items()
        }
        self.watermark: int | None = None
        self.late_rows = 0
        self._pending: list[pa.Table] = []

    def _inputs(self, batch: pa.RecordBatch) -> tuple[pa.Table, pa.Array]:
        """The rows with a time, reduced to it, their group fields and metric inputs; and
        which rows of ``batch`` have a time."""
        times = read_path(batch, parse_path(self.cfg.time))
        if not pa.types.is_timestamp(times.type):
            raise PermanentError.one(
                f"aggregate time field {self.cfg.time!r} is {times.type}, not a timestamp",
                self.cfg.time,
                "name a timestamp column, or convert it first (cast or derive)",
            )
        columns: dict[str, pa.Array] = {
            "t": times.cast(_TS).cast(pa.int64()),
        }
        for i, path in enumerate(self.groups):
            columns[f"g{i}"] = read_path(batch, path)
        for i, spec in enumerate(self.specs.values()):
            if spec.field is None:
                continue
            values = read_path(batch, parse_path(spec.field))
            if spec.fn != "count" and not (
                pa.types.is_integer(values.type) or pa.types.is_floating(values.type)
            ):
                try:
                    values = values.cast(pa.float64())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise PermanentError.one(
                        f"aggregate field {spec.field} has values that are not numbers: {exc}",
                        spec.field,
                        "aggregate a numeric field, or filter the rows first",
                    ) from exc
            columns[f"m{i}"] = values
        timed = pc.is_valid(columns["t"])
        return pa.table(columns).filter(timed), timed

    def _assign(self, table: pa.Table) -> pa.Table:
        """Each row once per window it falls in, with the window's start."""
        t = table.column("t").to_numpy()
        base = t - np.mod(t, self.slide)
        parts = []
        for k in range(self.size // self.slide):
            start = base - k * self.slide
            inside = start + self.size > t
            parts.append(table.append_column("w", pa.array(start)).filter(pa.array(inside)))
        return pa.concat_tables(parts)

    def _aggregate(self, table: pa.Table) -> pa.Table:
        keys = ["w", *[f"g{i}" for i in range(len(self.groups))]]
        aggs: list[tuple[object, ...]] = [([], "count_all")]
        columns = []  # the output column of each metric
        for i, spec in enumerate(self.specs.values()):
            column = f"m{i}"
            if spec.field is None:
                columns.append("count_all")
                continue
            fn = {"avg": "mean", "percentile": "tdigest"}.get(spec.fn, spec.fn)
            if spec.fn == "percentile":
                aggs.append((column, fn, pc.TDigestOptions(q=spec.q)))
            else:
                aggs.append((column, fn))
            columns.append(f"{column}_{fn}")
        grouped = table.group_by(keys, use_threads=False).aggregate(aggs)
        starts = grouped.column("w")
        out: dict[str, pa.Array | pa.ChunkedArray] = {
            _START: starts.cast(_TS),
            _END: pc.add(starts, self.size).cast(_TS),
        }
        for i, path in enumerate(self.groups):
            out[_out_name(path)] = grouped.column(f"g{i}")
        for i, (name, spec) in enumerate(self.specs.items()):
            column = grouped.column(columns[i])
            if spec.fn == "percentile":
                column = pc.list_element(column, 0)
            out[name] = column
        result = pa.table(out)
        order = pc.sort_indices(result, [(_START, "ascending")])
        return result.take(order)

    def columns_used(self) -> list[ColumnUse]:
        used = [ColumnUse(parse_path(self.cfg.time).column, ("time",))]
        used += [ColumnUse(g.column, ("group_by", i)) for i, g in enumerate(self.groups)]
        used += [
            ColumnUse(parse_path(spec.field).column, ("metrics", name, "field"))
            for name, spec in self.specs.items()
            if spec.field is not None
        ]
        return used

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        table, timed = self._inputs(batch)
        routes: dict[str, list[pa.RecordBatch]] = {}
        if self.watermark is not None and table.num_rows:
            # late: the row's last window had closed before the batch arrived
            t = table.column("t").to_numpy()
            late = t - np.mod(t, self.slide) + self.size <= self.watermark
            if late.any():
                count = int(late.sum())
                self.late_rows += count
                if self.cfg.late == "drop":
                    ctx.log(f"aggregate: dropped {count} late row(s)", "warning")
                else:
                    routes[self.cfg.late] = [batch.filter(timed).filter(pa.array(late))]
                table = table.filter(pa.array(~late))
        if table.num_rows:
            newest = int(pc.max(table.column("t")).as_py()) - self.lateness
            self.watermark = newest if self.watermark is None else max(self.watermark, newest)
            self._pending.append(self._assign(table))
        return ProcessorOutput(self._emit(closed_only=True), routes=routes)

    def _emit(self, closed_only: bool) -> pa.RecordBatch | None:
        if not self._pending:
            return None
        pending = pa.concat_tables(self._pending)
        if closed_only:
            assert self.watermark is not None
            done = pc.less_equal(pc.add(pending.column("w"), self.size), self.watermark)
            ready = pending.filter(done)
            self._pending = [pending.filter(pc.invert(done))]
        else:
            ready = pending
            self._pending = []
        if not ready.num_rows:
            return None
        return self._aggregate(ready).combine_chunks().to_batches()[0]

    async def flush(self, ctx: RunContext) -> AsyncIterator[ProcessorOutput]:
        batch = self._emit(closed_only=False)
        if self.late_rows:
            ctx.log(f"aggregate: {self.late_rows} late row(s) in all", "warning")
        if batch is not None:
            yield ProcessorOutput(batch)
