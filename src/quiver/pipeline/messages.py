"""Broker messages as rows, for the sources that read one message at a time (the ``rabbitmq``
source and the receivers of :mod:`quiver.ingest`).

Each message holds zero or more records. A message is taken whole or refused whole: when one
of its records does not fit the schema, every row of that message is left out of the batch and
the message is reported with the first error, so it can be settled as refused (dead-lettered,
terminated) instead of half-written.
"""

from __future__ import annotations

import base64
import csv
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from quiver.pipeline.component import LINE_COLUMN, RowError
from quiver.pipeline.records import RecordBatcher

__all__ = ["MessageRows", "body_entry", "csv_header", "csv_text_rows", "refusal"]

M = TypeVar("M")


class MessageRows(Generic[M]):
    """Turns the records of messages into batches of one schema (see the module's doc)."""

    def __init__(self, make_batcher: Callable[[Sequence[Any]], RecordBatcher]) -> None:
        """``make_batcher`` is called with the first records once some arrive."""
        self._make_batcher = make_batcher
        self.batcher: RecordBatcher | None = None

    def split(
        self, parsed: Sequence[tuple[M, list[Any]]]
    ) -> tuple[pa.RecordBatch | None, list[M], list[tuple[M, RowError]]]:
        """The rows of the messages whose every record fits (None when there are none), the
        messages taken, and the messages refused with the first error of each."""
        batch: pa.RecordBatch | None = None
        by_line: dict[int | None, RowError] = {}
        first = 0
        records = [r for _, rs in parsed for r in rs]
        if records:  # a message may hold no record ([])
            if self.batcher is None:
                self.batcher = self._make_batcher(records)
            first = self.batcher.records + 1
            batch, errors = self.batcher.split(records)
            by_line = {e.line: e for e in errors}
        taken: list[M] = []
        refused: list[tuple[M, RowError]] = []
        refused_lines: list[int] = []
        for message, rs in parsed:
            lines = range(first, first + len(rs))
            first += len(rs)
            bad = [by_line[n] for n in lines if n in by_line]
            if bad:
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                e = bad[0]
                refused.append((message, RowError(e.line, e.reason + more, e.column, e.value)))
                refused_lines.extend(lines)
            else:
                taken.append(message)
        if batch is not None and refused_lines:
            drop = pa.array(refused_lines, pa.int64())
            batch = batch.filter(pc.invert(pc.is_in(batch.column(LINE_COLUMN), drop)))
        return (batch if batch is not None and batch.num_rows else None), taken, refused


def refusal(label: str, body: bytes, reason: str, error: RowError | None = None) -> RowError:
    """The rejected-row entry of a refused message: its label and reason, and its body
    (:func:`body_entry`)."""
    return RowError(
        error.line if error is not None else None,
        f"message {label}: {reason}",
        error.column if error is not None else None,
        error.value if error is not None else None,
        body_entry(body),
    )


def body_entry(body: bytes) -> dict[str, str]:
    """A message body as the rejects file keeps it: UTF-8 text under ``body``, any other
    bytes (Avro, protobuf, text in another encoding) whole as base64 under ``body_base64``,
    never with replacement characters."""
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode("ascii")}


def csv_text_rows(body: bytes, delimiter: str, columns: list[str] | None) -> pa.Table:
    """The rows of a CSV message body as text columns, read as the CSV sinks write them: an
    empty unquoted field is null and a quoted one (``""``) an empty string, and in a
    one-column body an empty line is a null value. ``columns`` names bare rows; without it
    the first line is the header. A row with a wrong number of fields raises ArrowInvalid."""
    if not body.strip(b"\r\n"):
        return pa.table({})
    names = columns or csv_header(body, delimiter)
    return pacsv.read_csv(
        pa.py_buffer(body),
        read_options=pacsv.ReadOptions(column_names=columns) if columns else None,
        parse_options=pacsv.ParseOptions(delimiter=delimiter, ignore_empty_lines=len(names) != 1),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


def csv_header(body: bytes, delimiter: str) -> list[str]:
    """The column names in the first line of a CSV message."""
    first = body.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    return next(csv.reader([first], delimiter=delimiter), [])
