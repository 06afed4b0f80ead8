"""JSON records (dicts) as Arrow RecordBatches of one stable schema, for the sources that
receive records one message or one page at a time (``rest``, ``rabbitmq``).

Values are converted by the rules of :mod:`quiver.pipeline.json_text`: a declared type is
never guessed, a value that is not of its column's type is refused with its record number and
field, never rounded or truncated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from quiver.pipeline.component import LINE_COLUMN, RowError
from quiver.pipeline.json_text import (
    DuplicateKeys,
    JsonNumber,
    duplicate_key,
    json_array,
    plain_json,
)
from quiver.pipeline.type_names import epoch_unit, parse_type
from quiver.runtime.errors import ConfigError, PermanentError

__all__ = ["RecordBatcher", "arrow_type"]

#: Names the JSON sources know beside the types of pipeline files: ``json`` keeps nested
#: values as their JSON text.
_JSON_TYPES: dict[str, pa.DataType] = {"json": pa.string(), "integer": pa.int64()}


def arrow_type(name: str, column: str = "") -> pa.DataType:
    """The Arrow type of a schema type name, or a ValueError naming the known ones."""
    key = name.strip().lower()
    if key in _JSON_TYPES:
        return _JSON_TYPES[key]
    try:
        return parse_type(name, f"schema.{column}")
    except ConfigError as exc:
        detail = exc.details[0]
        raise ValueError(f"column {column!r}: {detail.message}; {detail.fix}, json") from None


class RecordBatcher:
    """Turns lists of JSON records (dicts) into RecordBatches of one stable schema.

    The schema is declared or taken from the first records; nested values of ``str``/``json``
    columns are kept as JSON text. Records are numbered from 1 across the run (the line column).
    """

    def __init__(
        self,
        where: str,
        declared: Mapping[str, str] | None = None,
        *,
        known: Mapping[str, str] | None = None,
    ) -> None:
        """``declared``: the whole schema; ``known``: the types of some columns when the
        others are taken from the first records (fields a source adds to every record)."""
        self.where = where
        self.schema: pa.Schema | None = None
        self.units: dict[str, str] = {}
        self._known = dict(known or {})
        if declared:
            self.schema = pa.schema([(n, arrow_type(t, n)) for n, t in declared.items()])
            self.units = {n: epoch_unit(t) for n, t in declared.items()}
        self.records = 0
        #: columns whose float type was taken from the first records, not declared
        self.inferred_floats: set[str] = set()

    def to_batch(self, records: Sequence[Any]) -> pa.RecordBatch:
        """The records as a batch; the first record that does not fit raises PermanentError."""
        batch, errors = self.split(records)
        if errors:
            first = errors[0]
            raise PermanentError.one(first.reason, self.where, _fix(first))
        return batch

    def split(self, records: Sequence[Any]) -> tuple[pa.RecordBatch, list[RowError]]:
        """The records that fit the schema as a batch, and one RowError per record that does
        not (by record number, with the field and its value)."""
        first = self.records + 1
        self.records += len(records)
        bad: dict[int, RowError] = {}
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                bad[i] = RowError(
                    first + i,
                    f"record {first + i} is a {type(rec).__name__}, not a JSON object",
                    value=plain_json(rec),
                )
            elif isinstance(rec, DuplicateKeys):  # read by parse_json_marking
                key = duplicate_key(rec)
                bad[i] = RowError(
                    first + i,
                    f"record {first + i}: key {key!r} appears twice in one JSON object; its "
                    "values would be taken differently by different readers, so the record "
                    "is refused: keep one of them",
                    rec.key,  # a field of the record, or None when the object is nested
                    row=_row(rec),
                )
        objects = [r if isinstance(r, dict) else {} for r in records]
        if self.schema is None:
            good = [r for i, r in enumerate(objects) if i not in bad]
            if not good:  # nothing to take the schema from: leave it to later records
                lines = pa.array([], pa.int64())
                return pa.record_batch([lines], names=[LINE_COLUMN]), [bad[i] for i in sorted(bad)]
            self.schema = self._infer(good)
        names = set(self.schema.names)
        for i, rec in enumerate(objects):
            unknown = [k for k in rec if k not in names]
            if unknown and i not in bad:
                bad[i] = RowError(
                    first + i,
                    f"record {first + i} has field(s) {unknown} not in the schema "
                    f"{self.schema.names}",
                    unknown[0],
                    row=_row(rec),
                )
        arrays = []
        for f in self.schema:
            values = [r.get(f.name) for r in objects]
            array, refused = json_array(values, f.type, self.units.get(f.name, "s"))
            if f.name in self.inferred_floats:
                refused = refused | _inexact_integers(values, f.name)
            for i, reason in refused.items():
                if i not in bad:
                    bad[i] = RowError(
                        first + i,
                        f"record {first + i} field {f.name!r}: {reason}",
                        f.name,
                        str(values[i]),
                        _row(objects[i]),
                    )
            arrays.append(array)
        lines = pa.array(range(first, first + len(records)), pa.int64())
        batch = pa.record_batch(
            [*arrays, lines], schema=self.schema.append(pa.field(LINE_COLUMN, pa.int64()))
        )
        if bad:
            keep = pa.array([i not in bad for i in range(len(records))])
            batch = batch.filter(keep)
        return batch, [bad[i] for i in sorted(bad)]

    def _infer(self, records: Sequence[dict[str, Any]]) -> pa.Schema:
        names: dict[str, None] = {}
        for rec in records:
            names.update(dict.fromkeys(rec))
        fields = []
        for name in names:
            values = [_plain(r.get(name)) for r in records]
            try:
                inferred = pa.array(values).type
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                inferred = pa.string()  # mixed kinds: keep as text
            if pa.types.is_null(inferred) or pa.types.is_nested(inferred):
                inferred = pa.string()
            if name in self._known:
                inferred = arrow_type(self._known[name], name)
                self.units[name] = epoch_unit(self._known[name])
            elif pa.types.is_floating(inferred):
                self.inferred_floats.add(name)
            fields.append(pa.field(name, inferred))
        return pa.schema(fields)


def _inexact_integers(values: Sequence[Any], name: str) -> dict[int, str]:
    """The integers among ``values`` that a float would change (past 2**53), by index, with
    why they are refused: the float type of their column was inferred, not declared."""
    refused = {}
    for i, value in enumerate(values):
        if isinstance(value, int) and not isinstance(value, bool) and not _exact_float(value):
            refused[i] = (
                f"the integer {value} cannot be held exactly by a float, the type inferred "
                f"for {name!r} from the first records; declare {name}: decimal(38,0), int "
                "or str in `schema:` to keep every digit"
            )
    return refused


def _exact_float(value: int) -> bool:
    try:
        return float(value) == value
    except OverflowError:
        return False


def _plain(value: Any) -> Any:
    """What inference sees: numbers as numbers, nested values as their JSON text."""
    if isinstance(value, JsonNumber):
        return plain_json(value)
    if isinstance(value, dict | list):
        return str(plain_json(value))
    return value


def _row(record: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, JsonNumber) else plain_json(v) for k, v in record.items()}


def _fix(error: RowError) -> str:
    if error.column is not None and "not in the schema" in error.reason:
        return (
            "declare every field with its type in `schema:` (the schema is otherwise "
            "taken from the first records)"
        )
    if error.column is not None:
        return f"fix the value, or declare {error.column}: str (or json) in `schema:`"
    return "point `records` at a list of objects"
