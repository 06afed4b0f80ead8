"""The s3 source and sink against a local S3-compatible server (moto) on a free port."""

from __future__ import annotations

import gzip
import io
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.s3 import S3Sink
from quiver.pipeline.sources.s3 import S3Source
from quiver.runtime.errors import ConfigError, PermanentError, RetryableError

from ..conftest import S3_KEYS, ScratchBucket, build, free_port, read_all, write_all


def sales(n: int, start: int = 1) -> pa.RecordBatch:
    ids = list(range(start, start + n))
    return pa.record_batch(
        {
            "id": pa.array(ids, pa.int64()),
            "region": [["north", "south"][i % 2] for i in ids],
            "amount": [i * 0.25 for i in ids],
            LINE_COLUMN: pa.array(range(1, n + 1), pa.int64()),
        }
    )


async def test_csv_object_round_trips(s3_bucket: ScratchBucket, run_ctx: RunContext) -> None:
    sink = build(S3Sink, {**s3_bucket.options, "key": "out/sales.csv", "format": "csv"})
    await write_all(sink, [sales(3), sales(2, start=4)], run_ctx)
    lines = s3_bucket.read("out/sales.csv").decode().splitlines()
    assert lines[0] == "id,region,amount" and lines[1] == "1,south,0.25" and len(lines) == 6
    source = build(
        S3Source,
        {**s3_bucket.options, "key": "out/sales.csv", "format": {"csv": {"types": {"id": "int"}}}},
    )
    table = await read_all(source, run_ctx)
    assert table.column("id").to_pylist() == [1, 2, 3, 4, 5]
    assert table.column(LINE_COLUMN).to_pylist() == [2, 3, 4, 5, 6]  # line 1 is the header


async def test_prefix_and_glob_select_objects_in_key_order(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    s3_bucket.put("in/2024-02/a.csv", b"id,name\n3,c\n")
    s3_bucket.put("in/2024-01/b.csv", b"id,name\n1,a\n2,b\n")
    s3_bucket.put("in/2024-01/notes.txt", b"ignore me")
    s3_bucket.put("other/x.csv", b"id,name\n9,z\n")
    s3_bucket.put("in/2024-03/c.csv.gz", gzip.compress(b"id,name\n4,d\n"))
    source = build(
        S3Source,
        {
            **s3_bucket.options,
            "glob": "in/2024-*/*.csv*",
            "format": {"csv": {"infer": True}},
            "key_column": "key",
        },
    )
    table = await read_all(source, run_ctx)
    assert table.column("id").to_pylist() == [1, 2, 3, 4]
    assert table.column("key").to_pylist() == [
        "in/2024-01/b.csv",
        "in/2024-01/b.csv",
        "in/2024-02/a.csv",
        "in/2024-03/c.csv.gz",
    ]
    assert source.keys_done == ["in/2024-01/b.csv", "in/2024-02/a.csv", "in/2024-03/c.csv.gz"]

    by_prefix = build(S3Source, {**s3_bucket.options, "prefix": "other/", "format": "csv"})
    assert (await read_all(by_prefix, run_ctx)).column("id").to_pylist() == ["9"]


async def test_format_options_reach_the_file_format(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    sink = build(
        S3Sink, {**s3_bucket.options, "key": "o.txt", "format": {"csv": {"delimiter": ";"}}}
    )
    await write_all(sink, [sales(1)], run_ctx)
    assert s3_bucket.read("o.txt").decode().splitlines()[1] == "1;south;0.25"
    source = build(S3Source, {**s3_bucket.options, "key": "o.txt", "format": "psv"})
    s3_bucket.put("o.txt", b"id|name\n7|g\n")
    assert (await read_all(source, run_ctx)).column("name").to_pylist() == ["g"]


async def test_large_parquet_object_is_uploaded_in_several_parts(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    n = 1_400_000  # about 11 MiB of incompressible parquet: three 5 MiB parts
    import numpy as np

    rng = np.random.default_rng(7)
    batch = pa.record_batch({"x": rng.random(n), "id": pa.array(np.arange(n))})
    sink = build(
        S3Sink,
        {**s3_bucket.options, "key": "big.parquet", "format": "parquet", "part_size_mb": 5},
    )
    await write_all(sink, [batch], run_ctx)
    head = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="big.parquet")
    assert head["ContentLength"] > 10 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-3")  # a multipart ETag names its part count
    table = pq.read_table(io.BytesIO(s3_bucket.read("big.parquet")))
    assert table.num_rows == n and table.column("id")[n - 1].as_py() == n - 1


async def test_aborted_run_leaves_no_object_and_no_upload(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    s3_bucket.put("keep.csv", b"id\n1\n")
    sink = build(S3Sink, {**s3_bucket.options, "key": "keep.csv", "format": "csv"})
    await sink.open(sales(1).schema, run_ctx)
    await sink.write(sales(5))
    folder = sink._folder
    await sink.abort()
    assert s3_bucket.read("keep.csv") == b"id\n1\n"
    assert s3_bucket.open_uploads() == []
    assert folder is not None and not os.path.exists(folder)


async def test_failed_upload_is_aborted_and_reported(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    options = {**s3_bucket.options, "bucket": "no-such-bucket-here", "key": "x.csv"}
    sink = build(S3Sink, {**options, "format": "csv"})
    await sink.open(sales(2).schema, run_ctx)
    await sink.write(sales(2))
    folder = sink._folder
    with pytest.raises(PermanentError) as err:
        await sink.commit()
    assert "NoSuchBucket" in str(err.value) and "bucket name" in err.value.details[0].fix
    assert folder is not None and not os.path.exists(folder)


async def test_upload_retried_after_a_connection_failure_succeeds(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    endpoint = s3_bucket.options["endpoint_url"]
    unreachable = f"http://127.0.0.1:{free_port()}"
    sink = build(
        S3Sink, {**s3_bucket.options, "endpoint_url": unreachable, "key": "r.csv", "format": "csv"}
    )
    await sink.open(sales(3).schema, run_ctx)
    await sink.write(sales(3))
    with pytest.raises(RetryableError, match="unreachable"):
        await sink.commit()
    assert s3_bucket.keys() == []
    sink.cfg.endpoint_url = endpoint  # the storage is back
    await sink.commit()  # what the engine's retry of the commit does
    assert s3_bucket.read("r.csv").decode().count("\n") == 4
    assert sink._folder is None


async def test_no_matching_objects_is_an_error(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    source = build(S3Source, {**s3_bucket.options, "glob": "in/*.csv", "format": "csv"})
    with pytest.raises(PermanentError, match="no objects match"):
        await read_all(source, run_ctx)


async def test_objects_with_other_columns_are_refused(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    s3_bucket.put("a.csv", b"id,name\n1,a\n")
    s3_bucket.put("b.csv", b"id,colour\n2,red\n")
    source = build(S3Source, {**s3_bucket.options, "glob": "*.csv", "format": "csv"})
    with pytest.raises(PermanentError, match="differ from those of the first object"):
        await read_all(source, run_ctx)


def test_unknown_format_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'parquet'"):
        build(S3Source, {"bucket": "b", "key": "k", "format": "parket"})
    with pytest.raises(ConfigError, match="does not read or write files") as err:
        build(S3Sink, {"bucket": "b", "key": "k", "format": "database"})
    assert "parquet" in err.value.details[0].fix and "rabbitmq" not in err.value.details[0].fix
    with pytest.raises(ConfigError, match="set by the s3 step"):
        build(S3Sink, {"bucket": "b", "key": "k", "format": {"csv": {"path": "x"}}})


async def test_unreachable_endpoint_is_retryable(run_ctx: RunContext) -> None:
    options = {
        "bucket": "b",
        "key": "k.csv",
        "format": "csv",
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        **S3_KEYS,
    }
    with pytest.raises(RetryableError, match="unreachable"):
        await read_all(build(S3Source, options), run_ctx)
