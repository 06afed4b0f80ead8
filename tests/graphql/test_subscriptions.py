"""GraphQL subscriptions over WebSocket, checked with the reference client (npm graphql-ws)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import DIALECTS, Dialect
from tests.graphql.subscription_fixtures import LiveServer, NodeClient, live_server, node_modules

pytestmark = pytest.mark.asyncio(loop_scope="session")

FR_AUTHORS = """
subscription ($after: String) {
  authorChanged(where: {country: {eq: "FR"}}, after: $after) {
    op id cursor changedFields
    after { name country }
    before { name }
  }
}
"""


@pytest.fixture(scope="session")
def modules() -> Path:
    return node_modules()


@pytest_asyncio.fixture(params=DIALECTS)
async def live(request: pytest.FixtureRequest) -> AsyncIterator[LiveServer]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    async with live_server(dialect, url) as server:
        yield server


async def create_author(live: LiveServer, name: str, country: str) -> int:
    data = await live.data(
        "mutation ($i: AuthorCreateInput!) { createAuthor(input: $i) { id } }",
        {"i": {"name": name, "email": f"{name.lower()}@example.org", "country": country}},
    )
    return int(data["createAuthor"]["id"])


def changes(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p["data"]["authorChanged"] for p in payloads]


async def test_subscription_delivers_the_matching_changes_with_the_selection(
    live: LiveServer, modules: Path
) -> None:
    client = await NodeClient.start(modules, live.url, FR_AUTHORS)
    try:
        await client.connected()
        await live.active(1)
        zola = await create_author(live, "Zola", "FR")
        await create_author(live, "Frame", "NZ")  # filtered out
        await live.data(
            "mutation ($id: Int!) { updateAuthor(id: $id, set: {country: \"NZ\"}) { id } }",
            {"id": zola},
        )
        got = changes(await client.next_payloads(2))
        assert [c["op"] for c in got] == ["INSERT", "UPDATE"]
        assert got[0]["after"] == {"name": "Zola", "country": "FR"}
        assert got[0]["before"] is None
        # the update moved the row out of the filter: its before image matched
        assert got[1]["after"] == {"name": "Zola", "country": "NZ"}
        assert got[1]["before"] == {"name": "Zola"}
        assert got[1]["changedFields"] == ["country"]
        assert int(got[0]["id"]) < int(got[1]["id"])
        assert all(set(c) == {"op", "id", "cursor", "changedFields", "after", "before"} for c in got)
        await client.quiet(0.5)
    finally:
        await client.kill()
