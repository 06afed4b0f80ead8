"""The ``nats`` sink: rows as NATS messages, on core NATS subjects or into a JetStream stream.

With ``stream`` every message is published through JetStream and the write returns only once
the stream acknowledged (stored) each of them. Each message carries a ``Nats-Msg-Id`` header:
the value of the ``msg_id`` field, or an id made of the run, the batch and the message's place
in it. When the engine retries a failed write the sink publishes again only what JetStream had
not acknowledged, and the stream drops any message whose id it already holds (within its
duplicate window), so a retry stores nothing twice.

Without ``stream`` messages go to core NATS, which stores nothing: the write returns once the
server has received every message (a flush), and only subscribers listening then get them.

``subject`` may name row fields (``orders.{region}``). Bodies are written in ``format`` (json,
jsonl, csv, avro, otlp_json, otlp_proto; see :mod:`quiver.ingest.outbound`), with a
``content-type`` header and, for OTLP, an ``otlp-signal`` header.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pyarrow as pa
from pydantic import Field

from quiver.ingest.nats_client import NatsLogin, nats_error
from quiver.ingest.outbound import MessageEncoder, ProducerFormat, Template
from quiver.ingest.receiver import TlsOptions
from quiver.pipeline.component import Checking, RunContext, sink
from quiver.runtime.errors import (
    ConfigError,
    ErrorDetail,
    PermanentError,
    QuiverError,
    RetryableError,
)

__all__ = ["NatsSink", "NatsSinkConfig"]


class NatsSinkConfig(NatsLogin, ProducerFormat):
    """Publish rows to NATS subjects or a JetStream stream."""

    subject: str = Field(
        min_length=1,
        description="Subject to publish to; may name row fields in braces (`orders.{region}`).",
    )
    stream: str | None = Field(
        None,
        description="JetStream stream that must store the messages (each publish waits for its "
        "acknowledgement); core NATS if none.",
    )
    msg_id: str | None = Field(
        None,
        description="JetStream: field whose value is each message's Nats-Msg-Id (duplicate "
        "detection); default: the run id, batch and message number.",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Headers of every message.")
    in_flight: int = Field(
        256, ge=1, description="JetStream: publishes awaiting their acknowledgement at once."
    )
    timeout_seconds: float = Field(
        10.0, gt=0, description="A publish not acknowledged this long fails the write."
    )
    tls: TlsOptions | None = Field(None, description="TLS settings (off when left out).")


@sink("nats", config=NatsSinkConfig)
class NatsSink(Checking):
    """Rows as NATS messages; JetStream publishes acknowledged and de-duplicated."""

    def __init__(self, cfg: NatsSinkConfig) -> None:
        self.cfg = cfg
        self.where = f"sink nats {cfg.stream + ':' if cfg.stream else ''}{cfg.subject}"
        self.encoder = MessageEncoder(cfg, Template(cfg.subject, "subject"), None, self.where)
        self._nc: Any = None
        self._js: Any = None
        self._ctx: RunContext | None = None
        self._batches = 0
        self._progress: tuple[int, int, set[int]] = (0, 0, set())  # batch id, number, acked
        self.published = 0
        self.duplicates = 0

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        return self.encoder.check(ctx)

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        self.encoder.open(schema, ctx)
        if self.cfg.msg_id is not None:
            if self.cfg.stream is None:
                raise ConfigError.one(
                    "msg_id only applies with `stream` (core NATS does no duplicate detection)",
                    self.where,
                    "add `stream`, or leave msg_id out",
                )
            if self.cfg.msg_id not in schema.names:
                raise ConfigError.one(
                    f"msg_id: the rows have no field {self.cfg.msg_id!r}",
                    self.where,
                    "name a field of the rows",
                )
        self._ctx = ctx
        await self._connect()

    async def _connect(self) -> None:
        import nats

        cfg = self.cfg
        base_dir = self._ctx.base_dir if self._ctx is not None else "."
        try:
            self._nc = await asyncio.wait_for(
                nats.connect(
                    cfg.servers,
                    user=cfg.user,
                    password=cfg.password,
                    token=cfg.token,
                    user_credentials=cfg.creds_file,
                    nkeys_seed=cfg.nkeys_seed,
                    tls=cfg.tls.context(base_dir) if cfg.tls is not None else None,
                    allow_reconnect=False,
                    connect_timeout=cfg.timeout_seconds,
                ),
                cfg.timeout_seconds + 1,
            )
            self._js = self._nc.jetstream(timeout=cfg.timeout_seconds)
            if cfg.stream is not None:
                await self._js.stream_info(cfg.stream)  # a missing stream fails at once
        except Exception as exc:
            await self._close()
            raise nats_error(exc, self.where, "connecting") from exc

    def _ids(self, batch: pa.RecordBatch, number: int, count: int) -> list[str]:
        if self.cfg.msg_id is not None and self.cfg.rows_per_message in (None, 1):
            values = batch.column(self.cfg.msg_id).to_pylist()
            if len(values) == count:
                return [str(v) for v in values]
        run = self._ctx.run_id if self._ctx is not None else "run"
        return [f"{run}-{number}-{i}" for i in range(count)]

    async def write(self, batch: pa.RecordBatch) -> None:
        """Publish the batch; with ``stream``, wait until JetStream stored every message."""
        batch_id = id(batch)
        if self._progress[0] != batch_id:
            self._batches += 1
            self._progress = (batch_id, self._batches, set())
        _, number, acknowledged = self._progress
        messages = self.encoder.encode(batch)
        if self._nc is None or self._nc.is_closed:
            await self._connect()  # after a failure: the engine retries the write
        cfg = self.cfg
        try:
            if cfg.stream is None:
                for m in messages:
                    await self._nc.publish(
                        m.destination, m.body, headers=self._headers(m.headers, None)
                    )
                await self._nc.flush(timeout=cfg.timeout_seconds)
                self.published += len(messages)
                self._progress = (0, 0, set())
                return
            ids = self._ids(batch, number, len(messages))
            window = asyncio.Semaphore(cfg.in_flight)

            async def publish(index: int) -> None:
                m = messages[index]
                async with window:
                    ack = await self._js.publish(
                        m.destination,
                        m.body,
                        timeout=cfg.timeout_seconds,
                        stream=cfg.stream,
                        headers=self._headers(m.headers, ids[index]),
                    )
                acknowledged.add(index)
                self.published += 1
                if ack.duplicate:
                    self.duplicates += 1

            pending = [i for i in range(len(messages)) if i not in acknowledged]
            await asyncio.gather(*(publish(i) for i in pending))
            self._progress = (0, 0, set())  # done: a later batch may reuse this one's id
        except Exception as exc:
            error = _publish_error(exc, self.where)
            if isinstance(error, RetryableError):
                await self._close()  # the next attempt connects anew
            raise error from exc

    def _headers(self, own: list[tuple[str, bytes]], msg_id: str | None) -> dict[str, str]:
        headers = {k: v.decode() for k, v in own}
        headers.update(self.cfg.headers)
        if msg_id is not None:
            headers["Nats-Msg-Id"] = msg_id
        return headers

    async def commit(self) -> None:
        await self._close()

    async def abort(self) -> None:
        await self._close()

    async def _close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):  # it may be the thing that failed
                await nc.close()


def _publish_error(exc: BaseException, where: str) -> QuiverError:
    """A JetStream publish nobody answers: no stream takes the subject (the stream itself
    was found when the sink opened), which no retry cures."""
    import nats.errors
    import nats.js.errors

    if isinstance(exc, nats.errors.NoRespondersError | nats.js.errors.NoStreamResponseError):
        return PermanentError.one(
            "no stream stores this subject (JetStream did not answer the publish)",
            where,
            "add the subject to the stream's subjects (nats stream edit), or publish to core "
            "NATS (no `stream`)",
        )
    return nats_error(exc, where, "publishing")
