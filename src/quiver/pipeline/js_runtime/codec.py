"""RecordBatch <-> the columnar JSON and ArrayBuffers the prelude's driver loop reads and writes.

One ``orjson.dumps`` of the batch on the way in (number columns without nulls and text lengths
go as int32/float64 into a buffer V8 allocates), one ``orjson.loads`` on the way out plus one
buffer of packed number, boolean and ASCII string columns. Text columns without nulls go as
one string each, with the lengths in the buffer; typed columns are rebuilt against
the step's output schema, or inferred (preferring the input column's type when a column keeps
its name), exactly as their JSON values would be.
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import json
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from quiver.pipeline import kernels as pc
from quiver.pipeline.component import LINE_COLUMN
from quiver.pipeline.value_text import (
    duration_texts,
    durations_from_texts,
    iso_duration,
    timestamps_as_text,
)

__all__ = [
    "FIELD_TYPES",
    "LINE_COLUMN",
    "DecodedBatch",
    "OutputField",
    "arrow_type",
    "decode_output",
    "encode_input",
    "normalize_type",
]


#: Canonical output field types and their spellings (FlowEngine's and Arrow's), case-insensitive.
FIELD_TYPES: dict[str, str] = {
    "string": "string",
    "str": "string",
    "text": "string",
    "integer": "integer",
    "int": "integer",
    "int32": "integer",
    "long": "long",
    "int64": "long",
    "bigint": "long",
    "decimal": "decimal",
    "numeric": "decimal",
    "money": "decimal",
    "double": "double",
    "float": "double",
    "float64": "double",
    "number": "double",
    "boolean": "boolean",
    "bool": "boolean",
    "datetime": "datetime",
    "timestamp": "datetime",
    "date": "date",
    "time": "time",
}

DEFAULT_DECIMAL_PRECISION = 38
DEFAULT_DECIMAL_SCALE = 9


def normalize_type(name: str) -> str | None:
    """The canonical type for a spelling, or None when the spelling is unknown."""
    return FIELD_TYPES.get(name.strip().lower())


@dataclass(frozen=True)
class OutputField:
    """One declared output field: its canonical type and whether it may be empty."""

    name: str
    type: str
    required: bool = False
    precision: int = DEFAULT_DECIMAL_PRECISION
    scale: int = DEFAULT_DECIMAL_SCALE

    def to_js(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "required": self.required}


def arrow_type(f: OutputField) -> pa.DataType:
    """The Arrow type a declared output field is written as."""
    simple: dict[str, pa.DataType] = {
        "string": pa.string(),
        "integer": pa.int32(),
        "long": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "datetime": pa.timestamp("ms", tz="UTC"),
        "date": pa.date32(),
        "time": pa.time64("us"),
    }
    if f.type == "decimal":
        return pa.decimal128(f.precision, f.scale)
    return simple[f.type]


def _type_label(t: pa.DataType) -> str:
    if pa.types.is_integer(t):
        return "long" if t.bit_width == 64 else "integer"
    if pa.types.is_floating(t):
        return "double"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_timestamp(t):
        return "datetime"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_time(t):
        return "time"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.timedelta | pa.MonthDayNano):
        return iso_duration(value)
    raise TypeError(f"cannot pass a value of type {type(value).__name__} to JavaScript")


def _primitive_values(col: pa.Array) -> np.ndarray[Any, Any]:
    """The values of an integer or float array as NumPy, without copying (nulls hold
    whatever their slots hold). ``Array.to_numpy`` would do the same, but imports pandas on
    its first call: a few hundred milliseconds that a run which never touches pandas should
    not pay."""
    dtype = np.dtype(col.type.to_pandas_dtype())
    data = col.buffers()[1]
    if data is None:
        return np.zeros(len(col), dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=col.offset + len(col))[col.offset :]


def _from_numpy(values: np.ndarray[Any, Any], valid: np.ndarray[Any, Any] | None) -> pa.Array:
    """An Arrow array of a 1-d int64, float64 or bool NumPy array, null where ``valid`` is
    false: ``pa.array(values, mask=~valid)`` without its import of pandas."""
    n = len(values)
    if values.dtype == np.bool_:
        arrow_type: pa.DataType = pa.bool_()
        data = pa.py_buffer(np.packbits(values, bitorder="little"))
    else:
        arrow_type = pa.from_numpy_dtype(values.dtype)
        data = pa.py_buffer(np.ascontiguousarray(values))
    if valid is None:
        return pa.Array.from_buffers(arrow_type, n, [None, data])
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    nulls = int(n - np.count_nonzero(valid))
    return pa.Array.from_buffers(arrow_type, n, [bitmap, data], null_count=nulls)


def _column_for_js(col: pa.Array, plain_text: bool = False) -> tuple[str, Any]:
    """(kind, values) of one column as JavaScript will see it; ``plain_text``: a text slab
    holds its text as it is (see :func:`_text_slab`)."""
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.dictionary_decode()
        t = col.type
    if pa.types.is_timestamp(t):
        ms = pc.cast(col, pa.timestamp("ms", tz=t.tz), safe=False).cast(pa.int64())
        return "ts", ms.to_pylist()
    if pa.types.is_decimal(t):
        return "n", col.cast(pa.float64()).to_pylist()
    if pa.types.is_date(t) or pa.types.is_time(t):
        return "s", col.cast(pa.string()).to_pylist()
    if pa.types.is_duration(t) or pa.types.is_interval(t):
        # ISO 8601 durations, as the text sinks write them (a script sees "PT90000S")
        return "s", duration_texts(col).to_pylist()
    if pa.types.is_large_string(t):
        col = col.cast(pa.string())
        t = col.type
    if pa.types.is_string(t):
        slab = _text_slab(col, plain_text)
        return ("s", col.to_pylist()) if slab is None else ("s", slab)
    if (pa.types.is_integer(t) or pa.types.is_floating(t)) and col.null_count == 0:
        return "n", _primitive_values(col)
    if pa.types.is_nested(t):
        # timestamps inside lists and structs as RFC 3339 text, as the text sinks write them
        return "n", timestamps_as_text(col).to_pylist()
    return "n", col.to_pylist()


def _text_slab(col: pa.Array, plain_text: bool = False) -> Any:
    """A string column without nulls as ``{"d": all text, "l": lengths}``: one JSON string
    instead of one per row (the driver cuts it back into values). The lengths count UTF-16
    code units, as JavaScript strings do. Text that is not ASCII goes with its characters
    escaped, so the whole JSON text stays ASCII: V8 then keeps it, and every string cut from
    it, one byte a character, which parses and runs faster than two. With ``plain_text`` the
    text is the ``str`` itself, never written into JSON (it is handed to V8 as a string
    argument, see :func:`encode_input`)."""
    if col.null_count or len(col) == 0:
        return None
    all_offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)
    offsets = all_offsets[col.offset : col.offset + len(col) + 1]
    data = col.buffers()[2]
    first, last = int(offsets[0]), int(offsets[-1])
    raw = memoryview(data)[first:last] if data is not None else memoryview(b"")
    try:  # decoded straight from Arrow's buffer, and checked on the way
        return {"d": codecs.ascii_decode(raw)[0], "l": np.diff(offsets)}
    except UnicodeDecodeError:
        pass
    text = codecs.utf_8_decode(raw, "strict", True)[0]
    lengths = _primitive_values(pc.utf8_length(col)).astype(np.int32)
    if np.frombuffer(raw, dtype=np.uint8).max() >= 0xF0:  # beyond U+FFFF: two code units
        astral = pc.count_substring_regex(col, "[\U00010000-\U0010ffff]")
        lengths += _primitive_values(astral).astype(np.int32)
    return {"d": text if plain_text else orjson.Fragment(json.dumps(text)), "l": lengths}


def _numbers_for_js(col: pa.Array) -> np.ndarray[Any, Any] | None:
    """An integer or float column without nulls, NaN or infinities as int32 (integers that
    fit) or float64 (the numbers JavaScript sees), or None when it must go as JSON."""
    t = col.type
    if col.null_count or len(col) == 0 or not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        return None
    if pa.types.is_integer(t):
        low, high = pc.min_max(col).values()
        if low.as_py() >= -(2**31) and high.as_py() < 2**31:  # V8 keeps them as small ints
            small: np.ndarray[Any, Any] = _primitive_values(col).astype(np.int32, copy=False)
            return small
    values: np.ndarray[Any, Any] = _primitive_values(col).astype(np.float64, copy=False)
    if pa.types.is_floating(t) and not np.isfinite(values).all():
        return None  # JSON turns them into null
    return values


def encode_input(
    batch: pa.RecordBatch,
    typed: list[OutputField] | None = None,
    numbers: list[np.ndarray[Any, Any]] | None = None,
    texts: list[str] | None = None,
) -> tuple[bytes, list[pa.DataType]]:
    """The batch as the prelude's input JSON, and the Arrow types of its (non-line) columns.

    ``passable`` tells the driver which input columns may come back by reference: all of them
    for inferred output, and those whose type equals the declared type for typed output.

    With ``numbers``, number columns without nulls (and the line numbers) are not written as
    JSON: their int32 or float64 values are appended to it and the JSON holds ``{"a": byte
    offset}`` (plus ``"t": "i"`` for int32) into one buffer where each takes 8 bytes a row,
    which the caller hands to V8; so are the value lengths of text slabs.

    With ``texts`` (an empty list), the text of the slabs is not written into the JSON either:
    ``texts`` receives the strings the caller hands to V8 as arguments beside the JSON, which
    V8 takes as they are where JSON text would be scanned for escapes (on both sides) and
    copied once more. The ASCII text of every slab is one string, the first (each argument
    costs V8 a call of its own); a text that is not ASCII follows as a string of its own (so
    the ASCII text stays one byte a character in V8, whatever the other holds). A slab holds
    ``{"s": argument index, "o": where its text starts in it}``.
    """

    def packed(col: pa.Array) -> Any:
        if numbers is None:
            return None
        values = _numbers_for_js(col)
        if values is None:
            return None
        numbers.append(values)
        return _slot(values, len(numbers) - 1)

    def _slot(values: np.ndarray[Any, Any], k: int) -> dict[str, Any]:
        at = 8 * batch.num_rows * k
        return {"a": at, "t": "i"} if values.dtype == np.int32 else {"a": at}

    ascii_texts: list[str] = []
    ascii_size = 0
    other_texts: list[str] = []
    names: list[str] = []
    kinds: list[str] = []
    labels: list[str] = []
    cols: list[Any] = []
    types: list[pa.DataType] = []
    lines: list[Any] | None = None
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        if name == LINE_COLUMN:
            lines = packed(col) or col.to_pylist()
            continue
        spec = packed(col)
        kind, values = ("n", spec) if spec is not None else _column_for_js(col, texts is not None)
        if isinstance(values, dict) and "l" in values:  # a text slab
            lengths: Any = values["l"]
            if numbers is not None:
                numbers.append(lengths.astype(np.int32, copy=False))
                lengths = _slot(numbers[-1], len(numbers) - 1)
            if texts is not None:
                text = values["d"]
                if text.isascii():
                    values = {"s": 0, "o": ascii_size, "l": lengths}
                    ascii_texts.append(text)
                    ascii_size += len(text)
                else:
                    other_texts.append(text)
                    values = {"s": len(other_texts), "o": 0, "l": lengths}
            else:
                values = {"d": values["d"], "l": lengths}
        names.append(name)
        kinds.append(kind)
        labels.append(_type_label(col.type))
        cols.append(values)
        types.append(col.type)
    if texts is not None:
        texts[:] = ["".join(ascii_texts), *other_texts]
    passable: dict[str, int] = {}
    declared = {f.name: arrow_type(f) for f in typed} if typed is not None else None
    for j, (name, t) in enumerate(zip(names, types, strict=True)):
        if declared is None or declared.get(name) == t:
            passable[name] = j
    doc = {
        "n": batch.num_rows,
        "passable": passable,
        "names": names,
        "kinds": kinds,
        "types": labels,
        "cols": cols,
        "lines": lines,
    }
    return orjson.dumps(doc, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY), types


@dataclass
class DecodedBatch:
    """What the driver returned for one batch, rebuilt as Arrow."""

    batch: pa.RecordBatch
    routes: dict[str, pa.RecordBatch]
    errors: list[dict[str, Any]]
    logs: list[tuple[str, str]]
    metadata: dict[str, str] = field(default_factory=dict)
    #: Columns of ``batch`` that are input columns unchanged, row for row (output name ->
    #: input name): the caller may use its own copy of them instead.
    passthrough: dict[str, str] = field(default_factory=dict)


class OutputTypeError(Exception):
    """An inferred output column could not be built (mixed value types). ``row``: the output
    row of the value at fault, when known (then ``detail`` says what it is)."""

    row: int | None = None
    detail: str = ""
    line: int | None = None


def _decimal_array(values: list[Any], t: pa.Decimal128Type) -> pa.Array:
    quantum = Decimal(1).scaleb(-t.scale)
    out: list[Decimal | None] = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        try:
            out.append(Decimal(str(v)).quantize(quantum, rounding=ROUND_HALF_EVEN))
        except InvalidOperation as exc:
            raise OutputTypeError(f"{v!r} does not fit decimal({t.precision}, {t.scale})") from exc
    return pa.array(out, type=t)


def _text_array(values: list[Any]) -> pa.Array | None:
    """A ``string`` array of text values and nulls built from their bytes (``pa.array``
    imports pandas); None when a value is not text or cannot be written as UTF-8."""
    try:
        encoded = [b"" if v is None else v.encode() for v in values]
    except (AttributeError, UnicodeEncodeError):
        return None
    if any(v is not None and type(v) is not str for v in values):
        return None
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    valid = np.fromiter((v is not None for v in values), dtype=np.bool_, count=len(values))
    nulls = int(len(values) - np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(
        pa.string(), len(values), [bitmap, pa.py_buffer(offsets), data], null_count=nulls
    )


def _typed_array(values: list[Any], t: pa.DataType) -> pa.Array:
    if pa.types.is_decimal(t):
        return _decimal_array(values, t)
    if pa.types.is_string(t):
        text = _text_array(values)
        if text is not None:
            return text
    return pa.array(values, type=t)


def _inferred_array(
    name: str, values: list[Any], kind: str | None, hint: pa.DataType | None
) -> pa.Array:
    if kind == "ts":
        ms = pa.array(values, type=pa.timestamp("ms", tz="UTC"))
        if hint is not None and pa.types.is_timestamp(hint):
            return pc.cast(ms, hint, safe=False)
        return ms
    if hint is not None:
        try:
            if pa.types.is_date(hint) or pa.types.is_time(hint):
                return pa.array(values, type=pa.string()).cast(hint)
            if pa.types.is_duration(hint) or pa.types.is_interval(hint):
                try:
                    return durations_from_texts(values, hint)
                except ValueError as exc:  # the script wrote other text: kept as text
                    raise OutputTypeError(str(exc)) from exc
            return _typed_array(values, hint)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OutputTypeError, TypeError, OverflowError):
            pass  # the script changed the column's kind: infer it from the values
    text = _text_array(values) if values and any(v is not None for v in values) else None
    if text is not None:
        return text
    try:
        arr = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        error = OutputTypeError(
            f"output column '{name}' holds values of different types ({exc}); "
            "declare its type in output_schema"
        )
        error.row, error.detail = _first_misfit(values)
        raise error from exc
    return arr


def _js_kind(value: Any) -> str:
    """What a value of the driver's answer was in JavaScript, for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _first_misfit(values: list[Any]) -> tuple[int | None, str]:
    """The output row of the first value of a column that Arrow cannot put in one array
    with the values before it, and what they are (for a message naming its line)."""
    first: Any = None
    for k, v in enumerate(values):
        if v is None:
            continue
        try:
            pa.array([v] if first is None else [first, v])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if first is None:
                return k, f"{_shown(v)} mixes types inside it"
            return k, (
                f"{_shown(first)} ({_js_kind(first)}) in an earlier row, {_shown(v)} "
                f"({_js_kind(v)}) here"
            )
        first = v if first is None else first
    return None, ""


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _unpack(spec: dict[str, Any], packed: np.ndarray[Any, Any] | None, n: int) -> pa.Array:
    """A packed output column (see ``packParts`` in the prelude) as its natural Arrow array:
    int64 ("i"), float64 ("f"), bool ("b") or string ("s")."""
    if packed is None:
        raise OutputTypeError("the script's answer refers to packed columns that were not sent")
    kind, at, at_mask = spec["k"], int(spec["b"]), int(spec["v"])
    valid = None if at_mask < 0 else packed[at_mask : at_mask + n].astype(np.bool_)
    if kind == "s":
        lengths = packed[at : at + 4 * n].view(np.int32)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
        return pa.StringArray.from_buffers(
            n,
            pa.py_buffer(offsets),
            pa.py_buffer(str(spec["d"]).encode("ascii")),
            bitmap,
            0 if valid is None else int(n - np.count_nonzero(valid)),
        )
    if kind == "b":
        return _from_numpy(packed[at : at + n].astype(np.bool_), valid)
    values = packed[at : at + 8 * n].view(np.float64)
    if kind == "i":
        return _from_numpy(values.astype(np.int64), valid)
    return _from_numpy(values, valid)


def _json_values(spec: dict[str, Any], arr: pa.Array) -> list[Any]:
    """A packed column's values as the JSON answer would have held them (whole numbers below
    1e21 as ints)."""
    values: list[Any] = arr.to_pylist()
    if spec["k"] == "f":
        return [int(v) if v is not None and v.is_integer() and abs(v) < 1e21 else v for v in values]
    return values


def _typed_packed(spec: dict[str, Any], arr: pa.Array, target: pa.DataType) -> pa.Array:
    if arr.type == target:
        return arr
    numeric = pa.types.is_integer(target) or pa.types.is_floating(target)
    if pa.types.is_int64(arr.type) and numeric:
        try:
            return arr.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return _typed_array(_json_values(spec, arr), target)


def _build(
    part: dict[str, Any],
    typed: list[OutputField] | None,
    hints: dict[str, pa.DataType],
    source: list[pa.Array],
    lines: pa.Array | None,
    packed: np.ndarray[Any, Any] | None = None,
    unsent: list[tuple[str, pa.Array]] | None = None,
) -> pa.RecordBatch:
    """One output as Arrow. ``idx`` (null: row k is input row k) gives each output row's input
    row: columns the driver did not send back and the line numbers are taken from there.
    ``unsent``: every input column (name, values) when the driver saw only some of them."""
    idx = part["idx"]
    taken = None if idx is None else _from_numpy(np.array(idx, dtype=np.int64), None)

    def from_input(col: pa.Array) -> pa.Array:
        return col if taken is None else col.take(taken)

    arrays: list[pa.Array] = []
    names: list[str] = list(part["names"])
    for j, name in enumerate(names):
        src = part["from"][j]
        col = part["cols"][j]
        if src >= 0:
            arrays.append(from_input(source[src]))
        elif isinstance(col, dict):
            arr = _unpack(col, packed, int(part["n"]))
            hint = arrow_type(typed[j]) if typed is not None else hints.get(name)
            if typed is not None and hint is not None:
                arrays.append(_typed_packed(col, arr, hint))
            elif hint is None or hint == arr.type:
                arrays.append(arr)
            else:
                arrays.append(_inferred_array(name, _json_values(col, arr), part["kinds"][j], hint))
        elif typed is not None:
            arrays.append(_typed_array(part["cols"][j], arrow_type(typed[j])))
        else:
            try:
                array = _inferred_array(name, part["cols"][j], part["kinds"][j], hints.get(name))
            except OutputTypeError as exc:
                if exc.row is not None and lines is not None:
                    at = exc.row if idx is None else idx[exc.row]
                    exc.line = int(lines[at].as_py())
                    raise OutputTypeError(
                        f"output column '{name}' holds values of different types, at line "
                        f"{exc.line}: {exc.detail}; declare its type in output_schema"
                    ) from exc
                raise
            arrays.append(array)
    if unsent is not None and typed is None and (names or part["n"]):
        # Every output row is an input row object (see reads.py): its input columns, those
        # the script saw and those it could not, in their input order, then the new ones.
        made = dict(zip(names, arrays, strict=True))
        originals = [n for n, _ in unsent]
        arrays = [made[n] if n in made else from_input(col) for n, col in unsent]
        arrays += [made[n] for n in names if n not in originals]
        names = originals + [n for n in names if n not in originals]
    if lines is not None:
        names.append(LINE_COLUMN)
        arrays.append(from_input(lines))
    if not names:
        return pa.RecordBatch.from_pydict({})
    return pa.RecordBatch.from_arrays(arrays, names=names)


def decode_output(
    doc: dict[str, Any],
    batch: pa.RecordBatch,
    typed: list[OutputField] | None,
    packed: np.ndarray[Any, Any] | None = None,
    whole: pa.RecordBatch | None = None,
) -> DecodedBatch:
    """Rebuild the driver's answer for ``batch`` (its JSON, parsed) as Arrow batches;
    ``packed``: the bytes of its packed output columns, which the batches may keep using.
    ``whole``: the batch whose columns the script could touch are ``batch`` (see reads.py);
    its other columns pass through every output row, which is always an input row."""
    buf = packed
    source = [c for n, c in zip(batch.schema.names, batch.columns, strict=True) if n != LINE_COLUMN]
    names = [n for n in batch.schema.names if n != LINE_COLUMN]
    hints = {n: c.type for n, c in zip(names, source, strict=True)}
    at = batch.schema.get_field_index(LINE_COLUMN)
    lines = batch.column(at) if at >= 0 else None
    unsent = None
    if whole is not None:
        pairs = zip(whole.schema.names, whole.columns, strict=True)
        unsent = [(n, c) for n, c in pairs if n != LINE_COLUMN]
    main = _build(doc["main"], typed, hints, source, lines, buf, unsent)
    routes = {
        name: _build(part, None, hints, source, lines, buf) for name, part in doc["routes"].items()
    }
    logs = [(str(level), str(message)) for level, message in doc["logs"]]
    passthrough: dict[str, str] = {}
    part = doc["main"]
    unique = len(set(batch.schema.names)) == batch.num_columns  # else names are ambiguous
    if part["idx"] is None and unique:  # output row k is input row k
        passthrough = {
            n: names[j] for n, j in zip(part["names"], part["from"], strict=True) if j >= 0
        }
        if unsent is not None and typed is None and main.num_columns:
            passthrough.update((n, n) for n, _ in unsent if n not in hints)
        if lines is not None:
            passthrough[LINE_COLUMN] = LINE_COLUMN
    return DecodedBatch(main, routes, doc["errors"], logs, dict(doc["meta"]), passthrough)
