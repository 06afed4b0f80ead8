"""Column work shared by the OTAP signals, all vectorised (pyarrow compute and numpy): id
decoding (delta and quasi-delta, section 6.4 of the OTAP specification), ids as hex text,
attribute values as the text of the telemetry layout, and attribute tables joined to their
parents as ``map<string, string>`` columns.

A payload that cannot be right raises :class:`OtapDataError` with the payload type, column
and row, which the receiver answers ``INVALID_ARGUMENT``. A row holding a value the layout
cannot (a time past 2262, a count past int64) is left out alone: :class:`RowChecks` finds them,
column by column, and :class:`Rejections` says which in the batch's answer.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quiver.ingest.arrow_layout import LARGEST, count_too_large, time_too_late, value_json

__all__ = [
    "OtapDataError",
    "Payload",
    "Rejections",
    "RowChecks",
    "ValueText",
    "attribute_maps",
    "attribute_runs",
    "enum_names",
    "hex_ids",
    "nanos",
    "parent_rows",
    "per_row_maps",
    "stable_order",
    "timestamps",
    "value_text",
    "value_texts",
]

_TS = pa.timestamp("ns", tz="UTC")

# AnyValue discriminants (the pdata ValueType numbers, section 5.5.1 of the specification)
EMPTY, STR, INT, DOUBLE, BOOL, MAP, SLICE, BYTES = range(8)
_ACTIVE = {STR: "str", INT: "int", DOUBLE: "double", BOOL: "bool", BYTES: "bytes"}


class OtapDataError(Exception):
    """A payload that cannot be decoded; the message says which table, column and row."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Payload:
    """One decoded payload table: its columns with structs flattened (``resource.id``) and
    dictionaries decoded, and each column's ``encoding`` metadata (plain / delta /
    quasidelta) where the sender gave one. ``memo`` is shared by the payloads of one IPC
    stream, for results that later payloads of the same content can reuse."""

    def __init__(
        self,
        name: str,
        batch: pa.RecordBatch,
        encodings: dict[str, str],
        memo: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.batch = batch
        self.encodings = encodings
        self.rows = batch.num_rows
        #: what was made of an earlier payload of the same IPC stream (see per_row_maps)
        self.memo: dict[str, Any] = {} if memo is None else memo

    def column(self, name: str, *, required: bool = False) -> pa.Array | None:
        index = self.batch.schema.get_field_index(name)
        if index < 0:
            if required:
                raise OtapDataError(f"{self.name}: the required column {name!r} is missing")
            return None
        array = self.batch.column(index)
        if required and array.null_count:
            row = _first(array.is_null())
            raise OtapDataError(f"{self.name}.{name} row {row}: null in a required column")
        return array

    def ints(self, name: str, *, required: bool = False) -> pa.Array | None:
        """An integer column (any width) as int64; OtapDataError if it is not integers."""
        array = self.column(name, required=required)
        if array is None:
            return None
        if not pa.types.is_integer(array.type):
            raise OtapDataError(f"{self.name}.{name} is {array.type}; an integer type is expected")
        return array.cast(pa.int64())

    def texts(self, name: str) -> pa.Array | None:
        array = self.column(name)
        if array is None:
            return None
        if pa.types.is_dictionary(array.type):
            array = array.dictionary_decode()
        return _text(array, f"{self.name}.{name}")

    def ids(
        self, name: str, default: str, same: np.ndarray | list[pa.Array] | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """An id or parent_id column decoded to absolute values: ``(values, valid)``, numpy
        uint32 and the mask of non-null rows. Follows the column's ``encoding`` metadata or,
        without one, ``default``: "delta", or "quasidelta" where ``same`` (a mask, or the
        equality columns) says which rows continue the run of the row before."""
        array = self.column(name)
        if array is None:
            return None
        if not pa.types.is_integer(array.type):
            raise OtapDataError(
                f"{self.name}.{name} is {array.type}; an unsigned integer is expected"
            )
        encoding = self.encodings.get(name, default)
        valid, raw = _unsigned(array)
        if encoding == "plain":
            return raw, valid
        if encoding == "delta":
            return np.cumsum(raw, dtype=np.uint64).astype(np.uint32), valid
        if encoding == "quasidelta":
            if not isinstance(same, np.ndarray):
                same = _same_as_previous(same or [], len(array))
            return _segmented_cumsum(raw, same), valid
        raise OtapDataError(
            f"{self.name}.{name}: unknown encoding {encoding!r} (plain, delta or quasidelta)"
        )


def _text(array: pa.Array, where: str) -> pa.Array:
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        raise OtapDataError(f"{where} is {array.type}; Utf8 is expected")
    return array.cast(pa.string())


def _first(mask: pa.Array) -> int:
    return int(np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False)))[0])


def _unsigned(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """An integer column as numpy ``(valid, values)``: the mask of non-null rows and the
    values as uint32 (0 where null)."""
    if array.null_count:
        valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        array = array.fill_null(0)
    else:
        valid = np.ones(len(array), dtype=bool)
    if array.type not in _NARROW_UNSIGNED:
        array = array.cast(pa.uint32())  # refuses negative and too large values
    return valid, array.to_numpy(zero_copy_only=False).astype(np.uint32, copy=False)


_NARROW_UNSIGNED = (pa.uint8(), pa.uint16(), pa.uint32())


def _equal_to_previous(column: pa.Array) -> np.ndarray:
    """For rows 1.., whether the row equals the row before (nulls never equal): numpy for
    integers, floats and booleans (nulls from the validity bitmap) and for dictionary
    indices, Arrow's ``equal`` for the rest (NaN equals nothing either way)."""
    rows = len(column)
    if rows < 2:
        return np.zeros(0, dtype=bool)
    kind = column.type
    if pa.types.is_dictionary(kind):
        indices = column.indices
        if indices.null_count or column.dictionary.null_count:
            return _pc_equal_to_previous(column)
        # by dictionary entry, counting equal entries as one
        first = np.asarray(pc.index_in(column.dictionary, value_set=column.dictionary))
        values = first[indices.to_numpy(zero_copy_only=False)]
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        if column.null_count:  # equal values, both rows valid
            valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            values = column.fill_null(False if pa.types.is_boolean(kind) else 0)
            values = values.to_numpy(zero_copy_only=False)
            both: np.ndarray = (values[1:] == values[: rows - 1]) & valid[1:] & valid[: rows - 1]
            return both
        values = column.to_numpy(zero_copy_only=False)
    else:
        return _pc_equal_to_previous(column)
    equal: np.ndarray = values[1:] == values[: rows - 1]
    return equal


def _pc_equal_to_previous(column: pa.Array) -> np.ndarray:
    rows = len(column)
    equal = pc.equal(column.slice(1), column.slice(0, rows - 1))
    if equal.null_count:
        equal = equal.fill_null(False)
    return np.asarray(equal.to_numpy(zero_copy_only=False), dtype=bool)


def _same_as_previous(columns: list[pa.Array], rows: int) -> np.ndarray:
    """True where every column equals the row before (nulls never equal)."""
    same = np.zeros(rows, dtype=bool)
    if rows < 2 or not columns:
        return same
    mask = _equal_to_previous(columns[0])
    for column in columns[1:]:
        mask &= _equal_to_previous(column)
    same[1:] = mask
    return same


def _segmented_cumsum(raw: np.ndarray, same: np.ndarray) -> np.ndarray:
    """Running sums restarting at each row where ``same`` is False (quasi-delta decoding),
    in uint32 arithmetic: sums that wrap around come back in the difference."""
    values = raw.astype(np.uint32, copy=False)
    if not len(values):
        return values
    sums = np.cumsum(values, dtype=np.uint32)
    breaks = ~same
    breaks[0] = True
    starts = np.flatnonzero(breaks)
    if len(starts) == len(values):
        return values  # no runs: every id as it is
    lengths = np.diff(starts, append=len(values))
    result: np.ndarray = sums - np.repeat(sums[starts] - values[starts], lengths)
    return result


# ----------------------------------------------------------------------------- ids and times


def hex_ids(array: pa.Array | None, width: int, rows: int, where: str) -> pa.Array:
    """A FixedSizeBinary(width) column as lowercase hex strings; null (and all zeros,
    OpenTelemetry's "empty" id) as null."""
    if array is None:
        return pa.nulls(rows, pa.string())
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        lengths = pc.binary_length(array)
        bad = pc.and_(pc.is_valid(array), pc.not_equal(lengths, width)).fill_null(False)
        if pc.any(bad).as_py():
            row = _first(bad)
            raise OtapDataError(f"{where} row {row}: {len(array[row].as_py())} bytes, not {width}")
        array = array.cast(pa.binary(width))
    if not pa.types.is_fixed_size_binary(array.type) or array.type.byte_width != width:
        raise OtapDataError(f"{where} is {array.type}; FixedSizeBinary({width}) is expected")
    if array.offset:
        array = pa.concat_arrays([array])  # a copy from offset 0
    data = array.buffers()[1]
    count = len(array)
    raw = np.frombuffer(data, dtype=np.uint8, count=count * width) if count else _NO_BYTES
    text = binascii.hexlify(raw.data)  # a C loop, no index array, no str
    offsets = np.arange(0, (count + 1) * width * 2, width * 2, dtype=np.int32)
    keep = raw.view(np.uint64).reshape(count, width // 8).any(axis=1)  # all zeros: null
    if array.null_count:
        keep &= np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    bitmap = None if keep.all() else pa.py_buffer(np.packbits(keep, bitorder="little"))
    return pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets), pa.py_buffer(text), bitmap, count - int(keep.sum())
    )


_NO_BYTES = np.zeros(0, dtype=np.uint8)


def nanos(array: pa.Array | None, rows: int, where: str) -> pa.Array:
    """A Timestamp / Duration / integer column as int64 nanoseconds (null kept); an unsigned
    value past int64 becomes negative, as a signed sender sends it (see :class:`RowChecks`)."""
    if array is None:
        return pa.nulls(rows, pa.int64())
    kind = array.type
    if pa.types.is_timestamp(kind) or pa.types.is_duration(kind):
        if kind.unit != "ns":
            raise OtapDataError(f"{where} is {kind}; nanoseconds are expected")
        return array.cast(pa.int64())
    if pa.types.is_integer(kind):
        return array.cast(pa.int64(), safe=False)
    raise OtapDataError(f"{where} is {kind}; Timestamp(Nanosecond) is expected")


def timestamps(values: pa.Array) -> pa.Array:
    """int64 nanoseconds as ``timestamp[ns, UTC]``, 0 (unset in OTLP) as null."""
    zero = pc.equal(values, 0).fill_null(False)
    if not zero.true_count:
        return values.cast(_TS)
    return pc.if_else(zero, pa.scalar(None, pa.int64()), values).cast(_TS)


def enum_names(values: pa.Array | None, names: tuple[str, ...], rows: int) -> pa.Array:
    """Enum numbers as their names (null as the first name, unknown numbers as digits)."""
    if values is None:
        return pa.repeat(pa.scalar(names[0]), rows)
    numbers = values.fill_null(0)
    plain = numbers.to_numpy(zero_copy_only=False)
    if not len(plain) or (int(plain.min()) >= 0 and int(plain.max()) < len(names)):
        return pa.array(names).take(numbers)  # every number known (as senders send them)
    known = pc.and_(pc.greater_equal(numbers, 0), pc.less(numbers, len(names)))
    index = pc.if_else(known, numbers, 0)
    return pc.if_else(known, pa.array(names).take(index), numbers.cast(pa.string()))


# ----------------------------------------------------------------------------- values past int64

_MAX_REASONS = 3


@dataclass
class Rejections:
    """The rows of one BatchArrowRecords left out for a value the layout cannot hold: how many,
    and the first reasons (its BatchStatus message)."""

    count: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        if not self.count:
            return ""
        more = self.count - len(self.reasons)
        tail = f"; and {more} more" if more > 0 else ""
        return f"{self.count} rejected: " + "; ".join(self.reasons) + tail


class RowChecks:
    """The rows of a table of items (SPANS, LOGS, a data point table) to leave out, each check
    a mask over its rows and the reason of a row: vectorised, and nothing is kept per row
    until a row fails.

    OTLP times are unsigned 64-bit nanoseconds and OTAP's are signed Timestamps: a sender
    casts one past 2262 to a negative Timestamp (as the Go implementation does), or sends it
    in an unsigned column. Either way it is a time no row holds, as in OTLP."""

    def __init__(self, table: Payload) -> None:
        self.table = table
        self._checks: list[tuple[np.ndarray, Callable[[int], str]]] = []

    def times(
        self,
        column: pa.Array | None,
        rows: int,
        name: str,
        owner: tuple[np.ndarray, str] | None = None,
    ) -> pa.Array:
        """The time ``column`` ``name`` of ``rows`` rows as int64 nanoseconds (:func:`nanos`),
        the rows holding a time past int64 checked out: the table's own, or with ``owner``
        (the row of each value, and the table of the values: a span's events ...) the rows
        owning such a value."""
        table = owner[1] if owner else self.table.name
        values = nanos(column, rows, f"{table}.{name}")
        signed = column is None or not pa.types.is_unsigned_integer(column.type)
        self.late(values, name, signed, owner)
        return values

    def late(
        self,
        values: pa.Array,
        name: str,
        signed: bool,
        owner: tuple[np.ndarray, str] | None = None,
    ) -> None:
        """Rows whose time ``values`` (int64 nanoseconds of ``name``; ``signed``: read from a
        signed type) is past int64, which is negative here (see :meth:`times`)."""
        late = pc.less(values, 0)
        if not late.true_count:
            return
        mask = _mask(late)

        def reason(j: int) -> str:
            value = values[j].as_py()
            unsigned = value + (1 << 64)
            shown = f"{value} ({unsigned} as OTLP's unsigned time)" if signed else unsigned
            return time_too_late(name, shown)

        self._add(mask, reason, owner)

    def counts(self, values: pa.Array, name: str) -> pa.Array:
        """``values`` (an integer column, or a list of them, of count ``name``) as int64: the
        rows holding a count past int64 are checked out."""
        lists = pa.types.is_list(values.type) or pa.types.is_large_list(values.type)
        flat = pc.list_flatten(values) if lists else values
        kind = pa.list_(pa.int64()) if lists else pa.int64()
        if not pa.types.is_integer(flat.type):
            return values.cast(kind)  # what cannot be cast is refused with the batch
        if flat.type == pa.uint64():
            large = pc.greater(flat, pa.scalar(LARGEST, pa.uint64()))
            if large.true_count:
                mask = _mask(large)
                rows = np.asarray(pc.list_parent_indices(values)) if lists else None

                def reason(j: int) -> str:
                    at = "" if rows is None else f"[{j - np.searchsorted(rows, rows[j])}]"
                    return count_too_large(f"{name}{at}", flat[j].as_py())

                self._add(mask, reason, (rows, "") if rows is not None else None)
        return values.cast(kind, safe=False)  # what is past int64 is left out with its row

    def _add(
        self,
        mask: np.ndarray,
        reason: Callable[[int], str],
        owner: tuple[np.ndarray | None, str] | None,
    ) -> None:
        if owner is None:
            self._checks.append((mask, reason))
            return
        rows, table = owner
        assert rows is not None
        bad = np.flatnonzero(mask)
        parents = np.zeros(self.table.rows, dtype=bool)
        parents[rows[bad]] = True
        first: dict[int, int] = {}  # the first failing value of each row, for its reason
        for j in bad[::-1]:
            first[int(rows[j])] = int(j)
        prefix = (
            f"{table} row {{}}: " if table else ""
        )  # the value's own row, when of another table
        self._checks.append((parents, lambda row: prefix.format(first[row]) + reason(first[row])))

    def apply(self, batch: pa.RecordBatch, rejected: Rejections) -> pa.RecordBatch | None:
        """``batch`` (the table's rows) without the rows checked out, which ``rejected``
        counts and names (None: no row is left)."""
        if not self._checks:
            return batch
        bad = np.logical_or.reduce([mask for mask, _ in self._checks])
        for row in np.flatnonzero(bad)[: _MAX_REASONS - len(rejected.reasons)]:
            reason = next(why for mask, why in self._checks if mask[row])
            rejected.reasons.append(f"{self.table.name} row {row}: {reason(int(row))}")
        rejected.count += int(bad.sum())
        if bad.all():
            return None
        return batch.filter(pa.array(~bad))


def _mask(values: pa.Array) -> np.ndarray:
    """A boolean array as numpy, null as False."""
    return np.asarray(values.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


# ----------------------------------------------------------------------------- values


class ValueText:
    """The text of an AnyValue column group, built once per value kind: ``parts`` holds the
    converted values of every kind one after the other, and row ``i``'s text is
    ``parts[at[i]]`` (the last slot of ``parts`` is null, for empty values)."""

    def __init__(self, parts: pa.Array, at: np.ndarray | None) -> None:
        self.parts = parts
        self.at = at  # None: row i's text is parts[i]

    def rows(self, order: np.ndarray | None = None) -> pa.Array:
        """The text of every row, or of the rows ``order`` picks, in that order."""
        if self.at is None:
            return (
                self.parts.slice(0, len(self.parts) - 1)
                if order is None
                else self.parts.take(order)
            )
        return self.parts.take(pa.array(self.at if order is None else self.at[order]))


def value_text(table: Payload, prefix: str = "") -> pa.Array:
    """The AnyValue columns (``type``, ``str``, ``int``, ``double``, ``bool``, ``bytes``,
    ``ser``, under ``prefix``) as the text the telemetry layout stores: strings as they are,
    integers and booleans as their JSON text, doubles as JSON, bytes as base64, maps and
    arrays (CBOR in ``ser``) as JSON; empty values as null."""
    return value_texts(table, prefix).rows()


def value_texts(table: Payload, prefix: str = "") -> ValueText:
    """:func:`value_text`, before the rows are put in order (see :class:`ValueText`)."""
    rows = table.rows
    column = table.column(prefix + "type")
    if column is None:
        return ValueText(pa.nulls(1, pa.string()), np.zeros(rows, dtype=np.int64))
    if not pa.types.is_integer(column.type):
        raise OtapDataError(f"{table.name}.{prefix}type is {column.type}; UInt8 is expected")
    kinds = _kinds(column)
    bad = (kinds < 0) | (kinds > 7)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise OtapDataError(
            f"{table.name}.{prefix}type row {row}: {int(kinds[row])} is not an AnyValue type "
            "(0 empty, 1 str, 2 int, 3 double, 4 bool, 5 map, 6 slice, 7 bytes)"
        )
    bounds = _kind_bounds(kinds)
    parts: list[pa.Array] = []
    if bounds is not None:  # sorted by type, as senders send them: a slice per type
        for kind in range(8):
            low, high = int(bounds[kind]), int(bounds[kind + 1])
            if high > low:
                part = _kind_text(table, prefix, kind, _slicer(low, high - low))
                parts.append(pa.nulls(high - low, pa.string()) if part is None else part)
        parts.append(pa.nulls(1, pa.string()))
        return ValueText(pa.concat_arrays(parts), None)
    size = 0
    at = np.full(rows, -1, dtype=np.int64)
    for kind in np.flatnonzero(np.bincount(kinds, minlength=8)).tolist():
        index = np.flatnonzero(kinds == kind)
        part = _kind_text(table, prefix, kind, _taker(index))
        if part is None:
            continue
        at[index] = size + np.arange(len(index))
        size += len(part)
        parts.append(part)
    parts.append(pa.nulls(1, pa.string()))
    at[at < 0] = size
    return ValueText(pa.concat_arrays(parts), at)


def _slicer(start: int, length: int) -> Callable[[pa.Array], pa.Array]:
    return lambda array: array.slice(start, length)


def _taker(index: np.ndarray) -> Callable[[pa.Array], pa.Array]:
    return lambda array: array.take(pa.array(index))


def _kinds(column: pa.Array) -> np.ndarray:
    """An integer ``type`` column as numpy int64, null as 0 (empty)."""
    if column.null_count:
        column = column.fill_null(0)
    kinds: np.ndarray = column.to_numpy().astype(np.int64)
    return kinds


def _kind_bounds(kinds: np.ndarray) -> np.ndarray | None:
    """Where each type's rows start and end (``bounds[k]:bounds[k + 1]``) when the rows are
    sorted by type (0..7); None when they are not."""
    if len(kinds) > 1 and not bool((kinds[1:] >= kinds[:-1]).all()):
        return None
    found: np.ndarray = np.searchsorted(kinds, np.arange(9))
    return found


def _kind_text(
    table: Payload, prefix: str, kind: int, pick: Callable[[pa.Array], pa.Array]
) -> pa.Array | None:
    """The text of the rows ``pick`` takes, all of AnyValue type ``kind``; None when they
    are empty (type 0 or the active column missing)."""
    if kind == EMPTY:
        return None
    name = "ser" if kind in (MAP, SLICE) else _ACTIVE[kind]
    values = table.column(prefix + name)
    if values is None:
        return None  # the active column is missing: the values are empty
    if kind == STR:
        text = table.texts(prefix + name)
        assert text is not None
        part = pick(text)
        return part.fill_null("") if part.null_count else part
    if kind == INT:
        return pick(values).cast(pa.int64()).cast(pa.string())
    if kind == BOOL:
        return pc.if_else(pick(values), pa.scalar("true"), pa.scalar("false"))
    # the rare kinds, value by value: doubles as JSON, bytes, CBOR
    convert = {DOUBLE: _double_text, BYTES: _bytes_text}.get(kind, _cbor_text)
    where = f"{table.name}.{prefix}{name}"
    return pa.array([convert(v, where) for v in pick(values).to_pylist()], pa.string())


def _double_text(value: Any, where: str) -> str | None:
    return None if value is None else value_json(value)


def _bytes_text(value: Any, where: str) -> str | None:
    return None if value is None else base64.b64encode(value).decode("ascii")


def _cbor_text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        decoded, _ = _cbor(bytes(value), 0, 0)
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as exc:
        raise OtapDataError(f"{where}: not valid CBOR ({exc})") from exc
    return value_json(decoded)


_CBOR_DEPTH = 100  # as deep as an OTLP attribute value can nest in protobuf


def _cbor(data: bytes, at: int, depth: int) -> tuple[Any, int]:
    """One CBOR item (RFC 8949) from ``data[at:]`` as a JSON-able value, and where it ends;
    ``depth``: the arrays, maps and tags it is inside. Byte strings become base64 text, as
    OTLP JSON writes them."""
    if depth > _CBOR_DEPTH:
        raise ValueError(f"arrays, maps and tags nested more than {_CBOR_DEPTH} levels deep")
    head = data[at]
    major, info = head >> 5, head & 0x1F
    at += 1
    if major == 7:
        if info == 20:
            return False, at
        if info == 21:
            return True, at
        if info in (22, 23):
            return None, at
        if info == 25:
            return struct.unpack_from(">e", data, at)[0], at + 2
        if info == 26:
            return struct.unpack_from(">f", data, at)[0], at + 4
        if info == 27:
            return struct.unpack_from(">d", data, at)[0], at + 8
        raise ValueError(f"simple value {info}")
    if info < 24:
        length = info
    elif info == 24:
        length, at = data[at], at + 1
    elif info == 25:
        length, at = struct.unpack_from(">H", data, at)[0], at + 2
    elif info == 26:
        length, at = struct.unpack_from(">I", data, at)[0], at + 4
    elif info == 27:
        length, at = struct.unpack_from(">Q", data, at)[0], at + 8
    elif info == 31 and major in (2, 3, 4, 5):
        return _cbor_indefinite(data, at, major, depth)
    else:
        raise ValueError(f"additional information {info}")
    if major == 0:
        return length, at
    if major == 1:
        return -1 - length, at
    if major in (2, 3):
        if at + length > len(data):
            raise ValueError("truncated string")
        chunk = data[at : at + length]
        value = base64.b64encode(chunk).decode("ascii") if major == 2 else chunk.decode()
        return value, at + length
    if major == 4:
        items = []
        for _ in range(length):
            item, at = _cbor(data, at, depth + 1)
            items.append(item)
        return items, at
    if major == 5:
        mapping = {}
        for _ in range(length):
            key, at = _cbor(data, at, depth + 1)
            mapping[str(key)], at = _cbor(data, at, depth + 1)
        return mapping, at
    return _cbor(data, at, depth + 1)  # major 6: a tag; the value it tags


def _cbor_indefinite(data: bytes, at: int, major: int, depth: int) -> tuple[Any, int]:
    items: list[Any] = []
    while data[at] != 0xFF:
        item, at = _cbor(data, at, depth + 1)
        items.append(item)
    at += 1
    if major == 2:
        return base64.b64encode(b"".join(base64.b64decode(i) for i in items)).decode(), at
    if major == 3:
        return "".join(items), at
    if major == 4:
        return items, at
    return {str(items[i]): items[i + 1] for i in range(0, len(items), 2)}, at


# ----------------------------------------------------------------------------- joins


def parent_rows(
    parent_ids: np.ndarray, parent_valid: np.ndarray, ids: np.ndarray, where: str, parent: str
) -> np.ndarray:
    """For each child ``ids`` value, the row of the parent with that id (ids are unique in
    a batch); OtapDataError naming the first child whose parent does not exist."""
    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    count = len(parent_ids)
    if (
        parent_valid.all()
        and (count == 0 or (parent_ids[0] == 0 and parent_ids[-1] == count - 1))
        and np.array_equal(parent_ids, np.arange(count, dtype=parent_ids.dtype))
    ):
        # ids numbered 0, 1, 2 ... (as senders number them): an id is its row
        missing = ids >= count
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise OtapDataError(
                f"{where} row {row}: parent_id {int(ids[row])} matches no {parent} id in this batch"
            )
        return ids.astype(np.int64)
    keys = np.where(parent_valid, parent_ids.astype(np.int64), -1)
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    at = np.searchsorted(ordered, ids.astype(np.int64))
    at_clipped = np.minimum(at, len(ordered) - 1) if len(ordered) else at
    found = (
        (at < len(ordered)) & (ordered[at_clipped] == ids)
        if len(ordered)
        else np.zeros_like(at, bool)
    )
    if not found.all():
        row = int(np.flatnonzero(~found)[0])
        raise OtapDataError(
            f"{where} row {row}: parent_id {int(ids[row])} matches no {parent} id in this batch"
        )
    rows: np.ndarray = order[at_clipped]
    return rows


def attribute_maps(
    attrs: Payload | None, parents: int, rows_of_parent: Any, text: ValueText | None = None
) -> pa.Array:
    """A ``map<string, string>`` per parent row (``parents`` of them) from an attribute
    table whose rows belong to parent rows ``rows_of_parent`` (numpy, one per attribute
    row); parents without attributes get an empty map. Keys keep the payload's order."""
    if attrs is None or not attrs.rows:
        offsets = pa.array(np.zeros(parents + 1, dtype=np.int32))
        return pa.MapArray.from_arrays(
            offsets, pa.array([], pa.string()), pa.array([], pa.string())
        )
    keys = attrs.column("key")
    if keys is None or keys.null_count:
        raise OtapDataError(f"{attrs.name}: the key column is missing or has nulls")
    values = value_texts(attrs) if text is None else text
    owners = np.asarray(rows_of_parent)
    counts = np.bincount(owners, minlength=parents)
    offsets = np.zeros(parents + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    if not len(owners) or bool((owners[1:] >= owners[:-1]).all()):
        order: np.ndarray | None = None  # already in parent order
    else:
        order = stable_order(owners, parents)
    if pa.types.is_dictionary(keys.type):
        indices = keys.indices.to_numpy(zero_copy_only=False)
        gathered = keys.dictionary.take(pa.array(indices if order is None else indices[order]))
    else:
        gathered = keys if order is None else keys.take(pa.array(order))
    if not pa.types.is_string(gathered.type):
        gathered = _text(gathered, f"{attrs.name}.key")
    return pa.MapArray.from_arrays(pa.array(offsets), gathered, values.rows(order))


def stable_order(owners: np.ndarray, parents: int) -> np.ndarray:
    """The stable sort order of ``owners`` (parent rows, below ``parents``). Each row's
    owner and position are packed into one unsigned integer (owner in the high bits), so
    the keys are distinct and numpy's unstable sort of plain integers (vectorized, about
    three times faster than its stable radix sort of uint16 arguments) orders them stably;
    the position is what the low bits keep."""
    rows = len(owners)
    row_bits = max(rows - 1, 1).bit_length()
    width = row_bits + max(parents - 1, 1).bit_length()
    if width > 64:
        return np.argsort(owners.astype(np.int64), kind="stable")
    kind = np.dtype(np.uint32 if width <= 32 else np.uint64)
    keys: np.ndarray = owners.astype(kind)
    keys <<= row_bits
    keys |= np.arange(rows, dtype=kind)
    keys.sort()
    keys &= (1 << row_bits) - 1
    order: np.ndarray = keys.astype(np.intp)
    return order


def per_row_maps(
    attrs: Payload | None,
    ids: np.ndarray,
    valid: np.ndarray,
    what: str,
    with_service: bool = False,
) -> tuple[pa.Array, pa.Array | None]:
    """Resource or scope attributes as a map per root row: the root rows carry ``ids``
    (``resource.id`` / ``scope.id``, shared by many rows; ``valid`` False where null, which
    means no attributes). With ``with_service``, also each row's ``service.name``."""
    rows = len(ids)
    if attrs is None or not attrs.rows:
        none = pa.nulls(rows, pa.string()) if with_service else None
        return attribute_maps(None, rows, None), none
    distinct = np.unique(ids[valid])
    slot = np.full(rows, len(distinct), dtype=np.int64)  # the extra slot: no attributes
    if len(distinct):
        slot[valid] = np.searchsorted(distinct, ids[valid])
    maps, service = _owner_maps(attrs, distinct, what, with_service)
    take = pa.array(slot)
    return maps.take(take), (service.take(take) if service is not None else None)


def _owner_maps(
    attrs: Payload, distinct: np.ndarray, what: str, with_service: bool
) -> tuple[pa.Array, pa.Array | None]:
    """The attribute map (and ``service.name``) of each of the ``distinct`` owner ids, and an
    empty map (null) after them. Senders send the same resources and scopes in batch after
    batch: when this payload holds the same rows as the last one of its stream, for the
    same owners, the maps made of that one are reused."""
    key = f"{what} {with_service}"
    last = attrs.memo.get(key)
    if last is not None and np.array_equal(last[1], distinct) and _same_rows(last[0], attrs.batch):
        made: tuple[pa.Array, pa.Array | None] = last[2]
        return made
    parent = attrs.ids("parent_id", "quasidelta", attribute_runs(attrs))
    if parent is None:
        raise OtapDataError(f"{attrs.name}: the required column 'parent_id' is missing")
    owner = parent_rows(distinct, np.ones(len(distinct), bool), parent[0], attrs.name, what)
    texts = value_texts(attrs)
    maps = attribute_maps(attrs, len(distinct) + 1, owner, texts)
    service: pa.Array | None = None
    if with_service:
        keys = attrs.texts("key")
        assert keys is not None
        is_service = pc.equal(keys, "service.name").fill_null(False)
        owners = pa.array(owner).filter(is_service)
        found = pc.index_in(pa.array(np.arange(len(distinct) + 1)), value_set=owners)
        service = texts.rows().filter(is_service).take(found)
    attrs.memo[key] = (attrs.batch, distinct, (maps, service))
    return maps, service


def _same_rows(before: pa.RecordBatch, now: pa.RecordBatch) -> bool:
    """Whether two payload tables hold the same values, down to the bits of floats (Arrow's
    ``equals`` takes 0.0 and -0.0 for equal, whose texts differ); tables with nested
    columns never count as the same."""
    if not before.schema.equals(now.schema, check_metadata=True) or not before.equals(now):
        return False
    for a, b in zip(before.columns, now.columns, strict=True):
        kind = a.type
        if pa.types.is_nested(kind):
            return False
        if pa.types.is_floating(kind) and a.null_count < len(a):
            bits = np.dtype(f"u{kind.bit_width // 8}")
            zero = pa.scalar(0, kind)
            left = a.fill_null(zero).to_numpy().view(bits)
            right = b.fill_null(zero).to_numpy().view(bits)
            if not np.array_equal(left, right):
                return False
    return True


def attribute_runs(attrs: Payload) -> np.ndarray:
    """The quasi-delta equality of attribute rows: same type, key and active value (never
    for empty, map and slice values, section 6.4.3)."""
    rows = attrs.rows
    kinds = attrs.column("type")
    keys = attrs.column("key")
    if kinds is None or keys is None:
        raise OtapDataError(f"{attrs.name}: the type and key columns are required")
    same = np.zeros(rows, dtype=bool)
    if rows < 2:
        return same
    if kinds.null_count or not pa.types.is_integer(kinds.type):
        current = kinds.cast(pa.int64()).fill_null(-1).to_numpy()[1:]
    else:  # the narrow integers as they are (every AnyValue type fits them)
        current = kinds.to_numpy()[1:]
    bounds = None if kinds.null_count else _kind_bounds(current)
    value_same = np.zeros(rows - 1, dtype=bool)
    for kind, name in _ACTIVE.items():
        column = attrs.column(name)
        if column is None:
            continue
        if bounds is not None:  # sorted by type: the rows of this one
            low, high = int(bounds[kind]), int(bounds[kind + 1])
            if high > low:
                equal = _equal_to_previous(column.slice(low, high - low + 1))
                value_same[low:high] = equal
            continue
        of_kind = np.flatnonzero(current == kind)
        if not len(of_kind):
            continue
        low, high = int(of_kind[0]), int(of_kind[-1]) + 1  # the range of this type's rows
        equal = _equal_to_previous(column.slice(low, high - low + 1))
        value_same[low:high] |= (current[low:high] == kind) & equal
    same[1:] = value_same & _equal_to_previous(kinds) & _equal_to_previous(keys)
    return same
