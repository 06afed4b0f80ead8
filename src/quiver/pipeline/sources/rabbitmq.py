"""The ``rabbitmq`` source: messages from a RabbitMQ (AMQP 0-9-1) queue, as rows.

Delivery is **at-least-once**. Messages are consumed with manual acknowledgement and stay
unacknowledged while the pipeline works on them; the engine calls :meth:`RabbitMqSource.commit`
after every sink has committed, and only then are they acknowledged. If the run fails or is
interrupted, :meth:`RabbitMqSource.abort` (or the closed connection) hands them back to the
queue, so nothing is lost, and a message may be processed twice after a crash: make the
sink idempotent (``database`` with ``mode: upsert``) when that matters.

Messages are grouped into batches of ``batch_messages`` messages or whatever arrived within
``batch_seconds``, whichever comes first. A run ends when the queue has been idle for
``idle_timeout`` seconds or ``max_messages`` messages were taken (all of them are held
unacknowledged until the run commits, so the broker's prefetch is set to that number).

A message body is a JSON object or an array of objects (``format: json``), JSON lines
(``jsonl``), or a CSV document (``csv``: with a header row, or ``columns`` for bare rows).
A message that cannot be read is rejected without requeueing, so the broker moves it to
the queue's dead-letter exchange when one is configured, and the reason is logged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field

from quiver.pipeline.clients.amqp import DEFAULT_AMQP_URL, amqp_error
from quiver.pipeline.component import (
    Acknowledging,
    ComponentConfig,
    RunContext,
    source,
)
from quiver.pipeline.records import RecordBatcher
from quiver.runtime.errors import PermanentError

__all__ = ["RabbitMqSource", "RabbitMqSourceConfig"]

_MAX_PREFETCH = 65_535  # basic.qos prefetch-count is a 16-bit number


MetadataField = Literal[
    "routing_key", "exchange", "message_id", "correlation_id", "timestamp", "redelivered"
]
_METADATA_TYPES = {
    "routing_key": "str",
    "exchange": "str",
    "message_id": "str",
    "correlation_id": "str",
    "timestamp": "timestamp",
    "redelivered": "bool",
}


class RabbitMqSourceConfig(ComponentConfig):
    """Consume a queue."""

    url: str = Field(
        DEFAULT_AMQP_URL,
        description="AMQP URL: amqp://user:password@host:5672/vhost (amqps:// for TLS).",
    )
    queue: str = Field(description="Queue to consume.")
    declare: bool = Field(
        False, description="Declare the queue (durable) when missing instead of failing."
    )
    format: Literal["json", "jsonl", "csv"] = Field("json", description="Message body format.")
    delimiter: str = Field(",", min_length=1, max_length=1, description="CSV field delimiter.")
    columns: list[str] | None = Field(
        None, description="CSV column names when messages carry no header row."
    )
    schema_: dict[str, str] | None = Field(
        None,
        alias="schema",
        description="Column types (int, float, str, bool, date, timestamp, json); "
        "inferred from the first batch when left out.",
    )
    metadata: list[MetadataField] = Field(
        default_factory=list,
        description="Message properties added to each row as `amqp_<name>` columns: "
        "routing_key, exchange, message_id, correlation_id, timestamp, redelivered.",
    )
    batch_messages: int = Field(1_000, ge=1, description="Messages per batch, at most.")
    batch_seconds: float = Field(
        1.0, gt=0, description="A batch is handed on this long after its first message."
    )
    idle_timeout: float = Field(
        5.0, gt=0, description="End the run when no message arrives for this many seconds."
    )
    max_messages: int = Field(
        50_000,
        ge=1,
        le=_MAX_PREFETCH,
        description="Messages taken per run at most (all held unacknowledged until commit).",
    )


@source("rabbitmq", config=RabbitMqSourceConfig)
class RabbitMqSource(Acknowledging):
    """Messages from a RabbitMQ queue, acknowledged only after the run commits."""

    def __init__(self, cfg: RabbitMqSourceConfig) -> None:
        self.cfg = cfg
        self.where = f"source rabbitmq {cfg.queue}"
        self._connection: Any = None
        self._channel: Any = None
        self._last: Any = None  # last message handed on and not yet acknowledged
        self._pending = 0  # messages handed on and not yet acknowledged
        self._finished = False
        self.acknowledged = 0
        self.rejected = 0

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        import aio_pika

        cfg = self.cfg
        try:
            self._connection = await aio_pika.connect(cfg.url)
            self._channel = await self._connection.channel()
            await self._channel.set_qos(prefetch_count=cfg.max_messages)
            queue = await self._channel.declare_queue(
                cfg.queue, passive=not cfg.declare, durable=True
            )
        except Exception as exc:
            await self._close()
            raise amqp_error(exc, cfg.url, f"opening queue {cfg.queue!r}") from exc
        inbox: asyncio.Queue[Any] = asyncio.Queue()
        tag = await queue.consume(inbox.put, no_ack=False)
        declared = None
        if cfg.schema_ is not None:
            declared = {**cfg.schema_}
            declared.update({f"amqp_{m}": _METADATA_TYPES[m] for m in cfg.metadata})
        batcher = RecordBatcher(self.where, declared)
        taken = 0
        try:
            while taken < cfg.max_messages:
                messages = await self._collect(inbox, cfg.max_messages - taken)
                if not messages:
                    break
                taken += len(messages)
                batch = await self._to_batch(messages, batcher, ctx)
                if batch is not None:
                    yield batch
        finally:
            self._finished = True
            if self._channel is not None and not self._channel.is_closed:
                await queue.cancel(tag)
                # Delivered after we stopped taking: give them back at once.
                while not inbox.empty():
                    await inbox.get_nowait().nack(requeue=True)

    async def _collect(self, inbox: asyncio.Queue[Any], room: int) -> list[Any]:
        cfg = self.cfg
        try:
            first = await asyncio.wait_for(inbox.get(), cfg.idle_timeout)
        except TimeoutError:
            return []
        messages = [first]
        deadline = time.monotonic() + cfg.batch_seconds
        limit = min(cfg.batch_messages, room)
        while len(messages) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                messages.append(await asyncio.wait_for(inbox.get(), remaining))
            except TimeoutError:
                break
        return messages

    def _records(self, body: bytes) -> list[Any]:
        fmt = self.cfg.format
        if fmt == "json":
            doc = orjson.loads(body)
            return doc if isinstance(doc, list) else [doc]
        if fmt == "jsonl":
            return [orjson.loads(line) for line in body.splitlines() if line.strip()]
        read = pacsv.ReadOptions(column_names=self.cfg.columns) if self.cfg.columns else None
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=read,
            parse_options=pacsv.ParseOptions(delimiter=self.cfg.delimiter),
        )
        records: list[Any] = table.to_pylist()
        return records

    async def _to_batch(
        self, messages: list[Any], batcher: RecordBatcher, ctx: RunContext
    ) -> pa.RecordBatch | None:
        try:
            return await self._convert(messages, batcher, ctx)
        finally:
            # The last message still to acknowledge: ack(multiple) settles it and every
            # earlier one; rejected messages are already settled.
            kept = [m for m in messages if not m.processed]
            if kept:
                self._last = kept[-1]

    async def _convert(
        self, messages: list[Any], batcher: RecordBatcher, ctx: RunContext
    ) -> pa.RecordBatch | None:
        parsed: list[tuple[Any, list[Any]]] = []
        for message in messages:
            try:
                records = self._records(message.body)
                if self.cfg.metadata:
                    extra = {f"amqp_{m}": getattr(message, m) for m in self.cfg.metadata}
                    records = [{**r, **extra} if isinstance(r, dict) else r for r in records]
                parsed.append((message, records))
            except (ValueError, pa.ArrowInvalid) as exc:
                await self._reject(message, f"unreadable {self.cfg.format} body: {exc}", ctx)
        self._pending += len(messages)
        records = [r for _, rs in parsed for r in rs]
        if not records:
            return None
        try:
            return batcher.to_batch(records)
        except PermanentError:
            pass
        # One message is bad: keep the others, reject the bad ones.
        good: list[pa.RecordBatch] = []
        for message, rs in parsed:
            try:
                good.append(batcher.to_batch(rs))
            except PermanentError as exc:
                await self._reject(message, str(exc), ctx)
        if not good:
            return None
        table = pa.Table.from_batches(good).combine_chunks()
        return table.to_batches()[0]

    async def _reject(self, message: Any, reason: str, ctx: RunContext) -> None:
        self.rejected += 1
        self._pending -= 1
        ctx.log(
            f"{self.where}: message {message.message_id or message.delivery_tag} rejected "
            f"(dead-lettered if the queue has a dead-letter exchange): {reason}",
            "warning",
        )
        await message.reject(requeue=False)

    async def commit(self) -> None:
        """Acknowledge every message handed on so far: the sinks have committed them.

        The engine calls this after the sinks committed; it may call it after each batch
        in a long-running pipeline. The connection closes once the source has finished.
        """
        last, self._last = self._last, None
        try:
            if last is not None:
                await last.ack(multiple=True)
                self.acknowledged += self._pending
                self._pending = 0
        except Exception as exc:
            await self._close()
            raise amqp_error(exc, self.cfg.url, "acknowledging messages") from exc
        if self._finished:
            await self._close()

    async def abort(self) -> None:
        """Hand every unacknowledged message back to the queue."""
        last, self._last = self._last, None
        self._pending = 0
        try:
            if last is not None and self._channel is not None and not self._channel.is_closed:
                await last.nack(multiple=True, requeue=True)
        except Exception:  # closing the connection requeues them as well
            pass
        finally:
            await self._close()

    async def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await connection.close()
