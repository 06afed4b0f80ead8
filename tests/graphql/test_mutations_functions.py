"""Mutations that call a PostgreSQL function returning status, message, entity_key, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from quiver.observers.triggers import install_triggers
from quiver.runtime.errors import ConfigError
from tests.graphql.conftest import Runner
from tests.graphql.mutation_fixtures import open_bookshop

pytestmark = pytest.mark.asyncio(loop_scope="session")

_FUNCTION = """
CREATE FUNCTION fn_publish(p_author_id integer, p_title text, p_pages integer DEFAULT NULL)
RETURNS TABLE(status text, message text, entity_key jsonb, errors jsonb)
LANGUAGE plpgsql AS $$
DECLARE new_id integer;
BEGIN
  INSERT INTO books (author_id, title, pages) VALUES (p_author_id, p_title, p_pages)
  RETURNING id INTO new_id;
  IF p_title = 'raise' THEN
    RAISE EXCEPTION 'titles may not be raise';
  END IF;
  IF p_title = '' THEN
    RETURN QUERY SELECT 'failed:validation', 'A title is required',
      NULL::jsonb, jsonb_build_array(jsonb_build_object(
        'field', 'title', 'code', 'REQUIRED', 'message', 'give a title'));
    RETURN;
  END IF;
  RETURN QUERY SELECT 'success', 'Published', jsonb_build_object('id', new_id), '[]'::jsonb;
END $$
"""


@pytest_asyncio.fixture
async def shop(fresh_postgresql: str) -> AsyncIterator[Runner]:
    runner = await open_bookshop(
        "postgresql",
        fresh_postgresql,
        before=[_FUNCTION],
        functions=[{"name": "publishBook", "function": "fn_publish", "entity": "Book"}],
    )
    try:
        yield runner
    finally:
        await runner.engine.close()
        runner.db.close()


PUBLISH = """mutation($a: Int!, $t: String!, $p: Int) {
  publishBook(authorId: $a, title: $t, pages: $p) {
    status message errors { field code message }
    entity { title pages author { name } }
  }
}"""


async def test_a_function_mutation_answers_its_status_and_the_entity_it_wrote(
    shop: Runner,
) -> None:
    shop.sql("INSERT INTO authors (name, email) VALUES ('Ann', 'a@x')")
    [(author,)] = shop.sql("SELECT id FROM authors")
    data = await shop.data(PUBLISH, {"a": author, "t": "Dune"})
    assert data["publishBook"] == {
        "status": "success",
        "message": "Published",
        "errors": [],
        "entity": {"title": "Dune", "pages": None, "author": {"name": "Ann"}},
    }
    assert shop.sql("SELECT title FROM books") == [("Dune",)]


async def test_a_failed_function_mutation_keeps_nothing_and_says_why(shop: Runner) -> None:
    shop.sql("INSERT INTO authors (name, email) VALUES ('Ann', 'a@x')")
    [(author,)] = shop.sql("SELECT id FROM authors")
    errors = await shop.errors(PUBLISH, {"a": author, "t": ""})
    assert errors[0]["extensions"]["code"] == "MUTATION_FAILED"
    assert errors[0]["extensions"]["status"] == "failed:validation"
    assert errors[0]["extensions"]["errors"][0]["field"] == "title"
    assert errors[0]["message"] == "A title is required"
    assert shop.sql("SELECT COUNT(*) FROM books") == [(0,)]
    raised = await shop.errors(PUBLISH, {"a": author, "t": "raise"})
    assert raised[0]["extensions"]["code"] == "MUTATION_FAILED"
    assert raised[0]["message"] == "titles may not be raise"
    fk = await shop.errors(PUBLISH, {"a": 999, "t": "X"})
    assert fk[0]["extensions"]["code"] == "FOREIGN_KEY_VIOLATION"


async def test_an_unknown_function_is_refused_with_its_location(fresh_postgresql: str) -> None:
    with pytest.raises(ConfigError) as caught:
        await open_bookshop(
            "postgresql",
            fresh_postgresql,
            before=[_FUNCTION],
            functions=[{"name": "publishBook", "function": "fn_publsh"}],
        )
    text = str(caught.value)
    assert "mutations.functions[0].function" in text and "fn_publish" in text


async def test_a_functions_writes_reach_the_change_log_through_the_triggers(shop: Runner) -> None:
    await shop.data('mutation { createAuthor(input: {name: "Ann", email: "a@x"}) { id } }')
    entities = [e for e in shop.engine.schema.entities if e.name == "Book"]
    await install_triggers(shop.engine.database, entities, "quiver_change_log")
    await shop.data(PUBLISH, {"a": 1, "t": "Logged", "p": 3})
    errors = await shop.errors(PUBLISH, {"a": 1, "t": "", "p": 3})
    assert errors[0]["extensions"]["code"] == "MUTATION_FAILED"
    rows = shop.sql("SELECT entity, operation, after_image->>'title' FROM quiver_change_log")
    assert rows == [("Author", "insert", None), ("Book", "insert", "Logged")]


async def test_a_function_mutation_whose_result_type_is_taken_is_refused(
    fresh_postgresql: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        await open_bookshop(
            "postgresql",
            fresh_postgresql,
            before=[_FUNCTION, "CREATE TABLE publish_result (id integer PRIMARY KEY)"],
            functions=[
                {"name": "publish", "function": "fn_publish"},
                {"name": "publishBook", "function": "fn_publish"},
                {"name": "PublishBook", "function": "fn_publish"},
            ],
        )
    assert [d.message for d in caught.value.details] == [
        "the function mutation 'publish' answers with type 'PublishResult', which is also the"
        " type of entity PublishResult",
        "the function mutation 'PublishBook' answers with type 'PublishBookResult', which is"
        " also the result of function mutation 'publishBook'",
    ]
