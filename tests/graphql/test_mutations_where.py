"""`where` on batch updates and deletes: required, `{}` is the explicit "every row", and the
empty forms that mean "no row" (an empty `or`, `in: []`, `not: {}`) write nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

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


async def test_where_is_required_and_empty_forms_match_what_they_say(shop: Runner) -> None:
    await shop.data(
        'mutation { createAuthors(inputs: [{name: "A", email: "a@x"},'
        ' {name: "B", email: "b@x", bio: "x"}]) { id } }'
    )
    for mutation in ("deleteAuthors { id }", 'updateAuthors(set: {bio: "y"}) { id }'):
        kind, body = await shop.raw(f"mutation {{ {mutation} }}")
        assert kind == "request_error", body
        assert "'where'" in body["errors"][0]["message"]
        assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    for where in ("{or: []}", "{id: {in: []}}", "{not: {}}"):
        data = await shop.data(f"mutation {{ deleteAuthors(where: {where}) {{ id }} }}")
        assert data["deleteAuthors"] == [], where
    assert shop.sql("SELECT COUNT(*) FROM authors") == [(2,)]
    data = await shop.data('mutation { updateAuthors(where: {name: {}}, set: {bio: "z"}) { id } }')
    assert len(data["updateAuthors"]) == 2
    data = await shop.data("mutation { deleteAuthors(where: {}) { name } }")
    assert sorted(a["name"] for a in data["deleteAuthors"]) == ["A", "B"]
    assert shop.sql("SELECT COUNT(*) FROM quiver_change_log WHERE operation = 'delete'") == [(2,)]
