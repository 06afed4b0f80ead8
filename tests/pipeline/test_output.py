"""Atomic output files: temp file, rename on commit, delete on abort, stale temps removed."""

from __future__ import annotations

import gzip
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quiver.pipeline.output import AtomicOutput, remove_stale_temps
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
