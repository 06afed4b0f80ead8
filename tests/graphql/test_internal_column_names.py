"""Tables and columns named like the ones a statement adds beside a table's own (a
connection's ``base`` and ``cnt`` tables and its ``__rn`` and ``__k0`` columns, a
subscription's ``__n``) are served as any others, and the statements that add theirs beside
them answer as for any table, on every database. Column names beginning with ``__``, which
GraphQL keeps for itself, give fields named without it (``__rn`` -> ``rn``; a second column
that camel-cases alike is numbered, ``__rn_`` -> ``rn2``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql.conftest import Runner, runner_over

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: The names, in upper case too: MariaDB and SQLite compare column names ignoring case.
NAMES = ("__rn", "__K0", "__k1", "__n", "__rn_", "__k_0")


def _values(row: int) -> str:
    return ", ".join(str(row * 10 + j) for j in range(len(NAMES)))


def _statements(dialect: Dialect) -> list[str]:
    q = "`" if dialect == "mysql" else '"'
    odd = ", ".join(f"{q}{n}{q} INT" for n in NAMES)
    return [
        f"CREATE TABLE boxes (id INT PRIMARY KEY, label VARCHAR(10), {odd})",
        "CREATE TABLE parts (id INT PRIMARY KEY, box_id INT REFERENCES boxes (id),"
        f" {q}__k0{q} INT, {q}__rn{q} INT)",
        *(f"INSERT INTO boxes VALUES ({i}, 'box {i}', {_values(i)})" for i in range(1, 6)),
        "INSERT INTO parts VALUES (1, 1, 7, 8), (2, 1, 9, 10), (3, 2, 11, 12)",
    ]


@pytest_asyncio.fixture(params=DIALECTS, loop_scope="session")
async def boxes(request: pytest.FixtureRequest) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    try:
        for statement in _statements(dialect):
            db.query(statement)
        async with runner_over(db, pool_max=2) as runner:
            yield runner
    finally:
        db.close()


PAGE = """query ($n: Int, $after: String, $m: Int, $before: String, $total: Boolean!) {
  boxesConnection(orderBy: [{k1: DESC}], first: $n, after: $after, last: $m, before: $before) {
    totalCount @include(if: $total)
    edges { cursor node { id rn k0 k1 n rn2 k02 parts { id k0 rn } } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


async def _page(runner: Runner, **variables: Any) -> dict[str, Any]:
    data = await runner.data(PAGE, {"total": False, **variables})
    page: dict[str, Any] = data["boxesConnection"]
    return page


@pytest.mark.parametrize("total", [False, True])
async def test_connections_page_tables_with_columns_named_like_their_own(
    boxes: Runner, total: bool
) -> None:
    first = await _page(boxes, n=2, total=total)
    assert [e["node"]["id"] for e in first["edges"]] == [5, 4]
    assert first["edges"][0]["node"] == {
        "id": 5, "rn": 50, "k0": 51, "k1": 52, "n": 53, "rn2": 54, "k02": 55, "parts": []
    }  # fmt: skip
    assert first["pageInfo"]["hasNextPage"] is True
    rest = await _page(boxes, n=5, after=first["pageInfo"]["endCursor"], total=total)
    assert [e["node"]["id"] for e in rest["edges"]] == [3, 2, 1]
    assert rest["edges"][-1]["node"]["parts"] == [
        {"id": 1, "k0": 7, "rn": 8},
        {"id": 2, "k0": 9, "rn": 10},
    ]
    assert rest["pageInfo"] == {
        "hasNextPage": False,
        "hasPreviousPage": True,
        "startCursor": rest["edges"][0]["cursor"],
        "endCursor": rest["edges"][-1]["cursor"],
    }
    back = await _page(boxes, m=2, before=rest["edges"][0]["cursor"], total=total)
    assert [e["node"]["id"] for e in back["edges"]] == [5, 4]
    if total:
        assert back["totalCount"] == 5


async def test_a_connection_ordered_by_a_relation_of_such_a_table(boxes: Runner) -> None:
    data = await boxes.data(
        "{ partsConnection(first: 2, orderBy: [{box: {rn: DESC}}, {rn: ASC}]) {"
        " nodes { id } pageInfo { hasNextPage } } }"
    )
    assert data["partsConnection"] == {
        "nodes": [{"id": 3}, {"id": 1}],
        "pageInfo": {"hasNextPage": True},
    }


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_subscriptions_deliver_rows_of_a_table_with_a_column_named_like_their_own(
    dialect: Dialect, request: pytest.FixtureRequest, modules: Path
) -> None:
    from tests.graphql.subscription_fixtures import serve_database, watching

    url: str = request.getfixturevalue(f"fresh_{dialect}")
    q = "`" if dialect == "mysql" else '"'
    db = ChinookDb(dialect, url)
    try:
        db.query(f"CREATE TABLE tags (id INT PRIMARY KEY, {q}__n{q} INT, {q}__n_{q} INT)")
        query = "subscription { tagChanged(where: {n: {gt: 1}}) { after { id n n2 } } }"
        async with (
            serve_database(db, url) as live,
            watching(live, modules, "Tag", query) as client,
        ):
            await live.sql("INSERT INTO tags VALUES (1, 1, 10)")
            await live.sql("INSERT INTO tags VALUES (2, 5, 20)")
            [event] = await client.next_payloads(1)
            assert event["data"] == {"tagChanged": {"after": {"id": 2, "n": 5, "n2": 20}}}
    finally:
        db.close()


@pytest_asyncio.fixture(params=DIALECTS, loop_scope="session")
async def owners(request: pytest.FixtureRequest) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    try:
        for statement in (
            "CREATE TABLE owner (id INT PRIMARY KEY, name VARCHAR(10))",
            "CREATE TABLE base (id INT PRIMARY KEY, owner_id INT REFERENCES owner (id), v INT)",
            "CREATE TABLE cnt (id INT PRIMARY KEY, owner_id INT REFERENCES owner (id), total INT)",
            "CREATE TABLE base_ (id INT PRIMARY KEY, owner_id INT REFERENCES owner (id))",
            "INSERT INTO owner VALUES (1, 'a'), (2, 'b')",
            "INSERT INTO base VALUES (1, 1, 10), (2, 1, 11)",
            "INSERT INTO cnt VALUES (1, 1, 100), (2, 2, 200)",
            "INSERT INTO base_ VALUES (1, 2)",
        ):
            db.query(statement)
        async with runner_over(db, pool_max=2) as runner:
            yield runner
    finally:
        db.close()


async def test_connections_read_tables_named_like_the_statements_own(owners: Runner) -> None:
    data = await owners.data(
        "{ ownersConnection(first: 5) { totalCount nodes { id bases { v } cnts { total }"
        " base2s { id } } }"
        " basesConnection(first: 1, orderBy: [{v: DESC}]) { totalCount"
        " nodes { id owner { cnts { total } } } pageInfo { hasNextPage endCursor } }"
        " cntsConnection(last: 1, where: {owner: {bases: {some: {v: {gt: 1}}}}}) { totalCount"
        " nodes { id } } }"
    )
    assert data["ownersConnection"] == {
        "totalCount": 2,
        "nodes": [
            {"id": 1, "bases": [{"v": 10}, {"v": 11}], "cnts": [{"total": 100}], "base2s": []},
            {"id": 2, "bases": [], "cnts": [{"total": 200}], "base2s": [{"id": 1}]},
        ],
    }
    bases = data["basesConnection"]
    assert bases["totalCount"] == 2
    assert bases["nodes"] == [{"id": 2, "owner": {"cnts": [{"total": 100}]}}]
    assert bases["pageInfo"]["hasNextPage"] is True
    assert data["cntsConnection"] == {"totalCount": 1, "nodes": [{"id": 1}]}
    after = bases["pageInfo"]["endCursor"]
    rest = await owners.data(
        "query ($a: String) { basesConnection(first: 5, after: $a, orderBy: [{v: DESC}]) {"
        " nodes { id } } }",
        {"a": after},
    )
    assert rest["basesConnection"]["nodes"] == [{"id": 1}]
