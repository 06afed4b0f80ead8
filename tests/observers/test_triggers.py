"""Change-log triggers: writes made outside Quiver logged like a mutation's, never twice."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.observers.conftest import Shop
from tests.observers.test_commands import quiver

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _rows(shop: Shop) -> list[dict[str, Any]]:
    rows = shop.runner.db.query(
        "SELECT entity, entity_key, operation, before_image, after_image, changed_fields,"
        " transaction_id FROM quiver_change_log ORDER BY id"
    )
    out = []
    for entity, key, op, before, after, changed, txid in rows:

        def load(v: Any) -> Any:
            return orjson.loads(v) if isinstance(v, str | bytes) else v

        out.append(
            {
                "entity": entity,
                "key": load(key),
                "op": op,
                "before": load(before),
                "after": load(after),
                "changed": load(changed),
                "txid": txid,
            }
        )
    return out


def _shape(row: dict[str, Any]) -> tuple[Any, ...]:
    def keys(image: Any) -> Any:
        return None if image is None else sorted(image)

    return (row["entity"], row["key"], row["op"], keys(row["before"]), keys(row["after"]))


async def _install(shop: Shop, *extra: str) -> str:
    code, out, err = await quiver("observers", "install-triggers", "--db", shop.url, *extra)
    assert code == 0, err
    return out


async def test_outside_writes_are_logged_like_mutations(shop: Shop) -> None:
    await shop.mutate('mutation { createAuthor(input: {name: "Ann", email: "a@x"}) { id } }')
    await shop.mutate('mutation { updateAuthor(id: 1, set: {bio: "hi"}) { id } }')
    await shop.mutate("mutation { deleteAuthor(id: 1) { id } }")
    ours = _rows(shop)
    assert [r["op"] for r in ours] == ["insert", "update", "delete"]

    out = await _install(shop, "--entity", "Author")
    assert "authors" in out
    await _install(shop, "--entity", "Author")  # re-running replaces
    db = shop.runner.db
    db.query("INSERT INTO authors (id, name, email) VALUES (1, 'Ann', 'a@x')")
    db.query("UPDATE authors SET bio = 'hi' WHERE id = 1")
    db.query("UPDATE authors SET bio = 'hi' WHERE id = 1")  # no change: nothing logged
    db.query("DELETE FROM authors WHERE id = 1")
    theirs = _rows(shop)[3:]
    assert [_shape(r) for r in theirs] == [_shape(r) for r in ours]
    for mine, other in zip(ours, theirs, strict=True):
        assert sorted(other["changed"]) == sorted(mine["changed"])
        assert other["txid"]
    assert theirs[1]["changed"] == ["bio"]
    assert theirs[0]["after"]["name"] == "Ann"
    assert theirs[2]["before"]["bio"] == "hi"


async def test_mutations_are_logged_once_and_drop_removes(shop: Shop) -> None:
    await shop.mutate('mutation { createAuthor(input: {name: "Bo", email: "b@x"}) { id } }')
    # Every entity, while the change log and its writers mark exist: Quiver's own tables
    # get no triggers (one on the change log would log its own inserts).
    out = await _install(shop)
    assert "authors" in out
    assert "quiver_change_log" not in out
    await shop.mutate('mutation { updateAuthors(where: {}, set: {bio: "x"}) { id } }')
    assert [r["op"] for r in _rows(shop)] == ["insert", "update"]
    # The mark of Quiver's transaction is gone once it commits: outside writes log again.
    shop.runner.db.query("UPDATE authors SET bio = 'y'")
    assert [r["op"] for r in _rows(shop)] == ["insert", "update", "update"]

    out = await _install(shop, "--drop")
    assert "Dropped" in out
    shop.runner.db.query("UPDATE authors SET bio = 'z'")
    assert len(_rows(shop)) == 3


async def test_unknown_entity_is_refused(shop: Shop) -> None:
    code, _, err = await quiver("observers", "install-triggers", "--db", shop.url, "-x")
    assert code != 0
    code, out, err = await quiver(
        "observers", "install-triggers", "--db", shop.url, "--entity", "Nope"
    )
    assert code != 0
    assert "Nope" in out + err


async def test_images_use_api_field_names(shop: Shop) -> None:
    await shop.mutate('mutation { createAuthor(input: {name: "Ann", email: "a@x"}) { id } }')
    await shop.mutate('mutation { createBook(input: {authorId: 1, title: "T", pages: 3}) { id } }')
    await _install(shop, "--entity", "Book")
    shop.runner.db.query("INSERT INTO books (id, author_id, title, pages) VALUES (2, 1, 'U', 4)")
    mine, other = _rows(shop)[1:]
    assert "authorId" in other["after"]
    assert _shape(other)[0] == _shape(mine)[0] == "Book"
    assert _shape(other)[2:] == _shape(mine)[2:]
    assert other["key"] == {"id": 2}
