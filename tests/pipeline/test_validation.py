"""`quiver validate` and the loading of pipeline files: every problem in one pass, duplicate
keys, colliding paths, missing inputs, column names bound against the input, routes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from quiver.pipeline.config import load_pipeline
from quiver.runtime.errors import ConfigError


def problems(tmp_path: Path, text: str, name: str = "pipe.yaml") -> list[str]:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_pipeline(path, environ={})
    return [d.render() for d in err.value.details]


def test_a_key_written_twice_is_refused_with_both_positions(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "steps:\n"
        "  read: {csv: {path: a.csv}}\n"
        "  out: {csv: {path: out.csv}}\n"
        "  read: {csv: {path: b.csv}}\n"
        "connections:\n"
        "  - {from: read, to: out}\n",
    )
    assert len(found) == 1
    assert "key 'read' is written twice" in found[0]
    assert "first at " + str(tmp_path / "pipe.yaml") + ":2:3" in found[0]
    assert "again at " + str(tmp_path / "pipe.yaml") + ":4:3" in found[0]


def test_a_duplicate_option_inside_a_step_is_refused(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "source:\n  csv:\n    path: a.csv\n    path: b.csv\nsink: {csv: {path: out.csv}}\n",
    )
    assert any("key 'path' is written twice" in f and ":3:5" in f and ":4:5" in f for f in found)


def test_nested_anchors_in_a_pipeline_file_are_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    previous = "a"
    for name in "bcdefg":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    started = time.perf_counter()
    found = problems(tmp_path, "\n".join(lines) + "\n")
    assert time.perf_counter() - started < 1.0
    assert "aliases (*name) expand this document" in found[0]


def test_unknown_keys_and_graph_errors_are_reported_in_one_pass(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "steps:\n"
        "  src: {csv: {path: in.csv}}\n"
        "  out: {csv: {path: out.csv}}\n"
        "connections:\n"
        "  - {from: src, to: outt}\n"
        "  - {form: src, to: out}\n"
        "unknown_top: 1\n"
        "on_error: {polcy: reject}\n"
        "taps:\n"
        "  - {step: nope}\n",
    )
    text = "\n".join(found)
    assert "unknown key 'unknown_top'" in text
    assert "unknown key 'polcy'" in text
    assert "unknown key 'form'" in text
    assert "unknown step 'outt'; did you mean 'out'?" in text
    assert "tap on unknown step 'nope'" in text
