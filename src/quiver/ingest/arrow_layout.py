"""The one Arrow layout every telemetry receiver produces: one row per span, metric data point
or log record.

Traces, metrics and logs share one schema (:data:`TELEMETRY_SCHEMA`), so a single sink (a
Parquet file, a database table) takes all three and a ``filter`` on ``signal`` splits them.
The columns a signal does not use are null in its rows, which columnar formats store for
almost nothing. Resource, scope and item attributes are ``map<string, string>`` columns:
string values as they are, booleans and numbers as their JSON text, bytes as base64, arrays
and maps as JSON.

Ids are lowercase hex strings (``trace_id`` 32 digits, ``span_id`` 16), times are
``timestamp[ns, UTC]`` (a time of 0, "unset" in OTLP, is null), enums are their short lowercase
names (``span_kind: server``, ``status_code: error``, ``aggregation_temporality: delta``).
``tenant_id`` is the tenant a receiver resolved for the row (:mod:`quiver.ingest.tenancy`), null
when the receiver has no tenancy.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from quiver.pipeline.json_text import dump_json

__all__ = [
    "LARGEST",
    "SIGNALS",
    "TELEMETRY_SCHEMA",
    "Signal",
    "count_too_large",
    "telemetry_batch",
    "time_too_late",
    "value_json",
]

Signal = Literal["traces", "metrics", "logs"]
SIGNALS: tuple[Signal, ...] = ("traces", "metrics", "logs")

_TS = pa.timestamp("ns", tz="UTC")
_ATTRS = pa.map_(pa.string(), pa.string())

_EVENT = pa.struct(
    [pa.field("time", _TS), pa.field("name", pa.string()), pa.field("attributes", _ATTRS)]
)
_LINK = pa.struct(
    [
        pa.field("trace_id", pa.string()),
        pa.field("span_id", pa.string()),
        pa.field("trace_state", pa.string()),
        pa.field("attributes", _ATTRS),
    ]
)
_EXEMPLAR = pa.struct(
    [
        pa.field("time", _TS),
        pa.field("value_double", pa.float64()),
        pa.field("value_int", pa.int64()),
        pa.field("trace_id", pa.string()),
        pa.field("span_id", pa.string()),
        pa.field("filtered_attributes", _ATTRS),
    ]
)
_QUANTILE = pa.struct([pa.field("quantile", pa.float64()), pa.field("value", pa.float64())])

#: Every column, in order. The comments say which signal fills it.
TELEMETRY_SCHEMA = pa.schema(
    [
        # all signals
        pa.field("signal", pa.string(), nullable=False),  # traces / metrics / logs
        pa.field("time", _TS),  # span start, data point time, log record time
        pa.field("service_name", pa.string()),  # the resource's service.name
        pa.field("resource_attributes", _ATTRS),
        pa.field("scope_name", pa.string()),
        pa.field("scope_version", pa.string()),
        pa.field("scope_attributes", _ATTRS),
        pa.field("attributes", _ATTRS),
        pa.field("trace_id", pa.string()),  # spans, logs (and their links)
        pa.field("span_id", pa.string()),
        pa.field("flags", pa.int64()),
        pa.field("dropped_attributes_count", pa.int64()),
        # traces
        pa.field("parent_span_id", pa.string()),
        pa.field("trace_state", pa.string()),
        pa.field("span_name", pa.string()),
        pa.field("span_kind", pa.string()),  # unspecified/internal/server/client/producer/consumer
        pa.field("end_time", _TS),
        pa.field("duration_ns", pa.int64()),
        pa.field("status_code", pa.string()),  # unset / ok / error
        pa.field("status_message", pa.string()),
        pa.field("events", pa.list_(_EVENT)),
        pa.field("links", pa.list_(_LINK)),
        pa.field("dropped_events_count", pa.int64()),
        pa.field("dropped_links_count", pa.int64()),
        # metrics
        pa.field("metric_name", pa.string()),
        pa.field("metric_description", pa.string()),
        pa.field("metric_unit", pa.string()),
        pa.field("metric_type", pa.string()),  # gauge/sum/histogram/exponential_histogram/summary
        pa.field("aggregation_temporality", pa.string()),  # unspecified / delta / cumulative
        pa.field("is_monotonic", pa.bool_()),
        pa.field("start_time", _TS),
        pa.field("value_double", pa.float64()),  # gauge / sum points
        pa.field("value_int", pa.int64()),
        pa.field("count", pa.int64()),  # histogram / exponential_histogram / summary points
        pa.field("sum", pa.float64()),
        pa.field("min", pa.float64()),
        pa.field("max", pa.float64()),
        pa.field("bucket_counts", pa.list_(pa.int64())),
        pa.field("explicit_bounds", pa.list_(pa.float64())),
        pa.field("scale", pa.int32()),  # exponential_histogram
        pa.field("zero_count", pa.int64()),
        pa.field("positive_offset", pa.int32()),
        pa.field("positive_bucket_counts", pa.list_(pa.int64())),
        pa.field("negative_offset", pa.int32()),
        pa.field("negative_bucket_counts", pa.list_(pa.int64())),
        pa.field("quantile_values", pa.list_(_QUANTILE)),  # summary
        pa.field("exemplars", pa.list_(_EXEMPLAR)),  # gauge / sum / histogram points
        # logs
        pa.field("observed_time", _TS),
        pa.field("severity_number", pa.int32()),
        pa.field("severity_text", pa.string()),
        pa.field("body", pa.string()),  # a string body as it is, any other value as JSON
        pa.field("event_name", pa.string()),
        # tenancy
        pa.field("tenant_id", pa.string()),  # the row's tenant (null without tenancy)
    ]
)

_TIME_COLUMNS = frozenset(f.name for f in TELEMETRY_SCHEMA if pa.types.is_timestamp(f.type))

#: The largest value of the int64 columns: the latest time a row holds, in nanoseconds since the
#: epoch (2262-04-11T23:47:16.854775807Z), and its largest count. OTLP sends both unsigned, up
#: to 2**64 - 1: the receivers reject an item holding more, naming it as these functions say.
LARGEST = (1 << 63) - 1


def time_too_late(name: str, shown: object) -> str:
    """Why the time ``name`` (sent as ``shown``) is no row's."""
    return (
        f"{name} is {shown}, which is past 2262-04-11T23:47:16.854775807Z, the latest a "
        "nanosecond timestamp holds (times are nanoseconds since 1970-01-01 UTC)"
    )


def count_too_large(name: str, value: int) -> str:
    """Why the count ``name`` (``value``) is no row's."""
    return f"{name} is {value}, more than {LARGEST}, the largest count a row holds (int64)"


def telemetry_batch(columns: Mapping[str, list[Any] | pa.Array], rows: int) -> pa.RecordBatch:
    """A RecordBatch of :data:`TELEMETRY_SCHEMA` from ``columns`` (name -> ``rows`` values,
    as a list or an Arrow array of the column's type).

    Columns left out are all null. Times are integers of nanoseconds since the epoch, and 0
    (unset in OTLP) becomes null.
    """
    unknown = set(columns) - set(TELEMETRY_SCHEMA.names)
    if unknown:
        raise KeyError(f"not columns of the telemetry layout: {sorted(unknown)}")
    arrays = []
    nulls = _nulls(rows) if rows <= 65_536 else _fresh_nulls(rows)
    for i, f in enumerate(TELEMETRY_SCHEMA):
        values = columns.get(f.name)
        if values is None:
            arrays.append(nulls[i])
            continue
        if len(values) != rows:
            raise ValueError(f"column {f.name!r} has {len(values)} values for {rows} rows")
        if isinstance(values, pa.Array):
            arrays.append(values)
            continue
        arrays.append(
            _times(values, f.type) if f.name in _TIME_COLUMNS else pa.array(values, f.type)
        )
    return pa.RecordBatch.from_arrays(arrays, schema=TELEMETRY_SCHEMA)


@functools.lru_cache(maxsize=8)
def _nulls(rows: int) -> tuple[pa.Array, ...]:
    """A column of ``rows`` nulls of each column's type: made once per batch size and shared
    (Arrow arrays are immutable), as most columns of a batch are null."""
    return _fresh_nulls(rows)


def _fresh_nulls(rows: int) -> tuple[pa.Array, ...]:
    return tuple(pa.nulls(rows, f.type) for f in TELEMETRY_SCHEMA)


def _times(values: list[Any], kind: pa.DataType) -> pa.Array:
    """Nanoseconds since the epoch as timestamps, 0 as null: read in bulk by numpy (pyarrow
    takes large Python ints to a typed array one by one, several times slower)."""
    try:
        ints = np.fromiter(values, np.int64, count=len(values))
    except (TypeError, OverflowError, ValueError):  # None, or past 2262: value by value
        return pa.array([v or None for v in values], kind)
    return pa.array(ints, pa.int64(), mask=ints == 0).cast(kind)


def value_json(value: Any) -> str:
    """An attribute or body value that is not a string (a double, an array, a map) as the text
    the layout keeps: its JSON, with the floats JSON has no number for as ``NaN``,
    ``Infinity`` and ``-Infinity`` (quoted inside arrays and maps), as the JSON sinks write
    them, never ``null``."""
    if isinstance(value, float):
        text = dump_json(value).decode("utf-8")
        return text.strip('"')  # NaN, not "NaN": a bare double is its own text
    return dump_json(value).decode("utf-8")
