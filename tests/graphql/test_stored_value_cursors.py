"""A connection's pages walk past rows whose order key holds a value its field's scalar does
not take (PostgreSQL's 24:00:00 and dates of 4713 BC or after 9999, MariaDB's TIME beyond a
day and zero dates, SQLite text that is no date): the page ending on such a row gives a
cursor, and the next page starts after it, as it does for NaN and the infinities."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql.conftest import Runner, runner_over

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Per dialect: the table, its rows (two alike in every key, so ties break on the id), and
#: the order keys holding stored values their scalar does not take.
TABLES: dict[Dialect, tuple[list[str], list[str]]] = {
    "postgresql": (
        [
            "CREATE TABLE slots (id INT PRIMARY KEY, at TIME, zoned TIMETZ, day DATE,"
            " stamp TIMESTAMP, instant TIMESTAMPTZ)",
            "INSERT INTO slots VALUES"
            " (1, '24:00:00', '24:00:00+05', '4713-01-01 BC', '0044-03-15 12:00:00 BC',"
            " '0001-01-01 00:00:00+05'),"
            " (2, '24:00:00', '24:00:00+05', '4713-01-01 BC', '0044-03-15 12:00:00 BC',"
            " '0001-01-01 00:00:00+05'),"
            " (3, '10:00:00', '10:00:00+02', '10000-01-01', '294276-12-31 23:59:59',"
            " '10000-01-01 00:00:00+00'),"
            " (4, '00:00:00', '00:00:00-12', '2020-01-01', 'infinity', '2020-01-01 00:00:00+00'),"
            " (5, NULL, NULL, NULL, NULL, NULL)",
        ],
        ["at", "zoned", "day", "stamp", "instant"],
    ),
    "mysql": (
        [
            "SET SESSION sql_mode = ''",
            "CREATE TABLE slots (id INT PRIMARY KEY, at TIME, day DATE, stamp DATETIME(3))",
            "INSERT INTO slots VALUES"
            " (1, '-01:00:00', '0000-00-00', '0000-00-00 00:00:00'),"
            " (2, '-01:00:00', '0000-00-00', '0000-00-00 00:00:00'),"
            " (3, '100:00:00', '2020-00-15', '2020-01-00 10:00:00.5'),"
            " (4, '10:00:00', '2020-01-15', '2020-01-15 10:00:00'),"
            " (5, NULL, NULL, NULL)",
            "SET SESSION sql_mode = DEFAULT",
        ],
        ["at", "day", "stamp"],
    ),
    "sqlite": (
        [
            "CREATE TABLE slots (id INTEGER PRIMARY KEY, at TIME, day DATE, u UUID)",
            "INSERT INTO slots VALUES"
            " (1, '24:00:00', 'yesterday', 'abc'),"
            " (2, '24:00:00', 'yesterday', 'abc'),"
            " (3, 'noon', '2021-02-30', 'not-a-uuid'),"
            " (4, '10:00:00', '2020-01-15', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),"
            " (5, NULL, NULL, NULL)",
        ],
        ["at", "day", "u"],
    ),
}
DIRECTIONS = ("ASC", "DESC", "ASC_NULLS_FIRST", "DESC_NULLS_LAST")


@pytest_asyncio.fixture(params=DIALECTS, loop_scope="session")
async def slots(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    statements, _ = TABLES[dialect]
    if dialect == "sqlite":
        path = tmp_path / "slots.sqlite"
        with sqlite3.connect(path) as conn:
            for statement in statements:
                conn.execute(statement)
        conn.close()
        url = f"sqlite:///{path.absolute()}"
    else:
        url = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)
    try:
        if dialect != "sqlite":
            for statement in statements:
                db.query(statement)
        async with runner_over(db, pool_max=2) as runner:
            yield runner
    finally:
        db.close()


PAGE = """query ($order: [SlotOrderBy!], $n: Int, $after: String, $m: Int, $before: String) {
  slotsConnection(orderBy: $order, first: $n, after: $after, last: $m, before: $before) {
    edges { cursor node { id } }
    pageInfo { hasNextPage hasPreviousPage }
  }
}"""


async def _walk(runner: Runner, order: list[dict[str, str]], size: int, forward: bool) -> list[int]:
    """The ids of every page of ``size`` rows, cursor after cursor, in the order's direction."""
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        variables: dict[str, Any] = {"order": order}
        if forward:
            variables.update(n=size, after=cursor)
        else:
            variables.update(m=size, before=cursor)
        data = (await runner.data(PAGE, variables))["slotsConnection"]
        edges = data["edges"]
        ids = [e["node"]["id"] for e in edges]
        seen = seen + ids if forward else ids + seen
        more = data["pageInfo"]["hasNextPage" if forward else "hasPreviousPage"]
        if not more:
            return seen
        cursor = edges[-1 if forward else 0]["cursor"]
    raise AssertionError(f"the pages did not end: {seen}")


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("size", [1, 2])
async def test_pages_walk_past_stored_values_the_scalar_does_not_take(
    slots: Runner, direction: str, size: int
) -> None:
    _, keys = TABLES[slots.dialect]  # type: ignore[index]
    for key in keys:
        order = [{key: direction}]
        listed = await slots.data(
            "query ($order: [SlotOrderBy!]) { slots(orderBy: $order) { id } }", {"order": order}
        )
        expected = [row["id"] for row in listed["slots"]]
        assert sorted(expected) == [1, 2, 3, 4, 5]
        assert await _walk(slots, order, size, forward=True) == expected, key
        assert await _walk(slots, order, size, forward=False) == expected, key


async def test_a_cursor_on_such_a_value_still_refuses_another_order(slots: Runner) -> None:
    _, keys = TABLES[slots.dialect]  # type: ignore[index]
    data = await slots.data(PAGE, {"order": [{keys[0]: "ASC"}], "n": 1})
    cursor = data["slotsConnection"]["edges"][0]["cursor"]
    kind, body = await slots.raw(PAGE, {"order": [{keys[0]: "DESC"}], "n": 1, "after": cursor})
    assert kind != "data", body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
