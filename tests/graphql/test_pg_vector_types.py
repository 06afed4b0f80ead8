"""PostgreSQL's oidvector and int2vector, array types with operators of their own, are read
as arrays of their elements: served as lists, and filtered, ordered and paged as the arrays
of other types are."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.conftest import ChinookDb
from tests.graphql.conftest import Runner, runner_over

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(loop_scope="session")
async def vectors(fresh_postgresql: str) -> AsyncIterator[Runner]:
    db = ChinookDb("postgresql", fresh_postgresql)
    try:
        db.query("CREATE TABLE vecs (id INT PRIMARY KEY, ov oidvector, iv int2vector)")
        db.query(
            "INSERT INTO vecs VALUES (1, '1 2 3', '4 5'), (2, '1 2', '6'), (3, NULL, NULL),"
            " (4, '0', '4 5')"
        )
        async with runner_over(db) as runner:
            yield runner
    finally:
        db.close()


async def test_vectors_are_served_and_filtered_as_arrays(vectors: Runner) -> None:
    data = await vectors.data("{ vecs(orderBy: [{id: ASC}]) { id ov iv } }")
    assert data["vecs"][:2] == [
        {"id": 1, "ov": ["1", "2", "3"], "iv": [4, 5]},
        {"id": 2, "ov": ["1", "2"], "iv": [6]},
    ]
    data = await vectors.data(
        '{ a: vecs(where: {ov: {contains: ["2"]}}, orderBy: [{id: ASC}]) { id }'
        " b: vecs(where: {iv: {overlaps: [5, 6]}}, orderBy: [{id: ASC}]) { id }"
        " c: vecs(where: {iv: {containedBy: [4, 5]}}, orderBy: [{id: ASC}]) { id } }"
    )
    assert data == {
        "a": [{"id": 1}, {"id": 2}],
        "b": [{"id": 1}, {"id": 2}, {"id": 4}],
        "c": [{"id": 1}, {"id": 4}],
    }


@pytest.mark.parametrize("field", ["ov", "iv"])
@pytest.mark.parametrize("direction", ["ASC", "DESC"])
async def test_connections_page_by_a_vector(vectors: Runner, field: str, direction: str) -> None:
    order = [{field: direction}]
    listed = await vectors.data(
        "query ($o: [VecOrderBy!]) { vecs(orderBy: $o) { id } }", {"o": order}
    )
    expected = [r["id"] for r in listed["vecs"]]
    seen: list[int] = []
    after = None
    for _ in range(6):
        page = await vectors.data(
            "query ($o: [VecOrderBy!], $a: String) { vecsConnection(first: 1, after: $a,"
            " orderBy: $o) { edges { cursor node { id } } pageInfo { hasNextPage } } }",
            {"o": order, "a": after},
        )
        edges = page["vecsConnection"]["edges"]
        seen += [e["node"]["id"] for e in edges]
        if not page["vecsConnection"]["pageInfo"]["hasNextPage"]:
            break
        after = edges[-1]["cursor"]
    assert seen == expected
