"""Deep nesting within the default limits (max_depth 15).

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.graphql.conftest import Runner, xfail_on

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _children_tree(rows: dict[int, Any], node: int, levels: int) -> dict[str, Any]:
    kids = sorted(k for k, p in rows.items() if p == node)[:2]
    if levels == 0:
        return {"id": node}
    return {"id": node, "nodes": [_children_tree(rows, k, levels - 1) for k in kids]}


@pytest.mark.parametrize("levels", [3, 5, 8, 12])
async def test_to_many_relations_nested_many_levels(
    awkward: Runner, request: pytest.FixtureRequest, levels: int
) -> None:
    if levels >= 5:
        xfail_on(
            request,
            awkward.dialect,
            ("sqlite",),
            "on SQLite a query nesting a to-many relation 5 or more levels deep (well inside"
            " max_depth 15), e.g. { nodes(limit: 2) { id nodes(limit: 2) { id nodes ... } } },"
            " exceeds SQLite's parser stack (a QUERY_TOO_COMPLEX error; documented limit)",
        )
    selection = "id"
    for _ in range(levels):
        selection = f"id nodes(limit: 2) {{ {selection} }}"
    data = await awkward.data(f"{{ nodes(limit: 1) {{ {selection} }} }}")
    rows = dict(awkward.sql("SELECT id, parent_id FROM node"))
    assert data["nodes"] == [_children_tree(rows, 1, levels)]


async def test_sqlite_says_clearly_when_a_query_nests_too_deep(awkward: Runner) -> None:
    if awkward.dialect != "sqlite":
        pytest.skip("only SQLite's parser bounds the nesting depth")
    selection = "id"
    for _ in range(12):
        selection = f"id nodes(limit: 2) {{ {selection} }}"
    errors = await awkward.errors(f"{{ nodes(limit: 1) {{ {selection} }} }}")
    assert errors[0]["extensions"]["code"] == "QUERY_TOO_COMPLEX", errors
    assert "nest" in errors[0]["message"] and "PostgreSQL" in errors[0]["message"], errors


@pytest.mark.parametrize("levels", [3, 6, 8, 13])
async def test_to_one_relations_nested_many_levels(
    awkward: Runner, request: pytest.FixtureRequest, levels: int
) -> None:
    if levels >= 7:
        xfail_on(
            request,
            awkward.dialect,
            ("sqlite",),
            "on SQLite a chain of 7 or more to-one relations (well inside max_depth 15), e.g."
            " { node(id: 5) { id parent { id parent { ... } } } }, exceeds SQLite's parser stack"
            " (a QUERY_TOO_COMPLEX error; documented limit)",
        )
    selection = "id"
    for _ in range(levels):
        selection = f"id parent {{ {selection} }}"
    data = await awkward.data(f"{{ node(id: 5) {{ {selection} }} }}")
    rows = dict(awkward.sql("SELECT id, parent_id FROM node"))

    def chain(node: int | None, left: int) -> dict[str, Any] | None:
        if node is None:
            return None
        out: dict[str, Any] = {"id": node}
        if left:
            out["parent"] = chain(rows[node], left - 1)
        return out

    assert data["node"] == chain(5, levels)
