"""Concurrent updates of one row: each is recorded once, and the change rows chain, each
before image being the after image of the update committed just before it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import DIALECTS, Dialect
from tests.graphql.conftest import Runner
from tests.graphql.mutation_fixtures import open_bookshop

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(params=DIALECTS)
async def shop(request: pytest.FixtureRequest) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    runner = await open_bookshop(dialect, url)
    try:
        yield runner
    finally:
        await runner.engine.close()
        runner.db.close()


def _load(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


async def test_concurrent_updates_of_one_row_chain_their_change_rows(shop: Runner) -> None:
    await shop.data('mutation { createAuthor(input: {name: "Ann", email: "a@x"}) { id } }')
    values = [f"bio {i}" for i in range(8)]

    by_key = "mutation($b: String) { updateAuthor(id: 1, set: {bio: $b}) { bio } }"
    by_where = (
        'mutation($b: String) { updateAuthors(where: {name: {eq: "Ann"}}, set: {bio: $b}) { bio } }'
    )

    async def update(i: int, bio: str) -> None:
        await shop.data(by_key if i % 2 else by_where, {"b": bio})

    await asyncio.gather(*(update(i, v) for i, v in enumerate(values)))
    rows = shop.sql(
        "SELECT before_image, after_image, changed_fields, transaction_id"
        " FROM quiver_change_log WHERE operation = 'update' ORDER BY id"
    )
    assert len(rows) == len(values)
    befores = [_load(r[0])["bio"] for r in rows]
    afters = [_load(r[1])["bio"] for r in rows]
    assert sorted(afters) == sorted(values)
    assert befores == [None, *afters[:-1]]
    assert all(_load(r[2]) == ["bio"] for r in rows)
    assert len({r[3] for r in rows}) == len(values)
    assert shop.sql("SELECT bio FROM authors") == [(afters[-1],)]
