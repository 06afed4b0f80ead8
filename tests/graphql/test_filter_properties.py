"""Property tests: random filter trees select the same rows as a reference evaluation in Python,
and no value in a filter can change the SQL text (values only ever become parameters).

String equality and ``ilike`` follow the database's collation (MariaDB's default collation is
case- and accent-insensitive), so on MariaDB the generated trees use the case-sensitive LIKE
family for strings only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")

Row = dict[str, Any]
Tree = dict[str, Any]

INT_FIELDS = {
    "trackId": "track_id",
    "milliseconds": "milliseconds",
    "bytes": "bytes",
    "albumId": "album_id",
    "genreId": "genre_id",
}
STR_FIELDS = {"name": "name", "composer": "composer"}
WORDS = ["A", "The", "Love", "Rock", "Be", "a", "e", "in", "o", "Ü", "You", "of", "Me"]


def _graphql(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_graphql(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_graphql(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _like(pattern: str, text: str, fold: bool) -> bool:
    import re

    out = []
    chars = iter(pattern)
    for c in chars:
        if c == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif c == "%":
            out.append(".*")
        elif c == "_":
            out.append(".")
        else:
            out.append(re.escape(c))
    flags = re.DOTALL | (re.IGNORECASE if fold else 0)
    if fold:
        return re.fullmatch("".join(out), text.lower(), re.DOTALL) is not None
    return re.fullmatch("".join(out), text, flags) is not None


def _leaf(value: Any, op: str, arg: Any) -> bool:
    if op == "isNull":
        return bool((value is None) == arg)
    if op == "nin" and not arg:
        return True  # an empty nin is no condition: null rows pass too
    if value is None:
        return False
    if op == "eq":
        return bool(value == arg)
    if op == "neq":
        return bool(value != arg)
    if op == "gt":
        return bool(value > arg)
    if op == "gte":
        return bool(value >= arg)
    if op == "lt":
        return bool(value < arg)
    if op == "lte":
        return bool(value <= arg)
    if op == "in":
        return value in arg
    if op == "nin":
        return value not in arg
    if op == "like":
        return _like(arg, value, False)
    if op == "ilike":
        return _like(arg.lower(), value, True)
    if op == "startsWith":
        return bool(value.startswith(arg))
    if op == "endsWith":
        return bool(value.endswith(arg))
    if op == "contains":
        return arg in value
    raise AssertionError(op)


def evaluate(tree: Tree, row: Row, albums: dict[int, str]) -> bool:
    for key, val in tree.items():
        if key == "and":
            ok = all(evaluate(t, row, albums) for t in val)
        elif key == "or":
            ok = any(evaluate(t, row, albums) for t in val)
        elif key == "not":
            ok = not evaluate(val, row, albums)
        elif key == "album":
            title = albums.get(row["albumId"]) if row["albumId"] is not None else None
            ok = title is not None and all(
                _leaf(title, op, arg) for op, arg in val["title"].items()
            )
        elif key == "unitPrice":
            ok = all(_leaf(row["unitPrice"], op, arg) for op, arg in val.items())
        else:
            ok = all(_leaf(row[key], op, arg) for op, arg in val.items())
        if not ok:
            return False
    return True


def _int_values(draw: Callable[..., Any]) -> int:
    return int(
        draw(
            st.sampled_from(
                [
                    0,
                    1,
                    2,
                    3,
                    5,
                    10,
                    18,
                    25,
                    100,
                    200_000,
                    300_000,
                    6_000_000,
                    10_000_000,
                    3_500,
                    99_999_999,
                ]
            )
        )
    )


@st.composite
def leaf_filter(draw: Callable[..., Any], string_eq: bool) -> Tree:
    kind = draw(st.sampled_from(["int", "str", "price", "album"]))
    if kind == "int":
        field = draw(st.sampled_from(sorted(INT_FIELDS)))
        op = draw(st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte", "in", "nin", "isNull"]))
        if op in ("in", "nin"):
            arg: Any = [_int_values(draw) for _ in range(draw(st.integers(0, 4)))]
        elif op == "isNull":
            arg = draw(st.booleans())
        else:
            arg = _int_values(draw)
        return {field: {op: arg}}
    if kind == "price":
        op = draw(st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte", "in"]))
        prices = [Decimal("0.99"), Decimal("1.99"), Decimal("1"), Decimal("0.5")]
        arg = (
            draw(st.lists(st.sampled_from(prices), max_size=3))
            if op == "in"
            else draw(st.sampled_from(prices))
        )
        return {"unitPrice": {op: arg}}
    ops = ["like", "startsWith", "endsWith", "contains", "isNull"]
    if string_eq:
        ops += ["eq", "neq", "in", "nin", "ilike"]
    op = draw(st.sampled_from(ops))
    word = draw(st.sampled_from(WORDS))
    if op == "isNull":
        arg = draw(st.booleans())
    elif op in ("in", "nin"):
        arg = draw(st.lists(st.sampled_from([*WORDS, "Balls to the Wall", "Restless"]), max_size=3))
    elif op in ("like", "ilike"):
        arg = draw(st.sampled_from([f"%{word}%", f"{word}%", f"%{word}", f"_{word}%", word]))
    else:
        arg = word
    if kind == "album":
        op = "isNull" if op == "isNull" else op
        if op == "isNull":
            return {"albumId": {"isNull": arg}}
        return {"album": {"title": {op: arg}}}
    field = draw(st.sampled_from(sorted(STR_FIELDS)))
    return {field: {op: arg}}


def filter_tree(string_eq: bool) -> st.SearchStrategy[Tree]:
    leaves = leaf_filter(string_eq)
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.builds(lambda xs: {"and": xs}, st.lists(children, max_size=3)),
            st.builds(lambda xs: {"or": xs}, st.lists(children, max_size=3)),
            st.builds(lambda x: {"not": x}, children),
            st.builds(lambda a, b: {**a, **b}, children, children),
        ),
        max_leaves=6,
    )


def _other_values(tree: Any) -> Any:
    """The same tree with every value changed (and lists kept at their length)."""
    if isinstance(tree, dict):
        return {k: _other_values(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_other_values(v) for v in tree]
    if isinstance(tree, bool):
        return not tree
    if isinstance(tree, int):
        return tree + 7
    if isinstance(tree, Decimal):
        return tree + Decimal("0.01")
    if isinstance(tree, str):
        return tree + "'; DELETE FROM track; --"
    return tree


async def _rows(runner: Runner) -> tuple[list[Row], dict[int, str]]:
    rows = runner.sql(
        "SELECT track_id, name, composer, milliseconds, bytes, unit_price, album_id, genre_id"
        " FROM track ORDER BY track_id"
    )
    keys = [
        "trackId",
        "name",
        "composer",
        "milliseconds",
        "bytes",
        "unitPrice",
        "albumId",
        "genreId",
    ]
    out = []
    for r in rows:
        row = dict(zip(keys, r, strict=True))
        row["unitPrice"] = Decimal(str(row["unitPrice"]))
        out.append(row)
    albums = {r[0]: r[1] for r in runner.sql("SELECT album_id, title FROM album")}
    return out, albums


async def test_random_filter_trees_match_a_reference_evaluation(chinook_runner: Runner) -> None:
    rows, albums = await _rows(chinook_runner)
    loop = asyncio.get_running_loop()
    string_eq = chinook_runner.dialect != "mysql"

    def run(query: str) -> Any:
        return asyncio.run_coroutine_threadsafe(chinook_runner.data(query), loop).result(60)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(filter_tree(string_eq))
    def check(tree: Tree) -> None:
        data = run(f"{{ tracks(where: {_graphql(tree)}) {{ trackId }} }}")
        got = [t["trackId"] for t in data["tracks"]]
        expected = [r["trackId"] for r in rows if evaluate(tree, r, albums)]
        assert got == expected, tree

    await asyncio.to_thread(check)


async def test_no_filter_value_can_change_the_sql_text(chinook_runner: Runner) -> None:
    loop = asyncio.get_running_loop()
    engine = chinook_runner.engine

    def sql_of(tree: Tree) -> str:
        query = f"{{ tracks(where: {_graphql(tree)}) {{ trackId }} }}"
        prepared = engine.prepare(query, None)
        asyncio.run_coroutine_threadsafe(engine.execute(prepared, None), loop).result(60)
        (steps,) = prepared.plans.values()
        return steps[0].sql

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(filter_tree(True))
    def check(tree: Tree) -> None:
        text = sql_of(tree)
        assert sql_of(_other_values(tree)) == text
        assert "DELETE" not in text

    await asyncio.to_thread(check)
