"""OTLP export requests -> OTAP ``BatchArrowRecords``, as an OTAP exporter sends them: the
client side of the protocol, for load generators and tests.

:class:`OtapEncoder` holds the Arrow IPC writers of one gRPC stream (the schema of each
payload type goes out once, in its first payload; later payloads reuse it). Tables follow
section 5 of the OTAP specification with its transport encodings: ``id`` columns
delta-encoded, attribute ``parent_id`` columns quasi-delta-encoded over rows sorted by type,
key and value, event and link ``parent_id`` columns quasi-delta-encoded by name / trace id,
attribute keys and span names dictionary-encoded. Written for clarity, item by item: it is
not the receiver's path.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2

__all__ = ["OtapEncoder", "cbor"]

_T = otap_pb2.ArrowPayloadType
_TS = pa.timestamp("ns")
_KEY = pa.dictionary(pa.uint16(), pa.string())

_ATTRS_16 = pa.schema(
    [
        ("parent_id", pa.uint16()),
        ("key", _KEY),
        ("type", pa.uint8()),
        ("str", pa.string()),
        ("int", pa.int64()),
        ("double", pa.float64()),
        ("bool", pa.bool_()),
        ("bytes", pa.binary()),
        ("ser", pa.binary()),
    ]
)
_ATTRS_32 = _ATTRS_16.set(0, pa.field("parent_id", pa.uint32()))
_RESOURCE = pa.struct(
    [("id", pa.uint16()), ("schema_url", pa.string()), ("dropped_attributes_count", pa.uint32())]
)
_SCOPE = pa.struct(
    [
        ("id", pa.uint16()),
        ("name", pa.string()),
        ("version", pa.string()),
        ("dropped_attributes_count", pa.uint32()),
    ]
)
_SPANS = pa.schema(
    [
        ("id", pa.uint16()),
        ("resource", _RESOURCE),
        ("scope", _SCOPE),
        ("schema_url", pa.string()),
        ("start_time_unix_nano", _TS),
        ("duration_time_unix_nano", pa.duration("ns")),
        ("trace_id", pa.binary(16)),
        ("span_id", pa.binary(8)),
        ("trace_state", pa.string()),
        ("parent_span_id", pa.binary(8)),
        ("flags", pa.uint32()),
        ("name", pa.dictionary(pa.uint16(), pa.string())),
        ("kind", pa.int32()),
        ("dropped_attributes_count", pa.uint32()),
        ("dropped_events_count", pa.uint32()),
        ("dropped_links_count", pa.uint32()),
        ("status", pa.struct([("code", pa.int32()), ("status_message", pa.string())])),
    ]
)
_EVENTS = pa.schema(
    [
        ("id", pa.uint32()),
        ("parent_id", pa.uint16()),
        ("time_unix_nano", _TS),
        ("name", pa.string()),
        ("dropped_attributes_count", pa.uint32()),
    ]
)
_LINKS = pa.schema(
    [
        ("id", pa.uint32()),
        ("parent_id", pa.uint16()),
        ("trace_id", pa.binary(16)),
        ("span_id", pa.binary(8)),
        ("trace_state", pa.string()),
        ("dropped_attributes_count", pa.uint32()),
    ]
)
_BODY = pa.struct(
    [
        ("type", pa.uint8()),
        ("str", pa.string()),
        ("int", pa.int64()),
        ("double", pa.float64()),
        ("bool", pa.bool_()),
        ("bytes", pa.binary()),
        ("ser", pa.binary()),
    ]
)
_LOGS = pa.schema(
    [
        ("id", pa.uint16()),
        ("resource", _RESOURCE),
        ("scope", _SCOPE),
        ("schema_url", pa.string()),
        ("time_unix_nano", _TS),
        ("observed_time_unix_nano", _TS),
        ("trace_id", pa.binary(16)),
        ("span_id", pa.binary(8)),
        ("severity_number", pa.int32()),
        ("severity_text", pa.string()),
        ("body", _BODY),
        ("dropped_attributes_count", pa.uint32()),
        ("flags", pa.uint32()),
        ("event_name", pa.string()),
    ]
)

_METRICS = pa.schema(
    [
        ("id", pa.uint16()),
        ("resource", _RESOURCE),
        ("scope", _SCOPE),
        ("schema_url", pa.string()),
        ("metric_type", pa.uint8()),
        ("name", pa.string()),
        ("description", pa.string()),
        ("unit", pa.string()),
        ("aggregation_temporality", pa.int32()),
        ("is_monotonic", pa.bool_()),
    ]
)
_POINT = [
    ("id", pa.uint32()),
    ("parent_id", pa.uint16()),
    ("start_time_unix_nano", _TS),
    ("time_unix_nano", _TS),
]
_NUMBER_POINTS = pa.schema(
    [*_POINT, ("int_value", pa.int64()), ("double_value", pa.float64()), ("flags", pa.uint32())]
)
_HISTOGRAM_POINTS = pa.schema(
    [
        *_POINT,
        ("count", pa.uint64()),
        ("sum", pa.float64()),
        ("bucket_counts", pa.list_(pa.uint64())),
        ("explicit_bounds", pa.list_(pa.float64())),
        ("flags", pa.uint32()),
        ("min", pa.float64()),
        ("max", pa.float64()),
    ]
)
_BUCKETS = pa.struct([("offset", pa.int32()), ("bucket_counts", pa.list_(pa.uint64()))])
_EXP_HISTOGRAM_POINTS = pa.schema(
    [
        *_POINT,
        ("count", pa.uint64()),
        ("sum", pa.float64()),
        ("scale", pa.int32()),
        ("zero_count", pa.uint64()),
        ("positive", _BUCKETS),
        ("negative", _BUCKETS),
        ("flags", pa.uint32()),
        ("min", pa.float64()),
        ("max", pa.float64()),
    ]
)
_SUMMARY_POINTS = pa.schema(
    [
        *_POINT,
        ("count", pa.uint64()),
        ("sum", pa.float64()),
        ("quantile", pa.list_(pa.struct([("quantile", pa.float64()), ("value", pa.float64())]))),
        ("flags", pa.uint32()),
    ]
)
_EXEMPLARS = pa.schema(
    [
        ("id", pa.uint32()),
        ("parent_id", pa.uint32()),
        ("time_unix_nano", _TS),
        ("int_value", pa.int64()),
        ("double_value", pa.float64()),
        ("span_id", pa.binary(8)),
        ("trace_id", pa.binary(16)),
    ]
)
_METRIC_TYPES = {"gauge": 1, "sum": 2, "histogram": 3, "exponential_histogram": 4, "summary": 5}

_KINDS = {
    "string_value": 1,
    "int_value": 2,
    "double_value": 3,
    "bool_value": 4,
    "kvlist_value": 5,
    "array_value": 6,
    "bytes_value": 7,
}


def cbor(value: Any) -> bytes:
    """A JSON-like value (``dict``, ``list``, ``str``, ``bytes``, numbers, ``None``) as CBOR."""
    out = bytearray()

    def head(major: int, n: int) -> None:
        if n < 24:
            out.append(major << 5 | n)
        elif n < 1 << 8:
            out.extend((major << 5 | 24, n))
        elif n < 1 << 16:
            out.append(major << 5 | 25)
            out.extend(struct.pack(">H", n))
        elif n < 1 << 32:
            out.append(major << 5 | 26)
            out.extend(struct.pack(">I", n))
        else:
            out.append(major << 5 | 27)
            out.extend(struct.pack(">Q", n))

    def put(v: Any) -> None:
        if v is None:
            out.append(0xF6)
        elif v is True or v is False:
            out.append(0xF5 if v else 0xF4)
        elif isinstance(v, int):
            head(0, v) if v >= 0 else head(1, -1 - v)
        elif isinstance(v, float):
            out.append(0xFB)
            out.extend(struct.pack(">d", v))
        elif isinstance(v, bytes):
            head(2, len(v))
            out.extend(v)
        elif isinstance(v, str):
            data = v.encode()
            head(3, len(data))
            out.extend(data)
        elif isinstance(v, list):
            head(4, len(v))
            for item in v:
                put(item)
        else:
            head(5, len(v))
            for key, item in v.items():
                put(key)
                put(item)

    put(value)
    return bytes(out)


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def _any_value(value: AnyValue) -> dict[str, Any]:
    """An AnyValue as the ``type`` and active column of an OTAP AnyValue."""
    kind = value.WhichOneof("value")
    if kind is None:
        return {"type": 0}
    code = _KINDS[kind]
    if code == 1:
        return {"type": 1, "str": value.string_value}
    if code == 2:
        return {"type": 2, "int": value.int_value}
    if code == 3:
        return {"type": 3, "double": value.double_value}
    if code == 4:
        return {"type": 4, "bool": value.bool_value}
    if code == 7:
        return {"type": 7, "bytes": value.bytes_value}
    return {"type": code, "ser": cbor(_plain(value))}


class _Attributes:
    """Rows of one attribute table; :meth:`table` sorts and quasi-delta-encodes them."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.rows: list[dict[str, Any]] = []

    def add(self, parent: int, kvs: Iterable[KeyValue]) -> None:
        for kv in kvs:
            self.rows.append({"parent_id": parent, "key": kv.key, **_any_value(kv.value)})

    def table(self) -> pa.RecordBatch | None:
        if not self.rows:
            return None
        active = ("", "str", "int", "double", "bool", "ser", "ser", "bytes")

        def value(row: dict[str, Any]) -> Any:
            column = active[row["type"]]
            return (column, row.get(column)) if column else ("", None)

        rows = sorted(
            self.rows, key=lambda r: (r["type"], r["key"], repr(value(r)), r["parent_id"])
        )
        previous: dict[str, Any] | None = None
        for row in rows:
            parent = row["parent_id"]
            delta = (
                previous is not None
                and row["type"] not in (0, 5, 6)
                and previous["type"] == row["type"]
                and previous["key"] == row["key"]
                and value(previous) == value(row)
                and value(row)[1] is not None
            )
            row["encoded"] = parent - previous["parent_id"] if delta and previous else parent
            previous = row
        columns = {name: [r.get(name) for r in rows] for name in self.schema.names}
        columns["parent_id"] = [r["encoded"] for r in rows]
        return pa.record_batch(
            [pa.array(columns[f.name], f.type) for f in self.schema], schema=self.schema
        )


def _delta(ids: list[int]) -> list[int]:
    return [b - a for a, b in zip([0, *ids], ids, strict=False)]


def _quasi_delta(parents: list[int], keys: list[Any]) -> tuple[list[int], list[int]]:
    """The row order (sorted by key then parent) and the encoded parent ids in that order."""
    order = sorted(range(len(parents)), key=lambda i: (repr(keys[i]), parents[i]))
    encoded = []
    for n, i in enumerate(order):
        before = order[n - 1] if n else None
        key = keys[i]
        unset = key is None or (isinstance(key, tuple) and None in key)  # nulls never match
        same = before is not None and not unset and keys[before] == key
        encoded.append(parents[i] - parents[before] if same and before is not None else parents[i])
    return order, encoded


class OtapEncoder:
    """The IPC writers of one OTAP gRPC stream; see the module's doc."""

    def __init__(self) -> None:
        self._batch_id = 0
        self._writers: dict[int, tuple[io.BytesIO, ipc.RecordBatchStreamWriter]] = {}

    def _payload(self, kind: int, batch: pa.RecordBatch) -> otap_pb2.ArrowPayload:
        writer = self._writers.get(kind)
        if writer is None:
            sink = io.BytesIO()
            writer = self._writers[kind] = (sink, ipc.new_stream(sink, batch.schema))
        sink, stream = writer
        stream.write_batch(batch)
        record = sink.getvalue()
        sink.seek(0)
        sink.truncate()
        return otap_pb2.ArrowPayload(schema_id=f"{kind}:0", type=kind, record=record)  # type: ignore[arg-type]

    def _records(self, tables: dict[int, pa.RecordBatch | None]) -> otap_pb2.BatchArrowRecords:
        bar = otap_pb2.BatchArrowRecords(batch_id=self._batch_id)
        self._batch_id += 1
        for kind, table in tables.items():
            if table is not None and table.num_rows:
                bar.arrow_payloads.append(self._payload(kind, table))
        return bar

    def traces(self, request: ExportTraceServiceRequest) -> otap_pb2.BatchArrowRecords:
        """One BatchArrowRecords holding the spans of ``request``."""
        spans: dict[str, list[Any]] = {name: [] for name in _SPANS.names}
        resource_attrs, scope_attrs = _Attributes(_ATTRS_16), _Attributes(_ATTRS_16)
        span_attrs = _Attributes(_ATTRS_16)
        event_attrs, link_attrs = _Attributes(_ATTRS_32), _Attributes(_ATTRS_32)
        events: dict[str, list[Any]] = {name: [] for name in [*_EVENTS.names, "attributes"]}
        links: dict[str, list[Any]] = {name: [] for name in [*_LINKS.names, "attributes"]}
        scope_id = 0
        for resource_id, rs in enumerate(request.resource_spans):
            resource_attrs.add(resource_id, rs.resource.attributes)
            resource = {
                "id": resource_id if rs.resource.attributes else None,
                "schema_url": rs.schema_url or None,
                "dropped_attributes_count": rs.resource.dropped_attributes_count or None,
            }
            for ss in rs.scope_spans:
                scope_attrs.add(scope_id, ss.scope.attributes)
                scope = {
                    "id": scope_id if ss.scope.attributes else None,
                    "name": ss.scope.name or None,
                    "version": ss.scope.version or None,
                    "dropped_attributes_count": ss.scope.dropped_attributes_count or None,
                }
                scope_id += 1
                for span in ss.spans:
                    sid = len(spans["id"])
                    span_attrs.add(sid, span.attributes)
                    for e in span.events:
                        events["attributes"].append(e.attributes)
                        events["id"].append(len(events["id"]))
                        events["parent_id"].append(sid)
                        events["time_unix_nano"].append(e.time_unix_nano)
                        events["name"].append(e.name)
                        events["dropped_attributes_count"].append(e.dropped_attributes_count)
                    for link in span.links:
                        links["attributes"].append(link.attributes)
                        links["id"].append(len(links["id"]))
                        links["parent_id"].append(sid)
                        links["trace_id"].append(link.trace_id or None)
                        links["span_id"].append(link.span_id or None)
                        links["trace_state"].append(link.trace_state or None)
                        links["dropped_attributes_count"].append(link.dropped_attributes_count)
                    start, end = span.start_time_unix_nano, span.end_time_unix_nano
                    row = {
                        "id": sid,
                        "resource": resource,
                        "scope": scope,
                        "schema_url": ss.schema_url or None,
                        "start_time_unix_nano": start,
                        "duration_time_unix_nano": end - start,
                        "trace_id": span.trace_id,
                        "span_id": span.span_id,
                        "trace_state": span.trace_state or None,
                        "parent_span_id": span.parent_span_id or None,
                        "flags": span.flags,
                        "name": span.name,
                        "kind": span.kind,
                        "dropped_attributes_count": span.dropped_attributes_count,
                        "dropped_events_count": span.dropped_events_count,
                        "dropped_links_count": span.dropped_links_count,
                        "status": {
                            "code": span.status.code,
                            "status_message": span.status.message or None,
                        },
                    }
                    for name, value in row.items():
                        spans[name].append(value)
        return self._records(
            {
                _T.SPANS: _root(_SPANS, spans),
                _T.RESOURCE_ATTRS: resource_attrs.table(),
                _T.SCOPE_ATTRS: scope_attrs.table(),
                _T.SPAN_ATTRS: span_attrs.table(),
                _T.SPAN_EVENTS: _children(_EVENTS, events, "name", event_attrs),
                _T.SPAN_EVENT_ATTRS: event_attrs.table(),
                _T.SPAN_LINKS: _children(_LINKS, links, "trace_id", link_attrs),
                _T.SPAN_LINK_ATTRS: link_attrs.table(),
            }
        )

    def logs(self, request: ExportLogsServiceRequest) -> otap_pb2.BatchArrowRecords:
        """One BatchArrowRecords holding the log records of ``request``."""
        logs: dict[str, list[Any]] = {name: [] for name in _LOGS.names}
        resource_attrs, scope_attrs = _Attributes(_ATTRS_16), _Attributes(_ATTRS_16)
        log_attrs = _Attributes(_ATTRS_16)
        scope_id = 0
        for resource_id, rl in enumerate(request.resource_logs):
            resource_attrs.add(resource_id, rl.resource.attributes)
            resource = {"id": resource_id, "schema_url": rl.schema_url or None}
            for sl in rl.scope_logs:
                scope_attrs.add(scope_id, sl.scope.attributes)
                scope = {
                    "id": scope_id,
                    "name": sl.scope.name or None,
                    "version": sl.scope.version or None,
                }
                scope_id += 1
                for log in sl.log_records:
                    lid = len(logs["id"])
                    log_attrs.add(lid, log.attributes)
                    body = _any_value(log.body) if log.HasField("body") else None
                    row = {
                        "id": lid,
                        "resource": resource,
                        "scope": scope,
                        "schema_url": sl.schema_url or None,
                        "time_unix_nano": log.time_unix_nano,
                        "observed_time_unix_nano": log.observed_time_unix_nano,
                        "trace_id": log.trace_id or None,
                        "span_id": log.span_id or None,
                        "severity_number": log.severity_number,
                        "severity_text": log.severity_text or None,
                        "body": body,
                        "dropped_attributes_count": log.dropped_attributes_count,
                        "flags": log.flags,
                        "event_name": log.event_name or None,
                    }
                    for name, value in row.items():
                        logs[name].append(value)
        return self._records(
            {
                _T.LOGS: _root(_LOGS, logs),
                _T.RESOURCE_ATTRS: resource_attrs.table(),
                _T.SCOPE_ATTRS: scope_attrs.table(),
                _T.LOG_ATTRS: log_attrs.table(),
            }
        )

    def metrics(self, request: ExportMetricsServiceRequest) -> otap_pb2.BatchArrowRecords:
        """One BatchArrowRecords holding the data points of ``request``."""
        metrics: dict[str, list[Any]] = {name: [] for name in _METRICS.names}
        resource_attrs, scope_attrs = _Attributes(_ATTRS_16), _Attributes(_ATTRS_16)
        number, histogram = _Points(_NUMBER_POINTS), _Points(_HISTOGRAM_POINTS)
        exp_histogram, summary = _Points(_EXP_HISTOGRAM_POINTS), _Points(_SUMMARY_POINTS)
        scope_id = 0
        for resource_id, rm in enumerate(request.resource_metrics):
            resource_attrs.add(resource_id, rm.resource.attributes)
            resource = {"id": resource_id, "schema_url": rm.schema_url or None}
            for sm in rm.scope_metrics:
                scope_attrs.add(scope_id, sm.scope.attributes)
                scope = {
                    "id": scope_id,
                    "name": sm.scope.name or None,
                    "version": sm.scope.version or None,
                }
                scope_id += 1
                for metric in sm.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is None:
                        continue
                    data = getattr(metric, kind)
                    mid = len(metrics["id"])
                    row = {
                        "id": mid,
                        "resource": resource,
                        "scope": scope,
                        "schema_url": sm.schema_url or None,
                        "metric_type": _METRIC_TYPES[kind],
                        "name": metric.name,
                        "description": metric.description or None,
                        "unit": metric.unit or None,
                        "aggregation_temporality": getattr(data, "aggregation_temporality", None),
                        "is_monotonic": getattr(data, "is_monotonic", None),
                    }
                    for name, value in row.items():
                        metrics[name].append(value)
                    for p in data.data_points:
                        if kind in ("gauge", "sum"):
                            which = p.WhichOneof("value")
                            number.add(
                                mid,
                                p,
                                {
                                    "int_value": p.as_int if which == "as_int" else None,
                                    "double_value": p.as_double if which == "as_double" else None,
                                },
                            )
                        elif kind == "histogram":
                            histogram.add(
                                mid,
                                p,
                                {
                                    "count": p.count,
                                    "sum": p.sum if p.HasField("sum") else None,
                                    "bucket_counts": list(p.bucket_counts),
                                    "explicit_bounds": list(p.explicit_bounds),
                                    "min": p.min if p.HasField("min") else None,
                                    "max": p.max if p.HasField("max") else None,
                                },
                            )
                        elif kind == "exponential_histogram":
                            exp_histogram.add(
                                mid,
                                p,
                                {
                                    "count": p.count,
                                    "sum": p.sum if p.HasField("sum") else None,
                                    "scale": p.scale,
                                    "zero_count": p.zero_count,
                                    "positive": {
                                        "offset": p.positive.offset,
                                        "bucket_counts": list(p.positive.bucket_counts),
                                    },
                                    "negative": {
                                        "offset": p.negative.offset,
                                        "bucket_counts": list(p.negative.bucket_counts),
                                    },
                                    "min": p.min if p.HasField("min") else None,
                                    "max": p.max if p.HasField("max") else None,
                                },
                            )
                        else:
                            summary.add(
                                mid,
                                p,
                                {
                                    "count": p.count,
                                    "sum": p.sum,
                                    "quantile": [
                                        {"quantile": q.quantile, "value": q.value}
                                        for q in p.quantile_values
                                    ],
                                },
                            )
        tables: dict[int, pa.RecordBatch | None] = {
            _T.UNIVARIATE_METRICS: _root(_METRICS, metrics) if metrics["id"] else None,
            _T.RESOURCE_ATTRS: resource_attrs.table(),
            _T.SCOPE_ATTRS: scope_attrs.table(),
        }
        for points, kinds in (
            (
                number,
                (
                    _T.NUMBER_DATA_POINTS,
                    _T.NUMBER_DP_ATTRS,
                    _T.NUMBER_DP_EXEMPLARS,
                    _T.NUMBER_DP_EXEMPLAR_ATTRS,
                ),
            ),
            (
                histogram,
                (
                    _T.HISTOGRAM_DATA_POINTS,
                    _T.HISTOGRAM_DP_ATTRS,
                    _T.HISTOGRAM_DP_EXEMPLARS,
                    _T.HISTOGRAM_DP_EXEMPLAR_ATTRS,
                ),
            ),
            (
                exp_histogram,
                (
                    _T.EXP_HISTOGRAM_DATA_POINTS,
                    _T.EXP_HISTOGRAM_DP_ATTRS,
                    _T.EXP_HISTOGRAM_DP_EXEMPLARS,
                    _T.EXP_HISTOGRAM_DP_EXEMPLAR_ATTRS,
                ),
            ),
            (summary, (_T.SUMMARY_DATA_POINTS, _T.SUMMARY_DP_ATTRS, None, None)),
        ):
            for kind, table in zip(kinds, points.tables(), strict=True):
                if kind is not None:
                    tables[kind] = table
        return self._records(tables)


class _Points:
    """One data point table of a metrics batch, with its attributes and exemplars."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.columns: dict[str, list[Any]] = {name: [] for name in schema.names}
        self.attrs = _Attributes(_ATTRS_32)
        self.exemplars: dict[str, list[Any]] = {
            name: [] for name in [*_EXEMPLARS.names, "attributes", "key"]
        }
        self.exemplar_attrs = _Attributes(_ATTRS_32)

    def add(self, metric_id: int, point: Any, row: dict[str, Any]) -> None:
        pid = len(self.columns["id"])
        self.attrs.add(pid, point.attributes)
        for name, value in {
            "id": pid,
            "parent_id": metric_id,
            "start_time_unix_nano": point.start_time_unix_nano,
            "time_unix_nano": point.time_unix_nano,
            "flags": point.flags,
            **row,
        }.items():
            self.columns[name].append(value)
        for e in getattr(point, "exemplars", ()):
            which = e.WhichOneof("value")
            ints = e.as_int if which == "as_int" else None
            floats = e.as_double if which == "as_double" else None
            for name, value in {
                "id": len(self.exemplars["id"]),
                "parent_id": pid,
                "time_unix_nano": e.time_unix_nano,
                "int_value": ints,
                "double_value": floats,
                "span_id": e.span_id or None,
                "trace_id": e.trace_id or None,
                "attributes": e.filtered_attributes,
                "key": (ints, floats),
            }.items():
                self.exemplars[name].append(value)

    def tables(self) -> tuple[pa.RecordBatch | None, ...]:
        if not self.columns["id"]:
            return None, None, None, None
        columns = dict(self.columns)
        columns["id"] = _delta(columns["id"])
        columns["parent_id"] = _delta(columns["parent_id"])
        points = pa.record_batch(
            [pa.array(columns[f.name], f.type) for f in self.schema], schema=self.schema
        )
        exemplars = _children(_EXEMPLARS, self.exemplars, "key", self.exemplar_attrs)
        return points, self.attrs.table(), exemplars, self.exemplar_attrs.table()


def _root(schema: pa.Schema, columns: dict[str, list[Any]]) -> pa.RecordBatch:
    """A root table with its ids (``id``, ``resource.id``, ``scope.id``) delta-encoded."""
    columns = dict(columns)
    columns["id"] = _delta(columns["id"])
    for name in ("resource", "scope"):
        structs = [dict(s) for s in columns[name]]
        previous = 0
        for s in structs:
            if s["id"] is not None:
                s["id"], previous = s["id"] - previous, s["id"]
        columns[name] = structs
    return pa.record_batch([pa.array(columns[f.name], f.type) for f in schema], schema=schema)


def _children(
    schema: pa.Schema, columns: dict[str, list[Any]], key: str, attrs: _Attributes
) -> pa.RecordBatch | None:
    """Events or links, sorted by ``key`` then parent with their parent ids quasi-delta
    encoded, numbered in that order (ids delta-encoded); their attributes go to ``attrs``."""
    if not columns["id"]:
        return None
    order, encoded = _quasi_delta(columns["parent_id"], columns[key])
    ordered = {name: [values[i] for i in order] for name, values in columns.items()}
    for new_id, kvs in enumerate(ordered["attributes"]):
        attrs.add(new_id, kvs)
    ordered["parent_id"] = encoded
    ordered["id"] = _delta(list(range(len(order))))
    return pa.record_batch([pa.array(ordered[f.name], f.type) for f in schema], schema=schema)
