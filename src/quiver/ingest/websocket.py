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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from http import HTTPStatus
from typing import Any

import orjson
from pydantic import Field

from quiver.ingest.receiver import BodyFormat, BrokerReceiver, Message, ReceiverConfig, TlsOptions
from quiver.pipeline.component import RunContext, source
from quiver.runtime.errors import ConfigError

__all__ = ["WebSocketReceiver", "WebSocketReceiverConfig"]


class WebSocketReceiverConfig(ReceiverConfig):
    """Serve a WebSocket endpoint for JSON lines."""

    format: BodyFormat = Field("jsonl", description="Message body format: jsonl, json, csv, avro.")
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8765, ge=0, le=65535, description="Port to listen on.")
    path: str = Field("/", description="Path clients connect to; other paths get HTTP 404.")
    api_keys: list[str] = Field(
        default_factory=list,
        description="Keys a client must send (Authorization: Bearer / X-API-Key); none: open.",
    )
    tls: TlsOptions | None = Field(
        None, description="Serve wss://: cert_file and key_file are the server's certificate."
    )
    max_message_bytes: int = Field(
        1 << 20, ge=1, description="Largest message accepted; a larger one closes the connection."
    )
    client_field: str | None = Field(
        None, description="Column holding the client's address (host:port); none when null."
    )


@source("websocket", config=WebSocketReceiverConfig)
class WebSocketReceiver(BrokerReceiver):
    """JSON lines from WebSocket clients, acknowledged to them once the sinks committed them."""

    def __init__(self, cfg: WebSocketReceiverConfig) -> None:
        super().__init__(cfg, f"source websocket {cfg.host}:{cfg.port}{cfg.path}")
        self.cfg = cfg
        self.extra_types = {cfg.client_field: "str"} if cfg.client_field else {}
        self._server: Any = None
        self.port = cfg.port  # the port listened on (the one chosen when `port` is 0)

    async def _subscribe(self, ctx: RunContext) -> None:
        from websockets.asyncio.server import serve

        cfg = self.cfg
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
            raise ConfigError.one(
                f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}",
                f"{self.where}: port",
                "choose a free port, or stop what listens there",
            ) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        ctx.log(f"{self.where}: listening on port {self.port}", "info")

    def _check(self, connection: Any, request: Any) -> Any:
        cfg = self.cfg
        if request.path.split("?", 1)[0] != cfg.path:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no endpoint at {request.path}\n")
        if not cfg.api_keys:
            return None
        auth = request.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        key = key or request.headers.get("X-API-Key")
        if key not in cfg.api_keys:
            return connection.respond(
                HTTPStatus.UNAUTHORIZED,
                "a valid API key is needed: send Authorization: Bearer <key> or X-API-Key\n",
            )
        return None

    async def _serve(self, ws: Any) -> None:
        peer = ws.remote_address
        client = f"{peer[0]}:{peer[1]}" if peer else "client"
        fields = {self.cfg.client_field: client} if self.cfg.client_field else {}
        number = 0
        with contextlib.suppress(Exception):
            async for data in ws:
                number += 1
                body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
                self._deliver(Message(body, f"{client}#{number}", fields, (ws, number)))

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
