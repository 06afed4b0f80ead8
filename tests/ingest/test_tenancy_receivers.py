"""Tenants of the kafka (the session's Tansu broker), amqp (RabbitMQ at 127.0.0.1:5672) and
websocket (a real server and real clients) receivers: from topics and routing keys, message
headers, OTLP resource attributes and the connection, with a default and an allow-list."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, cast

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from quiver.ingest.amqp import AmqpReceiver
from quiver.ingest.kafka import KafkaReceiver
from quiver.ingest.websocket import WebSocketReceiver
from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan

from .conftest import KAFKA_SESSION, build, eventually, kafka_topic, unique, with_source_options
from .conftest import read_all as take
from .test_amqp import URL, names  # noqa: F401  (the fixture of a test's exchange and queue)
from .test_websocket import started

FAST = {"batch_seconds": 0.2}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"


async def kafka_send(servers: str, records: list[tuple[str, bytes, dict[str, str]]]) -> None:
    """Produce ``(topic, value, headers)`` records."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        for topic, value, headers in records:
            await producer.send(topic, value, headers=[(k, v.encode()) for k, v in headers.items()])
        await producer.flush()
    finally:
        await producer.stop()


def rows(table: pa.Table, *columns: str) -> list[tuple[Any, ...]]:
    data = table.select([c for c in table.column_names if c != LINE_COLUMN]).to_pylist()
    return sorted(tuple(r[c] for c in columns) for r in data)


# ------------------------------------------------------------------------------ kafka


async def test_kafka_tenants_come_from_the_topic_then_a_header_then_the_default(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    p = unique("k")
    acme, shared = f"{p}.tenants.acme.spans", f"{p}.shared"
    for topic in (acme, shared):
        await kafka_topic(kafka_broker, topic)
    await kafka_send(
        kafka_broker,
        [
            (acme, b'{"n": 1}', {}),
            (acme, b'{"n": 2}', {"X-Scope-OrgID": "globex"}),  # the topic comes first
            (shared, b'{"n": 3}', {"x-scope-orgid": "globex"}),  # header names are any case
            (shared, b'{"n": 4}', {}),  # neither: the default
            (shared, b'{"n": 5}', {"X-Scope-OrgID": "initech"}),  # not allowed: rejected
            (shared, b'{"n": 6}', {"X-Scope-OrgID": "bad tenant!"}),  # invalid: rejected
        ],
    )
    r: KafkaReceiver = build(
        KafkaReceiver,
        {
            **FAST,
            "bootstrap_servers": [kafka_broker],
            "topics": [acme, shared],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "idle_timeout": 1.5,
            "tenancy": {
                "patterns": [f"{p}.tenants.{{tenant}}.>"],
                "default": "shared",
                "tenants": ["acme", "globex", "shared"],
            },
        },
    )
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert rows(table, "n", "tenant_id") == [
        (1, "acme"),
        (2, "acme"),
        (3, "globex"),
        (4, "shared"),
    ]
    reasons = "\n".join(e.reason for e in errors)
    assert len(errors) == 2
    assert "'bad tenant!' (from the x-scope-orgid header) is not a tenant id" in reasons
    assert "tenant 'initech' is not taken by this receiver (tenancy.tenants)" in reasons
    assert r.acknowledged == 4 and r.rejected == 2


async def test_kafka_otlp_rows_take_the_tenant_of_their_resource(
    kafka_broker: str, run_ctx: RunContext
) -> None:
    """One request may hold several tenants: each row gets its resource's; a request with a
    resource naming none (and no header or default) is rejected whole."""
    from .telemetry_rows import span_request

    def tenant_request(tenants: list[str | None]) -> bytes:
        request = span_request(2 * len(tenants), services=len(tenants))
        for rs, tenant in zip(request.resource_spans, tenants, strict=True):
            if tenant is not None:
                kv = rs.resource.attributes.add()
                kv.key, kv.value.string_value = "tenant.id", f" {tenant} "
        return cast(bytes, request.SerializeToString())

    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    await kafka_send(
        kafka_broker,
        [
            (topic, tenant_request(["acme", "globex"]), {}),
            (topic, tenant_request([None]), {"X-Scope-OrgID": "initech"}),  # header: fallback
            (topic, tenant_request(["acme", None]), {}),  # one resource without: rejected
        ],
    )
    r: KafkaReceiver = build(
        KafkaReceiver,
        {
            **FAST,
            "bootstrap_servers": [kafka_broker],
            "topics": [topic],
            "group_id": unique("g"),
            "session_timeout": KAFKA_SESSION,
            "idle_timeout": 1.5,
            "format": "otlp_proto",
            "metadata": ["offset"],
            "tenancy": {"sources": ["resource_attribute", "header"]},
        },
    )
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert rows(table, "kafka_offset", "service_name", "tenant_id") == [
        (0, "svc-0", "acme"),
        (0, "svc-0", "acme"),
        (0, "svc-1", "globex"),
        (0, "svc-1", "globex"),
        (1, "svc-0", "initech"),
        (1, "svc-0", "initech"),
    ]
    assert len(errors) == 1
    assert "no tenant: no x-scope-orgid header, a resource without the attribute tenant.id" in (
        errors[0].reason
    )


# ------------------------------------------------------------------------------ amqp


async def amqp_publish(exchange: str, messages: list[tuple[str, bytes, dict[str, Any]]]) -> None:
    import aio_pika

    connection = await aio_pika.connect(URL)
    channel = await connection.channel()
    ex = await channel.declare_exchange(exchange, "topic", durable=True)
    for key, body, headers in messages:
        await ex.publish(aio_pika.Message(body, headers=headers), key)
    await connection.close()


async def test_amqp_tenants_come_from_the_routing_key_or_a_header(
    names: dict[str, str],  # noqa: F811
    run_ctx: RunContext,
) -> None:
    options = {
        **names,
        **FAST,
        "tenancy": {"patterns": ["tenants.{tenant}.#"], "tenants": ["acme", "globex"]},
    }
    first: AmqpReceiver = build(AmqpReceiver, {**options, "idle_timeout": 0.1})
    await take(first, run_ctx)  # the queue is declared and bound
    await first.close()
    await amqp_publish(
        names["exchange"],
        [
            ("tenants.acme.orders", b'{"n": 1}', {}),
            ("tenants.acme.a.b", b'{"n": 2}', {"X-Scope-OrgID": "globex"}),
            ("orders", b'{"n": 3}', {"X-Scope-OrgID": "globex"}),
            ("orders", b'{"n": 4}', {}),  # no tenant, no default: rejected
            ("tenants.initech.orders", b'{"n": 5}', {}),  # not allowed: rejected
        ],
    )
    r: AmqpReceiver = build(AmqpReceiver, {**options, "idle_timeout": 0.5})
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert rows(table, "n", "tenant_id") == [(1, "acme"), (2, "acme"), (3, "globex")]
    reasons = "\n".join(e.reason for e in errors)
    assert len(errors) == 2
    assert "no tenant: 'orders' matches none of tenants.{tenant}.#, no x-scope-orgid header" in (
        reasons
    )
    assert "tenant 'initech' is not taken by this receiver (tenancy.tenants)" in reasons


# ------------------------------------------------------------------------------ websocket


async def test_websocket_tenants_come_from_the_key_the_header_or_the_query(
    run_ctx: RunContext,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    r: WebSocketReceiver = build(
        WebSocketReceiver,
        {
            "port": 0,
            **FAST,
            "api_keys": [{"key": "acme-key", "tenant": "acme"}, "open-key"],
            "tenancy": {"tenants": ["acme", "globex", "initech"]},
        },
    )
    batches, reading = await started(r, run_ctx)
    url = f"ws://127.0.0.1:{r.port}/"

    async def refused(path: str, headers: dict[str, str]) -> tuple[int, str]:
        with pytest.raises(InvalidStatus) as info:
            async with connect(url + path, additional_headers=headers):
                pass
        response = info.value.response
        return response.status_code, response.body.decode()

    async def send(path: str, headers: dict[str, str], n: int) -> None:
        async with connect(url + path, additional_headers=headers) as ws:
            await ws.send(orjson.dumps({"n": n}))
            await eventually(lambda: sum(b.num_rows for b in batches) == n)

    # the key's tenant, a header repeating it, the header, the query parameter
    await send("", {"X-API-Key": "acme-key"}, 1)
    await send("", {"X-API-Key": "acme-key", "X-Scope-OrgID": "acme"}, 2)
    await send("", {"Authorization": "Bearer open-key", "X-Scope-OrgID": "globex"}, 3)
    await send("?tenant=initech", {"X-API-Key": "open-key"}, 4)
    conflict = await refused("?tenant=globex", {"X-API-Key": "acme-key"})
    missing = await refused("", {"X-API-Key": "open-key"})
    invalid = await refused("?tenant=a%20b", {"X-API-Key": "open-key"})
    other = await refused("", {"X-API-Key": "open-key", "X-Scope-OrgID": "umbrella"})
    r.drain()
    await reading
    await r.commit()
    await r.close()
    table = pa.Table.from_batches(batches)
    assert rows(table, "n", "tenant_id") == [
        (1, "acme"),
        (2, "acme"),
        (3, "globex"),
        (4, "initech"),
    ]
    assert (
        conflict[0] == 403
        and "belongs to tenant 'acme' and cannot send as 'globex'" in (conflict[1])
    )
    assert missing[0] == 401 and "no tenant: send an API key bound to a tenant" in missing[1]
    assert invalid[0] == 400 and "'a b' is not a tenant id" in invalid[1]
    assert other[0] == 403 and "tenant 'umbrella' is not taken" in other[1]


async def test_a_websocket_key_of_another_tenant_is_ignored_with_on_conflict_key(
    run_ctx: RunContext,
) -> None:
    from websockets.asyncio.client import connect

    r: WebSocketReceiver = build(
        WebSocketReceiver,
        {
            "port": 0,
            **FAST,
            "api_keys": [{"key": "acme-key", "tenant": "acme"}],
            "tenancy": {"on_conflict": "key"},
        },
    )
    batches, reading = await started(r, run_ctx)
    headers = {"X-API-Key": "acme-key", "X-Scope-OrgID": "globex"}
    async with connect(f"ws://127.0.0.1:{r.port}/?tenant=globex", additional_headers=headers) as ws:
        await ws.send(b'{"n": 1}')
        await eventually(lambda: sum(b.num_rows for b in batches) == 1)
        r.drain()
        await reading
        await r.commit()
        assert orjson.loads(await ws.recv()) == {"acked": 1}
    await r.close()
    assert pa.Table.from_batches(batches).column("tenant_id").to_pylist() == ["acme"]


# ------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("receiver", "options", "message"),
    [
        (
            KafkaReceiver,
            {"topics": ["t"], "group_id": "g", "tenancy": {"sources": ["resource_attribute"]}},
            "resource_attribute needs an OTLP format",
        ),
        (
            KafkaReceiver,
            {"topics": ["t"], "group_id": "g", "tenancy": {"sources": ["topic"]}},
            "sources [topic] needs patterns",
        ),
        (
            KafkaReceiver,
            {"topics": ["t"], "group_id": "g", "tenancy": {"patterns": ["t.{tenant}x"]}},
            "exactly one {tenant}",
        ),
        (
            AmqpReceiver,
            {"queue": "q", "tenancy": {"patterns": ["#.{tenant}"]}},
            "# may only be the last level",
        ),
        (
            AmqpReceiver,
            {"queue": "q", "tenancy": {"sources": ["header", "header"]}},
            "header is listed twice",
        ),
        (
            WebSocketReceiver,
            {"api_keys": [{"key": "k", "tenant": "acme"}]},
            "api_keys bound to tenants need `tenancy`",
        ),
        (
            WebSocketReceiver,
            {"api_keys": [{"key": "k", "tenant": "acme"}], "tenancy": {"tenants": ["globex"]}},
            "bound to 'acme', not one of tenants",
        ),
        (
            KafkaReceiver,
            {
                "topics": ["t"],
                "group_id": "g",
                "tenancy": {"tenants": ["a"], "overrides": {"b": {"items_per_second": 1}}},
            },
            "overrides name tenants not in tenants: b",
        ),
    ],
)
def test_bad_tenancy_options_are_refused(
    receiver: type, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(receiver, options)


def test_the_tenancy_examples_of_the_receivers_page_are_valid_options() -> None:
    from quiver.ingest.kafka import KafkaReceiverConfig
    from quiver.ingest.websocket import WebSocketReceiverConfig

    from .test_tenancy_brokers import first_yaml_after

    kafka = first_yaml_after("ingest-brokers.md", "### `kafka` and `amqp`")["source"]
    ws = first_yaml_after("ingest-brokers.md", "### `websocket`: the connection")["source"]
    assert isinstance(kafka, dict) and isinstance(ws, dict)
    tenancy = KafkaReceiverConfig.model_validate(kafka["kafka"]).tenancy
    assert tenancy is not None and tenancy.sources == ["topic", "header", "resource_attribute"]
    assert tenancy.overrides["globex"].items_per_second == 20000
    connection = WebSocketReceiverConfig.model_validate(ws["websocket"]).tenancy
    assert connection is not None and connection.tenants == ["acme", "globex"]


async def test_the_kafka_tenants_example_writes_a_directory_per_tenant(
    kafka_broker: str, tmp_path: Path
) -> None:
    from .telemetry_rows import span_request

    folder = tmp_path / "kafka-tenants"
    shutil.copytree(EXAMPLES / "kafka-tenants", folder)
    prefix, shared = unique("tenants"), unique("shared")
    for topic in (f"{prefix}.acme.spans", f"{prefix}.globex.spans", shared):
        await kafka_topic(kafka_broker, topic)
    await kafka_send(
        kafka_broker,
        [
            (f"{prefix}.acme.spans", span_request(3, 1).SerializeToString(), {}),
            (f"{prefix}.globex.spans", span_request(2, 1).SerializeToString(), {}),
            (shared, span_request(4, 2).SerializeToString(), {"X-Scope-OrgID": "initech"}),
            (shared, span_request(1, 1).SerializeToString(), {"X-Scope-OrgID": "umbrella"}),
        ],
    )
    variables = {"BROKERS": kafka_broker, "PREFIX": prefix, "SHARED": shared, "GROUP": unique("g")}
    spec = load_pipeline(folder / "pipeline.yaml", variables, environ={})
    spec.on_error.policy = "reject"
    spec.on_error.rejects = str(folder / "rejects.csv")
    with_source_options(spec, session_timeout=KAFKA_SESSION, idle_timeout=1.5)
    await PipelineEngine(compile_plan(spec)).run()
    out = folder / "out" / "spans"
    counts = {d.name: pq.read_table(d).num_rows for d in sorted(out.iterdir()) if d.name[0] != "."}
    assert counts == {"tenant_id=acme": 3, "tenant_id=globex": 2, "tenant_id=initech": 4}
    assert "tenant 'umbrella' is not taken" in (folder / "rejects.csv").read_text()


async def test_a_websocket_tenant_over_its_limit_is_delayed_not_refused(
    run_ctx: RunContext,
) -> None:
    """6 messages of a tenant allowed 2 a second (burst 2) reach the sinks over 2 s, and every
    one is acknowledged: the connection is slowed, never refused."""
    from websockets.asyncio.client import connect

    r: WebSocketReceiver = build(
        WebSocketReceiver,
        {
            "port": 0,
            "batch_seconds": 0.05,
            "batch_messages": 1,
            "tenancy": {"overrides": {"acme": {"requests_per_second": 2}}},
        },
    )
    batches, reading = await started(r, run_ctx)
    url = f"ws://127.0.0.1:{r.port}/?tenant=acme"
    async with connect(url) as ws:
        began = time.monotonic()
        for n in range(6):
            await ws.send(orjson.dumps({"n": n}))
        await eventually(lambda: sum(b.num_rows for b in batches) == 6)
        took = time.monotonic() - began
        r.drain()
        await reading
        await r.commit()
        assert orjson.loads(await ws.recv()) == {"acked": 6}
    await r.close()
    assert took >= 1.8 and r.paced >= 1
    assert pa.Table.from_batches(batches).column("tenant_id").to_pylist() == ["acme"] * 6
