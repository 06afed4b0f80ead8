"""Avro records as Arrow rows typed by their Avro schema, for the receivers' ``format: avro``.

The Arrow type of each column comes from the schema, never from the first messages, so a
field that is null in the first message keeps its type and every value is exact:

==============================  ============================================================
Avro                            Arrow
==============================  ============================================================
null, boolean, int, long        null, bool, int32, int64
float, double                   float32, float64 (NaN and infinities kept)
bytes, string, fixed(n)         binary, string, fixed_size_binary(n)
enum                            string (the symbol)
record, array, map              struct, list, map<string, T>
["null", T] / [T, "null"]       T (nullable)
decimal(p, s) on bytes/fixed    decimal128(p, s) (decimal256 past 38 digits)
uuid                            string (canonical text; on fixed(16) as well)
date, time-millis, time-micros  date32, time32(ms), time64(us)
timestamp-millis/micros/nanos   timestamp(ms/us/ns, UTC)
local-timestamp-*               timestamp(ms/us/ns), no zone
duration (fixed 12)             month_day_nano_interval
==============================  ============================================================

A union of two or more types besides ``null`` has no Arrow type every sink can write: it is
refused when the schema is read, naming the field, unless ``schema`` declares the top-level
field ``json`` (or ``str``) to keep each value as its JSON text. A logical type the Avro
specification does not define is ignored (the underlying type applies), as the
specification says. Records are decoded with the logical types off and converted here, so a
timestamp far outside the years Python's ``datetime`` holds is still exact.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from quiver.pipeline.component import LINE_COLUMN, RowError
from quiver.pipeline.json_text import dump_json, json_array
from quiver.pipeline.records import RecordBatcher, arrow_type
from quiver.pipeline.type_names import epoch_unit
from quiver.runtime.errors import ConfigError, ErrorDetail

__all__ = ["AvroBatcher", "AvroLayout", "AvroWriting", "container_too_large"]

Convert = Callable[[Any], Any] | None  # raw decoded value -> what pa.array takes (None: as is)

_PRIMITIVES: dict[str, pa.DataType] = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
_TIMES: dict[tuple[str, str], pa.DataType] = {
    ("int", "date"): pa.date32(),
    ("int", "time-millis"): pa.time32("ms"),
    ("long", "time-micros"): pa.time64("us"),
    ("long", "timestamp-millis"): pa.timestamp("ms", "UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", "UTC"),
    ("long", "timestamp-nanos"): pa.timestamp("ns", "UTC"),
    ("long", "local-timestamp-millis"): pa.timestamp("ms"),
    ("long", "local-timestamp-micros"): pa.timestamp("us"),
    ("long", "local-timestamp-nanos"): pa.timestamp("ns"),
}
#: enough digits for any decimal Arrow holds (76) scaled, so nothing is rounded
_EXACT = decimal.Context(prec=200, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
_JSON_TEXT = ("json", "str", "string", "text")
_UNION_FIX = (
    "declare the top-level field `json` in `schema:` to keep each value as its JSON text, "
    'or make the union ["null", T]'
)


class _NoArrowTypeError(Exception):
    """A part of the schema with no Arrow type (message says which and why)."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


@dataclass
class _Column:
    name: str
    kind: pa.DataType
    convert: Convert


class AvroLayout:
    """An Avro record schema as Arrow columns, and the schema to decode bodies with (the same
    schema with its logical types off: they are applied by :meth:`column`)."""

    def __init__(self, schema: Any, origin: str, declared: Mapping[str, str] | None = None):
        """``schema``: the schema as JSON values; ``origin`` names it in errors (the file);
        ``declared``: the ``schema`` option (top-level fields typed otherwise). ConfigError
        naming every field with no Arrow type."""
        import fastavro

        self.origin = origin
        self.text = dump_json(schema).decode("utf-8")
        self._named: dict[str, Any] = {}
        self._open: list[Any] = []  # the records being typed (a recursive one is refused)
        self.columns: list[_Column] = []
        declared = dict(declared or {})
        problems: list[ErrorDetail] = []
        if not isinstance(schema, dict) or schema.get("type") != "record":
            raise ConfigError.one(
                f"avro_schema: {origin} is not a record schema: each body must be one record",
                "",
                'write the schema as {"type": "record", "name": ..., "fields": [...]}',
            )
        _register(self._named, schema, schema.get("namespace"))
        if _zero_width(schema, self._named, set()):
            raise ConfigError.one(
                f"avro_schema: {origin}: the record takes no bytes (it has no fields, or only "
                "null ones): a container of a few bytes could claim billions of them",
                "",
                "give the record a field that holds a value",
            )
        for f in schema.get("fields", []):
            name = f.get("name")
            weightless = _weightless_items(f.get("type"), str(name), self._named, set())
            if weightless is not None:
                problems.append(
                    ErrorDetail(
                        f"avro_schema: {origin}: field {weightless!r} is an array whose items "
                        "take no bytes (null, fixed of size 0, or records of such fields): a "
                        "body of a few bytes could claim billions of them",
                        "",
                        "give the array's items a type that holds a value, or drop the field",
                    )
                )
                continue
            if name in declared:
                continue  # typed by `schema`: converted from its decoded value
            try:
                kind, convert = self._arrow(f.get("type"), name, schema.get("namespace"))
            except _NoArrowTypeError as exc:
                problems.append(ErrorDetail(f"avro_schema: {origin}: {exc}", "", exc.fix))
                continue
            self.columns.append(_Column(name, kind, convert))
        if problems:
            raise ConfigError(problems)
        try:
            self.reading = fastavro.parse_schema(_plain(schema))
        except (ValueError, TypeError, KeyError, fastavro.schema.SchemaParseException) as exc:
            raise ConfigError.one(
                f"avro_schema: cannot read the Avro schema {origin}: {exc}",
                "",
                "point avro_schema at a valid .avsc file (JSON)",
            ) from exc
        self.fields = [f.get("name") for f in schema.get("fields", [])]

    # ------------------------------------------------------------------ schema to Arrow

    def _arrow(self, node: Any, path: str, namespace: str | None) -> tuple[pa.DataType, Convert]:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return _PRIMITIVES[node], None
            full = node if "." in node or not namespace else f"{namespace}.{node}"
            named = self._named.get(full) or self._named.get(node)
            if named is None:
                raise _NoArrowTypeError(
                    f"field {path!r}: unknown type {node!r}", "define the type first"
                )
            return self._arrow(named, path, namespace)
        if isinstance(node, list):
            return self._union(node, path, namespace)
        if not isinstance(node, dict):
            raise _NoArrowTypeError(
                f"field {path!r}: {node!r} is not an Avro type", "fix the schema"
            )
        kind = node.get("type")
        logical = node.get("logicalType")
        if isinstance(kind, dict | list) and logical is None:
            return self._arrow(kind, path, namespace)
        if isinstance(kind, str) and logical is not None:
            special = self._logical(node, kind, logical, path)
            if special is not None:
                return special
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind], None
        if kind in ("record", "error"):
            return self._struct(node, path, namespace)
        if kind == "enum":
            return pa.string(), None
        if kind == "fixed":
            return pa.binary(int(node.get("size", 0))), None
        if kind == "array":
            items, convert = self._arrow(node.get("items"), f"{path}[]", namespace)
            if convert is None:
                return pa.list_(items), None
            return pa.list_(items), lambda v: None if v is None else [convert(x) for x in v]
        if kind == "map":
            values, convert = self._arrow(node.get("values"), f"{path}{{}}", namespace)

            def entries(v: Any) -> Any:
                if v is None:
                    return None
                if convert is None:
                    return list(v.items())
                return [(k, convert(x)) for k, x in v.items()]

            return pa.map_(pa.string(), values), entries
        return self._arrow(kind, path, namespace)

    def _struct(
        self, node: dict[str, Any], path: str, namespace: str | None
    ) -> tuple[pa.DataType, Convert]:
        if any(node is open_ for open_ in self._open):
            raise _NoArrowTypeError(
                f"field {path!r} holds its own record type {node.get('name')!r} (a recursive "
                "type): no Arrow column holds it",
                "declare the top-level field `json` in `schema:` to keep each value as its "
                "JSON text",
            )
        self._open.append(node)
        fields: list[pa.Field] = []
        converts: list[tuple[str, Convert]] = []
        try:
            for f in node.get("fields", []):
                kind, convert = self._arrow(f.get("type"), f"{path}.{f.get('name')}", namespace)
                fields.append(pa.field(f.get("name"), kind))
                converts.append((f.get("name"), convert))
        finally:
            self._open.pop()
        if all(c is None for _, c in converts):
            return pa.struct(fields), None

        def record(v: Any) -> Any:
            if v is None:
                return None
            return {n: (v.get(n) if c is None else c(v.get(n))) for n, c in converts}

        return pa.struct(fields), record

    def _union(self, branches: list[Any], path: str, namespace: str | None) -> tuple[Any, Convert]:
        others = [b for b in branches if b != "null"]
        if not others:
            return pa.null(), None
        if len(others) > 1:
            shown = dump_json(branches).decode("utf-8")
            raise _NoArrowTypeError(
                f"field {path!r} is a union of several types ({shown}): no Arrow column holds it",
                _UNION_FIX,
            )
        return self._arrow(others[0], path, namespace)

    def _logical(
        self, node: dict[str, Any], kind: str, logical: Any, path: str
    ) -> tuple[pa.DataType, Convert] | None:
        if (kind, logical) in _TIMES:
            return _TIMES[(kind, logical)], None
        if logical == "decimal" and kind in ("bytes", "fixed"):
            return _decimal(node, path)
        if logical == "uuid" and kind == "string":
            return pa.string(), _fixed_uuid
        if logical == "uuid" and kind == "fixed" and node.get("size") == 16:
            return pa.string(), _fixed_uuid
        if logical == "duration" and kind == "fixed" and node.get("size") == 12:
            return pa.month_day_nano_interval(), _duration
        return None  # a logical type on a type it does not apply to: ignored, as Avro says

    # ------------------------------------------------------------------ records to Arrow

    def column(self, col: _Column, values: Sequence[Any]) -> tuple[pa.Array, dict[int, str]]:
        """The decoded ``values`` of a column as Arrow, and the values refused by index."""
        convert = col.convert
        out = list(values) if convert is None else [convert(v) for v in values]
        try:
            return pa.array(out, col.kind), {}
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
        refused: dict[int, str] = {}
        for i, value in enumerate(out):
            try:
                pa.array([value], col.kind)
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                refused[i] = f"{value!r} does not fit {col.kind} ({exc})"
                out[i] = None
        return pa.array(out, col.kind), refused


def container_too_large(body: bytes, start: int, codec: str, limit: int) -> str | None:
    """Why the compressed Avro object container ``body`` (its blocks from ``start``) is
    refused: its blocks decompress to more than ``limit`` bytes (a decompression bomb), or
    None. Each block is decompressed only up to what is left of ``limit``."""
    import bz2
    import lzma
    import zlib

    fo = io.BytesIO(body)
    fo.seek(start)
    total = 0
    while fo.tell() < len(body):
        count, size = _read_long(fo), _read_long(fo)
        if count is None or size is None or size < 0:
            return None  # not a container the decoder reads: it says why
        data = fo.read(size)
        room = limit - total + 1
        if codec == "deflate":
            total += len(zlib.decompressobj(-15).decompress(data, room))
        elif codec == "bzip2":
            total += len(bz2.BZ2Decompressor().decompress(data, room))
        elif codec == "xz":
            total += len(lzma.LZMADecompressor().decompress(data, room))
        elif codec == "snappy":  # the uncompressed length leads the block
            total += _read_long(io.BytesIO(data), zigzag=False) or 0
        else:
            return (
                f"an Avro container compressed with {codec!r}, whose blocks' size cannot be "
                "bounded before they are read: write it with the null, deflate, bzip2, xz or "
                "snappy codec"
            )
        if total > limit:
            return (
                f"an Avro container whose blocks decompress to more than max_message_bytes "
                f"({limit}) bytes: send fewer records per message, or raise max_message_bytes"
            )
        fo.read(16)  # the sync marker
    return None


def _read_long(fo: io.BytesIO, *, zigzag: bool = True) -> int | None:
    """A variable-length integer (zigzag-encoded, as Avro longs are, unless told not); None
    when the bytes end first."""
    value = shift = 0
    while True:
        byte = fo.read(1)
        if not byte or shift > 63:
            return None
        value |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    return (value >> 1) ^ -(value & 1) if zigzag else value


def _named_type(node: str, named: dict[str, Any]) -> Any:
    return named.get(node) or named.get(node.rsplit(".", 1)[-1])


def _zero_width(node: Any, named: dict[str, Any], seen: set[int]) -> bool:
    """Whether a value of the Avro type ``node`` is written with no bytes at all."""
    if isinstance(node, str):
        if node == "null":
            return True
        found = _named_type(node, named)
        return found is not None and not isinstance(found, str) and _zero_width(found, named, seen)
    if not isinstance(node, dict) or id(node) in seen:
        return False  # a union writes its branch's index; a recursive record is not empty
    kind = node.get("type")
    if isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in _KINDS):
        return _zero_width(kind, named, seen)
    if kind == "fixed":
        return node.get("size") == 0
    if kind in ("record", "error"):
        seen.add(id(node))
        try:
            return all(_zero_width(f.get("type"), named, seen) for f in node.get("fields", []))
        finally:
            seen.discard(id(node))
    return kind == "null"


_KINDS = {*_PRIMITIVES, "record", "error", "enum", "fixed", "array", "map"}


def _weightless_items(node: Any, path: str, named: dict[str, Any], seen: set[int]) -> str | None:
    """The path of the first array in the Avro type ``node`` whose items take no bytes (its
    block count alone would make the decoder loop as long as it says), or None."""
    if isinstance(node, list):
        for branch in node:
            found = _weightless_items(branch, path, named, seen)
            if found is not None:
                return found
        return None
    if isinstance(node, str):
        found_type = _named_type(node, named) if node not in _PRIMITIVES else None
        if found_type is None or isinstance(found_type, str):
            return None
        return _weightless_items(found_type, path, named, seen)
    if not isinstance(node, dict) or id(node) in seen:
        return None
    kind = node.get("type")
    if kind == "array":
        if _zero_width(node.get("items"), named, set()):
            return path
        return _weightless_items(node.get("items"), f"{path}[]", named, seen)
    if kind == "map":
        return _weightless_items(node.get("values"), f"{path}{{}}", named, seen)
    if kind in ("record", "error"):
        seen.add(id(node))
        try:
            for f in node.get("fields", []):
                found = _weightless_items(f.get("type"), f"{path}.{f.get('name')}", named, seen)
                if found is not None:
                    return found
        finally:
            seen.discard(id(node))
        return None
    if isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in _KINDS):
        return _weightless_items(kind, path, named, seen)
    return None


def _register(named: dict[str, Any], node: Any, namespace: str | None) -> None:
    """Remember the named types (records, enums, fixed) defined anywhere in ``node``."""
    if isinstance(node, list):
        for branch in node:
            _register(named, branch, namespace)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    if kind in ("record", "error", "enum", "fixed") and isinstance(node.get("name"), str):
        name = node["name"]
        space = node.get("namespace", namespace if "." not in name else None)
        full = name if "." in name or not space else f"{space}.{name}"
        named[full] = node
        named.setdefault(full.rsplit(".", 1)[-1], node)
        namespace = full.rsplit(".", 1)[0] if "." in full else namespace
    if kind in ("record", "error"):
        for f in node.get("fields", []):
            _register(named, f.get("type"), namespace)
    elif kind == "array":
        _register(named, node.get("items"), namespace)
    elif kind == "map":
        _register(named, node.get("values"), namespace)
    elif isinstance(kind, dict | list):
        _register(named, kind, namespace)


def _decimal(node: dict[str, Any], path: str) -> tuple[pa.DataType, Convert]:
    precision, scale = node.get("precision"), node.get("scale", 0)
    fix = "give the decimal a precision of 1 to 76 and a scale of 0 to the precision"
    if not isinstance(precision, int) or not isinstance(scale, int):
        raise _NoArrowTypeError(
            f"field {path!r}: decimal needs whole-number precision and scale", fix
        )
    if not 1 <= precision <= 76 or not 0 <= scale <= precision:
        raise _NoArrowTypeError(
            f"field {path!r}: decimal({precision}, {scale}) has no Arrow type "
            "(precision 1 to 76, scale 0 to the precision)",
            fix,
        )
    kind = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)

    def value(v: Any) -> Any:
        if v is None or isinstance(v, decimal.Decimal):  # a container file's reader gives these
            return v
        unscaled = int.from_bytes(bytes(v), "big", signed=True)
        return decimal.Decimal(unscaled).scaleb(-scale, _EXACT)

    return kind, value


def _fixed_uuid(v: Any) -> Any:
    if v is None or isinstance(v, str):
        return v
    return str(v if isinstance(v, uuid.UUID) else uuid.UUID(bytes=bytes(v)))


def _duration(v: Any) -> Any:
    """Avro's duration (months, days, milliseconds; little-endian unsigned 32-bit each)."""
    if v is None:
        return None
    raw = bytes(v)
    months, days, millis = (int.from_bytes(raw[i : i + 4], "little") for i in (0, 4, 8))
    return pa.MonthDayNano([months, days, millis * 1_000_000])


def _plain(node: Any) -> Any:
    """The schema with its logical types off (the decoder then gives their raw values)."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return dump_json(value, option=0).decode("utf-8")


class AvroBatcher(RecordBatcher):
    """Decoded Avro records as batches of the layout's Arrow schema; fields typed by
    ``schema`` (and a receiver's own fields) are converted by the JSON rules of
    :mod:`quiver.pipeline.json_text`."""

    def __init__(
        self,
        where: str,
        layout: AvroLayout,
        declared: Mapping[str, str],
        known: Mapping[str, str],
    ) -> None:
        super().__init__(where)
        self.layout = layout
        self._declared = dict(declared)
        self._extra = {n: t for n, t in known.items() if n not in declared}
        fields = [pa.field(c.name, c.kind) for c in layout.columns]
        typed = {c.name for c in layout.columns}
        self._typed = [n for n in layout.fields if n not in typed] + [
            n for n in declared if n not in layout.fields
        ]
        self._typed += [n for n in self._extra if n not in self._typed and n not in typed]
        types = {**self._extra, **self._declared}
        for name in self._typed:
            text = types.get(name, "json")
            fields.append(pa.field(name, arrow_type(text, name)))
            self.units[name] = epoch_unit(text)
        self.schema = self.columns_schema = pa.schema(fields)
        self._types = types

    def split(self, records: Sequence[Any]) -> tuple[pa.RecordBatch, list[RowError]]:
        first = self.records + 1
        self.records += len(records)
        objects = [r if isinstance(r, dict) else {} for r in records]
        bad: dict[int, RowError] = {}
        arrays: list[pa.Array] = []

        def refuse(refused: dict[int, str], name: str, values: Sequence[Any]) -> None:
            for i, reason in refused.items():
                bad.setdefault(
                    i,
                    RowError(
                        first + i,
                        f"record {first + i} field {name!r}: {reason}",
                        name,
                        str(values[i]),
                    ),
                )

        for col in self.layout.columns:
            values = [r.get(col.name) for r in objects]
            array, refused = self.layout.column(col, values)
            refuse(refused, col.name, values)
            arrays.append(array)
        for name in self._typed:
            values = [r.get(name) for r in objects]
            kind = self.columns_schema.field(name).type
            if self._types.get(name, "json").strip().lower() in _JSON_TEXT:
                values = [None if v is None else _json_text(_jsonable(v)) for v in values]
            array, refused = json_array(values, kind, self.units.get(name, "s"))
            refuse(refused, name, values)
            arrays.append(array)
        lines = pa.array(range(first, first + len(records)), pa.int64())
        batch = pa.record_batch(
            [*arrays, lines], schema=self.columns_schema.append(pa.field(LINE_COLUMN, pa.int64()))
        )
        if bad:
            batch = batch.filter(pa.array([i not in bad for i in range(len(records))]))
        return batch, [bad[i] for i in sorted(bad)]


def _jsonable(value: Any) -> Any:
    """A decoded value as JSON values (bytes as base64)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------------- rows to Avro

_PER_SECOND = {"ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_EPOCH_DAY = dt.date(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class AvroWriting:
    """Rows as the raw values of an Avro schema's logical types (what
    :attr:`AvroLayout.reading` decodes), converted exactly from their Arrow types: the inverse of
    :class:`AvroLayout`, so a row written and read back with one schema is the same row."""

    def __init__(self, schema: Any) -> None:
        import fastavro

        self.schema = schema
        self._named: dict[str, Any] = {}
        _register(self._named, schema, schema.get("namespace"))
        # the schema as it is: its writer takes the raw values of logical types as they
        # are, and a container file then carries the logical types in its header
        self.writing = fastavro.parse_schema(schema)

    def rows(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """The rows of ``batch`` as Avro values; ValueError naming the row and field of a
        value the schema cannot hold."""
        names = batch.schema.names
        columns: dict[str, list[Any]] = {}
        for f in self.schema.get("fields", []):
            name = f.get("name")
            if name not in names:
                continue  # the schema's default applies, or the writer names the field
            node = self._resolve(f.get("type"))
            column = batch.column(name)
            unit = _time_unit(node)
            if unit is not None and pa.types.is_timestamp(column.type):
                columns[name] = _rescaled(column, unit)
                continue
            values = column.to_pylist()
            out = []
            for row, value in enumerate(values, 1):
                try:
                    out.append(self._wire(f.get("type"), value))
                except (ValueError, TypeError, OverflowError, decimal.InvalidOperation) as exc:
                    raise ValueError(f"row {row} field {name!r}: {exc}") from exc
            columns[name] = out
        return [{n: values[i] for n, values in columns.items()} for i in range(batch.num_rows)]

    def _resolve(self, node: Any) -> Any:
        if isinstance(node, str) and node not in _PRIMITIVES:
            return self._named.get(node, node)
        if isinstance(node, list):
            others = [b for b in node if b != "null"]
            return self._resolve(others[0]) if len(others) == 1 else node
        if (
            isinstance(node, dict)
            and isinstance(node.get("type"), dict | list)
            and node.get("logicalType") is None
        ):
            return self._resolve(node["type"])
        return node

    def _wire(self, node: Any, value: Any) -> Any:
        if value is None:
            return None
        node = self._resolve(node)
        if isinstance(node, str | list):
            return value  # a primitive, or a union of several types: fastavro picks the branch
        kind, logical = node.get("type"), node.get("logicalType")
        if logical is not None:
            wired = _logical_wire(node, kind, logical, value)
            if wired is not _NOT_LOGICAL:
                return wired
        if kind in ("record", "error"):
            return {
                f.get("name"): self._wire(f.get("type"), value.get(f.get("name")))
                for f in node.get("fields", [])
            }
        if kind == "array":
            return [self._wire(node.get("items"), v) for v in value]
        if kind == "map":
            items = value.items() if isinstance(value, dict) else value
            return {k: self._wire(node.get("values"), v) for k, v in items}
        if isinstance(kind, str) and kind not in _PRIMITIVES and kind not in ("enum", "fixed"):
            return self._wire(kind, value)
        return value


_NOT_LOGICAL = object()


def _time_unit(node: Any) -> str | None:
    if not isinstance(node, dict) or node.get("type") != "long":
        return None
    logical = node.get("logicalType")
    if not isinstance(logical, str) or "timestamp-" not in logical:
        return None
    unit = {"millis": "ms", "micros": "us", "nanos": "ns"}.get(logical.rsplit("-", 1)[-1])
    return unit


def _rescaled(column: pa.Array | pa.ChunkedArray, unit: str) -> list[Any]:
    """A timestamp column as counts of ``unit`` since 1970 (UTC, or the wall time of a
    column without zone); ValueError when a value has a finer fraction than ``unit``."""
    have = _PER_SECOND.get(str(column.type.unit), 1)
    want = _PER_SECOND[unit]
    counts: list[Any] = column.cast(pa.int64()).to_pylist()
    if have == want:
        return counts
    out: list[Any] = []
    for row, count in enumerate(counts, 1):
        if count is None:
            out.append(None)
            continue
        scaled, rest = divmod(count * want, have)
        if rest:
            raise ValueError(
                f"row {row}: the timestamp has a finer fraction than the schema's {unit} "
                "(truncate it in a processor, or give the schema a finer timestamp)"
            )
        out.append(scaled)
    return out


def _logical_wire(node: dict[str, Any], kind: Any, logical: Any, value: Any) -> Any:
    unit = _time_unit(node)
    if unit is not None:
        if isinstance(value, int):
            return value
        if not isinstance(value, dt.datetime):
            raise TypeError(f"{value!r} is not a timestamp")
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        delta = aware - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        nanos = micros * 1_000 + getattr(value, "nanosecond", 0)
        count, rest = divmod(nanos, 1_000_000_000 // _PER_SECOND[unit])
        if rest:
            raise ValueError(f"{value} has a finer fraction than the schema's {unit}")
        return count
    if (kind, logical) == ("int", "date") and isinstance(value, dt.date):
        return (value - _EPOCH_DAY).days
    if logical in ("time-millis", "time-micros") and isinstance(value, dt.time):
        micros = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000
        micros += value.microsecond
        if logical == "time-micros":
            return micros
        if micros % 1_000:
            raise ValueError(f"{value} has a finer fraction than milliseconds")
        return micros // 1_000
    if logical == "decimal" and kind in ("bytes", "fixed"):
        scale = int(node.get("scale", 0))
        number = decimal.Decimal(value)
        unscaled = number.scaleb(scale, _EXACT)
        if unscaled != unscaled.to_integral_value():
            raise ValueError(f"{value} has more than the schema's {scale} decimal digit(s)")
        whole = int(unscaled)
        if kind == "fixed":
            return whole.to_bytes(int(node.get("size", 0)), "big", signed=True)
        return whole.to_bytes(max(1, (whole.bit_length() + 8) // 8), "big", signed=True)
    if logical == "uuid":
        if kind == "fixed":
            return uuid.UUID(str(value)).bytes
        return str(value)
    if logical == "duration" and kind == "fixed" and isinstance(value, pa.MonthDayNano):
        months, days, nanos = value.months, value.days, value.nanoseconds
        if nanos % 1_000_000 or min(months, days, nanos) < 0:
            raise ValueError(f"{value} is not whole non-negative months, days and milliseconds")
        millis = nanos // 1_000_000
        return b"".join(int(n).to_bytes(4, "little") for n in (months, days, millis))
    return _NOT_LOGICAL
