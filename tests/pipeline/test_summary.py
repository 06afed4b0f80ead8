"""The summary `quiver run` prints and the report it writes: rows written per sink, rejected
rows that agree between the table and the line, and no wrapping when not on a terminal."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.pipeline.test_cli import QUIVER, env, quiver


def test_a_fan_out_counts_rows_read_once_and_rows_written_per_sink(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id\n1\n2\n3\n")
    (tmp_path / "p.yaml").write_text(
        "steps:\n"
        "  src: {csv: {path: in.csv}}\n"
        "  a: {csv: {path: a.csv}}\n"
        "  b: {csv: {path: b.csv}}\n"
        "  c: {jsonl: {path: c.jsonl}}\n"
        "connections:\n"
        "  - {from: src, to: [a, b, c]}\n"
    )
    done = quiver("run", "p.yaml", "--report", "r.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "3 rows read, written: 3 to a, 3 to b, 3 to c, 0 rejected" in done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["rows_read"] == 3
    assert report["rows_written_by_sink"] == {"a": 3, "b": 3, "c": 3}
    assert report["rows_written"] == 9
    assert {n: s["rows_written"] for n, s in report["steps"].items()} == {
        "src": 0,
        "a": 3,
        "b": 3,
        "c": 3,
    }


def test_a_failed_run_says_nothing_was_written_and_its_rejects_agree(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,total\n1,x\n2,y\n3,z\n4,w\n5,6\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv, batch_rows: 100}}\n"
        "processors:\n"
        "  - validate: {schema: {total: int}}\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    done = quiver("run", "p.yaml", "--report", "r.json", cwd=tmp_path)
    assert done.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    rejected = report["steps"]["validate"]["rejected"]
    assert rejected == 4
    assert report["rejected"] == rejected
    assert report["rows_written"] == 0
    assert f"5 rows read, nothing written, {rejected} rejected" in done.stderr


def test_the_summary_is_not_wrapped_when_not_on_a_terminal(tmp_path: Path) -> None:
    long = "a_step_with_a_name_long_enough_to_push_the_table_past_eighty_columns"
    (tmp_path / "in.csv").write_text("id\n1\n")
    (tmp_path / "p.yaml").write_text(
        f"steps:\n  {long}: {{csv: {{path: in.csv}}}}\n  out: {{csv: {{path: out.csv}}}}\n"
        f"connections:\n  - {{from: {long}, to: out}}\n"
    )
    plain = {k: v for k, v in env().items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(
        [*QUIVER, "run", "p.yaml"],
        cwd=tmp_path,
        env=plain,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(long in line and "source" in line and "csv" in line for line in lines), lines
    assert max(len(line) for line in lines) > 80
    assert "1 rows read, 1 written, 0 rejected" in done.stderr


def test_dry_run_tables_are_not_wrapped_when_not_on_a_terminal(tmp_path: Path) -> None:
    wide = "a_column_with_a_name_long_enough_to_push_the_dry_run_table_past_eighty"
    (tmp_path / "in.csv").write_text(f"{wide},{wide}_too\n1,2\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    plain = {k: v for k, v in env().items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(
        [*QUIVER, "run", "p.yaml", "--dry-run"],
        cwd=tmp_path,
        env=plain,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert any(wide in line and f"{wide}_too" in line for line in done.stdout.splitlines())


def test_the_rejects_file_is_named_as_the_quickstart_shows_it(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "in.csv").write_text("id\n1\nx\n")
    (project / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors: [{cast: {columns: {id: int}}}]\n"
        "sink: {csv: {path: out/ok.csv}}\n"
        "on_error: {policy: reject, rejects: out/rejects.csv}\n"
    )
    done = quiver("run", "p.yaml", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("; rejects in out/rejects.csv"), done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = quiver("run", str(project / "p.yaml"), cwd=elsewhere)
    assert done.stderr.strip().endswith(f"; rejects in {project / 'out' / 'rejects.csv'}")
