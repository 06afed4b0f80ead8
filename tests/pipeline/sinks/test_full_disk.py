"""A full disk and a read-only file system under every file sink: the error carries the errno
and names the destination, a retry cannot publish a file that lost data, and nothing
half-written is left (the destination keeps what it held before the run).

The disk is a small tmpfs mounted for the test (which needs the right to mount, as root in a
container has), and standard output is /dev/full."""

from __future__ import annotations

import asyncio
import errno
import io
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from quiver.pipeline.component import RunContext
from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog
from quiver.pipeline.sinks.arrow_ipc import ArrowIpcSink
from quiver.pipeline.sinks.csv import CsvSink
from quiver.pipeline.sinks.jsonl import JsonlSink
from quiver.pipeline.sinks.parquet import ParquetSink
from quiver.runtime.errors import QuiverError

from ..conftest import build

QUIVER = str(Path(sys.executable).with_name("quiver"))
SINKS: dict[str, type[Any]] = {
    "csv": CsvSink,
    "jsonl": JsonlSink,
    "parquet": ParquetSink,
    "arrow": ArrowIpcSink,
}
OLD = b"what the file held before the run\n"


def _mount(point: Path, options: str) -> Iterator[Path]:
    point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB file system holding one earlier output per sink."""
    for point in _mount(tmp_path / "small", "size=64k"):
        for name in SINKS:
            (point / f"out.{name}").write_bytes(OLD)
        yield point


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    yield from _mount(tmp_path / "ro", "ro,size=64k")


def rows(n: int = 40_000) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(range(n), pa.int64()),
            "text": [f"row {i} {uuid.uuid4()}" for i in range(n)],
        }
    )


def context(folder: Path) -> RunContext:
    return RunContext(uuid.uuid4().hex, str(folder), {}, lambda message, level: None)


def failure_of(name: str, folder: Path) -> tuple[BaseException, Any]:
    """Run one sink the engine's way into ``folder``: the error it failed with, and the sink."""
    sink = build(SINKS[name], {"path": f"out.{name}"})
    batch = rows()
    ctx = context(folder)

    async def go() -> BaseException:
        try:
            await sink.open(batch.schema, ctx)
            for piece in batch.to_batches(max_chunksize=5_000):
                await sink.write(piece)
            await sink.commit()
        except Exception as exc:
            await sink.abort()
            return exc
        raise AssertionError("the sink wrote 40,000 rows to a 64 KiB disk")

    return asyncio.run(go()), sink


def os_error_in(exc: BaseException) -> OSError:
    """The operating-system error at the root of ``exc``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen
        seen = seen.__cause__ or seen.__context__
    raise AssertionError(f"no OSError behind {exc!r}")


@pytest.mark.parametrize("name", list(SINKS))
def test_a_full_disk_names_the_destination_and_leaves_the_old_file(
    small_disk: Path, name: str
) -> None:
    error, _ = failure_of(name, small_disk)
    cause = os_error_in(error)
    assert cause.errno == errno.ENOSPC
    destination = str(small_disk / f"out.{name}")
    assert cause.filename == destination or destination in str(error), repr(error)
    assert sorted(p.name for p in small_disk.iterdir()) == sorted(f"out.{n}" for n in SINKS)
    assert (small_disk / f"out.{name}").read_bytes() == OLD


@pytest.mark.parametrize("name", list(SINKS))
def test_a_write_that_failed_on_a_full_disk_is_an_os_error_naming_the_destination(
    small_disk: Path, name: str
) -> None:
    sink = build(SINKS[name], {"path": f"out.{name}"})
    ctx = context(small_disk)
    batch = rows(200_000)  # more than any buffer, so the write itself meets the full disk

    async def go() -> None:
        await sink.open(batch.schema, ctx)
        try:
            for piece in batch.to_batches(max_chunksize=20_000):
                await sink.write(piece)
                if name == "parquet":
                    await asyncio.to_thread(sink._flush, True)  # a row group per batch
        finally:
            await sink.abort()

    with pytest.raises(OSError) as caught:
        asyncio.run(go())
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(small_disk / f"out.{name}")
    assert (small_disk / f"out.{name}").read_bytes() == OLD


@pytest.mark.parametrize("name", list(SINKS))
def test_a_retried_commit_after_a_failed_one_fails_again(small_disk: Path, name: str) -> None:
    error, sink = failure_of(name, small_disk)
    with pytest.raises(type(error)):
        asyncio.run(sink.commit())
    assert (small_disk / f"out.{name}").read_bytes() == OLD


@pytest.mark.parametrize("name", list(SINKS))
def test_a_read_only_file_system_names_the_destination(read_only_disk: Path, name: str) -> None:
    error, _ = failure_of(name, read_only_disk)
    assert os_error_in(error).errno == errno.EROFS
    assert str(read_only_disk) in str(error)
    assert list(read_only_disk.iterdir()) == []


@pytest.mark.parametrize("name", list(SINKS))
def test_a_run_on_a_full_disk_fails_with_the_path_and_keeps_the_old_file(
    small_disk: Path, name: str
) -> None:
    (small_disk.parent / "in.csv").write_text(
        "id,text\n" + "".join(f"{i},{uuid.uuid4()}\n" for i in range(20_000))
    )
    pipeline = small_disk.parent / "p.yaml"
    pipeline.write_text(
        yaml.safe_dump(
            {
                "source": {"csv": {"path": "in.csv"}},
                "sink": {name: {"path": f"small/out.{name}"}},
                "engine": {"retry": {"max_attempts": 2, "initial_delay": 0.01}},
            }
        )
    )
    engine = PipelineEngine(
        compile_plan(load_pipeline(str(pipeline))), log=RunLog("t", stream=io.StringIO())
    )
    with pytest.raises(QuiverError) as caught:
        asyncio.run(engine.run())
    assert "no space left" in str(caught.value).lower()
    assert str(small_disk / f"out.{name}") in str(caught.value)
    assert (small_disk / f"out.{name}").read_bytes() == OLD
    assert sorted(p.name for p in small_disk.iterdir()) == sorted(f"out.{n}" for n in SINKS)


@pytest.mark.parametrize("name", ["csv", "jsonl", "arrow"])
def test_standard_output_on_a_full_device_fails_the_run(tmp_path: Path, name: str) -> None:
    (tmp_path / "in.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(100_000)))
    options: dict[str, Any] = {"path": "-"}
    if name == "arrow":
        options["format"] = "stream"
    (tmp_path / "p.yaml").write_text(
        yaml.safe_dump({"source": {"csv": {"path": "in.csv"}}, "sink": {name: options}})
    )
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [QUIVER, "run", "p.yaml"], cwd=tmp_path, stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert done.returncode != 0
    assert "no space left" in done.stderr.lower(), done.stderr
    assert "Traceback" not in done.stderr
