"""The Arrow IPC streams of one OTAP gRPC stream (section 4 of the OTAP specification).

Within one ``ArrowTraces`` / ``ArrowLogs`` / ``ArrowMetrics`` call, every payload type has an
Arrow IPC stream of its own: the first payload of a ``(type, schema_id)`` starts with the
Schema message, and later payloads carry only dictionary and record batch messages that
reuse it. A new ``schema_id`` for a type resets its stream, and a payload ending with the IPC
end-of-stream marker ends it (the type's next payload begins with a Schema message again).
:class:`IpcStreams` keeps one reader per payload type for the life of the call and turns each
payload's bytes into a :class:`~quiver.ingest.otap.columns.Payload` (structs flattened,
dictionaries decoded).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc

from quiver.ingest.arrow_layout import Signal
from quiver.ingest.otap.columns import OtapDataError, Payload
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2

__all__ = ["ALLOWED", "MAX_HELD_BYTES", "IpcStreams", "payload_name"]

_T = otap_pb2.ArrowPayloadType

#: The payload types each signal's service takes (section 3.1 of the specification).
ALLOWED: dict[Signal, frozenset[int]] = {
    "traces": frozenset(
        (
            _T.SPANS,
            _T.SPAN_ATTRS,
            _T.SPAN_EVENTS,
            _T.SPAN_LINKS,
            _T.SPAN_EVENT_ATTRS,
            _T.SPAN_LINK_ATTRS,
            _T.RESOURCE_ATTRS,
            _T.SCOPE_ATTRS,
        )
    ),
    "logs": frozenset((_T.LOGS, _T.LOG_ATTRS, _T.RESOURCE_ATTRS, _T.SCOPE_ATTRS)),
    "metrics": frozenset(
        (
            _T.UNIVARIATE_METRICS,
            _T.NUMBER_DATA_POINTS,
            _T.SUMMARY_DATA_POINTS,
            _T.HISTOGRAM_DATA_POINTS,
            _T.EXP_HISTOGRAM_DATA_POINTS,
            _T.NUMBER_DP_ATTRS,
            _T.SUMMARY_DP_ATTRS,
            _T.HISTOGRAM_DP_ATTRS,
            _T.EXP_HISTOGRAM_DP_ATTRS,
            _T.NUMBER_DP_EXEMPLARS,
            _T.HISTOGRAM_DP_EXEMPLARS,
            _T.EXP_HISTOGRAM_DP_EXEMPLARS,
            _T.NUMBER_DP_EXEMPLAR_ATTRS,
            _T.HISTOGRAM_DP_EXEMPLAR_ATTRS,
            _T.EXP_HISTOGRAM_DP_EXEMPLAR_ATTRS,
            _T.METRIC_ATTRS,
            _T.RESOURCE_ATTRS,
            _T.SCOPE_ATTRS,
        )
    ),
}


def payload_name(kind: int) -> str:
    """The payload type's name (``SPAN_ATTRS``), or its number when unknown."""
    try:
        return str(_T.Name(kind))
    except ValueError:
        return f"payload type {kind}"


class _Pipe:
    """A file the IPC reader pulls from; each payload's bytes are fed in before reading."""

    closed = False

    def __init__(self) -> None:
        self._chunks: deque[memoryview] = deque()

    @property
    def pending(self) -> int:
        """Bytes fed and not read yet."""
        return sum(len(chunk) for chunk in self._chunks)

    def feed(self, data: bytes) -> None:
        self._chunks.append(memoryview(data))

    def read(self, size: int = -1) -> bytes | memoryview:
        if self._chunks and 0 < size <= len(self._chunks[0]):  # no copy
            chunk = self._chunks[0]
            if size == len(chunk):
                self._chunks.popleft()
                return chunk
            self._chunks[0] = chunk[size:]
            return chunk[:size]
        out = []
        while self._chunks and size != 0:
            chunk = self._chunks[0]
            if size < 0 or len(chunk) <= size:
                out.append(chunk)
                self._chunks.popleft()
                size = size - len(chunk) if size > 0 else size
            else:
                out.append(chunk[:size])
                self._chunks[0] = chunk[size:]
                size = 0
        return b"".join(out)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


#: What the IPC streams of one gRPC stream may hold at once by default, dictionaries and
#: unread payload bytes together (the Collector's otelarrow receiver bounds its Arrow memory
#: alike); ``arrow.max_stream_bytes``.
MAX_HELD_BYTES = 128 << 20


def _dictionary_bytes(batch: pa.RecordBatch) -> int:
    """The bytes of the dictionaries ``batch``'s columns use (struct fields too): those the
    IPC reader holds for the stream."""
    total = 0
    arrays: list[pa.Array] = list(batch.columns)
    while arrays:
        array = arrays.pop()
        if pa.types.is_dictionary(array.type):
            total += array.dictionary.nbytes
        elif pa.types.is_struct(array.type):
            arrays.extend(array.field(i) for i in range(array.type.num_fields))
    return total


class _Stream:
    def __init__(self, schema_id: str) -> None:
        self.schema_id = schema_id
        self.pipe = _Pipe()
        self.dictionary_bytes = 0  # of the dictionaries its reader holds
        self.reader: ipc.RecordBatchStreamReader | None = None
        self.encodings: dict[str, str] = {}
        self.memo: dict[str, Any] = {}  # see Payload.memo


class IpcStreams:
    """The IPC stream state of one gRPC stream; see the module's doc."""

    def __init__(self, signal: Signal, max_held_bytes: int = MAX_HELD_BYTES) -> None:
        self.signal = signal
        self.max_held_bytes = max_held_bytes
        self._streams: dict[int, _Stream] = {}
        self._ended: set[int] = set()  # payload types whose last stream ended with its marker

    def decode(self, kind: int, schema_id: str, record: bytes) -> Payload | None:
        """The payload's table (None when it holds no rows); OtapDataError when it cannot
        be read. A stream that failed is forgotten: its next payload must start anew."""
        name = payload_name(kind)
        if kind not in ALLOWED[self.signal]:
            raise OtapDataError(
                f"{name} is not a payload type of {self.signal} (the Arrow{self.signal.title()} "
                f"service takes {', '.join(sorted(payload_name(k) for k in ALLOWED[self.signal]))})"
            )
        try:
            count, schema_first, ends = _messages(name, record)
            stream = self._streams.get(kind)
            if stream is None or stream.schema_id != schema_id or schema_first:
                if not schema_first and kind in self._ended:
                    raise OtapDataError(
                        f"{name}: its IPC stream ended with an end-of-stream marker; a new one "
                        "must begin with a Schema message"
                    )
                if not schema_first:
                    raise OtapDataError(
                        f"{name}: a new IPC stream (schema_id {schema_id[:40]!r}"
                        f"{'…' if len(schema_id) > 40 else ''} was not seen for "
                        "this payload type on this gRPC stream) must begin with a Schema message"
                    )
                self._ended.discard(kind)
                stream = self._streams[kind] = _Stream(schema_id)
            batches = self._read(stream, record, count)
            self._check_held(name, stream, batches)
        except OtapDataError:
            self._streams.pop(kind, None)
            raise
        except (pa.ArrowException, OSError, ValueError, StopIteration) as exc:
            self._streams.pop(kind, None)
            why = str(exc) or "the IPC stream has ended"  # StopIteration: nothing more to read
            raise OtapDataError(f"{name}: the Arrow IPC data cannot be read: {why}") from exc
        if ends:  # its next payload must begin a new IPC stream, with its Schema message
            del self._streams[kind]
            self._ended.add(kind)
        if not batches:
            return None
        batch = batches[0] if len(batches) == 1 else _concat(batches)
        if not batch.num_rows:
            return None
        return Payload(name, _normalised(batch), stream.encodings, stream.memo)

    def _check_held(self, name: str, stream: _Stream, batches: list[pa.RecordBatch]) -> None:
        """Refuse a payload after which this gRPC stream's IPC streams hold more than
        ``max_held_bytes`` between them: dictionaries (delta dictionaries add up for the
        life of an IPC stream) and payload bytes not read yet (dictionary messages with no
        record batch after them)."""
        if batches:
            stream.dictionary_bytes = _dictionary_bytes(batches[-1])
        held = sum(s.dictionary_bytes + s.pipe.pending for s in self._streams.values())
        if held > self.max_held_bytes:
            raise OtapDataError(
                f"{name}: the IPC streams of this gRPC stream hold {held:,} bytes of "
                f"dictionaries and unread messages, over the {self.max_held_bytes:,} of "
                "arrow.max_stream_bytes; begin new IPC streams (a Schema message) to drop "
                "their dictionaries, or open a new gRPC stream"
            )

    def _read(self, stream: _Stream, record: bytes, count: int) -> list[pa.RecordBatch]:
        stream.pipe.feed(record)
        if stream.reader is None:
            stream.reader = ipc.open_stream(stream.pipe)
            stream.encodings = _encodings(stream.reader.schema)
        reader = stream.reader
        batches = [reader.read_next_batch() for _ in range(count)]
        for batch in batches:
            batch.validate(full=True)  # offsets, lengths, UTF-8: never trust the sender
        return batches


def _messages(name: str, record: bytes) -> tuple[int, bool, bool]:
    """How many record batches ``record`` holds, whether it begins with a Schema message
    (which starts a new IPC stream) and whether it ends with the end-of-stream marker (which
    ends it), checking its messages are whole; a Schema message anywhere else, or bytes
    after the end-of-stream marker, are refused."""
    if not record:
        raise OtapDataError(f"{name}: the record is empty (at least one IPC message is required)")
    count = 0
    schema_first = False
    source = pa.BufferReader(pa.py_buffer(record))
    size = len(record)
    try:
        i = 0
        while source.tell() < size:
            try:
                message = ipc.read_message(source)
            except EOFError:  # the end-of-stream marker
                if source.tell() < size:
                    raise OtapDataError(
                        f"{name}: {size - source.tell():,} bytes after the IPC end-of-stream "
                        "marker; a payload ending its IPC stream must end with the marker"
                    ) from None
                return count, schema_first, True
            if message.type == "schema":
                if i:
                    raise OtapDataError(
                        f"{name}: a Schema message after other messages of the payload; a "
                        "Schema message may only begin a payload"
                    )
                schema_first = True
            elif message.type == "record batch":
                count += 1
            i += 1
    except (pa.ArrowException, OSError) as exc:
        raise OtapDataError(f"{name}: the Arrow IPC data cannot be read: {exc}") from exc
    return count, schema_first, False


def _concat(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _encodings(schema: pa.Schema) -> dict[str, str]:
    """The ``encoding`` metadata of the id columns, by flattened name (``resource.id``)."""
    found: dict[str, str] = {}

    def walk(fields: list[pa.Field], prefix: str) -> None:
        for f in fields:
            name = prefix + f.name
            meta = f.metadata or {}
            if b"encoding" in meta:
                found[name] = meta[b"encoding"].decode("utf-8", "replace")
            if pa.types.is_struct(f.type):
                walk(list(f.type), name + ".")

    walk(list(schema), "")
    return found


def _normalised(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Structs flattened (``resource.id``) and dictionary columns decoded."""
    names: list[str] = []
    arrays: list[pa.Array] = []

    def add(name: str, array: pa.Array) -> None:
        if pa.types.is_struct(array.type):
            for f, child in zip(array.type, array.flatten(), strict=True):
                add(f"{name}.{f.name}", child)
            return
        if pa.types.is_dictionary(array.type) and name != "key":
            array = array.dictionary_decode()  # attribute keys stay encoded until gathered
        names.append(name)
        arrays.append(array)

    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        add(name, array)
    return pa.RecordBatch.from_arrays(arrays, names=names)
