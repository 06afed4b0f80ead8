"""Wire-compatible views of ExportTraceServiceRequest and ExportLogsServiceRequest that keep
span and log record attributes encoded.

A length-delimited field is the same bytes on the wire whether its proto says message or
bytes. This module declares (at import, from descriptors: no generated code) a copy of the
trace request whose ``Span.attributes`` is ``repeated bytes``: the C parser then hands each
attribute over as its encoded KeyValue, with no Python object per pair, and the converter
decodes only the distinct ones (:func:`quiver.ingest.otlp.convert._attribute_map`). Every
other field keeps its type and number, so the request reads exactly as the real one; enums
are read as integers (the converter names them). ``LogRecord.attributes`` is declared the
same way in the logs view.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

__all__ = ["LogsRequest", "TracesRequest"]

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED


def _message(
    file: descriptor_pb2.FileDescriptorProto,
    name: str,
    fields: list[tuple[str, int, int, int, str | None]],
) -> None:
    message = file.message_type.add(name=name)
    for field_name, number, kind, label, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=kind, label=label)
        if type_name is not None:
            field.type_name = type_name


def _build() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    for module in (common_pb2, resource_pb2, trace_pb2, logs_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    file = descriptor_pb2.FileDescriptorProto(
        name="quiver/otlp_wire.proto", package="quiver.otlp_wire", syntax="proto3"
    )
    file.dependency.extend(
        [
            "opentelemetry/proto/common/v1/common.proto",
            "opentelemetry/proto/resource/v1/resource.proto",
            "opentelemetry/proto/trace/v1/trace.proto",
            "opentelemetry/proto/logs/v1/logs.proto",
        ]
    )
    trace = ".opentelemetry.proto.trace.v1"
    _message(
        file,
        "Span",
        [
            ("trace_id", 1, _F.TYPE_BYTES, _OPTIONAL, None),
            ("span_id", 2, _F.TYPE_BYTES, _OPTIONAL, None),
            ("trace_state", 3, _F.TYPE_STRING, _OPTIONAL, None),
            ("parent_span_id", 4, _F.TYPE_BYTES, _OPTIONAL, None),
            ("flags", 16, _F.TYPE_FIXED32, _OPTIONAL, None),
            ("name", 5, _F.TYPE_STRING, _OPTIONAL, None),
            ("kind", 6, _F.TYPE_INT32, _OPTIONAL, None),
            ("start_time_unix_nano", 7, _F.TYPE_FIXED64, _OPTIONAL, None),
            ("end_time_unix_nano", 8, _F.TYPE_FIXED64, _OPTIONAL, None),
            ("attributes", 9, _F.TYPE_BYTES, _REPEATED, None),
            ("dropped_attributes_count", 10, _F.TYPE_UINT32, _OPTIONAL, None),
            ("events", 11, _F.TYPE_MESSAGE, _REPEATED, f"{trace}.Span.Event"),
            ("dropped_events_count", 12, _F.TYPE_UINT32, _OPTIONAL, None),
            ("links", 13, _F.TYPE_MESSAGE, _REPEATED, f"{trace}.Span.Link"),
            ("dropped_links_count", 14, _F.TYPE_UINT32, _OPTIONAL, None),
            ("status", 15, _F.TYPE_MESSAGE, _OPTIONAL, f"{trace}.Status"),
        ],
    )
    _message(
        file,
        "LogRecord",
        [
            ("time_unix_nano", 1, _F.TYPE_FIXED64, _OPTIONAL, None),
            ("observed_time_unix_nano", 11, _F.TYPE_FIXED64, _OPTIONAL, None),
            ("severity_number", 2, _F.TYPE_INT32, _OPTIONAL, None),
            ("severity_text", 3, _F.TYPE_STRING, _OPTIONAL, None),
            ("body", 5, _F.TYPE_MESSAGE, _OPTIONAL, ".opentelemetry.proto.common.v1.AnyValue"),
            ("attributes", 6, _F.TYPE_BYTES, _REPEATED, None),
            ("dropped_attributes_count", 7, _F.TYPE_UINT32, _OPTIONAL, None),
            ("flags", 8, _F.TYPE_FIXED32, _OPTIONAL, None),
            ("trace_id", 9, _F.TYPE_BYTES, _OPTIONAL, None),
            ("span_id", 10, _F.TYPE_BYTES, _OPTIONAL, None),
            ("event_name", 12, _F.TYPE_STRING, _OPTIONAL, None),
        ],
    )
    # Scope* and Resource*: what they are about (1), their items (2), schema_url (3)
    for name, about, about_type, items, items_type in (
        ("ScopeSpans", "scope", "common.v1.InstrumentationScope", "spans", "Span"),
        ("ResourceSpans", "resource", "resource.v1.Resource", "scope_spans", "ScopeSpans"),
        ("ScopeLogs", "scope", "common.v1.InstrumentationScope", "log_records", "LogRecord"),
        ("ResourceLogs", "resource", "resource.v1.Resource", "scope_logs", "ScopeLogs"),
    ):
        _message(
            file,
            name,
            [
                (about, 1, _F.TYPE_MESSAGE, _OPTIONAL, f".opentelemetry.proto.{about_type}"),
                (items, 2, _F.TYPE_MESSAGE, _REPEATED, f".quiver.otlp_wire.{items_type}"),
                ("schema_url", 3, _F.TYPE_STRING, _OPTIONAL, None),
            ],
        )
    _message(
        file,
        "ExportTraceServiceRequest",
        [("resource_spans", 1, _F.TYPE_MESSAGE, _REPEATED, ".quiver.otlp_wire.ResourceSpans")],
    )
    _message(
        file,
        "ExportLogsServiceRequest",
        [("resource_logs", 1, _F.TYPE_MESSAGE, _REPEATED, ".quiver.otlp_wire.ResourceLogs")],
    )
    pool.Add(file)
    traces, logs = (
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"quiver.otlp_wire.{name}"))
        for name in ("ExportTraceServiceRequest", "ExportLogsServiceRequest")
    )
    return traces, logs


#: ExportTraceServiceRequest with each span attribute as its encoded KeyValue (bytes), and
#: ExportLogsServiceRequest with each log record attribute so.
TracesRequest, LogsRequest = _build()
