"""The graphql-transport-ws protocol's rules, message by message, and change-log positions."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Response
from websockets.uri import parse_uri

from quiver.graphql.subscriptions import CursorError, Position
from tests.conftest import Dialect
from tests.graphql.subscription_fixtures import LiveServer, live_server

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROTOCOL = "graphql-transport-ws"


@pytest_asyncio.fixture
async def live(fresh_sqlite: str) -> AsyncIterator[LiveServer]:
    async with live_server(
        "sqlite", fresh_sqlite, subscriptions={"connection_init_timeout_ms": 300}
    ) as server:
        yield server


async def send(ws: ClientConnection, message: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(message).decode())


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    return message


async def closed_with(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    return ws.close_code


async def acknowledged(live: LiveServer) -> ClientConnection:
    ws = await connect(live.url, subprotocols=[PROTOCOL])  # type: ignore[list-item]
    await send(ws, {"type": "connection_init"})
    assert await receive(ws) == {"type": "connection_ack"}
    return ws


async def test_a_socket_without_the_subprotocol_is_closed_4406(live: LiveServer) -> None:
    async with connect(live.url) as ws:
        assert await closed_with(ws) == 4406


async def test_no_connection_init_in_time_is_closed_4408(live: LiveServer) -> None:
    async with connect(live.url, subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
        assert await closed_with(ws) == 4408


async def test_subscribe_before_the_ack_is_closed_4401(live: LiveServer) -> None:
    async with connect(live.url, subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
        await send(ws, {"id": "1", "type": "subscribe", "payload": {"query": "{ authors { id } }"}})
        assert await closed_with(ws) == 4401


async def test_a_second_connection_init_is_closed_4429(live: LiveServer) -> None:
    ws = await acknowledged(live)
    async with ws:
        await send(ws, {"type": "connection_init"})
        assert await closed_with(ws) == 4429


@pytest.mark.parametrize("text", ["not json", "[]", '{"type": "bogus"}', '{"type": "subscribe"}'])
async def test_an_invalid_message_is_closed_4400(live: LiveServer, text: str) -> None:
    ws = await acknowledged(live)
    async with ws:
        await ws.send(text)
        assert await closed_with(ws) == 4400


async def test_ping_is_answered_pong(live: LiveServer) -> None:
    ws = await acknowledged(live)
    async with ws:
        await send(ws, {"type": "ping"})
        assert await receive(ws) == {"type": "pong"}


async def test_a_duplicate_operation_id_is_closed_4409(live: LiveServer) -> None:
    ws = await acknowledged(live)
    async with ws:
        subscribe = {
            "id": "a" * 300,  # the close reason names it, cut to what a close frame holds
            "type": "subscribe",
            "payload": {"query": "subscription { authorChanged { op } }"},
        }
        await send(ws, subscribe)
        await live.active(1)
        await send(ws, subscribe)
        assert await closed_with(ws) == 4409
    await live.active(0)


async def test_complete_stops_the_subscription_and_others_go_on(live: LiveServer) -> None:
    ws = await acknowledged(live)
    async with ws:
        for op_id in ("a", "b"):
            await send(
                ws,
                {
                    "id": op_id,
                    "type": "subscribe",
                    "payload": {"query": "subscription { authorChanged { op after { name } } }"},
                },
            )
        await live.active(2)
        await send(ws, {"id": "a", "type": "complete"})
        await live.active(1)
        await live.data('mutation { createAuthor(input: {name: "Eco", email: "e@x.org"}) { id } }')
        message = await receive(ws)
        assert message["id"] == "b" and message["type"] == "next"
        assert message["payload"]["data"]["authorChanged"] == {
            "op": "INSERT",
            "after": {"name": "Eco"},
        }
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.5)


async def test_a_position_keeps_skipped_ids_as_gaps_until_they_arrive_or_time_out() -> None:
    p = Position(10)
    p.advance(13, until=100.0)
    assert (p.high, p.gaps) == (13, {11: 100.0, 12: 100.0})
    p.advance(12, until=200.0)
    assert p.gaps == {11: 100.0}
    p.advance(12, until=200.0)  # read again: nothing changes
    assert (p.high, p.gaps) == (13, {11: 100.0})
    again = Position.decode(p.encode())
    assert (again.high, again.gaps) == (13, {11: 100.0})
    again.expire(now=100.0)
    assert again.gaps == {}


async def test_a_cursor_writes_runs_of_gaps_compactly() -> None:
    p = Position(0)
    p.advance(5001, until=100.0)  # 5000 ids skipped at once (a burst of rollbacks)
    p.advance(5003, until=200.0)
    cursor = p.encode()
    assert len(cursor) < 100
    again = Position.decode(cursor)
    assert again.high == 5003
    assert again.gaps == {**{i: 100.0 for i in range(1, 5001)}, 5002: 200.0}


async def test_a_cursor_not_issued_by_the_server_is_refused() -> None:
    cut = Position(0).encode()[:-2]
    huge = base64.urlsafe_b64encode(b'{"v":2,"h":9,"g":[[1,100000000,1.0]]}').decode()
    for text in ("", "bm9wZQ", "eyJ2IjoxLCJoIjoxLCJnIjpbXX0", "!!", cut, huge):
        with pytest.raises(CursorError, match="not a cursor"):
            Position.decode(text)


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_a_rolled_back_change_id_is_waited_for_then_given_up(
    dialect: Dialect, request: pytest.FixtureRequest
) -> None:
    """A rolled-back id (sequences do not roll back) stays a gap for gap_timeout_s, then
    leaves the cursor."""
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    async with live_server(dialect, url, subscriptions={"gap_timeout_s": 0.5}) as live:
        ws = await acknowledged(live)
        async with ws:
            await send(
                ws,
                {
                    "id": "s",
                    "type": "subscribe",
                    "payload": {"query": "subscription { authorChanged { id cursor } }"},
                },
            )
            await live.active(1)
            await live.sql("BEGIN")
            await live.sql(
                "INSERT INTO quiver_change_log (entity, entity_key, operation, after_image,"
                " changed_fields, transaction_id) VALUES ('Author', '{}', 'insert', '{}', '[]',"
                " 'gone')"
            )
            await live.sql("ROLLBACK")
            for name in ("A", "B"):
                await live.data(
                    "mutation ($i: AuthorCreateInput!) { createAuthor(input: $i) { id } }",
                    {"i": {"name": name, "email": f"{name}@x.org"}},
                )
            first = (await receive(ws))["payload"]["data"]["authorChanged"]
            cursor = Position.decode(first["cursor"])
            assert cursor.high == int(first["id"])
            assert list(cursor.gaps) == [int(first["id"]) - 1]
            started = time.monotonic()
            second = (await receive(ws))["payload"]["data"]["authorChanged"]
            assert int(second["id"]) == int(first["id"]) + 1
            await asyncio.sleep(max(0.0, 0.6 - (time.monotonic() - started)))
            await live.data(
                'mutation { createAuthor(input: {name: "C", email: "c@x.org"}) { id } }'
            )
            third = (await receive(ws))["payload"]["data"]["authorChanged"]
            assert Position.decode(third["cursor"]).gaps == {}


async def test_a_subscribe_message_larger_than_the_request_limit_is_an_error(
    fresh_sqlite: str,
) -> None:
    async with live_server("sqlite", fresh_sqlite, graphql={"max_request_bytes": 200}) as live:
        ws = await acknowledged(live)
        async with ws:
            query = "subscription { authorChanged { op } }" + " " * 300
            await send(ws, {"id": "big", "type": "subscribe", "payload": {"query": query}})
            message = await receive(ws)
            assert message["type"] == "error" and message["id"] == "big"
            assert message["payload"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
            await send(ws, {"type": "ping"})  # the socket stays open
            assert await receive(ws) == {"type": "pong"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"type": "ping", "payload": 5}', "ping payload is not an object"),
        ('{"type": "pong", "payload": []}', "pong payload is not an object"),
        ('{"type": "complete", "id": ""}', "complete without an id"),
        (
            '{"id": "1", "type": "subscribe", "payload": {"query": "{ authors { id } }",'
            ' "extensions": 5}}',
            "subscribe payload",
        ),
        ("[" * 2000 + "]" * 2000, "not JSON (depth limit exceeded"),
        ('{"type": "ping", "payload": {"n": 1e999}}', "not JSON (number is infinity"),
    ],
)
async def test_a_message_out_of_the_protocol_is_closed_4400_saying_why(
    live: LiveServer, text: str, reason: str
) -> None:
    ws = await acknowledged(live)
    async with ws:
        await ws.send(text)
        assert await closed_with(ws) == 4400
        assert ws.close_reason is not None
        assert ws.close_reason.startswith(f"Invalid message received: {reason}")


async def test_a_binary_message_is_read_as_utf8_json_text(live: LiveServer) -> None:
    ws = await acknowledged(live)
    async with ws:
        await ws.send(b'{"type": "ping"}')
        assert await receive(ws) == {"type": "pong"}
        await ws.send(b'{"type": "ping", "payload": {"name": "\xff"}}')
        assert await closed_with(ws) == 4400
        assert ws.close_reason == "Invalid message received: not UTF-8"


async def test_a_message_larger_than_the_limit_is_closed_1009(fresh_sqlite: str) -> None:
    async with live_server(
        "sqlite", fresh_sqlite, subscriptions={"max_message_bytes": 4096}
    ) as live:
        ws = await acknowledged(live)
        async with ws:
            await send(ws, {"type": "ping", "payload": {"pad": "x" * 4000}})  # within it
            assert await receive(ws) == {"type": "pong"}
            await send(ws, {"type": "ping", "payload": {"pad": "é" * 2100}})  # 4200 bytes
            assert await closed_with(ws) == 1009
            assert ws.close_reason == (
                "Message too big: 4236 bytes, the limit is 4096 (subscriptions.max_message_bytes)"
            )


async def test_a_client_that_stops_reading_is_closed_and_its_subscriptions_end(
    fresh_sqlite: str,
) -> None:
    """Changes pile up for a client that reads nothing: the server does not buffer them
    without bound, and ends the subscription once a message waited send_timeout_ms."""
    async with live_server("sqlite", fresh_sqlite, subscriptions={"send_timeout_ms": 400}) as live:
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws = await connect(
            live.url,
            subprotocols=[PROTOCOL],  # type: ignore[list-item]
            sock=sock,
            max_queue=1,
            compression=None,
        )
        try:
            await send(ws, {"type": "connection_init"})
            assert await receive(ws) == {"type": "connection_ack"}
            await send(
                ws,
                {
                    "id": "s",
                    "type": "subscribe",
                    "payload": {"query": "subscription { authorChanged { after { name } } }"},
                },
            )
            await live.active(1)
            for i in range(40):  # about 8 MB of changes, more than the socket buffers hold
                name = base64.b64encode(os.urandom(150_000)).decode()
                await live.data(
                    "mutation ($i: AuthorCreateInput!) { createAuthor(input: $i) { id } }",
                    {"i": {"name": name, "email": f"{i}@x.org"}},
                )
            await live.active(0)  # the subscription ended: the client read nothing
            for _ in range(100):  # and the socket's own task
                if not live.server.server_state.tasks:
                    break
                await asyncio.sleep(0.05)
            assert not live.server.server_state.tasks
        finally:
            ws.transport.abort()


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
            await send(
                ws,
                {
                    "id": "m",
                    "type": "subscribe",
                    "payload": {
                        "query": 'mutation { createAuthor(input: {name: "Woolf",'
                        ' email: "w@x.org"}) { id } }'
                    },
                },
            )
            await asyncio.sleep(0.5)
            await send(ws, {"id": "m", "type": "complete"})
            await send(ws, {"type": "ping"})
            assert await receive(ws) == {"type": "pong"}
            await live.sql("ROLLBACK")
            for _ in range(100):
                if await live.sql("SELECT name FROM authors"):
                    break
                await asyncio.sleep(0.05)
            assert await live.sql("SELECT name FROM authors") == [("Woolf",)]
            with pytest.raises(TimeoutError):  # no next, no complete: the client completed it
                await asyncio.wait_for(ws.recv(), 0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_client_that_stops_reading_query_results_is_closed(fresh_sqlite: str) -> None:
    async with live_server("sqlite", fresh_sqlite, subscriptions={"send_timeout_ms": 400}) as live:
        name = base64.b64encode(os.urandom(150_000)).decode()
        for i in range(40):  # a list of about 8 MB
            await live.sql("INSERT INTO authors (name, email) VALUES (?, ?)", (name, f"{i}@x"))
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ws = await connect(
            live.url,
            subprotocols=[PROTOCOL],  # type: ignore[list-item]
            sock=sock,
            max_queue=1,
            compression=None,
            max_size=None,
        )
        try:
            await send(ws, {"type": "connection_init"})
            assert await receive(ws) == {"type": "connection_ack"}
            for op_id in ("a", "b"):  # the second waits for the client to read the first
                await send(
                    ws,
                    {
                        "id": op_id,
                        "type": "subscribe",
                        "payload": {"query": "{ authors { name } }"},
                    },
                )
            for _ in range(100):
                if not live.server.server_state.tasks:
                    break
                await asyncio.sleep(0.05)
            assert not live.server.server_state.tasks
        finally:
            ws.transport.abort()


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "Forbidden: no credentials were sent"),
        ("Bearer not-the-key", "Forbidden: the API key is not valid"),
        ("Token abc", "Forbidden: the authorization scheme 'Token' is not supported"),
        ("s3cret-key-0123456789", "Forbidden: the authorization scheme is not supported"),
        ("s3cret-key-0123456789 again", "Forbidden: the authorization scheme is not supported"),
    ],
)
async def test_connection_init_without_a_valid_key_is_closed_4403_never_echoing_it(
    fresh_sqlite: str, authorization: str | None, reason: str
) -> None:
    key = "s3cret-key-0123456789"
    async with (
        live_server(
            "sqlite", fresh_sqlite, auth={"api_keys": [{"name": "tester", "key": key}]}
        ) as live,
        connect(live.url, subprotocols=[PROTOCOL]) as ws,  # type: ignore[list-item]
    ):
        payload = {} if authorization is None else {"Authorization": authorization}
        await send(ws, {"type": "connection_init", "payload": payload})
        assert await closed_with(ws) == 4403
        assert ws.close_reason == reason


async def test_a_client_sending_pings_and_reading_nothing_does_not_grow_the_server_buffer(
    fresh_sqlite: str,
) -> None:
    """A ping frame is answered with a pong: a client that sends pings and reads nothing would
    make the server hold the pongs without bound. The server stops reading from it instead."""
    async with live_server("sqlite", fresh_sqlite) as live:
        client = ClientProtocol(parse_uri(live.url), subprotocols=[PROTOCOL])  # type: ignore[list-item]
        client.send_request(client.connect())
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
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
                await send(
                    ws,
                    {
                        "id": op_id,
                        "type": "subscribe",
                        "payload": {
                            "query": "subscription { authorChanged { after { name books {"
                            " title } } } }"
                        },
                    },
                )
            sockets.append(ws)
        await live.active(9)
        for ws in sockets:
            await send(
                ws, {"id": "q", "type": "subscribe", "payload": {"query": "{ books { id } }"}}
            )
            ws.transport.abort()  # no close frame: the network broke
        await live.active(0)
        for _ in range(100):
            if not live.server.server_state.tasks and not engine.change_signal.watching:
                break
            await asyncio.sleep(0.05)
        assert not live.server.server_state.tasks
        assert not engine.change_signal.watching
        # every pooled connection is back: one short read per connection the pool may hold
        reads = [live.data("{ authors { id } }") for _ in range(8)]
        await asyncio.wait_for(asyncio.gather(*reads), 10)


async def test_subscriptions_completed_as_they_start_make_one_listener_and_log_no_error(
    fresh_postgresql: str, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL the first subscription opens the connection that LISTENs for changes: a
    subscription completed while it is being made leaves it to the next, not half made."""
    async with live_server("postgresql", fresh_postgresql) as live:
        ws = await acknowledged(live)
        async with ws:
            for i in range(40):
                await send(
                    ws,
                    {
                        "id": f"s{i}",
                        "type": "subscribe",
                        "payload": {"query": "subscription { authorChanged { op } }"},
                    },
                )
                await asyncio.sleep(0.004)
                await send(ws, {"id": f"s{i}", "type": "complete"})
            await send(ws, {"type": "ping"})
            assert await receive(ws) == {"type": "pong"}
            await live.active(0)
            listening = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'"
            for _ in range(100):
                if await live.sql(listening) == [(1,)]:
                    break
                await asyncio.sleep(0.05)
            assert await live.sql(listening) == [(1,)]
        gc.collect()  # an abandoned connection attempt reports its error when collected
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
            mutation = 'mutation { createAuthor(input: {name: "W", email: "w@x.org"}) { id } }'
            await send(ws, {"id": "m", "type": "subscribe", "payload": {"query": mutation}})
            await asyncio.sleep(0.5)  # waiting for the held email
            await send(ws, {"id": "m", "type": "complete"})
            query = {"query": "{ authors { name } }"}
            await send(ws, {"id": "q", "type": "subscribe", "payload": query})
            refused = await receive(ws)
            assert refused["id"] == "q" and refused["type"] == "error"
            assert refused["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
            await live.sql("ROLLBACK")
            for _ in range(100):  # the mutation ends, unsent
                if await live.sql("SELECT name FROM authors"):
                    break
                await asyncio.sleep(0.05)
            await send(ws, {"id": "q", "type": "subscribe", "payload": query})
            assert await receive(ws) == {
                "id": "q",
                "type": "next",
                "payload": {"data": {"authors": [{"name": "W"}]}},
            }
