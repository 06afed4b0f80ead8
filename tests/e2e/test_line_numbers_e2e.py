"""Whole runs of ``quiver run``: the input line of each row reaches the sinks, so a row a sink
cannot take is reported by the line it was read from, and the line column never lands in an
output or collides with a user column (a user column named ``__line`` is ordinary data).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.conftest import QuiverRunner, read_csv, write_csv, write_pipeline


def test_a_csv_sink_encoding_error_names_the_input_line(
    tmp_path: Path, quiver: QuiverRunner
) -> None:
    rows = [[1, "Zürich"], [2, "Genève"], [3, "Basel"], [4, "東京"], [5, "Bern"]]
    write_csv(tmp_path / "in.csv", ["id", "city"], rows)
    write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv", "batch_rows": 2}},
            "sink": {"csv": {"path": "out.csv", "encoding": "latin-1"}},
        },
    )
    run = quiver("run", "pipeline.yaml")
    assert run.code == 1, run.explain()
    # 東京 is the 4th row: line 5 of the input (after the header), the 2nd row of its batch
    assert "row from line 5" in run.stderr, run.explain()
    assert "cannot be written in latin-1" in run.stderr
    assert "of the batch" not in run.stderr
    assert not (tmp_path / "out.csv").exists()


def test_the_line_column_never_lands_in_a_file_output(tmp_path: Path, quiver: QuiverRunner) -> None:
    write_csv(tmp_path / "in.csv", ["id", "name"], [[1, "a"], [2, "b"], [3, "c"]])
    write_pipeline(
        tmp_path,
        {
            "steps": {
                "read": {"csv": {"path": "in.csv"}},
                "csv": {"csv": {"path": "out/o.csv"}},
                "jsonl": {"jsonl": {"path": "out/o.jsonl"}},
                "parquet": {"parquet": {"path": "out/o.parquet"}},
            },
            "connections": [{"from": "read", "to": ["csv", "jsonl", "parquet"]}],
        },
    )
    run = quiver("run", "pipeline.yaml")
    assert run.code == 0, run.explain()
    assert list(read_csv(tmp_path / "out/o.csv")[0]) == ["id", "name"]
    lines = (tmp_path / "out/o.jsonl").read_text().splitlines()
    assert [sorted(json.loads(line)) for line in lines] == [["id", "name"]] * 3
    assert pq.read_schema(tmp_path / "out/o.parquet").names == ["id", "name"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_user_column_named___line_is_ordinary_data(
    tmp_path: Path, quiver: QuiverRunner, fmt: str
) -> None:
    if fmt == "csv":
        write_csv(tmp_path / "in.csv", ["id", "__line"], [[1, 10], [2, 20]])
    else:
        pq.write_table(pa.table({"id": [1, 2], "__line": [10, 20]}), tmp_path / "in.parquet")
    write_pipeline(
        tmp_path,
        {"source": {fmt: {"path": f"in.{fmt}"}}, "sink": {"csv": {"path": "out.csv"}}},
    )
    run = quiver("run", "pipeline.yaml")
    assert run.code == 0, run.explain()
    assert (tmp_path / "out.csv").read_text() == "id,__line\n1,10\n2,20\n"


def test_a_database_sink_names_the_input_line_of_a_null_key(
    tmp_path: Path, quiver: QuiverRunner, fresh_postgresql: str
) -> None:
    rows: list[list[object]] = [[1, "a"], [2, "b"], ["", "c"], [4, "d"]]
    write_csv(tmp_path / "in.csv", ["id", "name"], rows)
    write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv", "types": {"id": "int"}}},
            "sink": {
                "database": {
                    "url": fresh_postgresql,
                    "table": "people",
                    "mode": "upsert",
                    "keys": ["id"],
                }
            },
        },
    )
    run = quiver("run", "pipeline.yaml")
    assert run.code == 1, run.explain()
    # the third row, read from line 4 of the file (after the header)
    assert "upsert key column 'id' is null in 1 row(s), at input line(s) 4" in run.stderr, (
        run.explain()
    )
