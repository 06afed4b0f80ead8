"""Throughput of the ``js`` processor: a 3-derived-field transform over 10-column batches.

Runs the same script over the same in-memory batches with one isolate in this process
(``workers: 0``, the single-isolate baseline), then with N isolates on threads (the default
``isolation: thread``), 1 and N worker processes (``isolation: process``), and prints rows/s
for each, plus the start-up time. On a shared machine wall-clock rates depend on
what else runs, so it also prints rows per CPU-second (this process and its workers, read
from /proc) and the load average. The batches are built before timing, so the
figure is the processor's own (JSON and ArrayBuffer exchange + V8 + Arrow rebuild), not CSV
parsing.

First it shows where the time of a batch goes, one isolate in this process: encoding the
batch (Python: the JSON text and the number columns), the call into V8 (split into
JSON.parse, cutting text columns, the row loop with packing the output columns,
JSON.stringify, and the rest: handing the strings and buffers over), and decoding the answer
into Arrow (Python).

    .venv/bin/python benchmarks/js_bench.py [--rows 1000000] [--batch-rows 65536] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

import pyarrow as pa

from quiver.pipeline.component import RunContext
from quiver.pipeline.js_runtime.isolate import Isolate, IsolateOptions
from quiver.pipeline.js_runtime.pool import WorkerPool
from quiver.pipeline.processors.js import JsProcessor, JsProcessorConfig

SCRIPT = """
function transform(row, ctx) {
  row.gross = row.price * row.quantity * 1.21;
  row.full_name = row.first_name + ' ' + row.last_name;
  row.is_large = row.quantity > 50;
  return row;
}
"""

FLOWENGINE_SCRIPT = """
function process(context) {
  var c = context.input.current();
  context.output.setField('gross', c.price * c.quantity * 1.21);
  context.output.setField('full_name', c.first_name + ' ' + c.last_name);
  context.output.setField('is_large', c.quantity > 50);
  return true;
}
"""


def make_batches(rows: int, batch_rows: int) -> list[pa.RecordBatch]:
    """10 columns: ids, names, numbers, a city, a country, a date string, a status."""
    out: list[pa.RecordBatch] = []
    cities = ["Amsterdam", "Berlin", "Lisbon", "Oslo", "Rome", "Vienna", "Zurich"]
    for start in range(0, rows, batch_rows):
        n = min(batch_rows, rows - start)
        ids = range(start, start + n)
        out.append(
            pa.RecordBatch.from_pydict(
                {
                    "id": pa.array(ids, pa.int64()),
                    "first_name": pa.array([f"First{i % 997}" for i in ids]),
                    "last_name": pa.array([f"Last{i % 1009}" for i in ids]),
                    "email": pa.array([f"user{i}@example.com" for i in ids]),
                    "price": pa.array([(i % 1000) / 10 for i in ids], pa.float64()),
                    "quantity": pa.array([i % 100 for i in ids], pa.int64()),
                    "city": pa.array([cities[i % len(cities)] for i in ids]),
                    "country": pa.array(["NL" if i % 3 else "DE" for i in ids]),
                    "ordered_on": pa.array(
                        [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in ids]
                    ),
                    "status": pa.array(["open" if i % 5 else "closed" for i in ids]),
                    "__line": pa.array(range(start + 2, start + 2 + n), pa.int64()),
                }
            )
        )
    return out


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (Linux /proc); 0 where unavailable."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def stages(batches: list[pa.RecordBatch], script: str) -> None:
    """Print the mean time per batch of each stage, one isolate in this process."""
    iso = Isolate(IsolateOptions(script, "bench.js"))
    iso.run(batches[0])  # warm up V8's JIT
    totals: dict[str, float] = {}
    for b in batches:
        iso.run(b)
        inside = iso.stage_timings()
        step = dict(iso.last_timings)
        step.update(inside)
        step["hand-over"] = max(0.0, step["v8"] - sum(inside.values()))
        for k, v in step.items():
            totals[k] = totals.get(k, 0.0) + v
    iso.close()
    rows = sum(b.num_rows for b in batches)
    per_batch = rows / len(batches)
    order = [
        ("encode", "encode the batch (Python: JSON, numbers)"),
        ("v8", "call into V8, of which:"),
        ("parse", "  JSON.parse"),
        ("cut", "  cut text columns into values"),
        ("loop", "  rows, the script, packed output columns"),
        ("stringify", "  JSON.stringify"),
        ("hand-over", "  strings and buffers into and out of V8"),
        ("decode", "decode the answer into Arrow (Python)"),
    ]
    print(f"  where a batch of {per_batch:,.0f} rows goes (one isolate in process, mean):")
    for key, label in order:
        ms = totals[key] / len(batches) * 1000
        print(f"    {label:<44} {ms:8.1f} ms  {totals[key] / rows * 1e9:8.0f} ns/row")


async def measure(
    batches: list[pa.RecordBatch], workers: int, script: str, in_flight: int, **options: object
) -> tuple[float, float, float]:
    """(start-up seconds, rows per second, rows per CPU-second) for one configuration."""
    proc = JsProcessor(JsProcessorConfig(script=script, workers=workers, **options))  # type: ignore[arg-type]
    ctx = RunContext("bench", os.getcwd())
    t0 = time.perf_counter()
    await proc.start(ctx)
    startup = time.perf_counter() - t0
    await proc.process(batches[0], ctx)  # warm up V8's JIT
    rows = sum(b.num_rows for b in batches)
    pids = [os.getpid()] + (proc._runner.pids() if isinstance(proc._runner, WorkerPool) else [])
    cpu0 = _cpu_seconds(pids)
    t0 = time.perf_counter()
    pending: list[asyncio.Task[object]] = []
    for b in batches:
        pending.append(asyncio.create_task(proc.process(b, ctx)))
        if len(pending) >= in_flight:
            await pending.pop(0)
    for task in pending:
        await task
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds(pids) - cpu0
    await proc.close()
    return startup, rows / seconds, rows / cpu if cpu > 0 else 0.0


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=65_536)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    batches = make_batches(args.rows, args.batch_rows)
    print(
        f"js transform, 3 derived fields, {args.rows:,} rows x 10 columns, "
        f"batches of {args.batch_rows:,}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    await asyncio.to_thread(stages, batches, SCRIPT)  # mini-racer wants no running loop
    n = args.workers
    cases = [
        ("one isolate in process (baseline)", 0, "thread", SCRIPT, 1),
        (f"{n} isolates on threads (the default)", n, "thread", SCRIPT, 2),
        ("1 worker process", 1, "process", SCRIPT, 1),
        (f"{n} worker processes", n, "process", SCRIPT, 2),
        (
            f"{n} isolates on threads, FlowEngine process(context)",
            n,
            "thread",
            FLOWENGINE_SCRIPT,
            2,
        ),
    ]
    for label, workers, isolation, script, in_flight in cases:
        options: dict[str, object] = {"isolation": isolation}
        if script is FLOWENGINE_SCRIPT:
            options["output_schema"] = {
                "id": "long",
                "gross": "double",
                "full_name": "string",
                "is_large": "boolean",
            }
        startup, rate, per_cpu = await measure(batches, workers, script, in_flight, **options)
        print(
            f"  {label:<48} {rate:>10,.0f} rows/s  {per_cpu:>10,.0f} rows/CPU-s  "
            f"(start-up {startup * 1000:,.0f} ms)"
        )


if __name__ == "__main__":
    asyncio.run(main())
