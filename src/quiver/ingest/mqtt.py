"""The ``mqtt`` receiver: messages of MQTT topics (QoS 0, 1 or 2) as rows.

The receiver subscribes to ``topics`` (wildcards ``+`` and ``#`` allowed) with MQTT 5 and a
persistent session named by ``client_id``: messages published while it is away are kept by the
broker for that session (QoS 1 and 2). Each QoS 1/2 message is acknowledged (PUBACK / PUBCOMP)
only after the run's sinks committed it, and the commit returns once the broker has processed
those acknowledgements: a run started again at once with the same ``client_id`` is sent none of
them again. A run that is killed before that acknowledges nothing, and the broker sends those
messages again when the same ``client_id`` comes back. QoS 0
messages are never sent again by a broker: what a killed run held of them is lost. Neither
are QoS 2 messages a killed run held: in the QoS 2 handshake the receiver takes over a message
before it can acknowledge it (PUBREC), so the broker only finishes the handshake. Subscribe
with ``qos: 1`` (QoS 2 publications are then delivered as QoS 1) when a killed run must lose
nothing.

``topic_field`` adds the topic of each message as a column, and ``topic_fields`` routes parts
of the topic into columns of their own: the pattern ``sensors/{site}/{device}/#`` turns a
message on ``sensors/paris/t1/temp`` into the fields ``site: paris`` and ``device: t1``.
``tenancy: {patterns: [tenants/{tenant}/#]}`` puts the tenant named by the topic in the
``tenant_id`` column (see :mod:`quiver.ingest.tenancy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import Any, Literal

from pydantic import Field, field_validator

from quiver.ingest.receiver import BrokerReceiver, Message, ReceiverConfig
from quiver.ingest.tenancy import TENANT_COLUMN, TopicTenancy, TopicTenancyConfig, topic_pattern
from quiver.pipeline.component import RunContext, source
from quiver.runtime.errors import PermanentError, RetryableError

__all__ = ["MqttReceiver", "MqttReceiverConfig"]

_NAME = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_TOPIC_SYNTAX = ("/", "+", "#")  # level separator, one level, the levels left


class MqttReceiverConfig(ReceiverConfig):
    """Subscribe to MQTT topics."""

    host: str = Field("127.0.0.1", description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (8883 is usual for TLS).")
    topics: list[str] = Field(min_length=1, description="Topic filters (+ and # wildcards).")
    qos: Literal[0, 1, 2] = Field(1, description="Quality of service of the subscriptions.")
    client_id: str | None = Field(
        None,
        description="Session name: with it the broker keeps messages for the receiver while it "
        "is away and resends the ones it had not acknowledged. Default: a new session per run.",
    )
    session_expiry: int = Field(
        86_400, ge=0, description="Seconds the broker keeps the session after a disconnect."
    )
    username: str | None = Field(None, description="User name.")
    password: str | None = Field(None, description="Password.")
    keepalive: int = Field(60, ge=5, description="Seconds between keep-alive pings.")
    topic_field: str | None = Field(
        "mqtt_topic", description="Column holding each message's topic (null: none)."
    )
    topic_fields: list[str] = Field(
        default_factory=list,
        description="Topic patterns whose {name} levels become columns, e.g. "
        "sensors/{site}/{device}/#; the first matching pattern applies.",
    )

    tenancy: TopicTenancyConfig | None = Field(
        None,
        description="Take each message's tenant (the tenant_id column) from its topic, e.g. "
        "{patterns: [tenants/{tenant}/#]}.",
    )

    @field_validator("tenancy")
    @classmethod
    def _tenant_patterns(cls, tenancy: TopicTenancyConfig | None) -> TopicTenancyConfig | None:
        for pattern in tenancy.patterns if tenancy is not None else ():
            topic_pattern(pattern, *_TOPIC_SYNTAX)
        return tenancy

    @field_validator("topic_fields")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            for level in pattern.split("/"):
                if "{" in level and not _NAME.match(level):
                    raise ValueError(
                        f"level {level!r} of {pattern!r}: a field takes a whole level, as {{name}}"
                    )
        return patterns


def _route(pattern: str) -> tuple[re.Pattern[str], list[str]]:
    """A topic pattern as a regular expression and the names of its fields."""
    names: list[str] = []
    parts = []
    for level in pattern.split("/"):
        m = _NAME.match(level)
        if m:
            names.append(m.group(1))
            parts.append("([^/]*)")
        elif level == "+":
            parts.append("[^/]*")
        elif level == "#":
            parts.append(".*")
        else:
            parts.append(re.escape(level))
    text = "/".join(parts)
    text = text.replace("/.*", "(?:/.*)?") if text.endswith("/.*") else text
    return re.compile(f"^{text}$"), names


def _resolve(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(None)


@source("mqtt", config=MqttReceiverConfig)
class MqttReceiver(BrokerReceiver):
    """Messages of MQTT topics, acknowledged only after the run's sinks committed them."""

    client_loggers = ("paho",)

    def __init__(self, cfg: MqttReceiverConfig) -> None:
        super().__init__(cfg, f"source mqtt {','.join(cfg.topics)}")
        self.cfg = cfg
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._barriers = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}  # UNSUBACKs awaited, by mid
        self._answered: set[int] = set()  # UNSUBACKs received, by mid
        self._routes = [_route(p) for p in cfg.topic_fields]
        types = {n: "str" for _, names in self._routes for n in names}
        if cfg.topic_field:
            types[cfg.topic_field] = "str"
        if cfg.tenancy is not None:
            types[TENANT_COLUMN] = "str"
            self.topic_tenancy = TopicTenancy(cfg.tenancy, *_TOPIC_SYNTAX)
        self.extra_types = types

    def _fields(self, topic: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.cfg.topic_field:
            fields[self.cfg.topic_field] = topic
        for _, names in self._routes:
            fields.update(dict.fromkeys(names))
        for regex, names in self._routes:
            m = regex.match(topic)
            if m:
                fields.update(zip(names, m.groups(), strict=True))
                break
        return fields

    async def _subscribe(self, ctx: RunContext) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        cfg = self.cfg
        loop = self._loop = asyncio.get_running_loop()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id or f"quiver-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        client.reconnect_delay_set(1, 30)  # a lost connection: tried again 1 s to 30 s apart
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls is not None:
            client.tls_set_context(cfg.tls.context(ctx.base_dir))
        connected: asyncio.Future[Any] = loop.create_future()
        subscribed: asyncio.Future[Any] = loop.create_future()
        where = f"{self.where} ({cfg.host}:{cfg.port})"

        def settle(fut: asyncio.Future[Any], value: Any) -> None:
            if not fut.done():
                fut.set_result(value)

        connects = 0  # CONNACKs received: the later ones answer paho's reconnects

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            nonlocal connects
            connects += 1
            if connects == 1:
                loop.call_soon_threadsafe(settle, connected, reason)
                return
            if reason.is_failure:
                text = f"the MQTT broker refused the reconnection: {reason}; trying again"
            elif flags.session_present:
                text = "reconnected to the MQTT broker, which kept the session"
            else:  # a new session: it has no subscription
                c.subscribe([(t, int(cfg.qos)) for t in cfg.topics])
                text = (
                    "reconnected to the MQTT broker, which had lost the session: subscribed "
                    "again (QoS 1/2 messages held for the old session are gone)"
                )
            loop.call_soon_threadsafe(ctx.log, f"{where}: {text}", "warning")

        def on_disconnect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if not connects:  # the first connection failed: the run reports that
                return
            text = f"the connection to the MQTT broker was lost ({reason}); reconnecting"
            loop.call_soon_threadsafe(ctx.log, f"{where}: {text}", "warning")

        def on_subscribe(c: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
            loop.call_soon_threadsafe(settle, subscribed, reasons)

        def on_unsubscribe(c: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
            def answered() -> None:
                self._answered.add(mid)
                self._answer(mid)

            loop.call_soon_threadsafe(answered)

        def on_message(c: Any, userdata: Any, msg: Any) -> None:
            fields = self._fields(msg.topic)
            message = Message(
                bytes(msg.payload),
                f"{msg.topic}#{msg.mid}" if msg.qos else msg.topic,
                fields,
                (msg.mid, msg.qos),
                self._tenant(msg.topic, fields),
            )
            loop.call_soon_threadsafe(self._deliver, message)

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.on_unsubscribe = on_unsubscribe
        client.on_disconnect = on_disconnect
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry if cfg.client_id else 0
        props.ReceiveMaximum = 65_535
        try:
            await asyncio.to_thread(
                client.connect,
                cfg.host,
                cfg.port,
                cfg.keepalive,
                clean_start=cfg.client_id is None,
                properties=props,
            )
        except (OSError, ValueError) as exc:
            raise RetryableError.one(
                f"cannot reach the MQTT broker: {exc}",
                where,
                "check host and port, and that the broker is running",
            ) from exc
        self._client = client
        client.loop_start()
        reason = await asyncio.wait_for(connected, 30)
        if reason.is_failure:
            raise PermanentError.one(
                f"the MQTT broker refused the connection: {reason}",
                where,
                "check username, password and client_id",
            )
        client.subscribe([(t, int(cfg.qos)) for t in cfg.topics])
        reasons = await asyncio.wait_for(subscribed, 30)
        refused = [f"{t}: {r}" for t, r in zip(cfg.topics, reasons, strict=False) if r.is_failure]
        if refused:
            raise PermanentError.one(
                f"the MQTT broker refused the subscription(s) {'; '.join(refused)}",
                where,
                "check the topic filters and the user's permissions",
            )

    async def _unsubscribe(self) -> None:
        client = self._client
        if client is not None:
            # no new deliveries; unacknowledged ones come again in the next session
            client.on_message = None

    async def _acknowledge(self, accepted: list[Message], refused: list[Message]) -> None:
        client = self._client
        if client is None:
            return
        acked = 0
        for message in [*accepted, *refused]:
            mid, qos = message.handle
            if qos:
                client.ack(mid, qos)
                acked += 1
        if acked:
            await self._settled(client)

    async def _settled(self, client: Any) -> None:
        """Wait until the broker has processed the acknowledgements queued so far.

        Written to the socket is not enough: MQTT does not answer a PUBACK or PUBCOMP, and a
        broker reads a connection's packets a few at a time. When the same client id connects
        again (a restart right after a clean stop), the broker takes the session over and drops
        what it had not read of the old connection: acknowledged messages would be sent again.
        A broker handles one connection's packets in order and must answer an UNSUBSCRIBE, so
        the answer to one for a filter never subscribed (it changes nothing) proves that every
        acknowledgement before it was processed."""
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Any] = loop.create_future()
        self._barriers += 1
        rc, mid = client.unsubscribe(f"quiver/settled/{uuid.uuid4().hex}/{self._barriers}")
        if rc != 0 or mid is None:
            raise RetryableError.one(
                f"the MQTT connection was lost before the acknowledgements were sent (rc {rc})",
                self.where,
                "the messages are sent again to the next session",
            )
        self._waiting[mid] = answered
        self._answer(mid)
        try:
            await asyncio.wait_for(answered, 30)
        except TimeoutError as exc:
            raise RetryableError.one(
                "the MQTT broker did not confirm the acknowledgements within 30 s",
                self.where,
                "the messages may be sent again to the next session",
            ) from exc
        finally:
            self._waiting.pop(mid, None)

    def _answer(self, mid: int) -> None:
        """Resolve the wait for UNSUBACK ``mid`` if it came (called in the event loop)."""
        future = self._waiting.get(mid)
        if future is not None and mid in self._answered:
            self._answered.discard(mid)
            _resolve(future)

    async def _release(self, messages: list[Message]) -> None:
        """MQTT has no negative acknowledgement: unacknowledged messages of a persistent
        session are sent again when it reconnects."""
        del messages

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        loop = asyncio.get_running_loop()
        gone: asyncio.Future[Any] = loop.create_future()

        def on_disconnect(*args: Any) -> None:
            loop.call_soon_threadsafe(_resolve, gone)

        # the loop thread writes the queued acknowledgements, then the DISCONNECT
        client.on_disconnect = on_disconnect
        client.disconnect()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(gone, 10)
        await asyncio.to_thread(client.loop_stop)
