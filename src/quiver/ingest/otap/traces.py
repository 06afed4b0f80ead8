"""OTAP traces -> rows of the telemetry layout: the SPANS table joined with its resource,
scope, span, event and link attribute tables, events and links, by their ids (section 5.2 and
6 of the OTAP specification), column by column.

The rows are those the OTLP receiver makes of the same spans (:mod:`quiver.ingest.otlp`),
except that attributes come in the payload's order, which an OTAP sender may have sorted.
"""

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
    attribute_maps,
    attribute_runs,
    enum_names,
    hex_ids,
    nanos,
    parent_rows,
    per_row_maps,
    stable_order,
    timestamps,
)
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2

__all__ = [
    "SPAN_KINDS",
    "STATUS_CODES",
    "attributes_of",
    "counts",
    "decode_spans",
    "empty_null",
    "own_ids",
    "root_columns",
]

_T = otap_pb2.ArrowPayloadType
SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_CODES = ("unset", "ok", "error")
_EVENT_TYPE = TELEMETRY_SCHEMA.field("events").type.value_type
_LINK_TYPE = TELEMETRY_SCHEMA.field("links").type.value_type


def root_columns(root: Payload, tables: dict[int, Payload]) -> dict[str, pa.Array]:
    """The resource and scope columns of a root table's rows (SPANS, LOGS,
    UNIVARIATE_METRICS)."""
    rows = root.rows
    columns: dict[str, pa.Array] = {}
    resource = root.ids("resource.id", "delta")
    ids, valid = resource if resource is not None else _no_ids(rows)
    maps, service = per_row_maps(
        tables.get(_T.RESOURCE_ATTRS), ids, valid, "resource.id", with_service=True
    )
    columns["resource_attributes"], columns["service_name"] = maps, service
    scope = root.ids("scope.id", "delta")
    ids, valid = scope if scope is not None else _no_ids(rows)
    columns["scope_attributes"] = per_row_maps(tables.get(_T.SCOPE_ATTRS), ids, valid, "scope.id")[
        0
    ]
    for column, name in (("scope_name", "scope.name"), ("scope_version", "scope.version")):
        text = root.texts(name)
        columns[column] = pa.nulls(rows, pa.string()) if text is None else empty_null(text)
    return columns


def _no_ids(rows: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(rows, dtype=np.uint32), np.zeros(rows, dtype=bool)


def empty_null(text: pa.Array) -> pa.Array:
    """Empty strings as null (OTLP's unset string fields)."""
    empty = pc.equal(text, "")
    if not empty.true_count:
        return text
    return pc.if_else(empty, pa.scalar(None, pa.string()), text)


def counts(table: Payload, name: str) -> pa.Array:
    values = table.ints(name)
    return pa.repeat(pa.scalar(0), table.rows) if values is None else values.fill_null(0)


def own_ids(table: Payload) -> tuple[np.ndarray, np.ndarray]:
    ids = table.ids("id", "delta")
    return ids if ids is not None else _no_ids(table.rows)


def _children_of(
    child: Payload, parent_ids: tuple[np.ndarray, np.ndarray], parent: str, same: list[pa.Array]
) -> np.ndarray:
    decoded = child.ids("parent_id", "quasidelta", same)
    if decoded is None:
        raise OtapDataError(f"{child.name}: the required column 'parent_id' is missing")
    return parent_rows(parent_ids[0], parent_ids[1], decoded[0], child.name, parent)


def attributes_of(
    attrs: Payload | None, owner: tuple[np.ndarray, np.ndarray], rows: int, parent: str
) -> pa.Array:
    """The attribute maps of ``rows`` parent rows with ids ``owner``."""
    if attrs is None:
        return attribute_maps(None, rows, None)
    decoded = attrs.ids("parent_id", "quasidelta", attribute_runs(attrs))
    if decoded is None:
        raise OtapDataError(f"{attrs.name}: the required column 'parent_id' is missing")
    rows_of = parent_rows(owner[0], owner[1], decoded[0], attrs.name, parent)
    return attribute_maps(attrs, rows, rows_of)


def _lists(items: pa.Array, parent_of: np.ndarray, parents: int) -> pa.Array:
    """``items`` gathered into one list per parent row (in their payload order): as they
    are when they already come in parent order, as senders send them."""
    offsets = np.zeros(parents + 1, dtype=np.int32)
    np.cumsum(np.bincount(parent_of, minlength=parents), out=offsets[1:])
    if len(parent_of) > 1 and not bool((parent_of[1:] >= parent_of[:-1]).all()):
        items = items.take(pa.array(stable_order(parent_of, parents)))
    return pa.ListArray.from_arrays(pa.array(offsets), items)


def decode_spans(tables: dict[int, Payload], rejected: Rejections) -> pa.RecordBatch | None:
    """The rows of one BatchArrowRecords of the traces service (None when it has no
    spans); OtapDataError when the tables cannot be joined. Spans holding a time past 2262
    (their own or an event's) are left out, counted in ``rejected``."""
    spans = tables.get(_T.SPANS)
    if spans is None:
        others = [t.name for t in tables.values() if t.rows]
        if others:
            raise OtapDataError(f"{', '.join(others)} sent without a SPANS payload")
        return None
    rows = spans.rows
    columns = root_columns(spans, tables)
    span_ids = own_ids(spans)

    trace_id = hex_ids(spans.column("trace_id", required=True), 16, rows, "SPANS.trace_id")
    span_id = hex_ids(spans.column("span_id", required=True), 8, rows, "SPANS.span_id")
    for name, ids in (("trace_id", trace_id), ("span_id", span_id)):
        if ids.null_count:
            row = int(np.flatnonzero(np.asarray(ids.is_null().to_numpy(zero_copy_only=False)))[0])
            raise OtapDataError(f"SPANS.{name} row {row}: all zeros, which OTLP defines as invalid")
    checks = RowChecks(spans)
    start = checks.times(
        spans.column("start_time_unix_nano", required=True), rows, "start_time_unix_nano"
    )
    duration = nanos(
        spans.column("duration_time_unix_nano"), rows, "SPANS.duration_time_unix_nano"
    ).fill_null(0)
    end = pc.add(start, duration)  # past int64: negative, checked out
    checks.late(end, "start_time_unix_nano + duration_time_unix_nano", signed=True)
    start_ts, end_ts = timestamps(start), timestamps(end)
    both = pc.and_(pc.is_valid(start_ts), pc.is_valid(end_ts))
    status_message = spans.texts("status.status_message")
    trace_state = spans.texts("trace_state")
    span_names = spans.texts("name")
    if span_names is None:
        raise OtapDataError("SPANS: the required column 'name' is missing")
    columns.update(
        signal=pa.repeat(pa.scalar("traces"), rows),
        time=start_ts,
        end_time=end_ts,
        duration_ns=pc.if_else(both, pc.subtract(end, start), pa.scalar(None, pa.int64())),
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=hex_ids(spans.column("parent_span_id"), 8, rows, "SPANS.parent_span_id"),
        trace_state=pa.nulls(rows, pa.string()) if trace_state is None else empty_null(trace_state),
        span_name=span_names.fill_null(""),
        span_kind=enum_names(spans.ints("kind"), SPAN_KINDS, rows),
        status_code=enum_names(spans.ints("status.code"), STATUS_CODES, rows),
        status_message=(
            pa.nulls(rows, pa.string()) if status_message is None else empty_null(status_message)
        ),
        flags=counts(spans, "flags"),
        dropped_attributes_count=counts(spans, "dropped_attributes_count"),
        dropped_events_count=counts(spans, "dropped_events_count"),
        dropped_links_count=counts(spans, "dropped_links_count"),
        attributes=attributes_of(tables.get(_T.SPAN_ATTRS), span_ids, rows, "SPANS"),
        events=_events(tables, span_ids, rows, checks),
        links=_links(tables, span_ids, rows),
    )
    return checks.apply(telemetry_batch(columns, rows), rejected)


def _events(
    tables: dict[int, Payload],
    span_ids: tuple[np.ndarray, np.ndarray],
    rows: int,
    checks: RowChecks,
) -> pa.Array:
    events = tables.get(_T.SPAN_EVENTS)
    if events is None:
        if tables.get(_T.SPAN_EVENT_ATTRS) is not None:
            raise OtapDataError("SPAN_EVENT_ATTRS sent without a SPAN_EVENTS payload")
        return _no_lists(rows, _EVENT_TYPE)
    name = events.texts("name")
    name = pa.repeat(pa.scalar(""), events.rows) if name is None else name.fill_null("")
    owner = _children_of(events, span_ids, "SPANS", [name])
    times = timestamps(
        checks.times(
            events.column("time_unix_nano"), events.rows, "time_unix_nano", (owner, events.name)
        )
    )
    attrs = attributes_of(
        tables.get(_T.SPAN_EVENT_ATTRS), own_ids(events), events.rows, "SPAN_EVENTS"
    )
    items = pa.StructArray.from_arrays([times, name, attrs], fields=list(_EVENT_TYPE))
    return _lists(items, owner, rows)


def _links(
    tables: dict[int, Payload], span_ids: tuple[np.ndarray, np.ndarray], rows: int
) -> pa.Array:
    links = tables.get(_T.SPAN_LINKS)
    if links is None:
        if tables.get(_T.SPAN_LINK_ATTRS) is not None:
            raise OtapDataError("SPAN_LINK_ATTRS sent without a SPAN_LINKS payload")
        return _no_lists(rows, _LINK_TYPE)
    raw_trace = links.column("trace_id")
    same = [raw_trace] if raw_trace is not None else []
    owner = _children_of(links, span_ids, "SPANS", same)
    n = links.rows
    trace_state = links.texts("trace_state")
    items = pa.StructArray.from_arrays(
        [
            hex_ids(raw_trace, 16, n, "SPAN_LINKS.trace_id"),
            hex_ids(links.column("span_id"), 8, n, "SPAN_LINKS.span_id"),
            pa.nulls(n, pa.string()) if trace_state is None else empty_null(trace_state),
            attributes_of(tables.get(_T.SPAN_LINK_ATTRS), own_ids(links), n, "SPAN_LINKS"),
        ],
        fields=list(_LINK_TYPE),
    )
    return _lists(items, owner, rows)


_NO_ITEMS = {_EVENT_TYPE: pa.array([], _EVENT_TYPE), _LINK_TYPE: pa.array([], _LINK_TYPE)}


def _no_lists(rows: int, item: pa.DataType) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.zeros(rows + 1, dtype=np.int32)), _NO_ITEMS[item])
