"""The OTLP/HTTP receiver: a Starlette app served by uvicorn.

``POST /v1/traces``, ``/v1/metrics`` and ``/v1/logs`` take ``application/x-protobuf`` or
``application/json`` bodies, plain or compressed (``Content-Encoding`` gzip, deflate or zlib,
zstd). Answers follow the OTLP specification: 200 with the Export*ServiceResponse in the
request's encoding (``partial_success`` set when items were rejected); 400 for data that cannot
be decoded, 413 for a body over ``max_body_bytes`` (after decompression too), 415 for another
content type or encoding, 401 without a valid key (or, with tenancy, without a tenant), 403 for
a tenant refused, 404 / 405 for other paths and methods, 408 for a body that stalls
(``read_timeout_seconds``, which also bounds how long a connection may take to send its
headers), all with a google.rpc.Status body; 429 (too much waiting, or the tenant over its rate
limit) and 503 (stopping, disk error) with ``Retry-After``, which clients retry. Only 400 and
413, about the body, add a BadRequest detail to the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from quiver.ingest.access import AuthConfig, authenticate, server_ssl_context
from quiver.ingest.arrow_layout import SIGNALS, Signal
from quiver.ingest.intake import BackpressureError, Intake, UnavailableError
from quiver.ingest.otlp.config import HttpReceiverConfig
from quiver.ingest.otlp.decode import BadRequestError, decode_body, decompress
from quiver.ingest.otlp.decode import Request as ExportRequest
from quiver.ingest.otlp.export import bad_request_status, export
from quiver.ingest.tenancy import Tenancy, TenantError, TenantIntake

__all__ = ["HttpReceiver", "otlp_http_app"]

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_CONTENT_TYPES = {_PROTOBUF: False, "application/protobuf": False, _JSON: True}
_UVICORN_LOGGERS = ("uvicorn.error", "uvicorn.access")
_BODY_STATUSES = frozenset({400, 413})  # the body itself is what cannot be taken
_GRPC_CODE = {
    400: 3,
    401: 16,
    403: 7,
    404: 5,
    405: 12,
    408: 4,
    413: 3,
    415: 3,
    429: 8,
    503: 14,
}


def _encode(message: Message, json: bool) -> bytes:
    if not json:
        data: bytes = message.SerializeToString()
        return data
    text: str = json_format.MessageToJson(message, indent=None)
    return text.encode()


def _status(
    status: int, message: str, json: bool, headers: dict[str, str] | None = None
) -> Response:
    """A google.rpc.Status answer. Only a body that cannot be taken (400, 413) gets the
    BadRequest detail naming the body; the other statuses are about the path, the method, the
    headers, the credentials or the receiver's load, and carry their message alone."""
    code = _GRPC_CODE.get(status, 2)
    body = (
        bad_request_status(code, message)
        if status in _BODY_STATUSES
        else status_pb2.Status(code=code, message=message)
    )
    return Response(
        _encode(body, json),
        status_code=status,
        media_type=_JSON if json else _PROTOBUF,
        headers=headers,
    )


def _media(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    """Whether an answer to a request of ``content_type`` is JSON (else protobuf): every
    answer, errors included, follows the request's encoding, as the OTLP specification says."""
    media = _media(content_type)
    return _CONTENT_TYPES.get(media, media.endswith("json"))


def otlp_http_app(
    intake: Intake,
    cfg: HttpReceiverConfig,
    auth: AuthConfig | None,
    signals: list[Signal],
    tenancy: Tenancy | None = None,
) -> Starlette:
    """The ASGI app of the receiver."""

    def endpoint(signal: Signal) -> Any:
        async def handle(request: Request) -> Response:
            return await _handle(request, signal, intake, cfg, auth, signal in signals, tenancy)

        return handle

    routes = [Route(f"/v1/{s}", endpoint(s), methods=["POST"]) for s in SIGNALS]
    app = Starlette(routes=routes)
    app.router.redirect_slashes = False  # another path is a 404, as the OTLP paths are exact

    async def not_found(request: Request, exc: Exception) -> Response:
        return _status(
            404,
            f"no OTLP endpoint at {request.url.path}; use /v1/traces, /v1/metrics or /v1/logs",
            _is_json(request.headers.get("content-type", "")),
        )

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return _status(
            405,
            f"{request.method} is not allowed; OTLP/HTTP takes POST",
            _is_json(request.headers.get("content-type", "")),
            {"Allow": "POST"},
        )

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_allowed)
    return app


async def _handle(
    request: Request,
    signal: Signal,
    intake: Intake,
    cfg: HttpReceiverConfig,
    auth: AuthConfig | None,
    enabled: bool,
    tenancy: Tenancy | None,
) -> Response:
    raw_type = request.headers.get("content-type", "")
    media = _media(raw_type)
    json = _is_json(raw_type)
    caller = authenticate(auth, request.headers)
    if caller is None:
        return _status(
            401,
            "missing or wrong credentials: send the API key in the "
            f"{auth.api_key_header if auth else 'x-api-key'} header or "
            "Authorization: Bearer <token>",
            json,
            {"WWW-Authenticate": "Bearer"},
        )
    if not enabled:
        return _status(404, f"this receiver does not take {signal}", json)
    taking: Intake | TenantIntake = intake
    if tenancy is not None:
        try:
            taking = TenantIntake(intake, tenancy, tenancy.claim(caller, request.headers), signal)
        except TenantError as exc:
            return _status(exc.status, exc.message, json)
    if media not in _CONTENT_TYPES:
        return _status(
            415,
            f"Content-Type {raw_type or '(none)'!r} is not supported; send "
            "application/x-protobuf or application/json",
            json,
        )
    limit = cfg.max_body_bytes
    try:
        declared = int(request.headers.get("content-length", "0") or 0)
    except ValueError:
        return _status(400, "Content-Length is not a number", json)
    if declared > limit:
        return _status(413, f"the body is {declared:,} bytes, over the {limit:,} accepted", json)
    chunks = []
    size = 0
    reading = request.stream()
    pause = cfg.read_timeout_seconds
    try:
        while True:
            try:
                async with asyncio.timeout(pause):
                    chunk = await anext(reading)
            except StopAsyncIteration:
                break
            size += len(chunk)
            if size > limit:
                return _status(413, f"the body is over the {limit:,} bytes accepted", json)
            chunks.append(chunk)
    except ClientDisconnect:  # nothing was taken, and there is no one left to answer
        return _status(400, "the client closed the connection before the body ended", json)
    except TimeoutError:  # a client that stalls holds no connection and buffer for long
        return _status(
            408,
            f"the body sent nothing for {pause:g} seconds after {size:,} bytes; nothing of "
            "the request was taken",
            json,
            {"Connection": "close"},
        )
    try:
        raw = b"".join(chunks)
        encoding = request.headers.get("content-encoding", "")
        if len(raw) >= _DECODE_APART_BYTES or (encoding and len(raw) >= _DECODE_APART_BYTES // 16):
            # a large body takes a second or more to decode: on a thread, so the event loop
            # goes on answering the receiver's other requests meanwhile
            message = await asyncio.to_thread(_message, signal, raw, encoding, limit, json)
        else:
            message = _message(signal, raw, encoding, limit, json)
        response = await export(taking, signal, message)
    except BadRequestError as exc:
        return _status(exc.status, exc.message, json)
    except TenantError as exc:
        return _status(exc.status, exc.message, json)
    except BackpressureError as exc:
        code = 503 if isinstance(exc, UnavailableError) else 429
        retry = str(max(1, math.ceil(exc.retry_after)))
        return _status(code, exc.message, json, {"Retry-After": retry})
    return Response(_encode(response, json), media_type=_JSON if json else _PROTOBUF)


#: Bodies from this size on (a sixteenth of it compressed) are decompressed and decoded on a
#: thread rather than on the event loop.
_DECODE_APART_BYTES = 1 << 20


def _message(signal: Signal, raw: bytes, encoding: str, limit: int, json: bool) -> ExportRequest:
    """The export request in ``raw``, its Content-Encoding undone."""
    body = decompress(raw, encoding, limit)
    try:
        return decode_body(signal, body, json)
    except BadRequestError as exc:
        if json:
            raise
        raise BadRequestError(
            f"{exc.message}; send Content-Type: application/json for OTLP/JSON"
        ) from exc


class _TimedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose request headers are not whole
    ``header_seconds`` after it opened or after the previous answer: a client that opens
    connections and sends nothing, or its headers a byte at a time, holds none of them for
    longer (uvicorn itself waits for ever). Headers over ``MAX_HEADER_BYTES`` are answered 431
    and the connection closed, as Go's servers (the Collector's) do: uvicorn would gather
    them without end. The body is timed by the handler, which can still answer."""

    header_seconds = 60.0
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0  # received while waiting for the headers of a request

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is None:  # headers complete: a body, or nothing awaited
            return
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._disarm()
            self.transport.write(_HEADERS_TOO_LARGE)
            self.transport.close()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        idle = not self.pipeline  # no request whose headers came is waiting its turn
        super().on_response_complete()
        if idle and not self.transport.is_closing():
            self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.header_seconds, self.transport.close)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None


#: The most a request's line and headers may take, as Go's http.DefaultMaxHeaderBytes.
MAX_HEADER_BYTES = 1 << 20
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8"
    b"\r\nconnection: close\r\ncontent-length: 55\r\n\r\n"
    b"the request line and headers are over 1,048,576 bytes\r\n"
)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: ``quiver run`` owns SIGINT / SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class _RunLogHandler(logging.Handler):
    """uvicorn's own log records ("Invalid HTTP request received.") as lines of the run's
    log, naming the receiver: a client's malformed request at debug level, a failure inside
    the server as a warning."""

    def __init__(self, log: Callable[[str, str], None]) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        level = "warning" if record.levelno >= logging.ERROR else "debug"
        with contextlib.suppress(Exception):
            self.log(f"OTLP/HTTP receiver: {record.getMessage()}", level)


class HttpReceiver:
    """The listening socket and the uvicorn server around :func:`otlp_http_app`."""

    def __init__(
        self,
        app: Starlette,
        cfg: HttpReceiverConfig,
        sock: socket.socket,
        log: Callable[[str, str], None] = lambda message, level: None,
    ) -> None:
        self.cfg = cfg
        self.sock = sock
        self._log_handler = _RunLogHandler(log)
        self._propagated: dict[str, bool] = {}
        kwargs: dict[str, Any] = {}
        if cfg.tls is not None:
            kwargs.update(
                ssl_certfile=cfg.tls.cert_file,
                ssl_keyfile=cfg.tls.key_file,
                ssl_ca_certs=cfg.tls.client_ca_file,
                ssl_cert_reqs=2 if cfg.tls.client_ca_file else 0,
            )
            server_ssl_context(cfg.tls)  # a bad certificate fails here, with its reason
        protocol = type(
            "TimedProtocol", (_TimedProtocol,), {"header_seconds": cfg.read_timeout_seconds}
        )
        config = uvicorn.Config(
            app,
            http=protocol,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=None,
            **kwargs,
        )
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for name in _UVICORN_LOGGERS:
            logger = logging.getLogger(name)
            self._propagated[name] = logger.propagate
            logger.addHandler(self._log_handler)
            logger.propagate = False  # not to the terminal through logging's last resort
        self._task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            if self._task.done():
                self._task.result()
                return
            await asyncio.sleep(0.01)

    async def stop(self, seconds: float) -> None:
        """Stop accepting, let requests in flight finish (up to ``seconds``)."""
        if self._task is None:
            return
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), seconds)
        except TimeoutError:
            self.server.force_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 1.0)
        finally:
            self.sock.close()
            for name, propagated in self._propagated.items():
                logger = logging.getLogger(name)
                logger.removeHandler(self._log_handler)
                logger.propagate = propagated
