"""Big-data runs (``-m slow``): memory stays bounded by the queues, not by the input size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
C = "tests.pipeline.engine_components:"

MEASURE = """
import asyncio, json, resource, sys
from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog
import io
spec = load_pipeline(sys.argv[1])
engine = PipelineEngine(compile_plan(spec), log=RunLog("soak", stream=io.StringIO()))
result = asyncio.run(engine.run())
print(json.dumps({"rows": result.rows_written,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


@pytest.mark.slow
def test_five_million_rows_run_in_bounded_memory(tmp_path: Path) -> None:
    (tmp_path / "soak.yaml").write_text(
        f"source: {{'{C}RowsSource': {{rows: 5000000, batch_rows: 50000}}}}\n"
        "processors:\n"
        "  - derive: {columns: {double: 'value * 2', label: \"concat('row-', id)\"}}\n"
        "  - validate: {schema: {id: {type: long, min: 1}, label: {pattern: 'row-[0-9]+'}}}\n"
        "  - dedupe: {keys: [id]}\n"
        "sink: {csv: {path: out.csv}}\n"
        "engine: {queue_batches: 2}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(tmp_path / "soak.yaml")],
        cwd=ROOT,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'src'}", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["rows"] == 5_000_000
    # the input is ~5M rows (hundreds of MB as Arrow); the run holds a few batches at a time
    assert figures["rss_mb"] < 700, figures
