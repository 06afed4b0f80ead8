"""The graphql-transport-ws protocol's rules, message by message, and change-log positions."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect

from quiver.graphql.subscriptions import CursorError, Position
from tests.conftest import Dialect
from tests.graphql.subscription_fixtures import (
    PROTOCOL,
    LiveServer,
    acknowledged,
    closed_with,
    live_server,
    receive,
    send,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture
async def live(fresh_sqlite: str) -> AsyncIterator[LiveServer]:
    async with live_server(
        "sqlite", fresh_sqlite, subscriptions={"connection_init_timeout_ms": 300}
    ) as server:
        yield server


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
