"""One helper makes a batch match a schema fixed earlier (files of a glob, objects of a
listing, batches of a script, batches reaching a sink)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from quiver.pipeline.conform import SchemaMismatchError, cast_column, conform
from quiver.runtime.errors import PermanentError

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])


def test_a_batch_with_the_schema_is_returned_as_it_is() -> None:
    batch = pa.record_batch([[1], ["a"]], schema=SCHEMA)
    assert conform(batch, SCHEMA, where="a.csv", origin="the first file") is batch


def test_columns_are_matched_by_name_put_in_order_and_cast() -> None:
    batch = pa.record_batch({"name": ["a", "b"], "id": pa.array([1, 2], pa.int32())})
    out = conform(batch, SCHEMA, where="b.csv", origin="the first file")
    assert out.schema == SCHEMA
    assert out.to_pylist() == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]


def test_tables_keep_being_tables() -> None:
    table = pa.table({"id": pa.array([1], pa.int32()), "name": ["a"]})
    out = conform(table, SCHEMA, where="t", origin="the schema")
    assert isinstance(out, pa.Table)
    assert out.schema == SCHEMA


def test_the_result_carries_the_schema_metadata() -> None:
    schema = SCHEMA.with_metadata({"k": "v"})
    batch = pa.record_batch([[1], ["a"]], schema=SCHEMA.with_metadata({"other": "x"}))
    assert conform(batch, schema, where="w", origin="o").schema.metadata == {b"k": b"v"}


def test_missing_and_extra_columns_are_named_with_where_and_the_fix() -> None:
    batch = pa.record_batch({"id": [1], "colour": ["red"]})
    with pytest.raises(SchemaMismatchError) as info:
        conform(batch, SCHEMA, where="in/b.csv", origin="the first file", fix_columns="fix it")
    detail = info.value.details[0]
    assert detail.message == (
        "columns differ from those of the first file: missing ['name'], extra ['colour']"
    )
    assert detail.where == "in/b.csv"
    assert detail.fix == "fix it"
    assert isinstance(info.value, PermanentError)


def test_missing_columns_can_become_nulls_but_extra_ones_cannot() -> None:
    out = conform(
        pa.record_batch({"id": [1, 2]}), SCHEMA, where="", origin="earlier", missing="null"
    )
    assert out.to_pylist() == [{"id": 1, "name": None}, {"id": 2, "name": None}]
    with pytest.raises(SchemaMismatchError, match=r"extra \['x'\]") as info:
        conform(
            pa.record_batch({"id": [1], "x": [1]}), SCHEMA, where="", origin="e", missing="null"
        )
    assert "missing" not in info.value.details[0].message


def test_a_value_that_does_not_convert_names_the_column_and_keeps_the_arrow_error() -> None:
    batch = pa.record_batch({"id": ["12", "twelve"], "name": ["a", "b"]})
    with pytest.raises(SchemaMismatchError) as info:
        conform(batch, SCHEMA, where="obj", origin="the first object", fix_types="declare it")
    detail = info.value.details[0]
    assert detail.message.startswith(
        "column types differ from those of the first object: 'id' is string here but int64"
    )
    assert "twelve" in detail.message
    assert detail.fix == "declare it"
    assert isinstance(info.value.__cause__, pa.ArrowInvalid)


def test_text_becomes_a_time_of_day_which_arrow_cannot_cast() -> None:
    text = pa.chunked_array([["12:30:00", None], ["23:59:59.5"]])
    times = cast_column(text, pa.time64("us"))
    assert times.to_pylist() == [dt.time(12, 30), None, dt.time(23, 59, 59, 500_000)]
    with pytest.raises(pa.ArrowInvalid, match="'25:00:00' is not a valid time of day"):
        cast_column(pa.array(["25:00:00"]), pa.time64("us"))
    with pytest.raises(pa.ArrowInvalid, match="'noon' is not a valid time"):
        cast_column(pa.array(["noon"]), pa.time64("us"))
