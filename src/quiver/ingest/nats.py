"""The ``nats`` receiver: messages of NATS subjects, or of a JetStream stream, as rows.

With ``stream`` the receiver reads a JetStream stream through the durable pull consumer
``durable``: the server remembers how far it got, each message is acknowledged only after the
run's sinks committed it, and what a killed run held is delivered again to the next run with
the same ``durable`` (after ``ack_wait``, or at once for a run that failed: those messages are
negatively acknowledged). While a run holds messages it tells the server it is still working
on them every third of ``ack_wait``, so a long run gets no duplicates and a killed run's
messages come back within ``ack_wait``. Messages refused as bad rows are terminated (never
redelivered).

Without ``stream`` it subscribes to core NATS subjects (``*`` and ``>`` wildcards, an optional
``queue`` group to share the work between receivers). Core NATS keeps nothing for a subscriber:
messages published while no run listens, or held by a run that is killed, are not seen again.

``tenancy: {patterns: [tenants.{tenant}.>]}`` puts the tenant named by the subject in the
``tenant_id`` column (see :mod:`quiver.ingest.tenancy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from pydantic import Field, field_validator, model_validator

from quiver.ingest.nats_client import NatsLogin, nats_error
from quiver.ingest.receiver import BrokerReceiver, Message, ReceiverConfig
from quiver.ingest.tenancy import TENANT_COLUMN, TopicTenancy, TopicTenancyConfig, topic_pattern
from quiver.pipeline.component import RunContext, source
from quiver.runtime.errors import QuiverError, RetryableError

__all__ = ["NatsReceiver", "NatsReceiverConfig"]

_SUBJECT_SYNTAX = (".", "*", ">")  # token separator, one token, the tokens left


class NatsReceiverConfig(NatsLogin, ReceiverConfig):
    """Subscribe to NATS subjects or consume a JetStream stream."""

    subject: str = Field(min_length=1, description="Subject (* and > wildcards allowed).")
    stream: str | None = Field(
        None, description="JetStream stream to consume (durable, acknowledged); core NATS if none."
    )
    durable: str | None = Field(
        None, description="JetStream: name of the durable consumer (needed with `stream`)."
    )
    ack_wait: float = Field(
        60.0,
        ge=1,
        description="JetStream: seconds after which the server delivers again a message that "
        "a receiver that went away had not acknowledged.",
    )
    fetch_messages: int = Field(
        256, ge=1, description="JetStream: messages asked for in one pull request."
    )
    fetch_wait: float = Field(
        1.0,
        ge=0.05,
        le=60,
        description="JetStream: seconds a pull request waits for messages before the next one "
        "is sent; a pull request is never cut short, so a run takes up to this long to stop.",
    )
    queue: str | None = Field(None, description="Core NATS: queue group to join.")
    reconnect_attempts: int = Field(
        60,
        ge=0,
        description="Attempts (a second apart) to reconnect to a lost server before the run "
        "fails; JetStream delivers again what it held.",
    )
    subject_field: str | None = Field(
        "nats_subject", description="Column holding each message's subject (null: none)."
    )

    tenancy: TopicTenancyConfig | None = Field(
        None,
        description="Take each message's tenant (the tenant_id column) from its subject, e.g. "
        "{patterns: [tenants.{tenant}.>]}.",
    )

    @field_validator("tenancy")
    @classmethod
    def _tenant_patterns(cls, tenancy: TopicTenancyConfig | None) -> TopicTenancyConfig | None:
        for pattern in tenancy.patterns if tenancy is not None else ():
            topic_pattern(pattern, *_SUBJECT_SYNTAX)
        return tenancy

    @model_validator(mode="after")
    def _durable_with_stream(self) -> NatsReceiverConfig:
        if self.stream is not None and not self.durable:
            raise ValueError(
                "`stream` needs `durable`: the name under which the server remembers what "
                "this receiver has acknowledged"
            )
        if self.stream is None and self.durable is not None:
            raise ValueError("`durable` needs `stream` (core NATS keeps nothing for a consumer)")
        return self


@source("nats", config=NatsReceiverConfig)
class NatsReceiver(BrokerReceiver):
    """Messages of NATS subjects or a JetStream stream; JetStream messages are acknowledged
    after the run's sinks committed them."""

    client_loggers = ("nats",)

    def __init__(self, cfg: NatsReceiverConfig) -> None:
        super().__init__(cfg, f"source nats {cfg.stream or cfg.subject}")
        self.cfg = cfg
        types = {cfg.subject_field: "str"} if cfg.subject_field else {}
        if cfg.tenancy is not None:
            types[TENANT_COLUMN] = "str"
            self.topic_tenancy = TopicTenancy(cfg.tenancy, *_SUBJECT_SYNTAX)
        self.extra_types = types
        self._nc: Any = None
        self._sub: Any = None
        self._puller: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._pulling = False
        self._closing = asyncio.Event()  # set when this receiver closes the connection

    def _message(self, msg: Any) -> Message:
        fields = {self.cfg.subject_field: msg.subject} if self.cfg.subject_field else {}
        label = msg.subject
        if self.cfg.stream is not None:
            label = f"{msg.subject}#{msg.metadata.sequence.stream}"
        return Message(msg.data, label, fields, msg, self._tenant(msg.subject, fields))

    async def _subscribe(self, ctx: RunContext) -> None:
        import nats
        import nats.errors
        from nats.js.api import AckPolicy, ConsumerConfig

        cfg = self.cfg
        where = f"{self.where} ({', '.join(cfg.servers)})"
        closing = self._closing = asyncio.Event()

        async def on_closed() -> None:
            if not closing.is_set():
                self._fail(
                    RetryableError.one(
                        f"the NATS connection was lost ({cfg.reconnect_attempts} attempts to "
                        "reconnect failed)",
                        where,
                        "check that the server is running and reachable",
                    )
                )

        refused: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()
        unreachable: set[str] = set()  # servers that could not be reached while connecting

        async def on_error(exc: Exception) -> None:
            # the reconnect attempts go on (on_closed reports the end of them); a refused
            # login, an untrusted server certificate or, while connecting, servers that all
            # cannot be reached would be retried until the timeout: fail at once (the engine
            # retries an unreachable server with backoff)
            denied = "authorization violation" in str(exc).lower() or isinstance(
                exc, nats.errors.AuthorizationError | ssl.SSLCertVerificationError
            )
            if not denied and isinstance(exc, OSError) and self._nc is None:
                unreachable.add(str(exc))
                denied = len(unreachable) >= len(cfg.servers)
            if denied and not refused.done():
                refused.set_result(exc)

        try:
            connecting = asyncio.ensure_future(
                nats.connect(
                    cfg.servers,
                    user=cfg.user,
                    password=cfg.password,
                    token=cfg.token,
                    user_credentials=cfg.creds_file,
                    nkeys_seed=cfg.nkeys_seed,
                    tls=cfg.tls.context(ctx.base_dir) if cfg.tls is not None else None,
                    max_reconnect_attempts=cfg.reconnect_attempts,
                    reconnect_time_wait=1,
                    connect_timeout=5,
                    closed_cb=on_closed,
                    error_cb=on_error,
                )
            )
            either: set[asyncio.Future[Any]] = {connecting, refused}
            await asyncio.wait(either, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if not connecting.done():
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting
                if refused.done():
                    if isinstance(refused.result(), ssl.SSLCertVerificationError | OSError):
                        raise refused.result()
                    raise nats.errors.AuthorizationError() from refused.result()
                raise TimeoutError("no server answered within 10 s")
            self._nc = connecting.result()
        except QuiverError:
            raise
        except Exception as exc:
            raise nats_error(exc, where, "connecting") from exc
        try:
            if cfg.stream is None:

                async def on_message(msg: Any) -> None:
                    self._deliver(self._message(msg))

                self._sub = await self._nc.subscribe(cfg.subject, cfg.queue or "", on_message)
                return
            js = self._nc.jetstream()
            self._sub = await js.pull_subscribe(
                cfg.subject,
                durable=cfg.durable,
                stream=cfg.stream,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=cfg.ack_wait,
                    max_ack_pending=-1,
                    filter_subject=cfg.subject,
                ),
            )
        except Exception as exc:
            raise nats_error(exc, where, f"subscribing to {cfg.subject!r}") from exc
        self._pulling = True
        self._puller = asyncio.create_task(self._pull(), name=f"{self.where} pull")
        self._keeper = asyncio.create_task(self._keep(), name=f"{self.where} in progress")

    async def _pull(self) -> None:
        """Fetch messages until stopped. A fetch is never cancelled half-way: a pull request
        the server still holds would take messages nobody reads (until ``ack_wait``)."""
        import nats.errors

        while self._pulling:
            if not self._flowing.is_set():  # a tenant over its rate limit: fetch nothing more
                await asyncio.sleep(0.05)
                continue
            try:
                batch = await self._sub.fetch(self.cfg.fetch_messages, timeout=self.cfg.fetch_wait)
            except nats.errors.TimeoutError:
                continue
            except Exception:  # a reconnect in progress: try again
                await asyncio.sleep(0.2)
                continue
            for msg in batch:
                self._deliver(self._message(msg))

    async def _keep(self) -> None:
        """Tell the server the messages held are still being worked on (resets ack_wait)."""
        while True:
            await asyncio.sleep(self.cfg.ack_wait / 3)
            for message in list(self._held):
                with contextlib.suppress(Exception):
                    await message.handle.in_progress()

    async def _unsubscribe(self) -> None:
        puller, self._puller = self._puller, None
        if puller is not None:
            self._pulling = False
            await puller
            # what reached the subscription after the last fetch; then let that last pull
            # request expire, so no message the receiver hands back goes to it
            with contextlib.suppress(Exception):
                for msg in await self._sub.fetch(self.cfg.fetch_messages, timeout=0.1):
                    self._deliver(self._message(msg))
            await asyncio.sleep(0.2)
        if self._sub is not None and self.cfg.stream is None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _acknowledge(self, accepted: list[Message], refused: list[Message]) -> None:
        if self.cfg.stream is None:
            return
        try:
            for message in refused:
                await message.handle.term()
            for message in accepted[:-1]:
                await message.handle.ack()
            if accepted:
                # the server answers this one once its consumer processed it, and a consumer
                # processes acknowledgements in order: every one before it is settled too
                await accepted[-1].handle.ack_sync(timeout=30)
            await self._nc.flush()
        except Exception as exc:
            raise nats_error(exc, self.where, "acknowledging messages") from exc

    async def _release(self, messages: list[Message]) -> None:
        if self.cfg.stream is None or self._nc is None:
            return
        for message in messages:
            await message.handle.nak()
        await self._nc.flush()

    async def _disconnect(self) -> None:
        self._closing.set()
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(BaseException):
                await keeper
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
