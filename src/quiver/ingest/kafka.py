"""The ``kafka`` receiver: records of Kafka topics, as rows, in a consumer group.

The receiver joins the consumer group ``group_id`` and reads its share of the partitions of
``topics``. Offsets are committed to the group only after the run's sinks committed the rows,
never automatically: a run that fails or is killed commits nothing, and the next run of the
group starts again from the last committed offsets (at-least-once). A group with no committed
offset starts at ``start`` (the earliest or the latest record).

Record values are read as ``format`` (json, jsonl, csv, or avro with ``avro_schema``);
``metadata`` adds the record's topic, partition, offset, key and timestamp as columns.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

from pydantic import Field, model_validator

from quiver.ingest.receiver import BrokerReceiver, Message, ReceiverConfig, TlsOptions
from quiver.pipeline.component import RunContext, source
from quiver.runtime.errors import PermanentError, QuiverError, RetryableError

__all__ = ["KafkaReceiver", "KafkaReceiverConfig"]

KafkaMetadata = Literal["topic", "partition", "offset", "key", "timestamp"]
_TYPES = {
    "topic": "str",
    "partition": "int",
    "offset": "int",
    "key": "str",
    "timestamp": "timestamp(ms, UTC)",
}


class KafkaReceiverConfig(ReceiverConfig):
    """Consume Kafka topics in a consumer group."""

    bootstrap_servers: list[str] = Field(
        default_factory=lambda: ["127.0.0.1:9092"],
        min_length=1,
        description="Brokers to start from (host:port).",
    )
    topics: list[str] = Field(min_length=1, description="Topics to consume.")
    group_id: str = Field(min_length=1, description="Consumer group; offsets are kept under it.")
    start: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a group with no committed offset starts."
    )
    client_id: str = Field("quiver", description="Client name shown in the broker's logs.")
    metadata: list[KafkaMetadata] = Field(
        default_factory=list,
        description="Record facts added as `kafka_<name>` columns: topic, partition, offset, "
        "key, timestamp.",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to talk to the brokers."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (with SASL_PLAINTEXT / SASL_SSL)."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: str | None = Field(None, description="SASL password.")
    tls: TlsOptions | None = Field(None, description="TLS settings (with SSL / SASL_SSL).")
    fetch_records: int = Field(1_000, ge=1, description="Records taken in one poll, at most.")

    @model_validator(mode="after")
    def _sasl_user(self) -> KafkaReceiverConfig:
        if self.security_protocol.startswith("SASL") and self.sasl_username is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_username")
        return self


@source("kafka", config=KafkaReceiverConfig)
class KafkaReceiver(BrokerReceiver):
    """Records of Kafka topics; offsets committed after the run's sinks committed them."""

    def __init__(self, cfg: KafkaReceiverConfig) -> None:
        super().__init__(cfg, f"source kafka {','.join(cfg.topics)}")
        self.cfg = cfg
        self.extra_types = {f"kafka_{m}": _TYPES[m] for m in cfg.metadata}
        self._consumer: Any = None
        self._poller: asyncio.Task[None] | None = None

    def _message(self, record: Any) -> Message:
        facts = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
            "timestamp": record.timestamp,
        }
        fields = {f"kafka_{m}": facts[m] for m in self.cfg.metadata}
        label = f"{record.topic}[{record.partition}]@{record.offset}"
        return Message(record.value or b"", label, fields, record)

    async def _subscribe(self, ctx: RunContext) -> None:
        from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

        cfg = self.cfg
        where = f"{self.where} ({', '.join(cfg.bootstrap_servers)})"
        receiver = self

        class Assigned(ConsumerRebalanceListener):  # type: ignore[misc]
            """Logs the partitions the group gives this run (records flow from then on)."""

            def on_partitions_revoked(self, revoked: Any) -> None:
                del revoked

            def on_partitions_assigned(self, assigned: Any) -> None:
                names = ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in assigned))
                ctx.log(f"{receiver.where}: partitions assigned: {names or 'none'}", "info")

        consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.bootstrap_servers,
            group_id=cfg.group_id,
            client_id=cfg.client_id,
            enable_auto_commit=False,
            auto_offset_reset=cfg.start,
            security_protocol=cfg.security_protocol,
            sasl_mechanism=cfg.sasl_mechanism,
            sasl_plain_username=cfg.sasl_username,
            sasl_plain_password=cfg.sasl_password,
            ssl_context=cfg.tls.context(ctx.base_dir) if cfg.tls is not None else None,
        )
        consumer.subscribe(topics=list(cfg.topics), listener=Assigned())
        try:
            await consumer.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise _kafka_error(exc, where, "joining the consumer group") from exc
        self._consumer = consumer
        self._poller = asyncio.create_task(self._poll(), name=f"{self.where} poll")

    async def _poll(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(
                    timeout_ms=500, max_records=self.cfg.fetch_records
                )
            except Exception as exc:
                self._fail(_kafka_error(exc, self.where, "fetching records"))
                return
            for records in batches.values():
                for record in records:
                    self._deliver(self._message(record))

    async def _unsubscribe(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(BaseException):
                await poller

    async def _acknowledge(self, accepted: list[Message], refused: list[Message]) -> None:
        from aiokafka import TopicPartition

        upto: dict[Any, int] = {}
        for message in [*accepted, *refused]:
            record = message.handle
            tp = TopicPartition(record.topic, record.partition)
            upto[tp] = max(upto.get(tp, 0), record.offset + 1)
        try:
            await self._consumer.commit(upto)
        except Exception as exc:
            raise _kafka_error(exc, self.where, "committing offsets") from exc

    async def _release(self, messages: list[Message]) -> None:
        """Nothing to hand back: offsets not committed are read again by the next run."""
        del messages

    async def _disconnect(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()


def _kafka_error(exc: BaseException, where: str, doing: str) -> QuiverError:
    import aiokafka.errors as errors

    text = str(exc) or type(exc).__name__
    if isinstance(
        exc,
        errors.GroupAuthorizationFailedError
        | errors.TopicAuthorizationFailedError
        | errors.UnsupportedSaslMechanismError
        | errors.SaslAuthenticationFailed
        | errors.AuthenticationFailedError,
    ):
        return PermanentError.one(
            f"Kafka refused {doing}: {text}",
            where,
            "check the SASL user, password and mechanism and the ACLs of the group and topics",
        )
    return RetryableError.one(
        f"Kafka unavailable while {doing}: {type(exc).__name__}: {text}",
        where,
        "check bootstrap_servers and that the brokers are running; the run retries with backoff",
    )
