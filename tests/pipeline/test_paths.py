"""Input paths of the file steps: globs in sorted order, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from quiver.pipeline.paths import expand_paths
from quiver.runtime.errors import PermanentError


def test_globs_expand_in_sorted_order_without_duplicates(tmp_path: Path) -> None:
    for name in ["b.csv", "a.csv", "sub/c.csv"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    found = expand_paths(["*.csv", "**/*.csv"], str(tmp_path))
    assert found == [str(tmp_path / n) for n in ["a.csv", "b.csv", "sub/c.csv"]]
    with pytest.raises(PermanentError, match="is a directory"):
        expand_paths("sub", str(tmp_path))
