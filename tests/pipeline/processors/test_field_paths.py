"""Field paths: columns and map keys, read and written by the processors."""

from __future__ import annotations

import pyarrow as pa
import pytest

from quiver.pipeline.component import RunContext, internal_column
from quiver.pipeline.processors.field_paths import (
    FieldPath,
    delete_path,
    parse_path,
    read_path,
    rewrite_paths,
    write_path,
)
from quiver.pipeline.processors.filter import FilterProcessor
from quiver.runtime.errors import PermanentError

from .contract import make, process
from .telemetry_rows import spans


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("status_code", FieldPath("status_code")),
        ('attributes["http.method"]', FieldPath("attributes", "http.method")),
        ("attributes['http.method']", FieldPath("attributes", "http.method")),
        ("attributes.http.method", FieldPath("attributes", "http.method")),
        ("resource.service.name", FieldPath("resource_attributes", "service.name")),
        ('scope["x-y"]', FieldPath("scope_attributes", "x-y")),
        ('labels["env"]', FieldPath("labels", "env")),
    ],
)
def test_field_paths_name_columns_and_map_keys(text: str, path: FieldPath) -> None:
    assert parse_path(text) == path


@pytest.mark.parametrize("text", ['attributes["open', "attributes[http]", "", "resource."])
def test_malformed_field_paths_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="field path"):
        parse_path(text)


def test_reading_a_map_key_gives_null_where_it_is_missing() -> None:
    values = read_path(spans(), parse_path('attributes["http.method"]'))
    assert values.to_pylist() == ["GET", "POST", "GET", "GET", None]


def test_reading_a_key_of_a_column_that_is_not_a_map_says_so() -> None:
    with pytest.raises(PermanentError, match="not a map"):
        read_path(spans(), parse_path('span_name["x"]'))


def test_reading_an_unknown_column_suggests_the_near_name() -> None:
    with pytest.raises(PermanentError, match=r"atributes.*did you mean 'attributes'"):
        read_path(spans(), parse_path('atributes["x"]'))


def test_writing_a_map_key_replaces_it_only_where_a_value_is_given() -> None:
    b = spans()
    path = parse_path("attributes.http.method")
    out = write_path(b, path, pa.array(["PUT", None, None, None, "HEAD"]))
    assert read_path(out, path).to_pylist() == ["PUT", "POST", "GET", "GET", "HEAD"]
    # other keys and the key order of untouched rows stay
    assert out.column("attributes").to_pylist()[1] == b.column("attributes").to_pylist()[1]
    assert read_path(out, parse_path("attributes.user.email")).to_pylist()[0] == ("ann@example.com")


def test_writing_into_a_sliced_batch_keeps_the_rows_apart() -> None:
    b = spans().slice(2, 2)
    out = write_path(b, parse_path("resource.env"), pa.array(["a", "b"]))
    assert read_path(out, parse_path("resource.env")).to_pylist() == ["a", "b"]
    assert read_path(out, parse_path("resource.service.name")).to_pylist() == [
        "cart",
        "checkout",
    ]


def test_deleting_a_map_key_removes_it_from_every_row() -> None:
    out = delete_path(spans(), parse_path('attributes["user.email"]'))
    assert all(k != "user.email" for m in out.column("attributes").to_pylist() for k, _ in m)
    assert read_path(out, parse_path("attributes.http.method")).to_pylist()[1] == "POST"


def test_paths_inside_string_literals_are_left_alone() -> None:
    text, paths = rewrite_paths("attributes.http.method = 'attributes.x' or resource.a = 'b'")
    assert paths == [FieldPath("attributes", "http.method"), FieldPath("resource_attributes", "a")]
    assert "'attributes.x'" in text
    text, paths = rewrite_paths("attributes['a'] = 'it''s attributes.b' and labels[\"c\"] > 1")
    assert paths == [FieldPath("attributes", "a"), FieldPath("labels", "c")]
    first, second = (internal_column(f"path{i}") for i in range(2))
    assert text == f"\"{first}\" = 'it''s attributes.b' and \"{second}\" > 1"


def test_filter_addresses_attributes_and_resource_attributes(run_ctx: RunContext) -> None:
    proc = make(
        FilterProcessor,
        {
            "expression": "attributes[\"http.method\"] = 'GET' "
            "and resource.service.name = 'checkout'"
        },
    )
    out = process(proc, spans(), run_ctx)
    assert out.batch is not None
    assert out.batch.column("span_name").to_pylist() == ["span0", "span3"]
    assert out.batch.schema == spans().schema
