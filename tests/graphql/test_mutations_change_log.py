"""Every row a mutation writes is recorded in the change log, in the same transaction."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from quiver.runtime.context import RequestContext
from tests.conftest import DIALECTS, Dialect
from tests.graphql.conftest import Runner
from tests.graphql.mutation_fixtures import open_bookshop

pytestmark = pytest.mark.asyncio(loop_scope="session")

_COLUMNS = (
    "entity, entity_key, operation, before_image, after_image, changed_fields, actor,"
    " tenant_id, transaction_id, changed_at"
)


@pytest_asyncio.fixture(params=DIALECTS)
async def shop(request: pytest.FixtureRequest) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    runner = await open_bookshop(dialect, url, change_log_table="outbox")
    try:
        yield runner
    finally:
        await runner.engine.close()
        runner.db.close()


def _log(shop: Runner) -> list[dict[str, Any]]:
    rows = shop.sql(f"SELECT {_COLUMNS} FROM outbox ORDER BY id")
    out = []
    for r in rows:
        entry = dict(zip([c.strip() for c in _COLUMNS.split(",")], r, strict=True))
        for k in ("entity_key", "before_image", "after_image", "changed_fields"):
            v = entry[k]
            entry[k] = json.loads(v) if isinstance(v, str | bytes) else v
        out.append(entry)
    return out


async def _run(shop: Runner, query: str, context: RequestContext | None = None) -> Any:
    prepared = shop.engine.prepare(query)
    outcome = await shop.engine.execute(prepared, None, context)
    assert outcome.kind == "data", outcome.body
    return outcome


async def test_insert_update_delete_each_write_change_rows(shop: Runner) -> None:
    who = RequestContext(user_id="user-7", tenant_id="acme")
    await _run(
        shop,
        'mutation { createAuthors(inputs: [{name: "A", email: "a@x"}, {name: "B", email: "b@x"}])'
        " { id } }",
        who,
    )
    await _run(
        shop, 'mutation { updateAuthors(where: {name: {eq: "A"}}, set: {bio: "new"}) { id } }'
    )
    await _run(shop, 'mutation { deleteAuthors(where: {name: {eq: "B"}}) { id } }')
    log = _log(shop)
    assert [(e["entity"], e["operation"]) for e in log] == [
        ("Author", "insert"),
        ("Author", "insert"),
        ("Author", "update"),
        ("Author", "delete"),
    ]
    first, second, update, delete = log
    assert first["before_image"] is None
    assert first["after_image"]["name"] == "A" and first["after_image"]["country"] == "NZ"
    assert first["entity_key"] == {"id": first["after_image"]["id"]}
    assert first["actor"] == "user-7" and first["tenant_id"] == "acme"
    assert first["transaction_id"] == second["transaction_id"]
    assert first["transaction_id"] != update["transaction_id"]
    assert update["actor"] is None
    assert update["before_image"]["bio"] is None and update["after_image"]["bio"] == "new"
    assert update["changed_fields"] == ["bio"]
    assert delete["after_image"] is None and delete["before_image"]["name"] == "B"
    assert all(e["changed_at"] is not None for e in log)


async def test_the_change_log_table_is_not_served_as_an_entity(shop: Runner) -> None:
    await _run(shop, 'mutation { createAuthor(input: {name: "A", email: "a@x"}) { id } }')
    assert len(_log(shop)) == 1
    # A later start reflects the table; the engine still does not serve it.
    again = await open_bookshop_again(shop)
    try:
        data = await again.data('{ __type(name: "Outbox") { name } }')
        assert data["__type"] is None
    finally:
        await again.engine.close()


async def open_bookshop_again(shop: Runner) -> Runner:
    from quiver.config.settings import QuiverSettings
    from quiver.graphql.engine import GraphQLEngine
    from quiver.schema.reflect import reflect_database

    schema = await reflect_database(shop.db.url)
    assert schema.entity("Outbox") is not None
    settings = QuiverSettings.model_validate(
        {"database": {"url": shop.db.url}, "mutations": {"change_log_table": "outbox"}}
    )
    return Runner(await GraphQLEngine.open(schema, settings), shop.db)


async def test_a_failed_mutation_leaves_no_change_rows(shop: Runner) -> None:
    errors = await shop.errors(
        'mutation { createAuthors(inputs: [{name: "A", email: "same"}, {name: "B",'
        ' email: "same"}]) { id } }'
    )
    assert errors[0]["extensions"]["code"] == "UNIQUE_VIOLATION"
    assert shop.sql("SELECT COUNT(*) FROM authors") == [(0,)]
    assert _log(shop) == []
