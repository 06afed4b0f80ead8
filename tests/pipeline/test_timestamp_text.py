"""Every text sink writes a timestamp the same RFC 3339 way: ``T``, every digit of the unit,
a zoned column's offset as ``+01:00`` and ``Z`` for a column in UTC, at top level and nested."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from quiver.pipeline.component import RowError, RunContext
from quiver.pipeline.json_text import json_rows, text_columns
from quiver.pipeline.rejects import reject_fields
from quiver.pipeline.sinks.csv import CsvSink
from quiver.pipeline.sinks.jsonl import JsonlSink
from quiver.pipeline.value_text import timestamp_texts

from .conftest import build, write_all

INSTANT = dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)


def _utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC)


#: zone of the column -> how every text sink writes INSTANT in it (microseconds)
WRITTEN = {
    "UTC": "2024-01-01T12:00:00.000000Z",
    "Europe/Paris": "2024-01-01T13:00:00.000000+01:00",
    "-05:30": "2024-01-01T06:30:00.000000-05:30",
    None: "2024-01-01T12:00:00.000000",
}


def _batch(zone: str | None) -> pa.RecordBatch:
    kind = pa.timestamp("us", tz=zone)
    return pa.RecordBatch.from_pydict(
        {
            "at": pa.array([INSTANT], kind),
            "many": pa.array([[INSTANT]], pa.list_(kind)),
            "inside": pa.array([{"at": INSTANT}], pa.struct([("at", kind)])),
            "gap": pa.array([None], pa.int64()),
        }
    )


def _expected(zone: str | None) -> dict[str, Any]:
    text = WRITTEN[zone]
    return {"at": text, "many": [text], "inside": {"at": text}}


@pytest.mark.parametrize("zone", list(WRITTEN))
@pytest.mark.parametrize("options", [{}, {"drop_nulls": True}, {"sort_keys": True}])
async def test_the_jsonl_sink_writes_rfc_3339_timestamps(
    zone: str | None, options: dict[str, Any], run_ctx: RunContext, tmp_path: Path
) -> None:
    await write_all(build(JsonlSink, {"path": "out.jsonl", **options}), [_batch(zone)], run_ctx)
    [row] = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    row.pop("gap", None)
    assert row == _expected(zone)


@pytest.mark.parametrize("zone", list(WRITTEN))
@pytest.mark.parametrize("delimiter", [",", "\t", "|"])
async def test_the_csv_sinks_write_rfc_3339_timestamps(
    zone: str | None, delimiter: str, run_ctx: RunContext, tmp_path: Path
) -> None:
    sink = build(CsvSink, {"path": "out.csv", "delimiter": delimiter})
    await write_all(sink, [_batch(zone)], run_ctx)
    with (tmp_path / "out.csv").open(newline="") as f:
        [row] = list(csv.DictReader(f, delimiter=delimiter))
    got = {"at": row["at"], "many": json.loads(row["many"]), "inside": json.loads(row["inside"])}
    assert got == _expected(zone)


@pytest.mark.parametrize("zone", list(WRITTEN))
def test_the_message_sinks_write_rfc_3339_timestamps(zone: str | None) -> None:
    """What the rabbitmq and rest sinks publish: JSON rows, and every column as text."""
    [row] = json_rows(_batch(zone))
    row.pop("gap")
    assert row == _expected(zone)
    [texts] = text_columns(_batch(zone)).to_pylist()
    got = {"at": texts["at"], "many": json.loads(texts["many"])}
    got["inside"] = json.loads(texts["inside"])
    assert got == _expected(zone)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", None])
def test_the_rejects_file_writes_rfc_3339_timestamps(zone: str | None) -> None:
    """A rejected row holds Python values, whose unit is gone: the same offset, six digits
    of fraction or none."""
    [value] = pa.array([INSTANT], pa.timestamp("us", tz=zone)).to_pylist()
    text = WRITTEN[zone].replace(".000000", "")
    fields = reject_fields(RowError(3, "refused", "at", value, {"at": value, "many": [value]}))
    assert fields[3] == text
    assert json.loads(fields[5]) == {"at": text, "many": [text]}


@pytest.mark.parametrize("zone", list(WRITTEN))
async def test_a_js_step_sees_nested_timestamps_as_the_text_sinks_write_them(
    zone: str | None, tmp_path: Path
) -> None:
    """A top-level timestamp is a Date; inside a list or struct it is text, in the same RFC
    3339 form, and goes back into the column unchanged."""
    from .processors.test_js import Run

    js = Run(
        tmp_path,
        script="function transform(row) {"
        " return {many: row.many, text: row.many[0], inner: row.inside.at}; }",
    )
    try:
        out = await js(_batch(zone).select(["many", "inside"]))
    finally:
        await js.close()
    assert out.batch is not None
    [row] = out.batch.to_pylist()
    assert (row["text"], row["inner"]) == (WRITTEN[zone], WRITTEN[zone])
    assert row["many"] == _batch(zone).column("many").to_pylist()[0]


#: (zone, unit, seconds or count since 1970) -> the text: a local time the offset form cannot
#: hold is written as the same instant in UTC
UNHELD = [
    # local mean time: Paris was 9 min 21 s ahead of UTC before 1911, Monrovia 44 min 30 s
    # behind until 1972 (Arrow writes the offsets as +0009 and -0044, losing the seconds)
    ("Europe/Paris", "s", _utc(1900, 1, 1), "1900-01-01T00:00:00Z"),
    ("Africa/Monrovia", "us", _utc(1960, 1, 1), "1960-01-01T00:00:00.000000Z"),
    # whole minutes again: the offset form
    ("Africa/Monrovia", "s", _utc(1973, 1, 1), "1973-01-01T00:00:00+00:00"),
    ("Asia/Kolkata", "s", _utc(1960, 1, 1), "1960-01-01T05:30:00+05:30"),
    # the local date would be 10000-01-01
    ("Europe/Paris", "ms", _utc(9999, 12, 31, 23, 30), "9999-12-31T23:30:00.000Z"),
    # the local time of the last nanosecond is past the range (Arrow wraps it to 1677)
    ("Pacific/Kiritimati", "ns", 2**63 - 1, "2262-04-11T23:47:16.854775807Z"),
    ("America/New_York", "ns", -(2**63) + 1, "1677-09-21T00:12:43.145224193Z"),
    ("America/New_York", "ns", 0, "1969-12-31T19:00:00.000000000-05:00"),
]


@pytest.mark.parametrize(("zone", "unit", "value", "text"), UNHELD)
def test_a_local_time_the_offset_form_cannot_hold_is_written_in_utc(
    zone: str, unit: str, value: Any, text: str
) -> None:
    column = pa.array([value, None], pa.timestamp(unit, tz=zone))
    assert timestamp_texts(column).to_pylist() == [text, None]
    # the text is the same instant
    if unit != "ns":
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert parsed == column.cast(pa.timestamp(unit, tz="UTC"))[0].as_py()
