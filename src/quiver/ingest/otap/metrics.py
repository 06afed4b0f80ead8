"""OTAP metrics -> rows of the telemetry layout, one per data point: each data point table
(NUMBER, HISTOGRAM, EXP_HISTOGRAM, SUMMARY) joined with its metric in UNIVARIATE_METRICS (and
through it the resource and scope), its attributes and its exemplars (section 5.3 of the
OTAP specification), column by column. METRIC_ATTRS (metric metadata) has no column in the
layout, as in OTLP, and is not read."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quiver.ingest.arrow_layout import TELEMETRY_SCHEMA, telemetry_batch
from quiver.ingest.otap.columns import (
    OtapDataError,
    Payload,
    Rejections,
    RowChecks,
    hex_ids,
    parent_rows,
    timestamps,
)
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2
from quiver.ingest.otap.traces import attributes_of, empty_null, own_ids, root_columns

__all__ = ["decode_metrics"]

_T = otap_pb2.ArrowPayloadType
_TYPES = ("empty", "gauge", "sum", "histogram", "exponential_histogram", "summary")
_TEMPORALITIES = ("unspecified", "delta", "cumulative")
_EXEMPLAR = TELEMETRY_SCHEMA.field("exemplars").type.value_type
_QUANTILE = TELEMETRY_SCHEMA.field("quantile_values").type.value_type

#: data point table -> (its attributes, its exemplars, their attributes)
_POINTS = {
    _T.NUMBER_DATA_POINTS: (
        _T.NUMBER_DP_ATTRS,
        _T.NUMBER_DP_EXEMPLARS,
        _T.NUMBER_DP_EXEMPLAR_ATTRS,
    ),
    _T.HISTOGRAM_DATA_POINTS: (
        _T.HISTOGRAM_DP_ATTRS,
        _T.HISTOGRAM_DP_EXEMPLARS,
        _T.HISTOGRAM_DP_EXEMPLAR_ATTRS,
    ),
    _T.EXP_HISTOGRAM_DATA_POINTS: (
        _T.EXP_HISTOGRAM_DP_ATTRS,
        _T.EXP_HISTOGRAM_DP_EXEMPLARS,
        _T.EXP_HISTOGRAM_DP_EXEMPLAR_ATTRS,
    ),
    _T.SUMMARY_DATA_POINTS: (_T.SUMMARY_DP_ATTRS, None, None),
}


def decode_metrics(tables: dict[int, Payload], rejected: Rejections) -> pa.RecordBatch | None:
    """The rows of one BatchArrowRecords of the metrics service (None when it has no data
    points); OtapDataError when the tables cannot be joined. Data points holding a time past
    2262 (their own or an exemplar's) or a count past int64 are left out, counted in
    ``rejected``."""
    metrics = tables.get(_T.UNIVARIATE_METRICS)
    if metrics is None:
        others = [t.name for t in tables.values() if t.rows]
        if others:
            raise OtapDataError(f"{', '.join(others)} sent without a UNIVARIATE_METRICS payload")
        return None
    ids = metrics.ids("id", "delta")
    if ids is None:
        raise OtapDataError("UNIVARIATE_METRICS: the required column 'id' is missing")
    names = metrics.texts("name")
    if names is None or names.null_count:
        raise OtapDataError("UNIVARIATE_METRICS: the name column is missing or has nulls")
    kinds = metrics.ints("metric_type", required=True)
    assert kinds is not None
    per_metric = root_columns(metrics, tables)
    per_metric["metric_name"] = names
    for column, source in (("metric_description", "description"), ("metric_unit", "unit")):
        text = metrics.texts(source)
        per_metric[column] = (
            pa.nulls(metrics.rows, pa.string()) if text is None else empty_null(text)
        )
    type_names = pa.array(_TYPES).take(pc.if_else(pc.less(kinds, 6), kinds, 0))
    per_metric["metric_type"] = type_names
    temporality = metrics.ints("aggregation_temporality")
    has_temporality = pc.is_in(type_names, pa.array(["sum", "histogram", "exponential_histogram"]))
    if temporality is None:
        temporality = pa.repeat(pa.scalar(0), metrics.rows)
    temporality = temporality.fill_null(0)
    known = pc.and_(pc.greater_equal(temporality, 0), pc.less(temporality, 3))
    words = pc.if_else(
        known,
        pa.array(_TEMPORALITIES).take(pc.if_else(known, temporality, 0)),
        temporality.cast(pa.string()),
    )
    per_metric["aggregation_temporality"] = pc.if_else(
        has_temporality, words, pa.scalar(None, pa.string())
    )
    monotonic = metrics.column("is_monotonic")
    monotonic = (
        pa.repeat(pa.scalar(False), metrics.rows)
        if monotonic is None
        else monotonic.fill_null(False)
    )
    per_metric["is_monotonic"] = pc.if_else(
        pc.equal(type_names, "sum"), monotonic, pa.scalar(None, pa.bool_())
    )

    batches = []
    for kind, (attrs, exemplars, exemplar_attrs) in _POINTS.items():
        points = tables.get(kind)
        if points is None:
            continue
        parent = points.ids("parent_id", "delta")
        if parent is None:
            raise OtapDataError(f"{points.name}: the required column 'parent_id' is missing")
        metric_row = parent_rows(ids[0], ids[1], parent[0], points.name, "UNIVARIATE_METRICS")
        take = pa.array(metric_row)
        columns = {name: values.take(take) for name, values in per_metric.items()}
        checks = RowChecks(points)
        columns.update(_point_columns(kind, points, checks))
        rows = points.rows
        point_ids = own_ids(points)
        columns["attributes"] = attributes_of(tables.get(attrs), point_ids, rows, points.name)
        if exemplars is not None:
            columns["exemplars"] = _exemplars(tables, exemplars, exemplar_attrs, point_ids, checks)
        columns["signal"] = pa.repeat(pa.scalar("metrics"), rows)
        batch = checks.apply(telemetry_batch(columns, rows), rejected)
        if batch is not None:
            batches.append(batch)
    if not batches:
        return None
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _ints(points: Payload, name: str) -> pa.Array:
    values = points.ints(name)
    return pa.nulls(points.rows, pa.int64()) if values is None else values


def _floats(points: Payload, name: str) -> pa.Array:
    values = points.column(name)
    if values is None:
        return pa.nulls(points.rows, pa.float64())
    return values.cast(pa.float64())


def _counts(points: Payload, name: str, checks: RowChecks) -> pa.Array:
    """A count column (``count``, ``zero_count``) as int64, null as 0; a data point whose
    count is past int64 is checked out."""
    values = points.column(name)
    if values is None:
        return pa.repeat(pa.scalar(0), points.rows)
    if not pa.types.is_integer(values.type):
        raise OtapDataError(f"{points.name}.{name} is {values.type}; an integer type is expected")
    return checks.counts(values, name).fill_null(0)


def _int_lists(points: Payload, name: str, checks: RowChecks) -> pa.Array:
    """A list column of counts (``bucket_counts``) as lists of int64; a data point with a
    count past int64 is checked out."""
    values = points.column(name)
    if values is None:
        return pa.nulls(points.rows, pa.list_(pa.int64()))
    if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type)):
        return values.cast(pa.list_(pa.int64()))  # refused with the batch, as it cannot be
    return checks.counts(values, name)


def _point_columns(kind: int, points: Payload, checks: RowChecks) -> dict[str, pa.Array]:
    rows = points.rows
    columns: dict[str, pa.Array] = {
        name: timestamps(
            checks.times(points.column(f"{name}_unix_nano"), rows, f"{name}_unix_nano")
        )
        for name in ("time", "start_time")
    }
    columns["flags"] = _ints(points, "flags").fill_null(0)
    if kind == _T.NUMBER_DATA_POINTS:
        columns["value_int"] = _ints(points, "int_value")
        columns["value_double"] = _floats(points, "double_value")
        return columns
    columns["count"] = _counts(points, "count", checks)
    columns["sum"] = _floats(points, "sum")
    if kind == _T.SUMMARY_DATA_POINTS:
        quantiles = points.column("quantile")
        if quantiles is None:
            columns["quantile_values"] = pa.nulls(rows, pa.list_(_QUANTILE))
        else:
            columns["quantile_values"] = quantiles.cast(pa.list_(_QUANTILE))
        return columns
    columns["min"] = _floats(points, "min")
    columns["max"] = _floats(points, "max")
    if kind == _T.HISTOGRAM_DATA_POINTS:
        columns["bucket_counts"] = _int_lists(points, "bucket_counts", checks)
        bounds = points.column("explicit_bounds")
        columns["explicit_bounds"] = (
            pa.nulls(rows, pa.list_(pa.float64()))
            if bounds is None
            else bounds.cast(pa.list_(pa.float64()))
        )
        return columns
    columns["scale"] = _ints(points, "scale").fill_null(0).cast(pa.int32())
    columns["zero_count"] = _counts(points, "zero_count", checks)
    for side in ("positive", "negative"):
        columns[f"{side}_offset"] = _ints(points, f"{side}.offset").fill_null(0).cast(pa.int32())
        columns[f"{side}_bucket_counts"] = _int_lists(points, f"{side}.bucket_counts", checks)
    return columns


def _exemplars(
    tables: dict[int, Payload],
    kind: int,
    attrs_kind: int | None,
    point_ids: tuple[np.ndarray, np.ndarray],
    checks: RowChecks,
) -> pa.Array:
    rows = checks.table.rows
    exemplars = tables.get(kind)
    offsets = np.zeros(rows + 1, dtype=np.int32)
    if exemplars is None:
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array([], _EXEMPLAR))
    n = exemplars.rows
    ints, floats = _ints(exemplars, "int_value"), _floats(exemplars, "double_value")
    decoded = exemplars.ids("parent_id", "quasidelta", [ints, floats])
    if decoded is None:
        raise OtapDataError(f"{exemplars.name}: the required column 'parent_id' is missing")
    owner = parent_rows(point_ids[0], point_ids[1], decoded[0], exemplars.name, "data point")
    where = exemplars.name
    items = pa.StructArray.from_arrays(
        [
            timestamps(
                checks.times(
                    exemplars.column("time_unix_nano"), n, "time_unix_nano", (owner, where)
                )
            ),
            floats,
            ints,
            hex_ids(exemplars.column("trace_id"), 16, n, f"{where}.trace_id"),
            hex_ids(exemplars.column("span_id"), 8, n, f"{where}.span_id"),
            attributes_of(
                tables.get(attrs_kind) if attrs_kind is not None else None,
                own_ids(exemplars),
                n,
                where,
            ),
        ],
        fields=list(_EXEMPLAR),
    )
    order = np.argsort(owner, kind="stable")
    np.cumsum(np.bincount(owner, minlength=rows), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), items.take(pa.array(order)))
