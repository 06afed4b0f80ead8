"""No JSON value is silently changed or lost by the JSON sources: a key named twice in one
object, a number beyond the range of a float, an integer past int64/uint64 and a decimal
with more digits than a float holds are refused with the field, value and line, or kept
exact; a refused binary message body is kept whole in the rejects."""

from __future__ import annotations

import base64
import decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RowError, RunContext
from quiver.pipeline.json_text import json_array, parse_json, parse_json_lines
from quiver.pipeline.messages import refusal
from quiver.pipeline.records import RecordBatcher
from quiver.pipeline.sources.jsonl import JsonlSource
from quiver.pipeline.sources.rabbitmq import RabbitMqSource

from ..conftest import ScratchQueue, build, read_all

FAST = {"idle_timeout": 0.5, "batch_seconds": 0.2}


async def read_jsonl(
    tmp_path: Path, ctx: RunContext, data: bytes, **options: Any
) -> tuple[list[dict[str, Any]], list[RowError]]:
    (tmp_path / "in.jsonl").write_bytes(data)
    src: JsonlSource = build(JsonlSource, {"path": "in.jsonl", **options})
    table = await read_all(src, ctx)
    return table.to_pylist(), src.take_errors()


async def read_queue(
    q: ScratchQueue, ctx: RunContext, *bodies: bytes, **options: Any
) -> tuple[list[dict[str, Any]], list[RowError]]:
    await q.publish(*bodies)
    source: RabbitMqSource = build(RabbitMqSource, {"queue": q.name, **FAST, **options})
    batches = [b async for b in source.batches(ctx)]
    await source.commit()
    rows = pa.Table.from_batches(batches).to_pylist() if batches else []
    return rows, source.take_errors()


# -- a key named twice ----------------------------------------------------------------------


def test_parse_json_refuses_a_key_named_twice_and_says_where() -> None:
    with pytest.raises(ValueError, match=r"key 'a' appears twice .* line 1 column 1"):
        parse_json('{"a": 1, "a": 2}')
    with pytest.raises(ValueError, match=r"key 'c' appears twice .* line 2 column 8"):
        parse_json('{"x": {"c": 1},\n  "y": {"c": 1,\n "c": 2}}')
    # the same key in two objects is fine
    assert parse_json('[{"a": 1}, {"a": 2}]') == [{"a": 1}, {"a": 2}]


async def test_jsonl_line_with_a_key_named_twice_is_rejected_with_its_line(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = (
        b'{"a": 1, "b": {"c": 0}}\n{"a": 1, "a": 2, "b": {"c": 0}}\n'
        b'{"a": 3, "b": {"c": 1, "c": 2}}\n'
    )
    rows, errors = await read_jsonl(tmp_path, run_ctx, data)
    assert [(r["a"], r[LINE_COLUMN]) for r in rows] == [(1, 1)]
    assert [(e.line, e.reason.split(": ", 1)[1].split(" appears twice")[0]) for e in errors] == [
        (2, "key 'a'"),
        (3, "key 'c'"),
    ]


async def test_jsonl_key_named_twice_in_the_type_sample_is_rejected(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, errors = await read_jsonl(tmp_path, run_ctx, b'{"a": 1, "a": "two"}\n{"a": 3}\n')
    assert [r["a"] for r in rows] == [3]
    assert [e.line for e in errors] == [1] and "key 'a' appears twice" in errors[0].reason


@pytest.mark.parametrize(
    "data",
    [
        b'{"a": 1, "a": 2}\n',
        b'{"x": 1}\n{"a": 1, "a": 2}\n',
        b'{"x": 1}\n{"a": {"b": 1, "b": 2}}\n',
    ],
)
async def test_jsonl_key_named_twice_by_every_line_naming_it_says_so(
    tmp_path: Path, run_ctx: RunContext, data: bytes
) -> None:
    # the field is in no line the types are inferred from, yet the reason is the key, not
    # a field missing from the schema
    rows, errors = await read_jsonl(tmp_path, run_ctx, data)
    assert [r["x"] for r in rows] == ([1] if data.startswith(b'{"x"') else [])
    assert len(errors) == 1 and errors[0].line == data.count(b"\n")
    assert "appears twice in one JSON object" in errors[0].reason
    assert "not in the schema" not in errors[0].reason


async def test_message_with_a_key_named_twice_is_refused(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    rows, errors = await read_queue(rabbit_queue, run_ctx, b'{"n": 1}', b'{"n": 2, "n": 3}')
    assert [r["n"] for r in rows] == [1]
    assert len(errors) == 1 and "key 'n' appears twice" in errors[0].reason
    rows, errors = await read_queue(
        rabbit_queue, run_ctx, b'{"n": 4}\n{"n": 5, "n": 6}\n', format="jsonl"
    )
    assert rows == [] and len(errors) == 1
    assert "key 'n' appears twice in one JSON object (the object at line 2 column 1)" in (
        errors[0].reason
    )


def test_json_lines_body_errors_name_the_line_of_the_body() -> None:
    assert parse_json_lines(b'{"a": 1}\r\n\n{"a": 2}\n') == [{"a": 1}, {"a": 2}]
    with pytest.raises(ValueError, match=r"key 'a' appears twice .* line 3 column 1"):
        parse_json_lines(b'{"a": 1}\n\n{"a": 1, "a": 2}\n')
    with pytest.raises(ValueError, match=r"Expecting value: line 2 column 7"):
        parse_json_lines(b'{"a": 1}\n{"a": }\n')
    with pytest.raises(ValueError, match=r"^Expecting value: line 1 column 7$"):
        parse_json_lines(b'{"a": }\n')
    with pytest.raises(ValueError, match=r"^not UTF-8 text: byte 0xff at line 2 column 8; "):
        parse_json_lines(b'{"a": 1}\n{"\xc3\xa9": "\xff"}\n')  # é counts as one column


# -- numbers a float or an integer type cannot hold -------------------------------------------

BIG = "123456789012345678901234567890"


def test_a_number_beyond_float_range_is_refused_not_infinite() -> None:
    values = parse_json('[1e400, -1e400, 0.1, "Infinity", 1.7976931348623157e308]')
    array, refused = json_array(values, pa.float64())
    assert sorted(refused) == [0, 1]
    assert "1e400 is beyond the range of a float" in refused[0]
    assert "-1e400" in refused[1] and "decimal" in refused[1]
    assert array.to_pylist()[2:] == [0.1, float("inf"), 1.7976931348623157e308]


def test_integers_past_int64_and_uint64_are_refused_or_exact() -> None:
    values = parse_json(f"[{BIG}, 18446744073709551615, 9223372036854775808]")
    array, refused = json_array(values, pa.uint64())
    assert list(refused) == [0] and BIG in refused[0] and "uint64" in refused[0]
    assert array.to_pylist()[1:] == [18446744073709551615, 9223372036854775808]
    _, refused = json_array(values, pa.int64())
    assert sorted(refused) == [0, 1, 2]
    array, refused = json_array(values, pa.decimal128(38, 0))
    assert not refused and array.to_pylist()[0] == decimal.Decimal(BIG)


def test_a_huge_exponent_in_an_integer_or_timestamp_column_is_refused_at_once() -> None:
    values = parse_json("[1e1000000000, 2e3]")
    array, refused = json_array(values, pa.int64())
    assert array.to_pylist() == [None, 2000]
    assert refused == {0: "1e1000000000 is beyond the range of every integer type"}
    _, refused = json_array(values, pa.timestamp("s"))
    assert refused == {0: "1e1000000000 is beyond the range of every timestamp"}


async def test_jsonl_number_beyond_float_range_is_rejected_naming_field_value_and_line(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'{"x": 1.5, "y": 1}\n{"x": 1e400, "y": 2}\n{"x": -1e400, "y": 3}\n{"x": 2.5, "y": 4}\n'
    for options in ({}, {"types": {"x": "float"}}):
        rows, errors = await read_jsonl(tmp_path, run_ctx, data, **options)
        assert [(r["x"], r["y"]) for r in rows] == [(1.5, 1), (2.5, 4)]
        assert [e.line for e in errors] == [2, 3]
        assert "field 'x'" in errors[0].reason and "1e400 is beyond the range" in errors[0].reason
        assert "-1e400" in errors[1].reason


async def test_jsonl_number_beyond_float_range_in_the_first_line_is_rejected(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, errors = await read_jsonl(tmp_path, run_ctx, b'{"x": 1e400}\n{"x": 0.5}\n')
    assert [r["x"] for r in rows] == [0.5]
    assert [e.line for e in errors] == [1] and "1e400" in errors[0].reason


async def test_jsonl_number_beyond_float_range_inside_a_list_or_struct_is_rejected(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'{"m": [1.5], "s": {"x": 0.5}}\n{"m": [1e400]}\n{"s": {"x": -1e400}}\n{"m": [2.5]}\n'
    rows, errors = await read_jsonl(tmp_path, run_ctx, data)
    assert [r[LINE_COLUMN] for r in rows] == [1, 4]
    assert [(e.line, e.reason.split(": ", 1)[1]) for e in errors] == [
        (
            2,
            "field 'm': 1e400 is beyond the range of a float (about ±1.8e308); write it as a "
            "string to keep it",
        ),
        (
            3,
            "field 's': -1e400 is beyond the range of a float (about ±1.8e308); write it as a "
            "string to keep it",
        ),
    ]


async def test_jsonl_declared_decimal_keeps_every_digit_or_rejects(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    exact = "12345678901234567890.123456789012345678"  # 38 digits: far more than a float holds
    data = (
        f'{{"d": {exact}}}\n{{"d": {BIG}}}\n{{"d": 1.0000000000000000000000001}}\n{{"d": 1e400}}\n'
    ).encode()
    rows, errors = await read_jsonl(tmp_path, run_ctx, data, types={"d": "decimal(38,18)"})
    assert [(r["d"], r[LINE_COLUMN]) for r in rows] == [(decimal.Decimal(exact), 1)]
    assert [e.line for e in errors] == [2, 3, 4]
    assert all("field 'd'" in e.reason for e in errors)


def test_a_decimal_with_a_huge_exponent_is_refused_or_kept_exact() -> None:
    values = parse_json('[1e-1000000000, 1e1000000000, 0e-1000000000, "1500e-1000", 1.5]')
    array, refused = json_array(values, pa.decimal128(10, 2))
    assert refused == {
        0: "1e-1000000000 has more digits after the point than any decimal keeps",
        1: "1e1000000000 is beyond the range of every decimal",
        3: "1500e-1000 has more digits after the point than any decimal keeps",
    }
    assert array.to_pylist() == [None, None, decimal.Decimal("0.00"), None, decimal.Decimal("1.50")]


async def test_jsonl_decimal_with_a_huge_exponent_is_rejected_not_a_crash(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    # Arrow's cast of such text to a decimal crashes the process (pyarrow 26)
    data = b'{"d": "1.5"}\n{"d": "1e-1000000000"}\n{"d": 1e-1000000000}\n{"d": 2}\n'
    rows, errors = await read_jsonl(tmp_path, run_ctx, data, types={"d": "decimal(10,2)"})
    assert [r["d"] for r in rows] == [decimal.Decimal("1.50"), decimal.Decimal("2.00")]
    assert [(e.line, e.reason.split(": ", 1)[1]) for e in errors] == [
        (2, "field 'd': 1e-1000000000 has more digits after the point than any decimal keeps"),
        (3, "field 'd': 1e-1000000000 has more digits after the point than any decimal keeps"),
    ]


async def test_jsonl_integer_past_int64_is_rejected_or_kept_as_declared(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = f'{{"n": 1}}\n{{"n": {BIG}}}\n{{"n": 18446744073709551615}}\n'.encode()
    rows, errors = await read_jsonl(tmp_path, run_ctx, data, types={"n": "int"})
    assert [r["n"] for r in rows] == [1]
    assert [e.line for e in errors] == [2, 3] and BIG in errors[0].reason
    assert all("field 'n'" in e.reason and "int64" in e.reason for e in errors)
    # inferred: integers past int64 make the field decimal(38,0), exact (see below)
    rows, errors = await read_jsonl(tmp_path, run_ctx, data, types={"n": "decimal(38,0)"})
    assert [r["n"] for r in rows] == [1, decimal.Decimal(BIG), 18446744073709551615]
    assert errors == []


async def test_jsonl_integer_a_float_would_change_is_rejected_in_an_inferred_float_field(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = (
        b'{"x": 1.5, "l": [0.5], "s": {"v": 0.5}}\n'
        b'{"x": 9007199254740993}\n'  # 2**53 + 1: a float holds 2**53
        b'{"x": 9007199254740992, "l": [1e20]}\n'  # exact as floats
        b'{"l": [1, 9007199254740993]}\n'
        b'{"s": {"v": 123456789012345678901}}\n'
    )
    rows, errors = await read_jsonl(tmp_path, run_ctx, data)
    assert [(r["x"], r[LINE_COLUMN]) for r in rows] == [(1.5, 1), (9007199254740992.0, 3)]
    assert [(e.line, e.reason.split(": ", 2)[1]) for e in errors] == [
        (2, "field 'x'"),
        (4, "field 'l'"),
        (5, "field 's'"),
    ]
    # declared float: a float is what was asked for
    rows, errors = await read_jsonl(tmp_path, run_ctx, data, types={"x": "float"})
    assert [r["x"] for r in rows][:3] == [1.5, 9007199254740992.0, 9007199254740992.0]


def test_message_integer_a_float_would_change_is_refused_in_an_inferred_float_column() -> None:
    batcher = RecordBatcher("test")
    batch, errors = batcher.split(parse_json('[{"n": 2.5}]'))
    assert batch.column("n").type == pa.float64()
    batch, errors = batcher.split(parse_json('[{"n": 9007199254740993}, {"n": 4}]'))
    assert batch.column("n").to_pylist() == [4.0]
    assert [(e.line, e.column, e.value) for e in errors] == [(2, "n", "9007199254740993")]
    assert "cannot be held exactly by a float" in errors[0].reason
    declared = RecordBatcher("test", {"n": "float"})
    batch, errors = declared.split(parse_json('[{"n": 9007199254740993}]'))
    assert errors == [] and batch.column("n").to_pylist() == [9007199254740992.0]


async def test_message_numbers_beyond_their_type_are_refused(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    rows, errors = await read_queue(
        rabbit_queue, run_ctx, b'{"x": 1.5}', b'{"x": 1e400}', b'{"x": -1e400}', b'{"x": 0.25}'
    )
    assert [r["x"] for r in rows] == [1.5, 0.25]
    assert len(errors) == 2 and all("beyond the range of a float" in e.reason for e in errors)
    assert {e.value for e in errors} == {"1e400", "-1e400"}
    rows, errors = await read_queue(
        rabbit_queue,
        run_ctx,
        f'{{"d": {BIG}.5, "n": 1}}'.encode(),
        f'{{"d": 1, "n": {BIG}}}'.encode(),
        schema={"d": "decimal(38,1)", "n": "int"},
    )
    assert [(r["d"], r["n"]) for r in rows] == [(decimal.Decimal(BIG + ".5"), 1)]
    assert len(errors) == 1 and "'n'" in errors[0].reason and BIG in errors[0].reason


# -- a refused binary body ---------------------------------------------------------------------


def test_refusal_keeps_a_binary_body_whole_and_a_text_body_as_text() -> None:
    binary = b"\x00\xff\xfe{bad"
    entry = refusal("#1", binary, "unreadable")
    assert entry.row == {"body_base64": base64.b64encode(binary).decode("ascii")}
    assert refusal("#2", b'{"a": "\xc3\xa9"}', "no").row == {"body": '{"a": "\u00e9"}'}


async def test_rabbitmq_refused_binary_body_is_kept_whole_in_the_rejects(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    binary = bytes(range(256))
    rows, errors = await read_queue(rabbit_queue, run_ctx, b'{"n": 1}', binary, b"not json")
    assert [r["n"] for r in rows] == [1]
    kept = sorted(orjson.dumps(e.row) for e in errors)
    assert [e.row for e in errors if e.row and "body_base64" in e.row] == [
        {"body_base64": base64.b64encode(binary).decode("ascii")}
    ]
    assert {"body": "not json"} in [e.row for e in errors] and len(kept) == 2


async def test_jsonl_integers_with_one_past_int64_are_inferred_as_an_exact_decimal(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    # Arrow infers a float, which would turn every value of the field into a float and
    # round 2**63 + 1; Spark infers a decimal, DuckDB a 128-bit integer
    data = (
        b'{"id": 1, "n": 5}\n{"id": 2, "n": 9223372036854775809}\n'
        b'{"id": 3, "n": null}\n{"id": 4, "n": -99999999999999999999}\n'
    )
    rows, errors = await read_jsonl(tmp_path, run_ctx, data)
    assert errors == []
    assert [(r["id"], r["n"]) for r in rows] == [
        (1, decimal.Decimal(5)),
        (2, decimal.Decimal(9223372036854775809)),
        (3, None),
        (4, decimal.Decimal(-99999999999999999999)),
    ]
    assert all(type(r["id"]) is int for r in rows)


async def test_jsonl_integer_past_int64_in_an_integer_field_is_rejected_with_the_fix(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    # the field's type is settled (int64) before the line past it comes
    data = b'{"n": 1}\n{"n": 2}\n{"n": 9223372036854775808}\n{"n": 4}\n'
    rows, errors = await read_jsonl(tmp_path, run_ctx, data, infer_bytes=1, block_size=1)
    assert [r["n"] for r in rows] == [1, 2, 4]
    assert [(e.line, e.reason.split(": ", 1)[1]) for e in errors] == [
        (
            3,
            "field 'n': 9223372036854775808 does not fit int64, a 64-bit integer "
            "(-9223372036854775808 to 9223372036854775807); declare the field as "
            "decimal(38,0) or str under `types` to keep every digit",
        )
    ]


async def test_jsonl_integers_beside_fractions_stay_a_float_and_an_inexact_one_is_rejected(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = f'{{"n": 1.5}}\n{{"n": {BIG}}}\n{{"n": 2}}\n'.encode()
    rows, errors = await read_jsonl(tmp_path, run_ctx, data)
    assert [r["n"] for r in rows] == [1.5, 2.0]
    assert [e.line for e in errors] == [2]
    assert f"the integer {BIG} cannot be held exactly by a float" in errors[0].reason


def test_an_integer_past_its_type_names_the_range_and_the_type_that_keeps_it() -> None:
    values = parse_json(f"[1, {BIG}, -1, {'9' * 50}, {'9' * 80}]")
    _, refused = json_array(values, pa.uint32())
    assert refused == {
        1: f"{BIG} does not fit uint32, a 32-bit unsigned integer (0 to 4294967295); "
        "declare the field as decimal(38,0) or str under `types` to keep every digit",
        2: "-1 does not fit uint32, a 32-bit unsigned integer (0 to 4294967295); "
        "declare the field as decimal(38,0) or str under `types` to keep every digit",
        3: f"{'9' * 50} does not fit uint32, a 32-bit unsigned integer (0 to 4294967295); "
        "declare the field as decimal(76,0) or str under `types` to keep every digit",
        4: f"{'9' * 80} does not fit uint32, a 32-bit unsigned integer (0 to 4294967295); "
        "declare the field as str under `types` to keep every digit",
    }
