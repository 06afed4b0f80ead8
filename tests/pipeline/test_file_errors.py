"""File system errors of outputs are sorted once (runtime.delivery.file_error): a full disk, a
read-only file system or a directory where a file should be fail at once with a message naming
the path; nothing is retried and nothing is left behind."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pipeline.test_cli import quiver


def mounted(where: Path, options: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    yield from mounted(tmp_path / "tiny", "size=64k")


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    yield from mounted(tmp_path / "ro", "ro,size=64k")


def big_input(folder: Path) -> None:
    rows = "".join(f"{i},{i * 7919 % 100003}.{i % 97:02d}\n" for i in range(20_000))
    (folder / "in.csv").write_text("a,b\n" + rows)


def run(folder: Path, sink_path: str) -> tuple[int, str, dict[str, object]]:
    big_input(folder)
    (folder / "p.yaml").write_text(
        f"source: {{csv: {{path: in.csv}}}}\nsink: {{csv: {{path: '{sink_path}'}}}}\n"
    )
    done = quiver("run", "p.yaml", "--report", "report.json", cwd=folder)
    return done.returncode, done.stderr, json.loads((folder / "report.json").read_text())


def test_a_full_disk_says_no_space_left_on_the_path(tmp_path: Path, tiny_disk: Path) -> None:
    code, stderr, report = run(tmp_path, "tiny/out.csv")
    assert code == 1
    assert f"no space left on {tiny_disk / 'out.csv'}" in " ".join(stderr.split())
    assert "unexpected error" not in stderr
    assert report["steps"]["sink"]["retries"] == 0  # type: ignore[index]
    assert list(tiny_disk.iterdir()) == []


@pytest.mark.parametrize("sink_path", ["ro/out.csv", "ro/new/out.csv"])
def test_a_read_only_file_system_fails_at_once(
    tmp_path: Path, read_only_disk: Path, sink_path: str
) -> None:
    code, stderr, report = run(tmp_path, sink_path)
    assert code == 1
    assert "is on a read-only file system" in stderr
    assert report["steps"]["sink"]["retries"] == 0  # type: ignore[index]


def test_an_output_path_naming_a_directory_fails_at_once(tmp_path: Path) -> None:
    (tmp_path / "out.csv").mkdir()
    code, stderr, report = run(tmp_path, "out.csv")
    assert code == 1
    assert f"{tmp_path / 'out.csv'} is a directory" in " ".join(stderr.split())
    assert report["steps"]["sink"]["retries"] == 0  # type: ignore[index]


def test_a_full_disk_under_the_rejects_file_names_the_rejects_file(
    tmp_path: Path, tiny_disk: Path
) -> None:
    rows = "".join(f"{i},{'not a number ' * 20}\n" for i in range(2_000))
    (tmp_path / "in.csv").write_text("id,total\n" + rows)
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors: [{validate: {schema: {total: int}}}]\n"
        "sink: {csv: {path: out.csv}}\n"
        "on_error: {policy: reject, rejects: tiny/rejects.csv}\n"
    )
    done = quiver("run", "p.yaml", cwd=tmp_path)
    assert done.returncode == 1
    text = " ".join(done.stderr.split())
    assert f"no space left on {tiny_disk / 'rejects.csv'}" in text
    assert "unexpected error" not in text and "--debug" not in text
    assert list(tiny_disk.iterdir()) == []
    assert not (tmp_path / "out.csv").exists()


def test_a_second_writer_of_one_temporary_file_fails_at_once_without_truncating_it(
    tmp_path: Path,
) -> None:
    from quiver.pipeline.output import AtomicOutput
    from quiver.runtime.errors import PermanentError

    first = AtomicOutput(str(tmp_path / "out.csv"), "run1", where="sink 'a'")
    stream = first.open()
    stream.write(b"a\n1\n")
    stream.flush()
    second = AtomicOutput(str(tmp_path / "out.csv"), "run1", where="sink 'b'")
    with pytest.raises(PermanentError) as err:
        second.open()
    assert "is being written by another writer at the same time" in str(err.value)
    first.commit()
    assert (tmp_path / "out.csv").read_bytes() == b"a\n1\n"
