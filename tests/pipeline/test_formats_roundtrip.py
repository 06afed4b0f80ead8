"""Property-based round trips: what a sink writes, the matching source reads back unchanged."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quiver.pipeline import component
from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.csv import CsvSink
from quiver.pipeline.sinks.jsonl import JsonlSink, json_texts
from quiver.pipeline.sources.csv import CsvSource
from quiver.pipeline.sources.jsonl import JsonlSource

from .conftest import build, read_all

# Text with what makes CSV hard: delimiters, quotes, line breaks, NUL, emoji, right-to-left
# scripts, combining marks. Lone surrogates are not text and cannot be encoded, so excluded.
SPECIAL = [",", ";", "\t", "|", '"', "'", "\r", "\n", "\r\n", "\x00", "😀", "שלום", "مرحبا", "é"]
TEXT = st.lists(
    st.one_of(st.sampled_from(SPECIAL), st.text(st.characters(exclude_categories=["Cs"]))),
    max_size=4,
).map("".join)
VALUE = st.one_of(st.none(), TEXT)
NAME = st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=8)

# QUIVER_FUZZ_EXAMPLES=2000 runs a longer search by hand; the default keeps the suite fast
SETTINGS = settings(
    max_examples=int(os.environ.get("QUIVER_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@st.composite
def string_tables(draw: st.DrawFn) -> pa.Table:
    names = draw(st.lists(NAME, min_size=1, max_size=4, unique=True))
    rows = draw(st.integers(0, 12))
    columns = {name: draw(st.lists(VALUE, min_size=rows, max_size=rows)) for name in names}
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


_DIRECTORIES: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_directories() -> Iterator[None]:
    """Each example gets its own directory; all are removed when the test ends."""
    yield
    while _DIRECTORIES:
        shutil.rmtree(_DIRECTORIES.pop(), ignore_errors=True)


def context() -> tuple[RunContext, Path]:
    directory = Path(tempfile.mkdtemp(prefix="quiver-roundtrip-"))
    _DIRECTORIES.append(directory)
    return RunContext(run_id=uuid.uuid4().hex, base_dir=str(directory)), directory


async def write(sink: Any, table: pa.Table, ctx: RunContext) -> None:
    await sink.open(table.schema, ctx)
    for batch in table.to_batches(max_chunksize=5):
        await sink.write(batch)
    await sink.commit()


def without_line(table: pa.Table) -> pa.Table:
    """The columns a sink writes: no line numbers, no kept decimal text."""
    return component.without_line(table)


@SETTINGS
@given(
    table=string_tables(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quoting=st.sampled_from(["minimal", "all"]),
    terminator=st.sampled_from(["\n", "\r\n"]),
    encoding=st.sampled_from(["utf-8", "utf-16", "utf-8-sig"]),
    block_size=st.integers(1, 200),
    compressed=st.booleans(),
    quote=st.sampled_from(['"', "'", "`"]),
)
def test_csv_sink_then_source_is_lossless(
    table: pa.Table,
    delimiter: str,
    quoting: str,
    terminator: str,
    encoding: str,
    block_size: int,
    compressed: bool,
    quote: str,
) -> None:
    ctx, _ = context()
    path = "out/data.csv" + (".zst" if compressed else "")
    options = {"path": path, "delimiter": delimiter, "encoding": encoding, "quote": quote}
    sink = build(CsvSink, {**options, "quoting": quoting, "line_terminator": terminator})
    asyncio.run(write(sink, table, ctx))
    source = build(CsvSource, {**options, "block_size": block_size})
    back = asyncio.run(read_all(source, ctx))
    assert source.take_errors() == []
    if table.num_rows == 0:
        assert source.names == table.column_names
        return
    assert without_line(back).equals(table), (without_line(back).to_pylist(), table.to_pylist())
    # one line per row, plus the line breaks inside values
    lines = [2]
    for row in table.to_pylist()[:-1]:
        inside = sum(_breaks(v) for v in row.values() if v is not None)
        lines.append(lines[-1] + 1 + inside)
    assert back.column(LINE_COLUMN).to_pylist() == lines


def _breaks(value: str) -> int:
    return (
        value.count("\r\n")
        + value.replace("\r\n", "").count("\n")
        + value.replace("\r\n", "").count("\r")
    )


@SETTINGS
@given(
    rows=st.lists(st.lists(TEXT, min_size=3, max_size=3), min_size=1, max_size=15),
    quote=st.sampled_from(['"', "'", "`", "~"]),
    delimiter=st.sampled_from([",", ";", "\t"]),
    block_size=st.integers(1, 100),
)
def test_any_quote_character_reads_what_pythons_csv_module_writes(
    rows: list[list[str]], quote: str, delimiter: str, block_size: int
) -> None:
    buffer = io.StringIO(newline="")
    # "\r\n" as terminator makes the writer quote any field holding \r or \n
    writer = csv.writer(buffer, delimiter=delimiter, quotechar=quote, lineterminator="\r\n")
    writer.writerow(["a", "b", "c"])
    writer.writerows(rows)
    text = buffer.getvalue()
    expected_lines = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quote)
    next(reader)
    start = reader.line_num + 1
    for _ in reader:
        expected_lines.append(start)
        start = reader.line_num + 1
    ctx, directory = context()
    (directory / "in.csv").write_text(text, encoding="utf-8", newline="")
    source = build(
        CsvSource,
        {
            "path": "in.csv",
            "quote": quote,
            "delimiter": delimiter,
            "null_values": [],
            "block_size": block_size,
        },
    )
    back = asyncio.run(read_all(source, ctx))
    assert source.take_errors() == []
    assert [[r["a"], r["b"], r["c"]] for r in back.to_pylist()] == rows
    assert back.column(LINE_COLUMN).to_pylist() == expected_lines


def test_a_one_megabyte_field_with_line_breaks_round_trips() -> None:
    ctx, _ = context()
    big = ("x" * 1000 + ',"\n') * 1024
    table = pa.table({"id": ["1", "2", "3"], "blob": ["small", big, big[::-1]]})
    asyncio.run(write(build(CsvSink, {"path": "big.csv"}), table, ctx))
    source = build(CsvSource, {"path": "big.csv", "block_size": 64 * 1024})
    back = asyncio.run(read_all(source, ctx))
    assert without_line(back).equals(table)
    assert back.column(LINE_COLUMN).to_pylist() == [2, 3, 3 + 1024 + 1]


@st.composite
def json_tables(draw: st.DrawFn) -> pa.Table:
    kinds = {
        "int": (st.integers(-(2**63), 2**63 - 1), pa.int64()),
        "float": (
            st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not math.isinf(f)),
            pa.float64(),
        ),
        "text": (TEXT, pa.string()),
        "bool": (st.booleans(), pa.bool_()),
        "list": (st.lists(st.integers(-1000, 1000), max_size=3), pa.list_(pa.int64())),
        "struct": (
            st.fixed_dictionaries({"x": st.integers(0, 9), "y": TEXT}),
            pa.struct([("x", pa.int64()), ("y", pa.string())]),
        ),
    }
    names = draw(st.lists(st.sampled_from(sorted(kinds)), min_size=1, max_size=6, unique=True))
    rows = draw(st.integers(1, 10))
    columns = {}
    for name in names:
        strategy, kind = kinds[name]
        values = draw(st.lists(st.one_of(st.none(), strategy), min_size=rows, max_size=rows))
        if all(v is None for v in values):
            values[0] = draw(strategy)
        columns[name] = pa.array(values, kind)
    return pa.table(columns)


@SETTINGS
@given(table=json_tables(), block_size=st.integers(1, 300))
def test_jsonl_sink_then_source_is_lossless(table: pa.Table, block_size: int) -> None:
    ctx, _ = context()
    asyncio.run(write(build(JsonlSink, {"path": "out.jsonl.gz"}), table, ctx))
    source = build(JsonlSource, {"path": "out.jsonl.gz", "block_size": block_size})
    back = asyncio.run(read_all(source, ctx))
    assert source.take_errors() == []
    got = without_line(back)
    assert got.column_names == table.column_names
    for name in table.column_names:
        assert got.column(name).to_pylist() == table.column(name).to_pylist(), name
    assert back.column(LINE_COLUMN).to_pylist() == list(range(1, table.num_rows + 1))


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs"])))))
def test_jsonl_sink_escapes_any_text_as_valid_json(values: list[str | None]) -> None:
    texts = json_texts(pa.array(values, pa.string())).to_pylist()
    assert [json.loads(t) for t in texts] == values


@SETTINGS
@given(values=st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))))
def test_jsonl_sink_writes_floats_exactly(values: list[float | None]) -> None:
    texts = json_texts(pa.array(values, pa.float64())).to_pylist()
    parsed = [json.loads(t) for t in texts]
    assert parsed == values
    assert all(isinstance(p, float) for p in parsed if p is not None)


@SETTINGS
@given(
    data=st.lists(st.sampled_from(["a", "b", ",", '"', "\n", "\r", "\r\n", "é", "\\"]), max_size=60)
    .map("".join)
    .map(str.encode),
    block_size=st.integers(1, 16),
    escape=st.sampled_from([None, "\\"]),
)
# a misquoted record after a ragged one: the block's rejections in line order
@example(data=b'a\n""a\n', block_size=1, escape=None)
def test_any_input_is_read_or_rejected_never_crashing(
    data: bytes, block_size: int, escape: str | None
) -> None:
    ctx, directory = context()
    (directory / "in.csv").write_bytes(b"h1,h2\n" + data)
    options = {"path": "in.csv", "block_size": block_size, "escape": escape}
    source = build(CsvSource, options)
    back = asyncio.run(read_all(source, ctx))
    errors = source.take_errors()
    lines = back.column(LINE_COLUMN).to_pylist() if back.num_rows else []
    assert lines == sorted(lines) and len(set(lines)) == len(lines)
    assert all(e.line is not None and e.line >= 2 for e in errors)
    assert not set(lines) & {e.line for e in errors}
    # the same input read in one block gives the same rows and rejections
    whole = build(CsvSource, {**options, "block_size": 1 << 20})
    again = asyncio.run(read_all(whole, ctx))
    assert again.to_pylist() == back.to_pylist()
    assert [(e.line, e.reason) for e in whole.take_errors()] == [(e.line, e.reason) for e in errors]


TYPED = pa.table(
    {
        "i": pa.array([1, None, -(2**63)], pa.int64()),
        "f": [1.5, 1e300, -0.0],
        "b": [True, False, None],
        "d": [dt.date(2024, 1, 2), None, dt.date(1, 1, 1)],
        "ts": [dt.datetime(2024, 1, 2, 3, 4, 5, 6), None, dt.datetime(1999, 12, 31)],
        "dec": pa.array([Decimal("1.23"), None, Decimal("-0.01")], pa.decimal128(10, 2)),
        "tm": [dt.time(1, 2, 3, 4), None, dt.time(0, 0)],
        "tz": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)] * 3, pa.timestamp("us", "UTC")),
    }
)
TYPE_NAMES = {
    "i": "int",
    "f": "float",
    "b": "bool",
    "d": "date",
    "ts": "datetime",
    "dec": "decimal(10,2)",
    "tm": "time",
    "tz": "datetimetz",
}


def test_typed_columns_round_trip_through_csv_with_declared_types() -> None:
    ctx, _ = context()
    asyncio.run(write(build(CsvSink, {"path": "typed.csv"}), TYPED, ctx))
    source = build(CsvSource, {"path": "typed.csv", "types": TYPE_NAMES})
    back = asyncio.run(read_all(source, ctx))
    assert source.take_errors() == []
    assert without_line(back).equals(TYPED)


def test_typed_columns_round_trip_through_jsonl_with_declared_types() -> None:
    ctx, _ = context()
    asyncio.run(write(build(JsonlSink, {"path": "typed.jsonl"}), TYPED, ctx))
    source = build(JsonlSource, {"path": "typed.jsonl", "types": TYPE_NAMES})
    back = asyncio.run(read_all(source, ctx))
    assert source.take_errors() == []
    assert without_line(back).equals(TYPED)
