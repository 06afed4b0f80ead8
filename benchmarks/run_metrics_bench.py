"""What the monitoring endpoint of ``quiver run`` costs a pipeline scraped often: the same run
with the endpoint served and scraped every ``--every`` seconds, and without it, paired.

Run by hand (not a test):

    .venv/bin/python benchmarks/run_metrics_bench.py [--rows 2000000] [--pairs 5] [--every 0.1]

The engine counts its steps in every run (the summary needs them); what the endpoint adds is
its thread, the sink write latency it observes, and each scrape (the families built from the
counters, the process metrics read from /proc). The baseline is the same pipeline (CSV ->
Parquet, in-process engine) with no endpoint, run alternately with it so both see the same
machine load. Prints the medians, the ratio, the scrapes made, their median time, and the load
average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog
from quiver.runtime.monitoring import serve_monitoring

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
        }
    )
    pacsv.write_csv(table, folder / "in.csv")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape_until(stop: threading.Event, port: int, every: float, took: list[float]) -> None:
    with httpx.Client() as client:
        while not stop.wait(every):
            t0 = time.perf_counter()
            response = client.get(f"http://127.0.0.1:{port}/metrics")
            took.append(time.perf_counter() - t0)
            assert b"quiver_pipeline_rows_out_total" in response.content


async def _run(folder: Path, served: bool, every: float, took: list[float]) -> float:
    (folder / "pipeline.yaml").write_text(_PIPELINE)
    plan = compile_plan(load_pipeline(folder / "pipeline.yaml", {}, environ={}))
    engine = PipelineEngine(plan, log=RunLog("b", "json", stream=io.StringIO()))
    stop = threading.Event()
    server = scraper = None
    if served:
        port = _free_port()
        server = serve_monitoring(f"127.0.0.1:{port}", ready=lambda: engine.ready)
        scraper = threading.Thread(target=_scrape_until, args=(stop, port, every, took))
        scraper.start()
    t0 = time.perf_counter()
    try:
        result = await engine.run()
    finally:
        seconds = time.perf_counter() - t0
        stop.set()
        if scraper is not None:
            scraper.join()
        if server is not None:
            server.stop()
    assert result.status == "ok"
    shutil.rmtree(folder / "out")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--every", type=float, default=0.1, help="seconds between scrapes")
    args = parser.parse_args()
    load_before = os.getloadavg()
    took: list[float] = []
    with tempfile.TemporaryDirectory(prefix="quiver-metrics-bench-") as tmp:
        folder = Path(tmp)
        _input(folder, args.rows)
        base: list[float] = []
        served: list[float] = []
        asyncio.run(_run(folder, False, args.every, took))  # warm the caches
        for i in range(args.pairs):
            order = (False, True) if i % 2 == 0 else (True, False)
            for with_endpoint in order:
                times = served if with_endpoint else base
                times.append(asyncio.run(_run(folder, with_endpoint, args.every, took)))
    load_after = os.getloadavg()
    b, s = statistics.median(base), statistics.median(served)
    print(f"rows: {args.rows:,}, pairs: {args.pairs} (CSV -> Parquet, in-process engine)")
    print(f"no endpoint (baseline): {b:.3f}s median  {args.rows / b:,.0f} rows/s  {base}")
    print(
        f"served, scraped /{args.every:g}s: {s:.3f}s median  {args.rows / s:,.0f} rows/s  {served}"
    )
    print(f"ratio served/baseline: {s / b:.3f} (time)")
    if took:
        print(f"scrapes: {len(took)}, median {statistics.median(took) * 1000:.2f} ms")
    print(f"load average before: {load_before}, after: {load_after}")


if __name__ == "__main__":
    main()
