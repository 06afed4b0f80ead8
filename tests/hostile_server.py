"""An HTTP server that answers badly, for the tests of every HTTP client of the product: a
redirect loop, bodies that do not match their Content-Encoding, a 200 MB answer, an answer
that never ends, error statuses with a Retry-After far in the future, bytes that are not HTTP.
It runs on 127.0.0.1 in a thread of its own (plain, or TLS with the certificate given), reads
each request whole, and answers by the request's path:

* ``/status/<code>``: that status with a short body; ``?retry-after=<value>`` (or a path
  going on ``/retry-after/<value>``) adds the header
* ``/redirect``: 302 to itself, forever
* ``/gzip/<code>``: that status, ``Content-Encoding: gzip`` and a body that is not gzip
* ``/big/<code>``: that status and a body of 200 MB (``Content-Length``; ``?chunked`` or a
  path going on ``/chunked`` sends it chunked), made as it is sent
* ``/endless/<code>``: that status, then a body that never ends, one byte at a time
* ``/nothing``: 204, without a Content-Length (a 204 has no body), the connection kept
* ``/silent``: no answer at all
* ``/garbage``: bytes that are not an HTTP answer
* anything else: 200 with a short body

A path may go on after these (``/status/503/v1/traces``), as a client adding its own path
to a base URL makes it.

``sent`` counts the body bytes written to the clients (as far as they read them) and
``requests`` the requests received, by path.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = ["BIG", "Hostile", "hostile_server"]

BIG = 200 * (1 << 20)
_CHUNK = 1 << 16


@dataclass
class Hostile:
    url: str
    sent: int = 0
    requests: dict[str, int] = field(default_factory=dict)

    def calls(self, path: str) -> int:
        return self.requests.get(path, 0)


class _ClosedError(Exception):
    """The client went away."""


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            first = self.connection.recv(1, socket.MSG_PEEK)
            if first == b"\x16" and self.server.context is None:  # TLS to a plain port
                self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                return
            if self.server.context is not None:
                self.connection = self.server.context.wrap_socket(self.connection, server_side=True)
                self.rfile = self.connection.makefile("rb")
                self.wfile = self.connection.makefile("wb", buffering=0)
            while self._one():
                pass
        except (OSError, ssl.SSLError, _ClosedError, ValueError):
            return

    def _one(self) -> bool:
        line = self.rfile.readline(65536)
        if not line:
            return False
        length = 0
        while True:
            header = self.rfile.readline(65536)
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        self.rfile.read(length)
        parts = urlsplit(line.split(b" ")[1].decode("latin-1"))
        state = self.server.state
        state.requests[parts.path] = state.requests.get(parts.path, 0) + 1
        return self._answer(parts.path, parse_qs(parts.query))

    def _send(self, data: bytes, body: bool = True) -> None:
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise _ClosedError from exc
        if body:
            self.server.state.sent += len(data)

    def _head(self, status: int, *headers: str) -> None:
        text = f"HTTP/1.1 {status} Whatever\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
        self._send(text.encode("latin-1"), body=False)

    def _answer(self, path: str, query: dict[str, list[str]]) -> bool:
        """Answer one request; False when the connection is to be closed."""
        step = path.strip("/").split("/")
        kind, code = step[0], int(step[1]) if len(step) > 1 and step[1].isdigit() else 200
        if kind == "silent":
            time.sleep(3600)
            return False
        if kind == "garbage":
            self._send(b"SSH-2.0-OpenSSH_9.6\r\nnot http at all\r\n\r\n")
            return False
        if kind == "status":
            text = b"told to fail"
            after = query.get("retry-after", [])
            if len(step) > 3 and step[2] == "retry-after":
                after = [step[3]]
            extra = [f"Retry-After: {v}" for v in after]
            self._head(code, f"Content-Length: {len(text)}", *extra)
            self._send(text)
            return True
        if kind == "nothing":  # 204: no body and no Content-Length, the connection kept
            self._head(204)
            return True
        if kind == "redirect":
            self._head(302, "Location: /redirect", "Content-Length: 0")
            return True
        if kind == "gzip":
            text = b"this is not gzip" * 4
            self._head(code, "Content-Encoding: gzip", f"Content-Length: {len(text)}")
            self._send(text)
            return True
        if kind == "big":
            chunked = "chunked" in query or "chunked" in step
            self._head(code, "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}")
            block = b"x" * _CHUNK
            for _ in range(BIG // _CHUNK):
                self._send(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            if chunked:
                self._send(b"0\r\n\r\n")
            return True
        if kind == "endless":
            self._head(code, "Transfer-Encoding: chunked")
            while True:
                self._send(b"1\r\nx\r\n")
                time.sleep(0.02)
        text = b"ok"
        self._head(200, f"Content-Length: {len(text)}")
        self._send(text)
        return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.context = context
        self.state = Hostile("")

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
        super().server_bind()


@contextlib.contextmanager
def hostile_server(cert: Path | None = None, key: Path | None = None) -> Iterator[Hostile]:
    """The server on a free port of 127.0.0.1 (TLS with ``cert`` and ``key``), for the
    ``with`` block."""
    context = None
    if cert is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    server = _Server(context)
    port = server.server_address[1]
    server.state.url = f"{'https' if context else 'http'}://127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.shutdown()
        server.server_close()
