"""Fixtures of the processor tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from quiver.pipeline.component import RunContext


@pytest.fixture
def countries(run_ctx: RunContext) -> str:
    Path(run_ctx.base_dir, "countries.csv").write_text(
        "code,name,region\nDE,Germany,EU\nFR,France,EU\n"
    )
    return "countries.csv"
