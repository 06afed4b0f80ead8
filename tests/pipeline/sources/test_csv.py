"""The csv source: line numbers, malformed rows, encodings, compression, globs, options."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sources.csv import (
    BlockBuffer,
    CsvSource,
    CsvSourceConfig,
    Delimiters,
    scan_records,
)
from quiver.runtime.errors import PermanentError

from ..conftest import build, read_all


def source(**options: Any) -> CsvSource:
    result: CsvSource = build(CsvSource, options)
    return result


async def read(
    tmp_path: Path, ctx: RunContext, data: bytes, name: str = "in.csv", **options: Any
) -> tuple[list[dict[str, Any]], list[tuple[int | None, str]], CsvSource]:
    (tmp_path / name).write_bytes(data)
    src = source(path=name, **options)
    table = await read_all(src, ctx)
    errors = [(e.line, e.reason) for e in src.take_errors()]
    return table.to_pylist(), errors, src


# -- line numbers -----------------------------------------------------------------------------


async def test_line_numbers_count_the_header_and_line_breaks_inside_quotes(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'id,note\n1,plain\n2,"two\nlines"\n3,"three\r\nlines\nhere"\n4,last\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data)
    assert errors == []
    assert [(r["id"], r[LINE_COLUMN]) for r in rows] == [("1", 2), ("2", 3), ("3", 5), ("4", 8)]
    assert rows[2]["note"] == "three\r\nlines\nhere"


@pytest.mark.parametrize("block_size", [1, 2, 3, 7, 64, 1 << 20])
async def test_line_numbers_do_not_depend_on_the_block_size(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    data = b'a,b\n1,"x\n\ny"\n\n2,""""\n3,"q,""r"""\r\n4,z'
    rows, errors, _ = await read(tmp_path, run_ctx, data, block_size=block_size)
    assert errors == []
    assert [(r["a"], r["b"], r[LINE_COLUMN]) for r in rows] == [
        ("1", "x\n\ny", 2),
        ("2", '"', 6),
        ("3", 'q,"r"', 7),
        ("4", "z", 8),
    ]


def _many_blocks_file() -> bytes:
    """Rows of varied lengths (so the part of a row left at the end of each block varies),
    quoted fields with line breaks, CRLF, a BOM, non-ASCII text and rows in error."""
    lines = ["\ufeffid,name,note"]
    for i in range(1, 400):
        name = "Zoë " * (i % 7) + str(i)
        if i % 53 == 0:
            lines.append(f"{i},only two fields")  # ragged: rejected with its line
        elif i % 31 == 0:
            lines.append(f'{i},"{name}","two\r\nlines, and a ""quote"""')
        else:
            lines.append(f"{i},{name},{'x' * (i % 23)}")
    return ("\r\n".join(lines[:200]) + "\r\n" + "\n".join(lines[200:]) + "\n").encode()


@pytest.mark.parametrize("block_size", [5, 97, 1000, 4096])
async def test_rows_and_rejects_read_over_many_blocks_match_one_block(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    data = _many_blocks_file()
    whole = await read(tmp_path, run_ctx, data, block_size=1 << 20)
    blocks = await read(tmp_path, run_ctx, data, block_size=block_size)
    assert blocks[0] == whole[0] and blocks[1] == whole[1]
    rows, errors = whole[0], whole[1]
    # each row before it with a line break inside quotes moves a row one line down
    ragged = [i + 1 + i // 31 for i in range(53, 400, 53)]
    assert len(rows) == 399 - 7 and [line for line, _ in errors] == ragged
    assert blocks[2].take_errors() == []  # taken by read()
    assert rows[30] == {
        "id": "31",
        "name": "Zoë Zoë Zoë 31",
        "note": 'two\r\nlines, and a "quote"',
        LINE_COLUMN: 32,
    }


def test_a_block_buffer_joins_the_rest_of_a_block_to_the_next_without_changing_earlier_rests() -> (
    None
):
    joiner = BlockBuffer()
    first = joiner.join(b"", b"abc\nde")
    assert first == b"abc\nde"
    second = joiner.join(first[4:], b"f\nghij")
    rest = second[4:]
    assert second == b"def\nghij"
    third = joiner.join(rest, b"k\n")
    assert third == b"ghijk\n" and rest == b"ghij"
    fourth = joiner.join(third, b"more")  # no record ended: the block grows
    assert fourth == b"ghijk\nmore"
    held = memoryview(fourth)  # a view still held: the next block goes elsewhere
    assert joiner.join(b"xy", b"z") == b"xyz" and bytes(held) == b"ghijk\nmore"


async def test_skip_lines_are_counted_in_line_numbers(tmp_path: Path, run_ctx: RunContext) -> None:
    data = b"report of the day\nexported by X\nid,v\n1,a\n2,b\n"
    rows, _, _ = await read(tmp_path, run_ctx, data, skip_lines=2)
    assert [(r["id"], r[LINE_COLUMN]) for r in rows] == [("1", 4), ("2", 5)]


async def test_blank_lines_are_skipped_but_counted(tmp_path: Path, run_ctx: RunContext) -> None:
    rows, _, _ = await read(tmp_path, run_ctx, b"\n\na,b\n1,2\n\n\n3,4\n\n")
    assert [(r["a"], r[LINE_COLUMN]) for r in rows] == [("1", 4), ("3", 7)]


def test_scanner_finds_records_lines_and_an_open_quote_at_the_end() -> None:
    scan = scan_records(b'a,b\n"x\ny",1\n"open', Delimiters(ord(",")), final=False)
    assert scan.starts.tolist() == [0, 4]
    assert scan.ends.tolist() == [4, 12]
    assert scan.lines.tolist() == [0, 1]
    assert scan.consumed == 12 and scan.consumed_lines == 3
    final = scan_records(b'"open\nrest', Delimiters(ord(",")), final=True)
    assert final.open_quote and final.consumed == 0


# -- malformed rows ---------------------------------------------------------------------------


RAGGED = b'id,name,city\n1,ann,paris\n2,bob\n3,"cy\nril",rome\n4,dan,oslo,extra\n5,eve,lima\n'


async def test_ragged_rows_are_rejected_with_their_exact_lines(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, errors, src = await read(tmp_path, run_ctx, RAGGED)
    assert [r["id"] for r in rows] == ["1", "3", "5"]
    assert [line for line, _ in errors] == [3, 6]
    assert "expected 3 fields, found 2" in errors[0][1]
    assert "expected 3 fields, found 4" in errors[1][1]
    assert errors[0][1].startswith(str(tmp_path / "in.csv") + ":3:")
    assert src.rejected == 2


async def test_rejected_rows_carry_the_raw_record(tmp_path: Path, run_ctx: RunContext) -> None:
    (tmp_path / "in.csv").write_bytes(RAGGED)
    src = source(path="in.csv")
    await read_all(src, run_ctx)
    first = src.take_errors()[0]
    assert first.row == {"__file": str(tmp_path / "in.csv"), "__raw": "2,bob"}
    assert src.take_errors() == []  # taken once


async def test_skip_policy_drops_and_counts_malformed_rows(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, errors, src = await read(tmp_path, run_ctx, RAGGED, on_malformed="skip")
    assert [r["id"] for r in rows] == ["1", "3", "5"]
    assert errors == [] and src.skipped == 2
    assert any("skipped 2 malformed rows" in m for _, m in run_ctx.logs)  # type: ignore[attr-defined]


async def test_fail_policy_stops_at_the_first_bad_row_naming_file_and_line(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    with pytest.raises(PermanentError) as caught:
        await read(tmp_path, run_ctx, RAGGED, on_malformed="fail")
    detail = caught.value.details[0]
    assert detail.where == f"{tmp_path / 'in.csv'}:3"
    assert "expected 3 fields, found 2" in detail.message
    assert "on_malformed" in detail.fix


async def test_an_unterminated_quote_rejects_its_line_and_reading_goes_on(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'a,b\n1,"x\ny"\n2,"never closed\n3,fine\n4,plain\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, block_size=4)
    assert errors == [(4, f"{tmp_path / 'in.csv'}:4: " + UNTERMINATED)]
    # reading resumes on the next line
    assert [(r["a"], r["b"], r[LINE_COLUMN]) for r in rows] == [
        ("1", "x\ny", 2),
        ("3", "fine", 5),
        ("4", "plain", 6),
    ]


async def test_a_quote_closed_lines_later_makes_one_record(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'a,b\n2,"never closed\n3,fine\n4,"also\nfine"\n5,"again\n6,end\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, block_size=4)
    # lines 2-4 are one record (the quote closes on line 4, with text after it), line 5 is
    # ragged, the quote opened on line 6 never closes
    assert [line for line, _ in errors] == [2, 5, 6]
    reasons = [reason.split(": ", 1)[1] for _, reason in errors]
    assert reasons[0].startswith("text after the closing quote at line 4, column 4, in field 2")
    assert reasons[1:] == ["expected 2 fields, found 1", UNTERMINATED]
    assert [(r["a"], r["b"], r[LINE_COLUMN]) for r in rows] == [("6", "end", 7)]


UNTERMINATED = "unterminated quoted field: a quote opened on this line is never closed"


async def test_an_unterminated_quote_longer_than_max_record_bytes_is_one_reject(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'a,b\n1,"' + b"x" * 300 + b"\n2,y\n3,z\n"
    rows, errors, _ = await read(tmp_path, run_ctx, data, block_size=64, max_record_bytes=100)
    [(line, reason)] = errors
    assert line == 2
    assert "unterminated quoted field" in reason and "max_record_bytes (100 bytes)" in reason
    assert rows == []


LONG = b"y" * 150


@pytest.mark.parametrize("block_size", [7, 64, 100, 1 << 20])
async def test_a_quoted_record_over_max_record_bytes_is_rejected_whole(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    # line 3 starts a record of 3 lines whose quoted field holds 2 line breaks and a "" quote
    data = b'a,b\n1,x\n2,"' + LONG + b'\n""' + LONG + b'\r\nend"\n3,z\n4,"short\nquote"\n'
    rows, errors, _ = await read(
        tmp_path, run_ctx, data, block_size=block_size, max_record_bytes=100
    )
    [(line, reason)] = errors
    assert line == 3
    size = len(b'2,"' + LONG + b'\n""' + LONG + b'\r\nend"\n')
    assert reason.endswith(
        f"record of {size} bytes (lines 3-5) is longer than max_record_bytes (100 bytes); "
        "if such records are genuine, raise `max_record_bytes` in the source's options"
    )
    assert [(r["a"], r["b"], r[LINE_COLUMN]) for r in rows] == [
        ("1", "x", 2),
        ("3", "z", 6),
        ("4", "short\nquote", 7),
    ]


@pytest.mark.parametrize("block_size", [16, 1 << 20])
async def test_an_unquoted_line_over_max_record_bytes_is_rejected(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    data = b"a,b\n1," + LONG + b"\n2,z\n3," + LONG
    rows, errors, _ = await read(
        tmp_path, run_ctx, data, block_size=block_size, max_record_bytes=100
    )
    assert [line for line, _ in errors] == [2, 4]
    assert all("longer than max_record_bytes (100 bytes)" in reason for _, reason in errors)
    assert [(r["a"], r[LINE_COLUMN]) for r in rows] == [("2", 3)]


async def test_a_record_over_max_record_bytes_fails_the_run_with_the_fix(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'a,b\n1,"' + LONG + b'"\n'
    with pytest.raises(PermanentError) as caught:
        await read(
            tmp_path, run_ctx, data, max_record_bytes=100, on_malformed="fail", block_size=32
        )
    text = str(caught.value)
    assert "in.csv:2" in text and "max_record_bytes (100 bytes)" in text
    assert "raise `max_record_bytes`" in text


async def test_a_quote_inside_an_unquoted_field_is_a_literal(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'item,size\nscreen,27"\ncable,3" long\n"quoted, with comma",1\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data)
    assert errors == []
    assert [r["size"] for r in rows] == ['27"', '3" long', "1"]
    assert [r[LINE_COLUMN] for r in rows] == [2, 3, 4]


DOUBLE_THE_QUOTE = 'a quote inside a quoted field must be doubled (""), as RFC 4180 asks'


@pytest.mark.parametrize("block_size", [1, 7, 1 << 20])
async def test_strict_quotes_off_reads_text_after_a_closing_quote_joined(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    data = b'id,name\n1,"Ann"ie\n2,"ok, quoted"\n3,"say ""hi"""\n'
    rows, errors, _ = await read(
        tmp_path, run_ctx, data, block_size=block_size, strict_quotes=False
    )
    assert errors == []
    assert [(r["id"], r["name"], r[LINE_COLUMN]) for r in rows] == [
        ("1", "Annie", 2),
        ("2", "ok, quoted", 3),
        ("3", 'say "hi"', 4),
    ]


@pytest.mark.parametrize("block_size", [1, 7, 1 << 20])
async def test_text_after_a_closing_quote_is_rejected_with_its_line_column_and_fix(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    data = (
        b'id,name\n1,"Ann"ie\n2,"ok, quoted"\n3,""x\n4,"say ""hi"""\n'
        b'5,"two\nlines"z\n6,plain\n7,"Zo\xc3\xab"s\n'
    )
    rows, errors, src = await read(tmp_path, run_ctx, data, block_size=block_size)
    assert [(r["id"], r["name"], r[LINE_COLUMN]) for r in rows] == [
        ("2", "ok, quoted", 3),
        ("4", 'say "hi"', 5),
        ("6", "plain", 8),
    ]
    where = str(tmp_path / "in.csv")
    assert errors == [
        (
            2,
            f"{where}:2: text after the closing quote at column 8, in field 2 'name': "
            f"'\"Ann\"ie'; {DOUBLE_THE_QUOTE}",
        ),
        (
            4,
            f"{where}:4: text after the closing quote at column 5, in field 2 'name': "
            f"'\"\"x'; {DOUBLE_THE_QUOTE}",
        ),
        (
            6,
            f"{where}:6: text after the closing quote at line 7, column 7, in field 2 "
            f"'name': '\"two\\nlines\"z'; {DOUBLE_THE_QUOTE}",
        ),
        (
            9,
            f"{where}:9: text after the closing quote at column 8, in field 2 'name': "
            f"'\"Zoë\"s'; {DOUBLE_THE_QUOTE}",
        ),
    ]
    assert src.rejected == 4


async def test_text_after_a_closing_quote_in_a_block_read_in_one_parse_is_rejected(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    # blocks of clean lines are parsed whole; the one holding the bad line must not be
    lines = [b'%d,"name %d",x' % (i, i) for i in range(2000)]
    lines[1500] = b'1500,"name "1500,x'
    data = b"id,name,v\n" + b"\n".join(lines) + b"\n"
    rows, errors, _ = await read(tmp_path, run_ctx, data, block_size=4096, types={"id": "int"})
    assert [line for line, _ in errors] == [1502]
    assert "text after the closing quote at column 13, in field 2 'name'" in errors[0][1]
    assert len(rows) == 1999 and 1500 not in [r["id"] for r in rows]
    assert [r[LINE_COLUMN] for r in rows[1499:1501]] == [1501, 1503]


async def test_a_reject_for_text_after_a_closing_quote_names_its_column_and_keeps_the_record(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    (tmp_path / "in.csv").write_bytes(b'id,name\n1,"Ann"ie\n')
    src = source(path="in.csv")
    await read_all(src, run_ctx)
    [error] = src.take_errors()
    assert error.column == "name"
    assert error.row == {"__file": str(tmp_path / "in.csv"), "__raw": '1,"Ann"ie'}


async def test_text_after_a_closing_quote_fails_the_run_under_the_fail_policy(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    with pytest.raises(PermanentError) as caught:
        await read(tmp_path, run_ctx, b'a,b\n1,2\n"x"y,3\n', on_malformed="fail")
    detail = caught.value.details[0]
    assert detail.where == f"{tmp_path / 'in.csv'}:3"
    assert detail.message.startswith("text after the closing quote at column 4, in field 1 'a'")
    assert DOUBLE_THE_QUOTE in detail.message and "on_malformed" in detail.fix


async def test_text_after_a_closing_quote_in_the_header_is_an_error(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    with pytest.raises(PermanentError) as caught:
        await read(tmp_path, run_ctx, b'id,"name"x\n1,2\n')
    detail = caught.value.details[0]
    assert detail.where == f"{tmp_path / 'in.csv'}:1"
    assert detail.message.startswith("cannot read the header: text after the closing quote")
    assert detail.fix == DOUBLE_THE_QUOTE


async def test_quotes_escaped_or_doubled_are_not_text_after_a_closing_quote(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b'a,b\n"x\\"y",1\n"""q""",2\n"",3\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, escape="\\")
    assert errors == []
    assert [r["a"] for r in rows] == ['x"y', '"q"', ""]


def test_scanner_finds_the_closing_quotes_that_text_follows() -> None:
    scan = scan_records(b'a,"b"c\n"d",e\n"f""g"h,i\n', Delimiters(ord(",")), final=True)
    assert scan.misquoted.tolist() == [4, 18]


async def test_invalid_utf8_bytes_reject_only_their_row(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, errors, _ = await read(tmp_path, run_ctx, b"a,b\n1,ok\n2,bad\xff\xfe\n3,ok\n")
    assert [r["a"] for r in rows] == ["1", "3"]
    assert errors[0][0] == 3 and "invalid utf-8 byte sequence" in errors[0][1]


async def test_bytes_invalid_in_cp1252_are_named_in_the_rejection(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = "a;b\n1;café\n".encode("cp1252") + b"2;\x81\n3;\x80\n"
    rows, errors, _ = await read(tmp_path, run_ctx, data, delimiter=";", encoding="cp1252")
    assert [(r["a"], r["b"]) for r in rows] == [("1", "café"), ("3", "€")]
    assert errors[0][0] == 3 and "byte 0x81 is not valid cp1252" in errors[0][1]


async def test_bytes_invalid_in_the_first_record_of_a_file_without_header_reject_only_it(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, errors, _ = await read(tmp_path, run_ctx, b"caf\xe9,1\nok,2\n", header=False)
    assert [(r["col1"], r["col2"], r[LINE_COLUMN]) for r in rows] == [("ok", "2", 2)]
    assert [(line, reason.rsplit("in.csv:", 1)[1]) for line, reason in errors] == [
        (1, "1: invalid utf-8 byte sequence e9 at byte 4 of the row")
    ]


async def test_a_header_invalid_in_the_encoding_is_an_error_naming_the_byte_and_the_fix(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    with pytest.raises(PermanentError) as raised:
        await read(tmp_path, run_ctx, b"id,caf\xe9\n1,2\n")
    (detail,) = raised.value.details
    assert detail.message == (
        "the header is not utf-8 text: invalid utf-8 byte sequence e9 at byte 4 of the field"
    )
    assert detail.where.endswith("in.csv:1") and "set `encoding`" in (detail.fix or "")
    # names given with `columns` replace the header: its bytes do not matter
    rows, _, _ = await read(tmp_path, run_ctx, b"id,caf\xe9\n1,2\n", columns=["a", "b"])
    assert [(r["a"], r["b"]) for r in rows] == [("1", "2")]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
async def test_a_utf16_file_read_as_utf8_is_named_so(
    tmp_path: Path, run_ctx: RunContext, encoding: str
) -> None:
    data = "\ufeffa,b\n1,2\n".encode(encoding)
    with pytest.raises(PermanentError) as raised:
        await read(tmp_path, run_ctx, data)
    assert raised.value.details[0].message.endswith(
        "(the file starts with a UTF-16 byte-order mark: set `encoding: utf-16`)"
    )
    rows, _, _ = await read(tmp_path, run_ctx, data, encoding="utf-16")
    assert [(r["a"], r["b"]) for r in rows] == [("1", "2")]


async def test_a_value_of_the_wrong_type_is_rejected_with_column_and_value(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    (tmp_path / "in.csv").write_bytes(b"id,total\n1,2.5\n2,abc\n3,4\n")
    src = source(path="in.csv", types={"id": "int", "total": "decimal(10,2)"})
    table = await read_all(src, run_ctx)
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("total").type == pa.decimal128(10, 2)
    assert table.column("id").to_pylist() == [1, 3]
    (error,) = src.take_errors()
    assert (error.line, error.column, error.value) == (3, "total", "abc")


@pytest.mark.parametrize("kind", ["decimal(10,2)", "decimal"])
async def test_a_decimal_with_an_exponent_no_decimal_holds_is_rejected_not_a_crash(
    tmp_path: Path, run_ctx: RunContext, kind: str
) -> None:
    # Arrow's conversion of 1e-1000000000 to a decimal crashes the process (pyarrow 26),
    # whether its CSV reader or a cast does it
    data = b'id,total\n1,2.5\n2,1e-1000000000\n3,4\n4,"1E+99999"\n5,0.1e0001\n'
    (tmp_path / "in.csv").write_bytes(data)
    src = source(path="in.csv", types={"id": "int", "total": kind})
    table = await read_all(src, run_ctx)
    assert table.column("id").to_pylist() == [1, 3, 5]
    assert [(e.line, e.column, e.value) for e in src.take_errors()] == [
        (3, "total", "1e-1000000000"),
        (5, "total", "1E+99999"),
    ]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            "1.005",
            "'1.005' has 3 digits after the point, more than the 2 of decimal128(10, 2): "
            "declare decimal(11,3), or round the values in the file",
        ),
        (
            "-0.0001",
            "'-0.0001' has 4 digits after the point, more than the 2 of decimal128(10, 2): "
            "declare decimal(12,4), or round the values in the file",
        ),
        (
            "123456789",
            "'123456789' has 9 digits before the point, more than the 8 of decimal128(10, 2): "
            "declare decimal(11,2)",
        ),
        (
            "1e9",
            "'1e9' has 10 digits before the point, more than the 8 of decimal128(10, 2): "
            "declare decimal(12,2)",
        ),
        ("abc", "'abc' is not a valid decimal128(10, 2)"),
    ],
)
async def test_a_decimal_that_does_not_fit_its_type_is_rejected_with_its_value_and_the_room_needed(
    tmp_path: Path, run_ctx: RunContext, value: str, reason: str
) -> None:
    (tmp_path / "in.csv").write_text(f"id,total\n1,2.5\n2,{value}\n3,4.10\n")
    src = source(path="in.csv", types={"total": "decimal(10,2)"})
    table = await read_all(src, run_ctx)
    assert table.column("id").to_pylist() == ["1", "3"]
    (error,) = src.take_errors()
    assert (error.line, error.column, error.value) == (3, "total", value)
    assert error.reason == f"{tmp_path / 'in.csv'}:3: column 'total': {reason}"


# -- options ----------------------------------------------------------------------------------


async def test_without_a_header_columns_are_named_col1_col2(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, _, _ = await read(tmp_path, run_ctx, b"1,a\n2,b\n", header=False)
    assert rows == [
        {"col1": "1", "col2": "a", LINE_COLUMN: 1},
        {"col1": "2", "col2": "b", LINE_COLUMN: 2},
    ]


async def test_columns_rename_the_header_or_name_headerless_files(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows, _, _ = await read(tmp_path, run_ctx, b"x,y\n1,2\n", columns=["id", "v"])
    assert rows == [{"id": "1", "v": "2", LINE_COLUMN: 2}]
    rows, _, _ = await read(tmp_path, run_ctx, b"1,2\n", columns=["id", "v"], header=False)
    assert rows == [{"id": "1", "v": "2", LINE_COLUMN: 1}]


async def test_columns_that_do_not_match_the_header_are_an_error(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    with pytest.raises(PermanentError, match="names 3 columns but the header has 2"):
        await read(tmp_path, run_ctx, b"x,y\n1,2\n", columns=["a", "b", "c"])


async def test_duplicate_header_names_are_an_error(tmp_path: Path, run_ctx: RunContext) -> None:
    with pytest.raises(PermanentError, match=r"repeats column names \['a'\]"):
        await read(tmp_path, run_ctx, b"a,b,a\n1,2,3\n")


async def test_values_are_strings_by_default_and_inferred_on_request(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b"id,price,ok,day\n1,2.5,true,2024-01-02\n2,3,false,2024-02-03\n"
    rows, _, _ = await read(tmp_path, run_ctx, data)
    assert rows[0] == {"id": "1", "price": "2.5", "ok": "true", "day": "2024-01-02", LINE_COLUMN: 2}
    (tmp_path / "in.csv").write_bytes(data)
    table = await read_all(source(path="in.csv", infer=True, types={"id": "str"}), run_ctx)
    assert [f.type for f in table.schema][:4] == [
        pa.string(),
        pa.float64(),
        pa.bool_(),
        pa.date32(),
    ]


async def test_null_values_and_quoted_empty_strings(tmp_path: Path, run_ctx: RunContext) -> None:
    rows, _, _ = await read(tmp_path, run_ctx, b'a,b\n,""\nNA,x\n')
    assert [(r["a"], r["b"]) for r in rows] == [(None, ""), ("NA", "x")]
    rows, _, _ = await read(tmp_path, run_ctx, b'a,b\n,""\nNA,x\n', null_values=["NA"])
    assert [(r["a"], r["b"]) for r in rows] == [("", ""), (None, "x")]


async def test_backslash_escapes(tmp_path: Path, run_ctx: RunContext) -> None:
    data = b'a,b\n"say \\"hi\\"",1\nc\\,d,2\n"e\\\\",3\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, escape="\\", double_quote=False)
    assert errors == []
    assert [r["a"] for r in rows] == ['say "hi"', "c,d", "e\\"]


async def test_quoting_can_be_turned_off(tmp_path: Path, run_ctx: RunContext) -> None:
    rows, _, _ = await read(tmp_path, run_ctx, b'a\tb\n"x\t"y"\n', delimiter="\t", quote=None)
    assert rows == [{"a": '"x', "b": '"y"', LINE_COLUMN: 2}]


@pytest.mark.parametrize(("preset", "delimiter"), [("tsv", "\t"), ("psv", "|"), ("semicolon", ";")])
async def test_any_single_character_delimiter(
    tmp_path: Path, run_ctx: RunContext, preset: str, delimiter: str
) -> None:
    d = delimiter.encode()
    data = b"a" + d + b"b\n1" + d + b'"x' + d + b'y"\n'
    rows, _, _ = await read(tmp_path, run_ctx, data, delimiter=delimiter)
    assert rows == [{"a": "1", "b": f"x{delimiter}y", LINE_COLUMN: 2}]


async def test_bare_carriage_returns_end_lines(tmp_path: Path, run_ctx: RunContext) -> None:
    rows, _, _ = await read(tmp_path, run_ctx, b"a,b\r1,2\r3,4\r")
    assert [(r["a"], r[LINE_COLUMN]) for r in rows] == [("1", 2), ("3", 3)]


# -- encodings and compression ----------------------------------------------------------------


TEXT = [["name", "city"], ["Zoë", "Köln"], ["José", "São Paulo"], ["Łukasz", "Kraków"]]


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "utf-16-le", "utf-16-be"]
)
async def test_each_encoding_reads_the_same_rows(
    tmp_path: Path, run_ctx: RunContext, encoding: str
) -> None:
    rows_in = TEXT if encoding not in ("latin-1",) else [r for r in TEXT if "Ł" not in r[0]]
    if encoding == "cp1252":
        rows_in = [r for r in TEXT if "Ł" not in r[0]] + [["€uro", "quote “x”"]]
    text = "".join(",".join(r) + "\r\n" for r in rows_in)
    rows, errors, _ = await read(
        tmp_path, run_ctx, text.encode(encoding), encoding=encoding, block_size=5
    )
    assert errors == []
    assert [[r["name"], r["city"]] for r in rows] == rows_in[1:]
    assert [r[LINE_COLUMN] for r in rows] == list(range(2, len(rows_in) + 1))


async def test_a_utf8_byte_order_mark_is_dropped(tmp_path: Path, run_ctx: RunContext) -> None:
    rows, _, src = await read(tmp_path, run_ctx, b"\xef\xbb\xbfid,v\n1,2\n")
    assert src.names == ["id", "v"] and rows[0]["id"] == "1"


def _zstd(data: bytes) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.CompressedOutputStream(sink, "zstd") as out:
        out.write(data)
    packed: bytes = sink.getvalue().to_pybytes()
    return packed


@pytest.mark.parametrize(
    ("name", "pack"),
    [("in.csv.gz", gzip.compress), ("in.csv.zst", _zstd), ("in.csv.bz2", bz2.compress)],
)
async def test_compressed_inputs_are_recognised_by_extension(
    tmp_path: Path, run_ctx: RunContext, name: str, pack: Any
) -> None:
    data = b'a,b\n1,"x\ny"\n2,z\n'
    rows, _, src = await read(tmp_path, run_ctx, pack(data), name=name, block_size=3)
    assert [(r["a"], r[LINE_COLUMN]) for r in rows] == [("1", 2), ("2", 4)]
    assert src.bytes_read == (tmp_path / name).stat().st_size


async def test_compression_can_be_set_explicitly(tmp_path: Path, run_ctx: RunContext) -> None:
    rows, _, _ = await read(
        tmp_path, run_ctx, gzip.compress(b"a\n1\n"), name="data.bin", compression="gzip"
    )
    assert rows == [{"a": "1", LINE_COLUMN: 2}]


# -- paths ------------------------------------------------------------------------------------


async def test_a_glob_reads_files_in_sorted_order_with_per_file_lines(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    (tmp_path / "in").mkdir()
    for name, body in [("b.csv", b"id\n3\n4\n"), ("a.csv", b"id\n1\n2\n"), ("c.txt", b"id\n9\n")]:
        (tmp_path / "in" / name).write_bytes(body)
    src = source(path="in/*.csv")
    rows = (await read_all(src, run_ctx)).to_pylist()
    assert [(r["id"], r[LINE_COLUMN]) for r in rows] == [("1", 2), ("2", 3), ("3", 2), ("4", 3)]
    assert src.files_done == [str(tmp_path / "in" / "a.csv"), str(tmp_path / "in" / "b.csv")]


async def test_files_of_a_glob_must_share_their_columns(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    (tmp_path / "a.csv").write_bytes(b"id,v\n1,2\n")
    (tmp_path / "b.csv").write_bytes(b"id,w\n1,2\n")
    with pytest.raises(PermanentError, match="differ from those of the first file"):
        await read_all(source(path="*.csv"), run_ctx)


async def test_a_missing_file_is_reported_with_a_suggestion(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    (tmp_path / "orders.csv").write_bytes(b"a\n")
    with pytest.raises(PermanentError) as caught:
        await read_all(source(path="ordres.csv"), run_ctx)
    assert "input file not found" in str(caught.value)
    assert "did you mean" in caught.value.details[0].fix
    with pytest.raises(PermanentError, match="no file matches"):
        await read_all(source(path="nothing/*.csv"), run_ctx)


async def test_files_marked_done_are_skipped(tmp_path: Path, run_ctx: RunContext) -> None:
    (tmp_path / "a.csv").write_bytes(b"id\n1\n")
    (tmp_path / "b.csv").write_bytes(b"id\n2\n")
    src = source(path="*.csv")
    src.skip_files = {str(tmp_path / "a.csv")}
    assert (await read_all(src, run_ctx)).column("id").to_pylist() == ["2"]


# -- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"delimiter": ",,"}, "single ASCII character"),
        ({"delimiter": "\n"}, "line break"),
        ({"delimiter": '"'}, "must differ"),
        ({"encoding": "utf-42"}, "unknown encoding 'utf-42'"),
        ({"types": {"a": "integr"}}, "unknown type 'integr'"),
        ({"on_malformed": "ignore"}, "on_malformed"),
        ({"delimter": ";"}, "delimter"),
        ({"columns": ["a", "a"]}, "duplicate names"),
    ],
)
def test_invalid_options_are_rejected_with_the_reason(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        CsvSourceConfig.model_validate({"path": "x.csv", **options})


async def test_types_for_unknown_columns_are_an_error(tmp_path: Path, run_ctx: RunContext) -> None:
    with pytest.raises(PermanentError, match=r"columns that the file does not have: \['nope'\]"):
        await read(tmp_path, run_ctx, b"a\n1\n", types={"nope": "int"})


# -- against Python's csv module --------------------------------------------------------------


async def test_line_numbers_match_pythons_csv_reader(tmp_path: Path, run_ctx: RunContext) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "text"])
    for i in range(500):
        writer.writerow([i, "line\n" * (i % 4) + f'q"{i}",x'])
    data = buffer.getvalue().encode()
    expected = []
    reader = csv.reader(io.StringIO(buffer.getvalue(), newline=""))
    next(reader)
    start = reader.line_num + 1
    for row in reader:
        expected.append((row[0], row[1], start))
        start = reader.line_num + 1
    rows, errors, _ = await read(tmp_path, run_ctx, data, block_size=97)
    assert errors == []
    assert [(r["id"], r["text"], r[LINE_COLUMN]) for r in rows] == expected


@pytest.mark.parametrize("block_size", [1 << 16, 1 << 20])
async def test_line_numbers_of_big_blocks_match_pythons_csv_reader(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    """Blocks of many lines have their line breaks counted another way than small ones."""
    lines = ["id,text"]
    for i in range(60_000):
        lines.append(f'{i},"two\nlines"' if i % 997 == 0 else f"{i},plain {i}")
    data = ("\n".join(lines) + "\n").encode()
    rows, errors, _ = await read(tmp_path, run_ctx, data, block_size=block_size)
    assert errors == []
    expected, line = [], 2
    for i in range(60_000):
        expected.append((str(i), line))
        line += 2 if i % 997 == 0 else 1
    assert [(r["id"], r[LINE_COLUMN]) for r in rows] == expected


# -- bounded memory ---------------------------------------------------------------------------


async def test_memory_stays_bounded_by_the_block_size_whatever_the_file_size(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    row = b'12345,"some text, with a comma",67.89,"two\nlines"\n'
    (tmp_path / "big.csv").write_bytes(b"id,text,amount,note\n" + row * 200_000)  # ~10 MB
    src = source(path="big.csv", block_size=256 * 1024, batch_rows=4096)
    peak = rows = 0
    async for batch in src.batches(run_ctx):
        rows += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes())
        del batch
    assert rows == 200_000
    # about one parsed block (a whole-file read peaks near 12 MB)
    assert peak < 4 * 1024 * 1024, f"peak Arrow memory {peak} bytes for a 10 MB file"


async def test_an_escaped_line_break_stays_in_the_value(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b"a,b\n1,x\\\ny\n2,z\n"
    rows, errors, _ = await read(tmp_path, run_ctx, data, escape="\\", quote=None)
    assert errors == []
    assert [(r["a"], r["b"], r[LINE_COLUMN]) for r in rows] == [("1", "x\ny", 2), ("2", "z", 4)]


async def test_select_keeps_some_columns_in_the_given_order(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b"id,name,total,note\n1,ann,2.5,x\n2,bob,oops,y\n3,cy,4\n"
    rows, errors, _ = await read(
        tmp_path, run_ctx, data, select=["total", "id"], types={"total": "float"}
    )
    assert rows == [{"total": 2.5, "id": "1", LINE_COLUMN: 2}]
    assert [(line, reason.split(": ", 1)[1]) for line, reason in errors] == [
        (3, "column 'total': 'oops' is not a valid double"),
        (4, "expected 4 fields, found 3"),
    ]
    with pytest.raises(PermanentError, match=r"did you mean 'total'\?"):
        await read(tmp_path, run_ctx, data, select=["totl"])


@pytest.mark.slow
async def test_a_large_compressed_file_streams_with_exact_lines(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    rows = 3_000_000
    with gzip.open(tmp_path / "big.csv.gz", "wb", compresslevel=1) as out:
        out.write(b"id,text,note\n")
        chunk = b"".join(
            b'%d,"row ""%d""",%s\n' % (i, i, b'"a\nb"' if i % 7 == 0 else b"x")
            for i in range(100_000)
        )
        for _ in range(rows // 100_000):
            out.write(chunk)
    src = source(path="big.csv.gz")
    count = peak = 0
    expected_line = 2
    async for batch in src.batches(run_ctx):
        lines = batch.column(LINE_COLUMN).to_pylist()
        ids = [int(v) for v in batch.column("id").to_pylist()]
        for row_id, line in zip(ids, lines, strict=True):
            assert line == expected_line
            expected_line += 2 if row_id % 7 == 0 else 1
        count += batch.num_rows
        peak = max(peak, pa.total_allocated_bytes())
    assert count == rows and src.take_errors() == []
    assert peak < 64 * 1024 * 1024


@pytest.mark.parametrize("block_size", [1, 2, 3, 1 << 20])
async def test_a_quote_after_an_escaped_quote_reads_the_same_whatever_the_blocks(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    # line 3: an escaped quote, then a quote that does not start a field: both literal
    data = b'h1,h2\na"\n\\"",\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, block_size=block_size, escape="\\")
    assert [(r["h1"], r["h2"], r[LINE_COLUMN]) for r in rows] == [('""', None, 3)]
    assert [(line, reason.split(": ", 1)[1]) for line, reason in errors] == [
        (2, "expected 2 fields, found 1")
    ]


@pytest.mark.parametrize("block_size", [64, 200, 1000])
async def test_blocks_read_in_one_parse_give_the_rows_and_lines_of_the_record_scan(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    # Plain lines, then each case the one-parse read must hand back to the record scan:
    # a line break inside quotes, a quote left open at a block's last line, an empty line,
    # a bare CR, a ragged row, a CRLF line and a value of the wrong type.
    plain = b"".join(b'%d,"name %d",x\n' % (i, i) for i in range(40))
    tricky = [
        b'100,"two\nlines",x\n',
        b'101,"open\n\nstill open",x\n',
        b"\n",
        b"102,bare,x\r",
        b"103,ragged\n",
        b"104,crlf,x\r\n",
        b"nan,typed,x\n",
    ]
    data = b"id,name,v\n" + plain + b"".join(part + plain for part in tricky)
    rows, errors, _ = await read(
        tmp_path, run_ctx, data, block_size=block_size, types={"id": "int"}
    )
    reader = csv.reader(io.StringIO(data.decode(), newline=""))
    next(reader)
    expected, start = [], reader.line_num + 1
    for record in reader:
        expected.append((record, start))
        start = reader.line_num + 1
    bad = [
        line for record, line in expected if record in (["103", "ragged"], ["nan", "typed", "x"])
    ]
    assert [line for line, _ in errors] == bad
    kept = [(int(r[0]), r[1], n) for r, n in expected if len(r) == 3 and r[0] != "nan"]
    assert len(kept) == len(tricky) - 3 + 8 * len(plain.splitlines())
    assert [(r["id"], r["name"], r[LINE_COLUMN]) for r in rows] == kept


@pytest.mark.parametrize("block_size", range(8, 40))
async def test_a_block_ending_inside_a_quoted_value_is_not_read_as_an_open_quote(
    tmp_path: Path, run_ctx: RunContext, block_size: int
) -> None:
    data = b'id,v\n1,a\n2,b\n3,"open\nrest"\n4,c\n5,"x\ny"\n6,d\n'
    rows, errors, _ = await read(tmp_path, run_ctx, data, block_size=block_size)
    assert errors == []
    assert [(r["id"], r["v"], r[LINE_COLUMN]) for r in rows] == [
        ("1", "a", 2),
        ("2", "b", 3),
        ("3", "open\nrest", 4),
        ("4", "c", 6),
        ("5", "x\ny", 7),
        ("6", "d", 9),
    ]


# -- nanosecond timestamps --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "earliest"),
    [
        (None, "1677-09-21T00:12:43.145224193"),
        ("UTC", "1677-09-21T00:12:43.145224193Z"),
        ("Europe/Paris", "1677-09-21T01:12:43.145224193+01:00"),
    ],
)
async def test_the_earliest_nanosecond_timestamps_read_back_beside_a_malformed_row(
    tmp_path: Path, run_ctx: RunContext, zone: str | None, earliest: str
) -> None:
    """Arrow's CSV parser refuses the last second before the least nanosecond timestamp; it
    is read exactly, and a row that is no timestamp is still rejected with its line."""
    z = "Z" if zone else ""
    data = f"at\n{earliest}\nnope\n1677-09-21T00:12:43.9{z}\n2262-04-11T23:47:16.854775807{z}\n\n"
    kind = f"timestamp(ns, {zone})" if zone else "timestamp(ns)"
    (tmp_path / "in.csv").write_text(data)
    src = source(path="in.csv", types={"at": kind})
    table = await read_all(src, run_ctx)
    (error,) = src.take_errors()
    assert error.line == 3 and "column 'at': 'nope' is not a valid timestamp[ns" in error.reason
    assert table.column("at").cast(pa.int64()).to_pylist() == [
        -(2**63) + 1,
        -9_223_372_036_100_000_000,
        2**63 - 1,
        None,
    ]


def test_a_decimal_beyond_its_precision_never_reaches_a_parquet_file(tmp_path: Path) -> None:
    from tests.pipeline.test_cli import quiver

    (tmp_path / "in.csv").write_text("id,total\n1,99999999.99\n2,100000000\n3,1.5\n")
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv, types: {total: 'decimal(10,2)'}}}\n"
        "sink: {parquet: {path: out.parquet}}\n"
        "on_error: {policy: reject, rejects: rejects.csv}\n"
    )
    assert quiver("run", "p.yaml", cwd=tmp_path).returncode == 0
    table = pq.read_table(tmp_path / "out.parquet")
    table.validate(full=True)
    assert table.column("id").to_pylist() == ["1", "3"]
    assert "'100000000' has 9 digits before the point" in (tmp_path / "rejects.csv").read_text()


# -- many bad values --------------------------------------------------------------------------


def _counting_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list whose length is the number of Arrow CSV reads made from now on."""
    reads: list[int] = []
    arrow_read = CsvSource._read_table

    def counted(self: CsvSource, data: Any, newlines: bool, types: Any) -> pa.Table:
        reads.append(1)
        return arrow_read(self, data, newlines, types)

    monkeypatch.setattr(CsvSource, "_read_table", counted)
    return reads


MANY_BAD = b"id,n,x\n" + b"".join(
    b"%d,%s,%d.5\n" % (i, b"oops" if i % 10 == 3 else b"NA" if i % 10 == 7 else b"%d" % i, i)
    for i in range(1_000)
)


async def test_many_bad_numbers_are_found_by_a_cast_not_by_halving_the_block(
    tmp_path: Path, run_ctx: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A block whose int column holds a bad value in every tenth row: the rows are read as
    text once, the column cast to find the suspects, the others read together and each
    suspect alone (its reason as before), instead of about two reads a bad row and more."""
    reads = _counting_reads(monkeypatch)
    rows, errors, _ = await read(
        tmp_path, run_ctx, MANY_BAD, types={"n": "int", "x": "float"}, null_values=["NA"]
    )
    assert len(reads) <= 100 + 10  # one a bad row, and a few; halving took 855
    assert [line for line, _ in errors] == [i + 2 for i in range(1_000) if i % 10 == 3]
    assert errors[0][1].endswith("column 'n': 'oops' is not a valid int64")
    assert [int(r["id"]) for r in rows] == [i for i in range(1_000) if i % 10 != 3]
    assert [r[LINE_COLUMN] for r in rows] == [int(r["id"]) + 2 for r in rows]
    assert rows[6]["n"] is None and rows[7]["n"] == 8 and rows[7]["x"] == 8.5


async def test_rows_a_cast_suspects_but_the_reader_takes_stay_in_their_place(
    tmp_path: Path, run_ctx: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the cast and Arrow's CSV reader disagree (here made to: every fifth value is
    suspected), the reader decides: the suspects it reads keep their place among the rows."""
    import numpy as np

    from quiver.pipeline.sources import csv as csv_source

    real = csv_source._cast_failures

    def suspicious(values: pa.Array, kind: pa.DataType) -> np.ndarray:
        found = set(real(values, kind).tolist()) | set(range(0, len(values), 5))
        return np.array(sorted(found), dtype=np.int64)

    monkeypatch.setattr(csv_source, "_cast_failures", suspicious)
    rows, errors, _ = await read(
        tmp_path, run_ctx, MANY_BAD, types={"n": "int", "x": "float"}, null_values=["NA"]
    )
    assert [line for line, _ in errors] == [i + 2 for i in range(1_000) if i % 10 == 3]
    assert [int(r["id"]) for r in rows] == [i for i in range(1_000) if i % 10 != 3]
    assert [r[LINE_COLUMN] for r in rows] == [int(r["id"]) + 2 for r in rows]


async def test_many_bad_dates_are_found_by_a_cast_too(
    tmp_path: Path, run_ctx: RunContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _counting_reads(monkeypatch)
    data = b"id,d\n" + b"".join(
        b"%d,%s\n" % (i, b"2024-02-30" if i % 4 == 1 else b"2024-01-%02d" % (i % 28 + 1))
        for i in range(400)
    )
    rows, errors, _ = await read(tmp_path, run_ctx, data, types={"d": "date"})
    assert len(reads) <= 100 + 10  # one a bad row, and a few; halving took 599
    assert [line for line, _ in errors] == [i + 2 for i in range(400) if i % 4 == 1]
    assert "'2024-02-30'" in errors[0][1]
    assert [int(r["id"]) for r in rows] == [i for i in range(400) if i % 4 != 1]
    assert str(rows[1]["d"]) == "2024-01-03"


@pytest.mark.parametrize(
    ("options", "spelling"),
    [
        ({"true_values": ["x", "yes"], "false_values": ["no", "x"]}, "'x'"),
        ({"true_values": ["0", "on"]}, "'0'"),  # the false spellings left as they are
        ({"false_values": ["true", "off"]}, "'true'"),
    ],
)
def test_a_spelling_read_both_as_true_and_as_false_is_refused(
    options: dict[str, Any], spelling: str
) -> None:
    with pytest.raises(ValidationError, match=f"{spelling} would be read both as true"):
        CsvSourceConfig.model_validate({"path": "in.csv", **options})


async def test_own_true_and_false_spellings_read_a_bool_column(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    data = b"a,b\n1,on\n2,off\n3,1\n"
    rows, errors, _ = await read(
        tmp_path,
        run_ctx,
        data,
        types={"b": "bool"},
        true_values=["on", "1"],
        false_values=["off"],
    )
    assert [r["b"] for r in rows] == [True, False, True] and errors == []
