"""Durations and intervals in the text formats: every writer gives the ISO 8601 duration the
rejects file gives (a duration in seconds alone, an interval's months, days and nanoseconds),
never a bare count of an unnamed unit nor a failure."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.json_text import dump_json, json_rows, text_columns
from quiver.pipeline.processors.js import JsProcessor, JsProcessorConfig
from quiver.pipeline.rejects import iso_duration
from quiver.pipeline.sinks.csv import CsvSinkConfig, serialize_csv
from quiver.pipeline.sinks.jsonl import json_texts
from quiver.pipeline.value_text import duration_texts, durations_from_texts

from .conftest import MYSQL_HOST, unique

QUIVER = str(Path(sys.executable).with_name("quiver"))

DURATIONS = pa.array([90_000_000_000, -3_723_500_000, 0, None, 3], pa.duration("us"))
DURATION_TEXT = ["PT90000S", "PT-3723.5S", "PT0S", None, "PT0.000003S"]
INTERVALS = pa.array(
    [pa.MonthDayNano([1, 2, 3]), pa.MonthDayNano([0, -1, -500_000_000]), None],
    pa.month_day_nano_interval(),
)
INTERVAL_TEXT = ["P1M2DT0.000000003S", "P-1DT-0.5S", None]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_each_unit_is_written_as_exact_seconds(unit: str) -> None:
    column = pa.array([1, -1, None], pa.duration(unit))
    per = {"s": "1", "ms": "0.001", "us": "0.000001", "ns": "0.000000001"}[unit]
    assert duration_texts(column).to_pylist() == [f"PT{per}S", f"PT-{per}S", None]


def test_the_columnwise_texts_agree_with_the_rejects_file() -> None:
    assert duration_texts(DURATIONS).to_pylist() == DURATION_TEXT
    assert duration_texts(INTERVALS).to_pylist() == INTERVAL_TEXT
    assert [None if v is None else iso_duration(v) for v in DURATIONS.to_pylist()] == (
        DURATION_TEXT
    )


def test_the_csv_sink_writes_iso_durations() -> None:
    batch = pa.RecordBatch.from_pydict({"d": DURATIONS[:3], "i": INTERVALS.take([0, 1, 1])})
    text = serialize_csv(batch, CsvSinkConfig(path="x.csv"), header=True)
    assert text.splitlines() == [
        "d,i",
        "PT90000S,P1M2DT0.000000003S",
        "PT-3723.5S,P-1DT-0.5S",
        "PT0S,P-1DT-0.5S",
    ]


def test_the_jsonl_sink_writes_iso_duration_strings() -> None:
    assert [json.loads(t) for t in json_texts(DURATIONS).to_pylist()] == DURATION_TEXT
    assert [json.loads(t) for t in json_texts(INTERVALS).to_pylist()] == INTERVAL_TEXT


def test_durations_inside_lists_and_structs_are_written_too() -> None:
    nested = pa.array([[90_000_000_000, None]], pa.list_(pa.duration("us")))
    assert json.loads(json_texts(nested)[0].as_py()) == [["PT90000S", None]][0]
    assert json.loads(dump_json({"t": dt.timedelta(hours=-1)})) == {"t": "PT-3600S"}


def test_the_message_sinks_rows_carry_iso_durations() -> None:
    batch = pa.RecordBatch.from_pydict({"d": DURATIONS, "i": INTERVALS.take([0, 1, 2, 2, 2])})
    rows = json_rows(batch)
    assert [r["d"] for r in rows] == DURATION_TEXT
    assert [r["i"] for r in rows][:2] == INTERVAL_TEXT[:2]
    assert text_columns(batch).column("d").to_pylist() == DURATION_TEXT


def test_a_mariadb_time_column_reaches_csv_and_jsonl_as_iso_durations(tmp_path: Path) -> None:
    import pymysql

    name = unique("q")
    conn = pymysql.connect(**MYSQL_HOST, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}`")
            cur.execute(f"CREATE TABLE `{name}`.t (id int primary key, t TIME, t6 TIME(6))")
            cur.execute(
                f"INSERT INTO `{name}`.t VALUES (1, '25:00:00', '-01:02:03.5'), (2, '10:00', NULL)"
            )
        url = f"mysql://root@127.0.0.1:3306/{name}"
        for fmt in ("csv", "jsonl"):
            (tmp_path / f"{fmt}.yaml").write_text(
                f"source: {{database: {{url: '{url}', table: t}}}}\n"
                f"sink: {{{fmt}: {{path: out.{fmt}}}}}\n"
            )
            done = subprocess.run(
                [QUIVER, "run", f"{fmt}.yaml", "--quiet"],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
        assert (tmp_path / "out.csv").read_text().splitlines() == [
            "id,t,t6",
            "1,PT90000S,PT-3723.5S",
            "2,PT36000S,",
        ]
        rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert rows == [
            {"id": 1, "t": "PT90000S", "t6": "PT-3723.5S"},
            {"id": 2, "t": "PT36000S", "t6": None},
        ]
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("PT90000S", (0, 0, 90_000 * 10**9)),
        ("PT-3723.5S", (0, 0, -3_723_500_000_000)),
        ("P1M2DT0.000000003S", (1, 2, 3)),
        ("P-1DT-0.5S", (0, -1, -500_000_000)),
        ("PT0S", (0, 0, 0)),
    ],
)
def test_iso_durations_read_back_as_written(text: str, parts: tuple[int, int, int]) -> None:
    interval = durations_from_texts([text, None], pa.month_day_nano_interval())
    assert interval.to_pylist() == [pa.MonthDayNano(parts), None]
    assert duration_texts(interval).to_pylist() == [text, None]


@pytest.mark.parametrize("text", ["P", "PT", "90000", "PT1.5", "P1Y", "PT1.0000000001S", "pt1s"])
def test_text_that_is_no_such_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601 duration"):
        durations_from_texts([text], pa.duration("s"))


def test_a_duration_column_refuses_what_its_unit_cannot_hold() -> None:
    assert durations_from_texts(["PT1.5S"], pa.duration("ms")).to_pylist() == [
        dt.timedelta(seconds=1.5)
    ]
    for text in ("PT0.0005S", "P1MT1S", "P1DT1S"):
        with pytest.raises(ValueError, match="whole number of ms"):
            durations_from_texts([text], pa.duration("ms"))


async def test_a_script_sees_iso_durations_and_unchanged_ones_keep_their_type(
    tmp_path: Path,
) -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "d": DURATIONS[:3],
            "i": INTERVALS.take([0, 1, 2]),
            "nested": pa.array([[1], [2], None], pa.list_(pa.duration("s"))),
            "changed": DURATIONS[:3],
            LINE_COLUMN: pa.array([2, 3, 4], pa.int64()),
        }
    )
    script = """
    function transform(row, ctx) {
      row.seen = row.d;
      row.kinds = typeof row.d + "," + typeof row.i;
      row.changed = "x";
      return row;
    }"""
    proc = JsProcessor(JsProcessorConfig(script=script, workers=0))
    try:
        out = await proc.process(batch, RunContext(run_id="t", base_dir=str(tmp_path)))
    finally:
        await proc.close()
    assert out.errors == []
    assert out.batch is not None
    got = out.batch
    assert got.schema.field("d").type == pa.duration("us")
    assert got.column("d").to_pylist() == DURATIONS[:3].to_pylist()
    assert got.schema.field("i").type == pa.month_day_nano_interval()
    assert got.column("i").to_pylist() == INTERVALS.take([0, 1, 2]).to_pylist()
    assert got.column("seen").to_pylist() == DURATION_TEXT[:3]
    assert set(got.column("kinds").to_pylist()) == {"string,string", "string,object"}
    assert got.column("changed").to_pylist() == ["x", "x", "x"]
    assert got.column("nested").to_pylist()[:2] == [
        [dt.timedelta(seconds=1)],
        [dt.timedelta(seconds=2)],
    ]
