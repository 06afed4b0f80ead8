"""Deep nesting within the default limits (max_depth 15), and past what a database can run.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _children_tree(rows: dict[int, Any], node: int, levels: int) -> dict[str, Any]:
    kids = sorted(k for k, p in rows.items() if p == node)[:2]
    if levels == 0:
        return {"id": node}
    return {"id": node, "nodes": [_children_tree(rows, k, levels - 1) for k in kids]}


@pytest.mark.parametrize("levels", [3, 5, 8, 13])
async def test_to_many_relations_nested_many_levels(awkward: Runner, levels: int) -> None:
    selection = "id"
    for _ in range(levels):
        selection = f"id nodes(limit: 2) {{ {selection} }}"
    data = await awkward.data(f"{{ nodes(limit: 1) {{ {selection} }} }}")
    rows = dict(awkward.sql("SELECT id, parent_id FROM node"))
    assert data["nodes"] == [_children_tree(rows, 1, levels)]


def _to_many(levels: int) -> str:
    selection = "id"
    for _ in range(levels):
        selection = f"id nodes(limit: 1) {{ {selection} }}"
    return f"{{ nodes(limit: 1) {{ {selection} }} }}"


def _to_one(levels: int) -> str:
    selection = "id"
    for _ in range(levels):
        selection = f"id parent {{ {selection} }}"
    return f"{{ node(id: 5) {{ {selection} }} }}"


@pytest.mark.parametrize(("shape", "levels"), [("many", 60), ("many", 100), ("one", 100)])
async def test_a_query_nested_past_what_the_database_runs_is_too_complex(
    awkward: Runner, shape: str, levels: int
) -> None:
    """With graphql.max_depth raised far past its default, a query nesting more levels than
    the compiler or the database can take is a QUERY_TOO_COMPLEX error that says so (it was an
    internal error, or the database's own error); one they can take is answered in full."""
    settings = QuiverSettings.model_validate(
        {"database": {"url": awkward.db.url}, "graphql": {"max_depth": 200, "max_cost": 10**12}}
    )
    engine = await GraphQLEngine.open(await reflect_database(awkward.db.url), settings)
    try:
        document = _to_many(levels) if shape == "many" else _to_one(levels)
        outcome = await engine.execute(engine.prepare(document, None), None)
    finally:
        await engine.close()
    body = orjson.loads(outcome.body)
    if "errors" in body:
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX", body
        assert "nest" in error["message"] and "fewer levels" in error["message"], body
        return
    rows = dict(awkward.sql("SELECT id, parent_id FROM node"))
    if shape == "one":
        node, got = 5, body["data"]["node"]
        for _ in range(levels):  # the chain ends where a node has no parent
            assert got["id"] == node, got
            node, got = rows[node], got.get("parent")
            if node is None:
                assert got is None
                return
        return

    def first_children(node: int, left: int) -> dict[str, Any]:
        if left == 0:
            return {"id": node}
        kids = sorted(k for k, p in rows.items() if p == node)[:1]
        return {"id": node, "nodes": [first_children(k, left - 1) for k in kids]}

    assert body["data"]["nodes"] == [first_children(1, levels)]


@pytest.mark.parametrize("levels", [3, 6, 8, 13])
async def test_to_one_relations_nested_many_levels(awkward: Runner, levels: int) -> None:
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
