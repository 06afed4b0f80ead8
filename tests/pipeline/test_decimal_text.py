"""A decimal read from text keeps its text when it is written as text, unless a step changed
its value: then it is written in its shortest exact form."""

from __future__ import annotations

import asyncio
import io
import json
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog

INPUT = "id,amount\n1,1.50\n2,310.00\n3, 4.0\n4,7\n5,\n6,1E+2\n"


def run(tmp_path: Path, steps: str, connections: str, source: str = "in.csv") -> None:
    if not (tmp_path / "in.csv").exists():
        (tmp_path / "in.csv").write_text(INPUT)
    path = tmp_path / "p.yaml"
    kind = "jsonl" if source.endswith(".jsonl") else "csv"
    path.write_text(
        "name: t\nsteps:\n"
        f"  read: {{{kind}: {{path: {source}, types: {{id: int, amount: 'decimal(38,9)'}}}}}}\n"
        f"{steps}connections:\n{connections}"
    )
    spec = load_pipeline(path, environ={})
    log = RunLog("t", "json", stream=io.StringIO())
    asyncio.run(PipelineEngine(compile_plan(spec), log=log).run())


def amounts(path: Path) -> list[str]:
    return [line.split(",")[1] for line in path.read_text().splitlines()[1:]]


def test_a_decimal_keeps_its_text_from_csv_to_csv_and_jsonl(tmp_path: Path) -> None:
    run(
        tmp_path,
        "  csv: {csv: {path: out.csv}}\n  jsonl: {jsonl: {path: out.jsonl}}\n",
        "  - {from: read, to: csv}\n  - {from: read, to: jsonl}\n",
    )
    # blanks around a number are not its text; exponents are written plainly
    assert amounts(tmp_path / "out.csv") == ["1.50", "310.00", "4.0", "7", "", "100"]
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["amount"] for r in rows] == ["1.50", "310.00", "4.0", "7", None, "100"]
    assert all(set(r) == {"id", "amount"} for r in rows)


def test_a_decimal_keeps_its_text_from_jsonl_to_csv(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"id":1,"amount":"1.50"}\n{"id":2,"amount":"2.0"}\n')
    run(tmp_path, "  csv: {csv: {path: out.csv}}\n", "  - {from: read, to: csv}\n", "in.jsonl")
    assert amounts(tmp_path / "out.csv") == ["1.50", "2.0"]


def test_parquet_output_holds_decimals_and_no_kept_text(tmp_path: Path) -> None:
    run(tmp_path, "  pq: {parquet: {path: out.parquet}}\n", "  - {from: read, to: pq}\n")
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.column_names == ["id", "amount"]
    assert str(table.schema.field("amount").type) == "decimal128(38, 9)"
    assert table.column("amount").to_pylist()[:2] == [Decimal("1.5"), Decimal("310")]


@pytest.mark.parametrize(
    ("script", "written"),
    [
        # a value the script sets is a number: its shortest exact form
        ("function transform(r) { if (r.id === 1) { r.amount = 3; } return r; }", ["3", "310"]),
        # a column the script passes through untouched keeps its text
        ("function transform(r) { r.extra = r.id * 2; return r; }", ["1.50", "310.00"]),
    ],
    ids=["changed", "untouched"],
)
def test_a_js_step_keeps_the_text_only_of_decimals_it_leaves_alone(
    tmp_path: Path, script: str, written: list[str]
) -> None:
    run(
        tmp_path,
        f"  js: {{js: {{script: {script!r}}}}}\n  csv: {{csv: {{path: out.csv}}}}\n",
        "  - {from: read, to: js}\n  - {from: js, to: csv}\n",
    )
    assert amounts(tmp_path / "out.csv")[:2] == written


def test_renamed_and_selected_decimals_keep_their_text(tmp_path: Path) -> None:
    run(
        tmp_path,
        "  ren: {rename: {columns: {amount: total, id: amount}}}\n"
        "  sel: {select: {columns: [total, amount]}}\n"
        "  csv: {csv: {path: out.csv}}\n",
        "  - {from: read, to: ren}\n  - {from: ren, to: sel}\n  - {from: sel, to: csv}\n",
    )
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[:3] == ["total,amount", "1.50,1", "310.00,2"]


def test_a_decimal_cast_to_float_is_written_as_a_float(tmp_path: Path) -> None:
    run(
        tmp_path,
        "  cast: {cast: {columns: {amount: float}}}\n  csv: {csv: {path: out.csv}}\n",
        "  - {from: read, to: cast}\n  - {from: cast, to: csv}\n",
    )
    assert amounts(tmp_path / "out.csv")[:2] == ["1.5", "310"]
