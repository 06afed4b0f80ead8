"""Fixtures of the end-to-end tests: run the installed ``quiver`` command in a subprocess, as a
user would, inside the test's own temporary directory, and read what it wrote.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def quiver_command() -> list[str]:
    """The ``quiver`` console script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("quiver")
    if script.exists():
        return [str(script)]
    found = shutil.which("quiver")
    if found is None:
        pytest.fail("the quiver command is not installed: run `make install`")
    return [found]


def quiver_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a run: no colours, a wide terminal, no stray pipeline variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb", "PYTHONUNBUFFERED": "1"})
    env.update(extra or {})
    return env


@dataclass
class Run:
    """The outcome of one ``quiver`` invocation."""

    args: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def explain(self) -> str:
        return (
            f"quiver {' '.join(self.args)} exited {self.code}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


QuiverRunner = Callable[..., Run]


@pytest.fixture
def quiver(tmp_path: Path) -> QuiverRunner:
    """Run ``quiver ARGS...`` in ``tmp_path`` (or ``cwd``) and return its :class:`Run`."""

    def run(
        *args: str,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> Run:
        proc = subprocess.run(
            [*quiver_command(), *args],
            cwd=cwd or tmp_path,
            env=quiver_env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(list(args), proc.returncode, proc.stdout, proc.stderr)

    return run


def write_pipeline(directory: Path, doc: dict[str, Any] | str, name: str = "pipeline.yaml") -> Path:
    """Write a pipeline file (a mapping dumped as YAML, or YAML text kept as written)."""
    path = directory / name
    text = doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def copy_example(name: str, target: Path) -> Path:
    """Copy ``examples/<name>`` into ``target`` so a run writes nothing into the repository."""
    source = EXAMPLES / name
    if not source.is_dir():
        pytest.fail(f"example folder {source} is missing")
    destination = target / name.replace("/", "_")
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("output", "out"))
    return destination
