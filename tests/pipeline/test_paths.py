"""Input paths of the file steps: globs in sorted order, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from quiver.pipeline.paths import expand_paths
from quiver.runtime.errors import PermanentError

ROOT = Path(__file__).resolve().parents[2]


def test_globs_expand_in_sorted_order_without_duplicates(tmp_path: Path) -> None:
    for name in ["b.csv", "a.csv", "sub/c.csv"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    found = expand_paths(["*.csv", "**/*.csv"], str(tmp_path))
    assert found == [str(tmp_path / n) for n in ["a.csv", "b.csv", "sub/c.csv"]]
    with pytest.raises(PermanentError, match="is a directory"):
        expand_paths("sub", str(tmp_path))


# ----- file names that are not UTF-8 ----------------------------------------------------------


def _quiver(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "quiver"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


def _odd_name(stem: str, ext: str) -> str:
    """A file name holding the byte 0xFF, which is not UTF-8 (Python keeps it as U+DCFF)."""
    return os.fsdecode(stem.encode() + b"\xff." + ext.encode())


def _write_input(directory: Path, kind: str, name: str, value: int) -> None:
    table = pa.table({"a": [value]})
    target = os.path.join(str(directory), name)
    if kind == "csv":
        with open(target, "w") as fh:
            fh.write(f"a\n{value}\n")
    elif kind == "jsonl":
        with open(target, "w") as fh:
            fh.write(f'{{"a": {value}}}\n')
    elif kind == "parquet":
        pq.write_table(table, pa.OSFile(os.fsencode(target), "wb"))
    else:
        with pa.OSFile(os.fsencode(target), "wb") as sink, ipc.new_file(sink, table.schema) as w:
            w.write_table(table)


@pytest.mark.parametrize(
    ("kind", "ext"),
    [("csv", "csv"), ("jsonl", "jsonl"), ("parquet", "parquet"), ("arrow", "arrow")],
)
def test_a_glob_reads_files_whose_names_are_not_utf8(tmp_path: Path, kind: str, ext: str) -> None:
    _write_input(tmp_path, kind, _odd_name("in", ext), 1)
    _write_input(tmp_path, kind, f"in2.{ext}", 2)
    (tmp_path / "p.yaml").write_text(
        f'source: {{{kind}: {{path: "in*.{ext}"}}}}\nsink: {{csv: {{path: out.csv}}}}\n'
    )
    done = _quiver(tmp_path, "run", "p.yaml", "--quiet")
    assert done.returncode == 0, done.stderr
    assert sorted((tmp_path / "out.csv").read_text().split()) == ["1", "2", "a"]


def test_resume_records_and_skips_files_whose_names_are_not_utf8(tmp_path: Path) -> None:
    _write_input(tmp_path, "csv", _odd_name("in", "csv"), 1)
    _write_input(tmp_path, "csv", "in2.csv", 2)
    (tmp_path / "p.yaml").write_text(
        'source: {csv: {path: "in*.csv"}}\nsink: {csv: {path: "out/{stem}.csv"}}\n'
    )
    first = _quiver(tmp_path, "run", "p.yaml", "--quiet", "--resume")
    assert first.returncode == 0, first.stderr
    outputs = sorted(os.listdir(tmp_path / "out"))
    assert os.fsencode(outputs[-1]).endswith(b"\xff.csv"), outputs
    again = _quiver(tmp_path, "run", "p.yaml", "--resume")
    assert again.returncode == 0, again.stderr
    assert "0 rows read" in again.stdout + again.stderr
