"""Subscriptions on the endpoint that ``quiver serve`` runs, with several workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from quiver.graphql.subscriptions import Position
from tests.conftest import ChinookDb
from tests.graphql.mutation_fixtures import bookshop_statements
from tests.graphql.servers import free_port, serving
from tests.graphql.subscription_fixtures import NodeClient, node_modules

pytestmark = pytest.mark.asyncio(loop_scope="session")


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
