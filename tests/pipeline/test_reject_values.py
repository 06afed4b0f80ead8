"""The rejects file takes every rejected row, whatever its values: text holding lone
surrogates, bytes that are not UTF-8, NaN, integers beyond 64 bits, nested and very long
values, each escaped as documented, with the row's line and reason."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from quiver.pipeline.component import RowError
from quiver.pipeline.rejects import RejectsWriter
from tests.pipeline.test_cli import quiver


def rejects(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(sys.maxsize)
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def run(tmp_path: Path, pipeline: str) -> list[dict[str, str]]:
    (tmp_path / "p.yaml").write_text(
        pipeline + "on_error: {policy: reject, rejects: rejects.csv}\n", encoding="utf-8"
    )
    done = quiver("run", "p.yaml", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return rejects(tmp_path / "rejects.csv")


def test_csv_rows_with_bytes_that_are_not_utf8_reach_the_rejects_file(tmp_path: Path) -> None:
    # line 3: a byte that is never UTF-8; line 4: a surrogate encoded in the input itself
    (tmp_path / "in.csv").write_bytes(b"id,name\n1,ok\n2,b\xffd\n3,\xed\xa0\x80x\n4,fine\n")
    rows = run(
        tmp_path,
        "source: {csv: {path: in.csv}}\n"
        "processors:\n  - validate: {schema: {id: {type: int, min: 2}}}\n"
        "sink: {jsonl: {path: out.jsonl}}\n",
    )
    by_line = {r["line"]: r for r in rows}
    assert sorted(by_line) == ["2", "3", "4"]
    assert "invalid utf-8 byte sequence ff" in by_line["3"]["reason"]
    assert json.loads(by_line["3"]["row"])["__raw"] == "2,b\\xffd"
    assert "invalid utf-8 byte sequence ed" in by_line["4"]["reason"]
    assert json.loads(by_line["4"]["row"])["__raw"] == "3,\\xed\\xa0\\x80x"
    assert by_line["2"]["reason"] == "below the minimum 2"


def test_latin1_rows_with_undefined_bytes_reach_the_rejects_file(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_bytes(b"id,name\n1,caf\xe9\n2,x\x81y\n")
    rows = run(
        tmp_path,
        "source: {csv: {path: in.csv, encoding: cp1252}}\nsink: {jsonl: {path: out.jsonl}}\n",
    )
    assert [r["line"] for r in rows] == ["3"]
    assert json.loads(rows[0]["row"])["__raw"] == "2,x\\x81y"
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == '{"id":"1","name":"café"}\n'


def test_sql_values_json_cannot_hold_as_they_are_are_escaped(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    rows = run(
        tmp_path,
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - sql:\n"
        "      query: >\n"
        "        select any_value(id) as id, '\\xFF\\x00ab'::blob as b, [1, 2] as l,\n"
        "        {'a': 1, 'b': [{'c': 'd'}]} as s, map([1, 2], ['x', 'y']) as m,\n"
        "        170141183460469231731687303715884105727::hugeint as h,\n"
        "        'nan'::double as nan, '-inf'::double as ninf, repeat('v', 300000) as long\n"
        "        from input group by id\n"
        "  - validate: {schema: {id: {type: int, min: 100}}}\n"
        "sink: {jsonl: {path: out.jsonl}}\n",
    )
    assert len(rows) == 1
    assert rows[0]["reason"] == "below the minimum 100"
    row = json.loads(rows[0]["row"])
    assert row["b"] == "\\xff\x00ab"  # bytes: UTF-8 as it is, other bytes as \xNN
    assert row["l"] == [1, 2] and row["s"] == {"a": 1, "b": [{"c": "d"}]}
    assert row["m"] == [[1, "x"], [2, "y"]]
    assert row["h"] == "170141183460469231731687303715884105727"
    assert row["nan"] == "NaN" and row["ninf"] == "-Infinity"
    assert row["long"] == "v" * 300000  # written whole


def test_js_rows_with_lone_surrogates_or_nested_values_reach_the_rejects_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "in.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    rows = run(
        tmp_path,
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - js:\n"
        "      workers: 0\n"
        "      script: |\n"
        "        function transform(row, ctx) {\n"
        "          if (row.id == '1') row.name = 'a\\ud800b';\n"
        "          if (row.id == '2') { row.deep = {x: [1, {y: 'z\\udfff'}]}; }\n"
        "          if (row.id == '3') {\n"
        "            ctx.reject('too long: ' + 'w'.repeat(200000));\n"
        "            return null;\n"
        "          }\n"
        "          return row;\n"
        "        }\n"
        "sink: {jsonl: {path: out.jsonl}}\n",
    )
    by_line = {r["line"]: r for r in rows}
    assert sorted(by_line) == ["2", "3", "4"], rows
    assert by_line["3"]["column"] == "deep"
    assert "lone UTF-16 surrogate" in by_line["3"]["reason"]
    assert "lone UTF-16 surrogate" in by_line["2"]["reason"]
    assert json.loads(by_line["2"]["row"]) == {"id": "1", "name": "a"}
    assert by_line["4"]["reason"] == "too long: " + "w" * 200000


def test_the_writer_escapes_what_utf8_and_json_cannot_hold(tmp_path: Path) -> None:
    deep: Any = "bottom"
    for _ in range(300):  # deeper than orjson writes
        deep = [deep]
    writer = RejectsWriter(str(tmp_path / "rejects.csv"), "run1")
    writer.write(
        [
            RowError(
                7,
                "bad \ud800 value",
                column="n\udc80me",
                value="x\udfffy",
                row={"n\udc80me": "x\udfffy", "b": b"\xfe\xff", "k": {1: "one"}, "h": 2**70},
                step="js",
            ),
            RowError(8, "nested", value={2: [b"\x80"]}, row={"deep": deep}, step="sql"),
            RowError(9, "huge", value=b"\xff" * 3, row=None, step="sql"),
        ]
    )
    writer.commit()
    rows = rejects(tmp_path / "rejects.csv")
    assert [r["line"] for r in rows] == ["7", "8", "9"]
    first = rows[0]
    assert first["reason"] == "bad \\ud800 value"
    assert first["column"] == "n\\udc80me" and first["value"] == "x\\udfffy"
    assert json.loads(first["row"]) == {
        "n\udc80me": "x\udfffy",  # JSON escapes: read back as the same text
        "b": "\\xfe\\xff",
        "k": {"1": "one"},
        "h": str(2**70),
    }
    assert json.loads(rows[1]["value"]) == {"2": ["\\x80"]}
    assert json.loads(rows[1]["row"]) == {"deep": deep}
    assert rows[2]["value"] == "\\xff\\xff\\xff" and rows[2]["row"] == ""


def _bad_text_table() -> Any:
    import pyarrow as pa

    offsets = pa.py_buffer(b"\x00\x00\x00\x00\x02\x00\x00\x00\x04\x00\x00\x00")
    names = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"\xff\xfeok")])
    return pa.table({"id": [1, 2], "name": names})


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_text_that_is_not_utf8_in_a_binary_file_is_rejected_with_its_record(
    tmp_path: Path, fmt: str
) -> None:
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    table = _bad_text_table()
    if fmt == "parquet":
        pq.write_table(table, tmp_path / "in.data")
    else:
        with ipc.new_file(tmp_path / "in.data", table.schema) as out:
            out.write_table(table)
    rows = run(
        tmp_path,
        f"source: {{{fmt}: {{path: in.data}}}}\n"
        "processors:\n  - validate: {schema: {id: {type: int, min: 100}}}\n"
        "sink: {jsonl: {path: out.jsonl}}\n",
    )
    assert [(r["step"], r["line"], r["column"]) for r in rows] == [
        ("source", "1", "name"),
        ("validate", "2", "id"),
    ]
    assert "column 'name' holds bytes that are not UTF-8 text: ff fe" in rows[0]["reason"]
    assert rows[0]["value"] == "\\xff\\xfe"
    assert json.loads(rows[0]["row"]) == {"id": 1, "name": "\\xff\\xfe"}


def test_a_dry_run_shows_rejected_values_as_the_rejects_file_writes_them(tmp_path: Path) -> None:
    import pyarrow.ipc as ipc

    table = _bad_text_table()
    with ipc.new_file(tmp_path / "in.arrow", table.schema) as out:
        out.write_table(table)
    (tmp_path / "p.yaml").write_text(
        "source: {arrow: {path: in.arrow}}\n"
        "processors:\n"
        "  - sql: {query: \"select id - 2 as id, '[b]' || name as name from input\"}\n"
        "  - validate: {schema: {id: {type: int, min: 1}}}\n"
        "sink: {jsonl: {path: out.jsonl}}\n"
        "on_error: {policy: reject, rejects: rejects.csv}\n"
    )
    done = quiver("run", "p.yaml", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    assert "\\xff\\xfe" in shown and "b'" not in shown
    assert "│ 0 " in shown  # a value of 0 is shown, not left empty


def test_intervals_and_durations_are_written_as_iso_8601_durations(tmp_path: Path) -> None:
    import datetime as dt

    import pyarrow as pa
    import pyarrow.ipc as ipc

    mdn = pa.MonthDayNano
    table = pa.table(
        {
            "id": [1, 2, 3],
            "every": pa.array(
                [mdn([1, 2, 3]), mdn([0, 0, 0]), mdn([-1, 2, -500_000_000])],
                pa.month_day_nano_interval(),
            ),
            "took": pa.array(
                [dt.timedelta(days=1, seconds=1, microseconds=500_000), dt.timedelta(0), None],
                pa.duration("us"),
            ),
            "nanos": pa.array([1500, -3, 0], pa.duration("ns")),
        }
    )
    with ipc.new_file(tmp_path / "in.arrow", table.schema) as out:  # Parquet has no such type
        out.write_table(table)
    rows = run(
        tmp_path,
        "source: {arrow: {path: in.arrow}}\n"
        "processors:\n  - validate: {schema: {id: {type: int, min: 100}}}\n"
        "sink: {jsonl: {path: out.jsonl}}\n",
    )
    assert [json.loads(r["row"]) for r in rows] == [
        {"id": 1, "every": "P1M2DT0.000000003S", "took": "PT86401.5S", "nanos": "PT0.0000015S"},
        {"id": 2, "every": "PT0S", "took": "PT0S", "nanos": "PT-0.000000003S"},
        {"id": 3, "every": "P-1M2DT-0.5S", "took": None, "nanos": "PT0S"},
    ]


def test_the_writer_writes_an_interval_column_at_fault_as_a_duration(tmp_path: Path) -> None:
    import pyarrow as pa

    writer = RejectsWriter(str(tmp_path / "rejects.csv"), "run")
    value = pa.MonthDayNano([14, -1, 3_600 * 10**9])
    writer.write([RowError(7, "too long", "every", value, {"every": value}, step="sql")])
    writer.commit()
    [row] = rejects(tmp_path / "rejects.csv")
    assert (row["value"], json.loads(row["row"])) == ("P14M-1DT3600S", {"every": "P14M-1DT3600S"})
