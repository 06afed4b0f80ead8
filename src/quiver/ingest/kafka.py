"""The ``kafka`` receiver: records of Kafka topics, as rows, in a consumer group.

The receiver joins the consumer group ``group_id`` and reads its share of the partitions of
``topics``. Offsets are committed to the group only after the run's sinks committed the rows,
never automatically: a run that fails or is killed commits nothing, and the next run of the
group starts again from the last committed offsets (at-least-once). A group with no committed
offset starts at ``start`` (the earliest or the latest record).

Record values are read as ``format`` (json, jsonl, csv, or avro with ``avro_schema``), or
as OTLP export requests (``otlp_proto``, ``otlp_json``) converted to rows of the telemetry
layout, as the OTLP receivers convert them: the ``otlp-signal`` header (written by the
``kafka`` sink) or ``signal`` says whether a record holds traces, metrics or logs.
``metadata`` adds the record's topic, partition, offset, key and timestamp as columns.

``tenancy`` puts each record's tenant in the ``tenant_id`` column: from its topic
(``patterns: [tenants.{tenant}.spans]``: levels split by ``.``, ``*`` one level, ``>`` the
levels left), from a record header (``header``, ``X-Scope-OrgID`` by default) or, for the OTLP
formats, from the ``tenant.id`` resource attribute of each row (``resource_attribute`` in
``sources``), first match in ``sources`` order, then ``default``; a record without one is a
rejected row. With ``limits`` a tenant over its rate limit is delayed: the receiver stops
fetching until its buckets allow the batch (see :mod:`quiver.ingest.tenancy`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from quiver.ingest.arrow_layout import SIGNALS, Signal
from quiver.ingest.kafka_client import KafkaConnection, kafka_error
from quiver.ingest.receiver import BrokerReceiver, Message, ReceiverConfig
from quiver.ingest.tenancy import (
    TENANT_COLUMN,
    MessageTenancyConfig,
    TopicTenancy,
    rows_by_tenant,
    topic_pattern,
)
from quiver.pipeline.component import RunContext, source
from quiver.pipeline.messages import refusal

__all__ = ["KafkaReceiver", "KafkaReceiverConfig"]

KafkaFormat = Literal["json", "jsonl", "csv", "avro", "otlp_proto", "otlp_json"]
KafkaMetadata = Literal["topic", "partition", "offset", "key", "timestamp"]
_TYPES = {
    "topic": "str",
    "partition": "int",
    "offset": "int",
    "key": "str",
    "timestamp": "timestamp(ms, UTC)",
}

_TOPIC_SYNTAX = (".", "*", ">")  # level separator, one level, the levels left
_OTLP_FORMATS = ("otlp_proto", "otlp_json")

_ARROW_TYPES = {
    "topic": pa.string(),
    "partition": pa.int64(),
    "offset": pa.int64(),
    "key": pa.string(),
    "timestamp": pa.timestamp("ms", "UTC"),
}


class KafkaReceiverConfig(KafkaConnection, ReceiverConfig):
    """Consume Kafka topics in a consumer group."""

    topics: list[str] = Field(min_length=1, description="Topics to consume.")
    group_id: str = Field(min_length=1, description="Consumer group; offsets are kept under it.")
    start: Literal["earliest", "latest"] = Field(
        "earliest", description="Where a group with no committed offset starts."
    )
    metadata: list[KafkaMetadata] = Field(
        default_factory=list,
        description="Record facts added as `kafka_<name>` columns: topic, partition, offset, "
        "key, timestamp.",
    )
    fetch_records: int = Field(1_000, ge=1, description="Records taken in one poll, at most.")
    session_timeout: float = Field(
        10.0,
        ge=1,
        le=1_800,
        description="Seconds without a heartbeat after which the group drops a member and "
        "gives its partitions to the others (heartbeats go every third of it). A broker that "
        "does not act on a member's leaving waits this long before a new run of the group "
        "gets the partitions; it must lie within the broker's "
        "group.min/max.session.timeout.ms.",
    )
    format: KafkaFormat = Field(  # type: ignore[assignment]
        "json",
        description="Record value format: json, jsonl, csv, avro, otlp_proto or otlp_json "
        "(OTLP export requests, as rows of the telemetry layout).",
    )
    signal: Signal = Field(
        "traces",
        description="OTLP formats: the signal (traces, metrics, logs) of records without an "
        "`otlp-signal` header.",
    )
    tenancy: MessageTenancyConfig | None = Field(
        None,
        description="Take each record's tenant (the tenant_id column) from its topic, a header "
        "or (OTLP formats) the tenant.id resource attribute, e.g. "
        "{patterns: [tenants.{tenant}.spans]}.",
    )

    @model_validator(mode="after")
    def _tenancy(self) -> KafkaReceiverConfig:
        if self.tenancy is None:
            return self
        for pattern in self.tenancy.patterns:
            topic_pattern(pattern, *_TOPIC_SYNTAX)
        if "resource_attribute" in self.tenancy.sources and self.format not in _OTLP_FORMATS:
            raise ValueError(
                f"tenancy.sources: resource_attribute needs an OTLP format (otlp_proto, "
                f"otlp_json), not {self.format}"
            )
        return self


@source("kafka", config=KafkaReceiverConfig)
class KafkaReceiver(BrokerReceiver):
    """Records of Kafka topics; offsets committed after the run's sinks committed them."""

    client_loggers = ("aiokafka",)

    def __init__(self, cfg: KafkaReceiverConfig) -> None:
        super().__init__(cfg, f"source kafka {','.join(cfg.topics)}")
        self.cfg = cfg
        self.extra_types = {f"kafka_{m}": _TYPES[m] for m in cfg.metadata}
        if cfg.tenancy is not None:
            self.extra_types = {**self.extra_types, TENANT_COLUMN: "str"}
            self.topic_tenancy = TopicTenancy(cfg.tenancy, *_TOPIC_SYNTAX)
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
        refused = None
        if self.topic_tenancy is not None and self.cfg.format not in _OTLP_FORMATS:
            # OTLP rows get theirs once converted
            refused = self._tenant(record.topic, fields, _headers(record))
        return Message(record.value or b"", label, fields, record, refused)

    def _to_batch(self, messages: list[Message], ctx: RunContext) -> pa.RecordBatch | None:
        if self.cfg.format not in ("otlp_proto", "otlp_json"):
            return super()._to_batch(messages, ctx)
        return self._telemetry_batch(messages, ctx)

    def _telemetry_batch(self, messages: list[Message], ctx: RunContext) -> pa.RecordBatch | None:
        """OTLP export requests -> rows of the telemetry layout, with the metadata columns.

        A record that is no export request is refused (a rejected row); items of a request
        that the OTLP receivers would reject (bad ids ...) are left out and reported."""
        from quiver.ingest.otlp.convert import convert_request
        from quiver.ingest.otlp.decode import BadRequestError, decode_body

        batches: list[pa.RecordBatch] = []
        json = self.cfg.format == "otlp_json"
        for message in messages:
            if message.refusal is not None:
                self._refuse(message, message.refusal, ctx)
                continue
            signal = self._signal_of(message)
            try:
                if signal is None:
                    raise BadRequestError(
                        "the otlp-signal header is not one of traces, metrics, logs"
                    )
                conversion = convert_request(signal, decode_body(signal, message.body, json))
            except BadRequestError as exc:
                self._refuse(message, f"unreadable {self.cfg.format} record: {exc.message}", ctx)
                continue
            batch = conversion.batch
            if batch is not None and self.topic_tenancy is not None:
                record = message.handle
                batch, refused = self.topic_tenancy.rows(batch, record.topic, _headers(record))
                if batch is None:
                    self._refuse(message, refused or "no tenant", ctx)
                    continue
                message.tenants = tuple(rows_by_tenant(batch))
            self._held.append(message)
            if conversion.rejected:
                reason = f"{conversion.error_message} (the rest of the request was kept)"
                ctx.log(f"{self.where}: record {message.label}: {reason}", "warning")
                self._errors.append(refusal(message.label, b"", reason))
            if batch is None:
                continue
            for name, value in message.fields.items():
                kind = _ARROW_TYPES[name.removeprefix("kafka_")]
                batch = batch.append_column(name, pa.array([value] * batch.num_rows, kind))
            batches.append(batch)
        if not batches:
            return None
        if len(batches) == 1:
            return batches[0]
        return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]

    def _signal_of(self, message: Message) -> Signal | None:
        for key, value in message.handle.headers or ():
            if key == "otlp-signal":
                text = value.decode("utf-8", "replace") if value is not None else ""
                return next((s for s in SIGNALS if s == text), None)
        return self.cfg.signal

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
            group_id=cfg.group_id,
            enable_auto_commit=False,
            auto_offset_reset=cfg.start,
            session_timeout_ms=round(cfg.session_timeout * 1000),
            heartbeat_interval_ms=round(cfg.session_timeout * 1000 / 3),
            **cfg.client_options(ctx.base_dir),
        )
        consumer.subscribe(topics=list(cfg.topics), listener=Assigned())
        try:
            await consumer.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await consumer.stop()
            raise kafka_error(exc, where, "joining the consumer group") from exc
        self._consumer = consumer
        self._poller = asyncio.create_task(self._poll(), name=f"{self.where} poll")

    async def _poll(self) -> None:
        while True:
            await self._flowing.wait()  # a tenant over its rate limit: fetch nothing more
            try:
                batches = await self._consumer.getmany(
                    timeout_ms=500, max_records=self.cfg.fetch_records
                )
            except Exception as exc:
                self._fail(kafka_error(exc, self.where, "fetching records"))
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
            raise kafka_error(exc, self.where, "committing offsets") from exc

    async def _release(self, messages: list[Message]) -> None:
        """Nothing to hand back: offsets not committed are read again by the next run."""
        del messages

    async def _disconnect(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()


def _headers(record: Any) -> dict[str, str]:
    """The headers of a record, by lowercase name (values as text)."""
    return {
        key.lower(): value.decode("utf-8", "replace")
        for key, value in record.headers or ()
        if value is not None
    }
