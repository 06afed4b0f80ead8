"""What a WebSocket client cannot make the server hold: clients that stop reading, ping
frames nobody reads, operations completed while they start or run, sockets dropped without a
close."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import socket
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.uri import parse_uri

from tests.conftest import Dialect
from tests.graphql.subscription_fixtures import (
    PROTOCOL,
    LiveServer,
    acknowledged,
    live_server,
    receive,
    send,
    subscribe,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

CREATE_AUTHOR = "mutation ($i: AuthorCreateInput!) { createAuthor(input: $i) { id } }"


def small_window(live: LiveServer) -> socket.socket:
    """A connected socket to ``live`` whose receive buffer is small: what the client does not
    read fills it at once."""
    sock = socket.create_connection(("127.0.0.1", live.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def not_reading(live: LiveServer) -> ClientConnection:
    """An acknowledged socket of a client that reads no more than it must."""
    return await acknowledged(
        live, sock=small_window(live), max_queue=1, compression=None, max_size=None
    )


async def no_socket_tasks(live: LiveServer) -> None:
    """Wait until the server runs no socket's task any more."""
    for _ in range(100):
        if not live.server.server_state.tasks:
            return
        await asyncio.sleep(0.05)
    assert not live.server.server_state.tasks


async def rows_eventually(live: LiveServer, sql: str, rows: list[tuple[Any, ...]]) -> None:
    for _ in range(100):
        if await live.sql(sql) == rows:
            return
        await asyncio.sleep(0.05)
    assert await live.sql(sql) == rows


async def test_a_client_that_stops_reading_is_closed_and_its_subscriptions_end(
    fresh_sqlite: str,
) -> None:
    """Changes pile up for a client that reads nothing: the server does not buffer them
    without bound, and ends the subscription once a message waited send_timeout_ms."""
    async with live_server("sqlite", fresh_sqlite, subscriptions={"send_timeout_ms": 400}) as live:
        ws = await not_reading(live)
        try:
            await subscribe(ws, "s", "subscription { authorChanged { after { name } } }")
            await live.active(1)
            for i in range(40):  # about 8 MB of changes, more than the socket buffers hold
                name = base64.b64encode(os.urandom(150_000)).decode()
                await live.data(CREATE_AUTHOR, {"i": {"name": name, "email": f"{i}@x.org"}})
            await live.active(0)  # the subscription ended: the client read nothing
            await no_socket_tasks(live)
        finally:
            ws.transport.abort()


async def test_a_client_that_stops_reading_query_results_is_closed(fresh_sqlite: str) -> None:
    async with live_server("sqlite", fresh_sqlite, subscriptions={"send_timeout_ms": 400}) as live:
        name = base64.b64encode(os.urandom(150_000)).decode()
        for i in range(40):  # a list of about 8 MB
            await live.sql("INSERT INTO authors (name, email) VALUES (?, ?)", (name, f"{i}@x"))
        ws = await not_reading(live)
        try:
            for op_id in ("a", "b"):  # the second waits for the client to read the first
                await subscribe(ws, op_id, "{ authors { name } }")
            await no_socket_tasks(live)
        finally:
            ws.transport.abort()


async def test_a_client_sending_pings_and_reading_nothing_does_not_grow_the_server_buffer(
    fresh_sqlite: str,
) -> None:
    """A ping frame is answered with a pong: a client that sends pings and reads nothing would
    make the server hold the pongs without bound. The server stops reading from it instead."""
    async with live_server("sqlite", fresh_sqlite) as live:
        client = ClientProtocol(parse_uri(live.url), subprotocols=[PROTOCOL])  # type: ignore[list-item]
        client.send_request(client.connect())
        sock = small_window(live)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(sock, b"".join(client.data_to_send()))
            client.receive_data(await asyncio.wait_for(loop.sock_recv(sock, 65536), 10))
            assert isinstance(next(iter(client.events_received())), Response)
            (server,) = live.server.server_state.connections
            largest = 0
            sent = 0
            for _ in range(100):  # up to 65 MB of pings
                for _ in range(5000):
                    client.send_ping(b"p" * 125)
                try:
                    await asyncio.wait_for(
                        loop.sock_sendall(sock, b"".join(client.data_to_send())), 1
                    )
                except TimeoutError:
                    break  # the server reads no more
                sent += 1
                largest = max(largest, server.transport.get_write_buffer_size())
            assert sent < 100
            assert largest < 1_000_000
        finally:
            sock.close()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_a_mutation_completed_by_the_client_runs_to_its_end_without_a_result(
    dialect: Dialect, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """complete stops a subscription at once; a mutation already running is not cut off
    inside its transaction (which may or may not have committed): it ends, unsent."""
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    async with live_server(dialect, url) as live:
        ws = await acknowledged(live)
        async with ws:
            # another transaction holds the new author's email: the mutation waits for it
            await live.sql("BEGIN")
            await live.sql("INSERT INTO authors (name, email) VALUES ('Held', 'w@x.org')")
            await subscribe(ws, "m", CREATE_AUTHOR, {"i": {"name": "Woolf", "email": "w@x.org"}})
            await asyncio.sleep(0.5)
            await send(ws, {"id": "m", "type": "complete"})
            await send(ws, {"type": "ping"})
            assert await receive(ws) == {"type": "pong"}
            await live.sql("ROLLBACK")
            await rows_eventually(live, "SELECT name FROM authors", [("Woolf",)])
            with pytest.raises(TimeoutError):  # no next, no complete: the client completed it
                await asyncio.wait_for(ws.recv(), 0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_completed_mutation_still_running_counts_towards_the_operations_limit(
    fresh_postgresql: str,
) -> None:
    """complete cannot be used to run more operations at once than max_per_connection."""
    async with live_server(
        "postgresql", fresh_postgresql, subscriptions={"max_per_connection": 1}
    ) as live:
        ws = await acknowledged(live)
        async with ws:
            await live.sql("BEGIN")
            await live.sql("INSERT INTO authors (name, email) VALUES ('Held', 'w@x.org')")
            await subscribe(ws, "m", CREATE_AUTHOR, {"i": {"name": "W", "email": "w@x.org"}})
            await asyncio.sleep(0.5)  # waiting for the held email
            await send(ws, {"id": "m", "type": "complete"})
            await subscribe(ws, "q", "{ authors { name } }")
            refused = await receive(ws)
            assert refused["id"] == "q" and refused["type"] == "error"
            assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
            await live.sql("ROLLBACK")
            await rows_eventually(live, "SELECT name FROM authors", [("W",)])  # ended, unsent
            await subscribe(ws, "q", "{ authors { name } }")
            assert await receive(ws) == {
                "id": "q",
                "type": "next",
                "payload": {"data": {"authors": [{"name": "W"}]}},
            }


async def test_subscriptions_completed_as_they_start_make_one_listener_and_log_no_error(
    fresh_postgresql: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL the first subscription opens the connection that LISTENs for changes: a
    subscription completed while it is being made leaves it to the next, not half made."""
    async with live_server("postgresql", fresh_postgresql) as live:
        ws = await acknowledged(live)
        async with ws:
            for i in range(40):
                await subscribe(ws, f"s{i}", "subscription { authorChanged { op } }")
                await asyncio.sleep(0.004)
                await send(ws, {"id": f"s{i}", "type": "complete"})
            await send(ws, {"type": "ping"})
            assert await receive(ws) == {"type": "pong"}
            await live.active(0)
            listening = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
            await rows_eventually(live, listening, [(1,)])
        gc.collect()  # an abandoned connection attempt reports its error when collected
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_sockets_dropped_without_a_close_leave_no_task_watcher_or_connection_behind(
    dialect: Dialect, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    async with live_server(dialect, url) as live:
        engine = live.app.engine
        assert engine is not None
        sockets = []
        for _ in range(3):
            ws = await acknowledged(live)
            for op_id in ("a", "b", "c"):
                query = "subscription { authorChanged { after { name books { title } } } }"
                await subscribe(ws, op_id, query)
            sockets.append(ws)
        await live.active(9)
        for ws in sockets:
            await subscribe(ws, "q", "{ books { id } }")
            ws.transport.abort()  # no close frame: the network broke
        await live.active(0)
        await no_socket_tasks(live)
        for _ in range(100):
            if not engine.change_signal.watching:
                break
            await asyncio.sleep(0.05)
        assert not engine.change_signal.watching
        # every pooled connection is back: one short read per connection the pool may hold
        reads = [live.data("{ authors { id } }") for _ in range(8)]
        await asyncio.wait_for(asyncio.gather(*reads), 10)
