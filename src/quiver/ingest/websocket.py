"""The ``websocket`` receiver: a WebSocket server taking JSON lines from its clients, as rows.

Clients connect to ``ws://host:port/path`` (``wss://`` with ``tls``) and send text or binary
messages, each holding one or more JSON objects, one per line (``format: jsonl``, the
default; ``json``, ``csv`` and ``avro`` bodies work too). With ``api_keys`` a client must name
one in an ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` header, or the handshake is
refused with HTTP 401.

The server counts each client's messages from 1. Once the run's sinks committed them it sends
the client ``{"acked": N}``: every message up to the N-th is held by the sinks. A message
refused as bad rows is named in ``{"rejected": [n, ...]}`` (sent before the ack that covers
it). Messages a client has no ack for when its connection ends (a failed or killed run) are
the client's to send again.

With ``tenancy`` every connection belongs to a tenant (the ``tenant_id`` column of its rows),
as the OTLP/HTTP receiver decides it: the tenant its API key is bound to
(``api_keys: [{key: ..., tenant: acme}]``) wins, and a header (``X-Scope-OrgID``) or query
parameter (``?tenant=``) naming another is refused with HTTP 403 (``on_conflict: refuse``);
otherwise the header or the query parameter (``sources`` order), then ``default``. A
connection with no tenant is refused with 401, an invalid tenant id with 400 and a tenant not
in ``tenants`` with 403. With ``limits`` a tenant over its rate limit is delayed: its
messages are acknowledged later (a client waiting for acks sends more slowly).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections import defaultdict
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import Field, model_validator

from quiver.ingest.access import ApiKey
from quiver.ingest.listener import listen_error, problem_of
from quiver.ingest.receiver import BodyFormat, BrokerReceiver, Message, ReceiverConfig, TlsOptions
from quiver.ingest.tenancy import TENANT_COLUMN, ConnectionTenancyConfig, TenantPacer
from quiver.ingest.tenant_id import TENANT_HINT, is_tenant_id
from quiver.pipeline.component import RunContext, source
from quiver.runtime.errors import ConfigError

__all__ = ["WebSocketReceiver", "WebSocketReceiverConfig"]


class WebSocketReceiverConfig(ReceiverConfig):
    """Serve a WebSocket endpoint for JSON lines."""

    format: BodyFormat = Field("jsonl", description="Message body format: jsonl, json, csv, avro.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8765, ge=0, le=65535, description="Port to listen on.")
    path: str = Field("/", description="Path clients connect to; other paths get HTTP 404.")
    api_keys: list[str | ApiKey] = Field(
        default_factory=list,
        description="Keys a client must send (Authorization: Bearer / X-API-Key); none: open. "
        "`{key, tenant}` binds a key to a tenant (with `tenancy`).",
    )
    tls: TlsOptions | None = Field(
        None, description="Serve wss://: cert_file and key_file are the server's certificate."
    )
    max_message_bytes: int = Field(
        1 << 20,
        ge=1,
        description="Largest message accepted; a larger one closes the client's connection "
        "(close code 1009, logged).",
    )
    client_field: str | None = Field(
        None, description="Column holding the client's address (host:port); none when null."
    )
    tenancy: ConnectionTenancyConfig | None = Field(
        None,
        description="Give each connection a tenant (the tenant_id column): its key's, the "
        "X-Scope-OrgID header or the tenant query parameter.",
    )

    @model_validator(mode="after")
    def _key_tenants(self) -> WebSocketReceiverConfig:
        bound = sorted({k.tenant for k in self.api_keys if isinstance(k, ApiKey) and k.tenant})
        if bound and self.tenancy is None:
            raise ValueError(
                "api_keys bound to tenants need `tenancy` (e.g. tenancy: {}) to give rows a tenant"
            )
        allowed = self.tenancy.tenants if self.tenancy is not None else None
        for tenant in bound:
            if allowed is not None and tenant not in allowed:
                raise ValueError(f"a key of api_keys is bound to {tenant!r}, not one of tenants")
        return self

    def keys(self) -> list[tuple[str, str | None]]:
        """``(key, tenant)`` of every API key (tenant None: not bound to one)."""
        return [(k, None) if isinstance(k, str) else (k.key, k.tenant) for k in self.api_keys]


@source("websocket", config=WebSocketReceiverConfig)
class WebSocketReceiver(BrokerReceiver):
    """JSON lines from WebSocket clients, acknowledged to them once the sinks committed them."""

    client_loggers = ("websockets",)

    def __init__(self, cfg: WebSocketReceiverConfig) -> None:
        super().__init__(cfg, f"source websocket {cfg.host}:{cfg.port}{cfg.path}")
        self.cfg = cfg
        self.extra_types = {cfg.client_field: "str"} if cfg.client_field else {}
        if cfg.tenancy is not None:
            self.extra_types = {**self.extra_types, TENANT_COLUMN: "str"}
            self.pacer = TenantPacer(cfg.tenancy.limits, cfg.tenancy.overrides)
        self._tenants: dict[Any, str] = {}  # the tenant of each connection let in
        self._server: Any = None
        self._log: Callable[[str, str], None] = lambda message, level: None
        self.port = cfg.port  # the port listened on (the one chosen when `port` is 0)

    async def _subscribe(self, ctx: RunContext) -> None:
        from websockets.asyncio.server import serve

        cfg = self.cfg
        self._log = ctx.log
        if cfg.tls is not None and not cfg.tls.cert_file:
            raise ConfigError.one(
                "tls needs cert_file (and key_file): the server's certificate",
                f"{self.where}: tls",
                "set tls.cert_file and tls.key_file",
            )
        try:
            self._server = await serve(
                self._serve,
                cfg.host,
                cfg.port,
                process_request=self._check,
                max_size=cfg.max_message_bytes,
                ssl=cfg.tls.context(ctx.base_dir, server=True) if cfg.tls is not None else None,
            )
        except OSError as exc:
            problem = problem_of(exc, cfg.host, cfg.port)
            raise listen_error("WebSocket", f"{cfg.host}:{cfg.port}", problem, "port") from exc
        self.port = self._server.sockets[0].getsockname()[1]
        scheme = "wss" if cfg.tls is not None else "ws"
        url = f"{scheme}://{cfg.host}:{self.port}{cfg.path}"
        ctx.log(f"WebSocket receiver listening on {url}", "notice")

    def _check(self, connection: Any, request: Any) -> Any:
        cfg = self.cfg
        path, _, query = request.path.partition("?")
        if path != cfg.path:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no endpoint at {request.path}\n")
        bound: str | None = None
        if cfg.api_keys:
            auth = request.headers.get("Authorization", "")
            key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
            key = key or request.headers.get("X-API-Key")
            found = _match(key, cfg.keys()) if key else None
            if found is None:
                return connection.respond(
                    HTTPStatus.UNAUTHORIZED,
                    "a valid API key is needed: send Authorization: Bearer <key> or X-API-Key\n",
                )
            bound = found[1]
        if cfg.tenancy is None:
            return None
        tenant, status, reason = self._connection_tenant(cfg.tenancy, bound, request, query)
        if tenant is None:
            return connection.respond(status, reason + "\n")
        self._tenants[connection] = tenant
        return None

    def _connection_tenant(
        self, tenancy: ConnectionTenancyConfig, bound: str | None, request: Any, query: str
    ) -> tuple[str | None, HTTPStatus, str]:
        """``(tenant, OK, "")``, or ``(None, status, why)`` for a connection refused."""
        claims: list[tuple[str, str]] = []
        for where_from in tenancy.sources:
            if where_from == "header":
                value = (request.headers.get(tenancy.header) or "").strip()
                where = f"the {tenancy.header} header"
            else:
                values = parse_qs(query).get(tenancy.query_parameter) or [""]
                value, where = values[0].strip(), f"the query parameter {tenancy.query_parameter}"
            if value:
                if not is_tenant_id(value):
                    why = f"{where} {value[:200]!r} is not a tenant id: {TENANT_HINT}"
                    return None, HTTPStatus.BAD_REQUEST, why
                claims.append((value, where))
        if bound is not None:
            other = next((c for c in claims if c[0] != bound), None)
            if other is not None and tenancy.on_conflict == "refuse":
                why = (
                    f"this API key belongs to tenant {bound!r} and cannot send as {other[0]!r}: "
                    f"drop {other[1]} or use that tenant's key"
                )
                return None, HTTPStatus.FORBIDDEN, why
            tenant: str | None = bound
        else:
            tenant = claims[0][0] if claims else tenancy.default
        if tenant is None:
            named = " or ".join(
                ["an API key bound to a tenant"]
                + [
                    f"the {tenancy.header} header"
                    if s == "header"
                    else f"the query parameter {tenancy.query_parameter}"
                    for s in tenancy.sources
                ]
            )
            return None, HTTPStatus.UNAUTHORIZED, f"no tenant: send {named}"
        if tenancy.tenants is not None and tenant not in tenancy.tenants:
            why = f"tenant {tenant!r} is not taken by this receiver (tenancy.tenants)"
            return None, HTTPStatus.FORBIDDEN, why
        return tenant, HTTPStatus.OK, ""

    async def _serve(self, ws: Any) -> None:
        from websockets.exceptions import ConnectionClosed
        from websockets.frames import CloseCode

        peer = ws.remote_address
        client = f"{peer[0]}:{peer[1]}" if peer else "client"
        fields: dict[str, Any] = {self.cfg.client_field: client} if self.cfg.client_field else {}
        tenant = self._tenants.pop(ws, None)
        if self.cfg.tenancy is not None:
            fields[TENANT_COLUMN] = tenant
        number = 0
        try:
            async for data in ws:
                number += 1
                body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
                self._deliver(Message(body, f"{client}#{number}", fields, (ws, number)))
        except ConnectionClosed as exc:
            sent = exc.sent
            if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
                self._log(
                    f"{self.where}: client {client} closed: its message {number + 1} is larger "
                    f"than max_message_bytes ({self.cfg.max_message_bytes}); the client has no "
                    "ack for it and must send smaller messages",
                    "warning",
                )
            elif sent is not None and sent.code in _CLIENT_FAULTS:
                self._log(
                    f"{self.where}: client {client} closed (code {int(sent.code)}, "
                    f"{sent.reason or 'protocol error'}): its message {number + 1} broke the "
                    "WebSocket protocol (a text message must be UTF-8); the client has no ack "
                    "for it",
                    "warning",
                )
        except Exception:  # a client gone: it resends what it has no ack for
            pass

    async def _unsubscribe(self) -> None:
        server = self._server
        if server is not None:
            server.close(close_connections=False)  # no new clients; acks still go out

    async def _acknowledge(self, accepted: list[Message], refused: list[Message]) -> None:
        acked: dict[Any, int] = defaultdict(int)
        rejected: dict[Any, list[int]] = defaultdict(list)
        for message in accepted:
            ws, number = message.handle
            acked[ws] = max(acked[ws], number)
        for message in refused:
            ws, number = message.handle
            rejected[ws].append(number)
            acked[ws] = max(acked[ws], number)
        for ws, upto in acked.items():
            with contextlib.suppress(Exception):  # a client gone: it resends what it lacks
                if rejected.get(ws):
                    await ws.send(orjson.dumps({"rejected": sorted(rejected[ws])}).decode())
                await ws.send(orjson.dumps({"acked": upto}).decode())

    async def _release(self, messages: list[Message]) -> None:
        """A client resends what it has no ack for: nothing to hand back here."""
        del messages

    async def _disconnect(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 5)


#: Close codes the server sends for a client's broken frame (invalid UTF-8 text, a protocol error).
_CLIENT_FAULTS = (1007, 1002)


def _match(given: str, accepted: list[tuple[str, str | None]]) -> tuple[str, str | None] | None:
    """The accepted ``(key, tenant)`` equal to ``given``; every key compared in constant time."""
    found = None
    for key, tenant in accepted:
        if hmac.compare_digest(given.encode(), key.encode()) and found is None:
            found = (key, tenant)
    return found
