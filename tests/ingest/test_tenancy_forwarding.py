"""The tenant carried downstream (the otlp sink into a second Quiver OTLP receiver reading
X-Scope-OrgID, the kafka sink into the session's Tansu broker, the nats sink into JetStream),
and per-tenant rate limits of broker receivers delaying, not dropping, a tenant's messages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import orjson
import pyarrow as pa
import pytest

from quiver.ingest.kafka import KafkaReceiver
from quiver.ingest.nats import NatsReceiver
from quiver.ingest.receiver import BrokerReceiver
from quiver.ingest.sinks.nats import NatsSink
from quiver.ingest.sinks.otlp import OtlpSink
from quiver.ingest.tenancy import TENANT_COLUMN
from quiver.pipeline.component import RunContext

from ..pipeline.conftest import write_all
from .conftest import (
    FETCH_WAIT,
    KAFKA_SESSION,
    Receiver,
    build,
    js_publish,
    kafka_produce,
    kafka_topic,
    unique,
)
from .conftest import read_all as take
from .telemetry_rows import rows_of, span_request
from .test_kafka_sink import consume, kafka_sink
from .test_nats_sink import stream_messages


def spans_of(tenants: list[str | None]) -> pa.RecordBatch:
    """Span rows of the telemetry layout, the i-th row of tenant ``tenants[i]``."""
    batch = rows_of("traces", span_request(len(tenants), services=2))
    index = batch.schema.get_field_index(TENANT_COLUMN)
    return batch.set_column(index, TENANT_COLUMN, pa.array(tenants, pa.string()))


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_the_otlp_sink_sends_each_tenants_rows_with_its_header(
    protocol: str, receiver: Callable[..., Receiver], run_ctx: RunContext
) -> None:
    """The next collector takes the tenant from the header only: a request mixing tenants,
    or one without the header, would be refused or land under the wrong tenant."""
    rec = receiver(tenancy={"sources": ["header"]})
    tenants: list[str | None] = ["acme", "globex", "acme", "initech", "globex", "acme"] * 5
    batch = spans_of(tenants)
    endpoint = f"127.0.0.1:{rec.grpc_port}" if protocol == "grpc" else rec.http_url
    sink: OtlpSink = build(
        OtlpSink, {"endpoint": endpoint, "protocol": protocol, "rows_per_request": 4}
    )
    await write_all(sink, [batch], run_ctx)
    assert sink.sent == 30
    table = await asyncio.to_thread(rec.stop)
    sent = dict(zip(batch.column("span_id").to_pylist(), tenants, strict=True))
    got = dict(
        zip(table.column("span_id").to_pylist(), table.column("tenant_id").to_pylist(), strict=True)
    )
    assert got == sent


async def test_without_a_tenant_header_the_next_collector_sees_no_tenant(
    receiver: Callable[..., Receiver], run_ctx: RunContext
) -> None:
    rec = receiver(tenancy={"sources": ["header"], "default": "shared"})
    sink: OtlpSink = build(
        OtlpSink, {"endpoint": f"127.0.0.1:{rec.grpc_port}", "tenant_header": None}
    )
    await write_all(sink, [spans_of(["acme", "globex", None])], run_ctx)
    table = await asyncio.to_thread(rec.stop)
    assert table.column("tenant_id").to_pylist() == ["shared"] * 3


async def test_the_kafka_sink_routes_tenants_to_topics_and_headers_the_receiver_reads(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    p = unique("k")
    for tenant in ("acme", "globex"):
        await kafka_topic(kafka_broker, f"{p}.tenants.{tenant}.rows")
    await kafka_topic(kafka_broker, f"{p}.all")
    batch = pa.record_batch(
        {"n": pa.array(range(6), pa.int64()), "tenant_id": ["acme", "globex", "acme"] * 2}
    )
    # a topic per tenant, and one topic whose records say their tenant in a header
    by_topic = kafka_sink(kafka_broker, topic=p + ".tenants.{tenant_id}.rows", format="jsonl")
    by_header = kafka_sink(
        kafka_broker, topic=f"{p}.all", format="jsonl", tenant_header="X-Scope-OrgID"
    )
    for sink in (by_topic, by_header):
        await write_all(sink, [batch], run_ctx)
    records = await consume(kafka_broker, f"{p}.all", 2)
    headers = sorted(dict(r.headers)["X-Scope-OrgID"] for r in records)
    assert headers == [b"acme", b"globex"]  # one message per tenant
    per_tenant = [f"{p}.tenants.acme.rows", f"{p}.tenants.globex.rows"]
    for tenancy, topics in (
        ({"patterns": [f"{p}.tenants.{{tenant}}.>"]}, per_tenant),
        ({"sources": ["header"]}, [f"{p}.all"]),
    ):
        r: KafkaReceiver = build(
            KafkaReceiver,
            {
                "bootstrap_servers": [kafka_broker],
                "topics": topics,
                "group_id": unique("g"),
                "session_timeout": KAFKA_SESSION,
                "idle_timeout": 1.5,
                "batch_seconds": 0.3,
                "format": "jsonl",
                "tenancy": tenancy,
            },
        )
        table = await take(r, run_ctx)
        await r.commit()
        await r.close()
        got = sorted(
            zip(table.column("n").to_pylist(), table.column("tenant_id").to_pylist(), strict=True)
        )
        assert got == sorted(zip(range(6), ["acme", "globex", "acme"] * 2, strict=True))


async def test_the_nats_sink_puts_the_tenant_in_a_header(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    stream, prefix = js_stream
    sink: NatsSink = build(
        NatsSink,
        {
            "subject": prefix + ".{tenant_id}.rows",
            "stream": stream,
            "format": "jsonl",
            "tenant_header": "X-Scope-OrgID",
        },
    )
    batch = pa.record_batch({"n": pa.array([1, 2, 3], pa.int64()), "tenant_id": ["a", "b", "a"]})
    await write_all(sink, [batch], run_ctx)
    messages = await stream_messages(stream, f"{prefix}.>", 2)
    got = sorted(
        (m.subject, m.headers["X-Scope-OrgID"], [orjson.loads(x)["n"] for x in m.data.split()])
        for m in messages
    )
    assert got == [(f"{prefix}.a.rows", "a", [1, 3]), (f"{prefix}.b.rows", "b", [2])]


# ------------------------------------------------------------------------------ limits


async def paced_read(r: BrokerReceiver, ctx: RunContext, count: int) -> tuple[float, pa.Table]:
    """Seconds from the first batch until ``count`` rows came out of ``r`` (joining the
    consumer group takes seconds of its own), and the rows."""
    started = 0.0
    took = 0.0
    batches: list[pa.RecordBatch] = []
    async for batch in r.batches(ctx):
        started = started or time.monotonic()
        batches.append(batch)
        if sum(b.num_rows for b in batches) >= count and not took:
            took = time.monotonic() - started
            r.drain()
    return took, pa.Table.from_batches(batches)


async def test_a_kafka_tenant_over_its_limit_is_delayed_not_dropped(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    """30 records of a tenant allowed 10 items a second (burst 10) take at least 2 s; the same
    records with no limit (the baseline, same run) come at once. Nothing is lost."""
    p = unique("k")
    topic = f"{p}.tenants.acme.rows"
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [b'{"n": %d}' % i for i in range(30)])
    timings: dict[str, float] = {}
    for name, limits in (
        ("free", {}),
        ("limited", {"overrides": {"acme": {"items_per_second": 10}}}),
    ):
        options: dict[str, Any] = {
            "bootstrap_servers": [kafka_broker],
            "topics": [topic],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "batch_messages": 10,
            "batch_seconds": 0.3,
            "tenancy": {"patterns": [f"{p}.tenants.{{tenant}}.>"], **limits},
        }
        r: KafkaReceiver = build(KafkaReceiver, options)
        timings[name], table = await paced_read(r, run_ctx, 30)
        await r.commit()
        await r.close()
        assert sorted(table.column("n").to_pylist()) == list(range(30))
        assert set(table.column("tenant_id").to_pylist()) == {"acme"}
        if name == "limited":
            assert r.paced >= 1
            assert r.acknowledged == 30
    print(f"30 records: no limit {timings['free']:.2f}s, 10 items/s {timings['limited']:.2f}s")
    assert timings["limited"] >= 1.8
    assert timings["free"] < timings["limited"] - 1.0


async def test_the_pace_of_one_tenant_leaves_another_topics_tenant_unlimited(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    """Limits are per tenant: a tenant without one is never waited for on its own."""
    p = unique("k")
    topic = f"{p}.tenants.globex.rows"
    await kafka_topic(kafka_broker, topic)
    await kafka_produce(kafka_broker, topic, [b'{"n": %d}' % i for i in range(30)])
    r: KafkaReceiver = build(
        KafkaReceiver,
        {
            "bootstrap_servers": [kafka_broker],
            "topics": [topic],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "batch_messages": 10,
            "batch_seconds": 0.3,
            "tenancy": {
                "patterns": [f"{p}.tenants.{{tenant}}.>"],
                "overrides": {"acme": {"items_per_second": 1}},
            },
        },
    )
    took, table = await paced_read(r, run_ctx, 30)
    await r.close()
    assert table.num_rows == 30 and r.paced == 0
    assert took < 1.5


async def test_a_jetstream_tenant_over_its_limit_is_delayed_and_acknowledged_later(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    """20 messages of a tenant allowed 5 messages a second (burst 5): the last come at least
    3 s after the first; all of them are acknowledged (a second run of the durable gets none)."""
    stream, prefix = js_stream
    await js_publish(f"{prefix}.tenants.acme.x", [b'{"n": %d}' % i for i in range(20)])
    options = {
        "subject": f"{prefix}.>",
        "stream": stream,
        "durable": unique("d"),
        "fetch_wait": FETCH_WAIT,
        "batch_messages": 5,
        "batch_seconds": 0.2,
        "tenancy": {
            "patterns": [f"{prefix}.tenants.{{tenant}}.>"],
            "limits": {"requests_per_second": 5},
        },
    }
    r: NatsReceiver = build(NatsReceiver, options)
    took, table = await paced_read(r, run_ctx, 20)
    await r.commit()
    await r.close()
    assert sorted(table.column("n").to_pylist()) == list(range(20))
    assert took >= 2.7 and r.paced >= 1 and r.acknowledged == 20
    again: NatsReceiver = build(NatsReceiver, {**options, "idle_timeout": 1.0})
    assert (await take(again, run_ctx)).num_rows == 0
    await again.close()
