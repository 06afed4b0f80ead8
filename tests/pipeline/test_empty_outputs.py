"""Zero rows in, an empty output that still has the columns out: a header-only CSV file, an
empty Parquet or Arrow file, and steps that reject or drop every row, through every file sink."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import yaml

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine, RunResult
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog
from quiver.pipeline.sources.csv import CsvSource

from .conftest import build, read_all

SINKS = ["csv", "tsv", "psv", "jsonl", "parquet", "arrow"]
EXTENSION = {
    "csv": "csv",
    "tsv": "tsv",
    "psv": "psv",
    "jsonl": "jsonl",
    "parquet": "parquet",
    "arrow": "arrow",
}


def run(tmp_path: Path, doc: dict[str, Any]) -> RunResult:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_pipeline(str(path))
    log = RunLog("t", stream=io.StringIO())
    return asyncio.run(PipelineEngine(compile_plan(spec), log=log).run())


def columns_written(path: Path, sink: str) -> list[str] | None:
    """The column names an output file holds (None for JSON Lines, which has no header)."""
    if sink == "parquet":
        return cast(list[str], pq.read_schema(path).names)
    if sink == "arrow":
        with ipc.open_file(path) as reader:
            assert reader.read_all().num_rows == 0
            return cast(list[str], reader.schema.names)
    text = path.read_text()
    if sink == "jsonl":
        assert text == ""
        return None
    delimiter = {"csv": ",", "tsv": "\t", "psv": "|"}[sink]
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    return text.rstrip("\n").split(delimiter)


def types_written(path: Path, sink: str) -> dict[str, pa.DataType]:
    schema = pq.read_schema(path) if sink == "parquet" else ipc.open_file(path).schema
    return {f.name: f.type for f in schema}


@pytest.mark.parametrize("final_newline", [True, False], ids=["newline", "no-newline"])
@pytest.mark.parametrize("sink", SINKS)
def test_a_header_only_csv_gives_an_empty_output_with_its_columns(
    tmp_path: Path, sink: str, final_newline: bool
) -> None:
    (tmp_path / "in.csv").write_text("id,name,amount" + ("\n" if final_newline else ""))
    out = tmp_path / f"out.{EXTENSION[sink]}"
    result = run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv", "types": {"amount": "int"}}},
            "sink": {sink: {"path": out.name}},
        },
    )
    assert result.status == "ok"
    assert result.rows_read == 0
    names = columns_written(out, sink)
    if names is not None:
        assert names == ["id", "name", "amount"]
    if sink in ("parquet", "arrow"):
        assert types_written(out, sink) == {
            "id": pa.string(),
            "name": pa.string(),
            "amount": pa.int64(),
        }


@pytest.mark.parametrize("final_newline", [True, False], ids=["newline", "no-newline"])
def test_the_csv_source_knows_the_columns_from_the_header_alone(
    run_ctx: Any, tmp_path: Path, final_newline: bool
) -> None:
    (tmp_path / "in.csv").write_text("a;b;c" + ("\r\n" if final_newline else ""))
    src = build(CsvSource, {"path": "in.csv", "delimiter": ";", "select": ["c", "a"]})
    table = asyncio.run(read_all(src, run_ctx))
    assert table.num_rows == 0
    assert table.column_names[:2] == ["c", "a"]


@pytest.mark.parametrize("sink", SINKS)
def test_every_row_rejected_still_writes_the_columns(tmp_path: Path, sink: str) -> None:
    (tmp_path / "in.csv").write_text("id,amount\n1,x\n2,y\n")
    out = tmp_path / f"out.{EXTENSION[sink]}"
    result = run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [{"validate": {"schema": {"amount": {"type": "int"}}}}],
            "sink": {sink: {"path": out.name}},
            "on_error": {"policy": "reject", "rejects": "rejects.csv"},
        },
    )
    assert result.status == "ok"
    assert result.rejected == 2
    names = columns_written(out, sink)
    if names is not None:
        assert names == ["id", "amount"]


@pytest.mark.parametrize("sink", ["csv", "parquet"])
def test_a_script_rejecting_every_row_writes_its_output_schema(tmp_path: Path, sink: str) -> None:
    (tmp_path / "in.csv").write_text("id,amount\n1,2\n3,4\n")
    out = tmp_path / f"out.{sink}"
    result = run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [
                {
                    "js": {
                        "script": "function process(ctx) { throw new Error('no'); }",
                        "output_schema": {"id": "int", "total": "float"},
                        "workers": 0,
                    }
                }
            ],
            "sink": {sink: {"path": out.name}},
            "on_error": {"policy": "reject", "rejects": "rejects.csv"},
        },
    )
    assert result.rejected == 2
    assert columns_written(out, sink) == ["id", "total"]


def test_a_filter_dropping_every_row_keeps_the_columns_through_later_steps(
    tmp_path: Path,
) -> None:
    (tmp_path / "in.csv").write_text("id,amount\n1,2\n3,4\n")
    run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv", "types": {"amount": "int"}}},
            "processors": [
                {"filter": {"expression": "amount > 100"}},
                {"derive": {"columns": {"double": "amount * 2"}}},
                {"sql": {"query": "select id, double from input"}},
            ],
            "sink": {"csv": {"path": "out.csv"}},
        },
    )
    assert (tmp_path / "out.csv").read_text() == "id,double\n"


def test_rows_after_an_empty_file_are_written_with_the_first_file_columns(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.csv").write_text("id,name\n")
    (tmp_path / "b.csv").write_text("id,name\n1,x\n")
    run(
        tmp_path,
        {"source": {"csv": {"path": "*.csv"}}, "sink": {"jsonl": {"path": "out.jsonl"}}},
    )
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows == [{"id": "1", "name": "x"}]


@pytest.mark.parametrize("sink", SINKS)
def test_an_empty_parquet_file_passes_its_schema_on(tmp_path: Path, sink: str) -> None:
    schema = pa.schema([("k", pa.int32()), ("when", pa.date32())])
    pq.write_table(schema.empty_table(), tmp_path / "in.parquet")
    out = tmp_path / f"out.{EXTENSION[sink]}"
    run(
        tmp_path,
        {"source": {"parquet": {"path": "in.parquet"}}, "sink": {sink: {"path": out.name}}},
    )
    names = columns_written(out, sink)
    if names is not None:
        assert names == ["k", "when"]
    if sink in ("parquet", "arrow"):
        assert types_written(out, sink) == {"k": pa.int32(), "when": pa.date32()}


@pytest.mark.parametrize("fmt", ["file", "stream"])
def test_an_empty_arrow_file_passes_its_schema_on(tmp_path: Path, fmt: str) -> None:
    schema = pa.schema([("k", pa.int64()), ("v", pa.string())])
    with pa.OSFile(str(tmp_path / "in.arrow"), "wb") as fh:
        writer = ipc.new_file(fh, schema) if fmt == "file" else ipc.new_stream(fh, schema)
        writer.close()
    run(
        tmp_path,
        {"source": {"arrow": {"path": "in.arrow"}}, "sink": {"parquet": {"path": "out.parquet"}}},
    )
    assert pq.read_schema(tmp_path / "out.parquet").names == ["k", "v"]


def test_an_empty_jsonl_file_with_declared_types_passes_them_on(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("")
    run(
        tmp_path,
        {
            "source": {"jsonl": {"path": "in.jsonl", "types": {"id": "int", "name": "str"}}},
            "sink": {"csv": {"path": "out.csv"}},
        },
    )
    assert (tmp_path / "out.csv").read_text() == "id,name\n"


def test_a_step_that_needs_rows_to_know_its_columns_does_not_fail_an_empty_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "in.csv").write_text("id,name\n")
    (tmp_path / "f.py").write_text(
        "import pyarrow as pa\n"
        "def transform(batch):\n"
        "    first = batch.column(0)[0].as_py()  # fails without rows\n"
        "    return batch.append_column('first', pa.array([first] * batch.num_rows))\n"
    )
    result = run(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [{"python": {"file": "f.py", "mode": "batch"}}],
            "sink": {"csv": {"path": "out.csv"}},
        },
    )
    assert result.status == "ok"
    assert (tmp_path / "out.csv").read_text() == ""
