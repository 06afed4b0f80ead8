"""What a connector's sink writes, its source reads back value for value: every column type,
through the real broker, a real HTTP server and a real S3-compatible server."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.json_text import dump_json, parse_json
from quiver.pipeline.sinks.rabbitmq import RabbitMqSink
from quiver.pipeline.sinks.rest import RestSink
from quiver.pipeline.sinks.s3 import S3Sink
from quiver.pipeline.sources.rabbitmq import RabbitMqSource
from quiver.pipeline.sources.rest import RestSource
from quiver.pipeline.sources.s3 import S3Source
from quiver.pipeline.type_names import parse_type

from .conftest import ScratchBucket, ScratchQueue, build, read_all, serve_app, write_all

UTC = dt.UTC
PARIS = "Europe/Paris"

#: Every column type, by the name a pipeline file declares it with.
TYPES = {
    "i8": "int8",
    "i32": "int32",
    "i64": "int",
    "u64": "uint64",
    "f32": "float32",
    "f64": "float",
    "dec": "decimal(38,9)",
    "flag": "bool",
    "text": "str",
    "blob": "binary",
    "day": "date",
    "clock": "time",
    "ts": "timestamp",
    "ts_ns": "timestamp(ns)",
    "ts_utc": "timestamp(us, UTC)",
    "ts_paris": f"timestamp(ms, {PARIS})",
    "nested": "json",
}

NESTED = pa.struct([("tags", pa.list_(pa.string())), ("score", pa.float64())])


def every_type() -> pa.RecordBatch:
    """Four rows: ordinary values, the extremes of each type, nulls, and the awkward ones."""
    columns: dict[str, pa.Array] = {
        "i8": pa.array([1, -128, None, 127], pa.int8()),
        "i32": pa.array([2, -(2**31), None, 2**31 - 1], pa.int32()),
        "i64": pa.array([3, -(2**63), None, 2**53 + 1], pa.int64()),
        "u64": pa.array([4, 0, None, 2**64 - 1], pa.uint64()),
        "f32": pa.array([0.1, -3.4e38, None, float("inf")], pa.float32()),
        "f64": pa.array([0.1, 1e300, None, float("nan")], pa.float64()),
        "dec": pa.array(
            [
                decimal.Decimal("12.5"),
                decimal.Decimal("-99999999999999999999999999999.999999999"),
                None,
                decimal.Decimal("0.000000001"),
            ],
            pa.decimal128(38, 9),
        ),
        "flag": pa.array([True, False, None, True]),
        "text": pa.array(["plain", "", None, 'a,b "quoted"\nline two é 😀']),
        "blob": pa.array([b"\x00\x01\xff\xfe", b"", None, "é".encode()], pa.binary()),
        "day": pa.array(
            [dt.date(2024, 2, 29), dt.date(1, 1, 1), None, dt.date(9999, 12, 31)], pa.date32()
        ),
        "clock": pa.array(
            [dt.time(12, 34, 56, 789012), dt.time(0, 0), None, dt.time(23, 59, 59, 999999)],
            pa.time64("us"),
        ),
        "ts": pa.array(
            [
                dt.datetime(2024, 1, 1, 12, 0, 0, 100000),
                dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
                None,
                dt.datetime(2038, 1, 19, 3, 14, 8),
            ],
            pa.timestamp("us"),
        ),
        "ts_ns": pa.array([1_704_110_400_123_456_789, -1, None, 0], pa.timestamp("ns")),
        "ts_utc": pa.array(
            [
                dt.datetime(2024, 1, 1, 12, 0, tzinfo=UTC),
                dt.datetime(2000, 6, 30, 23, 59, 59, 5, tzinfo=UTC),
                None,
                dt.datetime(1970, 1, 1, tzinfo=UTC),
            ],
            pa.timestamp("us", tz="UTC"),
        ),
        "ts_paris": pa.array(
            [1_704_110_400_123, 1_719_792_000_000, None, -86_400_000],
            pa.timestamp("ms", tz=PARIS),
        ),
        "nested": pa.array(
            [
                {"tags": ["a", "b"], "score": 1.5},
                {"tags": [], "score": None},
                None,
                {"tags": ["x,y"], "score": -0.25},
            ],
            NESTED,
        ),
    }
    lines = pa.array([1, 2, 3, 4], pa.int64())
    return pa.record_batch({**columns, LINE_COLUMN: lines})


def values(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """The values of a column; timestamps as their counts of the unit (nanoseconds included)."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    out: list[Any] = column.to_pylist()
    return out


def expected() -> dict[str, list[Any]]:
    """What the sources give back: the same values; nested ones as their JSON text."""
    batch = every_type()
    out = {name: values(batch.column(name)) for name in TYPES}
    out["nested"] = [None if v is None else dump_json(v).decode() for v in out["nested"]]
    return out


def same(got: list[Any], want: list[Any]) -> bool:
    """Equal value for value, NaN equal to NaN."""

    def eq(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return bool(a == b) and type(a) is type(b)

    return len(got) == len(want) and all(eq(a, b) for a, b in zip(got, want, strict=True))


def check(table: pa.Table, names: list[str] | None = None) -> None:
    want = expected()
    for name, type_name in TYPES.items():
        if names is not None and name not in names:
            continue
        column = table.column(name)
        assert type_name == "json" or column.type == parse_type(type_name, name), name
        got = values(column)
        if type_name == "json":  # compare as JSON: the key order of the text may differ
            got = [None if v is None else dump_json(parse_json(v)).decode() for v in got]
        assert same(got, want[name]), (name, got, want[name])


# -- RabbitMQ -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "rows_per_message"), [("json", 1), ("json", 3), ("jsonl", 2), ("csv", 4)]
)
async def test_rabbitmq_sink_to_source_keeps_every_value(
    rabbit_queue: ScratchQueue, run_ctx: RunContext, fmt: str, rows_per_message: int
) -> None:
    sink = build(
        RabbitMqSink,
        {"routing_key": rabbit_queue.name, "format": fmt, "rows_per_message": rows_per_message},
    )
    await write_all(sink, [every_type()], run_ctx)
    source = build(
        RabbitMqSource,
        {
            "queue": rabbit_queue.name,
            "format": fmt,
            "schema": TYPES,
            "idle_timeout": 0.5,
            "batch_seconds": 0.2,
        },
    )
    table = await read_all(source, run_ctx)
    await source.commit()
    assert source.take_errors() == []
    assert table.num_rows == 4 and source.acknowledged == -(-4 // rows_per_message)
    check(table)


async def test_timestamps_published_by_the_sink_are_all_read_back(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    start = dt.datetime(2024, 1, 1, 12, 0)
    times = [start + dt.timedelta(seconds=i, microseconds=i * 100_000) for i in range(10)]
    batch = pa.record_batch({"id": list(range(10)), "ts": pa.array(times, pa.timestamp("us"))})
    await write_all(build(RabbitMqSink, {"routing_key": rabbit_queue.name}), [batch], run_ctx)
    source = build(
        RabbitMqSource,
        {
            "queue": rabbit_queue.name,
            "schema": {"id": "int", "ts": "timestamp"},
            "idle_timeout": 0.5,
            "batch_seconds": 0.2,
        },
    )
    table = await read_all(source, run_ctx)
    await source.commit()
    assert source.rejected == 0 and source.take_errors() == []
    assert table.column("ts").to_pylist() == times
    assert await rabbit_queue.depth() == 0


# -- REST -----------------------------------------------------------------------------------


class Store:
    """What the test API received: the bodies as sent, served back as they are."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []


STORE = Store()


async def collect(request: Request) -> Response:
    STORE.bodies.append(await request.body())
    return Response(status_code=204)


async def serve(request: Request) -> Response:
    page = int(request.query_params.get("page", "1"))
    if page > len(STORE.bodies):
        return Response(b"[]", media_type="application/json")
    body = STORE.bodies[page - 1]
    if request.query_params.get("format") == "jsonl":  # one page of JSON lines as an array
        body = b"[" + b",".join(line for line in body.splitlines() if line) + b"]"
    return Response(body, media_type="application/json")


@pytest.fixture(scope="module")
def records_api() -> Iterator[str]:
    app = Starlette(routes=[Route("/records", collect, methods=["POST"]), Route("/records", serve)])
    with serve_app(app) as url:
        yield url


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
async def test_rest_sink_to_source_keeps_every_value(
    records_api: str, run_ctx: RunContext, fmt: str
) -> None:
    STORE.bodies.clear()
    sink = build(RestSink, {"url": f"{records_api}/records", "format": fmt, "batch_rows": 3})
    await write_all(sink, [every_type()], run_ctx)
    assert len(STORE.bodies) == 2
    source = build(
        RestSource,
        {
            "url": f"{records_api}/records",
            "params": {"format": fmt},
            "pagination": {"page": {}},
            "schema": TYPES,
        },
    )
    table = await read_all(source, run_ctx)
    assert source.take_errors() == []
    check(table)


# -- S3 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
async def test_s3_sink_to_source_keeps_every_value(
    s3_bucket: ScratchBucket, run_ctx: RunContext, fmt: str
) -> None:
    key = f"round/trip.{fmt}"
    sink = build(S3Sink, {**s3_bucket.options, "key": key, "format": fmt})
    batch = every_type()
    await write_all(sink, [batch], run_ctx)
    source = build(S3Source, {**s3_bucket.options, "key": key, "format": fmt})
    table = await read_all(source, run_ctx)
    for name in TYPES:
        got, want = table.column(name), batch.column(name)
        assert got.type == want.type, name
        assert same(values(got), values(want)), name


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_s3_text_formats_keep_every_value(
    s3_bucket: ScratchBucket, run_ctx: RunContext, fmt: str
) -> None:
    key = f"round/trip.{fmt}"
    batch = every_type()
    if fmt == "csv":  # the CSV sink refuses binary values (CSV has no bytes)
        batch = batch.drop_columns(["blob"])
    sink = build(S3Sink, {**s3_bucket.options, "key": key, "format": fmt})
    await write_all(sink, [batch], run_ctx)
    types = {n: ("str" if t == "json" else t) for n, t in TYPES.items() if n in batch.schema.names}
    source = build(S3Source, {**s3_bucket.options, "key": key, "format": {fmt: {"types": types}}})
    table = await read_all(source, run_ctx)
    assert source.take_errors() == []
    check(table, list(types))
