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
A message that cannot be read (a bad body, a value that is not of its column's type) is a
rejected row for the engine, exactly like a bad CSV line: it fails a ``fail_fast`` run (and
the message goes back to the queue), or with ``on_error: {policy: reject}`` it goes to the
rejects file (its body in ``row``) and, when the run commits, is rejected without requeueing,
so the broker moves it to the queue's dead-letter exchange when one is configured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field

from quiver.pipeline.clients.amqp import DEFAULT_AMQP_URL, amqp_error
from quiver.pipeline.component import (
    Acknowledging,
    ComponentConfig,
    RowError,
    RowRejecting,
    RunContext,
    source,
)
from quiver.pipeline.json_text import json_body_records
from quiver.pipeline.messages import MessageRows, csv_header, refusal
from quiver.pipeline.records import RecordBatcher

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
        description="Column types (int, float, decimal(p,s), str, bool, date, time, timestamp, "
        "timestamp(ms, UTC), binary, json). JSON: inferred from the first batch when left "
        "out. CSV: columns not listed are text (or inferred with `infer`). A number in a "
        "timestamp column counts seconds since 1970-01-01, or the unit in timestamp(s|ms|us|ns).",
    )
    infer: bool = Field(
        False,
        description="CSV: infer the types of the columns `schema` does not list from the "
        "first message (they are text otherwise).",
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
class RabbitMqSource(Acknowledging, RowRejecting):
    """Messages from a RabbitMQ queue, acknowledged only after the run commits."""

    def __init__(self, cfg: RabbitMqSourceConfig) -> None:
        self.cfg = cfg
        self.where = f"source rabbitmq {cfg.queue}"
        self._connection: Any = None
        self._channel: Any = None
        self._last: Any = None  # last message handed on and not yet acknowledged
        self._pending = 0  # messages handed on and not yet acknowledged
        self._refused: list[Any] = []  # messages set aside, rejected on commit
        self._errors: list[RowError] = []  # their errors, for the engine's rejects
        self._rows: MessageRows[Any] = MessageRows(
            lambda records: RecordBatcher(self.where, self._declared())
        )
        self._csv_types: dict[str, str] | None = None  # CSV columns, from the first message
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
        taken = 0
        try:
            while taken < cfg.max_messages:
                messages = await self._collect(inbox, cfg.max_messages - taken)
                if not messages:
                    break
                taken += len(messages)
                batch = await self._to_batch(messages, ctx)
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
        if fmt in ("json", "jsonl"):
            return json_body_records(body, lines=fmt == "jsonl")
        return self._csv_records(body)

    def _csv_records(self, body: bytes) -> list[Any]:
        """The rows of a CSV message as dicts of text (null for an empty unquoted cell);
        columns are typed only by `schema`, or inferred when `infer` asks for it."""
        cfg = self.cfg
        names = cfg.columns or csv_header(body, cfg.delimiter)
        declared = cfg.schema_ or {}
        if cfg.infer:
            types = {n: pa.string() for n in names if n in declared}
        else:
            types = {n: pa.string() for n in names}
        table = pacsv.read_csv(
            pa.py_buffer(body),
            read_options=pacsv.ReadOptions(column_names=cfg.columns) if cfg.columns else None,
            # in a one-column message an empty line is a null value, as the sink writes it
            parse_options=pacsv.ParseOptions(
                delimiter=cfg.delimiter, ignore_empty_lines=len(names) != 1
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )
        if self._csv_types is None:
            self._csv_types = {
                f.name: declared.get(f.name) or _type_name(f.type) for f in table.schema
            }
        records: list[Any] = table.to_pylist()
        return records

    async def _to_batch(self, messages: list[Any], ctx: RunContext) -> pa.RecordBatch | None:
        parsed: list[tuple[Any, list[Any]]] = []
        for message in messages:
            try:
                records = self._records(message.body)
            except (ValueError, pa.ArrowInvalid) as exc:
                self._refuse(message, f"unreadable {self.cfg.format} body: {exc}", ctx)
                continue
            if self.cfg.metadata:
                extra = {f"amqp_{m}": getattr(message, m) for m in self.cfg.metadata}
                records = [{**r, **extra} if isinstance(r, dict) else r for r in records]
            parsed.append((message, records))
        batch, taken, refused = self._rows.split(parsed)
        for message, error in refused:
            self._refuse(message, error.reason, ctx, error)
        if taken:
            self._last = taken[-1]
            self._pending += len(taken)
        return batch

    def _declared(self) -> dict[str, str] | None:
        if self._csv_types is not None:
            declared: dict[str, str] | None = dict(self._csv_types)
        elif self.cfg.schema_ is not None:
            declared = dict(self.cfg.schema_)
        else:
            return None
        assert declared is not None
        declared.update({f"amqp_{m}": _METADATA_TYPES[m] for m in self.cfg.metadata})
        return declared

    def _refuse(
        self, message: Any, reason: str, ctx: RunContext, error: RowError | None = None
    ) -> None:
        """Set a message aside: it is reported as rejected and, once the run commits,
        rejected without requeueing (to the queue's dead-letter exchange, if it has one)."""
        self.rejected += 1
        self._refused.append(message)
        label = message.message_id or f"#{message.delivery_tag}"
        ctx.log(f"{self.where}: message {label} rejected: {reason}", "warning")
        self._errors.append(refusal(label, message.body, reason, error))

    def take_errors(self) -> list[RowError]:
        """The messages set aside since the last call, one error each."""
        errors, self._errors = self._errors, []
        return errors

    async def commit(self) -> None:
        """Settle every message handed on so far: the sinks have committed them.

        Messages set aside as rejected are rejected without requeueing (the rejects file
        holds them, and the queue's dead-letter exchange receives them); the others are
        acknowledged. The engine calls this after the sinks committed; it may call it after
        each batch in a long-running pipeline. The connection closes once the source has
        finished.
        """
        last, self._last = self._last, None
        refused, self._refused = self._refused, []
        try:
            for message in refused:
                await message.reject(requeue=False)
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
        """Hand every unsettled message back to the queue, rejected ones included."""
        last, self._last = self._last, None
        refused, self._refused = self._refused, []
        self._pending = 0
        try:
            if self._channel is not None and not self._channel.is_closed:
                for message in refused:
                    await message.nack(requeue=True)
                if last is not None:
                    await last.nack(multiple=True, requeue=True)
        except Exception:  # closing the connection requeues them as well
            pass
        finally:
            await self._close()

    async def _close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await connection.close()


def _type_name(kind: pa.DataType) -> str:
    """A type inferred from a CSV message, as a schema type name."""
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_boolean(kind):
        return "bool"
    if pa.types.is_timestamp(kind):
        return "timestamp" if kind.tz is None else f"timestamp({kind.unit}, {kind.tz})"
    if pa.types.is_date(kind):
        return "date"
    return "str"
