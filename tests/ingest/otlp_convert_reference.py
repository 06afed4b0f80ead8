"""The row-by-row OTLP conversion as it was before logs and metrics were converted column by
column: the reference the equality tests compare :mod:`quiver.ingest.otlp.convert` with.

OTLP export requests -> rows of the telemetry layout (:mod:`quiver.ingest.arrow_layout`).

One row per span, per metric data point and per log record; resource and scope fields are
repeated on each row. Items whose ids cannot be right (a trace id that is not 16 bytes or is
all zeros, a span id that is not 8 bytes ...), log records and data points holding a time past
2262 or a count past int64, and metrics without a name are rejected one by one: the rest of
the request is kept, and the receiver answers with ``partial_success`` carrying the count and
the first reasons.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import orjson
import pyarrow as pa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from quiver.ingest.arrow_layout import Signal, telemetry_batch
from quiver.ingest.otlp.decode import BadRequestError, Request

__all__ = ["Conversion", "Request", "convert_request"]

_SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUS_CODES = ("unset", "ok", "error")
_TEMPORALITIES = ("unspecified", "delta", "cumulative")
_MAX_REASONS = 3
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)


@dataclass
class Conversion:
    """The rows of one request and what was rejected from it."""

    batch: pa.RecordBatch | None  # None: nothing accepted
    accepted: int = 0
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, where: str, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < _MAX_REASONS:
            self.reasons.append(f"{where}: {reason}")

    @property
    def error_message(self) -> str:
        """The ``partial_success.error_message``: how many were rejected and why."""
        if not self.rejected:
            return ""
        more = self.rejected - len(self.reasons)
        tail = f"; and {more} more" if more > 0 else ""
        return f"{self.rejected} rejected: " + "; ".join(self.reasons) + tail


def convert_request(signal: Signal, request: Request) -> Conversion:
    """Rows of the telemetry layout for one decoded export request of ``signal``."""
    if signal == "traces":  # an ExportTraceServiceRequest, or its wire.TracesRequest view
        return _spans(request, encoded=not isinstance(request, ExportTraceServiceRequest))
    if signal == "metrics":
        assert isinstance(request, ExportMetricsServiceRequest)
        return _metrics(request)
    assert isinstance(request, ExportLogsServiceRequest)
    return _logs(request)


# ----------------------------------------------------------------------------- values


def _plain(value: AnyValue) -> Any:
    """An AnyValue as a JSON-able Python value (bytes as base64)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def value_text(value: AnyValue) -> str | None:
    """An AnyValue as the text a map column holds: strings as they are, the rest as JSON."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind is None:
        return None
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return orjson.dumps(_plain(value)).decode()


def _attrs(kvs: Iterable[KeyValue]) -> list[tuple[str, str | None]]:
    return [(kv.key, value_text(kv.value)) for kv in kvs]


class _AttributeColumn:
    """A ``map<string, string>`` column built flat (offsets, keys, values): no tuple or list
    per row, and one Arrow conversion per batch. Attributes repeat a lot (``http.method:
    GET``): each distinct encoded key-value pair of a request is read once."""

    def __init__(self) -> None:
        self.offsets = [0]
        self.keys: list[str] = []
        self.values: list[str | None] = []
        self._seen: dict[bytes, tuple[str, str | None]] = {}

    def add(self, kvs: Iterable[KeyValue]) -> None:
        keys, values, seen = self.keys, self.values, self._seen
        for kv in kvs:
            raw = kv.SerializeToString()
            pair = seen.get(raw)
            if pair is None:
                value = kv.value
                if value.WhichOneof("value") == "string_value":
                    pair = seen[raw] = (kv.key, value.string_value)
                else:
                    pair = seen[raw] = (kv.key, value_text(value))
            keys.append(pair[0])
            values.append(pair[1])
        self.offsets.append(len(keys))

    def finish(self) -> pa.Array:
        return pa.MapArray.from_arrays(
            pa.array(self.offsets, pa.int32()),
            pa.array(self.keys, pa.string()),
            pa.array(self.values, pa.string()),
        )


class _Repeated:
    """A column whose values repeat (resource and scope fields): each distinct value is
    converted once and the rows take it by index."""

    def __init__(self) -> None:
        self.distinct: list[Any] = []
        self.rows: list[int] = []

    def new(self, value: Any) -> None:
        self.distinct.append(value)

    def add(self, rows: int) -> None:
        """``rows`` more rows take the last distinct value."""
        self.rows.extend([len(self.distinct) - 1] * rows)

    def finish(self, kind: pa.DataType) -> pa.Array:
        return pa.array(self.distinct, kind).take(pa.array(self.rows, pa.int32()))


def _service(kvs: Iterable[KeyValue]) -> str | None:
    for kv in kvs:
        if kv.key == "service.name":
            return value_text(kv.value)
    return None


def _nested_id_problem(items: Iterable[Any], field: str) -> str | None:
    for j, item in enumerate(items):
        problem = _id_problem("trace_id", item.trace_id, 16, False) or _id_problem(
            "span_id", item.span_id, 8, False
        )
        if problem:
            return f"{field}[{j}].{problem}"
    return None


def _hex(raw: bytes) -> str | None:
    return raw.hex() if raw else None


def _id_problem(name: str, raw: bytes, size: int, required: bool) -> str | None:
    """Why an id cannot be right, or None."""
    if not raw:
        return f"{name} is missing" if required else None
    if len(raw) != size:
        shown = raw[:size].hex() + ("…" if len(raw) > size else "")  # not all of a huge one
        return f"{name} is {len(raw)} bytes ({shown!r}); it must be {size} ({size * 2} hex digits)"
    if required and raw == bytes(size):
        return f"{name} is all zeros, which OTLP defines as invalid"
    return None


_LATEST = (1 << 63) - 1


def _value_problem(item: Any, kind: str = "") -> str | None:
    """Why a time (or, of a data point of metric type ``kind``, a count or an exemplar's time)
    of ``item`` is past what the layout's int64 columns hold, or None: each checked in turn."""
    names = ("start_time_unix_nano", "time_unix_nano")
    if not kind:  # a log record
        names = ("time_unix_nano", "observed_time_unix_nano")
    times = [(n, getattr(item, n)) for n in names]
    if kind and kind != "summary":
        times += [
            (f"exemplars[{j}].time_unix_nano", e.time_unix_nano)
            for j, e in enumerate(item.exemplars)
        ]
    counts = []
    if kind in ("histogram", "exponential_histogram", "summary"):
        counts.append(("count", item.count))
    if kind == "histogram":
        counts += [(f"bucket_counts[{k}]", n) for k, n in enumerate(item.bucket_counts)]
    if kind == "exponential_histogram":
        counts.append(("zero_count", item.zero_count))
        counts += [
            (f"positive.bucket_counts[{k}]", n) for k, n in enumerate(item.positive.bucket_counts)
        ]
        counts += [
            (f"negative.bucket_counts[{k}]", n) for k, n in enumerate(item.negative.bucket_counts)
        ]
    for name, value in times:
        if value > _LATEST:
            return (
                f"{name} is {value}, which is past 2262-04-11T23:47:16.854775807Z, the latest a "
                "nanosecond timestamp holds (times are nanoseconds since 1970-01-01 UTC)"
            )
    for name, value in counts:
        if value > _LATEST:
            return f"{name} is {value}, more than {_LATEST}, the largest count a row holds (int64)"
    return None


class _Columns:
    """Column lists appended row by row."""

    def __init__(self, names: Iterable[str]) -> None:
        self.data: dict[str, list[Any]] = {n: [] for n in names}
        self.rows = 0

    def add(self, **values: Any) -> None:
        for name, column in self.data.items():
            column.append(values.get(name))
        self.rows += 1


class _Envelope:
    """The columns every signal shares: resource and scope fields, converted once per scope
    and taken by index, and the items' attributes, built flat."""

    def __init__(self) -> None:
        self.resources = _Repeated()
        self.scopes = _Repeated()
        self.attributes = _AttributeColumn()

    def resource(self, kvs: Iterable[KeyValue]) -> None:
        self.resources.new((_service(kvs), _attrs(kvs)))

    def scope(self, scope: Any) -> None:
        self.scopes.new((scope.name or None, scope.version or None, _attrs(scope.attributes)))

    def rows_added(self, rows: int) -> None:
        """``rows`` items of the current scope were kept."""
        self.resources.add(rows)
        self.scopes.add(rows)

    def finish(
        self,
        out: Conversion,
        columns: dict[str, Any],
        rows: int,
        signal: Signal,
        attributes: pa.Array | None = None,
    ) -> Conversion:
        """The batch of ``rows`` rows: ``columns`` plus the envelope's (``attributes``: the
        items' attributes when built apart, else the envelope's own column)."""
        out.accepted = rows
        if not rows:
            return out
        data: dict[str, Any] = dict(columns)
        data["signal"] = pa.array([signal] * rows, pa.string())
        data["attributes"] = self.attributes.finish() if attributes is None else attributes
        res = self.resources.finish(_RESOURCE_TYPE)
        data["service_name"], data["resource_attributes"] = res.field(0), res.field(1)
        scope_rows = self.scopes.finish(_SCOPE_TYPE)
        data["scope_name"], data["scope_version"] = scope_rows.field(0), scope_rows.field(1)
        data["scope_attributes"] = scope_rows.field(2)
        out.batch = telemetry_batch(data, rows)
        return out


def _scopes(
    envelope: _Envelope, groups: Iterable[Any], field: str
) -> Iterator[tuple[int, int, Any]]:
    """``(r, s, scoped)`` for each scope group ``s`` (``scope_spans`` ...: ``field``) of each
    resource group ``r``, the envelope moved on to its resource and scope."""
    for r, group in enumerate(groups):
        envelope.resource(group.resource.attributes)
        for s, scoped in enumerate(getattr(group, field)):
            envelope.scope(scoped.scope)
            yield r, s, scoped


# ----------------------------------------------------------------------------- traces


_ATTRS_TYPE = pa.map_(pa.string(), pa.string())
_RESOURCE_TYPE = pa.struct([("service_name", pa.string()), ("attributes", _ATTRS_TYPE)])
_SCOPE_TYPE = pa.struct(
    [("name", pa.string()), ("version", pa.string()), ("attributes", _ATTRS_TYPE)]
)


def _spans(request: Any, encoded: bool) -> Conversion:
    """Column by column: each field is read for all the kept spans of the request in one
    comprehension, attributes are deduplicated by Arrow in their encoded form (each distinct
    key-value pair is decoded once; ``encoded``: the request holds them encoded already, see
    :mod:`quiver.ingest.otlp.wire`), and only spans with events or links build nested rows."""
    out = Conversion(None)
    envelope = _Envelope()
    kept: list[Any] = []
    tids: list[bytes] = []
    sids: list[bytes] = []
    pids: list[bytes] = []
    for r, s, ss in _scopes(envelope, request.resource_spans, "scope_spans"):
        spans = list(ss.spans)
        t = [span.trace_id for span in spans]
        d = [span.span_id for span in spans]
        p = [span.parent_span_id for span in spans]
        bad = [
            i
            for i, (tid, sid, pid) in enumerate(zip(t, d, p, strict=True))
            if len(tid) != 16
            or tid == _ZERO_TRACE
            or len(sid) != 8
            or sid == _ZERO_SPAN
            or (pid and len(pid) != 8)
            or _nested_id_problem(spans[i].links, "links")
        ]
        if bad:
            for i in bad:
                problem = (
                    _id_problem("trace_id", t[i], 16, True)
                    or _id_problem("span_id", d[i], 8, True)
                    or _id_problem("parent_span_id", p[i], 8, False)
                    or _nested_id_problem(spans[i].links, "links")
                )
                out.reject(f"resource_spans[{r}].scope_spans[{s}].spans[{i}]", str(problem))
            keep = sorted(set(range(len(spans))) - set(bad))
            spans = [spans[i] for i in keep]
            t, d, p = [t[i] for i in keep], [d[i] for i in keep], [p[i] for i in keep]
        kept += spans
        tids += t
        sids += d
        pids += p
        envelope.rows_added(len(spans))
    starts = [span.start_time_unix_nano for span in kept]
    ends = [span.end_time_unix_nano for span in kept]
    statuses = [span.status for span in kept]
    columns: dict[str, Any] = {
        "time": starts,
        "dropped_attributes_count": [span.dropped_attributes_count for span in kept],
        "trace_id": [tid.hex() for tid in tids],
        "span_id": [sid.hex() for sid in sids],
        "flags": [span.flags for span in kept],
        "parent_span_id": [pid.hex() if pid else None for pid in pids],
        "trace_state": [span.trace_state or None for span in kept],
        "span_name": [span.name for span in kept],
        "span_kind": _names(_SPAN_KINDS, [span.kind for span in kept]),
        "end_time": ends,
        "duration_ns": [e - b if b and e else None for b, e in zip(starts, ends, strict=True)],
        "status_code": _names(_STATUS_CODES, [status.code for status in statuses]),
        "status_message": [status.message or None for status in statuses],
        "events": [_events(span.events) if span.events else [] for span in kept],
        "links": [_links(span.links) if span.links else [] for span in kept],
        "dropped_events_count": [span.dropped_events_count for span in kept],
        "dropped_links_count": [span.dropped_links_count for span in kept],
    }
    attributes = _attribute_map([span.attributes for span in kept], encoded)
    return envelope.finish(out, columns, len(kept), "traces", attributes)


def _events(events: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {"time": e.time_unix_nano or None, "name": e.name, "attributes": _attrs(e.attributes)}
        for e in events
    ]


def _links(links: Iterable[Any]) -> list[dict[str, Any]]:
    return [
        {
            "trace_id": _hex(link.trace_id),
            "span_id": _hex(link.span_id),
            "trace_state": link.trace_state or None,
            "attributes": _attrs(link.attributes),
        }
        for link in links
    ]


def _attribute_map(groups: list[Any], encoded: bool = False) -> pa.Array:
    """A ``map<string, string>`` column, one row per repeated KeyValue field of ``groups``
    (``encoded``: each KeyValue is still its protobuf bytes).

    The encoded pairs are deduplicated by Arrow: only distinct pairs (attributes repeat a lot:
    ``http.method: GET``) are decoded in Python."""
    offsets = [0, *accumulate(len(g) for g in groups)]
    if encoded:
        pairs = [pair for g in groups for pair in g]
    else:
        pairs = [kv.SerializeToString() for g in groups for kv in g]
    dictionary = pa.array(pairs, pa.binary()).dictionary_encode()
    keys: list[str] = []
    values: list[str | None] = []
    for pair in dictionary.dictionary.to_pylist():
        try:
            kv = KeyValue.FromString(pair)
        except DecodeError as exc:
            raise BadRequestError(
                f"the body is not a valid ExportTraceServiceRequest protobuf message: a span "
                f"attribute is not a valid KeyValue ({exc})"
            ) from exc
        keys.append(kv.key)
        values.append(value_text(kv.value))
    indices = dictionary.indices
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.array(keys, pa.string()).take(indices),
        pa.array(values, pa.string()).take(indices),
    )


def _names(names: tuple[str, ...], numbers: list[int]) -> list[str]:
    """Enum numbers as their names (a number the specification does not name as its text)."""
    known = len(names)
    return [names[n] if 0 <= n < known else str(n) for n in numbers]


def _name(names: tuple[str, ...], number: int) -> str:
    return names[number] if 0 <= number < len(names) else str(number)


# ----------------------------------------------------------------------------- metrics


_METRIC_COLUMNS = (
    "time",
    "metric_name",
    "metric_description",
    "metric_unit",
    "metric_type",
    "aggregation_temporality",
    "is_monotonic",
    "start_time",
    "flags",
    "value_double",
    "value_int",
    "count",
    "sum",
    "min",
    "max",
    "bucket_counts",
    "explicit_bounds",
    "scale",
    "zero_count",
    "positive_offset",
    "positive_bucket_counts",
    "negative_offset",
    "negative_bucket_counts",
    "quantile_values",
    "exemplars",
)


def _metrics(request: ExportMetricsServiceRequest) -> Conversion:
    out = Conversion(None)
    cols = _Columns(_METRIC_COLUMNS)
    envelope = _Envelope()
    for r, s, sm in _scopes(envelope, request.resource_metrics, "scope_metrics"):
        rows_before = cols.rows
        for m, metric in enumerate(sm.metrics):
            kind = metric.WhichOneof("data")
            where = f"resource_metrics[{r}].scope_metrics[{s}].metrics[{m}]"
            if kind is None:
                continue  # a metric without data points has no rows
            data = getattr(metric, kind)
            if not metric.name:
                for _ in data.data_points:
                    out.reject(where, "the metric has no name")
                continue
            head = {
                "metric_name": metric.name,
                "metric_description": metric.description or None,
                "metric_unit": metric.unit or None,
                "metric_type": kind,
            }
            if kind in ("sum", "histogram", "exponential_histogram"):
                head["aggregation_temporality"] = _name(
                    _TEMPORALITIES, data.aggregation_temporality
                )
            if kind == "sum":
                head["is_monotonic"] = data.is_monotonic
            for i, p in enumerate(data.data_points):
                problem = (
                    kind != "summary" and _nested_id_problem(p.exemplars, "exemplars")
                ) or _value_problem(p, kind)
                if problem:
                    out.reject(f"{where}.data_points[{i}]", problem)
                    continue
                envelope.attributes.add(p.attributes)
                cols.add(**head, **_point(kind, p))
        envelope.rows_added(cols.rows - rows_before)
    return envelope.finish(out, cols.data, cols.rows, "metrics")


def _point(kind: str, p: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "time": p.time_unix_nano,
        "start_time": p.start_time_unix_nano,
        "flags": p.flags,
    }
    if kind != "summary":
        row["exemplars"] = [_exemplar(e) for e in p.exemplars]
    if kind in ("gauge", "sum"):
        which = p.WhichOneof("value")
        if which == "as_double":
            row["value_double"] = p.as_double
        elif which == "as_int":
            row["value_int"] = p.as_int
        return row
    row["count"] = p.count
    if kind == "summary":
        row["sum"] = p.sum
        row["quantile_values"] = [
            {"quantile": q.quantile, "value": q.value} for q in p.quantile_values
        ]
        return row
    row["sum"] = p.sum if p.HasField("sum") else None
    row["min"] = p.min if p.HasField("min") else None
    row["max"] = p.max if p.HasField("max") else None
    if kind == "histogram":
        row["bucket_counts"] = list(p.bucket_counts)
        row["explicit_bounds"] = list(p.explicit_bounds)
        return row
    row["scale"] = p.scale
    row["zero_count"] = p.zero_count
    row["positive_offset"] = p.positive.offset
    row["positive_bucket_counts"] = list(p.positive.bucket_counts)
    row["negative_offset"] = p.negative.offset
    row["negative_bucket_counts"] = list(p.negative.bucket_counts)
    return row


def _exemplar(e: Any) -> dict[str, Any]:
    which = e.WhichOneof("value")
    return {
        "time": e.time_unix_nano or None,
        "value_double": e.as_double if which == "as_double" else None,
        "value_int": e.as_int if which == "as_int" else None,
        "trace_id": _hex(e.trace_id),
        "span_id": _hex(e.span_id),
        "filtered_attributes": _attrs(e.filtered_attributes),
    }


# ----------------------------------------------------------------------------- logs


def _logs(request: ExportLogsServiceRequest) -> Conversion:
    out = Conversion(None)
    cols = _Columns(
        (
            "time",
            "dropped_attributes_count",
            "trace_id",
            "span_id",
            "flags",
            "observed_time",
            "severity_number",
            "severity_text",
            "body",
            "event_name",
        )
    )
    envelope = _Envelope()
    for r, s, sl in _scopes(envelope, request.resource_logs, "scope_logs"):
        rows_before = cols.rows
        for i, log in enumerate(sl.log_records):
            problem = (
                _id_problem("trace_id", log.trace_id, 16, False)
                or _id_problem("span_id", log.span_id, 8, False)
                or _value_problem(log)
            )
            if problem:
                out.reject(f"resource_logs[{r}].scope_logs[{s}].log_records[{i}]", problem)
                continue
            envelope.attributes.add(log.attributes)
            cols.add(
                time=log.time_unix_nano,
                dropped_attributes_count=log.dropped_attributes_count,
                trace_id=_hex(log.trace_id),
                span_id=_hex(log.span_id),
                flags=log.flags,
                observed_time=log.observed_time_unix_nano,
                severity_number=log.severity_number,
                severity_text=log.severity_text or None,
                body=value_text(log.body) if log.HasField("body") else None,
                event_name=log.event_name or None,
            )
        envelope.rows_added(cols.rows - rows_before)
    return envelope.finish(out, cols.data, cols.rows, "logs")
