"""Lists come back in the order asked for, at the top and nested, paged or not, on rows whose
order on disk is neither the key's nor the one asked for (rows written out of key order, then
updated, so that a scan in storage order or an index scan alone would give another order).

Expected orders come from plain SQL through an independent driver, never from Quiver itself.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")

_AUTHORS = 12
_BOOKS = 60


def _fill(shop: Runner) -> None:
    """Authors and books written in an order that is no column's, then half of them updated
    (PostgreSQL writes an updated row's new version at the end of the table)."""
    for n in range(_AUTHORS):
        i = (n * 5) % _AUTHORS + 1  # ids 1, 6, 11, 4, ...: not in key order
        shop.sql(
            "INSERT INTO authors (id, name, email) VALUES (?, ?, ?)",
            (i, f"author {(i * 7) % _AUTHORS:02d}", f"a{i}@example.com"),
        )
    for n in range(_BOOKS):
        i = (n * 37) % _BOOKS + 1
        shop.sql(
            "INSERT INTO books (id, author_id, title, pages) VALUES (?, ?, ?, ?)",
            (i, (i * 11) % _AUTHORS + 1, f"book {(i * 13) % _BOOKS:02d}", (i * 29) % 17 + 1),
        )
    shop.sql("UPDATE authors SET bio = 'x' WHERE id % 2 = 0")
    shop.sql("UPDATE books SET pages = pages + 1 WHERE id % 3 = 0")


def _books(shop: Runner, author: int, order: str, limit: str = "") -> list[dict[str, Any]]:
    rows = shop.sql(
        f"SELECT id, pages FROM books WHERE author_id = ? ORDER BY {order}{limit}", (author,)
    )
    return [{"id": i, "pages": p} for i, p in rows]


async def test_top_and_nested_lists_in_the_order_asked_for(shop: Runner) -> None:
    _fill(shop)
    data = await shop.data(
        "{ authors(orderBy: [{name: DESC}]) { id books(orderBy: [{pages: ASC}, {id: DESC}])"
        " { id pages } } }"
    )
    authors = shop.sql("SELECT id FROM authors ORDER BY name DESC, id")
    expected = [{"id": a, "books": _books(shop, a, "pages ASC, id DESC")} for (a,) in authors]
    assert data["authors"] == expected


async def test_lists_in_key_order_by_default(shop: Runner) -> None:
    _fill(shop)
    data = await shop.data("{ authors { id books { id pages } } }")
    authors = shop.sql("SELECT id FROM authors ORDER BY id")
    assert data["authors"] == [{"id": a, "books": _books(shop, a, "id")} for (a,) in authors]


async def test_paged_top_and_nested_lists_in_the_order_asked_for(shop: Runner) -> None:
    _fill(shop)
    data = await shop.data(
        "{ authors(orderBy: [{name: ASC}], limit: 5, offset: 2) { id"
        " books(orderBy: [{pages: DESC}, {id: ASC}], limit: 3, offset: 1) { id pages } } }"
    )
    authors = shop.sql("SELECT id FROM authors ORDER BY name ASC, id LIMIT 5 OFFSET 2")
    expected = [
        {"id": a, "books": _books(shop, a, "pages DESC, id ASC", " LIMIT 3 OFFSET 1")}
        for (a,) in authors
    ]
    assert data["authors"] == expected
    assert len(expected) == 5


async def test_a_nested_list_ordered_by_its_parent_s_column(shop: Runner) -> None:
    """A list ordered through a to-one relation (the author's name) is ordered by a subquery."""
    _fill(shop)
    data = await shop.data("{ books(orderBy: [{author: {name: DESC}}, {title: ASC}]) { id } }")
    rows = shop.sql(
        "SELECT b.id FROM books b JOIN authors a ON a.id = b.author_id"
        " ORDER BY a.name DESC, b.title ASC, b.id"
    )
    assert [b["id"] for b in data["books"]] == [i for (i,) in rows]
