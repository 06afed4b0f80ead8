"""The select processor."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from quiver.pipeline.component import LINE_COLUMN, RunContext, component_info
from quiver.pipeline.processors.select import SelectConfig, SelectProcessor
from quiver.runtime.errors import ConfigError, PermanentError

from .contract import ORDERS, batch, make, process, rows_of


def test_select_keeps_listed_columns_in_order_and_the_line_column(run_ctx: RunContext) -> None:
    out = process(
        make(SelectProcessor, {"columns": ["c", "a"]}), batch([{"a": 1, "b": 2, "c": 3}]), run_ctx
    )
    assert out.batch is not None and out.batch.schema.names == ["c", "a", LINE_COLUMN]


def test_select_exclude_drops_columns(run_ctx: RunContext) -> None:
    out = process(make(SelectProcessor, {"exclude": ["b"]}), batch([{"a": 1, "b": 2}]), run_ctx)
    assert rows_of(out) == [{"a": 1}]


def test_select_unknown_column_is_an_error_with_a_suggestion(run_ctx: RunContext) -> None:
    with pytest.raises(PermanentError, match="did you mean 'total'"):
        process(make(SelectProcessor, {"columns": ["totl"]}), batch([{"total": 1}]), run_ctx)


def test_select_needs_exactly_one_of_columns_or_exclude() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        component_info(SelectProcessor).config.model_validate({"columns": ["a"], "exclude": ["b"]})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"columns": []}, "`columns` is empty"),
        ({"columns": ["id", "total", "id"]}, "'id' listed more than once"),
        ({"exclude": ["id", "id"]}, "'id' listed more than once"),
    ],
)
def test_select_lists_that_keep_nothing_or_repeat_a_name_are_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        SelectConfig.model_validate(options)


def test_select_excluding_every_column_is_refused(run_ctx: RunContext) -> None:
    proc = make(SelectProcessor, {"exclude": ["id", "total", "country"]})
    with pytest.raises(ConfigError, match="drops every column"):
        process(proc, batch(ORDERS), run_ctx)
