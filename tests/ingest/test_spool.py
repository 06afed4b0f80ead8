"""The spool keeps every batch appended until committed, survives being reopened, ignores a
torn write at the end, and refuses a second process."""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest

from quiver.ingest.spool import Position, Spool, SpoolFullError
from quiver.runtime.errors import QuiverError


def batch(*values: int) -> pa.RecordBatch:
    return pa.record_batch({"n": pa.array(values, pa.int64())})


def replayed(path: Path) -> list[list[int]]:
    spool = Spool(str(path))
    spool.open()
    try:
        return [b.column("n").to_pylist() for _, b in spool.replay()]
    finally:
        spool.close()


def append_all(spool: Spool, *batches: pa.RecordBatch) -> list[Position]:
    async def run() -> list[Position]:
        return list(await asyncio.gather(*(spool.append(b) for b in batches)))

    return asyncio.run(run())


def test_appended_batches_are_replayed_after_reopening_until_committed(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), segment_bytes=4096)
    spool.open()
    positions = append_all(spool, *(batch(i, i + 1) for i in range(0, 200, 2)))
    assert positions == sorted(positions)
    assert len({p.segment for p in positions}) > 1  # several segment files were written
    spool.close()
    assert replayed(tmp_path) == [[i, i + 1] for i in range(0, 200, 2)]

    spool = Spool(str(tmp_path), segment_bytes=4096)
    spool.open()
    seen = list(spool.replay())
    spool.commit(seen[59][0])  # the sinks hold the first 60 batches
    spool.close()
    assert replayed(tmp_path) == [[i, i + 1] for i in range(120, 200, 2)]
    spool = Spool(str(tmp_path))
    spool.open()
    spool.commit(list(spool.replay())[-1][0])
    spool.close()
    assert replayed(tmp_path) == []
    assert len([n for n in os.listdir(tmp_path) if n.endswith(".seg")]) <= 1


def test_a_torn_last_record_is_ignored_and_later_appends_are_kept(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    spool.open()
    append_all(spool, batch(1), batch(2))
    spool.close()
    [segment] = [n for n in os.listdir(tmp_path) if n.endswith(".seg")]
    with open(tmp_path / segment, "r+b") as fh:  # a crash in the middle of the last write
        fh.truncate(os.path.getsize(tmp_path / segment) - 5)
    spool = Spool(str(tmp_path))
    spool.open()
    assert [b.column("n").to_pylist() for _, b in spool.replay()] == [[1]]
    append_all(spool, batch(3))
    spool.close()
    assert replayed(tmp_path) == [[1], [3]]


def test_a_second_process_cannot_open_the_same_spool(tmp_path: Path) -> None:
    first = Spool(str(tmp_path))
    first.open()
    second = Spool(str(tmp_path))
    with pytest.raises(QuiverError, match="in use by another running process"):
        second.open()
    first.close()
    second.open()
    second.close()


def test_a_full_spool_refuses_appends(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), max_bytes=100)
    spool.open()
    append_all(spool, batch(*range(100)))
    with pytest.raises(SpoolFullError, match="max_bytes 100"):
        append_all(spool, batch(1))
    spool.close()


def test_a_thousand_appends_at_once_are_written_in_one_group(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path))
    spool.open()
    append_all(spool, *(batch(i) for i in range(1000)))  # more buffers than one writev takes
    spool.close()
    assert replayed(tmp_path) == [[i] for i in range(1000)]


def test_columns_null_in_every_row_come_back_with_their_types_and_the_schema(
    tmp_path: Path,
) -> None:
    schema = pa.schema(
        [
            ("n", pa.int64()),
            ("text", pa.string()),
            ("tags", pa.map_(pa.string(), pa.string())),
            ("n", pa.float64()),  # a second column of the same name
        ],
        metadata={b"origin": b"test"},
    )
    written = [
        pa.record_batch(
            [
                pa.array([1, 2], pa.int64()),
                pa.nulls(2, pa.string()),
                pa.nulls(2, schema.field("tags").type),
                pa.array([None, 0.5]),
            ],
            schema=schema,
        ),
        pa.record_batch(  # other columns null: a new schema record
            [
                pa.nulls(1, pa.int64()),
                pa.array(["a"]),
                pa.array([[("k", "v")]], schema.field("tags").type),
                pa.nulls(1, pa.float64()),
            ],
            schema=schema,
        ),
        pa.record_batch([pa.array([], t) for t in schema.types], schema=schema),
    ]
    spool = Spool(str(tmp_path))
    spool.open()
    append_all(spool, *written)
    spool.close()
    spool = Spool(str(tmp_path))
    spool.open()
    back = [b for _, b in spool.replay()]
    spool.close()
    assert len(back) == 3
    for got, want in zip(back, written, strict=True):
        assert got.schema.equals(schema, check_metadata=True)
        assert got.equals(want)


def _segment_bytes(path: Path) -> int:
    return sum(os.path.getsize(path / n) for n in os.listdir(path) if n.endswith(".seg"))


def test_batches_are_stored_compressed_and_uncompressed_spools_are_still_read(
    tmp_path: Path,
) -> None:
    tags = pa.map_(pa.string(), pa.string())
    written = [
        pa.record_batch(
            {
                "n": pa.array(range(i, i + 500), pa.int64()),
                "route": pa.array([f"/api/items/{j % 20}" for j in range(500)]),
                "tags": pa.array(
                    [[("region", "eu-west-1"), ("j", str(j))] for j in range(500)], tags
                ),
            }
        )
        for i in range(0, 2000, 500)
    ]
    for compression in ("lz4", "none"):
        spool = Spool(str(tmp_path / compression), compression=compression)
        spool.open()
        append_all(spool, *written)
        spool.close()
        reader = Spool(str(tmp_path / compression))  # the default (lz4) reads both
        reader.open()
        assert [b for _, b in reader.replay()] == written
        reader.close()
    assert _segment_bytes(tmp_path / "lz4") < _segment_bytes(tmp_path / "none") * 0.6


@contextmanager
def files_limited_to(size: int) -> Iterator[None]:
    """Writes past ``size`` bytes of a file fail (EFBIG), as writes to a full disk fail."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def segments(path: Path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".seg"))


def test_a_write_the_disk_refuses_leaves_nothing_torn_before_the_appends_after_it(
    tmp_path: Path,
) -> None:
    spool = Spool(str(tmp_path), compression="none")
    spool.open()
    append_all(spool, batch(1))
    [segment] = segments(tmp_path)
    with files_limited_to(os.path.getsize(tmp_path / segment) + 100), pytest.raises(OSError):
        append_all(spool, batch(*range(1000)))  # part of its record is written, then no more
    append_all(spool, batch(2))  # the disk has room again: acknowledged
    spool.close()
    assert replayed(tmp_path) == [[1], [2]]


def test_a_segment_the_disk_refuses_to_begin_is_not_left_behind(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path), segment_bytes=4096, compression="none")
    spool.open()
    append_all(spool, batch(*range(1000)))  # fills its segment: the next append begins one
    before = segments(tmp_path)
    with files_limited_to(4):
        for _ in range(5):
            with pytest.raises(OSError):
                append_all(spool, batch(2))
    assert segments(tmp_path) == before
    append_all(spool, batch(3))
    spool.close()
    assert replayed(tmp_path) == [list(range(1000)), [3]]


def test_a_commit_removes_the_segments_it_covers_even_when_the_disk_is_full(
    tmp_path: Path,
) -> None:
    spool = Spool(str(tmp_path), segment_bytes=4096, compression="none")
    spool.open()
    positions = append_all(spool, *(batch(*range(i, i + 600)) for i in range(0, 3000, 600)))
    assert len(segments(tmp_path)) == 5
    with files_limited_to(0), pytest.raises(OSError):  # not even the marker can be written
        spool.commit(positions[-1])
    assert segments(tmp_path) == [f"{positions[-1].segment:020d}.seg"]  # the space is free
    spool.commit(positions[-1])
    spool.close()
    assert replayed(tmp_path) == []
