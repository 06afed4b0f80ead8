"""Parquet and Arrow IPC sources and sinks."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.arrow_ipc import ArrowIpcSink
from quiver.pipeline.sinks.parquet import ParquetSink, ParquetSinkConfig
from quiver.pipeline.sources.arrow_ipc import ArrowIpcSource
from quiver.pipeline.sources.parquet import ParquetSource
from quiver.runtime.errors import PermanentError

from .conftest import build, read_all


def sample(rows: int = 10, start: int = 0) -> pa.Table:
    ids = list(range(start, start + rows))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "name": [f"n{i}" if i % 3 else None for i in ids],
            "price": pa.array([decimal.Decimal(i) / 4 for i in ids], pa.decimal128(10, 2)),
            "day": [dt.date(2024, 1, 1 + i % 28) for i in ids],
            "tags": [[str(i)] * (i % 3) for i in ids],
            "geo": [{"lat": i / 2, "lon": -i / 2} for i in ids],
        }
    )


async def write(sink: Any, table: pa.Table, ctx: RunContext, chunk: int = 4) -> None:
    with_lines = table.append_column(LINE_COLUMN, pa.array(range(1, table.num_rows + 1)))
    await sink.open(with_lines.schema, ctx)
    for batch in with_lines.to_batches(max_chunksize=chunk):
        await sink.write(batch)
    await sink.commit()


# -- parquet ----------------------------------------------------------------------------------


async def test_parquet_round_trip_keeps_types_and_numbers_records(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    table = sample(25)
    await write(build(ParquetSink, {"path": "out/t.parquet"}), table, run_ctx)
    back = await read_all(build(ParquetSource, {"path": "out/t.parquet"}), run_ctx)
    assert back.drop_columns([LINE_COLUMN]).equals(table)
    assert back.column(LINE_COLUMN).to_pylist() == list(range(1, 26))


@pytest.mark.parametrize("codec", ["zstd", "snappy", "gzip", "none"])
async def test_parquet_sink_compression_and_row_groups(
    tmp_path: Path, run_ctx: RunContext, codec: str
) -> None:
    options = {"path": "t.parquet", "compression": codec, "row_group_rows": 10}
    await write(build(ParquetSink, options), sample(25), run_ctx, chunk=3)
    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [10, 10, 5]
    expected = "UNCOMPRESSED" if codec == "none" else codec.upper()
    assert meta.row_group(0).column(0).compression == expected
    assert LINE_COLUMN not in pq.read_schema(tmp_path / "t.parquet").names


async def test_parquet_source_reads_only_the_projected_columns(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    pq.write_table(sample(30), tmp_path / "t.parquet", row_group_size=7)
    src = build(ParquetSource, {"path": "t.parquet", "columns": ["name", "id"], "batch_rows": 5})
    batches = [b async for b in src.batches(run_ctx)]
    assert batches[0].schema.names == ["name", "id", LINE_COLUMN]
    assert max(b.num_rows for b in batches) <= 5
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(30))


async def test_parquet_glob_numbers_records_per_file_and_casts_compatible_types(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64())}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"id": pa.array([3], pa.int32())}), tmp_path / "b.parquet")
    back = await read_all(build(ParquetSource, {"path": "*.parquet"}), run_ctx)
    assert back.schema.field("id").type == pa.int64()
    assert back.to_pylist() == [
        {"id": 1, LINE_COLUMN: 1},
        {"id": 2, LINE_COLUMN: 2},
        {"id": 3, LINE_COLUMN: 1},
    ]


async def test_parquet_files_with_other_columns_are_an_error(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    pq.write_table(pa.table({"id": [1]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"key": [1]}), tmp_path / "b.parquet")
    with pytest.raises(PermanentError, match=r"missing \['id'\], extra \['key'\]"):
        await read_all(build(ParquetSource, {"path": "*.parquet"}), run_ctx)


async def test_unknown_projected_columns_and_broken_files_are_errors(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    pq.write_table(pa.table({"id": [1]}), tmp_path / "a.parquet")
    with pytest.raises(PermanentError, match=r"columns \['nope'\] are not in the file"):
        await read_all(build(ParquetSource, {"path": "a.parquet", "columns": ["nope"]}), run_ctx)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PermanentError, match="not a readable Parquet file"):
        await read_all(build(ParquetSource, {"path": "bad.parquet"}), run_ctx)


# -- arrow ipc --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "options", "file_format"),
    [
        ("t.arrow", {}, True),
        ("t.arrows", {}, False),
        ("t.arrow", {"format": "stream"}, False),
        ("t.arrow", {"compression": "zstd"}, True),
        ("t.arrows", {"compression": "lz4"}, False),
    ],
)
async def test_arrow_round_trip_in_file_and_stream_formats(
    tmp_path: Path, run_ctx: RunContext, path: str, options: dict[str, Any], file_format: bool
) -> None:
    table = sample(12)
    await write(build(ArrowIpcSink, {"path": path, **options}), table, run_ctx)
    raw = (tmp_path / path).read_bytes()
    assert raw.startswith(b"ARROW1") == file_format
    back = await read_all(build(ArrowIpcSource, {"path": path}), run_ctx)
    assert back.drop_columns([LINE_COLUMN]).equals(table)
    assert back.column(LINE_COLUMN).to_pylist() == list(range(1, 13))


async def test_a_compressed_arrow_stream_and_column_selection(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    out = pa.CompressedOutputStream(str(tmp_path / "t.arrows.zst"), "zstd")
    with out, ipc.new_stream(out, sample(5).schema) as writer:
        writer.write_table(sample(5))
    src = build(ArrowIpcSource, {"path": "t.arrows.zst", "columns": ["id"]})
    back = await read_all(src, run_ctx)
    assert back.column_names == ["id", LINE_COLUMN]
    assert back.column("id").to_pylist() == [0, 1, 2, 3, 4]


async def test_the_arrow_file_format_cannot_go_to_stdout(run_ctx: RunContext) -> None:
    sink = build(ArrowIpcSink, {"path": "-", "format": "file"})
    with pytest.raises(PermanentError, match="cannot be written to standard output"):
        await sink.open(sample(1).schema, run_ctx)


async def test_a_batch_with_other_columns_is_refused_by_the_sink(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    for cls, path in [(ParquetSink, "t.parquet"), (ArrowIpcSink, "t.arrow")]:
        sink = build(cls, {"path": path})
        await sink.open(sample(1).schema, run_ctx)
        with pytest.raises(PermanentError, match=r"missing \['id', .*extra \['other'\]"):
            await sink.write(pa.record_batch({"other": [1]}))
        await sink.abort()
        assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compression": "snappy", "compression_level": 3}, "does not apply to snappy"),
        ({"compression": "zstd", "compression_level": 40}, "must be 1..22"),
        ({"compresion": "zstd"}, "compresion"),
    ],
)
def test_parquet_sink_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ParquetSinkConfig.model_validate({"path": "x.parquet", **options})


async def test_a_compression_level_is_used(tmp_path: Path, run_ctx: RunContext) -> None:
    options = {"path": "t.parquet", "compression": "zstd", "compression_level": 19}
    await write(build(ParquetSink, options), sample(50), run_ctx)
    assert pq.read_table(tmp_path / "t.parquet").num_rows == 50


@pytest.mark.parametrize(
    ("options", "with_stats"),
    [
        ({}, {"id", "name", "price", "day"}),
        ({"nested_statistics": True}, {"id", "name", "price", "day", "tags", "geo"}),
        ({"statistics": False}, set()),
    ],
)
async def test_statistics_are_written_for_flat_columns_and_nested_ones_on_request(
    tmp_path: Path, run_ctx: RunContext, options: dict[str, Any], with_stats: set[str]
) -> None:
    await write(build(ParquetSink, {"path": "t.parquet", **options}), sample(25), run_ctx)
    group = pq.ParquetFile(tmp_path / "t.parquet").metadata.row_group(0)
    columns = [group.column(i) for i in range(group.num_columns)]
    found = {c.path_in_schema.split(".")[0] for c in columns if c.is_stats_set}
    assert found == with_stats
    assert pq.read_table(tmp_path / "t.parquet").equals(sample(25))


async def test_columns_named_in_no_dictionary_are_written_without_one(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    options = {"path": "t.parquet", "no_dictionary": ["name", "tags"]}
    await write(build(ParquetSink, options), sample(25), run_ctx)
    group = pq.ParquetFile(tmp_path / "t.parquet").metadata.row_group(0)
    columns = [group.column(i) for i in range(group.num_columns)]
    with_dictionary = {c.path_in_schema for c in columns if c.has_dictionary_page}
    assert with_dictionary == {"id", "price", "day", "geo.lat", "geo.lon"}
    assert pq.read_table(tmp_path / "t.parquet").equals(sample(25))


@pytest.mark.parametrize("path", ["d.arrow", "d.arrows", "d.parquet"])
async def test_batches_with_different_dictionaries(
    tmp_path: Path, run_ctx: RunContext, path: str
) -> None:
    first = pa.record_batch({"c": pa.array(["a", "b"]).dictionary_encode()})
    second = pa.record_batch({"c": pa.array(["x", "a"]).dictionary_encode()})
    cls = ParquetSink if path.endswith("parquet") else ArrowIpcSink
    sink = build(cls, {"path": path})
    await sink.open(first.schema, run_ctx)
    await sink.write(first)
    await sink.write(second)
    await sink.commit()
    source = ParquetSource if path.endswith("parquet") else ArrowIpcSource
    back = await read_all(build(source, {"path": path}), run_ctx)
    assert back.column("c").to_pylist() == ["a", "b", "x", "a"]
