"""Damaged Parquet and Arrow IPC inputs: a part that cannot be decoded fails the run with the
file, the part and its records named, and the output keeps what it held before."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from tests.pipeline.test_cli import quiver

TABLE = pa.table({"id": list(range(300)), "s": [f"value {i}" for i in range(300)]})


def damaged_parquet(path: Path) -> None:
    """Three row groups of 100 records; the text column's pages of the second are overwritten."""
    pq.write_table(TABLE, path, row_group_size=100, compression="snappy")
    chunk = pq.ParquetFile(path).metadata.row_group(1).column(1)
    start = min(chunk.data_page_offset, chunk.dictionary_page_offset or chunk.data_page_offset)
    data = bytearray(path.read_bytes())
    data[start + 100 : start + chunk.total_compressed_size - 20] = b"\xff" * (
        chunk.total_compressed_size - 120
    )
    path.write_bytes(bytes(data))


def run(folder: Path, source: str) -> tuple[int, str]:
    (folder / "out").mkdir()
    (folder / "out" / "o.csv").write_text("held before\n")
    (folder / "p.yaml").write_text(f"source: {source}\nsink: {{csv: {{path: out/o.csv}}}}\n")
    done = quiver("run", "p.yaml", cwd=folder)
    assert (folder / "out" / "o.csv").read_text() == "held before\n"
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["o.csv"]
    return done.returncode, " ".join(done.stderr.split())


def test_a_damaged_parquet_row_group_fails_the_run_naming_it_and_its_records(
    tmp_path: Path,
) -> None:
    damaged_parquet(tmp_path / "in.parquet")
    code, stderr = run(tmp_path, "{parquet: {path: in.parquet}}")
    assert code == 1
    assert (
        f"{tmp_path / 'in.parquet'}: row group 2 of 3 (records 101 to 200) cannot be decoded:"
        in stderr
    )
    assert "fix: the file is damaged: write it again from its source" in stderr
    assert "unexpected error" not in stderr


def test_an_arrow_stream_cut_short_fails_the_run_naming_the_batch_and_its_records(
    tmp_path: Path,
) -> None:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, TABLE.schema) as writer:
        for batch in TABLE.to_batches(max_chunksize=100):
            writer.write_batch(batch)
    data = sink.getvalue().to_pybytes()
    (tmp_path / "in.arrows").write_bytes(data[:-60])
    code, stderr = run(tmp_path, "{arrow: {path: in.arrows}}")
    assert code == 1
    assert f"{tmp_path / 'in.arrows'}: record batch 3 (from record 201) cannot be read:" in stderr
    assert "fix: the file is damaged or incomplete: write it again from its source" in stderr
    assert "unexpected error" not in stderr


def test_a_damaged_arrow_batch_that_still_decodes_fails_the_run_naming_its_column(
    tmp_path: Path,
) -> None:
    options = ipc.IpcWriteOptions(compression="lz4")
    with ipc.new_file(tmp_path / "in.arrow", TABLE.schema, options=options) as writer:
        for batch in TABLE.to_batches(max_chunksize=100):
            writer.write_batch(batch)
    data = bytearray((tmp_path / "in.arrow").read_bytes())
    middle = len(data) // 2  # in the second batch: its text column's offsets decode as garbage
    data[middle - 40 : middle + 40] = b"\xff" * 80
    (tmp_path / "in.arrow").write_bytes(bytes(data))
    code, stderr = run(tmp_path, "{arrow: {path: in.arrow}}")
    assert code == 1
    assert f"{tmp_path / 'in.arrow'}: column 's' of records 101 to 200 is damaged:" in stderr
    assert "fix: the file is damaged: write it again from its source" in stderr
    assert "unexpected error" not in stderr
