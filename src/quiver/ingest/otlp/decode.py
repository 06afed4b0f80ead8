"""Request bodies -> OTLP export request messages: binary protobuf or OTLP/JSON, gzip.

OTLP/JSON is the proto3 JSON mapping with the specification's differences: trace and span
ids are hex strings (not base64), enums are integers (names are accepted too), unknown fields
are ignored, 64-bit integers may be strings or numbers. Everything that cannot be decoded
raises :class:`BadRequestError` naming what is wrong, which the receivers answer with HTTP 400 /
gRPC INVALID_ARGUMENT (or 413 / 415 where the specification says so).
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from typing import Any, cast

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from quiver.ingest.arrow_layout import Signal
from quiver.ingest.otlp.json_shape import ShapeError, check_shape
from quiver.ingest.otlp.wire import LogsRequest, TracesRequest
from quiver.pipeline.json_text import DuplicateKeyError, parse_json

__all__ = [
    "REQUEST_TYPES",
    "RESPONSE_TYPES",
    "BadRequestError",
    "Request",
    "decode_body",
    "decompress",
]

Request = ExportTraceServiceRequest | ExportMetricsServiceRequest | ExportLogsServiceRequest

REQUEST_TYPES: dict[Signal, type[Request]] = {
    "traces": ExportTraceServiceRequest,
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
}
RESPONSE_TYPES: dict[Signal, Any] = {
    "traces": ExportTraceServiceResponse,
    "metrics": ExportMetricsServiceResponse,
    "logs": ExportLogsServiceResponse,
}


class BadRequestError(Exception):
    """A request that can never succeed as sent: the client must not retry it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status  # 400, 413 (too large) or 415 (unsupported type / encoding)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` without its Content-Encoding (``gzip``; ``deflate`` or ``zlib``, both the zlib
    format, as the Collector reads them and its exporters write them; ``zstd``; none), at most
    ``limit`` bytes once decompressed.

    A gzip body may hold several members one after the other (RFC 1952, what ``cat a.gz
    b.gz`` makes), read as the concatenation of their data, as gzip readers do; anything
    else after the compressed data is refused rather than dropped unread."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "zstd":
        return _zstd_decompressed(body, limit)
    if encoding not in ("gzip", "deflate", "zlib"):
        raise BadRequestError(
            f"Content-Encoding {encoding!r} is not supported; send gzip, zstd or no encoding",
            415,
        )
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise BadRequestError(f"the body is not valid {encoding} data: {exc}") from exc
        size += len(data)
        if size > limit:
            raise BadRequestError(
                f"the body is larger than {limit:,} bytes once decompressed; send smaller batches",
                413,
            )
        if not inflater.eof:
            raise BadRequestError(f"the {encoding} body is truncated")
        parts.append(data)
        rest = inflater.unused_data
        if not rest:
            return b"".join(parts)
        if encoding != "gzip" or not rest.startswith(_GZIP_MAGIC):
            raise BadRequestError(
                f"the body has {len(rest):,} bytes after its {encoding} data "
                f"({rest[:8].hex()}...); send the compressed data alone"
            )


_GZIP_MAGIC = b"\x1f\x8b"


def _zstd_decompressed(body: bytes, limit: int) -> bytes:
    """A ``Content-Encoding: zstd`` body (one or more frames, RFC 8878), at most ``limit``
    bytes once decompressed (Arrow's zstd stream, read no further than that)."""
    import pyarrow as pa

    if not body:
        raise BadRequestError("the zstd body is truncated")
    try:
        stream = pa.input_stream(pa.BufferReader(body), compression="zstd")
        data = stream.read(limit + 1)
    except (OSError, pa.ArrowException) as exc:
        raise BadRequestError(f"the body is not valid zstd data: {exc}") from exc
    if len(data) > limit:
        raise BadRequestError(
            f"the body is larger than {limit:,} bytes once decompressed; send smaller batches",
            413,
        )
    return bytes(data)


def decode_body(signal: Signal, body: bytes, json: bool) -> Request:
    """The export request of ``signal`` in ``body`` (protobuf, or OTLP/JSON when ``json``)."""
    cls = REQUEST_TYPES[signal]
    if not json:
        try:
            # traces, logs: the same message, its item attributes left encoded (see wire.py)
            view = {"traces": TracesRequest, "logs": LogsRequest}.get(signal, cls)
            parsed: Request = view.FromString(body)
            return parsed
        except DecodeError as exc:
            raise BadRequestError(
                f"the body is not a valid {cls.__name__} protobuf message ({exc})"
            ) from exc
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadRequestError(
            f"the body must be a JSON object (an {cls.__name__}), not {_kind(doc)}"
        )
    try:
        return _from_json(signal, cls, body, doc)
    except RecursionError:  # deeper than the checks below can walk (unknown fields too)
        raise BadRequestError(
            "the body nests JSON objects and arrays too deeply to be read; OTLP/JSON needs "
            "a few levels (attribute values nested in each other: at most 100 in all)"
        ) from None


def _from_json(signal: Signal, cls: type[Request], body: bytes, doc: dict[str, Any]) -> Request:
    """The request in the OTLP/JSON ``body``, parsed as ``doc``."""
    _check_unique_keys(body, doc)
    if b"ytesValue" in body or b"ytes_value" in body:  # only then is there base64 to check
        _check_base64(doc, "")
    if signal == "traces":
        from quiver.ingest.otlp.json_traces import traces_from_json

        try:
            return cast(Request, traces_from_json(doc, _ids_to_base64))
        except Exception:  # anything unusual: the general way decides
            doc = orjson.loads(body)  # afresh: the attempt may have changed it
    _ids_to_base64(doc, "")
    try:
        check_shape(doc, cls.DESCRIPTOR)
    except ShapeError as exc:
        raise BadRequestError(exc.message) from exc
    message = cls()
    try:
        json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BadRequestError(f"the body is not a valid OTLP/JSON {cls.__name__}: {exc}") from exc
    return message


_SPACED_KEY_END = re.compile(rb'"[ \t\n\r]+:')


def _check_unique_keys(body: bytes, doc: Any) -> None:
    """Refuse a body whose object names a key twice: the JSON parser keeps the last value
    and drops the other unseen (two ``resourceSpans`` arrays, and the spans of the first
    were acknowledged and lost). Cheap first: every key ends with a quote and a colon, so
    fewer keys held than such marks in the body (strings may hold ``\\":`` too) sends the
    body to the exact, slower parse that names the key."""
    marks = body.count(b'":') + len(_SPACED_KEY_END.findall(body))
    if marks == _keys_held(doc):
        return
    try:
        parse_json(body)
    except DuplicateKeyError as exc:
        raise BadRequestError(f"the body is not valid OTLP/JSON: {exc}") from None
    except ValueError:
        return  # what the parser that read the body took is left to it


def _keys_held(doc: Any) -> int:
    """How many keys the objects of ``doc`` hold, all levels together."""
    total = 0
    stack = [doc]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            total += len(node)
            stack.extend(node.values())
        elif type(node) is list:
            stack.extend(node)
    return total


_BYTES_KEYS = frozenset({"bytesValue", "bytes_value"})
_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")


def _check_base64(node: Any, where: str) -> None:
    """Refuse a ``bytesValue`` that is not base64 (standard or URL-safe, padded or not, as
    the proto3 JSON mapping reads it): the protobuf parser would drop the characters it does
    not know and keep what is left, silently."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_base64(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        at = f"{where}.{key}" if where else key
        if key in _BYTES_KEYS and isinstance(value, str):
            text = value.rstrip("=")
            if (
                not _BASE64.fullmatch(value)
                or len(text) % 4 == 1
                or len(value) - len(text) > (-len(text)) % 4
            ):
                raise BadRequestError(
                    f"{at}: {_shown(value)} is not base64 (OTLP/JSON bytes are base64, e.g. AAE=)"
                )
        elif isinstance(value, dict | list):
            _check_base64(value, at)


def _shown(text: str) -> str:
    """``text`` quoted for a message, its first 40 characters when it is longer: the answer
    to a request stays small whatever it holds."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "…"


def _kind(value: Any) -> str:
    kinds = {list: "an array", dict: "an object", str: "a string", bool: "a boolean"}
    return "null" if value is None else kinds.get(type(value), "a number")


_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})


def _ids_to_base64(node: Any, where: str) -> None:
    """Turn OTLP/JSON's hex ids into the base64 the proto3 JSON mapping reads, in place.

    Ids sit in spans, links, log records and exemplars; no other OTLP field has these names,
    so every object is searched (``attributes`` values are skipped: they are user data).
    """
    if isinstance(node, list):
        for i, item in enumerate(node):
            _ids_to_base64(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key in _ID_KEYS:
            if value is None:
                continue
            if not isinstance(value, str):
                raise BadRequestError(
                    f"{where}.{key}: an id must be a hex string, not {_kind(value)}"
                )
            try:
                raw = binascii.unhexlify(value)
            except (binascii.Error, ValueError) as exc:
                raise BadRequestError(
                    f"{where}.{key}: {_shown(value)} is not a hex string (OTLP/JSON ids are hex, "
                    "e.g. 5b8efff798038103d269b633813fc60c)"
                ) from exc
            node[key] = base64.b64encode(raw).decode("ascii")
        elif key not in ("attributes", "body", "value") and isinstance(value, dict | list):
            _ids_to_base64(value, f"{where}.{key}" if where else key)
