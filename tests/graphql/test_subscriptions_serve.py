"""Subscriptions on the endpoint that ``quiver serve`` runs, with several workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from quiver.graphql.subscriptions import Position
from tests.conftest import ChinookDb
from tests.graphql.mutation_fixtures import bookshop_statements
from tests.graphql.servers import free_port, serving
from tests.graphql.subscription_fixtures import NodeClient, node_modules

pytestmark = pytest.mark.asyncio(loop_scope="session")

PROTOCOL = "graphql-transport-ws"


async def test_quiver_serve_with_two_workers_delivers_changes_made_through_http(
    fresh_sqlite: str,
) -> None:
    modules: Path = node_modules()
    db = ChinookDb("sqlite", fresh_sqlite)
    for statement in bookshop_statements("sqlite"):
        db.query(statement)
    db.close()
    port = free_port()
    with serving("serve", "--db", fresh_sqlite, "--port", str(port), "--workers", "2", port=port):
        # from the start of the change log: no race with the subscription's start
        start = Position(0).encode()
        client = await NodeClient.start(
            modules,
            f"ws://127.0.0.1:{port}/graphql",
            "subscription ($after: String) { authorChanged(after: $after) { op after { name } } }",
            {"after": start},
        )
        try:
            async with httpx.AsyncClient() as http:
                for name in ("Achebe", "Soyinka", "Okri"):
                    answer = await http.post(
                        f"http://127.0.0.1:{port}/graphql",
                        json={
                            "query": "mutation ($i: AuthorCreateInput!) {"
                            " createAuthor(input: $i) { id } }",
                            "variables": {"i": {"name": name, "email": f"{name}@x.org"}},
                        },
                    )
                    assert "errors" not in answer.json(), answer.text
            payloads = await client.next_payloads(3)
            names = [p["data"]["authorChanged"]["after"]["name"] for p in payloads]
            assert names == ["Achebe", "Soyinka", "Okri"]
        finally:
            await client.kill()
            await asyncio.sleep(0.2)


async def test_quiver_serve_refuses_oversized_and_undecodable_messages_in_one_log_line(
    fresh_sqlite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message past subscriptions.max_message_bytes closes 1009 as it arrives; a text
    message that is not UTF-8 closes 1007, logged as one warning, not a traceback."""
    db = ChinookDb("sqlite", fresh_sqlite)
    for statement in bookshop_statements("sqlite"):
        db.query(statement)
    db.close()
    monkeypatch.setenv("QUIVER_SUBSCRIPTIONS_MAX_MESSAGE_BYTES", "4096")
    port = free_port()
    output: list[str] = []
    url = f"ws://127.0.0.1:{port}/graphql"
    with serving("serve", "--db", fresh_sqlite, "--port", str(port), port=port, output=output):
        async with connect(url, subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
            await ws.send('{"type": "connection_init"}')
            assert orjson.loads(await ws.recv()) == {"type": "connection_ack"}
            await ws.send(orjson.dumps({"type": "ping", "payload": {"pad": "x" * 5000}}).decode())
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1009
        async with connect(url, subprotocols=[PROTOCOL]) as ws:  # type: ignore[list-item]
            await ws.send('{"type": "connection_init"}')
            assert orjson.loads(await ws.recv()) == {"type": "connection_ack"}
            ws.protocol.send_frame(Frame(Opcode.TEXT, b'{"type": "ping", "x": "\xff"}'))
            ws.transport.write(b"".join(ws.protocol.data_to_send()))
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1007
    (log,) = output
    assert "Traceback" not in log, log
    assert "a WebSocket client sent a text message that is not UTF-8; closed with 1007" in log
