"""Values written by the file sinks are in their shortest exact form."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from quiver.pipeline.component import kept_text_column
from quiver.pipeline.sinks.csv import CsvSinkConfig, serialize_csv
from quiver.pipeline.sinks.jsonl import json_texts
from quiver.pipeline.value_text import (
    decimal_text,
    plain_decimal,
    scalar_texts,
    with_kept_decimal_text,
)


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("202099.64", "202099.64"),
        ("56244", "56244"),
        ("56244.0", "56244"),
        ("100", "100"),
        ("-0.5", "-0.5"),
        ("0.000000001", "0.000000001"),
        ("0.0000001", "0.0000001"),
        ("-0.000000000", "0"),
        ("12345678901234567890.123456789", "12345678901234567890.123456789"),
    ],
)
def test_a_decimal_is_written_in_its_shortest_exact_form(text: str, written: str) -> None:
    column = pa.array([Decimal(text), None], pa.decimal128(38, 9))
    assert decimal_text(column).to_pylist() == [written, None]
    assert plain_decimal(Decimal(text)) == written


def test_a_decimal_of_negative_scale_has_no_exponent() -> None:
    column = pa.array([Decimal("1E+3")], pa.decimal128(10, -2))
    assert decimal_text(column).to_pylist() == ["1000"]


def test_floats_are_written_as_their_shortest_round_trip_text() -> None:
    column = pa.array([56244.0, 0.1, 202099.64, 1 / 3, -2.5e-8], pa.float64())
    texts = scalar_texts(column).to_pylist()
    assert texts[:3] == ["56244", "0.1", "202099.64"]
    assert [float(t) for t in texts] == column.to_pylist()


def test_the_csv_sink_writes_decimals_read_as_text_back_as_that_text() -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "account_value": pa.array(
                [Decimal("202099.64"), Decimal("56406.7"), Decimal("50000")], pa.decimal128(38, 9)
            ),
            "score": pa.array([60.0, 1.5, 10.0]),
        }
    )
    text = serialize_csv(batch, CsvSinkConfig(path=str(Path("x.csv"))), header=True)
    assert text.splitlines() == [
        "account_value,score",
        "202099.64,60",
        "56406.7,1.5",
        "50000,10",
    ]


def test_the_jsonl_sink_writes_decimals_as_their_shortest_exact_text() -> None:
    column = pa.array([Decimal("202099.640000000"), None], pa.decimal128(38, 9))
    assert [json.loads(t) for t in json_texts(column).to_pylist()] == ["202099.64", None]


def test_a_slice_of_a_decimal_column_is_written_by_its_own_values() -> None:
    column = pa.array([Decimal("0.000000001"), Decimal("2.50"), Decimal("3")], pa.decimal128(38, 9))
    assert decimal_text(column.slice(1)).to_pylist() == ["2.5", "3"]
    assert decimal_text(column.slice(0, 1)).to_pylist() == ["0.000000001"]


def test_kept_text_is_written_only_where_the_value_still_equals_it() -> None:
    values = [Decimal("1.5"), Decimal("7"), Decimal("2"), None]
    batch = pa.record_batch(
        {
            "a": pa.array(values, pa.decimal128(10, 2)),
            kept_text_column("a"): pa.array(["1.50", "7.0", "3.00", None], pa.string_view()),
        }
    )
    out = with_kept_decimal_text(batch)
    assert out.schema.names == ["a"]
    assert out.column("a").to_pylist() == ["1.50", "7.0", "2", None]


def test_kept_text_that_no_longer_fits_the_column_is_not_written() -> None:
    # the column was cast to scale 1 after its text was read at scale 2
    batch = pa.record_batch(
        {
            "a": pa.array([Decimal("1.2")], pa.decimal128(10, 1)),
            kept_text_column("a"): pa.array(["1.25"]),
            kept_text_column("gone"): pa.array(["1.0"]),
        }
    )
    out = with_kept_decimal_text(batch)
    assert out.schema.names == ["a"]
    assert pa.types.is_decimal(out.schema.field("a").type)  # left to its shortest form
    assert scalar_texts(out.column("a")).to_pylist() == ["1.2"]
