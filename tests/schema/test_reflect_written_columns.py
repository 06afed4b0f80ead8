"""Reflection records what the database writes by itself: defaults, identities, generated
columns; a mutation's input requires exactly the NOT NULL columns without any of them."""

from __future__ import annotations

import pytest

from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql.mutation_fixtures import bookshop_statements


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_defaults_identities_and_generated_columns_are_reflected(
    dialect: Dialect, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    try:
        for statement in bookshop_statements(dialect):
            db.query(statement)
    finally:
        db.close()
    schema = await reflect_database(url)
    authors = schema.entity("Author")
    books = schema.entity("Book")
    assert authors is not None and books is not None
    flags = {
        f.column: (f.has_default, f.is_identity, f.is_generated)
        for f in (*authors.fields, *books.fields)
    }
    assert flags["country"] == (True, False, False)
    assert flags["name"] == (False, False, False)
    assert flags["bio"] == (False, False, False)
    assert flags["title_length"] == (False, False, True)
    assert flags["id"][1] or flags["id"][0]  # identity (or serial's default)
    required = {f.column for f in authors.fields if f.required_on_insert}
    assert required == {"name", "email"}
    required_books = {f.column for f in books.fields if f.required_on_insert}
    assert required_books == {"author_id", "title"}
