"""Writes of a Python mutation reach the change log through the installed change-log triggers,
in the mutation's transaction: a mutation that fails keeps neither its rows nor its change
rows, nor those of the fields run before it in the same operation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.observers.triggers import install_triggers
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql.conftest import Runner
from tests.graphql.mutation_fixtures import bookshop_statements
from tests.graphql.test_mutations_resolvers import _resolvers

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(params=DIALECTS)
async def shop(request: pytest.FixtureRequest) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    for statement in bookshop_statements(dialect):
        db.query(statement)
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
    engine = await GraphQLEngine.open(schema, settings, _resolvers(dialect))
    entities = [e for e in schema.entities if e.name in ("Author", "Book")]
    await install_triggers(engine.database, entities, "quiver_change_log")
    try:
        yield Runner(engine, db)
    finally:
        await engine.close()
        db.close()


def _log(shop: Runner) -> list[tuple[str, str]]:
    return [
        (str(entity), str(op))
        for entity, op in shop.sql("SELECT entity, operation FROM quiver_change_log ORDER BY id")
    ]


async def test_a_python_mutations_writes_are_logged_in_its_transaction(shop: Runner) -> None:
    await shop.data('mutation { signAuthor(name: "Ann", email: "a@x") { id } }')
    assert _log(shop) == [("Author", "insert"), ("Book", "insert")]
    await shop.data('mutation { updateAuthor(id: 1, set: {bio: "b"}) { id } }')
    # The reflected mutation logs itself, once: the triggers stay quiet for it.
    assert _log(shop)[2:] == [("Author", "update")]


async def test_a_failing_operation_keeps_no_change_rows(shop: Runner) -> None:
    errors = await shop.errors(
        """mutation {
          createAuthor(input: {name: "First", email: "f@x"}) { id }
          signAuthor(name: "Ann", email: "a@x") { id }
          refused: signAuthor(name: "Refused", email: "r@x") { id }
        }"""
    )
    assert errors[0]["extensions"]["code"] == "NOT_ALLOWED"
    assert _log(shop) == []
    assert shop.sql("SELECT COUNT(*) FROM authors") == [(0,)]
    errors = await shop.errors(
        """mutation {
          signAuthor(name: "Ann", email: "a@x") { id }
          updateAuthor(id: 999, set: {bio: "x"}) { id }
        }"""
    )
    assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    assert _log(shop) == []
