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

from quiver.pipeline.json_text import dump_json, json_rows, text_columns
from quiver.pipeline.rejects import iso_duration
from quiver.pipeline.sinks.csv import CsvSinkConfig, serialize_csv
from quiver.pipeline.sinks.jsonl import json_texts
from quiver.pipeline.value_text import duration_texts

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
