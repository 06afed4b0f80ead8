"""The ``rabbitmq`` sink: publish rows as messages, each confirmed by the broker.

The channel runs in publisher-confirm mode and every publish is ``mandatory``: a write
returns only when the broker has confirmed (persisted, for durable queues and persistent
messages) every message of the batch, and a message that no queue would receive fails the
write instead of vanishing. Up to ``in_flight`` publishes await their confirms at once.

Messages are published as rows arrive: messages confirmed before a later failure stay
published (at-least-once; AMQP has no rollback compatible with confirms). When the engine
retries a write after a connection failure, the sink reconnects and publishes only the
messages of that batch the broker had not confirmed. ``commit`` and ``abort`` only close
the connection.

``rows_per_message: 1`` sends each row as one JSON object (``format: json``); a larger
number sends a JSON array, JSON lines or a CSV document with a header row per message.
Values are written by the rules of :mod:`quiver.pipeline.json_text`, which the ``rabbitmq``
source reads back value for value: decimals as exact strings, binary as base64, times as ISO
8601 text, NaN and infinities as ``"NaN"``/``"Infinity"``/``"-Infinity"``; CSV cells hold the
same text, with an empty unquoted cell for null and ``""`` for the empty string.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field, model_validator

from quiver.pipeline.clients.amqp import DEFAULT_AMQP_URL, amqp_error
from quiver.pipeline.component import (
    ComponentConfig,
    RunContext,
    sink,
    without_line,
)
from quiver.pipeline.json_text import dump_json, json_rows, text_columns
from quiver.runtime.errors import RetryableError

__all__ = ["RabbitMqSink", "RabbitMqSinkConfig"]


class RabbitMqSinkConfig(ComponentConfig):
    """Publish rows to an exchange or queue."""

    url: str = Field(
        DEFAULT_AMQP_URL,
        description="AMQP URL: amqp://user:password@host:5672/vhost (amqps:// for TLS).",
    )
    exchange: str = Field("", description="Exchange to publish to; empty: the default exchange.")
    routing_key: str = Field(
        description="Routing key; with the default exchange, the name of the target queue."
    )
    declare_queue: bool = Field(
        False,
        description="Declare the queue named by routing_key (durable) before publishing; "
        "only with the default exchange.",
    )
    format: Literal["json", "jsonl", "csv"] = Field("json", description="Message body format.")
    rows_per_message: int = Field(1, ge=1, description="Rows in one message.")
    persistent: bool = Field(True, description="Ask the broker to store messages on disk.")
    headers: dict[str, str] = Field(default_factory=dict, description="AMQP message headers.")
    in_flight: int = Field(
        256, ge=1, description="Publishes awaiting their broker confirm at once."
    )

    @model_validator(mode="after")
    def _declare_default_only(self) -> RabbitMqSinkConfig:
        if self.declare_queue and self.exchange:
            raise ValueError("`declare_queue` only applies to the default exchange (exchange: '')")
        return self


_CONTENT_TYPES = {"json": "application/json", "jsonl": "application/x-ndjson", "csv": "text/csv"}


@sink("rabbitmq", config=RabbitMqSinkConfig)
class RabbitMqSink:
    """Rows as messages to RabbitMQ, with publisher confirms."""

    def __init__(self, cfg: RabbitMqSinkConfig) -> None:
        self.cfg = cfg
        self.where = f"sink rabbitmq {cfg.exchange or '(default exchange)'}/{cfg.routing_key}"
        self._connection: Any = None
        self._exchange: Any = None
        self._progress: tuple[int, set[int]] = (0, set())  # (batch id, confirmed messages)
        self.published = 0

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        await self._connect()

    async def _connect(self) -> None:
        import aio_pika

        cfg = self.cfg
        try:
            self._connection = await aio_pika.connect(cfg.url)
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            if cfg.declare_queue:
                await channel.declare_queue(cfg.routing_key, durable=True)
            if cfg.exchange:
                self._exchange = await channel.get_exchange(cfg.exchange, ensure=True)
            else:
                self._exchange = channel.default_exchange
        except Exception as exc:
            await self._close()
            raise amqp_error(exc, cfg.url, f"opening {self.where}") from exc

    def _bodies(self, batch: pa.RecordBatch) -> list[bytes]:
        n = self.cfg.rows_per_message
        fmt = self.cfg.format
        if fmt == "csv":
            bodies = []
            for offset in range(0, batch.num_rows, n):
                out = io.BytesIO()
                pacsv.write_csv(text_columns(batch.slice(offset, n)), out)
                bodies.append(out.getvalue())
            return bodies
        rows = json_rows(batch)
        chunks = [rows[i : i + n] for i in range(0, len(rows), n)]
        if fmt == "jsonl":
            return [b"\n".join(dump_json(r, from_rows=True) for r in c) for c in chunks]
        if n == 1:
            return [dump_json(c[0], from_rows=True) for c in chunks]
        return [dump_json(c, from_rows=True) for c in chunks]

    async def write(self, batch: pa.RecordBatch) -> None:
        """Publish the batch; a retried write reconnects and skips confirmed messages."""
        import aio_pika

        batch_id = id(batch)
        if self._progress[0] != batch_id:
            self._progress = (batch_id, set())
        confirmed = self._progress[1]
        if self._connection is None or self._connection.is_closed:
            await self._connect()  # after a failure: the engine retries the write
        batch = without_line(batch)
        mode = (
            aio_pika.DeliveryMode.PERSISTENT
            if self.cfg.persistent
            else aio_pika.DeliveryMode.NOT_PERSISTENT
        )
        window = asyncio.Semaphore(self.cfg.in_flight)
        exchange = self._exchange

        async def publish(index: int, body: bytes) -> None:
            async with window:
                message = aio_pika.Message(
                    body,
                    content_type=_CONTENT_TYPES[self.cfg.format],
                    delivery_mode=mode,
                    headers=dict(self.cfg.headers) or None,
                )
                await exchange.publish(message, self.cfg.routing_key, mandatory=True)
                confirmed.add(index)

        bodies = self._bodies(batch)
        pending = [(i, b) for i, b in enumerate(bodies) if i not in confirmed]
        try:
            await asyncio.gather(*(publish(i, b) for i, b in pending))
        except Exception as exc:
            error = amqp_error(exc, self.cfg.url, f"publishing to {self.where}")
            if isinstance(error, RetryableError):
                await self._close()  # the next attempt opens a fresh connection
            raise error from exc
        self.published += len(pending)
        self._progress = (0, set())  # done: a later batch may reuse this one's id

    async def commit(self) -> None:
        await self._close()

    async def abort(self) -> None:
        await self._close()

    async def _close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):  # it may be the thing that failed
                await connection.close()
