"""The transform processor: set, rename and delete columns and map keys."""

from __future__ import annotations

from typing import cast

import pytest
from pydantic import ValidationError

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.field_paths import parse_path, read_path
from quiver.pipeline.processors.transform import TransformConfig, TransformProcessor
from quiver.runtime.errors import PermanentError

from .contract import make, process
from .telemetry_rows import spans


def _run(options: dict[str, object], run_ctx: RunContext) -> object:
    out = process(make(TransformProcessor, options), spans(), run_ctx)
    assert out.batch is not None
    return out.batch


def _at(batch: object, path: str) -> list[object]:
    return cast(list[object], read_path(batch, parse_path(path)).to_pylist())


def test_set_writes_literals_into_columns_and_map_keys(run_ctx: RunContext) -> None:
    out = _run({"set": {"resource.env": "prod", "retries": 3, "attributes.sampled": True}}, run_ctx)
    assert _at(out, "resource.env") == ["prod"] * 5
    assert _at(out, "retries") == [3] * 5
    assert _at(out, 'attributes["sampled"]') == ["true"] * 5
    assert _at(out, "resource.service.name") == ["checkout", "checkout", "cart", "checkout", "cart"]


def test_set_fills_templates_from_other_paths(run_ctx: RunContext) -> None:
    out = _run({"set": {"attributes.route": "{attributes.http.method} {{{span_name}}}"}}, run_ctx)
    assert _at(out, "attributes.route") == [
        "GET {span0}",
        "POST {span1}",
        "GET {span2}",
        "GET {span3}",
        " {span4}",
    ]


def test_rename_moves_map_keys_only_where_present(run_ctx: RunContext) -> None:
    out = _run(
        {
            "rename": {
                "attributes.http.method": "attributes.http.request.method",
                "span_name": "name",
            }
        },
        run_ctx,
    )
    assert _at(out, "attributes.http.request.method") == ["GET", "POST", "GET", "GET", None]
    assert _at(out, "attributes.http.method") == [None] * 5
    assert "name" in out.schema.names and "span_name" not in out.schema.names  # type: ignore[attr-defined]


def test_rename_can_move_a_column_into_a_map(run_ctx: RunContext) -> None:
    out = _run({"rename": {"span_name": "attributes.span"}}, run_ctx)
    assert _at(out, "attributes.span")[:2] == ["span0", "span1"]
    assert "span_name" not in out.schema.names  # type: ignore[attr-defined]


def test_delete_removes_columns_and_keys(run_ctx: RunContext) -> None:
    out = _run({"delete": ['attributes["user.email"]', "body"]}, run_ctx)
    assert _at(out, "attributes.user.email") == [None] * 5
    assert "body" not in out.schema.names  # type: ignore[attr-defined]
    assert _at(out, "attributes.http.status_code")[:2] == ["200", "500"]


def test_renaming_a_missing_column_names_it(run_ctx: RunContext) -> None:
    with pytest.raises(PermanentError, match="spanname"):
        _run({"rename": {"spanname": "x"}}, run_ctx)


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"delete": ["attributes[oops"]}, ("delete",)),
        ({"set": {"resource.": "x"}}, ("set",)),
        ({"set": {"x": "{unclosed"}}, ("set",)),
        ({"sett": {}}, ("sett",)),
    ],
)
def test_bad_paths_and_templates_are_refused_with_their_location(
    options: dict[str, object], where: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as info:
        TransformConfig.model_validate(options)
    assert info.value.errors()[0]["loc"][: len(where)] == where
