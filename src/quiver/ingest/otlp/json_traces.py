"""OTLP/JSON traces read without the generic proto3 JSON parser for each span.

``json_format.ParseDict`` costs most of an OTLP/JSON request's time. Here each span's scalar
fields are taken straight from the parsed JSON (checked strictly: only the camelCase names
and the value types the OTLP/JSON encoding gives), its attributes are parsed once per
distinct key-value pair (attributes repeat a lot) into their encoded KeyValue, the form
:mod:`quiver.ingest.otlp.wire` keeps them in, and the few resource, scope, event and link
objects go through ``ParseDict`` as before. The result is a request-shaped object that
:func:`quiver.ingest.otlp.convert.convert_request` converts like the wire view.

Anything this reader does not take as it is (snake_case names, ``null``, numbers
as floats, an unknown field, a malformed id ...) makes it give up (:class:`FallbackError`): the
caller then parses the body the general way, which gives the rows or the error it always
gave. So both ways yield the same rows, rejections and errors.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf import json_format
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from quiver.ingest.otlp.json_shape import ShapeError, check_shape

__all__ = ["FallbackError", "traces_from_json"]

_DIGITS = re.compile(r"[0-9]{1,20}")
_U64, _U32, _I32, _I64 = 1 << 64, 1 << 32, 1 << 31, 1 << 63
_SPAN_KEYS = frozenset(
    {
        "traceId",
        "spanId",
        "traceState",
        "parentSpanId",
        "flags",
        "name",
        "kind",
        "startTimeUnixNano",
        "endTimeUnixNano",
        "attributes",
        "droppedAttributesCount",
        "events",
        "droppedEventsCount",
        "links",
        "droppedLinksCount",
        "status",
    }
)


class FallbackError(Exception):
    """This reader does not take the body as it is: parse it the general way."""


@dataclass(slots=True)
class _Status:
    code: int = 0
    message: str = ""


@dataclass(slots=True)
class _Span:
    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes
    trace_state: str
    name: str
    kind: int
    flags: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: list[bytes]
    dropped_attributes_count: int
    events: list[Any]
    dropped_events_count: int
    links: list[Any]
    dropped_links_count: int
    status: _Status


@dataclass(slots=True)
class _ScopeSpans:
    scope: Any
    spans: list[_Span]


@dataclass(slots=True)
class _ResourceSpans:
    resource: Any
    scope_spans: list[_ScopeSpans]


@dataclass(slots=True)
class JsonTraces:
    """An ExportTraceServiceRequest-shaped view of an OTLP/JSON body (attributes encoded)."""

    resource_spans: list[_ResourceSpans]


def _object(value: Any, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or not keys.issuperset(value):
        raise FallbackError
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise FallbackError
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise FallbackError
    return value


def _unsigned(value: Any, limit: int) -> int:
    """A uint32/uint64/fixed field: a JSON integer, or (64-bit) a string of digits."""
    if type(value) is int:
        number = value
    elif limit == _U64 and isinstance(value, str) and _DIGITS.fullmatch(value):
        number = int(value)
    else:
        raise FallbackError
    if not 0 <= number < limit:
        raise FallbackError
    return number


def _enum(value: Any, names: Any) -> int:
    """An enum: its number, or (as the proto3 JSON mapping allows) its name in ``names``."""
    if isinstance(value, str):
        try:
            number: int = names.Value(value)
        except ValueError as exc:
            raise FallbackError from exc
        return number
    if type(value) is not int or not 0 <= value < _I32:
        raise FallbackError
    return value


def _id(value: Any) -> bytes:
    if not isinstance(value, str):
        raise FallbackError
    try:
        return binascii.unhexlify(value)
    except (binascii.Error, ValueError) as exc:
        raise FallbackError from exc


#: The general way's id check (hex ids to base64, in place; raises on a bad one), given by
#: the caller (:func:`quiver.ingest.otlp.decode.decode_body`).
IdCheck = Callable[[Any, str], None]


def _message(doc: Any, message: Any, ids: IdCheck) -> Any:
    """``doc`` parsed into ``message`` the general way, its ids checked and made base64 as
    the general way does (any error: :class:`FallbackError`, so that it is reported as before)."""
    if not isinstance(doc, dict):
        raise FallbackError
    try:
        ids(doc, "")
        check_shape(doc, message.DESCRIPTOR)
        json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except Exception as exc:
        raise FallbackError from exc
    return message


class _Attributes:
    """Each distinct JSON key-value pair parsed once, kept as its encoded KeyValue."""

    def __init__(self) -> None:
        self._seen: dict[bytes, bytes] = {}

    def encode(self, pairs: Any) -> list[bytes]:
        seen = self._seen
        out = []
        for pair in _list(pairs):
            text = orjson.dumps(pair)
            raw = seen.get(text)
            if raw is None:
                if not isinstance(pair, dict):
                    raise FallbackError
                raw = seen[text] = _key_value(pair).SerializeToString()
            out.append(raw)
        return out


_PAIR_KEYS = frozenset({"key", "value"})
_INT = re.compile(r"-?[0-9]{1,19}")


def _key_value(pair: dict[str, Any]) -> KeyValue:
    """One attribute: the common scalar values built directly, the rest by ``ParseDict``
    (attribute values are user data: the general way leaves ids in them alone too)."""
    key, value = pair.get("key", ""), pair.get("value")
    if _PAIR_KEYS.issuperset(pair) and isinstance(key, str) and isinstance(value, dict):
        if len(value) == 1:
            ((kind, v),) = value.items()
            if kind == "stringValue" and isinstance(v, str):
                return KeyValue(key=key, value=AnyValue(string_value=v))
            if kind == "boolValue" and isinstance(v, bool):
                return KeyValue(key=key, value=AnyValue(bool_value=v))
            if kind == "intValue" and (
                (type(v) is int) or (isinstance(v, str) and _INT.fullmatch(v))
            ):
                number = int(v)
                if -_I64 <= number < _I64:
                    return KeyValue(key=key, value=AnyValue(int_value=number))
            if kind == "doubleValue" and type(v) in (int, float) and math.isfinite(v):
                return KeyValue(key=key, value=AnyValue(double_value=float(v)))
        elif not value:
            return KeyValue(key=key, value=AnyValue())
    try:
        check_shape(pair, KeyValue.DESCRIPTOR)
        kv: KeyValue = json_format.ParseDict(pair, KeyValue(), ignore_unknown_fields=True)
    except (ShapeError, json_format.ParseError) as exc:
        raise FallbackError from exc
    return kv


_RESOURCE_SPANS_KEYS = frozenset({"resource", "scopeSpans", "schemaUrl"})
_SCOPE_SPANS_KEYS = frozenset({"scope", "spans", "schemaUrl"})
_STATUS_KEYS = frozenset({"code", "message"})
_DOC_KEYS = frozenset({"resourceSpans"})


def traces_from_json(doc: Any, ids: IdCheck) -> JsonTraces:
    """The request in a parsed OTLP/JSON traces body, or :class:`FallbackError` (``ids``: the
    general way's id check)."""
    attributes = _Attributes()
    groups = []
    for rs in _list(_object(doc, _DOC_KEYS).get("resourceSpans", [])):
        rs = _object(rs, _RESOURCE_SPANS_KEYS)
        _str(rs.get("schemaUrl", ""))
        resource = _message(rs.get("resource", {}), Resource(), ids)
        scopes = []
        for ss in _list(rs.get("scopeSpans", [])):
            ss = _object(ss, _SCOPE_SPANS_KEYS)
            _str(ss.get("schemaUrl", ""))
            scope = _message(ss.get("scope", {}), InstrumentationScope(), ids)
            spans = [_span(span, attributes, ids) for span in _list(ss.get("spans", []))]
            scopes.append(_ScopeSpans(scope, spans))
        groups.append(_ResourceSpans(resource, scopes))
    return JsonTraces(groups)


_SPAN_FIELD_NAMES = frozenset(Span.DESCRIPTOR.fields_by_name)


def _future_fields(s: dict[str, Any], ids: IdCheck) -> None:
    """Fields this version of OTLP does not have are ignored, as the general way does (which
    still checks any id inside them); a proto field name (snake_case) or an extension name
    is left to the general way."""
    for key in s.keys() - _SPAN_KEYS:
        if key in _SPAN_FIELD_NAMES or key.startswith("["):
            raise FallbackError
        value = s[key]
        if isinstance(value, dict | list):
            try:
                ids(orjson.loads(orjson.dumps(value)), key)
            except Exception as exc:
                raise FallbackError from exc


def _span(doc: Any, attributes: _Attributes, ids: IdCheck) -> _Span:
    if not isinstance(doc, dict):
        raise FallbackError
    s = doc
    if not _SPAN_KEYS.issuperset(s):
        _future_fields(s, ids)
    get = s.get
    status = _Status()
    if "status" in s:
        st = _object(s["status"], _STATUS_KEYS)
        status.code = _enum(st.get("code", 0), Status.StatusCode)
        status.message = _str(st.get("message", ""))
    events = [_message(e, Span.Event(), ids) for e in _list(get("events", []))]
    links = [_message(link, Span.Link(), ids) for link in _list(get("links", []))]
    return _Span(
        trace_id=_id(get("traceId", "")),
        span_id=_id(get("spanId", "")),
        parent_span_id=_id(get("parentSpanId", "")),
        trace_state=_str(get("traceState", "")),
        name=_str(get("name", "")),
        kind=_enum(get("kind", 0), Span.SpanKind),
        flags=_unsigned(get("flags", 0), _U32),
        start_time_unix_nano=_unsigned(get("startTimeUnixNano", 0), _U64),
        end_time_unix_nano=_unsigned(get("endTimeUnixNano", 0), _U64),
        attributes=attributes.encode(get("attributes", [])),
        dropped_attributes_count=_unsigned(get("droppedAttributesCount", 0), _U32),
        events=events,
        dropped_events_count=_unsigned(get("droppedEventsCount", 0), _U32),
        links=links,
        dropped_links_count=_unsigned(get("droppedLinksCount", 0), _U32),
        status=status,
    )
