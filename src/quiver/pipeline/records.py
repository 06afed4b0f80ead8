"""JSON records (dicts) as Arrow RecordBatches of one stable schema, for the sources that
receive records one message or one page at a time (``rest``, ``rabbitmq``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from quiver.pipeline.component import LINE_COLUMN
from quiver.runtime.errors import PermanentError

__all__ = ["RecordBatcher", "arrow_type"]


_TYPES: dict[str, pa.DataType] = {
    "int": pa.int64(),
    "integer": pa.int64(),
    "float": pa.float64(),
    "double": pa.float64(),
    "str": pa.string(),
    "string": pa.string(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}


def arrow_type(name: str, column: str = "") -> pa.DataType:
    """The Arrow type of a schema type name, or a ValueError naming the known ones."""
    try:
        return _TYPES[name.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(_TYPES))
        raise ValueError(
            f"unknown type {name!r} for column {column!r}; use one of {known}"
        ) from None


class RecordBatcher:
    """Turns lists of JSON records (dicts) into RecordBatches of one stable schema.

    The schema is declared or taken from the first records; nested values of ``str``/``json``
    columns are kept as JSON text. A value that cannot be cast, or a field the schema does
    not know, raises a PermanentError naming the record number.
    """

    def __init__(self, where: str, declared: Mapping[str, str] | None = None) -> None:
        self.where = where
        self.schema: pa.Schema | None = None
        if declared:
            self.schema = pa.schema([(n, arrow_type(t, n)) for n, t in declared.items()])
        self.records = 0

    def to_batch(self, records: Sequence[Any]) -> pa.RecordBatch:
        first = self.records + 1
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise PermanentError.one(
                    f"record {first + i} is a {type(rec).__name__}, not a JSON object",
                    self.where,
                    "point `records` at a list of objects",
                )
        if self.schema is None:
            self.schema = self._infer(records)
        names = set(self.schema.names)
        for i, rec in enumerate(records):
            unknown = [k for k in rec if k not in names]
            if unknown:
                raise PermanentError.one(
                    f"record {first + i} has field(s) {unknown} not in the schema "
                    f"{self.schema.names}",
                    self.where,
                    "declare every field with its type in `schema:` (the schema is otherwise "
                    "taken from the first records)",
                )
        arrays = [self._column(f, records, first) for f in self.schema]
        lines = pa.array(range(first, first + len(records)), pa.int64())
        self.records += len(records)
        return pa.record_batch(
            [*arrays, lines], schema=self.schema.append(pa.field(LINE_COLUMN, pa.int64()))
        )

    def _infer(self, records: Sequence[dict[str, Any]]) -> pa.Schema:
        names: dict[str, None] = {}
        for rec in records:
            names.update(dict.fromkeys(rec))
        fields = []
        for name in names:
            values = [_plain_json(r.get(name)) for r in records]
            try:
                inferred = pa.array(values).type
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                inferred = pa.string()  # mixed kinds: keep as text
            if pa.types.is_null(inferred) or pa.types.is_nested(inferred):
                inferred = pa.string()
            fields.append(pa.field(name, inferred))
        return pa.schema(fields)

    def _column(self, f: pa.Field, records: Sequence[dict[str, Any]], first: int) -> pa.Array:
        values = [r.get(f.name) for r in records]
        if pa.types.is_string(f.type):
            values = [
                v
                if v is None or isinstance(v, str)
                else orjson.dumps(v).decode()
                if isinstance(v, dict | list)
                else _text(v)
                for v in values
            ]
        try:
            return pa.array(values, f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
        try:
            return pc.cast(pa.array(values), f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
            pass
        for i, v in enumerate(values):
            try:
                pc.cast(pa.array([v]), f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
                raise PermanentError.one(
                    f"record {first + i} field {f.name!r}: value {v!r} is not a {f.type}",
                    self.where,
                    f"declare {f.name}: str (or json) in `schema:` to keep such values as text",
                ) from None
        raise PermanentError.one(
            f"field {f.name!r} cannot be read as {f.type}", self.where, "declare it in `schema:`"
        )


def _plain_json(value: Any) -> Any:
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
