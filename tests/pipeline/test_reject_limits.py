"""Reject limits: `on_error.max_rejects` (a count) and `on_error.max_reject_ratio` (a share of
the rows read), and `quiver run --max-rejects / --max-reject-ratio` overriding them. A run over
its limit fails before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pipeline.test_cli import quiver

# 20 rows, 3 of them (lines 3, 8 and 15) with a total that is not a number
ROWS = "id,total\n" + "".join(f"{i},{'x' if i in (2, 7, 14) else i * 10}\n" for i in range(1, 21))


def pipeline(tmp_path: Path, limits: str = "") -> Path:
    (tmp_path / "in.csv").write_text(ROWS)
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - validate: {schema: {total: int}}\n"
        "sink: {csv: {path: out/good.csv}}\n"
        f"on_error: {{policy: reject, rejects: out/rejects.csv{limits}}}\n"
    )
    return tmp_path


def outputs(folder: Path) -> list[str]:
    out = folder / "out"
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


@pytest.mark.parametrize(
    ("limits", "args", "message"),
    [
        (", max_rejects: 2", [], "more than 2 rows rejected"),
        ("", ["--max-rejects", "2"], "more than 2 rows rejected"),
        (", max_reject_ratio: 0.1", [], "3 of 20 rows rejected (15.0%), more than the 10.0%"),
        ("", ["--max-reject-ratio", "0.1"], "3 of 20 rows rejected (15.0%), more than the 10.0%"),
        (", max_rejects: 100", ["--max-rejects", "1"], "more than 1 rows rejected"),
    ],
)
def test_a_run_over_its_reject_limit_fails_and_writes_nothing(
    tmp_path: Path, limits: str, args: list[str], message: str
) -> None:
    folder = pipeline(tmp_path, limits)
    done = quiver("run", "p.yaml", "--report", "report.json", *args, cwd=folder)
    assert done.returncode == 1, done.stderr
    assert message in " ".join(done.stderr.split())
    assert outputs(folder) == []
    report = json.loads((folder / "report.json").read_text())
    assert report["error"]["code"] == "TOO_MANY_ERRORS"


@pytest.mark.parametrize(
    ("limits", "args"),
    [
        (", max_rejects: 3", []),
        (", max_reject_ratio: 0.15", []),
        (", max_reject_ratio: 0.01", ["--max-reject-ratio", "0.2"]),
    ],
)
def test_a_run_within_its_reject_limit_succeeds(
    tmp_path: Path, limits: str, args: list[str]
) -> None:
    folder = pipeline(tmp_path, limits)
    done = quiver("run", "p.yaml", *args, cwd=folder)
    assert done.returncode == 0, done.stderr
    assert outputs(folder) == ["good.csv", "rejects.csv"]
    assert len((folder / "out/rejects.csv").read_text().splitlines()) == 4


def test_reject_limits_need_the_reject_policy(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(ROWS)
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
        "on_error: {max_reject_ratio: 0.5}\n"
    )
    done = quiver("run", "p.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "`max_reject_ratio` has no effect with `policy: fail_fast`" in done.stderr
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\nsink: {csv: {path: out.csv}}\n"
    )
    done = quiver("run", "p.yaml", "--max-rejects", "3", cwd=tmp_path)
    assert done.returncode == 2
    assert "--max-rejects and --max-reject-ratio need `on_error: {policy: reject}`" in " ".join(
        done.stderr.split()
    )


def test_a_ratio_out_of_range_is_refused(tmp_path: Path) -> None:
    folder = pipeline(tmp_path, ", max_reject_ratio: 5")
    done = quiver("run", "p.yaml", cwd=folder)
    assert done.returncode == 2
    assert "on_error.max_reject_ratio" in done.stderr
