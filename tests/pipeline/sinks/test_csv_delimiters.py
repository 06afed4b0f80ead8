"""Delimiters of several characters and empty column names: what the CSV sink writes reads back
as it was, checked by DuckDB's CSV reader (which takes delimiters of up to four bytes) and by
Quiver's own CSV source."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from quiver.pipeline.component import RunContext
from quiver.pipeline.sinks.csv import CsvSink, CsvSinkConfig, serialize_csv
from quiver.pipeline.sources.csv import CsvSource
from quiver.runtime.errors import PermanentError

from ..conftest import build, read_all

SETTINGS = settings(
    max_examples=int(os.environ.get("QUIVER_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Characters delimiters are made of; values lean on them so that they touch the delimiter.
DELIMITER_CHARS = "|;:#~-,"
DELIMITER = st.text(st.sampled_from(DELIMITER_CHARS), min_size=2, max_size=4)
PIECE = st.one_of(
    st.sampled_from([*DELIMITER_CHARS, '"', "\n", "\r\n", " ", "a", "é", "😀"]),
    st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=3),
)
TEXT = st.lists(PIECE, max_size=6).map("".join)


def duckdb_rows(path: Path, delimiter: str, width: int) -> list[tuple[Any, ...]]:
    """Every record of the file (the header too) as DuckDB reads it, no sniffing."""
    columns = "{" + ", ".join(f"'c{i}': 'VARCHAR'" for i in range(width)) + "}"
    query = (
        f"select * from read_csv(?, delim=?, quote='\"', escape='\"', header=false, "
        f"auto_detect=false, columns={columns}, allow_quoted_nulls=false, "
        "strict_mode=true, new_line='\\n')"
    )
    with duckdb.connect() as con:
        return con.execute(query, [str(path), delimiter]).fetchall()


def write(path: Path, table: pa.Table, **options: Any) -> None:
    ctx = RunContext(uuid.uuid4().hex, str(path.parent), {}, lambda m, level: None)
    sink: CsvSink = build(CsvSink, {"path": path.name, **options})

    async def go() -> None:
        await sink.open(table.schema, ctx)
        for batch in table.to_batches():
            await sink.write(batch)
        await sink.commit()

    asyncio.run(go())


@SETTINGS
@given(
    delimiter=DELIMITER,
    names=st.lists(TEXT.filter(bool), min_size=1, max_size=3, unique=True),
    data=st.data(),
)
def test_values_touching_a_multi_character_delimiter_read_back_unchanged(
    delimiter: str, names: list[str], data: st.DataObject
) -> None:
    rows = data.draw(st.integers(0, 5))
    columns = {
        n: data.draw(st.lists(st.one_of(st.none(), TEXT), min_size=rows, max_size=rows))
        for n in names
    }
    table = pa.table({n: pa.array(v, pa.string()) for n, v in columns.items()})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.csv"
        write(path, table, delimiter=delimiter)
        back = duckdb_rows(path, delimiter, len(names))
    assert back[0] == tuple(names)
    assert back[1:] == [tuple(r.values()) for r in table.to_pylist()]


@pytest.mark.parametrize(
    ("delimiter", "value", "written"),
    [
        ("||", "a|", '"a|"||z'),
        ("||", "|a", '"|a"||z'),
        ("::", "a:b", "a:b::z"),
        ("ab", "xa", '"xa"abz'),
        ("ab", "bx", '"bx"abz'),
        ("ab", "xb", "xbabz"),
        ("||", "a|b", "a|b||z"),
        ("|;|", "x|;", '"x|;"|;|z'),
    ],
)
def test_a_value_that_would_merge_with_the_delimiter_is_quoted(
    delimiter: str, value: str, written: str
) -> None:
    cfg = CsvSinkConfig(path="x.csv", delimiter=delimiter)
    batch = pa.record_batch({"v": [value], "w": ["z"]})
    assert serialize_csv(batch, cfg) == written + "\n"


def test_no_quoting_escapes_every_delimiter_character(tmp_path: Path) -> None:
    cfg = CsvSinkConfig(path="x.csv", delimiter="||", quoting="none", escape="\\")
    batch = pa.record_batch({"v": ["a|", "x||y"], "w": ["|b", "c"]})
    assert serialize_csv(batch, cfg) == "a\\|||\\|b\nx\\|\\|y||c\n"


def test_no_quoting_refuses_a_value_ending_with_part_of_the_delimiter() -> None:
    cfg = CsvSinkConfig(path="x.csv", delimiter="||", quoting="none")
    with pytest.raises(PermanentError, match="cannot be written unquoted"):
        serialize_csv(pa.record_batch({"v": ["a|"], "w": ["b"]}), cfg)


def test_a_delimiter_holding_the_quote_is_refused() -> None:
    with pytest.raises(ValidationError, match="holds the quote or escape character"):
        CsvSinkConfig(path="x.csv", delimiter='"|')


def test_an_empty_header_name_round_trips(tmp_path: Path, run_ctx: RunContext) -> None:
    (tmp_path / "in.csv").write_text('a,"",c\n1,2,3\n')
    table = asyncio.run(read_all(build(CsvSource, {"path": "in.csv"}), run_ctx))
    assert table.column_names[:3] == ["a", "", "c"]
    write(tmp_path / "out.csv", table.select(["a", "", "c"]))
    assert (tmp_path / "out.csv").read_text() == 'a,"",c\n1,2,3\n'


def test_an_unquoted_empty_header_name_stays_empty(tmp_path: Path, run_ctx: RunContext) -> None:
    (tmp_path / "in.csv").write_text("a,,c\n1,2,3\n")
    table = asyncio.run(read_all(build(CsvSource, {"path": "in.csv"}), run_ctx))
    assert table.column_names[:3] == ["a", "", "c"]


def test_several_empty_header_names_are_refused_with_a_fix(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    (tmp_path / "in.csv").write_text("a,,c,\n1,2,3,4\n")
    with pytest.raises(PermanentError) as caught:
        asyncio.run(read_all(build(CsvSource, {"path": "in.csv"}), run_ctx))
    text = str(caught.value)
    assert "2 empty column names (fields 2, 4)" in text and "`columns`" in text
    named = build(CsvSource, {"path": "in.csv", "columns": ["a", "b", "c", "d"]})
    table = asyncio.run(read_all(named, run_ctx))
    assert table.column("d").to_pylist() == ["4"]
