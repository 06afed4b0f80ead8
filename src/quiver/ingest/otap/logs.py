"""OTAP logs -> rows of the telemetry layout: the LOGS table joined with its resource, scope
and log attribute tables (section 5.1 of the OTAP specification), column by column."""

from __future__ import annotations

import pyarrow as pa

from quiver.ingest.arrow_layout import telemetry_batch
from quiver.ingest.otap.columns import (
    OtapDataError,
    Payload,
    Rejections,
    RowChecks,
    hex_ids,
    timestamps,
    value_text,
)
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2
from quiver.ingest.otap.traces import attributes_of, counts, empty_null, own_ids, root_columns

__all__ = ["decode_logs"]

_T = otap_pb2.ArrowPayloadType


def decode_logs(tables: dict[int, Payload], rejected: Rejections) -> pa.RecordBatch | None:
    """The rows of one BatchArrowRecords of the logs service (None when it has no log
    records); OtapDataError when the tables cannot be joined. Log records holding a time past
    2262 are left out, counted in ``rejected``."""
    logs = tables.get(_T.LOGS)
    if logs is None:
        others = [t.name for t in tables.values() if t.rows]
        if others:
            raise OtapDataError(f"{', '.join(others)} sent without a LOGS payload")
        return None
    rows = logs.rows
    columns = root_columns(logs, tables)
    severity = logs.ints("severity_number")
    severity_text = logs.texts("severity_text")
    event_name = logs.texts("event_name")
    body = value_text(logs, "body.")
    checks = RowChecks(logs)
    times = {
        name: timestamps(checks.times(logs.column(name), rows, name))
        for name in ("time_unix_nano", "observed_time_unix_nano")
    }
    columns.update(
        signal=pa.repeat(pa.scalar("logs"), rows),
        time=times["time_unix_nano"],
        observed_time=times["observed_time_unix_nano"],
        trace_id=hex_ids(logs.column("trace_id"), 16, rows, "LOGS.trace_id"),
        span_id=hex_ids(logs.column("span_id"), 8, rows, "LOGS.span_id"),
        severity_number=(
            pa.repeat(pa.scalar(0, pa.int32()), rows)
            if severity is None
            else severity.fill_null(0).cast(pa.int32())
        ),
        severity_text=pa.nulls(rows, pa.string())
        if severity_text is None
        else empty_null(severity_text),
        event_name=pa.nulls(rows, pa.string()) if event_name is None else empty_null(event_name),
        body=body,
        flags=counts(logs, "flags"),
        dropped_attributes_count=counts(logs, "dropped_attributes_count"),
        attributes=attributes_of(tables.get(_T.LOG_ATTRS), own_ids(logs), rows, "LOGS"),
    )
    return checks.apply(telemetry_batch(columns, rows), rejected)
