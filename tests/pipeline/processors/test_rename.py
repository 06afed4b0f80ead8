"""The rename processor."""

from __future__ import annotations

import pytest

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.rename import RenameProcessor
from quiver.runtime.errors import PermanentError

from .contract import batch, make, process, rows_of


def test_rename_renames_and_refuses_duplicates(run_ctx: RunContext) -> None:
    out = process(
        make(RenameProcessor, {"columns": {"a": "x"}}), batch([{"a": 1, "b": 2}]), run_ctx
    )
    assert rows_of(out) == [{"x": 1, "b": 2}]
    with pytest.raises(PermanentError, match="duplicate column"):
        process(make(RenameProcessor, {"columns": {"a": "b"}}), batch([{"a": 1, "b": 2}]), run_ctx)
