"""OTLP export requests -> rows of the telemetry layout (:mod:`quiver.ingest.arrow_layout`).

One row per span, per metric data point and per log record; resource and scope fields are
repeated on each row. Items whose ids cannot be right (a trace id that is not 16 bytes or is
all zeros, a span id that is not 8 bytes ...), items holding a value the layout's int64
columns cannot (a time past 2262, a histogram count past 2**63 - 1) and metrics without a
name are rejected one by one: the rest of the request is kept, and the receiver answers with
``partial_success`` carrying the count and the first reasons.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import pyarrow as pa
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from quiver.ingest.arrow_layout import (
    LARGEST,
    Signal,
    count_too_large,
    telemetry_batch,
    time_too_late,
    value_json,
)
from quiver.ingest.otlp.decode import BadRequestError, Request

__all__ = ["Conversion", "Request", "convert_request"]

_SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
_STATUS_CODES = ("unset", "ok", "error")
_TEMPORALITIES = ("unspecified", "delta", "cumulative")
_MAX_REASONS = 3
_REQUESTS = {
    "span": "ExportTraceServiceRequest",
    "metric data point": "ExportMetricsServiceRequest",
    "log record": "ExportLogsServiceRequest",
}
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
    """Rows of the telemetry layout for one decoded export request of ``signal``.

    The columns are built without looking at the size of each 64-bit value: Arrow refuses one
    past int64 (a time past 2262, a count past 2**63 - 1) with OverflowError, and only then is
    the request converted again with every item's such values checked, the items holding one
    rejected like those with impossible ids and the rest kept."""
    try:
        return _convert(signal, request, checked=False)
    except OverflowError:
        return _convert(signal, request, checked=True)


def _late(item: Any, *names: str) -> str | None:
    """Why a time field (``names``) of ``item`` cannot be stored, or None."""
    for name in names:
        value = getattr(item, name)
        if value > LARGEST:
            return time_too_late(name, value)
    return None


def _too_many(counts: Iterable[tuple[str, int]]) -> str | None:
    """Why a count (name, value) of ``counts`` cannot be stored, or None."""
    for name, value in counts:
        if value > LARGEST:
            return count_too_large(name, value)
    return None


def _nested_late(items: Iterable[Any], field: str) -> str | None:
    """Why the time of one of ``items`` (a span's events, a data point's exemplars: ``field``)
    cannot be stored, or None."""
    for j, item in enumerate(items):
        late = _late(item, "time_unix_nano")
        if late:
            return f"{field}[{j}].{late}"
    return None


def _span_value_problem(span: Any) -> str | None:
    """Why a time of ``span`` or of its events cannot be stored, or None."""
    return _late(span, "start_time_unix_nano", "end_time_unix_nano") or _nested_late(
        span.events, "events"
    )


def _log_value_problem(log: Any) -> str | None:
    return _late(log, "time_unix_nano", "observed_time_unix_nano")


def _point_value_problem(kind: str, point: Any) -> str | None:
    """Why a time or count of a data point of metric type ``kind`` (or a time of one of its
    exemplars) cannot be stored, or None."""
    problem = _late(point, "start_time_unix_nano", "time_unix_nano")
    if not problem and kind != "summary":  # summaries have no exemplars
        problem = _nested_late(point.exemplars, "exemplars")
    if problem or kind in ("gauge", "sum"):
        return problem
    counts = [("count", point.count)]
    if kind == "histogram":
        counts += [(f"bucket_counts[{k}]", n) for k, n in enumerate(point.bucket_counts)]
    elif kind == "exponential_histogram":
        counts.append(("zero_count", point.zero_count))
        for side in ("positive", "negative"):
            buckets = getattr(point, side).bucket_counts
            counts += [(f"{side}.bucket_counts[{k}]", n) for k, n in enumerate(buckets)]
    return _too_many(counts)


def _with_value_problems(
    bad: list[int], items: list[Any], problem: Callable[[Any], str | None]
) -> list[int]:
    """``bad`` (indices into ``items``) and the items whose ``problem`` is not None, in order."""
    more = [i for i, item in enumerate(items) if problem(item)]
    return sorted(set(bad).union(more)) if more else bad


def _convert(signal: Signal, request: Request, checked: bool) -> Conversion:
    """``checked``: items holding a value past int64 are rejected (see convert_request)."""
    if signal == "traces":  # an ExportTraceServiceRequest, or its wire.TracesRequest view
        encoded = not isinstance(request, ExportTraceServiceRequest)
        return _spans(request, encoded, checked)
    if signal == "metrics":
        assert isinstance(request, ExportMetricsServiceRequest)
        return _metrics(request, checked)
    # an ExportLogsServiceRequest, or its wire.LogsRequest view
    return _logs(request, not isinstance(request, ExportLogsServiceRequest), checked)


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
    return value_json(_plain(value))


def _attrs(kvs: Iterable[KeyValue]) -> list[tuple[str, str | None]]:
    return [(kv.key, value_text(kv.value)) for kv in kvs]


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


def _nested_id_problem(items: Iterable[Any], field: str) -> str | None:
    """Why an id of one of ``items`` (a span's links, a data point's exemplars: ``field``)
    cannot be right, or None. Their ids may be left out, but one given must have its length."""
    for j, item in enumerate(items):
        problem = _id_problem("trace_id", item.trace_id, 16, False) or _id_problem(
            "span_id", item.span_id, 8, False
        )
        if problem:
            return f"{field}[{j}].{problem}"
    return None


class _Envelope:
    """The columns every signal shares: resource and scope fields, converted once per scope
    and taken by index."""

    def __init__(self) -> None:
        self.resources = _Repeated()
        self.scopes = _Repeated()

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
        attributes: pa.Array,
    ) -> Conversion:
        """The batch of ``rows`` rows: ``columns``, the items' ``attributes`` and the
        envelope's columns."""
        out.accepted = rows
        if not rows:
            return out
        data: dict[str, Any] = dict(columns)
        data["signal"] = pa.array([signal] * rows, pa.string())
        data["attributes"] = attributes
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


def _spans(request: Any, encoded: bool, checked: bool) -> Conversion:
    """Column by column: each field is read for all the kept spans of the request in one
    comprehension, attributes are deduplicated by Arrow in their encoded form (each distinct
    key-value pair is decoded once; ``encoded``: the request holds them encoded already, see
    :mod:`quiver.ingest.otlp.wire`), and only spans with events or links build nested rows.
    ``checked``: spans with a time past int64 are rejected too."""
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
            or (spans[i].links and _nested_id_problem(spans[i].links, "links"))
        ]
        if checked:
            bad = _with_value_problems(bad, spans, _span_value_problem)
        if bad:
            for i in bad:
                problem = (
                    _id_problem("trace_id", t[i], 16, True)
                    or _id_problem("span_id", d[i], 8, True)
                    or _id_problem("parent_span_id", p[i], 8, False)
                    or _nested_id_problem(spans[i].links, "links")
                    or _span_value_problem(spans[i])
                )
                out.reject(f"resource_spans[{r}].scope_spans[{s}].spans[{i}]", str(problem))
            if encoded:  # the real message would have refused them whole
                _check_encoded([spans[i].attributes for i in bad], "span")
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


def _attribute_map(groups: list[Any], encoded: bool = False, what: str = "span") -> pa.Array:
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
                f"the body is not a valid {_REQUESTS.get(what, 'export request')} protobuf "
                f"message: a {what} attribute is not a valid KeyValue ({exc})"
            ) from exc
        keys.append(kv.key)
        values.append(value_text(kv.value))
    indices = dictionary.indices
    return pa.MapArray.from_arrays(
        pa.array(offsets, pa.int32()),
        pa.array(keys, pa.string()).take(indices),
        pa.array(values, pa.string()).take(indices),
    )


def _check_encoded(groups: list[Any], what: str) -> None:
    """Refuse the request if an encoded attribute of a rejected item is not a valid KeyValue,
    as parsing the real message would have (its rows are not built, so nothing else reads it)."""
    for pairs in groups:
        for pair in pairs:
            try:
                KeyValue.FromString(pair)
            except DecodeError as exc:
                raise BadRequestError(
                    f"the body is not a valid {_REQUESTS[what]} protobuf message: a {what} "
                    f"attribute is not a valid KeyValue ({exc})"
                ) from exc


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


def _metrics(request: ExportMetricsServiceRequest, checked: bool) -> Conversion:
    """Metric by metric, column by column: each field is read for all the data points of a
    metric in one comprehension (columns a metric type does not have are filled with nulls
    in one step), and the points' attributes are deduplicated like the spans'. ``checked``:
    points with a time or count past int64 are rejected too."""
    out = Conversion(None)
    cols: dict[str, list[Any]] = {name: [] for name in _METRIC_COLUMNS}
    envelope = _Envelope()
    groups: list[Any] = []
    rows = 0
    for r, s, sm in _scopes(envelope, request.resource_metrics, "scope_metrics"):
        rows_before = rows
        for m, metric in enumerate(sm.metrics):
            kind = metric.WhichOneof("data")
            if kind is None:
                continue  # a metric without data points has no rows
            data = getattr(metric, kind)
            points = list(data.data_points)
            if not metric.name:
                where = f"resource_metrics[{r}].scope_metrics[{s}].metrics[{m}]"
                for _ in points:
                    out.reject(where, "the metric has no name")
                continue
            if kind != "summary" or checked:  # the others' points may carry exemplars
                points = _kept_points(out, kind, points, (r, s, m), checked)
            n = len(points)
            if not n:
                continue
            head: dict[str, Any] = {
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
            filled = _point_columns(kind, points)
            for name, column in cols.items():
                if name in filled:
                    column += filled[name]
                elif name in head:
                    column += [head[name]] * n
                else:
                    column += [None] * n
            groups += [p.attributes for p in points]
            rows += n
        envelope.rows_added(rows - rows_before)
    attributes = _attribute_map(groups, what="metric data point")
    return envelope.finish(out, cols, rows, "metrics", attributes)


def _kept_points(
    out: Conversion, kind: str, points: list[Any], at: tuple[int, int, int], checked: bool
) -> list[Any]:
    """``points`` (of metric ``at``: r, s, m) without those whose exemplars carry an id of the
    wrong length or (``checked``) that hold a value past int64, each rejected with its reason."""
    kept = []
    r, s, m = at
    for i, point in enumerate(points):
        problem = (
            kind != "summary"
            and point.exemplars
            and _nested_id_problem(point.exemplars, "exemplars")
        ) or (checked and _point_value_problem(kind, point))
        if problem:
            out.reject(
                f"resource_metrics[{r}].scope_metrics[{s}].metrics[{m}].data_points[{i}]",
                problem,
            )
        else:
            kept.append(point)
    return kept


def _point_columns(kind: str, points: list[Any]) -> dict[str, list[Any]]:
    """The point columns of ``points`` (all of metric type ``kind``), one list per column."""
    cols: dict[str, list[Any]] = {
        "time": [p.time_unix_nano for p in points],
        "start_time": [p.start_time_unix_nano for p in points],
        "flags": [p.flags for p in points],
    }
    if kind != "summary":
        cols["exemplars"] = [
            [_exemplar(e) for e in p.exemplars] if p.exemplars else [] for p in points
        ]
    if kind in ("gauge", "sum"):
        which = [p.WhichOneof("value") for p in points]
        cols["value_double"] = [
            p.as_double if w == "as_double" else None for p, w in zip(points, which, strict=True)
        ]
        cols["value_int"] = [
            p.as_int if w == "as_int" else None for p, w in zip(points, which, strict=True)
        ]
        return cols
    cols["count"] = [p.count for p in points]
    if kind == "summary":
        cols["sum"] = [p.sum for p in points]
        cols["quantile_values"] = [
            [{"quantile": q.quantile, "value": q.value} for q in p.quantile_values] for p in points
        ]
        return cols
    cols["sum"] = [p.sum if p.HasField("sum") else None for p in points]
    cols["min"] = [p.min if p.HasField("min") else None for p in points]
    cols["max"] = [p.max if p.HasField("max") else None for p in points]
    if kind == "histogram":
        cols["bucket_counts"] = [list(p.bucket_counts) for p in points]
        cols["explicit_bounds"] = [list(p.explicit_bounds) for p in points]
        return cols
    cols["scale"] = [p.scale for p in points]
    cols["zero_count"] = [p.zero_count for p in points]
    positive = [p.positive for p in points]
    negative = [p.negative for p in points]
    cols["positive_offset"] = [b.offset for b in positive]
    cols["positive_bucket_counts"] = [list(b.bucket_counts) for b in positive]
    cols["negative_offset"] = [b.offset for b in negative]
    cols["negative_bucket_counts"] = [list(b.bucket_counts) for b in negative]
    return cols


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


def _body_text(body: AnyValue) -> str | None:
    if body.WhichOneof("value") == "string_value":
        return body.string_value
    return value_text(body)


def _logs(request: Any, encoded: bool, checked: bool) -> Conversion:
    """Column by column, like spans: ids are checked for a whole scope at once, each field is
    read for all the kept records in one comprehension, attributes are deduplicated
    (``encoded``: the request holds them encoded already, see :mod:`quiver.ingest.otlp.wire`).
    ``checked``: records with a time past int64 are rejected too."""
    out = Conversion(None)
    envelope = _Envelope()
    kept: list[Any] = []
    tids: list[bytes] = []
    sids: list[bytes] = []
    for r, s, sl in _scopes(envelope, request.resource_logs, "scope_logs"):
        logs = list(sl.log_records)
        t = [log.trace_id for log in logs]
        d = [log.span_id for log in logs]
        bad = [
            i
            for i, (tid, sid) in enumerate(zip(t, d, strict=True))
            if (tid and len(tid) != 16) or (sid and len(sid) != 8)
        ]
        if checked:
            bad = _with_value_problems(bad, logs, _log_value_problem)
        if bad:
            for i in bad:
                problem = (
                    _id_problem("trace_id", t[i], 16, False)
                    or _id_problem("span_id", d[i], 8, False)
                    or _log_value_problem(logs[i])
                )
                out.reject(f"resource_logs[{r}].scope_logs[{s}].log_records[{i}]", str(problem))
            if encoded:  # the real message would have refused them whole
                _check_encoded([logs[i].attributes for i in bad], "log record")
            drop = set(bad)
            keep = [i for i in range(len(logs)) if i not in drop]
            logs = [logs[i] for i in keep]
            t, d = [t[i] for i in keep], [d[i] for i in keep]
        kept += logs
        tids += t
        sids += d
        envelope.rows_added(len(logs))
    columns: dict[str, Any] = {
        "time": [log.time_unix_nano for log in kept],
        "dropped_attributes_count": [log.dropped_attributes_count for log in kept],
        "trace_id": [tid.hex() if tid else None for tid in tids],
        "span_id": [sid.hex() if sid else None for sid in sids],
        "flags": [log.flags for log in kept],
        "observed_time": [log.observed_time_unix_nano for log in kept],
        "severity_number": [log.severity_number for log in kept],
        "severity_text": [log.severity_text or None for log in kept],
        "body": [_body_text(log.body) if log.HasField("body") else None for log in kept],
        "event_name": [log.event_name or None for log in kept],
    }
    attributes = _attribute_map([log.attributes for log in kept], encoded, what="log record")
    return envelope.finish(out, columns, len(kept), "logs", attributes)
