"""Values as JSON text and back, one set of rules for every sink writing JSON and every source
reading it (``rest``, ``rabbitmq``, nested columns in text formats).

Writing (:func:`json_rows`): numbers stay numbers, and the floats JSON has no number for are
the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``; decimals are strings with every
digit; binary values are base64; dates, times and timestamps are ISO 8601 strings with every
digit of their unit, zoned timestamps with their UTC offset as RFC 3339 writes it (``+01:00``,
``Z`` in UTC; :func:`~quiver.pipeline.value_text.timestamp_texts`); lists and structs nest.

Reading (:func:`parse_json`, :func:`json_array`): integers are exact Python ints, and other
numbers are kept as their text (:class:`JsonNumber`) until the declared type of their column
is known, so nothing is rounded on the way: ``2.5`` in an integer column is refused, not
truncated; a decimal keeps every digit; a number in a text column keeps its text (``1e3``
stays ``1e3``). A number in a
timestamp column counts seconds since 1970-01-01 UTC, or the unit of an explicit
``timestamp(ms)`` (see :func:`quiver.pipeline.type_names.epoch_unit`). Only JSON is read:
the stdlib parser's ``NaN``, ``Infinity`` and ``-Infinity`` are refused with where they are
(their string forms are values), and so is a document nesting objects and arrays deeper than
:data:`MAX_JSON_DEPTH`; :func:`strict_json` is ``json.loads`` by the same rule.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import decimal
import json
import json.decoder
import json.scanner
import math
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from quiver.pipeline import kernels as pc
from quiver.pipeline.value_text import (
    decimal_misfit,
    duration_texts,
    durations_from_texts,
    iso_duration,
    plain_decimal,
    timestamp_texts,
    timestamps_as_text,
)
from quiver.runtime.errors import line_and_column

__all__ = [
    "MAX_JSON_DEPTH",
    "DuplicateKeyError",
    "DuplicateKeys",
    "JsonNumber",
    "JsonTooDeepError",
    "bare_constant",
    "beyond_float",
    "dump_json",
    "duplicate_key",
    "duplicate_key_reason",
    "integer_misfit",
    "json_array",
    "json_body_records",
    "json_default",
    "json_depth",
    "json_rows",
    "json_strings",
    "parse_json",
    "parse_json_lines",
    "parse_json_marking",
    "plain_json",
    "strict_json",
    "text_columns",
]

NAN, INFINITY, MINUS_INFINITY = "NaN", "Infinity", "-Infinity"


def json_default(value: Any) -> Any:
    """How values orjson does not know are written as JSON: exact decimals as strings, bytes
    as base64, sets as lists, durations and intervals as ISO 8601 durations, numbers read by
    :func:`parse_json` as their own text."""
    if isinstance(value, JsonNumber):
        return orjson.Fragment(value.text)
    if isinstance(value, decimal.Decimal):
        return _decimal_text(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, dt.timedelta | pa.MonthDayNano):
        return iso_duration(value)
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def dump_json(value: Any, option: int = 0, *, from_rows: bool = False) -> bytes:
    """``value`` as JSON bytes; non-finite floats as their string forms (never ``null``).
    ``from_rows``: the value is made of :func:`json_rows` rows, which hold no such float, so
    it is not walked again."""
    return orjson.dumps(value if from_rows else _finite(value), default=json_default, option=option)


def json_strings(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each value of ``array`` (lists, structs, maps...) as its JSON text; nulls stay null."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    values = timestamps_as_text(array).to_pylist()
    return pa.array(
        [None if v is None else dump_json(v).decode("utf-8") for v in values],
        pa.string(),
    )


# -- writing --------------------------------------------------------------------------------


def json_rows(batch: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    """The rows of ``batch`` as dicts of values orjson writes without changing any of them."""
    columns = [_json_values(batch.column(i)) for i in range(batch.num_columns)]
    names = batch.schema.names
    return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]


def text_columns(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with every column as text, each value written as in JSON (strings as
    themselves, NaN as ``NaN``, nested values as JSON text), nulls left null: what a text
    format such as a CSV message carries so that the sources read the same values back."""
    arrays = [
        pa.array([None if v is None else _text_of(v) for v in _json_values(column)], pa.string())
        for column in batch.columns
    ]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return dump_json(value).decode("utf-8")


def _json_values(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        return _json_values(column.dictionary_decode())
    if pa.types.is_floating(kind):
        return [_float(v) for v in column.to_pylist()]
    if pa.types.is_timestamp(kind):
        values: list[Any] = timestamp_texts(column).to_pylist()
        return values
    if (
        pa.types.is_date(kind)
        or pa.types.is_time(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_duration(kind)
    ):
        if pa.types.is_decimal(kind):
            return [None if v is None else _decimal_text(v) for v in column.to_pylist()]
        if pa.types.is_duration(kind):
            durations: list[Any] = duration_texts(column).to_pylist()
            return durations
        values = pc.cast(column, pa.string()).to_pylist()
        return values
    if (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
    ):
        return [
            None if v is None else base64.b64encode(v).decode("ascii") for v in column.to_pylist()
        ]
    if pa.types.is_interval(kind):
        intervals: list[Any] = duration_texts(column).to_pylist()
        return intervals
    if pa.types.is_nested(kind):
        return [_finite(v) for v in timestamps_as_text(column).to_pylist()]
    values = column.to_pylist()
    return values


def _float(value: float | None) -> Any:
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return NAN
    return INFINITY if value > 0 else MINUS_INFINITY


def _finite(value: Any) -> Any:
    """Nested values with non-finite floats as their string forms, bytes as base64 and
    timestamps as ISO text."""
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, decimal.Decimal):
        return _decimal_text(value)
    return value


def _decimal_text(value: decimal.Decimal) -> str:
    return plain_decimal(value)


# -- reading --------------------------------------------------------------------------------


class JsonNumber:
    """A JSON number as the text it was written with, until its column's type is known."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JsonNumber) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    @property
    def is_integer(self) -> bool:
        return _INTEGER.fullmatch(self.text) is not None


class _DuplicateKeyError(ValueError):
    """An object naming one key twice (found by :func:`_unique_keys`)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class DuplicateKeyError(ValueError):
    """A JSON document refused by :func:`parse_json` because an object names a key twice;
    the message names the key and where the object starts."""


class DuplicateKeys(dict[str, Any]):
    """An object of :func:`parse_json_marking` that names ``key`` twice, or (``key`` None)
    holds such an object somewhere inside it: no value of it is to be taken, only the record
    holding it refused."""

    key: str | None = None


def _marking_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    marked = DuplicateKeys(record)
    try:
        _unique_keys(pairs)
    except _DuplicateKeyError as exc:
        marked.key = exc.key
    return marked


def parse_json_marking(text: bytes | str) -> Any:
    """:func:`parse_json`, but an object naming a key twice is a :class:`DuplicateKeys`, and
    so is every object holding one (its ``key`` None), rather than the whole document being
    refused: for a document of many records (a page), where only the records holding such
    an object are to be refused (:func:`duplicate_key`)."""
    _check_depth(text)
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8")
    try:
        value = _MARKING.decode(text)
        _refuse_lone_surrogate(text)
        return _marked(value)[0]
    except _ConstantError as exc:
        raise ValueError(_constant_reason(exc.name, text)) from None


def _marked(value: Any) -> tuple[Any, bool]:
    """``value`` with every object that holds a :class:`DuplicateKeys` one (in a list too)
    marked as well, and whether it holds one."""
    if isinstance(value, dict):
        inner = False
        for k, v in value.items():
            value[k], held = _marked(v)
            inner = inner or held
        if inner and not isinstance(value, DuplicateKeys):
            value = DuplicateKeys(value)
        return value, inner or isinstance(value, DuplicateKeys)
    if isinstance(value, list):
        inner = False
        for i, v in enumerate(value):
            value[i], held = _marked(v)
            inner = inner or held
        return value, inner
    return value, False


def duplicate_key(value: Any, skip: frozenset[int] = frozenset()) -> str | None:
    """The first key named twice in an object of ``value`` (as :func:`parse_json_marking`
    reads it), or None; the values whose ``id`` is in ``skip`` are not looked into."""
    if id(value) in skip:
        return None
    if isinstance(value, DuplicateKeys):
        if value.key is not None:
            return value.key
        for v in value.values():
            if (found := duplicate_key(v, skip)) is not None:
                return found
    elif isinstance(value, list):
        for v in value:
            if (found := duplicate_key(v, skip)) is not None:
                return found
    return None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object of ``pairs``; a key named twice raises (JSON parsers differ on which of
    the two values wins, so neither is taken)."""
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return record


#: Deepest nesting of objects and arrays a JSON document (a line, a page, a message) may have
#: (serde_json's limit too): the parser and the recursive steps after it have a bounded stack,
#: so a deeper document is refused up front with its depth rather than exhausting it.
MAX_JSON_DEPTH = 128


class JsonTooDeepError(ValueError):
    """A JSON document refused by :func:`parse_json` because it nests objects and arrays
    deeper than :data:`MAX_JSON_DEPTH`."""

    def __init__(self, depth: int) -> None:
        super().__init__(
            f"it nests objects and arrays {depth} levels deep, more than the {MAX_JSON_DEPTH} "
            "a JSON document may have"
        )
        self.depth = depth


class _ConstantError(ValueError):
    """``NaN``, ``Infinity`` or ``-Infinity``: the stdlib parser's extension, not JSON."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _refuse_constant(name: str) -> Any:
    raise _ConstantError(name)


_DECODER = json.JSONDecoder(
    # integers are exact as Python ints; fractions and exponents keep their text
    parse_float=JsonNumber,
    parse_constant=_refuse_constant,  # NaN, Infinity, -Infinity are not JSON
    object_pairs_hook=_unique_keys,
)

_MARKING = json.JSONDecoder(
    parse_float=JsonNumber, parse_constant=_refuse_constant, object_pairs_hook=_marking_keys
)

_STRICT = json.JSONDecoder(parse_constant=_refuse_constant)


def _not_utf8(
    data: bytes, exc: UnicodeDecodeError, first_line: int, what: str = "JSON"
) -> ValueError:
    """Why ``data`` (``what``) is not UTF-8, with the line and column of the first bad byte."""
    before = data[: exc.start]
    line = before.count(b"\n") + first_line
    column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
    return ValueError(
        f"not UTF-8 text: byte {data[exc.start]:#04x} at line {line} column {column}; "
        f"send {what} as UTF-8"
    )


_TOO_MANY_DIGITS = re.compile(r"value has (\d+) digits")


def parse_json(text: bytes | str, first_line: int = 1) -> Any:
    """A JSON document with its numbers kept as :class:`JsonNumber`; ValueError when it is
    not JSON (``NaN`` and the infinities are not), not UTF-8, nests deeper than
    :data:`MAX_JSON_DEPTH` (:class:`JsonTooDeepError`), writes an integer of more digits than
    Python converts (4300), holds half of a UTF-16 surrogate pair (``"\\ud800"``), or an
    object names a key twice (the message says where, counting the lines of ``text`` from
    ``first_line``)."""
    _check_depth(text)
    if isinstance(text, bytes | bytearray | memoryview):
        data = bytes(text)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(data, exc, first_line) from None
    try:
        value = _DECODER.decode(text)
        _refuse_lone_surrogate(text, first_line)
        return value
    except _DuplicateKeyError as exc:
        raise DuplicateKeyError(duplicate_key_reason(exc.key, text, first_line)) from None
    except _ConstantError as exc:
        raise ValueError(_constant_reason(exc.name, text, first_line)) from None
    except json.JSONDecodeError as exc:
        if first_line == 1:
            raise
        line = exc.lineno + first_line - 1
        raise ValueError(f"{exc.msg}: line {line} column {exc.colno}") from None
    except RecursionError:  # bounded by _check_depth; a smaller stack than usual
        raise JsonTooDeepError(MAX_JSON_DEPTH + 1) from None
    except ValueError as exc:  # int() of an integer of too many digits
        found = _TOO_MANY_DIGITS.search(str(exc))
        if found is None:
            raise
        raise ValueError(
            f"an integer of {found[1]} digits is longer than a JSON integer may be "
            f"({sys.get_int_max_str_digits()} digits); send it as a string to keep it"
        ) from None


def json_body_records(body: bytes, lines: bool) -> list[Any]:
    """The records of a broker message's JSON body: an object or an array of them, or with
    ``lines`` one document a line (see :func:`parse_json` and :func:`parse_json_lines`,
    which also refuse a document nesting deeper than :data:`MAX_JSON_DEPTH`: every later
    step walks values recursively)."""
    if lines:
        return parse_json_lines(body)
    doc = parse_json(body)
    return doc if isinstance(doc, list) else [doc]


def strict_json(text: bytes | str) -> Any:
    """``json.loads`` without the stdlib's extension of JSON: ``NaN``, ``Infinity`` and
    ``-Infinity`` are refused with where they are (ValueError), as any other text that is
    not JSON; numbers are Python ints and floats. For files and answers read whole."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode("utf-8")
    try:
        return _STRICT.decode(text)
    except _ConstantError as exc:
        raise ValueError(_constant_reason(exc.name, text)) from None


def _refuse_lone_surrogate(text: str, first_line: int = 1) -> None:
    """ValueError when a string of the JSON document ``text`` holds half of a UTF-16 surrogate
    pair (``"\\ud800"``): an escape JSON's grammar allows, but no character, which UTF-8
    (and so every later step, sink and rejects file) cannot hold. Arrow's and orjson's readers
    refuse it too. Both halves of a pair (``"\\ud83d\\ude00"``) make their character."""
    if "\\u" not in text or _SURROGATE_ESCAPE.search(text) is None:
        return
    for found in _ESCAPES.finditer(text):
        if found[1] is None:
            continue
        before = text[: found.start()]
        line = before.count("\n") + first_line
        column = found.start() - before.rfind("\n")
        raise ValueError(
            f"{found[1]} at line {line} column {column} is half of a UTF-16 surrogate pair "
            "without the other half, which is no character: write the whole character, or "
            "both halves of its pair"
        )


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# an escaped backslash, a whole surrogate pair, or (group 1) a lone half: in order, so that
# neither "\\\\ud800" (a backslash, then text) nor a pair is taken for a lone half
_ESCAPES = re.compile(
    r"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})"
)


def _constant_reason(name: str, text: str, first_line: int = 1) -> str:
    at = ""
    raw = text.encode("utf-8", "surrogatepass")
    offset = _constant_at(raw)
    if offset is not None:
        line, _ = line_and_column(raw, offset)
        start = raw.rfind(b"\n", 0, offset) + 1
        column = len(raw[start:offset].decode("utf-8", "surrogatepass")) + 1
        at = f" at line {line + first_line - 1} column {column}"
    return (
        f"{name}{at} is not a JSON value: JSON has no NaN or infinities (send them as the "
        'strings "NaN", "Infinity" and "-Infinity")'
    )


def bare_constant(raw: bytes) -> str | None:
    """Why the JSON text ``raw`` (UTF-8) is not JSON when it writes ``NaN``, ``Infinity`` or
    ``-Infinity`` outside a string (as :func:`parse_json` says it), else None: for readers
    that take them as floats (Arrow's), which are to refuse them all the same."""
    offset = _constant_at(raw)
    if offset is None:
        return None
    found = _CONSTANT.match(raw, offset)
    assert found is not None
    return _constant_reason(found[0].decode("ascii"), raw.decode("utf-8", "replace"))


def _constant_at(raw: bytes) -> int | None:
    """Where the first ``NaN``, ``Infinity`` or ``-Infinity`` outside a string is in ``raw``:
    the first such token after an even number of quotes that no backslash escapes."""
    quotes = done = 0
    for found in _CONSTANT.finditer(raw):
        quotes += _ESCAPE.sub(b"", raw[done : found.start()]).count(b'"')
        done = found.start()
        if quotes % 2 == 0:
            return done
    return None


_CONSTANT = re.compile(rb"-?Infinity|NaN")


def _check_depth(text: bytes | bytearray | memoryview | str) -> None:
    """Refuse ``text`` when it nests deeper than :data:`MAX_JSON_DEPTH`. A document ``d``
    levels deep holds at least ``d`` opening brackets, so most are passed by counting them."""
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
            return
        raw: bytes | bytearray | memoryview = text.encode("utf-8", "surrogatepass")
    else:
        raw = text
        if isinstance(raw, memoryview):
            raw = bytes(raw)
        if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
            return
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise JsonTooDeepError(depth)


def json_depth(raw: bytes | bytearray | memoryview) -> int:
    """How deep ``raw`` (JSON text in UTF-8) nests objects and arrays, brackets inside strings
    not counted. A few passes in C over the bytes: escapes dropped (only when there is a
    backslash), then all but brackets and quotes; two quotes side by side are dropped too (a
    string without brackets, or the end of one and the start of the next), which leaves every
    bracket after as many quotes as before, so whether it is inside a string is unchanged.
    Brackets inside strings are rare, and only then are quotes counted."""
    text = bytes(raw)
    if b"\\" in text:
        text = _ESCAPE.sub(b"", text)
    text = text.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    codes = np.frombuffer(text, np.uint8)
    steps = _STEP[codes]
    if b'"' in text:
        steps[np.cumsum(codes == ord('"'), dtype=np.int64) % 2 == 1] = 0
    depth = np.cumsum(steps, dtype=np.int32 if codes.size < 2**31 else np.int64)
    return int(depth.max(initial=0))


_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_STEP = np.zeros(256, np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


def parse_json_lines(body: bytes) -> list[Any]:
    """The documents of a JSON Lines body, one a line (blank lines skipped), by the rules of
    :func:`parse_json`; a ValueError names the body's line, also for bytes that are not
    UTF-8."""
    docs = []
    for number, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_utf8(line, exc, number, "JSON Lines") from None
        try:
            docs.append(parse_json(text, number))
        except json.JSONDecodeError as exc:  # the first line: the decoder's own message
            raise ValueError(f"{exc.msg}: line {number} column {exc.colno}") from None
    return docs


def duplicate_key_reason(key: str, text: str, first_line: int = 1) -> str:
    """Why a JSON document whose object names ``key`` twice is refused, with where that
    object starts (line and column of ``text``, its lines counted from ``first_line``)."""
    where = _duplicate_object_at(text)
    at = ""
    if where is not None:
        line, column = line_and_column(text, where)
        line += first_line - 1
        at = f" (the object at line {line} column {column})"
    return (
        f"key {key!r} appears twice in one JSON object{at}; its values would be taken "
        "differently by different readers, so the record is refused: keep one of them"
    )


def _duplicate_object_at(text: str) -> int | None:
    """Where the first object naming a key twice starts in ``text``: the document read again
    by the pure-Python scanner, which knows positions (only when such an object was found)."""
    found: list[int] = []
    json_object = json.decoder.JSONObject  # type: ignore[attr-defined]

    def parse_object(s_and_end: tuple[str, int], *args: Any) -> Any:
        try:
            return json_object(s_and_end, *args)
        except _DuplicateKeyError:
            if not found:
                found.append(s_and_end[1] - 1)  # just after the "{"
            raise

    slow = json.JSONDecoder(
        parse_float=JsonNumber, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys
    )
    slow.parse_object = parse_object  # type: ignore[attr-defined]
    slow.scan_once = json.scanner.py_make_scanner(slow)  # type: ignore[attr-defined]
    with contextlib.suppress(ValueError):
        slow.decode(text)
    return found[0] if found else None


def plain_json(value: Any) -> Any:
    """A value of :func:`parse_json` with its numbers as Python ints and floats (for
    inference and messages)."""
    if isinstance(value, JsonNumber):
        return int(value.text) if value.is_integer else float(value.text)
    if isinstance(value, dict):
        return {k: plain_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_json(v) for v in value]
    return value


def beyond_float(value: Any) -> str | None:
    """The text of the first number in ``value`` (as :func:`parse_json` reads it, lists and
    objects included) that is not an integer and lies beyond a float's range (``1e400``),
    which :func:`plain_json` would make an infinity; None when there is none."""
    if isinstance(value, JsonNumber):
        if not value.is_integer and _NUMBER.fullmatch(value.text) and math.isinf(float(value.text)):
            return value.text
        return None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for v in value:
            if (found := beyond_float(v)) is not None:
                return found
    return None


_DECIMAL_DIGITS = 76  # the most digits a decimal type holds (decimal256)
_MAX_DIGITS = 40  # more digits than any integer or timestamp column holds (uint64: 20)
_INTEGER = re.compile(r"[+-]?\d+")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_NON_FINITE = {
    "nan": math.nan,
    "+nan": math.nan,
    "-nan": math.nan,
    "inf": math.inf,
    "+inf": math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
}
_TRUE = {"true", "1"}
_FALSE = {"false", "0"}
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?")
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?"
)
_EPOCH = dt.datetime(1970, 1, 1)


class _RefusedError(ValueError):
    """A value that is not of its column's type; the message says why."""


def json_array(
    values: Sequence[Any], kind: pa.DataType, epoch_unit: str = "s"
) -> tuple[pa.Array, dict[int, str]]:
    """``values`` (as :func:`parse_json` or a CSV reader gives them) as an Arrow array of the
    declared ``kind``, and the values refused, by index, with the reason. A refused value is
    null in the array. ``epoch_unit`` is what a number in a timestamp column counts."""
    fast = _fast_array(values, kind)
    if fast is not None:
        return fast, {}
    convert = _converter(kind, epoch_unit)
    out: list[Any] = []
    refused: dict[int, str] = {}
    for i, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(convert(value))
        except _RefusedError as exc:
            refused[i] = str(exc)
            out.append(None)
    try:
        return pa.array(out, kind), refused
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    # a value out of the type's range: find it, value by value
    for i, value in enumerate(out):
        if value is None:
            continue
        try:
            pa.array([value], kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            if isinstance(kind, pa.Decimal128Type | pa.Decimal256Type):
                shown = values[i].text if isinstance(values[i], JsonNumber) else str(values[i])
                refused[i] = decimal_misfit(shown, kind)
            elif pa.types.is_integer(kind) and isinstance(value, int):
                refused[i] = integer_misfit(value, kind)
            else:
                refused[i] = f"{_show(values[i])} does not fit {kind} ({exc})"
            out[i] = None
    return pa.array(out, kind), refused


def integer_misfit(value: int, kind: pa.DataType) -> str:
    """Why the integer ``value`` is refused by the integer type ``kind`` (out of its range),
    and the type that keeps every digit of it."""
    bits = kind.bit_width
    signed = pa.types.is_signed_integer(kind)
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    digits = len(str(abs(value)))
    keep = (
        "decimal(38,0) or str"
        if digits <= 38
        else "decimal(76,0) or str"
        if digits <= 76
        else "str"
    )
    return (
        f"{value} does not fit {kind}, a {bits}-bit {'' if signed else 'unsigned '}integer "
        f"({low} to {high}); declare the field as {keep} under `types` to keep every digit"
    )


_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError)


def _fast_array(values: Sequence[Any], kind: pa.DataType) -> pa.Array | None:
    """``values`` as ``kind`` when they are all of the Python type the column holds (or text
    Arrow parses by the same rules): the common case, converted by Arrow in one go. None when
    a value needs a closer look."""
    kinds = {type(v) for v in values if v is not None}
    try:
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            return pa.array(values, kind) if kinds <= {str} else None
        if pa.types.is_integer(kind):
            return pa.array(values, kind) if kinds <= {int} else None
        if pa.types.is_boolean(kind):
            return pa.array(values, kind) if kinds <= {bool} else None
        if pa.types.is_floating(kind):
            return pa.array(values, kind) if kinds <= {float} else None
        if (pa.types.is_timestamp(kind) or pa.types.is_date(kind)) and kinds == {str}:
            # Arrow's ISO 8601 parser agrees with ours where it accepts a value; it refuses
            # text without an offset in a zoned column and extra digits, which we look at
            return pc.cast(pa.array(values, pa.string()), kind)
    except _ARROW_ERRORS:
        return None
    return None


def _show(value: Any) -> str:
    if isinstance(value, JsonNumber):
        return value.text
    if isinstance(value, dict | list):
        return dump_json(value).decode("utf-8")
    return repr(value)


def _converter(kind: pa.DataType, epoch_unit: str) -> Any:
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _to_text
    if pa.types.is_boolean(kind):
        return _to_bool
    if pa.types.is_integer(kind):
        return _to_int
    if pa.types.is_floating(kind):
        return _to_float
    if pa.types.is_decimal(kind):
        return _to_decimal
    if pa.types.is_timestamp(kind):
        return lambda v: _to_timestamp(v, kind, epoch_unit)
    if pa.types.is_date(kind):
        return _to_date
    if pa.types.is_time(kind):
        return lambda v: _to_time(v, kind)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _to_binary
    if pa.types.is_duration(kind) or pa.types.is_interval(kind):
        return lambda v: _to_duration(v, kind)
    return _to_nested


def _to_nested(value: Any) -> Any:
    found = beyond_float(value)
    if found is not None:
        raise _RefusedError(
            f"{found} is beyond the range of a float (about ±1.8e308); write it as a string "
            "to keep it"
        )
    return plain_json(value)


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, JsonNumber):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return dump_json(value).decode("utf-8")
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _number_text(value: Any, what: str) -> str:
    if isinstance(value, JsonNumber):
        return value.text
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    raise _RefusedError(f"{_show(value)} is not {what}")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _RefusedError(f"{_show(value)} is not a boolean (true or false)")


def _to_int(value: Any) -> int:
    text = _number_text(value, "a whole number")
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        number = decimal.Decimal(text)
        if number.adjusted() > _MAX_DIGITS:  # int() of 1e1000000000 would never finish
            raise _RefusedError(f"{text} is beyond the range of every integer type")
        if number == number.to_integral_value():
            return int(number)
        raise _RefusedError(f"{text} is not a whole number (declare the column float or decimal)")
    raise _RefusedError(f"{_show(value)} is not a whole number")


def _to_float(value: Any) -> float:
    if isinstance(value, float):
        return value
    text = _number_text(value, "a number")
    if _NUMBER.fullmatch(text):
        number = float(text)
        if math.isinf(number):
            raise _RefusedError(
                f"{text} is beyond the range of a float (about ±1.8e308); declare the column "
                "decimal(p,s) or str to keep it"
            )
        return number
    special = _NON_FINITE.get(text.lower())
    if special is not None:
        return special
    raise _RefusedError(f"{_show(value)} is not a number")


def _to_decimal(value: Any) -> decimal.Decimal:
    text = _number_text(value, "a decimal number")
    if not _NUMBER.fullmatch(text):
        raise _RefusedError(f"{_show(value)} is not a decimal number")
    number = decimal.Decimal(text)
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if exponent >= -_DECIMAL_DIGITS and number.adjusted() <= _DECIMAL_DIGITS:
        return number
    # the same number without trailing zeros: Arrow crashes on 1e-1000000000 (pyarrow 26)
    zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    if zeros == len(digits):
        return decimal.Decimal(0)
    digits, exponent = digits[: len(digits) - zeros], exponent + zeros
    if exponent < -_DECIMAL_DIGITS:
        raise _RefusedError(f"{text} has more digits after the point than any decimal keeps")
    if number.adjusted() > _DECIMAL_DIGITS:
        raise _RefusedError(f"{text} is beyond the range of every decimal")
    return decimal.Decimal((sign, digits, exponent))


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        raise _RefusedError(f"{value.isoformat()} is a timestamp, not a date")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and (m := _DATE.fullmatch(value.strip())):
        try:
            return dt.date(int(m[1]), int(m[2]), int(m[3]))
        except ValueError as exc:
            raise _RefusedError(f"{value!r} is not a valid date: {exc}") from None
    raise _RefusedError(f"{_show(value)} is not a date (YYYY-MM-DD)")


def _fraction(digits: str | None, per_second: int) -> int:
    """The fraction ``.digits`` of a second in units of 1/per_second, refused if not whole."""
    if not digits:
        return 0
    scaled = int(digits) * per_second
    whole, rest = divmod(scaled, int(10 ** len(digits)))
    if rest:
        raise _RefusedError(f"has more digits after the second than the column keeps (.{digits})")
    return whole


def _unit_of(kind: pa.DataType) -> str:
    return str(kind.unit)


def _to_time(value: Any, kind: pa.DataType) -> int:
    per_second = _PER_SECOND[_unit_of(kind)]
    if isinstance(value, dt.time):
        value = value.isoformat()
    if not isinstance(value, str) or not (m := _TIME.fullmatch(value.strip())):
        raise _RefusedError(f"{_show(value)} is not a time of day (HH:MM:SS[.fraction])")
    hours, minutes, seconds = int(m[1]), int(m[2]), int(m[3] or 0)
    if hours > 23 or minutes > 59 or seconds > 59:
        raise _RefusedError(f"{value!r} is not a valid time of day")
    try:
        fraction = _fraction(m[4], per_second)
    except _RefusedError as exc:
        raise _RefusedError(f"{value!r} {exc}; declare a finer time") from None
    return ((hours * 60 + minutes) * 60 + seconds) * per_second + fraction


def _to_duration(value: Any, kind: pa.DataType) -> Any:
    """An ISO 8601 duration (``PT90000.5S``, ``P1M2DT0.5S``, as the sinks write them) as the
    value Arrow stores in a ``kind`` column."""
    if not isinstance(value, str):
        raise _RefusedError(f"{_show(value)} is not an ISO 8601 duration such as PT90000.5S")
    try:
        stored = durations_from_texts([value.strip()], kind)
    except (ValueError, OverflowError) as exc:
        if isinstance(exc, OverflowError | pa.ArrowInvalid):
            raise _RefusedError(f"{value!r} does not fit {kind}") from None
        raise _RefusedError(str(exc)) from None
    # a duration as its count of the unit: a Python timedelta cannot hold every one
    return (stored if pa.types.is_interval(kind) else stored.cast(pa.int64()))[0].as_py()


def _to_binary(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise _RefusedError(f"{_show(value)} is not base64 text (how binary values travel in JSON)")


def _zone_offset(zone: str, local: dt.datetime) -> dt.timedelta:
    """The UTC offset of the time zone ``zone`` (a name or ``+HH:MM``) at the wall time
    ``local``."""
    if zone.upper() in {"UTC", "Z", "ETC/UTC", "GMT"}:
        return dt.timedelta(0)
    if m := re.fullmatch(r"([+-])(\d{2}):?(\d{2})", zone):
        sign = 1 if m[1] == "+" else -1
        return sign * dt.timedelta(hours=int(m[2]), minutes=int(m[3]))
    import zoneinfo

    offset = local.replace(tzinfo=zoneinfo.ZoneInfo(zone)).utcoffset()
    return offset or dt.timedelta(0)


def _to_timestamp(value: Any, kind: pa.DataType, epoch_unit: str) -> int:
    """The timestamp as a count of the column's unit since 1970-01-01 UTC (or since that wall
    time, for a naive column)."""
    per_second = _PER_SECOND[_unit_of(kind)]
    zone: str | None = kind.tz
    if isinstance(value, dt.datetime):
        value = value.isoformat()
    if isinstance(value, JsonNumber) or (
        isinstance(value, int | float) and not isinstance(value, bool)
    ):
        text = value.text if isinstance(value, JsonNumber) else repr(value)
        if not _NUMBER.fullmatch(text):
            raise _RefusedError(f"{text} is not a time")
        if decimal.Decimal(text).adjusted() > _MAX_DIGITS:
            raise _RefusedError(f"{text} is beyond the range of every timestamp")
        count = decimal.Decimal(text) * per_second / _PER_SECOND[epoch_unit]
        if count != count.to_integral_value():
            raise _RefusedError(
                f"{text} ({epoch_unit} since 1970-01-01) has more precision than the column "
                f"({kind}); declare timestamp(ns) or a coarser epoch unit"
            )
        return int(count)
    if not isinstance(value, str) or not (m := _TIMESTAMP.fullmatch(value.strip())):
        raise _RefusedError(
            f"{_show(value)} is not a timestamp (ISO 8601 text such as 2024-01-01T12:00:00Z, "
            "or a number of seconds since 1970-01-01)"
        )
    try:
        wall = dt.datetime(
            int(m[1]), int(m[2]), int(m[3]), int(m[4] or 0), int(m[5] or 0), int(m[6] or 0)
        )
    except ValueError as exc:
        raise _RefusedError(f"{value!r} is not a valid timestamp: {exc}") from None
    try:
        fraction = _fraction(m[7], per_second)
    except _RefusedError as exc:
        raise _RefusedError(f"{value!r} {exc}; declare timestamp(ns)") from None
    written = m[8]
    if written is not None:
        offset = _zone_offset(written, wall)  # the instant: UTC wall time for naive columns
    elif zone is not None:
        offset = _zone_offset(zone, wall)  # a wall time in the column's zone
    else:
        offset = dt.timedelta(0)
    delta = wall - _EPOCH - offset
    seconds = delta.days * 86_400 + delta.seconds
    return seconds * per_second + fraction
