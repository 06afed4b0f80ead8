"""POSTing a body to an HTTP receiver, as the webhook and Slack actions do: 2xx is delivered;
what else can happen is sorted as for every HTTP client of the product
(:mod:`quiver.runtime.outbound_http`): 408, 429, 5xx but 501 and 505, timeouts, refused and
dropped connections may succeed later (``Retry-After`` of a 429 or 503 is the least wait
before the next attempt, up to five minutes); a redirect (not followed), other 4xx, 501, 505,
a TLS certificate that fails verification, a failed TLS handshake, a header HTTP cannot carry
never will. Of an answer only the start of an error's body is kept, for the message; a body
is read at most up to a bound and until the request's time is up, and once the status is in,
a body that cannot be read (broken compression, too long, never ending) does not change what
the status said.

Plain ``http://`` receivers (a sidecar, a service in the same network) are posted to over
kept-alive HTTP/1.1 connections of this module, each request one write: a general client
costs several times the system calls per request, which bounds a dispatcher's deliveries per
second. ``https://`` receivers go through httpx.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from quiver.runtime.outbound_http import (
    BODY_START,
    DRAINED,
    HttpSettings,
    body_start,
    drain,
    request_error,
    status_error,
)

__all__ = ["SLACK", "WEBHOOK", "Poster"]

#: The webhook action's options, as its hints name them.
WEBHOOK = HttpSettings(
    peer="the receiver",
    header_values="`headers`",
    credentials="`headers` (the header the receiver checks, e.g. Authorization)",
    method=None,
    pace=None,
    smaller=None,
    request="check `url`, `headers` and the body against what the receiver expects",
)
#: The Slack action's options.
SLACK = HttpSettings(
    peer="Slack",
    header_values="`url`",
    credentials="`url` (an incoming webhook's URL carries its secret; make a new one if it "
    "was revoked)",
    method=None,
    pace=None,
    smaller=None,
    request="check `url` (an incoming webhook of Slack) and that `text` renders a message",
)

_MAX_IDLE = 64  # idle connections kept per receiver
_SET_BY_POSTER = frozenset(("host", "content-length"))  # on plain http://, from the URL and body


@dataclass
class Answer:
    """A receiver's answer: its status, reason, headers and the start of its body."""

    status: int
    reason: str
    headers: dict[str, str]
    start: bytes


class _Exchange:
    """Kept-alive HTTP/1.1 connections to one ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()

    async def post(self, request: bytes, deadline: float) -> Answer:
        """Send ``request`` (a whole HTTP/1.1 request); the answer, whose head must arrive
        before ``deadline`` (TimeoutError). A kept-alive connection the receiver closed
        meanwhile is replaced once."""
        while self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, request, deadline)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()  # closed while idle: try the next, then a new one
        try:
            async with asyncio.timeout_at(deadline):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise httpx.ConnectError(f"{exc.strerror or exc} ({self.host}:{self.port})") from exc
        return await self._exchange(reader, writer, request, deadline)

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: bytes,
        deadline: float,
    ) -> Answer:
        keep = False
        try:
            async with asyncio.timeout_at(deadline):
                writer.write(request)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError as exc:
                    raise httpx.RemoteProtocolError(
                        "the answer's head is longer than 64 KiB"
                    ) from exc
            lines = head.split(b"\r\n")
            first = lines[0].split(b" ", 2)
            if len(first) < 2 or not first[0].startswith(b"HTTP/1.") or not first[1].isdigit():
                raise httpx.RemoteProtocolError(f"the answer is not HTTP: {bytes(lines[0][:80])!r}")
            status = int(first[1])
            reason = first[2].decode("latin-1") if len(first) > 2 else ""
            headers: dict[str, str] = {}
            keep = not lines[0].startswith(b"HTTP/1.0")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                key = name.strip().lower().decode("latin-1")
                headers[key] = value.strip().decode("latin-1")
            length_text = headers.get("content-length", "")
            if length_text and not length_text.isdigit():
                raise httpx.RemoteProtocolError(f"Content-Length is not a number: {length_text!r}")
            length = int(length_text) if length_text else None
            chunked = "chunked" in headers.get("transfer-encoding", "").lower()
            token = headers.get("connection", "").lower()
            keep = token == "keep-alive" or (keep and token != "close")
            if status in (204, 304) or status < 200:
                length, chunked = 0, False  # no body, whatever the headers say
            try:
                async with asyncio.timeout_at(deadline):
                    start, whole = await _body(reader, length if not chunked else -1)
            except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
                start, whole = b"", False  # the status stands; the body is not read on
            keep = keep and whole and (chunked or length is not None)
            return Answer(status, reason, headers, _decoded(start, headers))
        except BaseException:
            keep = False
            raise
        finally:
            if keep and len(self.idle) < _MAX_IDLE:
                self.idle.append((reader, writer))
            else:
                writer.close()

    def close(self) -> None:
        while self.idle:
            self.idle.pop()[1].close()


async def _body(reader: asyncio.StreamReader, length: int | None) -> tuple[bytes, bool]:
    """The start of a body (``length`` bytes; -1: chunked; None: until the connection
    closes), and whether it was read whole: a body longer than :data:`DRAINED` is not."""
    if length is not None and length >= 0:
        if length > DRAINED:
            return await reader.readexactly(min(length, BODY_START)), False
        return (await reader.readexactly(length))[:BODY_START], True
    if length is None:
        return await reader.read(BODY_START), False
    start = bytearray()
    taken = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(start), True
        taken += size
        if taken > DRAINED:
            return bytes(start), False
        chunk = await reader.readexactly(size)
        if len(start) < BODY_START:
            start += chunk[: BODY_START - len(start)]
        await reader.readexactly(2)


def _decoded(start: bytes, headers: Mapping[str, str]) -> bytes:
    """The start of a body, decompressed (up to :data:`BODY_START` bytes) when its
    Content-Encoding is gzip or deflate; empty when it cannot be."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return start
    if encoding not in ("gzip", "deflate", "x-gzip"):
        return b""
    try:
        return zlib.decompressobj(zlib.MAX_WBITS | 32).decompress(start, BODY_START)
    except zlib.error:
        try:
            return zlib.decompressobj(-zlib.MAX_WBITS).decompress(start, BODY_START)
        except zlib.error:
            return b""


class Poster:
    """One HTTP client, opened on first use; ``settings`` word the hints of its failures."""

    def __init__(self, timeout: float, settings: HttpSettings = WEBHOOK) -> None:
        self.timeout = timeout
        self.settings = settings
        self._client: httpx.AsyncClient | None = None
        self._exchanges: dict[tuple[str, int], _Exchange] = {}
        self._targets: dict[str, tuple[_Exchange, bytes] | None] = {}

    def _plain(self, url: str) -> tuple[_Exchange, bytes] | None:
        """The connections and request line of a plain ``http://`` URL (None otherwise)."""
        if url not in self._targets:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname or parts.username:
                self._targets[url] = None
            else:
                port = parts.port or 80
                exchange = self._exchanges.setdefault(
                    (parts.hostname, port), _Exchange(parts.hostname, port)
                )
                target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                host = parts.netloc.encode("idna")
                line = b"POST %s HTTP/1.1\r\nHost: %s\r\n" % (target.encode(), host)
                self._targets[url] = (exchange, line)
        return self._targets[url]

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], where: str) -> None:
        """POST ``body``; return once the receiver answered 2xx, else raise RetryableError
        or PermanentError (see the module)."""
        try:
            for k, v in headers.items():
                if "\r" in k or "\n" in k or "\r" in v or "\n" in v or not (k + v).isascii():
                    raise httpx.LocalProtocolError(f"header {k!r}: line breaks or non-ASCII text")
            plain = self._plain(url)
            deadline = asyncio.get_running_loop().time() + self.timeout
            timed_out = False
            try:
                if plain is not None:
                    answer = await self._post_plain(plain, body, headers, deadline)
                else:
                    answer = await self._post_httpx(url, body, headers, deadline)
            except TimeoutError:
                timed_out = True
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                raise httpx.RemoteProtocolError(
                    f"the connection was closed before the answer came: {exc!r}"
                ) from exc
            if timed_out:  # raised outside the handler: no TLS state in its context
                raise httpx.ReadTimeout(f"no response within {self.timeout}s")
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise request_error(exc, where, self.settings) from exc
        if 200 <= answer.status < 300:
            return
        raise status_error(
            answer.status,
            answer.reason,
            answer.headers,
            answer.start.decode("utf-8", "replace"),
            where,
            self.settings,
        )

    async def _post_plain(
        self,
        plain: tuple[_Exchange, bytes],
        body: bytes,
        headers: Mapping[str, str],
        deadline: float,
    ) -> Answer:
        """POST over this module's connections (``Host`` and ``Content-Length`` come from the
        URL and the body, whatever ``headers`` say)."""
        exchange, line = plain
        head = "".join(
            f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in _SET_BY_POSTER
        )
        request = b"%s%sContent-Length: %d\r\n\r\n%s" % (
            line,
            head.encode("latin-1"),
            len(body),
            body,
        )
        return await exchange.post(request, deadline)

    async def _post_httpx(
        self, url: str, body: bytes, headers: Mapping[str, str], deadline: float
    ) -> Answer:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        request = self._client.build_request("POST", url, content=body, headers=dict(headers))
        async with asyncio.timeout_at(deadline):
            response = await self._client.send(request, stream=True)
        start = b""
        try:
            async with asyncio.timeout_at(deadline):
                if 200 <= response.status_code < 300:
                    await drain(response)
                else:
                    start = await body_start(response)
        except (TimeoutError, httpx.HTTPError):
            pass  # the status stands; closing the response drops the connection
        finally:
            await response.aclose()
        return Answer(response.status_code, response.reason_phrase, dict(response.headers), start)

    async def close(self) -> None:
        for exchange in self._exchanges.values():
            exchange.close()
        self._exchanges.clear()
        self._targets.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
