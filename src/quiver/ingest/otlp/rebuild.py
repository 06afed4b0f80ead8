"""Rows of the telemetry layout -> OTLP export requests: the reverse of :mod:`.convert`.

The producer sinks (``kafka``, ``nats`` with an ``otlp_*`` format) and the ``otlp`` exporter
send telemetry rows on as OTLP. Rows are grouped back into resources (``service_name`` and
``resource_attributes``), scopes (``scope_name``, ``scope_version``, ``scope_attributes``)
and, for metrics, metrics (name, description, unit, type, temporality, monotonic); each row
becomes one span, data point or log record again. Rows keep their order within a group.

Attribute values are sent as OTLP strings: the layout keeps every attribute as text, so a
request rebuilt from it and converted again gives the same rows. A ``service_name`` that the
resource attributes lack (set by a processor) is sent as the ``service.name`` attribute.
A row that cannot be sent (an id that is not hex, an unknown signal) raises
:class:`RebuildError` naming the row and the column.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from quiver.ingest.arrow_layout import SIGNALS, Signal
from quiver.ingest.otlp.convert import Request

__all__ = [
    "RebuildError",
    "item_count",
    "rebuild_requests",
    "request_json",
    "signal_rows",
]

_SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUS_CODES = ("unset", "ok", "error")
_TEMPORALITIES = ("unspecified", "delta", "cumulative")
_METRIC_TYPES = ("gauge", "sum", "histogram", "exponential_histogram", "summary")


class RebuildError(ValueError):
    """A row that cannot be sent as OTLP: what is wrong, with its row and column."""


def _plain_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """The rows of ``batch`` as dicts, times as integers of nanoseconds since the epoch and
    maps as lists of (key, value) pairs."""
    names = batch.schema.names
    columns = [_plain_values(column) for column in batch.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _plain_values(column: pa.Array) -> list[Any]:
    kind = column.type
    if pa.types.is_timestamp(kind):
        return column.cast(pa.int64()).to_pylist()  # type: ignore[no-any-return]
    if pa.types.is_map(kind) and pa.types.is_string(kind.item_type):
        # flat keys and values sliced by the offsets: much faster than to_pylist of a map
        if column.offset:
            column = pa.concat_arrays([column])  # an array of its own, offsets from 0
        offsets = column.offsets.to_pylist()
        pairs = list(zip(column.keys.to_pylist(), column.items.to_pylist(), strict=True))
        valid = column.is_valid().to_pylist()
        return [
            pairs[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(column))
        ]
    if _has_timestamp(kind):
        return column.cast(_untimed(kind)).to_pylist()  # type: ignore[no-any-return]
    return column.to_pylist()  # type: ignore[no-any-return]


def _has_timestamp(kind: pa.DataType) -> bool:
    return bool(_untimed(kind) != kind)


def _untimed(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_timestamp(kind):
        return pa.int64()
    if pa.types.is_list(kind):
        return pa.list_(_untimed(kind.value_type))
    if pa.types.is_struct(kind):
        return pa.struct([pa.field(f.name, _untimed(f.type)) for f in kind])
    return kind


def signal_rows(batch: pa.RecordBatch) -> dict[Signal, list[dict[str, Any]]]:
    """The rows of ``batch`` by signal, in order; RebuildError when a row has none we know.

    Each signal's rows are taken apart on their own, without the columns that are null in
    all of them (the other signals' columns): far fewer values to turn into Python objects."""
    if "signal" not in batch.schema.names:
        raise RebuildError(
            "the rows have no `signal` column: OTLP formats send rows of the telemetry layout "
            "(from an otlp receiver, or a kafka/nats receiver with an otlp format)"
        )
    signals = batch.column("signal")
    known = pc.is_in(signals, pa.array(SIGNALS))
    if not pc.all(pc.fill_null(known, False)).as_py():
        bad = pc.indices_nonzero(pc.invert(pc.fill_null(known, False)))[0].as_py()
        raise RebuildError(
            f"row {bad + 1}: signal {signals[bad].as_py()!r} is not one of traces, metrics, logs"
        )
    out: dict[Signal, list[dict[str, Any]]] = {}
    present = pc.unique(signals).to_pylist()
    for signal in SIGNALS:
        if signal not in present:
            continue
        part = batch if len(present) == 1 else batch.filter(pc.equal(signals, signal))
        used = [
            name
            for name, column in zip(part.schema.names, part.columns, strict=True)
            if column.null_count < part.num_rows
        ]
        out[signal] = _plain_rows(part.select(used))
    return out


def rebuild_requests(signal: Signal, rows: list[dict[str, Any]]) -> Request:
    """One export request of ``signal`` holding ``rows`` (dicts of :func:`signal_rows`)."""
    if signal == "traces":
        return _traces(rows)
    if signal == "metrics":
        return _metrics(rows)
    return _logs(rows)


def item_count(request: Request) -> int:
    """The spans, data points or log records of ``request``."""
    if isinstance(request, ExportTraceServiceRequest):
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if isinstance(request, ExportLogsServiceRequest):
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def request_json(request: Request) -> bytes:
    """``request`` as OTLP/JSON: lowerCamelCase names, hex ids, enums as integers."""
    doc = json_format.MessageToDict(request, use_integers_for_enums=True)
    _ids_to_hex(doc)
    return orjson.dumps(doc)


def _ids_to_hex(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _ids_to_hex(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            elif key not in ("attributes", "body") and isinstance(value, dict | list):
                _ids_to_hex(value)


# ----------------------------------------------------------------------------- fields


def _attrs(target: Any, pairs: Iterable[tuple[str, str | None]] | Mapping[str, Any] | None) -> None:
    if not pairs:
        return
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    for key, value in items:
        kv: KeyValue = target.add()
        kv.key = key
        if value is not None:
            kv.value.string_value = str(value)


def _id(row: dict[str, Any], column: str, number: int, value: Any = None) -> bytes:
    text = row.get(column) if value is None else value
    if not text:
        return b""
    try:
        return bytes.fromhex(text)
    except (TypeError, ValueError) as exc:
        raise RebuildError(f"row {number}: {column} {text!r} is not a hex string") from exc


def _enum(names: tuple[str, ...], value: Any, column: str, number: int) -> int:
    if value is None:
        return 0
    text = str(value).lower()
    if text in names:
        return names.index(text)
    if text.isdigit():
        return int(text)
    raise RebuildError(f"row {number}: {column} {value!r} is not one of {', '.join(names)}")


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


class _Grouped:
    """Rows grouped by resource, then by scope, keeping first-seen order."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.resources: dict[Any, dict[Any, list[tuple[int, dict[str, Any]]]]] = {}
        for number, row in enumerate(rows, 1):
            attrs = row.get("resource_attributes") or []
            service = row.get("service_name")
            rkey = (service, tuple(attrs))
            skey = (
                row.get("scope_name"),
                row.get("scope_version"),
                tuple(row.get("scope_attributes") or []),
            )
            self.resources.setdefault(rkey, {}).setdefault(skey, []).append((number, row))

    def fill(self, request_list: Any, scopes_of: str) -> Iterable[tuple[Any, int, dict[str, Any]]]:
        """Add resources and scopes to ``request_list``; yield (scope message, number, row)."""
        for (service, attrs), scopes in self.resources.items():
            resource = request_list.add()
            _attrs(resource.resource.attributes, attrs)
            if service is not None and not any(k == "service.name" for k, _ in attrs):
                _attrs(resource.resource.attributes, [("service.name", service)])
            for (name, version, scope_attrs), items in scopes.items():
                scoped = getattr(resource, scopes_of).add()
                if name:
                    scoped.scope.name = name
                if version:
                    scoped.scope.version = version
                _attrs(scoped.scope.attributes, scope_attrs)
                for number, row in items:
                    yield scoped, number, row


# ----------------------------------------------------------------------------- signals


def _traces(rows: list[dict[str, Any]]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for scoped, n, row in _Grouped(rows).fill(request.resource_spans, "scope_spans"):
        span = scoped.spans.add()
        span.trace_id = _id(row, "trace_id", n)
        span.span_id = _id(row, "span_id", n)
        span.parent_span_id = _id(row, "parent_span_id", n)
        if row.get("trace_state"):
            span.trace_state = row["trace_state"]
        span.flags = _int(row.get("flags"))
        span.name = row.get("span_name") or ""
        span.kind = _enum(_SPAN_KINDS, row.get("span_kind"), "span_kind", n)
        start = _int(row.get("time"))
        span.start_time_unix_nano = start
        end = row.get("end_time")
        if end is None and row.get("duration_ns") is not None and start:
            end = start + row["duration_ns"]
        span.end_time_unix_nano = _int(end)
        _attrs(span.attributes, row.get("attributes"))
        span.dropped_attributes_count = _int(row.get("dropped_attributes_count"))
        for e in row.get("events") or []:
            event = span.events.add()
            event.time_unix_nano = _int(e.get("time"))
            event.name = e.get("name") or ""
            _attrs(event.attributes, e.get("attributes"))
        for link_row in row.get("links") or []:
            link = span.links.add()
            link.trace_id = _id(row, "links.trace_id", n, link_row.get("trace_id"))
            link.span_id = _id(row, "links.span_id", n, link_row.get("span_id"))
            if link_row.get("trace_state"):
                link.trace_state = link_row["trace_state"]
            _attrs(link.attributes, link_row.get("attributes"))
        span.dropped_events_count = _int(row.get("dropped_events_count"))
        span.dropped_links_count = _int(row.get("dropped_links_count"))
        span.status.code = _enum(_STATUS_CODES, row.get("status_code"), "status_code", n)
        if row.get("status_message"):
            span.status.message = row["status_message"]
    return request


def _metrics(rows: list[dict[str, Any]]) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    metrics: dict[Any, Any] = {}  # metric head -> data, in the current scope
    current: Any = None  # held, so no later scope message can take its id()
    for scoped, n, row in _Grouped(rows).fill(request.resource_metrics, "scope_metrics"):
        if scoped is not current:  # a scope's rows come together
            current, metrics = scoped, {}
        kind = row.get("metric_type")
        if kind not in _METRIC_TYPES:
            raise RebuildError(
                f"row {n}: metric_type {kind!r} is not one of {', '.join(_METRIC_TYPES)}"
            )
        if not row.get("metric_name"):
            raise RebuildError(f"row {n}: metric_name is empty; OTLP metrics need a name")
        head = (
            row["metric_name"],
            row.get("metric_description"),
            row.get("metric_unit"),
            kind,
            row.get("aggregation_temporality"),
            row.get("is_monotonic"),
        )
        data = metrics.get(head)
        if data is None:
            metric = scoped.metrics.add()
            metric.name = row["metric_name"]
            metric.description = row.get("metric_description") or ""
            metric.unit = row.get("metric_unit") or ""
            data = getattr(metric, kind)
            if kind in ("sum", "histogram", "exponential_histogram"):
                data.aggregation_temporality = _enum(
                    _TEMPORALITIES,
                    row.get("aggregation_temporality"),
                    "aggregation_temporality",
                    n,
                )
            if kind == "sum":
                data.is_monotonic = bool(row.get("is_monotonic"))
            data = metrics[head] = data
        _point(data.data_points.add(), kind, row, n)
    return request


def _point(p: Any, kind: str, row: dict[str, Any], n: int) -> None:
    p.time_unix_nano = _int(row.get("time"))
    p.start_time_unix_nano = _int(row.get("start_time"))
    p.flags = _int(row.get("flags"))
    _attrs(p.attributes, row.get("attributes"))
    if kind != "summary":
        for e in row.get("exemplars") or []:
            ex = p.exemplars.add()
            ex.time_unix_nano = _int(e.get("time"))
            if e.get("value_double") is not None:
                ex.as_double = e["value_double"]
            elif e.get("value_int") is not None:
                ex.as_int = e["value_int"]
            ex.trace_id = _id(row, "exemplars.trace_id", n, e.get("trace_id"))
            ex.span_id = _id(row, "exemplars.span_id", n, e.get("span_id"))
            _attrs(ex.filtered_attributes, e.get("filtered_attributes"))
    if kind in ("gauge", "sum"):
        if row.get("value_double") is not None:
            p.as_double = row["value_double"]
        elif row.get("value_int") is not None:
            p.as_int = row["value_int"]
        return
    p.count = _int(row.get("count"))
    if kind == "summary":
        p.sum = row.get("sum") or 0.0
        for q in row.get("quantile_values") or []:
            quantile = p.quantile_values.add()
            quantile.quantile = q.get("quantile") or 0.0
            quantile.value = q.get("value") or 0.0
        return
    for name in ("sum", "min", "max"):
        if row.get(name) is not None:
            setattr(p, name, row[name])
    if kind == "histogram":
        p.bucket_counts.extend(row.get("bucket_counts") or [])
        p.explicit_bounds.extend(row.get("explicit_bounds") or [])
        return
    p.scale = _int(row.get("scale"))
    p.zero_count = _int(row.get("zero_count"))
    p.positive.offset = _int(row.get("positive_offset"))
    p.positive.bucket_counts.extend(row.get("positive_bucket_counts") or [])
    p.negative.offset = _int(row.get("negative_offset"))
    p.negative.bucket_counts.extend(row.get("negative_bucket_counts") or [])


def _logs(rows: list[dict[str, Any]]) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    for scoped, n, row in _Grouped(rows).fill(request.resource_logs, "scope_logs"):
        log = scoped.log_records.add()
        log.time_unix_nano = _int(row.get("time"))
        log.observed_time_unix_nano = _int(row.get("observed_time"))
        log.severity_number = _int(row.get("severity_number"))
        if row.get("severity_text"):
            log.severity_text = row["severity_text"]
        if row.get("body") is not None:
            log.body.string_value = str(row["body"])
        _attrs(log.attributes, row.get("attributes"))
        log.dropped_attributes_count = _int(row.get("dropped_attributes_count"))
        log.flags = _int(row.get("flags"))
        log.trace_id = _id(row, "trace_id", n)
        log.span_id = _id(row, "span_id", n)
        if row.get("event_name"):
            log.event_name = row["event_name"]
    return request
