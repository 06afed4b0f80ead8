"""A receiver committing in checkpoints into a partitioned Parquet directory: each checkpoint
adds its own part files while the run goes on, and no file name repeats across checkpoints or
runs."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from .conftest import unique
from .processes import finish, stopped
from .test_run import QUIVER, Broker, env, wait_subscribed


@pytest.fixture
def jetstream() -> Iterator[Broker]:
    b = Broker("nats", {"prefix": unique("pq"), "id": unique("id"), "stream": unique("S")})
    asyncio.run(b.prepare())
    yield b
    asyncio.run(b.clean())


def start(folder: Path, b: Broker, idle: float | None) -> subprocess.Popen[str]:
    sink = "{parquet: {path: out/, partition_by: [bucket]}}"
    (folder / "p.yaml").write_text(
        # ack_wait: 1 (test_run's, so a killed run's messages come back soon) made JetStream
        # redeliver messages whenever a loaded machine held the run's keep-alive (sent every
        # ack_wait / 3) back for a second: the duplicates never let the rows equal 0..19.
        # Nothing is killed here, so the server's ack_wait can be long.
        f"source: {b.source(idle, commit_every=10, ack_wait=30)}\n"
        "processors:\n  - derive: {columns: {bucket: 'n % 2'}}\n"
        f"sink: {sink}\n"
    )
    return subprocess.Popen(
        [*QUIVER, "run", "p.yaml", "--quiet", "--log-format", "json"],
        cwd=folder,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def part_files(folder: Path) -> list[Path]:
    return sorted((folder / "out").rglob("*.parquet"))


def rows(files: list[Path]) -> list[int]:
    return sorted(n for f in files for n in pq.read_table(f).column("n").to_pylist())


def test_checkpoints_add_part_files_while_the_run_goes_on(
    jetstream: Broker, tmp_path: Path
) -> None:
    proc = start(tmp_path, jetstream, None)
    wait_subscribed(proc)
    asyncio.run(jetstream.publish(range(25)))
    deadline = time.monotonic() + 30
    while rows(part_files(tmp_path)) != list(range(20)):
        assert time.monotonic() < deadline and proc.poll() is None, stopped(proc)
        time.sleep(0.05)
    first = part_files(tmp_path)
    # two checkpoints, each one file per partition, while the receiver still runs
    assert len(first) == 4 and proc.poll() is None
    assert {f.parent.name for f in first} == {"bucket=0", "bucket=1"}
    # named by the run and the checkpoint (its UTC start and number)
    assert all(
        re.fullmatch(r"part-[0-9a-f]{12}-\d{8}T\d{6}Z-00000[12]\.parquet", f.name) for f in first
    )
    proc.send_signal(signal.SIGTERM)
    _, stderr = finish(proc, 60)
    assert proc.returncode == 0, stderr
    after = part_files(tmp_path)
    assert set(first) < set(after)  # committed files are kept as they are
    assert rows(after) == list(range(25))

    asyncio.run(jetstream.publish(range(25, 30)))
    again = start(tmp_path, jetstream, 1.5)
    _, stderr = finish(again, 60)
    assert again.returncode == 0, stderr
    last = part_files(tmp_path)
    assert set(after) < set(last)
    assert len({f.name for f in last if f.parent.name == "bucket=0"}) == len(
        [f for f in last if f.parent.name == "bucket=0"]
    )
    table = ds.dataset(tmp_path / "out", format="parquet", partitioning="hive").to_table()
    assert sorted(table.column("n").to_pylist()) == list(range(30))  # nothing twice
    assert not [p for p in (tmp_path / "out").rglob("*") if ".tmp-" in p.name]
