"""Refused writes come back as GraphQL errors with a code and the field at fault, and nothing
of the operation is kept."""

from __future__ import annotations

from typing import Any

import pytest

from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _author(shop: Runner, name: str = "Ann", email: str = "ann@x") -> int:
    data = await shop.data(
        "mutation($i: AuthorCreateInput!) { createAuthor(input: $i) { id } }",
        {"i": {"name": name, "email": email}},
    )
    author_id: int = data["createAuthor"]["id"]
    return author_id


def _one(errors: list[Any]) -> dict[str, Any]:
    assert len(errors) == 1, errors
    error: dict[str, Any] = errors[0]
    return error


async def test_a_duplicate_in_a_batch_names_the_row_and_field_and_writes_nothing(
    shop: Runner,
) -> None:
    await _author(shop, "Existing", "taken@x")
    kind, body = await shop.raw(
        """mutation($inputs: [AuthorCreateInput!]!) { createAuthors(inputs: $inputs) { id } }""",
        {
            "inputs": [
                {"name": "New 1", "email": "new1@x"},
                {"name": "New 2", "email": "taken@x"},
                {"name": "New 3", "email": "new3@x"},
            ]
        },
    )
    assert kind == "field_error" and body["data"] is None
    error = _one(body["errors"])
    assert error["extensions"]["code"] == "UNIQUE_VIOLATION"
    assert error["extensions"]["field"] == "email"
    assert error["extensions"]["argumentPath"] == ["inputs", 1, "email"]
    assert error["path"] == ["createAuthors"]
    assert "Author.email" in error["message"]
    assert shop.sql("SELECT name FROM authors") == [("Existing",)]


async def test_a_missing_referenced_row_is_a_foreign_key_violation(shop: Runner) -> None:
    error = _one(
        await shop.errors('mutation { createBook(input: {authorId: 999, title: "T"}) { id } }')
    )
    assert error["extensions"]["code"] == "FOREIGN_KEY_VIOLATION"
    if shop.dialect != "sqlite":  # SQLite does not say which key failed
        assert error["extensions"]["field"] == "authorId"
    assert shop.sql("SELECT COUNT(*) FROM books") == [(0,)]


async def test_deleting_a_referenced_row_is_refused_and_rolled_back(shop: Runner) -> None:
    author = await _author(shop)
    await shop.data(
        'mutation($a: Int!) { createBook(input: {authorId: $a, title: "T"}) { id } }',
        {"a": author},
    )
    error = _one(
        await shop.errors(
            "mutation($a: Int!) { deleteAuthor(id: $a) { id } }",
            {"a": author},
        )
    )
    assert error["extensions"]["code"] == "FOREIGN_KEY_VIOLATION"
    assert shop.sql("SELECT COUNT(*) FROM authors") == [(1,)]


async def test_setting_a_not_null_field_to_null_names_the_field(shop: Runner) -> None:
    author = await _author(shop)
    error = _one(
        await shop.errors(
            "mutation($a: Int!) { updateAuthor(id: $a, set: {name: null}) { id } }",
            {"a": author},
        )
    )
    assert error["extensions"]["code"] == "NOT_NULL_VIOLATION"
    assert error["extensions"]["field"] == "name"
    assert error["extensions"]["argumentPath"] == ["set", "name"]
    assert shop.sql("SELECT name FROM authors") == [("Ann",)]


async def test_a_failed_check_names_the_field(shop: Runner) -> None:
    author = await _author(shop)
    error = _one(
        await shop.errors(
            'mutation($a: Int!) { createBook(input: {authorId: $a, title: "T", pages: 0}) { id } }',
            {"a": author},
        )
    )
    assert error["extensions"]["code"] == "CHECK_VIOLATION"
    assert error["extensions"]["field"] == "pages"
    assert error["extensions"]["argumentPath"] == ["input", "pages"]


async def test_a_value_too_long_for_its_column_is_an_invalid_value(
    shop: Runner, request: pytest.FixtureRequest
) -> None:
    if shop.dialect == "sqlite":
        pytest.skip("SQLite keeps text of any length in a VARCHAR(40) column")
    error = _one(
        await shop.errors(
            'mutation { createAuthor(input: {name: "A", email: "%s"}) { id } }' % ("x" * 41)
        )
    )
    assert error["extensions"]["code"] == "INVALID_VALUE"
    # PostgreSQL does not say which column; email is the only text longer than it says
    assert error["extensions"]["field"] == "email"
    assert error["extensions"]["argumentPath"] == ["input", "email"]
    if shop.dialect == "postgresql":  # refused by the database, not by Quiver's own check
        assert "Author.email: the value is longer than the column holds" in error["message"]
        assert "character varying(40)" in error["message"]
    assert shop.sql("SELECT COUNT(*) FROM authors") == [(0,)]


async def test_a_duplicate_primary_key_names_the_key_field(shop: Runner) -> None:
    await shop.data('mutation { createAuthor(input: {id: 5, name: "A", email: "a@x"}) { id } }')
    error = _one(
        await shop.errors(
            'mutation { createAuthor(input: {id: 5, name: "B", email: "b@x"}) { id } }'
        )
    )
    # MariaDB names the key PRIMARY; SQLite says UNIQUE of its PRIMARY KEY
    assert error["extensions"]["code"] == "UNIQUE_VIOLATION"
    assert error["extensions"]["field"] == "id"
    assert error["extensions"]["argumentPath"] == ["input", "id"]
    assert error["message"].startswith("Author.id: another row already has this value")
    assert shop.sql("SELECT name FROM authors") == [("A",)]


async def test_a_missing_row_is_not_found_and_earlier_fields_are_undone(shop: Runner) -> None:
    error = _one(
        await shop.errors(
            """mutation {
              createAuthor(input: {name: "Undone", email: "u@x"}) { id }
              updateAuthor(id: 424242, set: {bio: "x"}) { id }
            }"""
        )
    )
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert error["path"] == ["updateAuthor"]
    assert "424242" in error["message"]
    assert shop.sql("SELECT COUNT(*) FROM authors") == [(0,)]


async def test_wrongly_typed_input_is_refused_before_any_write(shop: Runner) -> None:
    error = _one(
        await shop.errors(
            "mutation($i: BookCreateInput!) { createBook(input: $i) { id } }",
            {"i": {"authorId": "seven", "title": "T"}},
        )
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "authorId" in error["message"]
    nul = _one(
        await shop.errors(
            "mutation($i: AuthorCreateInput!) { createAuthor(input: $i) { id } }",
            {"i": {"name": "a\u0000b", "email": "e@x"}},
        )
    )
    assert nul["extensions"]["code"] == "BAD_USER_INPUT"
    assert nul["extensions"]["argumentPath"] == ["input", "name"]
    assert shop.sql("SELECT COUNT(*) FROM authors") == [(0,)]


async def test_more_rows_than_the_limit_write_nothing(request: pytest.FixtureRequest) -> None:
    from tests.graphql.mutation_fixtures import open_bookshop

    url: str = request.getfixturevalue("fresh_sqlite")
    runner = await open_bookshop("sqlite", url, max_rows=2)
    try:
        inputs = [{"name": f"N{i}", "email": f"{i}@x"} for i in range(3)]
        query = "mutation($i: [AuthorCreateInput!]!) { createAuthors(inputs: $i) { id } }"
        error = _one(await runner.errors(query, {"i": inputs}))
        assert error["extensions"]["code"] == "TOO_MANY_ROWS"
        assert "mutations.max_rows" in error["message"]
        await runner.data(query, {"i": inputs[:2]})
        await runner.data(query, {"i": inputs[2:]})
        error = _one(
            await runner.errors('mutation { updateAuthors(where: {}, set: {bio: "b"}) { id } }')
        )
        assert error["extensions"]["code"] == "TOO_MANY_ROWS"
        assert runner.sql("SELECT COUNT(*) FROM authors WHERE bio IS NOT NULL") == [(0,)]
    finally:
        await runner.engine.close()
        runner.db.close()


_TRIGGERS = {
    "postgresql": (
        "CREATE FUNCTION no_blocked() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.name = 'blocked' THEN RAISE EXCEPTION 'this name is blocked'; END IF;"
        " RETURN NEW; END $$",
        "CREATE TRIGGER no_blocked BEFORE INSERT ON authors FOR EACH ROW"
        " EXECUTE FUNCTION no_blocked()",
    ),
    "mysql": (
        "CREATE TRIGGER no_blocked BEFORE INSERT ON authors FOR EACH ROW"
        " IF NEW.name = 'blocked' THEN"
        " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'this name is blocked'; END IF",
    ),
    "sqlite": (
        "CREATE TRIGGER no_blocked BEFORE INSERT ON authors WHEN NEW.name = 'blocked'"
        " BEGIN SELECT RAISE(ABORT, 'this name is blocked'); END",
    ),
}


async def test_a_trigger_refusing_a_write_answers_its_own_message(shop: Runner) -> None:
    for statement in _TRIGGERS[shop.dialect]:
        shop.sql(statement)
    error = _one(
        await shop.errors(
            """mutation { createAuthors(inputs: [{name: "ok", email: "o@x"},
            {name: "blocked", email: "b@x"}]) { id } }"""
        )
    )
    assert error["extensions"]["code"] == "MUTATION_FAILED"
    assert error["message"] == "this name is blocked"
    assert shop.sql("SELECT COUNT(*) FROM authors") == [(0,)]
