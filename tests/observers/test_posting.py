"""The webhook poster's own HTTP/1.1 client for plain http:// receivers: kept-alive
connections, a receiver that closed one meanwhile, timeouts, status codes, chunked answers."""

from __future__ import annotations

import asyncio

import pytest

from quiver.observers.posting import Poster
from quiver.runtime.errors import PermanentError, RetryableError
from tests.observers.conftest import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_posts_reuse_one_connection_and_carry_body_and_headers(receiver: Receiver) -> None:
    poster = Poster(5)
    try:
        for i in range(3):
            await poster.post(receiver.url, b'{"n": %d}' % i, {"X-A": "b"}, "hook")
        assert [r.body for r in receiver.received] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
        assert all(r.headers["x-a"] == "b" for r in receiver.received)
        assert {r.headers["host"] for r in receiver.received} == {receiver.url.split("/")[2]}
        [exchange] = poster._exchanges.values()
        assert len(exchange.idle) == 1
    finally:
        await poster.close()


async def test_status_codes_timeouts_and_bad_headers(receiver: Receiver) -> None:
    poster = Poster(0.3)
    try:
        receiver.statuses = [503, 404]
        with pytest.raises(RetryableError, match="HTTP 503 Service Unavailable: boom"):
            await poster.post(receiver.url, b"{}", {}, "hook")
        with pytest.raises(PermanentError, match="HTTP 404"):
            await poster.post(receiver.url, b"{}", {}, "hook")
        receiver.hold = True
        with pytest.raises(RetryableError, match=r"no response within 0.3s"):
            await poster.post(receiver.url, b"{}", {}, "hook")
        receiver.hold = False
        receiver.release.set()
        await poster.post(receiver.url, b"{}", {}, "hook")  # a new connection
        with pytest.raises(PermanentError, match="line breaks"):
            await poster.post(receiver.url, b"{}", {"X-A": "b\r\nX-Evil: 1"}, "hook")
        with pytest.raises(RetryableError, match="ConnectError"):
            await poster.post("http://127.0.0.1:9/hook", b"{}", {}, "hook")
    finally:
        await poster.close()


async def test_a_connection_the_receiver_closed_is_replaced_and_chunked_answers_are_read() -> None:
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()  # one request per connection, without saying so

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    poster = Poster(5)
    try:
        for _ in range(3):
            await poster.post(f"http://127.0.0.1:{port}/x", b"{}", {}, "hook")
            await asyncio.sleep(0.05)
        assert served == 3
    finally:
        await poster.close()
        server.close()
        await server.wait_closed()
