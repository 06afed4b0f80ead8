"""The example plugin installs into a fresh virtual environment and works end to end:
``quiver plugins list``, ``quiver plugins describe`` and ``quiver run`` find it through its
entry points."""

from __future__ import annotations

import asyncio
import csv
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from quiver.pipeline.component import RunContext

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "examples" / "plugin-example"


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new venv that sees Quiver's environment and has the plugin installed (editable)."""
    base = tmp_path_factory.mktemp("plugin")
    source = base / "plugin-example"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("out", "*.egg-info"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    target = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Quiver and its dependencies come from the project environment (its .pth files included).
    parent = sysconfig.get_paths()["purelib"]
    (Path(target) / "_quiver_parent.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-e",
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    yield venv


def quiver(venv: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from quiver.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_plugins_list_shows_the_plugin_components_with_their_origin(plugin_venv: Path) -> None:
    done = quiver(plugin_venv, "plugins", "list")
    assert done.returncode == 0, done.stderr
    lines = {line.split("│")[2].strip(): line for line in done.stdout.splitlines() if "│" in line}
    for name in ("mask", "fake_people", "discard"):
        assert "quiver-plugin-example 0.1.0" in lines[name], done.stdout
    assert "Mask emails" in lines["mask"]


def test_plugins_describe_shows_the_config_model(plugin_venv: Path) -> None:
    done = quiver(plugin_venv, "plugins", "describe", "mask")
    assert done.returncode == 0, done.stderr
    assert "processor mask (quiver-plugin-example 0.1.0)" in done.stdout
    for option in ("emails", "phones", "keep_digits", "char"):
        assert option in done.stdout


def test_quiver_run_uses_the_plugin(plugin_venv: Path, tmp_path: Path) -> None:
    shutil.copy(PLUGIN / "pipeline.yaml", tmp_path / "pipeline.yaml")
    done = quiver(plugin_venv, "run", "pipeline.yaml", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(tmp_path / "out" / "people.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 500 and rows[0]["id"] == "1"
    for row in rows:
        local, _, domain = row["email"].partition("@")
        assert local[0].isalpha() and set(local[1:]) == {"*"} and "example." in domain
        assert row["phone"][:-4].count("*") == 7 and row["phone"][-4:].isdigit()


def test_a_bad_plugin_option_is_reported_with_its_location(
    plugin_venv: Path, tmp_path: Path
) -> None:
    (tmp_path / "p.yaml").write_text(
        "source: {fake_people: {rows: 3}}\n"
        "processors:\n"
        "  - mask: {emails: [email], keep_digit: 3}\n"
        "sink: {discard: {}}\n"
    )
    done = quiver(plugin_venv, "validate", "p.yaml", cwd=tmp_path)
    assert done.returncode == 2
    assert "p.yaml:3:" in done.stdout + done.stderr and "keep_digit" in done.stdout + done.stderr


def test_mask_processor_masks_in_place_and_keeps_nulls() -> None:
    sys.path.insert(0, str(PLUGIN / "src"))
    try:
        from quiver_plugin_example.mask import MaskConfig, MaskProcessor
    finally:
        sys.path.remove(str(PLUGIN / "src"))
    cfg = MaskConfig.model_validate(
        {"emails": ["e"], "phones": ["p"], "text": ["t"], "keep_chars": 2}
    )
    proc = MaskProcessor(cfg)
    batch = pa.record_batch(
        {
            "e": ["jane.doe@example.com", "not-an-email", None],
            "p": ["+33 6 12 34 56 78", "12", None],
            "t": ["secret", "ab", None],
            "id": [1, 2, 3],
        }
    )
    out = asyncio.run(proc.process(batch, RunContext("r", ".")))
    assert out.batch is not None
    assert out.batch.to_pydict() == {
        "e": ["j*******@example.com", "************", None],
        "p": ["*********78", "12", None],
        "t": ["****et", "ab", None],
        "id": [1, 2, 3],
    }
