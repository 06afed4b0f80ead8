"""The CSV sink's options, and standard input/output through ``quiver run``."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.csv import CsvSink, CsvSinkConfig, Quoting, _Serializer
from quiver.pipeline.sources.csv import CsvSource
from quiver.runtime.errors import PermanentError

from ..conftest import build, read_all, write_all

QUIVER = str(Path(sys.executable).with_name("quiver"))


async def write_csv(ctx: RunContext, batch: pa.RecordBatch, **options: Any) -> CsvSink:
    sink: CsvSink = build(CsvSink, {"path": "out.csv", **options})
    await sink.open(batch.schema, ctx)
    await sink.write(batch)
    await sink.commit()
    return sink


ROWS = pa.record_batch(
    {
        "id": [1, 2, 3],
        "text": ["plain", 'has "quotes", commas', None],
        "empty": ["", None, "NULL"],
        LINE_COLUMN: [10, 11, 12],
    }
)


# -- csv sink options -------------------------------------------------------------------------


async def test_minimal_quoting_quotes_only_what_needs_it(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    await write_csv(run_ctx, ROWS)
    assert (tmp_path / "out.csv").read_text() == (
        'id,text,empty\n1,plain,""\n2,"has ""quotes"", commas",\n3,,NULL\n'
    )


async def test_all_quoting_crlf_header_off_and_a_null_string(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    await write_csv(
        run_ctx, ROWS, quoting="all", line_terminator="crlf", header=False, null_string="NULL"
    )
    assert (tmp_path / "out.csv").read_bytes() == (
        b'"1","plain",""\r\n"2","has ""quotes"", commas",NULL\r\n"3",NULL,"NULL"\r\n'
    )
    src = build(
        CsvSource,
        {
            "path": "out.csv",
            "header": False,
            "columns": ["id", "text", "empty"],
            "null_values": ["NULL"],
        },
    )
    back = await read_all(src, run_ctx)
    assert back.column("text").to_pylist() == ["plain", 'has "quotes", commas', None]
    assert back.column("empty").to_pylist() == ["", None, "NULL"]


async def test_no_quoting_refuses_a_value_that_needs_quotes(run_ctx: RunContext) -> None:
    with pytest.raises(PermanentError) as caught:
        await write_csv(run_ctx, ROWS, quoting="none")
    assert caught.value.details[0].where == "row from line 11"
    assert "quoting: minimal" in caught.value.details[0].fix


async def test_no_quoting_with_an_escape_character(tmp_path: Path, run_ctx: RunContext) -> None:
    batch = pa.record_batch({"a": ['x,"y"\\z', "plain"]})
    await write_csv(run_ctx, batch, quoting="none", escape="\\")
    assert (tmp_path / "out.csv").read_text() == 'a\nx\\,\\"y\\"\\\\z\nplain\n'
    src = build(CsvSource, {"path": "out.csv", "quote": None, "escape": "\\"})
    assert (await read_all(src, run_ctx)).column("a").to_pylist() == ['x,"y"\\z', "plain"]


async def test_a_character_the_encoding_lacks_is_reported_with_its_line(
    run_ctx: RunContext,
) -> None:
    batch = pa.record_batch({"a": ["café", "日本"], LINE_COLUMN: [4, 5]})
    with pytest.raises(PermanentError) as caught:
        await write_csv(run_ctx, batch, encoding="cp1252")
    assert caught.value.details[0].where == "row from line 5"


async def test_multi_character_delimiter_and_non_text_columns(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    batch = pa.record_batch(
        {"n": [1.5, None], "ok": [True, False], "tags": [["a", "b"], None], "t": ["x||y", "z"]}
    )
    await write_csv(run_ctx, batch, delimiter="||")
    assert (tmp_path / "out.csv").read_text() == (
        'n||ok||tags||t\n1.5||true||"[""a"",""b""]"||"x||y"\n||false||||z\n'
    )


async def test_a_failed_sink_leaves_no_output(tmp_path: Path, run_ctx: RunContext) -> None:
    sink = build(CsvSink, {"path": "out/data.csv"})
    await sink.open(ROWS.schema, run_ctx)
    await sink.write(ROWS)
    await sink.abort()
    assert list((tmp_path / "out").iterdir()) == []


# -- standard input and output ----------------------------------------------------------------


def test_quiver_run_reads_stdin_and_writes_stdout(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(
        textwrap.dedent(
            """
            source: {csv: {path: "-", delimiter: ";"}}
            sink: {csv: {path: "-", delimiter: "|"}}
            """
        )
    )
    data = b'id;note\n1;"two\nlines"\n2;plain\n'
    done = subprocess.run(
        [QUIVER, "run", str(pipeline)],
        input=data,
        capture_output=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", "QUIVER_RUN": uuid.uuid4().hex},
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode() == 'id|note\n1|"two\nlines"\n2|plain\n'


def test_compressed_standard_output(tmp_path: Path) -> None:
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(
        'source: {csv: {path: "-"}}\nsink: {jsonl: {path: "-", compression: gzip}}\n'
    )
    done = subprocess.run(
        [QUIVER, "run", str(pipeline)],
        input=b"a,b\n1,x\n",
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert gzip.decompress(done.stdout) == b'{"a":"1","b":"x"}\n'


def test_a_huge_batch_is_serialised_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    from quiver.pipeline.sinks import csv as csv_sink

    batch = pa.record_batch({"a": [str(i) * 20 for i in range(50)], "b": list(range(50))})
    whole = csv_sink.serialize_csv(batch, csv_sink.CsvSinkConfig.model_validate({"path": "x"}))
    monkeypatch.setattr(csv_sink, "_SLICE_BYTES", 100)
    sliced = csv_sink.serialize_csv(batch, csv_sink.CsvSinkConfig.model_validate({"path": "x"}))
    assert sliced == whole and whole.count("\n") == 50


# -- Arrow's CSV writer for quoting all / none -------------------------------------------------

_TRICKY = ["", " ", "plain", 'a "quoted" word', "a,b", "a;b", "a\tb", "a|b", "NULL", "\\N"]
_TRICKY += ["line\nbreak", "cr\rlf\r\n", '"', "é ü 漢字", "trailing\\"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.one_of(st.none(), st.sampled_from(_TRICKY), st.text()), max_size=12),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quoting=st.sampled_from(["all", "none"]),
    terminator=st.sampled_from(["\n", "\r\n", "\r"]),
    null_string=st.sampled_from(["", "NULL", "\\N"]),
)
def test_arrow_writer_writes_what_the_column_wise_path_writes(
    texts: list[str | None], delimiter: str, quoting: Quoting, terminator: str, null_string: str
) -> None:
    """With ``quoting: all`` or ``none``, Arrow's CSV writer does the quoting and joining; its
    bytes equal those of the column-wise path, and it refuses the same values the same way."""
    n = len(texts)
    batch = pa.record_batch(
        {
            "text": pa.array(texts, pa.string()),
            "id": pa.array([i if i % 3 else None for i in range(n)], pa.int64()),
            "price": pa.array([i / 7 for i in range(n)], pa.float64()),
            "day": pa.array([dt.date(2024, 1, 1 + i % 28) for i in range(n)], pa.date32()),
            "tags": pa.array([["x", "y,z"] if i % 2 else None for i in range(n)]),
            LINE_COLUMN: pa.array(range(2, n + 2), pa.int64()),
        }
    )
    cfg = CsvSinkConfig(
        path="x.csv",
        delimiter=delimiter,
        quoting=quoting,
        line_terminator=terminator,
        null_string=null_string,
    )
    arrow = _Serializer(cfg)
    assert arrow.arrow_options is not None
    column_wise = _Serializer(cfg, arrow_writer=False)
    try:
        expected = column_wise.rows(batch)
    except PermanentError as exc:
        with pytest.raises(PermanentError) as caught:
            arrow.rows(batch)
        assert caught.value.details == exc.details
        return
    assert arrow.rows(batch) == expected


@pytest.mark.parametrize(
    "options",
    [
        {"quoting": "minimal"},
        {"quoting": "all", "quote": "'"},
        {"quoting": "all", "delimiter": "||"},
        {"quoting": "all", "delimiter": "§"},
        {"quoting": "none", "escape": "\\"},
        {"quoting": "all", "escape": "\\"},
        {"quoting": "all", "null_string": '"null"'},
    ],
)
def test_options_arrow_cannot_write_keep_the_column_wise_path(options: dict[str, Any]) -> None:
    assert _Serializer(CsvSinkConfig(path="x.csv", **options)).arrow_options is None


def test_no_quoting_through_arrow_names_the_line_of_a_value_that_needs_quotes() -> None:
    batch = pa.record_batch(
        {"id": [1, 2], "text": ["fine", "not, fine"], LINE_COLUMN: pa.array([7, 8], pa.int64())}
    )
    serializer = _Serializer(CsvSinkConfig(path="x.csv", quoting="none"))
    assert serializer.arrow_options is not None
    with pytest.raises(PermanentError) as caught:
        serializer.rows(batch)
    assert caught.value.details[0].where == "row from line 8"
    assert "'not, fine'" in caught.value.details[0].message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(st.one_of(st.none(), st.sampled_from(_TRICKY), st.text()), max_size=12),
    start=st.integers(0, 3),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    quote=st.sampled_from(['"', "'"]),
    null_string=st.sampled_from(["", "NULL", "\\N"]),
)
def test_minimal_quoting_finds_by_bytes_the_values_the_pattern_finds(
    texts: list[str | None], start: int, delimiter: str, quote: str, null_string: str
) -> None:
    """The scan of the text buffer quotes exactly the values that hold a structural character
    or equal the empty or the null string, in a sliced array too."""
    cfg = CsvSinkConfig(path="x.csv", delimiter=delimiter, quote=quote, null_string=null_string)
    serializer = _Serializer(cfg)
    values = pa.array(["x"] * start + texts, pa.string()).slice(start)
    found, quotes = serializer._rows_needing_quotes(values)
    assert quotes == any(v is not None and quote in v for v in texts)
    expected = [
        v is not None
        and (v in ("", null_string) or any(c in v for c in (delimiter, quote, "\r", "\n")))
        for v in texts
    ]
    assert [bool(f) for f in found] == expected  # a null never needs quotes
    quoted = serializer.field(values, "text", None).to_pylist()
    for value, text, needs in zip(texts, quoted, expected, strict=True):
        if value is None:
            assert text == null_string
        elif needs:
            assert text == quote + value.replace(quote, quote * 2) + quote
        else:
            assert text == value


@pytest.mark.parametrize("null_string", ["", "NULL"])
def test_a_column_whose_every_value_needs_quotes_keeps_its_nulls_unquoted(null_string: str) -> None:
    serializer = _Serializer(CsvSinkConfig(path="x.csv", null_string=null_string))
    values = pa.array(["a,b", None, 'say "hi"', "", None, "x\ny"], pa.string())
    assert serializer.field(values, "text", None).to_pylist() == [
        '"a,b"',
        null_string,
        '"say ""hi"""',
        '""',
        null_string,
        '"x\ny"',
    ]


@pytest.mark.parametrize("start", [0, 3])
def test_a_column_where_most_values_need_quotes_quotes_exactly_those(start: int) -> None:
    """Most values holding structural characters (found from a running count) and few (found
    one by one) quote the same values, in a sliced array too."""
    serializer = _Serializer(CsvSinkConfig(path="x.csv"))
    many = ["a,b", "plain", 'say "hi"', "", "x\ny,z,,", None, "c,d", "e\r", "ok", ",,"]
    few = ["a,b"] + ["plain"] * 20
    # the last value with bytes followed by empty values and nulls (its bytes end the buffer)
    last = [None, ";,", None, "", None]
    for texts in (many, few, last, [";\r", None]):
        values = pa.array(["y,"] * start + texts, pa.string()).slice(start)
        quoted = serializer.field(values, "text", None).to_pylist()
        expected = [
            ""
            if v is None
            else '"' + v.replace('"', '""') + '"'
            if v == "" or any(c in v for c in ',"\r\n')
            else v
            for v in texts
        ]
        assert quoted == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"null_string": "n,a"}, "null_string 'n,a' holds the delimiter ','"),
        ({"null_string": "x||", "delimiter": "||"}, "holds the delimiter '||'"),
        ({"null_string": "N\nA"}, "holds a line break '\\n'"),
        ({"null_string": "N\rA"}, "holds a line break '\\r'"),
        ({"null_string": '"'}, "opens a quote it does not close with '\"'"),
        ({"null_string": '"NU"LL"'}, "opens a quote it does not close with '\"'"),
        ({"null_string": "\\N", "escape": "\\"}, "holds the escape character '\\\\'"),
    ],
)
def test_a_null_string_that_would_not_read_back_as_one_field_is_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        CsvSinkConfig.model_validate({"path": "o.csv", **options})


async def test_a_null_string_with_a_quote_inside_reads_back_as_one_field(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    sink = build(CsvSink, {"path": "o.csv", "null_string": 'N"A', "delimiter": "|"})
    batch = pa.RecordBatch.from_pydict({"a": ["1", "2"], "b": [None, "x,y"]})
    await write_all(sink, [batch], run_ctx)
    back = await read_all(build(CsvSource, {"path": "o.csv", "delimiter": "|"}), run_ctx)
    assert back.column("b").to_pylist() == ['N"A', "x,y"]


@pytest.mark.parametrize("quoting", ["minimal", "all"])
async def test_bytes_that_are_not_utf8_are_refused_naming_the_line_and_the_value(
    run_ctx: RunContext, quoting: str
) -> None:
    sink = build(CsvSink, {"path": "o.csv", "quoting": quoting})
    batch = pa.RecordBatch.from_pydict(
        {
            "id": [1, 2, 3],
            "data": pa.array([b"ok", None, b"a\xffb"], pa.binary()),
            LINE_COLUMN: pa.array([2, 3, 4], pa.int64()),
        }
    )
    with pytest.raises(PermanentError) as raised:
        await write_all(sink, [batch], run_ctx)
    (detail,) = raised.value.details
    assert detail.where == "row from line 4"
    assert detail.message == "column 'data' holds bytes that are not UTF-8 text: 'a\\xffb'"
