"""A MariaDB SET column compares as its text in its own character set and collation, as
MariaDB itself compares it with text: a case-sensitive collation tells ``x`` from ``X``, and
members outside the Basic Multilingual Plane (``😀``) are found."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import ChinookDb
from tests.graphql.conftest import Runner, runner_over

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def tags(fresh_mysql: str) -> AsyncIterator[Runner]:
    db = ChinookDb("mysql", fresh_mysql)
    try:
        db.query(
            "CREATE TABLE tags (id INT PRIMARY KEY,"
            " exact SET('x', 'X', '😀', 'b') COLLATE utf8mb4_bin, loose SET('b', 'a'))"
        )
        db.query(
            "INSERT INTO tags VALUES (1, 'x', 'b'), (2, 'X', 'a'), (3, 'b,x', 'b,a'),"
            " (4, '😀', NULL)"
        )
        async with runner_over(db) as runner:
            yield runner
    finally:
        db.close()


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        ('{exact: {eq: "X"}}', [2]),
        ('{exact: {eq: "x"}}', [1]),
        ('{exact: {in: ["X", "b"]}}', [2]),
        ('{exact: {neq: "x"}}', [2, 3, 4]),
        ('{exact: {eq: "😀"}}', [4]),
        ('{exact: {contains: "X"}}', [2]),
        ('{loose: {eq: "A"}}', [2]),  # the default collation ignores case
    ],
)
async def test_a_set_compares_in_its_own_collation(
    tags: Runner, where: str, ids: list[int]
) -> None:
    expected = [row[0] for row in tags.sql(f"SELECT id FROM tags WHERE {_sql(where)} ORDER BY id")]
    assert expected == ids  # what MariaDB itself answers
    data = await tags.data(f"{{ tags(where: {where}, orderBy: [{{id: ASC}}]) {{ id }} }}")
    assert [r["id"] for r in data["tags"]] == ids


def _sql(where: str) -> str:
    """The condition of one of the filters above, as MariaDB compares a SET with text."""
    conditions = {
        '{exact: {eq: "X"}}': "exact = 'X'",
        '{exact: {eq: "x"}}': "exact = 'x'",
        '{exact: {in: ["X", "b"]}}': "exact IN ('X', 'b')",
        '{exact: {neq: "x"}}': "exact <> 'x'",
        '{exact: {eq: "😀"}}': "exact = '😀'",
        '{exact: {contains: "X"}}': "exact LIKE '%%X%%'",
        '{loose: {eq: "A"}}': "loose = 'A'",
    }
    return conditions[where]


async def test_sets_sort_and_page_as_their_text(tags: Runner) -> None:
    data = await tags.data("{ tags(orderBy: [{exact: DESC}]) { id } }")
    ids = [r["id"] for r in data["tags"]]
    expected = [r[0] for r in tags.sql("SELECT id FROM tags ORDER BY CONCAT(exact) DESC, id")]
    assert ids == expected
    page = await tags.data(
        "{ tagsConnection(first: 2, orderBy: [{exact: DESC}]) { pageInfo { endCursor } } }"
    )
    after = page["tagsConnection"]["pageInfo"]["endCursor"]
    rest = await tags.data(
        "query ($a: String) { tagsConnection(first: 5, after: $a, orderBy: [{exact: DESC}])"
        " { nodes { id } } }",
        {"a": after},
    )
    assert [r["id"] for r in rest["tagsConnection"]["nodes"]] == expected[2:]
