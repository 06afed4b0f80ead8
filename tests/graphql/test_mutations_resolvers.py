"""Python mutations: @quiver.mutation functions run inside the mutation's transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

import quiver
from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.runtime.errors import ConfigError
from quiver.schema.reflect import reflect_database
from quiver.sql.database import Transaction
from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql.conftest import Runner, asgi_client
from tests.graphql.mutation_fixtures import bookshop_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

_MARK = {"postgresql": "${}", "mysql": "%s", "sqlite": "?"}


def _sql(dialect: str, text: str) -> str:
    """``text`` with ``?`` placeholders in ``dialect``'s own."""
    parts = text.split("?")
    out = parts[0]
    for i, part in enumerate(parts[1:], start=1):
        out += _MARK[dialect].replace("{}", str(i)) + part
    return out


def _resolvers(dialect: str) -> list[Any]:
    @quiver.mutation(entity="Author")
    async def sign_author(tx: Transaction, name: str, email: str, bio: str | None = None) -> Any:
        """Insert an author and a first book in one go."""
        rows = await tx.fetch_rows(
            _sql(dialect, "INSERT INTO authors (name, email, bio) VALUES (?, ?, ?) RETURNING id"),
            [name, email, bio],
        )
        await tx.fetch_rows(
            _sql(dialect, "INSERT INTO books (author_id, title) VALUES (?, ?)"),
            [rows[0][0], f"{name}'s first book"],
        )
        if name == "Refused":
            raise quiver.MutationRefusedError("not this one", field="name", code="NOT_ALLOWED")
        return {"id": rows[0][0]}

    @quiver.mutation(entity="Author", many=True)
    async def authors_from(tx: Transaction, country: str, newest_first: bool = False) -> list[int]:
        rows = await tx.fetch_rows(
            _sql(dialect, "SELECT id FROM authors WHERE country = ? ORDER BY id"), [country]
        )
        keys = [r[0] for r in rows]
        return keys[::-1] if newest_first else keys

    return [sign_author, authors_from]


@pytest_asyncio.fixture(params=DIALECTS)
async def shop(request: pytest.FixtureRequest) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    for statement in bookshop_statements(dialect):
        db.query(statement)
    settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
    engine = await GraphQLEngine.open(await reflect_database(url), settings, _resolvers(dialect))
    try:
        yield Runner(engine, db)
    finally:
        await engine.close()
        db.close()


async def test_a_python_mutation_writes_in_the_transaction_and_answers_its_row(
    shop: Runner,
) -> None:
    data = await shop.data(
        'mutation { signAuthor(name: "Ann", email: "a@x") { name country books { title } } }'
    )
    assert data["signAuthor"] == {
        "name": "Ann",
        "country": "NZ",
        "books": [{"title": "Ann's first book"}],
    }
    many = await shop.data('mutation { authorsFrom(country: "NZ") { email } }')
    assert many["authorsFrom"] == [{"email": "a@x"}]
    await shop.data('mutation { signAuthor(name: "Bo", email: "b@x") { id } }')
    await shop.data('mutation { signAuthor(name: "Cy", email: "c@x") { id } }')
    # Rows come back in the order of the keys returned, not in key order.
    newest = await shop.data('mutation { authorsFrom(country: "NZ", newestFirst: true) { name } }')
    assert [a["name"] for a in newest["authorsFrom"]] == ["Cy", "Bo", "Ann"]


async def test_a_refused_or_failing_python_mutation_keeps_nothing(shop: Runner) -> None:
    errors = await shop.errors('mutation { signAuthor(name: "Refused", email: "r@x") { id } }')
    assert errors[0]["extensions"] == {"code": "NOT_ALLOWED", "field": "name"}
    assert shop.sql("SELECT COUNT(*) FROM books") == [(0,)]
    await shop.data('mutation { signAuthor(name: "Ann", email: "a@x") { id } }')
    dup = await shop.errors('mutation { signAuthor(name: "Bob", email: "a@x") { id } }')
    assert dup[0]["extensions"]["code"] == "UNIQUE_VIOLATION"
    assert shop.sql("SELECT name FROM authors") == [("Ann",)]


async def test_a_parameter_without_a_scalar_type_is_refused_where_it_is_declared() -> None:
    with pytest.raises(ConfigError) as caught:

        @quiver.mutation(entity="Author")
        async def bad(tx: Transaction, when: object) -> int:
            return 1

    assert "'when'" in str(caught.value) and "test_mutations_resolvers.py" in str(caught.value)


async def test_an_embedded_app_serves_python_mutations(fresh_sqlite: str) -> None:

    db = ChinookDb("sqlite", fresh_sqlite)
    for statement in bookshop_statements("sqlite"):
        db.query(statement)
    app = quiver.create_app(fresh_sqlite, mutations=_resolvers("sqlite"))
    try:
        async with asgi_client(app) as client:
            r = await client.post(
                "/graphql",
                json={"query": 'mutation { signAuthor(name: "Ann", email: "a@x") { name } }'},
            )
        assert r.json() == {"data": {"signAuthor": {"name": "Ann"}}}
        assert db.query("SELECT title FROM books") == [("Ann's first book",)]
    finally:
        db.close()


async def test_a_python_mutation_named_like_another_or_for_no_entity_is_refused(
    fresh_sqlite: str,
) -> None:
    db = ChinookDb("sqlite", fresh_sqlite)
    for statement in bookshop_statements("sqlite"):
        db.query(statement)
    db.close()

    @quiver.mutation(entity="Author")
    async def create_author(tx: Transaction, name: str) -> int:
        return 1

    @quiver.mutation(entity="Autor")
    async def rename(tx: Transaction, name: str) -> int:
        return 1

    settings = QuiverSettings.model_validate({"database": {"url": fresh_sqlite}})
    schema = await reflect_database(fresh_sqlite)
    with pytest.raises(ConfigError) as caught:
        await GraphQLEngine.open(schema, settings, [create_author, rename])
    text = str(caught.value)
    assert "'createAuthor' has the name of a generated mutation" in text
    assert "unknown entity 'Autor'" in text and "'Author'" in text
    assert "test_mutations_resolvers.py" in text
