"""What a dead-letter queue costs a pipeline that never fails: the same run with and without
``dlq:``, paired, in the same process.

Run by hand (not a test):

    .venv/bin/python benchmarks/dlq_bench.py [--rows 2000000] [--pairs 5]

With a queue every batch handed to a covered sink is also written to the queue's staging file
(Arrow IPC, not fsync'd) until the sink commits, then deleted. The baseline is the same
pipeline without ``dlq:`` (CSV -> Parquet), run alternately with it so both see the same
machine load. Also times the replay of one entry of ``--rows`` rows into a Parquet sink.
Prints the medians, the ratio, and the load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.dead_letters import DeadLetterQueue, Failure
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.redelivery import queue_of, replay_entries
from quiver.pipeline.runlog import RunLog
from quiver.runtime.errors import PermanentError

_PIPELINE = """\
name: bench
source: {csv: {path: in.csv, types: {id: int, qty: int, price: float}}}
sink: {parquet: {path: "out/{stem}.parquet"}}
"""


def _input(folder: Path, rows: int) -> None:
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "id": np.arange(rows),
            "qty": rng.integers(1, 100, rows),
            "price": rng.random(rows) * 100,
            "service": rng.choice(["checkout", "payments", "search", "auth"], rows),
            "message": rng.choice(["ok", "slow request", "retrying upstream", "done"], rows),
        }
    )
    pacsv.write_csv(table, folder / "in.csv")


async def _run(folder: Path, with_dlq: bool) -> float:
    text = _PIPELINE + ("dlq: {path: dlq}\n" if with_dlq else "")
    (folder / "pipeline.yaml").write_text(text)
    plan = compile_plan(load_pipeline(folder / "pipeline.yaml", {}, environ={}))
    engine = PipelineEngine(plan, log=RunLog("b", "json", stream=io.StringIO()))
    t0 = time.perf_counter()
    result = await engine.run()
    seconds = time.perf_counter() - t0
    assert result.status == "ok" and not result.dead_letters
    shutil.rmtree(folder / "out")
    return seconds


async def _replay(folder: Path, rows: int) -> float:
    (folder / "pipeline.yaml").write_text(_PIPELINE + "dlq: {path: dlq}\n")
    plan = compile_plan(load_pipeline(folder / "pipeline.yaml", {}, environ={}))
    queue = queue_of(plan)
    queue.create()
    staged = queue.stage("sink", "bench")
    batch = pacsv.read_csv(folder / "in.csv").to_batches(max_chunksize=65_536)
    for b in batch:
        staged.add(b)
    now = time.time()
    queue.add(staged, Failure.from_error(PermanentError.one("x"), 1, now, now), "parquet", "b")
    assert isinstance(queue, DeadLetterQueue)
    t0 = time.perf_counter()
    [outcome] = await replay_entries(plan, queue, queue.entries())
    seconds = time.perf_counter() - t0
    assert outcome.delivered and outcome.rows == rows
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="quiver-dlq-bench-") as tmp:
        folder = Path(tmp)
        _input(folder, args.rows)
        base: list[float] = []
        dlq: list[float] = []
        asyncio.run(_run(folder, False))  # warm the caches
        for i in range(args.pairs):
            order = (False, True) if i % 2 == 0 else (True, False)
            for with_dlq in order:
                (dlq if with_dlq else base).append(asyncio.run(_run(folder, with_dlq)))
        replay = asyncio.run(_replay(folder, args.rows))
    load_after = os.getloadavg()
    b, d = statistics.median(base), statistics.median(dlq)
    print(f"rows: {args.rows:,}, pairs: {args.pairs} (CSV -> Parquet, in-process engine)")
    print(f"without dlq (baseline): {b:.3f}s median  {args.rows / b:,.0f} rows/s  {base}")
    print(f"with dlq:               {d:.3f}s median  {args.rows / d:,.0f} rows/s  {dlq}")
    print(f"ratio with/without: {d / b:.3f} (time), throughput kept: {b / d:.1%}")
    print(f"replay of one {args.rows:,}-row entry into parquet: {replay:.3f}s")
    print(f"load average before: {load_before}, after: {load_after}")


if __name__ == "__main__":
    main()
