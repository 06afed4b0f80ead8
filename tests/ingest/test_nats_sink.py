"""The nats sink against the NATS server of this machine (JetStream on 4222), and its round
trip into the nats receiver."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from quiver.ingest.nats import NatsReceiver
from quiver.ingest.sinks.nats import NatsSink
from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.json_text import json_strings
from quiver.pipeline.type_names import parse_type
from quiver.runtime.errors import PermanentError

from ..pipeline.conftest import write_all
from .conftest import FETCH_WAIT, build, plain, unique
from .conftest import read_all as take
from .telemetry_rows import example_rows


def rows(n: int) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(range(n), pa.int64()),
            "region": pa.array(["eu" if i % 2 else "us" for i in range(n)]),
        }
    )


async def stream_messages(stream: str, subject: str, count: int) -> list[Any]:
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, stream=stream)
    got: list[Any] = []
    try:
        while len(got) < count:
            try:
                got.extend(await sub.fetch(count - len(got), timeout=2))
            except TimeoutError:
                break
    finally:
        await nc.close()
    return got


async def test_jetstream_publishes_are_acknowledged_with_message_ids(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    stream, prefix = js_stream
    sink: NatsSink = build(NatsSink, {"subject": prefix + ".{region}", "stream": stream})
    await write_all(sink, [rows(6)], run_ctx)
    assert sink.published == 6 and sink.duplicates == 0
    eu = await stream_messages(stream, f"{prefix}.eu", 3)
    assert [json.loads(m.data)["id"] for m in eu] == [1, 3, 5]
    ids = {m.headers["Nats-Msg-Id"] for m in eu}
    assert len(ids) == 3 and all(i.startswith(run_ctx.run_id) for i in ids)


async def test_a_retried_write_stores_nothing_twice(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    """A second sink writing the same rows with the same message ids (a replay after a crash
    that kept the ids) is de-duplicated by the stream."""
    stream, prefix = js_stream
    options = {"subject": f"{prefix}.all", "stream": stream, "msg_id": "id"}
    first: NatsSink = build(NatsSink, options)
    await write_all(first, [rows(4)], run_ctx)
    again: NatsSink = build(NatsSink, options)
    await write_all(again, [rows(4)], run_ctx)
    assert again.duplicates == 4
    assert len(await stream_messages(stream, f"{prefix}.all", 8)) == 4


async def test_a_later_batch_reusing_a_written_batchs_id_is_stored_whole(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    """CPython hands a freed batch's id() to the next object: a write that succeeded must not
    leave progress (or message ids) behind for the next batch to be mistaken by."""
    stream, prefix = js_stream
    sink: NatsSink = build(NatsSink, {"subject": f"{prefix}.all", "stream": stream})
    batch = rows(3)
    await sink.open(batch.schema, run_ctx)
    await sink.write(batch)
    await sink.write(batch)  # a new write of an object with the same id()
    await sink.commit()
    assert sink.published == 6 and sink.duplicates == 0
    stored = await stream_messages(stream, f"{prefix}.all", 6)
    assert sorted(json.loads(m.data)["id"] for m in stored) == [0, 0, 1, 1, 2, 2]


async def test_a_subject_no_stream_takes_fails_permanently(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    stream, _ = js_stream
    sink: NatsSink = build(NatsSink, {"subject": unique("nowhere"), "stream": stream})
    with pytest.raises(PermanentError):
        await write_all(sink, [rows(1)], run_ctx)


async def test_a_missing_stream_is_named_before_sending(run_ctx: RunContext) -> None:
    sink: NatsSink = build(NatsSink, {"subject": "x", "stream": unique("NOSTREAM")})
    with pytest.raises(PermanentError, match="stream not found"):
        await sink.open(rows(1).schema, run_ctx)


@pytest.mark.parametrize("fmt", ["json", "csv"])
async def test_rows_round_trip_through_jetstream(
    fmt: str, js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    stream, prefix = js_stream
    sink: NatsSink = build(NatsSink, {"subject": f"{prefix}.rows", "stream": stream, "format": fmt})
    await write_all(sink, [rows(5), rows(2)], run_ctx)
    receiver: NatsReceiver = build(
        NatsReceiver,
        {
            "subject": f"{prefix}.rows",
            "stream": stream,
            "durable": unique("d"),
            "fetch_wait": FETCH_WAIT,
            "format": fmt,
            "schema": {"id": "int", "region": "str"},
            "idle_timeout": 1.0,
            "batch_seconds": 0.2,
        },
    )
    table = await take(receiver, run_ctx)
    await receiver.commit()
    await receiver.close()
    expected = pa.Table.from_batches([rows(5), rows(2)]).to_pylist()
    assert table.select(["id", "region"]).to_pylist() == expected
    assert LINE_COLUMN not in table.column_names or table.num_rows == 7


async def test_otlp_messages_carry_their_signal(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    from quiver.ingest.otlp.convert import convert_request
    from quiver.ingest.otlp.decode import decode_body

    stream, prefix = js_stream
    sent = example_rows()
    sink: NatsSink = build(
        NatsSink, {"subject": prefix + ".{signal}", "stream": stream, "format": "otlp_proto"}
    )
    await write_all(sink, [sent], run_ctx)
    back = []
    for signal in ("traces", "metrics", "logs"):
        (message,) = await stream_messages(stream, f"{prefix}.{signal}", 1)
        assert message.headers["otlp-signal"] == signal
        batch = convert_request(signal, decode_body(signal, message.data, json=False)).batch
        assert batch is not None
        back.append(batch)
    assert plain(pa.Table.from_batches(back)).to_pylist() == plain(pa.table(sent)).to_pylist()


@pytest.mark.parametrize("with_id", [True, False], ids=["two-columns", "one-column"])
async def test_csv_messages_keep_empty_text_apart_from_null(
    with_id: bool, js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    """The CSV a sink writes (``""`` for empty text, nothing for null, an empty line for a
    null in a one-column body) reads back as it was written."""
    stream, prefix = js_stream
    notes = pa.array(["", None, "x", None])
    batch = pa.record_batch(
        {"id": pa.array(range(4)), "note": notes} if with_id else {"note": notes}
    )
    sink: NatsSink = build(
        NatsSink, {"subject": f"{prefix}.csv", "stream": stream, "format": "csv"}
    )
    await write_all(sink, [batch], run_ctx)
    receiver: NatsReceiver = build(
        NatsReceiver,
        {
            "subject": f"{prefix}.csv",
            "stream": stream,
            "durable": unique("d"),
            "fetch_wait": FETCH_WAIT,
            "format": "csv",
            "schema": {"id": "int", "note": "str"} if with_id else {"note": "str"},
            "idle_timeout": 1.0,
            "batch_seconds": 0.2,
        },
    )
    table = await take(receiver, run_ctx)
    await receiver.commit()
    await receiver.close()
    assert table.column("note").to_pylist() == ["", None, "x", None]


def _type_cases() -> list[Any]:
    from ..pipeline.test_format_types import COLUMNS, XFAIL

    cases = []
    for fmt in ("json", "csv"):
        for name in COLUMNS:
            reason = XFAIL.get((f"message-{fmt}", name))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            cases.append(pytest.param(fmt, name, id=f"{fmt}-{name}", marks=marks))
    return cases


@pytest.mark.parametrize(("fmt", "name"), _type_cases())
async def test_each_type_comes_back_through_nats(
    fmt: str, name: str, js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    """The per-type matrix of tests/pipeline/test_format_types.py, through JetStream."""
    from ..pipeline.test_format_types import COLUMNS, NESTED, assert_same, one_column

    stream, prefix = js_stream
    want, declared = COLUMNS[name]
    sink: NatsSink = build(
        NatsSink,
        {"subject": f"{prefix}.t", "stream": stream, "format": fmt, "rows_per_message": 4},
    )
    await write_all(sink, [one_column(name)], run_ctx)
    receiver: NatsReceiver = build(
        NatsReceiver,
        {
            "subject": f"{prefix}.t",
            "stream": stream,
            "durable": unique("d"),
            "fetch_wait": FETCH_WAIT,
            "format": fmt,
            "schema": {name: declared or "json"},
            "idle_timeout": 0.3,
            "batch_seconds": 0.1,
        },
    )
    table = await take(receiver, run_ctx)
    await receiver.commit()
    errors = receiver.take_errors()
    await receiver.close()
    assert errors == []
    got = table.column(name)
    if name in NESTED:
        assert [None if v is None else json.loads(v) for v in got.to_pylist()] == [
            None if v is None else json.loads(v) for v in json_strings(want).to_pylist()
        ]
        return
    kind = parse_type(declared, name) if declared is not None else want.type
    assert_same(got, want.cast(kind) if kind != want.type else want, name)
