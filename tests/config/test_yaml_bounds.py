"""The YAML reader refuses what would take unbounded time or memory: huge files, and aliases
that expand exponentially."""

from __future__ import annotations

import time

import pytest

from quiver.config.yaml_source import MAX_ALIAS_EXPANSION, MAX_YAML_BYTES, load_yaml
from quiver.runtime.errors import ConfigError


def nested_anchors(levels: int) -> str:
    """Each anchor lists the previous one nine times: 9**levels values once expanded."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    previous = "a"
    for name in "bcdefghijk"[: levels - 1]:
        lines.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
        previous = name
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("levels", [7, 8, 10])
def test_nested_anchors_are_refused_at_once_with_their_position(levels: int) -> None:
    text = nested_anchors(levels)
    assert len(text) < 600
    started = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_yaml(text, "bomb.yaml")
    assert time.perf_counter() - started < 1.0
    detail = err.value.details[0]
    assert f"more than {MAX_ALIAS_EXPANSION:,} values" in detail.message
    assert detail.where.startswith("bomb.yaml:")
    assert "anchors" in detail.fix


def test_aliases_within_the_bound_still_work() -> None:
    doc = load_yaml("base: &b {x: 1}\none: *b\ntwo: {<<: *b, y: 2}\n", "ok.yaml")
    assert doc.data == {"base": {"x": 1}, "one": {"x": 1}, "two": {"x": 1, "y": 2}}


def test_a_file_larger_than_the_bound_is_refused_with_its_size() -> None:
    text = "a: '" + "x" * MAX_YAML_BYTES + "'\n"
    with pytest.raises(ConfigError) as err:
        load_yaml(text, "big.yaml")
    detail = err.value.details[0]
    assert detail.where == "big.yaml"
    assert f"{len(text):,} bytes" in detail.message
