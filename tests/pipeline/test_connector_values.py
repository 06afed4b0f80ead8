"""Connectors never change a value or lose a message without a word: rejected messages are
rejected rows, declared types are never guessed, numbers never become nulls, JSON numbers in
time columns have a documented unit."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.engine import RunFailedError
from quiver.pipeline.json_text import parse_json
from quiver.pipeline.sinks.rabbitmq import RabbitMqSink
from quiver.pipeline.sources.rabbitmq import RabbitMqSource
from quiver.pipeline.sources.rest import RestSource
from quiver.pipeline.sources.s3 import S3Source

from .conftest import ScratchBucket, ScratchQueue, build, read_all, serve_app, write_all
from .test_connector_pipelines import read_csv, run

FAST = "idle_timeout: 0.5, batch_seconds: 0.2"


# -- rejected messages ------------------------------------------------------------------------

MIXED = (b'{"n": 1}', b"not json", b'{"n": "x"}', b'{"n": 4}')


async def test_a_rejected_message_fails_a_fail_fast_run_and_goes_back_to_the_queue(
    rabbit_queue: ScratchQueue, tmp_path: Path
) -> None:
    await rabbit_queue.publish(*MIXED)
    yaml = f"""
source: {{rabbitmq: {{queue: "${{Q}}", {FAST}, schema: {{n: int}}}}}}
sink: {{jsonl: {{path: out/n.jsonl}}}}
"""
    with pytest.raises(RunFailedError, match=r"message \S+: unreadable json body") as failed:
        await run(tmp_path, yaml, Q=rabbit_queue.name)
    assert failed.value.code == "ROW_REJECTED"
    assert not (tmp_path / "out" / "n.jsonl").exists()
    assert await rabbit_queue.depth() == 4  # nothing taken, nothing lost
    assert await rabbit_queue.depth(rabbit_queue.dead_letters) == 0


async def test_rejected_messages_reach_the_rejects_file_and_the_dead_letter_queue(
    rabbit_queue: ScratchQueue, tmp_path: Path
) -> None:
    await rabbit_queue.publish(*MIXED)
    yaml = f"""
source: {{rabbitmq: {{queue: "${{Q}}", {FAST}, schema: {{n: int}}}}}}
sink: {{jsonl: {{path: out/n.jsonl}}}}
on_error: {{policy: reject, rejects: out/rejects.csv}}
"""
    result = await run(tmp_path, yaml, Q=rabbit_queue.name)
    assert (result.rows_written, result.rejected) == (2, 2)
    rejects = read_csv(tmp_path / "out" / "rejects.csv")
    assert [orjson.loads(r["row"])["body"] for r in rejects] == ["not json", '{"n": "x"}']
    assert "unreadable json body" in rejects[0]["reason"]
    assert rejects[1]["column"] == "n" and "'x' is not a whole number" in rejects[1]["reason"]
    lines = (tmp_path / "out" / "n.jsonl").read_text().splitlines()
    assert [orjson.loads(line)["n"] for line in lines] == [1, 4]
    assert await rabbit_queue.depth() == 0
    assert await rabbit_queue.drain(rabbit_queue.dead_letters) == [b"not json", b'{"n": "x"}']


def test_strict_run_with_rejected_messages_exits_3(
    rabbit_queue: ScratchQueue, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from quiver.cli import app

    asyncio.run(_publish(rabbit_queue.name, MIXED))
    (tmp_path / "p.yaml").write_text(
        f"""
source: {{rabbitmq: {{queue: {rabbit_queue.name}, {FAST}, schema: {{n: int}}}}}}
sink: {{jsonl: {{path: out/n.jsonl}}}}
on_error: {{policy: reject, rejects: out/rejects.csv}}
"""
    )
    with contextlib.chdir(tmp_path):
        result = CliRunner().invoke(app, ["run", "p.yaml", "--strict"], env={"COLUMNS": "200"})
    assert result.exit_code == 3, result.output
    assert "2 rejected" in result.output
    assert len(read_csv(tmp_path / "out" / "rejects.csv")) == 2


async def _publish(queue: str, bodies: tuple[bytes, ...]) -> None:
    import aio_pika

    from .conftest import AMQP_URL

    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        for body in bodies:
            await channel.default_exchange.publish(aio_pika.Message(body), queue)


# -- CSV messages keep their text ------------------------------------------------------------

ODD = b"code,amount,big\n00123,1e3,12345678901234567890\n"


async def rabbit_csv(q: ScratchQueue, ctx: RunContext, **options: Any) -> pa.Table:
    await q.publish(ODD)
    source = build(
        RabbitMqSource,
        {"queue": q.name, "format": "csv", "idle_timeout": 0.5, "batch_seconds": 0.2, **options},
    )
    table = await read_all(source, ctx)
    await source.commit()
    assert source.take_errors() == []
    return table


async def test_csv_message_with_a_string_schema_keeps_its_text(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    schema = {"code": "str", "amount": "str", "big": "str"}
    table = await rabbit_csv(rabbit_queue, run_ctx, schema=schema)
    assert table.to_pylist()[0] == {
        "code": "00123",
        "amount": "1e3",
        "big": "12345678901234567890",
        LINE_COLUMN: 1,
    }


async def test_csv_message_columns_not_declared_stay_text_unless_inferred(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    table = await rabbit_csv(rabbit_queue, run_ctx, schema={"code": "int"})
    assert (table.column("code").type, table.column("amount").type) == (pa.int64(), pa.string())
    row = table.to_pylist()[0]
    assert (row["code"], row["amount"], row["big"]) == (123, "1e3", "12345678901234567890")

    inferred = await rabbit_csv(rabbit_queue, run_ctx, schema={"code": "str"}, infer=True)
    row = inferred.to_pylist()[0]
    assert (row["code"], row["amount"]) == ("00123", 1000.0)


# -- NaN and infinity ------------------------------------------------------------------------


async def test_nan_and_infinity_are_published_as_their_string_forms(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    batch = pa.record_batch({"x": [math.nan, math.inf, -math.inf, 1.5, None]})
    sink = build(RabbitMqSink, {"routing_key": rabbit_queue.name, "format": "jsonl"})
    sink.cfg.rows_per_message = 5
    await write_all(sink, [batch], run_ctx)
    [body] = await rabbit_queue.drain()
    assert body.splitlines() == [
        b'{"x":"NaN"}',
        b'{"x":"Infinity"}',
        b'{"x":"-Infinity"}',
        b'{"x":1.5}',
        b'{"x":null}',
    ]


# -- REST: JSON numbers ------------------------------------------------------------------------

PAGES: dict[str, bytes] = {
    "fraction": b'[{"id": 1, "qty": 2}, {"id": 2, "qty": 2.5}, {"id": 3, "qty": 3.0}]',
    "epoch": b'[{"at": 1704103200}, {"at": 1704103200.25}, {"at": "2024-01-01T10:00:00Z"}]',
    "epoch_ms": b'[{"at": 1704103200123}, {"at": "2024-01-01T10:00:00.5+01:00"}]',
    "floats": b'[{"x": "NaN"}, {"x": "Infinity"}, {"x": "-Infinity"}, {"x": 1e3}]',
    "precise": b'[{"d": 12345678901234567890.123456789, "s": 1e3, "i": 9007199254740993}]',
}


async def page(request: Request) -> Response:
    return Response(PAGES[request.path_params["name"]], media_type="application/json")


@pytest.fixture(scope="module")
def numbers_api() -> Iterator[str]:
    with serve_app(Starlette(routes=[Route("/{name}", page)])) as url:
        yield url


async def test_rest_refuses_a_fraction_in_an_int_column_with_record_and_field(
    numbers_api: str, run_ctx: RunContext
) -> None:
    source = build(
        RestSource, {"url": f"{numbers_api}/fraction", "schema": {"id": "int", "qty": "int"}}
    )
    table = await read_all(source, run_ctx)
    assert table.column("qty").to_pylist() == [2, 3]  # 3.0 is the whole number 3
    [error] = source.take_errors()
    assert (error.line, error.column, error.value) == (2, "qty", "2.5")
    assert "record 2 field 'qty': 2.5 is not a whole number" in error.reason


async def test_rest_fraction_fails_a_fail_fast_run_naming_record_and_field(
    numbers_api: str, tmp_path: Path
) -> None:
    yaml = """
source: {rest: {url: "${API}/fraction", schema: {id: int, qty: int}}}
sink: {jsonl: {path: out/q.jsonl}}
"""
    with pytest.raises(RunFailedError, match=r"record 2 field 'qty': 2\.5 is not a whole number"):
        await run(tmp_path, yaml, API=numbers_api)
    assert not (tmp_path / "out" / "q.jsonl").exists()


async def test_rest_numbers_in_timestamp_columns_are_epoch_seconds(
    numbers_api: str, run_ctx: RunContext
) -> None:
    source = build(RestSource, {"url": f"{numbers_api}/epoch", "schema": {"at": "timestamp"}})
    table = await read_all(source, run_ctx)
    ten = dt.datetime(2024, 1, 1, 10, 0)
    assert table.column("at").to_pylist() == [ten, ten.replace(microsecond=250_000), ten]


async def test_rest_timestamp_unit_names_what_numbers_count(
    numbers_api: str, run_ctx: RunContext
) -> None:
    schema = {"at": "timestamp(ms, UTC)"}
    source = build(RestSource, {"url": f"{numbers_api}/epoch_ms", "schema": schema})
    table = await read_all(source, run_ctx)
    assert table.column("at").type == pa.timestamp("ms", tz="UTC")
    assert table.column("at").to_pylist() == [
        dt.datetime(2024, 1, 1, 10, 0, 0, 123_000, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 1, 9, 0, 0, 500_000, tzinfo=dt.UTC),
    ]


async def test_rest_reads_the_string_forms_of_nan_and_infinity(
    numbers_api: str, run_ctx: RunContext
) -> None:
    source = build(RestSource, {"url": f"{numbers_api}/floats", "schema": {"x": "float"}})
    values = (await read_all(source, run_ctx)).column("x").to_pylist()
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1000.0]


async def test_rest_numbers_keep_every_digit(numbers_api: str, run_ctx: RunContext) -> None:
    import decimal

    schema = {"d": "decimal(38,9)", "s": "str", "i": "int"}
    source = build(RestSource, {"url": f"{numbers_api}/precise", "schema": schema})
    row = (await read_all(source, run_ctx)).to_pylist()[0]
    assert row["d"] == decimal.Decimal("12345678901234567890.123456789")
    assert (row["s"], row["i"]) == ("1e3", 9007199254740993)


def test_parsed_numbers_keep_their_text() -> None:
    doc = parse_json(b'{"a": 1e3, "b": [0.10, 123456789012345678901234567890], "c": "NaN"}')
    assert [str(doc["a"]), str(doc["b"][0]), doc["c"]] == ["1e3", "0.10", "NaN"]
    assert doc["b"][1] == 123456789012345678901234567890


# -- S3: partitions with the same file name ------------------------------------------------------


async def test_s3_glob_over_partitions_with_the_same_file_name_reads_each_in_key_order(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    months = ["2024-03", "2024-01", "2024-02", "2024-04"]
    rows = 20_000
    for month in months:
        body = "month,n\n" + "".join(f"{month},{i}\n" for i in range(rows))
        s3_bucket.put(f"{month}/part-0000.csv.gz", gzip.compress(body.encode(), 1))
    source = build(
        S3Source,
        {
            **s3_bucket.options,
            "glob": "2024-*/part-0000.csv.gz",
            "format": {"csv": {"batch_rows": rows // 2}},
        },
    )
    batches = []
    async for batch in source.batches(run_ctx):
        batches.append(batch)
        await asyncio.sleep(0.3)  # a slow sink: the next object is downloaded meanwhile
    table = pa.Table.from_batches(batches)
    assert table.column("month").to_pylist() == [m for m in sorted(months) for _ in range(rows)]
    assert source.keys_done == [f"{m}/part-0000.csv.gz" for m in sorted(months)]


# -- JSON Lines files follow the same value rules ------------------------------------------------


async def test_jsonl_file_reads_nan_strings_epoch_numbers_and_whole_floats(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    from quiver.pipeline.sources.jsonl import JsonlSource

    (tmp_path / "in.jsonl").write_text(
        '{"x": 1.5, "at": "2024-01-01T10:00:00", "ms": 0, "n": 1}\n'
        '{"x": "NaN", "at": 1704103200, "ms": 1704103200123, "n": 3.0}\n'
        '{"x": "-Infinity", "at": 1704103200.5, "ms": 1, "n": 2.5}\n'
    )
    types = {"x": "float", "at": "timestamp", "ms": "timestamp(ms)", "n": "int"}
    source = build(JsonlSource, {"path": "in.jsonl", "types": types})
    rows = (await read_all(source, run_ctx)).to_pylist()
    ten = dt.datetime(2024, 1, 1, 10, 0)
    assert [r["at"] for r in rows] == [ten, ten]
    assert rows[1]["ms"] == dt.datetime(2024, 1, 1, 10, 0, 0, 123_000)
    assert math.isnan(rows[1]["x"]) and [r["n"] for r in rows] == [1, 3]
    [error] = source.take_errors()
    assert error.line == 3 and "2.5" in error.reason


async def test_jsonl_file_keeps_nan_and_infinity_through_sink_and_source(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    from quiver.pipeline.sinks.jsonl import JsonlSink
    from quiver.pipeline.sources.jsonl import JsonlSource

    batch = pa.record_batch({"x": [math.nan, math.inf, -math.inf, None, 0.5]})
    await write_all(build(JsonlSink, {"path": "out.jsonl"}), [batch], run_ctx)
    assert (tmp_path / "out.jsonl").read_text().splitlines()[:3] == [
        '{"x":"NaN"}',
        '{"x":"Infinity"}',
        '{"x":"-Infinity"}',
    ]
    source = build(JsonlSource, {"path": "out.jsonl", "types": {"x": "float"}})
    values = (await read_all(source, run_ctx)).column("x").to_pylist()
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, None, 0.5]
    assert source.take_errors() == []


async def test_jsonl_binary_fields_are_read_from_base64(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    from quiver.pipeline.sources.jsonl import JsonlSource

    (tmp_path / "in.jsonl").write_text('{"b": "AAH//g=="}\n{"b": "not base64!"}\n{"b": null}\n')
    source = build(JsonlSource, {"path": "in.jsonl", "types": {"b": "binary"}})
    table = await read_all(source, run_ctx)
    assert table.column("b").to_pylist() == [b"\x00\x01\xff\xfe", None]
    [error] = source.take_errors()
    assert error.line == 2 and "not base64" in error.reason


async def test_s3_csv_objects_keep_their_text_unless_typed(
    s3_bucket: ScratchBucket, run_ctx: RunContext
) -> None:
    s3_bucket.put("in/odd.csv", ODD)
    source = build(S3Source, {**s3_bucket.options, "key": "in/odd.csv", "format": "csv"})
    row = (await read_all(source, run_ctx)).to_pylist()[0]
    assert (row["code"], row["amount"], row["big"]) == ("00123", "1e3", "12345678901234567890")
    typed = build(
        S3Source,
        {**s3_bucket.options, "key": "in/odd.csv", "format": {"csv": {"types": {"code": "int"}}}},
    )
    row = (await read_all(typed, run_ctx)).to_pylist()[0]
    assert (row["code"], row["amount"]) == (123, "1e3")


async def test_an_unreadable_first_message_does_not_fix_an_empty_schema(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    await rabbit_queue.publish(b"not json", b'{"n": 1}', b'{"n": 2}')
    source = build(
        RabbitMqSource,
        {"queue": rabbit_queue.name, "batch_messages": 1, "idle_timeout": 0.5},
    )
    table = await read_all(source, run_ctx)
    await source.commit()
    assert table.column("n").to_pylist() == [1, 2]
    assert [e.row for e in source.take_errors()] == [{"body": "not json"}]


async def test_a_message_holding_no_record_is_acknowledged(
    rabbit_queue: ScratchQueue, run_ctx: RunContext
) -> None:
    await rabbit_queue.publish(b"[]", b'{"n": 1}', b"[]")
    source = build(
        RabbitMqSource,
        {"queue": rabbit_queue.name, "batch_messages": 1, "idle_timeout": 0.5},
    )
    table = await read_all(source, run_ctx)
    await source.commit()
    assert table.column("n").to_pylist() == [1]
    assert source.acknowledged == 3 and await rabbit_queue.depth() == 0
