"""Every Arrow type a user can meet, through every file format, the RabbitMQ and NATS
connectors and the script steps. For each (type, format) the values come back equal, or are
written in a documented text form that reads back equal with the declared type, or are
refused before anything is published, with the column, its type and the fix: never a
traceback, never a changed value, never a half-written file."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.json_text import json_strings
from quiver.pipeline.processors.js import JsProcessor
from quiver.pipeline.processors.python import PythonProcessor
from quiver.pipeline.processors.sql import SqlProcessor
from quiver.pipeline.sinks.arrow_ipc import ArrowIpcSink
from quiver.pipeline.sinks.csv import CsvSink
from quiver.pipeline.sinks.jsonl import JsonlSink
from quiver.pipeline.sinks.parquet import ParquetSink
from quiver.pipeline.sinks.rabbitmq import RabbitMqSink
from quiver.pipeline.sources.arrow_ipc import ArrowIpcSource
from quiver.pipeline.sources.csv import CsvSource
from quiver.pipeline.sources.jsonl import JsonlSource
from quiver.pipeline.sources.parquet import ParquetSource
from quiver.pipeline.sources.rabbitmq import RabbitMqSource
from quiver.pipeline.type_names import parse_type
from quiver.runtime.errors import PermanentError

from .conftest import ScratchQueue, build, read_all, write_all
from .processors.contract import process

D = decimal.Decimal
PARIS = "Europe/Paris"
TEXT = ["plain", "é 😀\nline,two|three\t\"q\" 'x' \x00nul", "", None]
BYTES = [b"\x00\xff", b"", None, b"abc"]
NS_MIN, NS_MAX = -(2**63) + 1, 2**63 - 1
#: the first and last second of years 1 and 9999, in each unit
FIRST = {"s": -62_135_596_800, "ms": -62_135_596_800_000, "us": -62_135_596_800_000_000}
LAST = {"s": 253_402_300_799, "ms": 253_402_300_799_999, "us": 253_402_300_799_999_999}


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """Microseconds since 1970 of a UTC time."""
    moment = dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _columns() -> dict[str, tuple[pa.Array, str | None]]:
    """Each column with four values (the extremes of its type, a null) and the type name a
    source declares to read it back (None: nothing to declare)."""
    c: dict[str, tuple[pa.Array, str | None]] = {
        "i8": (pa.array([-128, 127, 0, None], pa.int8()), "int8"),
        "i16": (pa.array([-(2**15), 2**15 - 1, 0, None], pa.int16()), "int16"),
        "i32": (pa.array([-(2**31), 2**31 - 1, 0, None], pa.int32()), "int32"),
        "i64": (pa.array([-(2**63), 2**63 - 1, 0, None], pa.int64()), "int"),
        "u8": (pa.array([0, 255, 1, None], pa.uint8()), "uint8"),
        "u16": (pa.array([0, 2**16 - 1, 1, None], pa.uint16()), "uint16"),
        "u32": (pa.array([0, 2**32 - 1, 1, None], pa.uint32()), "uint32"),
        "u64": (pa.array([0, 2**64 - 1, 1, None], pa.uint64()), "uint64"),
        "f16": (pa.array(np.array([0.1, 65504, np.inf, np.nan], np.float16)), "float"),
        "f32": (pa.array([-0.0, float("inf"), float("nan"), None], pa.float32()), "float32"),
        "f64": (pa.array([-0.0, float("-inf"), float("nan"), 0.1], pa.float64()), "float"),
        "f64x": (pa.array([1.7976931348623157e308, 5e-324, None, -1.5]), "float"),
        "d128": (
            pa.array(
                [D("9" * 29 + "." + "9" * 9), D("-0.000000001"), None, D(0)], pa.decimal128(38, 9)
            ),
            "decimal(38,9)",
        ),
        "d256": (
            pa.array([D("9" * 76), D("-" + "9" * 76), None, D(1)], pa.decimal256(76, 0)),
            "decimal(76,0)",
        ),
        "dneg": (
            pa.array([D("1.2E+3"), D("-5E+2"), None, D(0)], pa.decimal128(5, -2)),
            "decimal(7,0)",
        ),
        "flag": (pa.array([True, False, None, True]), "bool"),
        "s": (pa.array(TEXT, pa.string()), "str"),
        "ls": (pa.array(TEXT, pa.large_string()), "large_string"),
        "utf8bin": (pa.array([b"text", b"", None, "é".encode()], pa.binary()), "binary"),
        "bin": (pa.array(BYTES, pa.binary()), "binary"),
        "lbin": (pa.array(BYTES, pa.large_binary()), "large_binary"),
        "fbin": (pa.array([b"\x00\xff\x01", b"abc", None, b'\n,"'], pa.binary(3)), "binary"),
        "d32": (
            pa.array([dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1969, 12, 31), None]),
            "date",
        ),
        "d64": (
            pa.array(
                [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(1969, 12, 31), None], pa.date64()
            ),
            "date64",
        ),
        "t32s": (pa.array([0, 86_399, 3_600, None], pa.time32("s")), "time(s)"),
        "t32ms": (pa.array([0, 86_399_999, 1, None], pa.time32("ms")), "time(ms)"),
        "t64us": (pa.array([0, 86_399_999_999, 1, None], pa.time64("us")), "time"),
        "t64ns": (pa.array([0, 86_399_999_999_999, 1, None], pa.time64("ns")), "time(ns)"),
        "ts_ns": (
            pa.array([NS_MIN, NS_MAX, -1, None], pa.timestamp("ns")),
            "timestamp(ns)",
        ),
        "tsz_ns": (
            pa.array([NS_MIN, NS_MAX, -1, None], pa.timestamp("ns", "UTC")),
            "timestamp(ns, UTC)",
        ),
        # a zone's ordinary times, before 1970 and far ahead (its offsets are whole minutes)
        "tsp": (
            pa.array(
                [_utc(1950, 6, 15, 12), _utc(2200, 1, 1), -1, None], pa.timestamp("us", PARIS)
            ),
            f"timestamp(us, {PARIS})",
        ),
        # before 1911 Paris kept its local mean time, 9 minutes 21 seconds ahead of UTC
        "tsp_lmt": (
            pa.array([_utc(1900, 1, 1), None, None, None], pa.timestamp("us", PARIS)),
            f"timestamp(us, {PARIS})",
        ),
        # the last second of year 9999 in UTC is in year 10000 in Paris
        "tsp_y10k": (
            pa.array([LAST["us"], None, None, None], pa.timestamp("us", PARIS)),
            f"timestamp(us, {PARIS})",
        ),
        "tsp_ns": (
            pa.array([NS_MIN, NS_MAX, -1, None], pa.timestamp("ns", PARIS)),
            f"timestamp(ns, {PARIS})",
        ),
        "dur": (pa.array([90_000_500_000, -1_000_000, 0, None], pa.duration("us")), "duration"),
        "mdn": (
            pa.array(
                [
                    pa.MonthDayNano([1, 2, 3]),
                    pa.MonthDayNano([-1, -2, -500_000_000]),
                    None,
                    pa.MonthDayNano([0, 0, 0]),
                ],
                pa.month_day_nano_interval(),
            ),
            "interval",
        ),
        "lst": (pa.array([[1, None, 3], [], None, [2**62]], pa.list_(pa.int64())), None),
        "llst": (pa.array([["a", None], [], None, ["x,y\n"]], pa.large_list(pa.string())), None),
        "flst": (
            pa.array(
                [[1.5, 2.0], [None, -0.0], None, [float("inf"), 0.0]], pa.list_(pa.float64(), 2)
            ),
            None,
        ),
        "st": (
            pa.array(
                [{"a": 1, "b": "x"}, {"a": None, "b": None}, None, {"a": -1, "b": "é,\n"}],
                pa.struct([("a", pa.int32()), ("b", pa.string())]),
            ),
            None,
        ),
        "mp": (
            pa.array(
                [[("k", 1), ("z", None)], [], None, [("é", 3)]], pa.map_(pa.string(), pa.int64())
            ),
            None,
        ),
        "dict": (pa.array(["a", "b", None, "a"]).dictionary_encode(), "str"),
        "nul": (pa.nulls(4), "str"),
    }
    for unit in ("s", "ms", "us"):
        extremes = [FIRST[unit], LAST[unit], -1, None]
        c[f"ts_{unit}"] = (pa.array(extremes, pa.timestamp(unit)), f"timestamp({unit})")
        c[f"tsz_{unit}"] = (
            pa.array(extremes, pa.timestamp(unit, "UTC")),
            f"timestamp({unit}, UTC)",
        )
    for unit in ("s", "ms", "us", "ns"):
        c[f"dur_{unit}"] = (
            pa.array([NS_MIN, NS_MAX, 1, None], pa.duration(unit)),
            f"duration({unit})",
        )
    return c


COLUMNS = _columns()
NESTED = ["lst", "llst", "flst", "st", "mp"]
BINARY = ["bin", "lbin", "fbin"]

#: what a format reads back where it cannot hold the written type itself (the values equal)
TEXT_READS = {
    "f16": pa.float64(),  # written exactly; Arrow reads no text into half floats
    "dneg": pa.decimal128(7, 0),
    "fbin": pa.binary(),
    "dict": pa.string(),
    "nul": pa.string(),
}
JSONL_READS = {
    **TEXT_READS,
    "llst": pa.list_(pa.string()),
    "flst": pa.list_(pa.float64()),
    "st": pa.struct([("a", pa.int64()), ("b", pa.string())]),
}
#: types only the JSON Lines source reads
JSONL_TYPES = {"mp": {"mp": "map<str, int>"}}
PARQUET_READS: dict[str, pa.DataType] = {}
#: the Arrow file format keeps one dictionary per column, so writes the values (documented)
ARROW_READS = {"dict": pa.string()}

XFAIL: dict[tuple[str, str], str] = {}


def values(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """Comparable values: times as their counts of the unit (Python's datetime and timedelta
    cannot hold them all), floats with NaN and -0.0 told apart."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_timestamp(kind) or pa.types.is_duration(kind) or pa.types.is_date64(kind):
        column = column.cast(pa.int64())
    elif pa.types.is_dictionary(kind):
        column = column.dictionary_decode()
    out = []
    for v in column.to_pylist():
        if isinstance(v, float):
            v = "NaN" if math.isnan(v) else (v, math.copysign(1, v))
        out.append(v)
    return out


def assert_same(got: pa.Array | pa.ChunkedArray, want: pa.Array, name: str) -> None:
    assert got.type == want.type, (name, got.type, want.type)
    assert values(got) == values(want), name


def one_column(name: str) -> pa.RecordBatch:
    column = COLUMNS[name][0]
    return pa.record_batch({name: column, LINE_COLUMN: pa.array(range(1, len(column) + 1))})


def context(tmp_path: Path) -> RunContext:
    return RunContext(run_id=uuid.uuid4().hex, base_dir=str(tmp_path))


# -- files ----------------------------------------------------------------------------------

FILE_SINKS = {
    "csv": (CsvSink, {}),
    "tsv": (CsvSink, {"delimiter": "\t"}),
    "psv": (CsvSink, {"delimiter": "|"}),
    "jsonl": (JsonlSink, {}),
    "parquet": (ParquetSink, {}),
    "arrow": (ArrowIpcSink, {}),
}


def file_cases() -> list[Any]:
    cases = []
    for fmt in FILE_SINKS:
        for name in COLUMNS:
            reason = XFAIL.get((fmt, name))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            cases.append(pytest.param(fmt, name, id=f"{fmt}-{name}", marks=marks))
    return cases


async def write_file(fmt: str, name: str, tmp_path: Path) -> Path:
    cls, options = FILE_SINKS[fmt]
    path = tmp_path / f"out.{fmt}"
    await write_all(
        build(cls, {"path": str(path), **options}), [one_column(name)], context(tmp_path)
    )
    return path


async def read_file(fmt: str, name: str, path: Path, tmp_path: Path) -> pa.ChunkedArray:
    declared = COLUMNS[name][1]
    types = {name: declared} if declared is not None else {}
    if fmt in ("csv", "tsv", "psv"):
        delimiter = FILE_SINKS[fmt][1].get("delimiter", ",")
        source = build(
            CsvSource,
            {"path": str(path), "delimiter": delimiter, "types": types, "on_malformed": "fail"},
        )
    elif fmt == "jsonl":
        types = {**types, **JSONL_TYPES.get(name, {})}
        source = build(JsonlSource, {"path": str(path), "types": types, "on_malformed": "fail"})
    elif fmt == "parquet":
        source = build(ParquetSource, {"path": str(path)})
    else:
        source = build(ArrowIpcSource, {"path": str(path)})
    table = await read_all(source, context(tmp_path))
    assert source.take_errors() == []
    return table.column(name)


def refusal(fmt: str, name: str) -> str | None:
    """What the refusal of a column by a sink says, or None when the column is written."""
    if fmt in ("csv", "tsv", "psv") and name in BINARY:
        return "holds bytes that are not UTF-8 text"
    if fmt == "parquet" and name in ("dneg", "mdn"):
        return "which Parquet cannot hold"
    return None


@pytest.mark.parametrize(("fmt", "name"), file_cases())
async def test_each_type_comes_back_from_each_file_format(
    fmt: str, name: str, tmp_path: Path
) -> None:
    want = COLUMNS[name][0]
    refused = refusal(fmt, name)
    if refused is not None:
        with pytest.raises(PermanentError) as caught:
            await write_file(fmt, name, tmp_path)
        message = str(caught.value)
        assert refused in message and repr(name) in message, message
        assert list(tmp_path.iterdir()) == [], "nothing is left behind"
        return
    path = await write_file(fmt, name, tmp_path)
    got = await read_file(fmt, name, path, tmp_path)
    if fmt in ("csv", "tsv", "psv") and name in NESTED:
        # lists, structs and maps are written as their JSON text, read back as that text
        assert got.type == pa.string()
        assert got.to_pylist() == json_strings(want).to_pylist()
        return
    reads = {"jsonl": JSONL_READS, "parquet": PARQUET_READS, "arrow": ARROW_READS}.get(
        fmt, TEXT_READS
    )
    assert_same(got, want.cast(reads[name]) if name in reads else want, name)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
async def test_durations_and_intervals_read_back_from_their_iso_text(
    fmt: str, tmp_path: Path
) -> None:
    """The documented text of a duration (``PT90000.5S``) and an interval (``P1M2DT0.5S``)
    reads back into the declared type; text that is no such duration is a malformed row."""
    lines = {
        "csv": "d,i\nPT90000.5S,P1M2DT0.5S\n,\nPT1S,nope\n",
        "jsonl": '{"d":"PT90000.5S","i":"P1M2DT0.5S"}\n{"d":null,"i":null}\n'
        '{"d":"PT1S","i":"nope"}\n',
    }[fmt]
    path = tmp_path / f"in.{fmt}"
    path.write_text(lines)
    cls = CsvSource if fmt == "csv" else JsonlSource
    source = build(cls, {"path": str(path), "types": {"d": "duration(ms)", "i": "interval"}})
    table = await read_all(source, context(tmp_path))
    assert table.schema.field("d").type == pa.duration("ms")
    assert table.schema.field("i").type == pa.month_day_nano_interval()
    assert values(table.column("d")) == [90_000_500, None]
    assert table.column("i").to_pylist() == [pa.MonthDayNano([1, 2, 500_000_000]), None]
    (error,) = source.take_errors()
    assert (
        error.line == (4 if fmt == "csv" else 3)
        and "'nope' is not an ISO 8601 duration" in error.reason
    )


def test_the_new_type_names_name_their_arrow_types() -> None:
    assert parse_type("uint8", "t") == pa.uint8()
    assert parse_type("time(s)", "t") == pa.time32("s")
    assert parse_type("time(ns)", "t") == pa.time64("ns")
    assert parse_type("duration", "t") == pa.duration("us")
    assert parse_type("duration(ns)", "t") == pa.duration("ns")
    assert parse_type("interval", "t") == pa.month_day_nano_interval()
    assert parse_type("date64", "t") == pa.date64()
    assert parse_type("large_binary", "t") == pa.large_binary()


async def test_a_parquet_sink_names_every_column_it_cannot_hold(tmp_path: Path) -> None:
    batch = pa.record_batch(
        {
            "ok": pa.array([1]),
            "gap": COLUMNS["mdn"][0][:1],
            "deep": pa.array(
                [{"when": pa.MonthDayNano([1, 0, 0])}],
                pa.struct([("when", pa.month_day_nano_interval())]),
            ),
            "hundreds": COLUMNS["dneg"][0][:1],
        }
    )
    with pytest.raises(PermanentError) as caught:
        await write_all(
            build(ParquetSink, {"path": str(tmp_path / "x.parquet")}), [batch], context(tmp_path)
        )
    message = str(caught.value)
    assert "column 'gap' is month_day_nano_interval" in message
    assert "column 'deep.when' is month_day_nano_interval" in message
    assert "column 'hundreds' is decimal128(5, -2)" in message and "decimal(7,0)" in message
    assert list(tmp_path.iterdir()) == []


# -- RabbitMQ ---------------------------------------------------------------------------------


def message_cases() -> list[Any]:
    cases = []
    for fmt in ("json", "csv"):
        for name in COLUMNS:
            reason = XFAIL.get((f"message-{fmt}", name))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            cases.append(pytest.param(fmt, name, id=f"{fmt}-{name}", marks=marks))
    return cases


@pytest.mark.parametrize(("fmt", "name"), message_cases())
async def test_each_type_comes_back_through_rabbitmq(
    rabbit_queue: ScratchQueue, tmp_path: Path, fmt: str, name: str
) -> None:
    """One column through the broker: the values back, nested values as their JSON text
    (declared `json`), binary as base64 in JSON and CSV bodies alike."""
    want, declared = COLUMNS[name]
    sink = build(
        RabbitMqSink, {"routing_key": rabbit_queue.name, "format": fmt, "rows_per_message": 4}
    )
    await write_all(sink, [one_column(name)], context(tmp_path))
    source = build(
        RabbitMqSource,
        {
            "queue": rabbit_queue.name,
            "format": fmt,
            "schema": {name: declared or "json"},
            "idle_timeout": 0.3,
            "batch_seconds": 0.1,
        },
    )
    table = await read_all(source, context(tmp_path))
    await source.commit()
    assert source.take_errors() == []
    got = table.column(name)
    assert got.length() == 4
    if name in NESTED:
        assert [None if v is None else json.loads(v) for v in got.to_pylist()] == [
            None if v is None else json.loads(v) for v in json_strings(want).to_pylist()
        ]
        return
    kind = parse_type(declared, name) if declared is not None else want.type
    assert_same(got, want.cast(kind) if kind != want.type else want, name)


# -- script steps -----------------------------------------------------------------------------

STEPS = ["python_row", "python_batch", "js", "sql"]

#: what the sql step refuses: the types DuckDB cannot read, and the durations and intervals
#: it cannot hold exactly (nanoseconds, more than 292 years)
SQL_REFUSES = {
    "f16": "cannot read",
    "d256": "cannot read",
    "dneg": "cannot read",
    "mdn": "cannot hold exactly",
    "dur_s": "beyond the 292 years",
    "dur_ms": "beyond the 292 years",
    "dur_us": "cannot hold exactly",
    "dur_ns": "cannot hold exactly",
}
#: what a python step in row mode refuses: values a Python object cannot hold
PYTHON_REFUSES = {
    "dur_s": "holds a value Python cannot hold, at line 1",
    "dur_ms": "holds a value Python cannot hold, at line 1",
    "tsp_y10k": "holds a value Python cannot hold, at line 1",
    "tsp_ns": "holds a value Python cannot hold, at line 2",
}
STEP_XFAIL: dict[tuple[str, str], str] = {}


def step_cases() -> list[Any]:
    cases = []
    for kind in STEPS:
        for name in COLUMNS:
            reason = STEP_XFAIL.get((kind, name))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            cases.append(pytest.param(kind, name, id=f"{kind}-{name}", marks=marks))
    return cases


@pytest.mark.parametrize(("kind", "name"), step_cases())
def test_a_step_returning_a_column_unchanged_keeps_its_type_and_values(
    kind: str, name: str, tmp_path: Path
) -> None:
    processor = step(kind, tmp_path)
    refuses = {"sql": SQL_REFUSES, "python_row": PYTHON_REFUSES}.get(kind, {})
    try:
        if name in refuses:
            with pytest.raises(PermanentError) as caught:
                process(processor, one_column(name), context(tmp_path))
            message = str(caught.value)
            assert refuses[name] in message and repr(name) in message, message
            return
        out = process(processor, one_column(name), context(tmp_path))
    finally:
        if isinstance(processor, JsProcessor):
            asyncio.run(processor.close())
        elif isinstance(processor, SqlProcessor):
            processor.close()
    assert out.errors == []
    assert out.batch is not None
    want = COLUMNS[name][0]
    if kind == "js" and name == "nul":
        # a js step fixes its columns from the first batch, and an all-null one as text so
        # that later batches can hold values in it
        want = want.cast(pa.string())
    assert_same(out.batch.column(name), want, name)


def test_a_sql_step_gives_back_ordinary_durations_as_durations(tmp_path: Path) -> None:
    durations = COLUMNS["dur"][0]
    intervals = pa.array(
        [pa.MonthDayNano([1, 2, 3000]), None, None, None], pa.month_day_nano_interval()
    )
    processor = step("sql", tmp_path)
    out = process(processor, pa.record_batch({"d": durations, "i": intervals}), context(tmp_path))
    processor.close()
    assert out.batch is not None
    assert_same(out.batch.column("d"), durations, "d")
    assert_same(out.batch.column("i"), intervals, "i")


def step(kind: str, tmp_path: Path) -> Any:
    (tmp_path / "t.py").write_text(
        "def transform(row, ctx):\n    return row\n\ndef whole(batch, ctx):\n    return batch\n"
    )
    (tmp_path / "t.js").write_text("function transform(row) { return row; }\n")
    options = {
        "python_row": (PythonProcessor, {"file": "t.py"}),
        "python_batch": (PythonProcessor, {"file": "t.py", "function": "whole", "mode": "batch"}),
        "js": (JsProcessor, {"file": "t.js"}),
        "sql": (SqlProcessor, {"query": "SELECT * FROM input"}),
    }[kind]
    return build(*options)
