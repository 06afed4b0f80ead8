"""The jsonl source: line numbers, malformed lines, schema, nested values."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.jsonl import JsonlSinkConfig
from quiver.pipeline.sources.jsonl import JsonlSource
from quiver.runtime.errors import PermanentError

from ..conftest import build, read_all


async def read(
    tmp_path: Path, ctx: RunContext, data: bytes, name: str = "in.jsonl", **options: Any
) -> tuple[list[dict[str, Any]], list[tuple[int | None, str]], JsonlSource]:
    (tmp_path / name).write_bytes(data)
    src: JsonlSource = build(JsonlSource, {"path": name, **options})
    table = await read_all(src, ctx)
    return table.to_pylist(), [(e.line, e.reason) for e in src.take_errors()], src


MIXED = (
    b'{"id": 1, "tags": ["a"], "geo": {"lat": 1.5}}\n'
    b"\n"
    b'{"id": 2, "tags": [], "geo": null}\n'
    b'{"id": 3, "tags": ["b"]\n'
    b"[1, 2]\n"
    b'{"id": "four"}\n'
    b'{"id": 5, "extra": true}\n'
    b"   \n"
    b'{"id": 6}'
)


async def test_rows_keep_their_line_numbers_and_nested_values(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, _, src = await read(tmp_path, run_ctx, MIXED)
    # the whole file is the type sample: `extra` is a column, empty where a line lacks it
    assert [(r["id"], r["extra"], r[LINE_COLUMN]) for r in rows] == [
        (1, None, 1),
        (2, None, 3),
        (5, True, 7),
        (6, None, 9),
    ]
    assert rows[0]["tags"] == ["a"] and rows[0]["geo"] == {"lat": 1.5}
    assert src.schema is not None and src.schema.field("geo").type == pa.struct(
        [("lat", pa.float64())]
    )


async def test_a_file_with_cr_line_endings_is_rejected_with_the_hint(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, errors, _ = await read(tmp_path, run_ctx, b'{"a": 1}\r{"a": 2}\r')
    assert rows == []
    ((line, reason),) = errors
    assert line == 1 and "unexpected content after document" in reason
    assert "carriage returns between records" in reason and "line endings" in reason
    # a CRLF file is JSON Lines as it is
    rows, errors, _ = await read(tmp_path, run_ctx, b'{"a": 1}\r\n{"a": 2}\r\n', "crlf.jsonl")
    assert [r["a"] for r in rows] == [1, 2] and errors == []


async def test_malformed_lines_are_rejected_with_the_reason(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    # types settled from the first line only: `extra` (line 7) is not in the schema
    _, errors, _ = await read(tmp_path, run_ctx, MIXED, block_size=16, infer_bytes=16)
    reasons = {line or 0: reason.split(": ", 1)[1] for line, reason in errors}
    assert sorted(reasons) == [4, 5, 6, 7]
    assert reasons[4].startswith("invalid JSON")
    assert reasons[5] == "expected a JSON object, found list"
    assert "field 'id' holds a string here but a number" in reasons[6]
    assert "['extra'] not in the schema" in reasons[7]


async def test_a_list_mixing_types_is_rejected_naming_the_field_and_the_fix(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = (
        b'{"id": 1, "tags": [1, "a"]}\n{"id": 2, "tags": [2]}\n{"id": 3, "tags": [3, null]}\n'
        b'{"id": 4, "tags": [true, 4.5]}\n{"id": 5, "geo": {"pts": [[1], ["x", 2]]}}\n'
        b'{"id": 6, "geo": {"pts": [[6]]}}\n'
    )
    rows, errors, _ = await read(tmp_path, run_ctx, data)
    assert [r["id"] for r in rows] == [2, 3, 6]
    fix = "the values of a list must all be of one type; make them one type, or declare"
    assert [(line, reason.split(": ", 1)[1]) for line, reason in errors] == [
        (
            1,
            f"field 'tags': the list [1,\"a\"] mixes numbers and strings, and {fix} tags: str "
            "under `types` to read the field as its JSON text",
        ),
        (
            4,
            f"field 'tags': the list [true,4.5] mixes booleans and numbers, and {fix} tags: "
            "str under `types` to read the field as its JSON text",
        ),
        (
            5,
            f"field 'geo.pts[]': the list [\"x\",2] mixes strings and numbers, and {fix} geo: "
            "str under `types` to read the field as its JSON text",
        ),
    ]


async def test_a_field_every_line_of_the_sample_mixes_types_in_is_named_so(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    # no line gives the field a type: it is missing from the schema for its mixed lists
    data = b'{"id": 1, "tags": [1, "a"]}\n{"id": 2, "tags": ["b", 2]}\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data)
    assert rows == []
    assert [(line, reason.split(": ", 2)[1]) for line, reason in errors] == [
        (1, "field 'tags'"),
        (2, "field 'tags'"),
    ]
    assert "mixes numbers and strings" in errors[0][1]
    assert "mixes strings and numbers" in errors[1][1]


async def test_a_field_declared_as_text_keeps_lists_mixing_types_as_json_text(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    # no line of the sample holds a text value for it: the other fields are still inferred
    data = b'{"id": 1, "tags": [1, "a"]}\n{"id": 2, "tags": [2]}\n{"id": 3, "tags": []}\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, types={"tags": "str"})
    assert errors == []
    assert [(r["id"], r["tags"]) for r in rows] == [(1, '[1,"a"]'), (2, "[2]"), (3, "[]")]


async def test_unexpected_fields_can_be_ignored(tmp_path: Path, run_ctx: RunContext) -> None:
    data = b'{"id": 1}\n{"id": 2, "extra": true}\n'
    rows, errors, _ = await read(
        tmp_path, run_ctx, data, unexpected_fields="ignore", infer_bytes=1, block_size=1
    )
    assert errors == []
    assert rows == [{"id": 1, LINE_COLUMN: 1}, {"id": 2, LINE_COLUMN: 2}]


async def test_declared_types_win_over_inference(tmp_path: Path, run_ctx: RunContext) -> None:
    data = b'{"n": 1, "day": "2024-05-06"}\n{"n": 2.5, "day": "2024-05-07"}\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, types={"n": "float", "day": "date"})
    assert errors == []
    assert [(r["n"], r["day"]) for r in rows] == [
        (1.0, dt.date(2024, 5, 6)),
        (2.5, dt.date(2024, 5, 7)),
    ]


async def test_lines_that_disagree_on_a_type_in_the_sample_keep_the_first_type(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'{"id": 1}\n{"id": "two"}\n{"id": null}\n{"id": 4}\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data)
    assert [r["id"] for r in rows] == [1, None, 4]
    assert [line for line, _ in errors] == [2]


async def test_a_declared_date_that_does_not_parse_is_rejected(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'{"day": "2024-01-02"}\n{"day": "2024-13-45"}\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, types={"day": "date"})
    assert [r["day"] for r in rows] == [dt.date(2024, 1, 2)]
    assert errors[0][0] == 2 and "2024-13-45" in errors[0][1]


async def test_text_that_looks_like_a_date_stays_text(tmp_path: Path, run_ctx: RunContext) -> None:
    rows, _, _ = await read(tmp_path, run_ctx, b'{"when": "2024-05-06T10:00:00"}\n')
    assert rows[0]["when"] == "2024-05-06T10:00:00"


async def test_skip_and_fail_policies(tmp_path: Path, run_ctx: RunContext) -> None:
    rows, errors, src = await read(
        tmp_path, run_ctx, MIXED, on_malformed="skip", block_size=16, infer_bytes=16
    )
    assert errors == [] and src.skipped == 4 and len(rows) == 3
    with pytest.raises(PermanentError) as caught:
        await read(tmp_path, run_ctx, MIXED, on_malformed="fail", infer_bytes=16)
    assert caught.value.details[0].where == f"{tmp_path / 'in.jsonl'}:4"


async def test_a_line_longer_than_max_record_bytes_is_rejected(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'{"a": 1}\n{"a": "' + b"x" * 500 + b'"}\n{"a": 3}\n'
    rows, errors, _ = await read(
        tmp_path, run_ctx, data, block_size=32, max_record_bytes=100, infer_bytes=1
    )
    assert [r["a"] for r in rows] == [1, 3]
    assert errors[0][0] == 2 and "max_record_bytes" in errors[0][1]


@pytest.mark.parametrize("block_size", [32, 1 << 20])
@pytest.mark.parametrize("final_newline", [True, False])
async def test_every_line_over_max_record_bytes_is_rejected_whatever_the_blocks(
    tmp_path: Path, run_ctx: RunContext, block_size: int, final_newline: bool
) -> None:
    long = b'{"a": "' + b"x" * 120 + b'"}'
    data = b'{"a": "1"}\n' + long + b'\n{"a": "3"}\n' + long + (b"\n" if final_newline else b"")
    rows, errors, _ = await read(
        tmp_path, run_ctx, data, block_size=block_size, max_record_bytes=100, infer_bytes=1
    )
    assert [r["a"] for r in rows] == ["1", "3"]
    assert [line for line, _ in errors] == [2, 4]
    for _, reason in errors:
        assert "is longer than max_record_bytes (100 bytes)" in reason
        assert "raise `max_record_bytes`" in reason
    if block_size > len(data):  # whole lines in one block: their size is known
        assert f"line of {len(long) + 1} bytes" in errors[0][1]


async def test_compressed_and_bom_prefixed_input(tmp_path: Path, run_ctx: RunContext) -> None:
    data = gzip.compress(b'\xef\xbb\xbf{"a": 1}\r\n{"a": 2}\r\n')
    rows, errors, _ = await read(tmp_path, run_ctx, data, name="in.jsonl.gz")
    assert errors == [] and [r["a"] for r in rows] == [1, 2]


async def test_utf16_input_is_transcoded(tmp_path: Path, run_ctx: RunContext) -> None:
    data = '{"name": "Zoë 😀"}\n'.encode("utf-16")
    rows, _, _ = await read(tmp_path, run_ctx, data, encoding="utf-16")
    assert rows == [{"name": "Zoë 😀", LINE_COLUMN: 1}]


def test_unknown_options_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unexpected_feilds"):
        JsonlSinkConfig.model_validate({"path": "x", "unexpected_feilds": "x"})


# -- sink -------------------------------------------------------------------------------------


async def test_declared_times_are_parsed_and_checked(tmp_path: Path, run_ctx: RunContext) -> None:
    data = b'{"t": "07:30:00"}\n{"t": "25:00:00"}\n{"t": "7h30"}\n{"t": "23:59:59.5"}\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, types={"t": "time"})
    assert [r["t"] for r in rows] == [dt.time(7, 30), dt.time(23, 59, 59, 500000)]
    assert [(line, reason.split(": ", 1)[1]) for line, reason in errors] == [
        (2, "field 't': '25:00:00' is not a valid time of day"),
        (3, "field 't': '7h30' is not a time of day (HH:MM:SS[.fraction])"),
    ]


# -- maps -------------------------------------------------------------------------------------


async def test_a_declared_map_reads_pairs_and_objects_beside_inferred_fields(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = (
        b'{"id": 1, "m": [["k", 1], ["z", null]]}\n'
        b'{"id": 2, "m": {"a": 2}}\n'
        b'{"id": 3, "m": "nope"}\n'
        b'{"id": 4, "m": null, "extra": 1}\n'
        b'{"id": 5, "m": []}\n'
    )
    rows, errors, _ = await read(tmp_path, run_ctx, data, types={"m": "map<str, int32>"})
    assert [(r["id"], r["m"], r["extra"], r[LINE_COLUMN]) for r in rows] == [
        (1, [("k", 1), ("z", None)], None, 1),
        (2, [("a", 2)], None, 2),
        (4, None, 1, 4),
        (5, [], None, 5),
    ]
    assert len(errors) == 1 and errors[0][0] == 3, errors
    assert errors[0][1].endswith(
        "field 'm': \"nope\" is not a map<string, int32> (write [key, value] pairs or an object)"
    )


def test_a_map_type_is_refused_where_no_source_reads_it(tmp_path: Path) -> None:
    from quiver.pipeline.sources.csv import CsvSource

    with pytest.raises(ValidationError, match="read by the jsonl source only"):
        build(CsvSource, {"path": "in.csv", "types": {"m": "map<str, int>"}})
    with pytest.raises(ValidationError, match="keys cannot be"):
        build(JsonlSource, {"path": "in.jsonl", "types": {"m": "map<map<str, int>, int>"}})


@pytest.mark.parametrize(
    ("encoding", "line", "reason"),
    [
        ("utf-8", b'{"name": "\xff"}\n', "invalid utf-8 byte sequence ff at byte 11 of the row"),
        ("utf-8", b'{"\xfe": "x"}\n', "invalid utf-8 byte sequence fe at byte 3 of the row"),
        ("utf-8", b'{"name": "\xed\xa0\x80"}\n', "invalid utf-8 byte sequence ed"),
        ("cp1252", b'{"name": "\x81"}\n', "byte 0x81 is not valid cp1252 (byte 11 of the row)"),
    ],
)
async def test_a_line_holding_bytes_invalid_in_the_encoding_is_rejected_with_them(
    tmp_path: Path, run_ctx: RunContext, encoding: str, line: bytes, reason: str
) -> None:
    data = b'{"name": "ok"}\n' + line + b'{"name": "also ok"}\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, encoding=encoding)
    assert [(r["name"], r[LINE_COLUMN]) for r in rows] == [("ok", 1), ("also ok", 3)]
    assert len(errors) == 1 and errors[0][0] == 2 and reason in errors[0][1]
    assert errors[0][1].startswith(f"{tmp_path / 'in.jsonl'}:2: ")


@pytest.mark.parametrize("depth", [129, 10_000, 200_000])
async def test_a_line_nested_deeper_than_the_limit_is_rejected_with_its_depth(
    tmp_path: Path, run_ctx: RunContext, depth: int
) -> None:
    deep = b'{"a":' * (depth - 1) + b"[1]" + b"}" * (depth - 1)
    # 128 levels deep: brackets inside strings do not count
    kept = b'{"a":' * 126 + b'["{[{[", "]]"]' + b"}" * 126
    data = (
        b'{"id": 1}\n'
        + b'{"id": 2, "deep": '
        + deep
        + b"}\n"
        + b'{"id": 3, "deep": '
        + kept
        + b"}\n"
    )
    rows, errors, _ = await read(tmp_path, run_ctx, data)
    assert [(r["id"], r[LINE_COLUMN]) for r in rows] == [(1, 1), (3, 3)]
    assert errors == [
        (
            2,
            f"{tmp_path / 'in.jsonl'}:2: the line nests objects and arrays {depth + 1} levels "
            "deep, more than the 128 a JSON Lines record may have; flatten the record, or hold "
            "the deep part as a JSON string",
        )
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b'"1.005"', "'1.005' has 3 digits after the point, more than the 2 of decimal128(10, 2)"),
        (b"1.005", "'1.005' has 3 digits after the point, more than the 2 of decimal128(10, 2)"),
        (b"123456789", "'123456789' has 9 digits before the point, more than the 8 of decimal"),
        (b'"1e40"', "'1e40' has 41 digits before the point, more than the 8 of decimal128(10"),
        (b'"abc"', "'abc' is not a decimal number"),
    ],
)
async def test_a_declared_decimal_that_does_not_fit_is_rejected_naming_field_and_value(
    tmp_path: Path, run_ctx: RunContext, value: bytes, reason: str
) -> None:
    data = b'{"t": "2.5"}\n{"t": ' + value + b'}\n{"t": 4.1}\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, types={"t": "decimal(10,2)"})
    assert [str(r["t"]) for r in rows] == ["2.50", "4.10"]
    assert len(errors) == 1 and errors[0][0] == 2
    assert errors[0][1].startswith(f"{tmp_path / 'in.jsonl'}:2: field 't': {reason}")


async def test_a_declared_decimal_written_as_json_numbers_is_read_without_an_arrow_read_a_line(
    tmp_path: Path, run_ctx: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyarrow.json reads a declared decimal as text and refuses numbers: after a bounded
    number of halvings the lines are read by the value rules, all at once, instead of being
    isolated by halving (an Arrow read per line and more, which took 86 s for 100,000 lines);
    the lines they refuse are still rejected with Arrow's reason."""
    calls = 0
    arrow_read = JsonlSource._read_json

    def counted(self: JsonlSource, data: bytes | memoryview, schema: pa.Schema | None) -> Any:
        nonlocal calls
        calls += 1
        return arrow_read(self, data, schema)

    monkeypatch.setattr(JsonlSource, "_read_json", counted)
    lines = [b'{"id": %d, "amount": %d.%02d}' % (i, i * 7, i % 100) for i in range(3_000)]
    lines[10] = b'{"id": 10, "amount": "12.5"}'  # text is read too
    lines[20] = b'{"id": 20, "amount": "abc"}'
    lines[30] = b"not json"
    lines[2_500] = b'{"id": 2500, "amount": 1e2}'
    rows, errors, _ = await read(
        tmp_path, run_ctx, b"\n".join(lines) + b"\n", types={"amount": "decimal(12,2)"}
    )
    assert calls <= 80  # 6,001 when every line was isolated
    assert [e[0] for e in errors] == [21, 31]
    assert "'abc' is not a decimal number" in errors[0][1]
    assert len(rows) == 2_998
    by_id = {r["id"]: (str(r["amount"]), r[LINE_COLUMN]) for r in rows}
    assert by_id[1] == ("7.01", 2)
    assert by_id[10] == ("12.50", 11)
    assert by_id[2500] == ("100.00", 2501)
    assert by_id[2999] == ("20993.99", 3000)


async def test_a_line_holding_half_a_surrogate_pair_is_rejected_naming_the_escape(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = (
        b'{"a": "ok"}\n'
        b'{"a": "\\ud800"}\n'
        b'{"a": "x\\udc00"}\n'
        b'{"\\ud83d": 1}\n'
        b'{"a": "\\\\ud800 is text"}\n'
        b'{"a": "\\ud83d\\ude00"}\n'
    )
    rows, errors, _ = await read(tmp_path, run_ctx, data)
    assert [r["a"] for r in rows] == ["ok", "\\ud800 is text", "\U0001f600"]
    assert [(line, reason.split(": ", 1)[1]) for line, reason in errors] == [
        (
            2,
            "invalid JSON: \\ud800 at line 1 column 8 is half of a UTF-16 surrogate pair "
            "without the other half, which is no character: write the whole character, or "
            "both halves of its pair",
        ),
        (
            3,
            "invalid JSON: \\udc00 at line 1 column 9 is half of a UTF-16 surrogate pair "
            "without the other half, which is no character: write the whole character, or "
            "both halves of its pair",
        ),
        (
            4,
            "invalid JSON: \\ud83d at line 1 column 3 is half of a UTF-16 surrogate pair "
            "without the other half, which is no character: write the whole character, or "
            "both halves of its pair",
        ),
    ]


async def test_nan_and_infinities_written_bare_are_rejected_as_not_json(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = (
        b'{"x": 1.5, "s": "NaN"}\n'
        b'{"x": NaN, "s": "a"}\n'
        b'{"x": "Infinity", "s": "Infinity is text"}\n'
        b'{"x": -Infinity, "s": "b"}\n'
        b'{"x": 2.5, "s": "c", "NaN": 1}\n'
        b'{"x": 3.5, "s": "\\"NaN"}\n'
        b'{"x": 4.5, "s": "d", "l": [Infinity]}\n'
    )
    rows, errors, _ = await read(tmp_path, run_ctx, data, unexpected_fields="ignore")
    assert [(r["x"], r["s"]) for r in rows] == [
        (1.5, "NaN"),
        (float("inf"), "Infinity is text"),
        (2.5, "c"),
        (3.5, '"NaN'),
    ]
    fix = (
        "is not a JSON value: JSON has no NaN or infinities (send them as the strings "
        '"NaN", "Infinity" and "-Infinity")'
    )
    assert [(line, reason.split(": ", 1)[1]) for line, reason in errors] == [
        (2, f"NaN at line 1 column 7 {fix}"),
        (4, f"-Infinity at line 1 column 7 {fix}"),
        (7, f"Infinity at line 1 column 28 {fix}"),
    ]
