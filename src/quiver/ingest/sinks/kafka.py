"""The ``kafka`` sink: rows as records of Kafka topics, each acknowledged by all in-sync replicas.

The producer is idempotent (``enable_idempotence``: the broker drops the duplicates of its
own retries) and sends with ``acks=all``: a write returns only once every record of the
batch was acknowledged by the partition leader and its in-sync replicas, so the engine
commits (and a receiver upstream settles its input) only what Kafka holds.

``topic`` may name row fields (``telemetry.{signal}``); ``key`` names the field whose value
keys each record (records of one key go to one partition, in order). Bodies are written in
``format`` (json, jsonl, csv, avro, otlp_json, otlp_proto; see
:mod:`quiver.ingest.outbound`), with a ``content-type`` header and, for OTLP, an
``otlp-signal`` header the ``kafka`` receiver reads.

When the engine retries a failed write, the sink sends again only the records of that batch
Kafka had not acknowledged (at-least-once across a failure; the idempotent producer keeps
its own retries exactly-once).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from quiver.ingest.kafka_client import KafkaConnection, kafka_error
from quiver.ingest.outbound import MessageEncoder, ProducerFormat, Template
from quiver.pipeline.component import Checking, RunContext, sink
from quiver.runtime.errors import ErrorDetail, RetryableError

__all__ = ["KafkaSink", "KafkaSinkConfig"]

_CODEC_MODULES = {"snappy": "cramjam", "lz4": "cramjam", "zstd": "cramjam"}


class KafkaSinkConfig(KafkaConnection, ProducerFormat):
    """Produce rows to Kafka topics."""

    topic: str = Field(
        min_length=1,
        description="Topic to produce to; may name row fields in braces (`events.{service_name}`).",
    )
    key: str | None = Field(
        None, description="Field whose value keys each record (default: no key)."
    )
    idempotent: bool = Field(
        True,
        description="Idempotent producer: the broker drops the duplicates of the producer's "
        "own retries (needs a broker that grants producer ids; Tansu 0.6 does not).",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "none",
        description="Compression of record batches (snappy, lz4 and zstd need the cramjam "
        "package).",
    )
    linger_ms: int = Field(5, ge=0, description="Wait this long to fill a record batch.")
    max_batch_bytes: int = Field(
        1_048_576, ge=1024, description="Size of one record batch per partition, at most."
    )
    max_request_bytes: int = Field(
        1_048_576, ge=1024, description="Size of one produce request (and record), at most."
    )
    timeout_seconds: float = Field(
        30.0, gt=0, description="A record not acknowledged this long fails the write."
    )


@sink("kafka", config=KafkaSinkConfig)
class KafkaSink(Checking):
    """Rows as records of Kafka topics (idempotent producer, acks=all)."""

    def __init__(self, cfg: KafkaSinkConfig) -> None:
        self.cfg = cfg
        self.where = f"sink kafka {cfg.topic}"
        self.encoder = MessageEncoder(cfg, Template(cfg.topic, "topic"), cfg.key, self.where)
        self._producer: Any = None
        self._base_dir = "."
        self._progress: tuple[int, set[int]] = (0, set())  # (batch id, acknowledged records)
        self.published = 0

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        problems = self.encoder.check(ctx)
        module = _CODEC_MODULES.get(self.cfg.compression)
        if module is not None:
            try:
                __import__(module)
            except ImportError:
                problems.append(
                    ErrorDetail(
                        f"compression {self.cfg.compression} needs the {module} package, "
                        "which is not installed",
                        self.where,
                        f"install {module}, or use compression gzip or none",
                    )
                )
        return problems

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        self.encoder.open(schema, ctx)
        self._base_dir = ctx.base_dir
        await self._connect()

    async def _connect(self) -> None:
        from aiokafka import AIOKafkaProducer

        cfg = self.cfg
        producer = AIOKafkaProducer(
            acks="all",
            enable_idempotence=cfg.idempotent,
            compression_type=None if cfg.compression == "none" else cfg.compression,
            linger_ms=cfg.linger_ms,
            max_batch_size=cfg.max_batch_bytes,
            max_request_size=cfg.max_request_bytes,
            request_timeout_ms=int(cfg.timeout_seconds * 1000),
            **cfg.client_options(self._base_dir),
        )
        try:
            await producer.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise kafka_error(exc, self.where, "connecting the producer") from exc
        self._producer = producer

    async def write(self, batch: pa.RecordBatch) -> None:
        """Send every record of the batch and wait until Kafka acknowledged them all."""
        batch_id = id(batch)
        if self._progress[0] != batch_id:
            self._progress = (batch_id, set())
        acknowledged = self._progress[1]
        messages = self.encoder.encode(batch)
        if self._producer is None:
            await self._connect()  # after a failure: the engine retries the write
        producer = self._producer
        pending: dict[asyncio.Future[Any], int] = {}
        try:
            for index, message in enumerate(messages):
                if index in acknowledged:
                    continue
                future = await producer.send(
                    message.destination,
                    message.body,
                    key=message.key,
                    headers=message.headers,
                )
                pending[future] = index
            if pending:
                done, late = await asyncio.wait(pending, timeout=self.cfg.timeout_seconds)
                failure: BaseException | None = None
                for future in done:
                    if future.exception() is None:
                        acknowledged.add(pending[future])
                    elif failure is None:
                        failure = future.exception()
                if failure is not None:
                    raise failure
                if late:
                    raise TimeoutError(
                        f"{len(late)} record(s) not acknowledged within "
                        f"{self.cfg.timeout_seconds:g}s"
                    )
        except Exception as exc:
            for future in pending:
                if not future.done():
                    future.cancel()
            error = kafka_error(exc, self.where, "producing records")
            if isinstance(error, RetryableError):
                await self._close()  # the next attempt starts a fresh producer
            raise error from exc
        self.published += len(pending)
        self._progress = (0, set())  # done: a later batch may reuse this one's id

    async def commit(self) -> None:
        await self._close()

    async def abort(self) -> None:
        await self._close()

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):  # it may be the thing that failed
                await producer.stop()
