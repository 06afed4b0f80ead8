"""POSTing a body to an HTTP receiver, as the webhook and Slack actions do: 2xx is delivered;
408, 429, 5xx, timeouts and connection failures may succeed later; anything else never will.

Plain ``http://`` receivers (a sidecar, a service in the same network) are posted to over
kept-alive HTTP/1.1 connections of this module, each request one write: a general client
costs several times the system calls per request, which bounds a dispatcher's deliveries per
second. ``https://`` receivers go through httpx.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx

from quiver.runtime.errors import ErrorDetail, PermanentError, RetryableError

__all__ = ["Poster"]

_MAX_IDLE = 64  # idle connections kept per receiver
_SET_BY_POSTER = frozenset(("host", "content-length"))  # on plain http://, from the URL and body


class _Exchange:
    """Kept-alive HTTP/1.1 connections to one ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = deque()

    async def post(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request`` (a whole HTTP/1.1 request); the status and body of the answer. A
        kept-alive connection the receiver closed meanwhile is replaced once."""
        while self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, request)
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()  # closed while idle: try the next, then a new one
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self._exchange(reader, writer, request)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        keep = False
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            length: int | None = None
            chunked = False
            keep = not lines[0].startswith(b"HTTP/1.0")
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                key = name.strip().lower()
                if key == b"content-length":
                    length = int(value)
                elif key == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif key == b"connection":
                    token = value.strip().lower()
                    keep = token == b"keep-alive" or (keep and token != b"close")
            if chunked:
                body = await _chunks(reader)
            elif length is not None:
                body = await reader.readexactly(length)
            else:
                body = await reader.read()
                keep = False
            return status, body
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


async def _chunks(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)


class Poster:
    """One HTTP client, opened on first use."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
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
        plain = self._plain(url)
        for k, v in headers.items():
            if "\r" in k or "\n" in k or "\r" in v or "\n" in v or not (k + v).isascii():
                raise PermanentError(
                    [ErrorDetail(f"header {k!r}: line breaks or non-ASCII text", where, "")],
                    code="HTTP_HEADER",
                )
        text = "".join([f"{k}: {v}\r\n" for k, v in headers.items()])
        try:
            async with asyncio.timeout(self.timeout):
                if plain is not None:
                    status, answer = await self._post_plain(plain, body, headers, text)
                else:
                    status, answer = await self._post_httpx(url, body, headers)
        except TimeoutError:
            raise RetryableError(
                [ErrorDetail(f"no response within {self.timeout}s", where, "")],
                code="HTTP_TIMEOUT",
            ) from None
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            raise RetryableError(
                [ErrorDetail(f"cannot reach the receiver: {exc!r}", where, "")],
                code="HTTP_UNREACHABLE",
            ) from None
        if 200 <= status < 300:
            return
        detail = ErrorDetail(
            f"the receiver answered {status}: {answer[:200].decode(errors='replace')}",
            where,
            "check the receiver's logs",
        )
        if status in (408, 429) or status >= 500:
            raise RetryableError([detail], code="HTTP_STATUS")
        raise PermanentError([detail], code="HTTP_STATUS")

    async def _post_plain(
        self, plain: tuple[_Exchange, bytes], body: bytes, headers: Mapping[str, str], head: str
    ) -> tuple[int, bytes]:
        """POST over this module's connections; ``head`` is ``headers`` as header lines
        (``Host`` and ``Content-Length`` come from the URL and the body instead)."""
        exchange, line = plain
        if any(k.lower() in _SET_BY_POSTER for k in headers):
            head = "".join(
                f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in _SET_BY_POSTER
            )
        request = b"%s%sContent-Length: %d\r\n\r\n%s" % (
            line,
            head.encode("latin-1"),
            len(body),
            body,
        )
        return await exchange.post(request)

    async def _post_httpx(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        response = await self._client.post(url, content=body, headers=dict(headers))
        return response.status_code, response.content

    async def close(self) -> None:
        for exchange in self._exchanges.values():
            exchange.close()
        self._exchanges.clear()
        self._targets.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
