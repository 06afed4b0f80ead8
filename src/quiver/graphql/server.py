"""Run the GraphQL HTTP app under uvicorn, in one process or several workers.

With ``workers > 1`` uvicorn starts each worker from an import string, so the schema and the
settings travel to the workers through a file and the ``QUIVER_SERVE_SPEC`` environment variable;
each worker then builds its own app (and opens its own database pool) in
:func:`app_from_environment`.

Quiver binds the listening socket itself before uvicorn starts, so a port that is taken (or an
address that is not this machine's) is one ``error:`` line with a fix, not uvicorn's log and
exit code 3. uvicorn's own log records go through Quiver's log format (``log.format``).

uvicorn runs with uvloop and httptools, and with :class:`CoalescingHttpProtocol`: uvicorn writes
a response's head and body with one system call each, so every small answer left in two TCP
segments, which the client read with two system calls too; this protocol hands the transport
the writes of one event-loop turn as one. WebSocket upgrades get the plain transport, and
:class:`BackpressuredWebSocketProtocol`: uvicorn answers a client's ping frames however full
its send buffer is, so a client that sent pings and read nothing grew the server's memory
without bound; this protocol reads nothing more from a client while its send buffer is full.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import secrets
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any, cast

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import GraphQLApp, create_app
from quiver.runtime.errors import ConfigError, ErrorDetail, QuiverError
from quiver.runtime.listen import problem_of
from quiver.runtime.logs import configure_logging
from quiver.schema.ir import Schema, load_schema_file

__all__ = [
    "SERVE_SPEC_ENV",
    "BackpressuredWebSocketProtocol",
    "CoalescingHttpProtocol",
    "ServerStartError",
    "app_from_environment",
    "reserve_port",
    "run_server",
]

SERVE_SPEC_ENV = "QUIVER_SERVE_SPEC"

log = logging.getLogger("quiver.graphql.server")


def app_from_environment() -> GraphQLApp:
    """The uvicorn factory of each worker process: the app described by ``QUIVER_SERVE_SPEC``."""
    raw = os.environ.get(SERVE_SPEC_ENV)
    if not raw:
        raise ConfigError.one(
            f"{SERVE_SPEC_ENV} is not set",
            "worker start-up",
            "start workers with quiver serve --workers N",
        )
    spec = orjson.loads(raw)
    settings = QuiverSettings.model_validate(spec["settings"])
    configure_logging(settings.log.format, settings.log.level)
    _keep_uvicorn_access_log_off()
    _log_bad_frames_in_one_line()
    return create_app(load_schema_file(spec["schema_path"]), settings)


def _keep_uvicorn_access_log_off() -> None:
    """uvicorn's access log stays off (Quiver writes its own with ``log.access``).

    uvicorn switches it off in each worker before it loads the app; the logging set-up of
    :func:`app_from_environment` turned it back on, so every request of a server with several
    workers wrote a line in uvicorn's format, at a cost of about 50 µs each.
    """
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False


#: What uvicorn logs, with a traceback, when a WebSocket client sends a text message that is
#: not UTF-8 (it closes the socket with 1007, as RFC 6455 says).
_BAD_TEXT_FRAME = "Invalid UTF-8 sequence received from client."


class _BadFrameFilter(logging.Filter):
    """A client's text message that is not UTF-8 is one warning line, not an error with a
    traceback: the client is at fault, and the server handled it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _BAD_TEXT_FRAME:
            record.msg = (
                "a WebSocket client sent a text message that is not UTF-8; closed with 1007"
            )
            record.exc_info = None
            record.exc_text = None
            record.levelno = logging.WARNING
            record.levelname = "WARNING"
        return True


def _log_bad_frames_in_one_line() -> None:
    error = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _BadFrameFilter) for f in error.filters):
        error.addFilter(_BadFrameFilter())


class _CoalescingTransport:
    """A transport that hands the writes of one event-loop turn to the real one as one write.

    Everything else (closing, flow control, peer address, ...) goes straight through; a close
    writes what is pending first.
    """

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            pending.append(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = None
        self._transport.abort()

    def unwrapped(self) -> asyncio.Transport:
        """The real transport, once what is pending has been written to it."""
        self._flush()
        return self._transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing each response (head and body) with one call.

    Its idle timer (uvicorn's keep-alive timeout, 5 s) also bounds how long a request's headers
    take to arrive: uvicorn stops it at the first byte of a request, and starts none for a
    new connection, so a client that connected and sent nothing, or part of its headers, held
    its connection (and a file descriptor) for good. The timer keeps running until the
    headers are in; a connection whose request has not got that far when it fires is closed.
    """

    _upgraded = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Duck-typed: the wrapper passes every other call through to ``transport``.
        super().connection_made(cast(asyncio.Transport, _CoalescingTransport(transport, self.loop)))
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def data_received(self, data: bytes) -> None:
        timer = self.timeout_keep_alive_task
        if timer is None:  # a request is running (pipelined data), or the connection closes
            super().data_received(data)
            return
        # Hidden from uvicorn, which would cancel it: it runs on while the headers are partial.
        idle = self.cycle
        self.timeout_keep_alive_task = None
        super().data_received(data)
        if self.cycle is idle and self.timeout_keep_alive_task is None and not self._upgraded:
            self.timeout_keep_alive_task = timer
        else:
            timer.cancel()  # the headers are in (or uvicorn took the connection elsewhere)

    def timeout_keep_alive_handler(self) -> None:
        cycle = self.cycle  # made when a request's headers are in
        if (cycle is None or cycle.response_complete) and not self._upgraded:
            super().timeout_keep_alive_handler()  # idle, or the next request's headers partial

    def handle_websocket_upgrade(self) -> None:
        self._upgraded = True
        wrapper: object = self.transport
        if isinstance(wrapper, _CoalescingTransport):
            self.transport = wrapper.unwrapped()  # the WebSocket protocol writes itself
        super().handle_websocket_upgrade()


class BackpressuredWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, reading nothing from a client while the socket's send
    buffer is full (the client does not read).

    uvicorn waits for room in the buffer before it writes the application's messages, but it
    answers each ping frame at once: a client sending pings and reading nothing made the server
    buffer the pongs without bound. With reading paused too, the client's pings wait in its own
    socket buffer, and pings read while the buffer is full (uvicorn reads again to close) are
    not answered; the application's messages wait as before (``subscriptions.send_timeout_ms``
    ends the socket)."""

    _sending_paused = False

    def pause_writing(self) -> None:
        super().pause_writing()
        self._sending_paused = True
        if not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._sending_paused = False
        # uvicorn pauses reading too while the application has a message it did not take yet
        if not self.read_paused and not self.transport.is_closing():
            self.transport.resume_reading()

    def handle_ping(self) -> None:
        if self._sending_paused:
            # a pong waits for room as reading does: while closing, uvicorn reads again
            self.conn.data_to_send()  # dropped: this client reads nothing
            return
        super().handle_ping()

    async def receive(self) -> Any:
        message = await self.queue.get()
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            if not self._sending_paused:
                self.transport.resume_reading()
        return message


class ServerStartError(QuiverError):
    """The HTTP server could not start: the port is taken, the address is not ours, ..."""


def run_server(schema: Schema, settings: QuiverSettings) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM), with ``settings.server.workers`` processes.

    Raises :class:`ServerStartError` when the server cannot listen or its app cannot start.
    """
    import uvicorn

    configure_logging(settings.log.format, settings.log.level)
    _log_bad_frames_in_one_line()
    server = settings.server
    common: dict[str, object] = {
        "host": server.host,
        "port": server.port,
        "log_level": settings.log.level,
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
        "loop": "uvloop",
        "http": CoalescingHttpProtocol,
        "server_header": False,
        # uvicorn's X-Forwarded-* middleware rewrites the client address and scheme, which
        # Quiver never reads; without it every request has one ASGI layer less to go through.
        "proxy_headers": False,
        "timeout_graceful_shutdown": server.shutdown_timeout_ms / 1000,
        "ws": BackpressuredWebSocketProtocol,
        # a larger message is refused (1009) as it arrives, before it is read whole
        "ws_max_size": settings.subscriptions.max_message_bytes,
    }
    # uvicorn re-raises SIGTERM once it has shut down gracefully; a graceful stop exits 0.
    sock = bind_socket(server.host, server.port)
    bound = sock.getsockname()[1]
    shown = f"[{server.host}]" if ":" in server.host else server.host
    log.info("listening on http://%s:%d (press Ctrl-C to stop)", shown, bound)
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        if server.workers <= 1:
            config = uvicorn.Config(create_app(schema, settings), **common)  # type: ignore[arg-type]
            single = uvicorn.Server(config)
            single.run(sockets=[sock])
            if not single.started:
                raise _did_not_start()
        else:
            sock.close()  # uvicorn binds again for its workers, a moment later
            _run_workers(schema, settings, common)
    except _TerminatedError:
        log.info("stopped")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise _did_not_start() from None
    finally:
        sock.close()
        signal.signal(signal.SIGTERM, previous)


def reserve_port(settings: QuiverSettings) -> None:
    """Check that the server can listen where ``settings`` say, before anything says it serves
    (a :class:`ServerStartError` otherwise); ``server.port: 0`` becomes the free port the
    system picked, so that the address announced is the one served."""
    with bind_socket(settings.server.host, settings.server.port) as sock:
        settings.server.port = sock.getsockname()[1]


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` as uvicorn binds it, or a :class:`ServerStartError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, exc) from None
    except (socket.gaierror, UnicodeError) as exc:
        sock.close()
        raise _bind_error(host, port, OSError(errno.EADDRNOTAVAIL, str(exc))) from None
    sock.set_inheritable(True)
    return sock


def _bind_error(host: str, port: int, exc: OSError) -> ServerStartError:
    """The one-line error of an HTTP endpoint that cannot be listened on: the system's reason
    and its fix, from the check every listener shares, and the option that changes it."""
    problem = problem_of(exc, host, port)
    if problem.code in (errno.EADDRINUSE, errno.EACCES):
        other = 8080 if port != 8080 else 8081
        return _start_error(
            f"cannot listen on {host}:{port}: {problem.reason}",
            "server.port",
            f"{problem.fix}: --port {other} (server.port in quiver.yaml, or QUIVER_SERVER_PORT)",
        )
    return _start_error(
        f"cannot listen on {host}:{port}: {problem.reason}",
        "server.host",
        f"{problem.fix}; give it with --host (server.host in quiver.yaml, or QUIVER_SERVER_HOST)",
    )


def _start_error(message: str, where: str, fix: str) -> ServerStartError:
    return ServerStartError([ErrorDetail(message, where, fix)])


def _did_not_start() -> ServerStartError:
    return _start_error(
        "the server did not start; the log above says why",
        "quiver serve",
        "fix the cause shown there; run with --debug for more detail",
    )


class _TerminatedError(Exception):
    """SIGTERM arrived after the server shut down."""


def _stopped(signum: int, frame: object) -> None:
    raise _TerminatedError


def _run_workers(schema: Schema, settings: QuiverSettings, common: dict[str, object]) -> None:
    import uvicorn

    server = settings.server
    with tempfile.TemporaryDirectory(prefix="quiver-serve-") as tmp:
        schema_path = Path(tmp) / "schema.json"
        schema_path.write_text(schema.to_json(), encoding="utf-8")
        dumped = settings.model_dump(mode="json")
        if not settings.graphql.cursor_secret:
            # The workers of one server share the secret drawn here, so each takes the
            # cursors the others issue.
            dumped["graphql"]["cursor_secret"] = secrets.token_urlsafe(32)
        spec = {"settings": dumped, "schema_path": str(schema_path)}
        os.environ[SERVE_SPEC_ENV] = orjson.dumps(spec).decode()
        try:
            uvicorn.run(
                "quiver.graphql.server:app_from_environment",
                factory=True,
                workers=server.workers,
                **common,  # type: ignore[arg-type]
            )
        finally:
            os.environ.pop(SERVE_SPEC_ENV, None)
