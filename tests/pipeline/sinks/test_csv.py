"""The CSV sink's options, and standard input/output through ``quiver run``."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.csv import CsvSink
from quiver.pipeline.sources.csv import CsvSource
from quiver.runtime.errors import PermanentError

from ..conftest import build, read_all

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
