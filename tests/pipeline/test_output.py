"""Atomic output files: temp file, rename on commit, delete on abort, stale temps removed."""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quiver.pipeline import output as output_module
from quiver.pipeline.output import AtomicOutput, WritingBack, remove_stale_temps
from quiver.runtime.errors import PermanentError


def test_abort_leaves_nothing_and_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("previous")
    output = AtomicOutput(str(target), "run1")
    stream = output.open()
    stream.write(b"half written")
    assert (tmp_path / "out.csv.tmp-run1").exists()
    output.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    assert target.read_text() == "previous"


def test_commit_replaces_the_file_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "dir" / "out.csv"
    output = AtomicOutput(str(target), "run1")
    output.open().write(b"new")
    assert not target.exists()
    output.commit()
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.csv"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_an_output_is_handed_to_the_disk_as_it_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every WRITEBACK_BYTES written, the kernel is asked to start writing them out, so the
    fsync on commit does not wait for the whole file at once."""
    monkeypatch.setattr(output_module, "WRITEBACK_BYTES", 1000)
    path = tmp_path / "out.bin"
    chunks = [bytes([i]) * 600 for i in range(10)]
    with WritingBack(os.open(path, os.O_WRONLY | os.O_CREAT)) as file:
        for chunk in chunks:
            assert file.write(chunk) == 600
        assert (file.written, file.requested, file.requests) == (6000, 6000, 5)
    assert path.read_bytes() == b"".join(chunks)


def test_an_output_written_in_many_parts_commits_every_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output_module, "WRITEBACK_BYTES", 4096)
    target = tmp_path / "out.csv"
    output = AtomicOutput(str(target), "run1")
    stream = output.open()
    parts = [f"{i},{'x' * (i % 3000)}\n".encode() for i in range(2000)]
    for part in parts:
        stream.write(part)
    output.commit()
    assert target.read_bytes() == b"".join(parts)


def test_a_killed_writer_leaves_only_a_temp_file_that_the_next_run_removes(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out.csv"
    script = textwrap.dedent(
        f"""
        import sys, time
        from quiver.pipeline.output import AtomicOutput
        out = AtomicOutput({str(target)!r}, "killed")
        out.open().write(b"partial" * 1000)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        # while the writer lives, its temp file is left alone
        assert remove_stale_temps(str(target)) == []
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv.tmp-killed"]
    nxt = AtomicOutput(str(target), "next")
    nxt.open().write(b"complete")
    nxt.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    assert target.read_bytes() == b"complete"


def test_overwrite_and_create_dirs_can_be_refused(tmp_path: Path) -> None:
    (tmp_path / "out.csv").write_text("x")
    with pytest.raises(PermanentError, match="already exists"):
        AtomicOutput(str(tmp_path / "out.csv"), "r", overwrite=False).open()
    with pytest.raises(PermanentError, match="output directory does not exist"):
        AtomicOutput(str(tmp_path / "no" / "out.csv"), "r", create_dirs=False).open()


def test_compression_follows_the_extension(tmp_path: Path) -> None:
    output = AtomicOutput(str(tmp_path / "out.csv.gz"), "r")
    output.open().write(b"a,b\n1,2\n")
    output.commit()
    assert gzip.decompress((tmp_path / "out.csv.gz").read_bytes()) == b"a,b\n1,2\n"
