"""The ``amqp`` receiver: messages routed by an AMQP 0-9-1 (RabbitMQ) exchange, as rows.

The receiver declares its durable ``queue``, binds it to ``exchange`` with each of
``bindings`` (routing keys; patterns with ``*`` and ``#`` for a topic exchange) and consumes it
with manual acknowledgement. Messages are acknowledged once the run's sinks committed them; a
run that fails or is stopped hard hands them back (requeued), and so does a process that dies,
since the broker requeues what a closed connection had not acknowledged. Messages refused as
bad rows are rejected without requeueing, which moves them to the queue's dead-letter exchange
when it has one (``dead_letter_exchange``).

This is the long-running form of the ``rabbitmq`` source: the same broker client and errors
(:mod:`quiver.pipeline.clients.amqp`), plus exchanges and bindings, and no end of input unless
``idle_timeout`` or ``max_messages`` asks for one.

``tenancy`` puts each message's tenant in the ``tenant_id`` column: from its routing key
(``patterns: [tenants.{tenant}.#]``: words split by ``.``, ``*`` one word, ``#`` the words
left) or from a message header (``header``, ``X-Scope-OrgID`` by default), first match in
``sources`` order (``topic`` is the routing key), then ``default``; a message without one is
rejected. With ``limits`` a tenant over its rate limit is delayed (its messages are
acknowledged later; ``prefetch`` bounds what the broker sends meanwhile).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from quiver.ingest.receiver import BrokerReceiver, Message, ReceiverConfig, TlsOptions
from quiver.ingest.tenancy import TENANT_COLUMN, MessageTenancyConfig, TopicTenancy, topic_pattern
from quiver.pipeline.clients.amqp import DEFAULT_AMQP_URL, amqp_error
from quiver.pipeline.component import RunContext, source

__all__ = ["AmqpReceiver", "AmqpReceiverConfig"]

AmqpMetadata = Literal["routing_key", "exchange", "message_id", "redelivered"]
_KEY_SYNTAX = (".", "*", "#")  # word separator, one word, the words left


class AmqpReceiverConfig(ReceiverConfig):
    """Consume a queue bound to an exchange."""

    url: str = Field(
        DEFAULT_AMQP_URL,
        description="AMQP URL: amqp://user:password@host:5672/vhost (amqps:// for TLS).",
    )
    queue: str = Field(min_length=1, description="Queue to consume (declared durable).")
    exchange: str | None = Field(
        None, description="Exchange to bind the queue to (declared when missing)."
    )
    exchange_type: Literal["direct", "topic", "fanout", "headers"] = Field(
        "topic", description="Type of the exchange when it is declared."
    )
    bindings: list[str] = Field(
        default_factory=lambda: ["#"],
        description="Routing keys binding the queue to the exchange (topic: * and # patterns).",
    )
    dead_letter_exchange: str | None = Field(
        None,
        description="Exchange receiving rejected messages (set on the queue when declared).",
    )
    prefetch: int = Field(
        0,
        ge=0,
        le=65_535,
        description="Messages delivered ahead and not yet acknowledged, at most (0: no limit). "
        "A run holds every message until it commits, so a limit also ends what a run can take.",
    )
    metadata: list[AmqpMetadata] = Field(
        default_factory=list,
        description="Message properties added as `amqp_<name>` columns: routing_key, exchange, "
        "message_id, redelivered.",
    )
    tls: TlsOptions | None = Field(None, description="TLS settings (with an amqps:// URL).")
    tenancy: MessageTenancyConfig | None = Field(
        None,
        description="Take each message's tenant (the tenant_id column) from its routing key "
        "(sources: topic) or a header, e.g. {patterns: [tenants.{tenant}.#]}.",
    )

    @model_validator(mode="after")
    def _tenancy(self) -> AmqpReceiverConfig:
        if self.tenancy is None:
            return self
        for pattern in self.tenancy.patterns:
            topic_pattern(pattern, *_KEY_SYNTAX)
        if "resource_attribute" in self.tenancy.sources:
            raise ValueError(
                "tenancy.sources: resource_attribute is read from OTLP payloads (the kafka "
                "receiver's otlp formats); use topic (the routing key) or header"
            )
        return self


_TYPES = {"routing_key": "str", "exchange": "str", "message_id": "str", "redelivered": "bool"}


@source("amqp", config=AmqpReceiverConfig)
class AmqpReceiver(BrokerReceiver):
    """Messages of an AMQP queue bound to an exchange, acknowledged after the sinks commit."""

    client_loggers = ("aiormq", "aio_pika")

    def __init__(self, cfg: AmqpReceiverConfig) -> None:
        super().__init__(cfg, f"source amqp {cfg.queue}")
        self.cfg = cfg
        self.extra_types = {f"amqp_{m}": _TYPES[m] for m in cfg.metadata}
        if cfg.tenancy is not None:
            self.extra_types = {**self.extra_types, TENANT_COLUMN: "str"}
            self.topic_tenancy = TopicTenancy(cfg.tenancy, *_KEY_SYNTAX)
        self._connection: Any = None
        self._channel: Any = None
        self._queue: Any = None
        self._tag: str | None = None

    async def _subscribe(self, ctx: RunContext) -> None:
        import aio_pika

        cfg = self.cfg
        arguments = (
            {"x-dead-letter-exchange": cfg.dead_letter_exchange}
            if cfg.dead_letter_exchange is not None
            else None
        )
        ssl_context = cfg.tls.context(ctx.base_dir) if cfg.tls is not None else None
        try:
            self._connection = await aio_pika.connect(
                cfg.url,
                ssl_context=ssl_context,
                # how the broker's management UI and rabbitmqctl name the connection
                client_properties={"connection_name": f"quiver {self.where}"},
            )
            self._connection.close_callbacks.add(self._on_close)
            self._channel = await self._connection.channel()
            await self._channel.set_qos(prefetch_count=cfg.prefetch)
            queue = await self._channel.declare_queue(cfg.queue, durable=True, arguments=arguments)
            if cfg.exchange is not None:
                exchange = await self._channel.declare_exchange(
                    cfg.exchange, cfg.exchange_type, durable=True
                )
                for key in cfg.bindings:
                    await queue.bind(exchange, key)
            self._queue = queue
            self._tag = await queue.consume(self._on_message, no_ack=False)
        except Exception as exc:
            raise amqp_error(exc, cfg.url, f"subscribing queue {cfg.queue!r}") from exc

    def _on_close(self, sender: Any, exc: BaseException | None = None) -> None:
        if self._connection is not None:  # not closed by this receiver
            lost = exc or ConnectionError("the broker closed the connection")
            self._fail(amqp_error(lost, self.cfg.url, f"consuming queue {self.cfg.queue!r}"))

    async def _on_message(self, message: Any) -> None:
        fields = {f"amqp_{m}": getattr(message, m) for m in self.cfg.metadata}
        label = message.message_id or f"#{message.delivery_tag}"
        refused = None
        if self.topic_tenancy is not None:
            headers = {
                str(k).lower(): v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                for k, v in (message.headers or {}).items()
                if v is not None
            }
            refused = self._tenant(message.routing_key or "", fields, headers)
        self._deliver(Message(message.body, label, fields, message, refused))

    async def _unsubscribe(self) -> None:
        if self._queue is not None and self._tag is not None and not self._channel.is_closed:
            await self._queue.cancel(self._tag)
            self._tag = None

    async def _acknowledge(self, accepted: list[Message], refused: list[Message]) -> None:
        try:
            for message in refused:
                await message.handle.reject(requeue=False)
            if accepted:  # every earlier delivery is settled by now: one ack for all
                last = max(accepted, key=lambda m: m.handle.delivery_tag)
                await last.handle.ack(multiple=True)
            if self._channel is not None and (accepted or refused):
                # an acknowledgement has no answer: a method that has one, on the same
                # channel, returns once the broker processed everything sent before it
                await self._channel.set_qos(prefetch_count=self.cfg.prefetch)
        except Exception as exc:
            raise amqp_error(exc, self.cfg.url, "acknowledging messages") from exc

    async def _release(self, messages: list[Message]) -> None:
        if self._channel is None or self._channel.is_closed:
            return
        for message in messages:
            await message.handle.nack(requeue=True)

    async def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            await connection.close()
