"""The validate processor: conversions, rules, rejected rows with line, column, value and reason."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext, component_info
from quiver.pipeline.processors.validate import ValidateProcessor
from quiver.runtime.errors import PermanentError

from .contract import batch, make, process, rows_of


def test_validate_converts_every_type(run_ctx: RunContext) -> None:
    proc = make(
        ValidateProcessor,
        {
            "schema": {
                "i": "int",
                "l": "long",
                "f": "float",
                "d": {"type": "decimal", "scale": 2, "precision": 10},
                "s": "str",
                "b": "bool",
                "day": "date",
                "at": "datetime",
                "t": "time",
                "eu": {"type": "date", "format": "%d/%m/%Y"},
            }
        },
    )
    b = batch(
        [
            {
                "i": "42",
                "l": "9000000000",
                "f": "1.5",
                "d": "12.345",
                "s": "x",
                "b": "true",
                "day": "2024-02-29",
                "at": "2024-01-02 03:04:05",
                "t": "12:30:00",
                "eu": "31/12/2023",
            }
        ]
    )
    out = process(proc, b, run_ctx)
    assert out.errors == []
    (row,) = rows_of(out)
    assert row == {
        "i": 42,
        "l": 9_000_000_000,
        "f": 1.5,
        "d": decimal.Decimal("12.35"),
        "s": "x",
        "b": True,
        "day": dt.date(2024, 2, 29),
        "at": dt.datetime(2024, 1, 2, 3, 4, 5),
        "t": dt.time(12, 30),
        "eu": dt.date(2023, 12, 31),
    }
    assert out.batch is not None and out.batch.schema.field("i").type == pa.int32()


@pytest.mark.parametrize(
    ("rule", "value", "reason"),
    [
        ("int", "1.5", "expected int"),
        ("int", "abc", "expected int"),
        ("int", "3000000000", "expected int"),
        ("long", "12x", "expected long"),
        ("float", "one", "expected float"),
        ("bool", "maybe", "expected bool"),
        ("date", "2023-02-30", "expected date"),
        (
            {"type": "date", "format": "%d/%m/%Y"},
            "2023-12-31",
            "expected date in the format %d/%m/%Y",
        ),
        ("datetime", "yesterday", "expected datetime"),
        ("time", "25:00", "expected time"),
        ({"type": "decimal", "precision": 4, "scale": 2}, "123.45", "expected decimal(4,2)"),
        ({"required": True}, "", "required value is missing"),
        ({"required": True}, None, "required value is missing"),
        ({"pattern": "[a-z]+@[a-z]+"}, "Bob@x", "does not match the pattern [a-z]+@[a-z]+"),
        ({"type": "int", "min": 0}, "-1", "below the minimum 0"),
        ({"type": "float", "max": 9.5}, "9.6", "above the maximum 9.5"),
        ({"type": "date", "min": "2024-01-01"}, "2023-12-31", "below the minimum 2024-01-01"),
        ({"min_length": 3}, "ab", "shorter than 3 characters"),
        ({"max_length": 3}, "abcd", "longer than 3 characters"),
        ({"enum": ["DE", "FR"]}, "US", "not one of DE, FR"),
        ({"type": "int", "enum": [1, 2]}, "3", "not one of 1, 2"),
    ],
)
def test_validate_rejects_bad_values_with_line_column_value_and_reason(
    run_ctx: RunContext, rule: Any, value: Any, reason: str
) -> None:
    proc = make(ValidateProcessor, {"schema": {"v": rule}})
    out = process(proc, batch([{"v": value}], 11), run_ctx)
    assert len(out.errors) == 1
    (e,) = out.errors
    assert (e.line, e.column, e.value, e.reason) == (11, "v", value, reason)
    assert e.row == {"v": value, LINE_COLUMN: 11}
    assert out.batch is not None and out.batch.num_rows == 0


def test_validate_accepts_good_values_of_every_check(run_ctx: RunContext) -> None:
    proc = make(
        ValidateProcessor,
        {
            "schema": {
                "a": {"type": "int", "min": 0, "max": 10, "enum": [0, 5, 10]},
                "b": {"pattern": ".+@.+", "min_length": 3, "max_length": 10, "required": True},
                "c": {"type": "decimal", "min": 0},
            }
        },
    )
    out = process(
        proc, batch([{"a": "5", "b": "a@b", "c": "0"}, {"a": "", "b": "x@y", "c": None}]), run_ctx
    )
    assert out.errors == []
    assert rows_of(out) == [
        {"a": 5, "b": "a@b", "c": decimal.Decimal("0E-9")},
        {"a": None, "b": "x@y", "c": None},
    ]


def test_validate_reports_every_failing_field_of_a_row_once(run_ctx: RunContext) -> None:
    proc = make(
        ValidateProcessor,
        {"schema": {"id": "int", "email": {"pattern": ".+@.+", "required": True}}},
    )
    out = process(proc, batch([{"id": "x", "email": "nope"}]), run_ctx)
    (e,) = out.errors
    assert e.column == "id" and e.value == "x"
    assert e.reason == "id: expected int; email: does not match the pattern .+@.+"


def test_validate_without_convert_keeps_the_original_values(run_ctx: RunContext) -> None:
    proc = make(ValidateProcessor, {"schema": {"n": "int"}, "convert": False})
    out = process(proc, batch([{"n": "007"}, {"n": "x"}]), run_ctx)
    assert rows_of(out) == [{"n": "007"}]


def test_validate_names_a_missing_column_with_a_suggestion(run_ctx: RunContext) -> None:
    proc = make(ValidateProcessor, {"schema": {"emial": "str"}})
    with pytest.raises(PermanentError, match=r"emial.*did you mean 'email'"):
        process(proc, batch([{"email": "a"}]), run_ctx)


def test_validate_config_rejects_unknown_rule_keys_and_types() -> None:
    config = component_info(ValidateProcessor).config
    with pytest.raises(ValueError, match="patern"):
        config.model_validate({"schema": {"a": {"patern": "x"}}})
    with pytest.raises(ValueError, match="integer"):
        config.model_validate({"schema": {"a": "integer"}})


def test_validate_checks_typed_columns_without_going_through_text(run_ctx: RunContext) -> None:
    proc = make(
        ValidateProcessor,
        {
            "schema": {
                "n": {"type": "int", "min": 0},
                "x": {"type": "decimal", "scale": 1},
                "ok": "bool",
            }
        },
    )
    b = pa.RecordBatch.from_pydict(
        {
            "n": pa.array([5, -1, 3_000_000_000, None], pa.int64()),
            "x": pa.array([1.25, 2.0, 3.0, 4.0]),
            "ok": pa.array([True, False, None, True]),
            LINE_COLUMN: pa.array([2, 3, 4, 5], pa.int64()),
        }
    )
    out = process(proc, b, run_ctx)
    assert [(e.line, e.reason) for e in out.errors] == [
        (3, "below the minimum 0"),
        (4, "expected int"),
    ]
    assert rows_of(out) == [
        {"n": 5, "x": decimal.Decimal("1.3"), "ok": True},
        {"n": None, "x": decimal.Decimal("4.0"), "ok": True},
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"type": "int", "min": 5, "max": 1}, "min 5 is more than max 1"),
        ({"type": "float", "min": 0.5, "max": 0.25}, "min 0.5 is more than max 0.25"),
        (
            {"type": "date", "min": "2024-02-01", "max": "2024-01-31"},
            "min '2024-02-01' is more than max '2024-01-31'",
        ),
        ({"type": "time", "min": "12:00", "max": "09:30"}, "min '12:00' is more than max '09:30'"),
        (
            {"type": "str", "min_length": 3, "max_length": 2},
            "min_length 3 is more than max_length 2",
        ),
    ],
)
def test_a_rule_no_value_can_pass_is_refused(rule: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    from quiver.pipeline.processors.validate import ValidateConfig

    with pytest.raises(ValidationError, match=message):
        ValidateConfig.model_validate({"schema": {"x": rule}})
    # equal bounds allow one value
    low = "min_length" if "min_length" in rule else "min"
    high = low.replace("min", "max")
    ValidateConfig.model_validate({"schema": {"x": {**rule, low: rule[high]}}})
