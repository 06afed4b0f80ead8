"""The engine's own columns (the source line numbers) live in a namespace user data cannot
reach: a user column named ``__line`` is ordinary data, kept and written like any other."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from quiver.pipeline.component import LINE_COLUMN, kept_text_column
from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine, RunResult
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.records import RecordBatcher
from quiver.pipeline.runlog import RunLog
from quiver.runtime.errors import QuiverError

USER_FILE = "id,__line,amount\n1,first,10\n2,,x\n3,third,30\n"


def run(tmp_path: Path, doc: dict[str, Any]) -> RunResult:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_pipeline(str(path))
    log = RunLog("t", stream=io.StringIO())
    return asyncio.run(PipelineEngine(compile_plan(spec), log=log).run())


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_line_column_is_no_name_a_user_column_can_have() -> None:
    assert LINE_COLUMN != "__line"
    assert not LINE_COLUMN.isprintable()


def test_a_csv_with_a___line_column_round_trips_unchanged(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(USER_FILE)
    result = run(
        tmp_path, {"source": {"csv": {"path": "in.csv"}}, "sink": {"csv": {"path": "out.csv"}}}
    )
    assert result.status == "ok"
    assert (tmp_path / "out.csv").read_text() == USER_FILE


@pytest.mark.parametrize("sink", ["parquet", "jsonl"])
def test_a___line_column_reaches_the_columnar_and_json_sinks(tmp_path: Path, sink: str) -> None:
    (tmp_path / "in.csv").write_text(USER_FILE)
    run(tmp_path, {"source": {"csv": {"path": "in.csv"}}, "sink": {sink: {"path": f"o.{sink}"}}})
    if sink == "parquet":
        rows = pq.read_table(tmp_path / "o.parquet").to_pylist()
    else:
        rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r["__line"] for r in rows] == ["first", None, "third"]


def test_rejected_rows_keep_their_own___line_and_report_the_real_line(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(USER_FILE)
    result = run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [{"validate": {"schema": {"amount": {"type": "int"}}}}],
            "sink": {"csv": {"path": "out.csv"}},
            "on_error": {"policy": "reject", "rejects": "rejects.csv"},
        },
    )
    assert result.rejected == 1
    [reject] = read_rows(tmp_path / "rejects.csv")
    assert reject["line"] == "3"
    assert json.loads(reject["row"]) == {"id": "2", "__line": None, "amount": "x"}
    assert [r["__line"] for r in read_rows(tmp_path / "out.csv")] == ["first", "third"]


@pytest.mark.parametrize("style", ["transform", "process"])
def test_a_script_setting___line_gets_its_own_value_written(tmp_path: Path, style: str) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n2\n")
    script = (
        "function transform(row) { row.__line = 'set-' + row.id; return row; }"
        if style == "transform"
        else "function process(ctx) { ctx.output.setField('__line', 7); return true; }"
    )
    result = run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [{"js": {"script": script, "workers": 0}}],
            "sink": {"csv": {"path": "out.csv"}},
        },
    )
    assert result.status == "ok"
    rows = read_rows(tmp_path / "out.csv")
    expected = ["set-1", "set-2"] if style == "transform" else ["7", "7"]
    assert [r["__line"] for r in rows] == expected


def test_a_script_output_schema_may_name___line(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n")
    run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [
                {
                    "js": {
                        "script": "function process(ctx) {"
                        " ctx.output.setField('__line', 99); return true; }",
                        "output_schema": {"id": "int", "__line": "int"},
                        "workers": 0,
                    }
                }
            ],
            "sink": {"csv": {"path": "out.csv"}},
        },
    )
    assert (tmp_path / "out.csv").read_text() == "id,__line\n1,99\n"


def test_a_python_row_function_setting___line_gets_its_value_written(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n2\n")
    (tmp_path / "f.py").write_text(
        "def transform(row):\n    row['__line'] = int(row['id']) * 10\n    return row\n"
    )
    run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [{"python": {"file": "f.py"}}],
            "sink": {"csv": {"path": "out.csv"}},
        },
    )
    assert (tmp_path / "out.csv").read_text() == "id,__line\n1,10\n2,20\n"


def test_sql_can_select_and_compute_a___line_column(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,__line\n1,a\n")
    run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [{"sql": {"query": "select id, __line || '!' as __line from input"}}],
            "sink": {"csv": {"path": "out.csv"}},
        },
    )
    assert (tmp_path / "out.csv").read_text() == "id,__line\n1,a!\n"


def test_an_input_column_with_the_internal_name_itself_is_refused(tmp_path: Path) -> None:
    table = pa.table({"id": [1], LINE_COLUMN: [5]})
    pq.write_table(table, tmp_path / "in.parquet")
    with pytest.raises(QuiverError) as caught:
        run(
            tmp_path,
            {
                "source": {"parquet": {"path": "in.parquet"}},
                "sink": {"csv": {"path": "out.csv"}},
            },
        )
    assert "reserve" in str(caught.value)
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize(
    ("name", "what"),
    [
        (kept_text_column("id"), "the text a decimal value was read from"),
        (kept_text_column("nothing"), "the text a decimal value was read from"),
        ("\x1fother", "its own columns"),
    ],
)
def test_an_input_column_in_the_internal_namespace_is_refused_not_dropped(
    tmp_path: Path, name: str, what: str
) -> None:
    # a sink leaves internal columns out of what it writes: such a column would vanish
    table = pa.table({"id": [1], name: ["1.50"]})
    pq.write_table(table, tmp_path / "in.parquet")
    with pytest.raises(QuiverError) as caught:
        run(
            tmp_path,
            {
                "source": {"parquet": {"path": "in.parquet"}},
                "sink": {"csv": {"path": "out.csv"}},
            },
        )
    assert f"reserves for {what}" in str(caught.value)
    assert not (tmp_path / "out.csv").exists()


def test_sql_refuses_an_empty_column_name_instead_of_renaming_it(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("a,,c\n1,2,3\n")
    doc: dict[str, Any] = {
        "source": {"csv": {"path": "in.csv"}},
        "processors": [{"sql": {"query": "select * from input"}}],
        "sink": {"csv": {"path": "out.csv"}},
    }
    with pytest.raises(QuiverError) as caught:
        run(tmp_path, doc)
    assert "column 2 of the input has an empty name" in str(caught.value)
    assert "rename" in str(caught.value)
    doc["processors"].insert(0, {"rename": {"columns": {"": "b"}}})
    run(tmp_path, doc)
    assert (tmp_path / "out.csv").read_text() == "a,b,c\n1,2,3\n"


def test_a_json_lines_field_named___line_is_ordinary_data(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": 1, "__line": "x"}\n{"id": 2, "__line": null}\n')
    run(
        tmp_path,
        {"source": {"jsonl": {"path": "in.jsonl"}}, "sink": {"jsonl": {"path": "out.jsonl"}}},
    )
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows == [{"id": 1, "__line": "x"}, {"id": 2, "__line": None}]


def test_records_received_with_a___line_field_keep_it_beside_their_numbers() -> None:
    batch = RecordBatcher("test").to_batch([{"__line": "a", "n": 1}, {"__line": "b", "n": 2}])
    assert batch.column("__line").to_pylist() == ["a", "b"]
    assert batch.column(LINE_COLUMN).to_pylist() == [1, 2]


# ------------------------------------------------------------------ the components' own columns


def test_lookup_keeps_input_columns_named_like_its_helper_columns(run_ctx_dir: Path) -> None:
    from quiver.pipeline.component import RunContext
    from quiver.pipeline.processors.lookup import LookupProcessor

    from .processors.contract import batch, make, process, rows_of

    (run_ctx_dir / "codes.csv").write_text("code,name\nDE,Germany\n")
    ctx = RunContext("t", str(run_ctx_dir))
    rows = [
        {"id": 1, "code": "DE", "__quiver_seq": "a", "__quiver_found": "x"},
        {"id": 2, "code": "XX", "__quiver_seq": "b", "__quiver_found": "y"},
    ]
    for how in ("left", "inner"):
        lookup = make(LookupProcessor, {"file": "codes.csv", "on": ["code"], "how": how})
        out = rows_of(process(lookup, batch(rows), ctx))
        expected = [{**rows[0], "name": "Germany"}, {**rows[1], "name": None}]
        assert out == (expected if how == "left" else expected[:1])


def test_filter_on_a_map_key_keeps_a_column_named_like_its_helper_column(
    run_ctx_dir: Path,
) -> None:
    from quiver.pipeline.component import RunContext
    from quiver.pipeline.processors.filter import FilterProcessor

    from .processors.contract import make, process, rows_of

    ctx = RunContext("t", str(run_ctx_dir))
    attrs = pa.array([[("k", "a")], [("k", "b")]], pa.map_(pa.string(), pa.string()))
    rows = pa.record_batch({"attributes": attrs, "__quiver_path_0": ["b", "a"]})
    keep = make(FilterProcessor, {"expression": "attributes['k'] = 'a'"})
    out = rows_of(process(keep, rows, ctx))
    assert [r["__quiver_path_0"] for r in out] == ["b"]


@pytest.fixture
def run_ctx_dir(tmp_path: Path) -> Path:
    return tmp_path
