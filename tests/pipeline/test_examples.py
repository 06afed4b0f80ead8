"""The example pipelines in examples/pipelines run and produce what their comments promise;
the generated reference is current."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine, RunResult
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "pipelines"


def run_example(name: str, tmp_path: Path) -> tuple[Path, RunResult, str]:
    folder = tmp_path / name
    shutil.copytree(EXAMPLES / name, folder)
    stream = io.StringIO()
    spec = load_pipeline(folder / "pipeline.yaml", environ={})
    result = asyncio.run(
        PipelineEngine(compile_plan(spec), log=RunLog("ex", "json", stream=stream)).run()
    )
    return folder, result, stream.getvalue()


def test_orders_example_validates_dedupes_enriches_and_writes_parquet(tmp_path: Path) -> None:
    folder, result, _ = run_example("orders", tmp_path)
    rows = pq.read_table(folder / "out/orders.parquet").to_pylist()
    assert [r["order_id"] for r in rows] == [1001, 1004, 1007]
    assert [r["country_name"] for r in rows] == ["United Kingdom", "Netherlands", "United States"]
    assert str(rows[0]["gross"]) == "144.600"
    with open(folder / "out/orders.rejects.csv", newline="") as fh:
        rejects = list(csv.DictReader(fh))
    assert [(r["step"], r["line"], r["column"]) for r in rejects] == [
        ("validate", "3", "email"),
        ("validate", "4", "total"),
        ("validate", "7", "ordered_at"),
        ("lookup", "9", "country"),
    ]
    assert result.steps["dedupe"].rows_in - result.steps["dedupe"].rows_out == 1


def test_routing_example_splits_alerts_from_normal_readings(tmp_path: Path) -> None:
    folder, result, log = run_example("routing", tmp_path)
    with open(folder / "out/normal.csv", newline="") as fh:
        assert [r["label"] for r in csv.DictReader(fh)] == ["berlin/s1", "paris/s3", "paris/s5"]
    alerts = [json.loads(line) for line in (folder / "out/alerts.jsonl").read_text().splitlines()]
    assert alerts == [
        {
            "sensor": "s2",
            "celsius": 85.0,
            "site": "berlin",
            "fahrenheit": 185.0,
            "label": "berlin/s2",
        }
    ]
    taps = [json.loads(line) for line in log.splitlines() if '"event":"tap"' in line]
    assert [t["row"]["sensor"] for t in taps] == ["s2"]
    assert result.steps["convert"].rows_out == 4


def test_the_committed_reference_matches_the_config_models() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_pipeline_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
