"""The HTTP protocol ``quiver serve`` runs uvicorn with: each response (head and body) leaves in
one write, keep-alive, pipelining and ``Connection: close`` behave as before, and a WebSocket
upgrade still reaches the ASGI app with a ``websocket`` scope."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import orjson
import pytest
import uvicorn
from websockets.sync.client import connect as ws_connect
from websockets.typing import Subprotocol

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import create_app
from quiver.graphql.server import CoalescingHttpProtocol
from quiver.schema.reflect import reflect_database
from tests.graphql.servers import QUIVER, free_port

JSON = "application/json"
QUERY = b'{"query": "{ artists(limit: 2, orderBy: {artistId: ASC}) { name } }"}'
#: Every write the real transports received, per connection, in order.
WRITES: list[list[bytes]] = []


class _CountingTransport:
    """Observes the writes reaching the real transport (the socket) and passes them on."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.writes: list[bytes] = []
        WRITES.append(self.writes)

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _ObservedProtocol(CoalescingHttpProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(cast(asyncio.Transport, _CountingTransport(transport)))


def _app_with_websocket(graphql: Any) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept", "subprotocol": "graphql-transport-ws"})
            message = await receive()
            reply = f"{scope['type']} {scope['path']} {message.get('text')}"
            await send({"type": "websocket.send", "text": reply})
            await send({"type": "websocket.close", "code": 1000})
            return
        await graphql(scope, receive, send)

    return app


def _serving(chinook_sqlite: Path, http: type, **options: Any) -> Iterator[int]:
    """The Chinook app served by uvicorn with the ``http`` protocol on a free port, in a
    thread, for as long as the generator is not closed."""
    url = f"sqlite:///{chinook_sqlite.absolute()}"
    schema = asyncio.run(reflect_database(url))
    graphql = create_app(schema, QuiverSettings.model_validate({"database": {"url": url}}))
    port = free_port()
    config = uvicorn.Config(
        _app_with_websocket(graphql),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=http,
        lifespan="on",
        log_config=None,
        access_log=False,
        **options,
    )
    served = uvicorn.Server(config)
    thread = threading.Thread(target=served.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not served.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield port
    finally:
        served.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="module")
def server(chinook_sqlite: Path) -> Iterator[int]:
    yield from _serving(chinook_sqlite, _ObservedProtocol)


def _request(extra: str = "") -> bytes:
    return (
        "POST /graphql HTTP/1.1\r\nHost: quiver\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(QUERY)}\r\n{extra}\r\n"
    ).encode() + QUERY


def _read_response(sock: socket.socket, buffer: bytearray) -> tuple[bytes, dict[str, str], bytes]:
    """One whole response from ``sock`` (``buffer`` keeps what follows it)."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed mid-response: {bytes(buffer)!r}"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed mid-body"
        rest += chunk
    buffer[:] = rest[length:]
    return status.encode(), headers, rest[:length]


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def test_each_response_leaves_in_one_write_on_a_kept_alive_connection(server: int) -> None:
    # Counted before connecting: the server thread may accept the connection (and add its
    # list of writes) before this thread runs its next line.
    before = len(WRITES)
    with _connect(server) as sock:
        buffer = bytearray()
        bodies = []
        for _ in range(3):
            sock.sendall(_request())
            status, headers, body = _read_response(sock, buffer)
            assert status == b"HTTP/1.1 200 OK"
            assert headers["content-type"] == "application/json; charset=utf-8"
            assert len(headers["x-request-id"]) == 24
            bodies.append(orjson.loads(body))
        (writes,) = WRITES[before:]  # one connection
    assert bodies == [{"data": {"artists": [{"name": "AC/DC"}, {"name": "Accept"}]}}] * 3
    assert len(writes) == 3, [w[:40] for w in writes]  # head and body together, each time
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"}}") for w in writes)


def test_pipelined_requests_are_answered_in_order(server: int) -> None:
    with _connect(server) as sock:
        sock.sendall(
            _request("X-Request-Id: first\r\n")
            + _request("X-Request-Id: second\r\n")
            + _request("X-Request-Id: third\r\n")
        )
        buffer = bytearray()
        ids = [_read_response(sock, buffer)[1]["x-request-id"] for _ in range(3)]
    assert ids == ["first", "second", "third"]


def test_connection_close_gets_the_whole_answer_then_the_end(server: int) -> None:
    with _connect(server) as sock:
        sock.sendall(_request("Connection: close\r\n"))
        buffer = bytearray()
        status, headers, body = _read_response(sock, buffer)
        assert status == b"HTTP/1.1 200 OK"
        assert headers["connection"] == "close"
        assert orjson.loads(body)["data"]["artists"][0] == {"name": "AC/DC"}
        assert sock.recv(65536) == b""  # closed after the answer was written


def test_errors_and_other_routes_are_answered_whole(server: int) -> None:
    with _connect(server) as sock:
        buffer = bytearray()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: quiver\r\n\r\n")
        status, _, body = _read_response(sock, buffer)
        assert (status, body) == (b"HTTP/1.1 200 OK", b"ok\n")
        sock.sendall(b"POST /graphql HTTP/1.1\r\nHost: quiver\r\nContent-Length: 3\r\n\r\n{x}")
        status, _, body = _read_response(sock, buffer)
        assert status == b"HTTP/1.1 415 Unsupported Media Type"
        assert orjson.loads(body)["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_a_malformed_request_is_refused_and_closed(server: int) -> None:
    with _connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        buffer = bytearray()
        status, _, _ = _read_response(sock, buffer)
        assert status == b"HTTP/1.1 400 Bad Request"
        assert sock.recv(65536) == b""


def test_a_websocket_upgrade_reaches_the_app_with_a_websocket_scope(server: int) -> None:
    with ws_connect(
        f"ws://127.0.0.1:{server}/graphql", subprotocols=[Subprotocol("graphql-transport-ws")]
    ) as ws:
        assert ws.subprotocol == "graphql-transport-ws"
        ws.send("hello")
        assert ws.recv(timeout=10) == "websocket /graphql hello"


@pytest.mark.parametrize("access", [False, True], ids=["access-log-off", "access-log-on"])
def test_several_workers_write_no_uvicorn_access_lines(chinook_sqlite: Path, access: bool) -> None:
    """With --workers 2, a request writes Quiver's access record when log.access asks for
    it, and never uvicorn's own line."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUIVER_")}
    env["QUIVER_LOG_ACCESS"] = "true" if access else "false"
    url = f"sqlite:///{chinook_sqlite.absolute()}"
    proc = subprocess.Popen(
        [QUIVER, "serve", "--db", url, "--port", str(port), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "no server"
            time.sleep(0.2)
        for _ in range(4):  # new connections: the requests spread over both workers
            r = httpx.post(f"{base}/graphql", content=QUERY, headers={"content-type": JSON})
            assert r.status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "HTTP/1.1" not in err, err  # uvicorn's access line: '... "POST /graphql HTTP/1.1" 200'
    ours = [line for line in err.splitlines() if "POST /graphql 200" in line]
    assert len(ours) == (4 if access else 0), err


@pytest.fixture(scope="module")
def quick_idle_server(chinook_sqlite: Path) -> Iterator[int]:
    """The protocol with an idle timeout (uvicorn's keep-alive timeout) of 1 s."""
    yield from _serving(chinook_sqlite, CoalescingHttpProtocol, timeout_keep_alive=1)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False


@pytest.mark.parametrize(
    "sent", [b"", b"POST /graphql HTTP/1.1\r\nHost: quiver\r\n"], ids=["nothing", "part-headers"]
)
def test_a_connection_whose_headers_do_not_arrive_is_closed_when_idle(
    quick_idle_server: int, sent: bytes
) -> None:
    with _connect(quick_idle_server) as sock:
        sock.sendall(sent)
        assert _closed_within(sock, 4)


def test_headers_in_pieces_and_a_slow_body_are_still_answered(quick_idle_server: int) -> None:
    request = _request()
    head, body = request[: -len(QUERY)], request[-len(QUERY) :]
    with _connect(quick_idle_server) as sock:
        buffer = bytearray()
        for _ in range(2):  # a fresh connection, then one kept alive
            sock.sendall(head[:20])
            time.sleep(0.3)
            sock.sendall(head[20:])
            time.sleep(1.5)  # past the idle timeout: the headers are in, the body is awaited
            sock.sendall(body)
            status, _, _ = _read_response(sock, buffer)
            assert status == b"HTTP/1.1 200 OK"
        assert _closed_within(sock, 4)  # idle again: closed as before


def test_a_websocket_outlives_the_idle_timeout(quick_idle_server: int) -> None:
    with ws_connect(
        f"ws://127.0.0.1:{quick_idle_server}/graphql",
        subprotocols=[Subprotocol("graphql-transport-ws")],
    ) as ws:
        time.sleep(2)
        ws.send("still here")
        assert ws.recv(timeout=10) == "websocket /graphql still here"
