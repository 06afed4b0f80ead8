"""The receiver example in examples/pipelines runs and writes what its comments promise."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan

from .conftest import mqtt_publish, unique, with_source_options

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"


async def test_mqtt_telemetry_example_writes_one_parquet_file_per_checkpoint(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "mqtt-telemetry"
    shutil.copytree(EXAMPLES / "mqtt-telemetry", folder)
    prefix = unique("plant")  # the example's topics, for this test only

    def run() -> PipelineEngine:
        spec = load_pipeline(folder / "pipeline.yaml", {"PREFIX": prefix}, environ={})
        return PipelineEngine(compile_plan(with_source_options(spec, idle_timeout=1.5)))

    await run().run()  # the session exists from now on: nothing published is missed
    messages = [
        (f"{prefix}/{plant}/line/{line}/temp", b'{"celsius": %d.5}' % (i % 40))
        for i, (plant, line) in enumerate(
            [("lyon", 4), ("paris", 1)] * 120 + [("lyon", 4)] * 10  # 250 messages
        )
    ]
    await asyncio.to_thread(mqtt_publish, messages, 1)
    result = await run().run()

    files = sorted((folder / "out").glob("temperatures-*.parquet"))
    assert [pq.read_metadata(f).num_rows for f in files] == [100, 100, 50]
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    assert rows[0] == {"celsius": 0.5, "plant": "lyon", "line": "4"}
    assert sum(1 for r in rows if r["plant"] == "paris") == 120
    assert result.rows_written == 250
