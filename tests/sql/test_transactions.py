"""Transactions: one connection, committed at the end of the block, rolled back on error, and
refused writes typed with what they broke."""

from __future__ import annotations

import pytest

from quiver.sql.database import ConstraintError, open_database
from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql.mutation_fixtures import bookshop_statements


async def _bookshop(dialect: Dialect, request: pytest.FixtureRequest) -> tuple[str, ChinookDb]:
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    for statement in bookshop_statements(dialect):
        db.query(statement)
    return url, db


def _insert(dialect: Dialect) -> str:
    mark = {"postgresql": "$1, $2", "mysql": "%s, %s", "sqlite": "?, ?"}[dialect]
    return f"INSERT INTO authors (name, email) VALUES ({mark}) RETURNING id"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_transaction_commits_its_writes_and_rolls_back_on_error(
    dialect: Dialect, request: pytest.FixtureRequest
) -> None:
    url, db = await _bookshop(dialect, request)
    database = await open_database(url)
    try:
        async with database.transaction() as tx:
            rows = await tx.fetch_rows(_insert(dialect), ["Ann", "ann@example.org"])
            assert len(rows) == 1 and isinstance(rows[0][0], int)
        assert db.query("SELECT name FROM authors") == [("Ann",)]
        with pytest.raises(ConstraintError) as caught:
            async with database.transaction() as tx:
                await tx.fetch_rows(_insert(dialect), ["Bob", "bob@example.org"])
                await tx.fetch_rows(_insert(dialect), ["Ann again", "ann@example.org"])
        violation = caught.value.violation
        assert violation.kind == "unique"
        assert "email" in violation.columns or violation.constraint == "email"
        assert db.query("SELECT name FROM authors ORDER BY id") == [("Ann",)]
    finally:
        await database.close()
        db.close()
