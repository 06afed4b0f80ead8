"""Where the dialect says so (PostgreSQL), to-one relations found by their target's primary key
join the rows they belong to (one LEFT JOIN instead of a subquery per row) and a list's objects
are rows of a derived table named by their keys; the answers are those of the plain plan (a
subquery per relation, objects built by the object function), on every dialect."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from quiver.graphql.planner import plan_operation
from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _answer_with_subqueries(runner: Runner, query: str, variables: dict[str, Any]) -> Any:
    """The data of ``query`` planned with every to-one relation as a subquery and every
    object built by the dialect's object function."""
    engine = runner.engine
    prepared = engine.prepare(query, None)
    assert prepared.operation is not None
    dialect = dataclasses.replace(engine.dialect, joins_to_one=False, json_records=False)
    (step,) = plan_operation(
        engine.catalog,
        engine.graphql_schema,
        dialect,
        prepared.operation,
        prepared.fragments,
        variables,
        engine.cursors,
    )
    assert " LEFT JOIN " not in step.sql and " LATERAL " not in step.sql
    body = await engine.database.fetch_json(step.sql, [s.value(variables) for s in step.slots])
    return orjson.loads(body or b"null")


def _planned_sql(runner: Runner, query: str) -> str:
    prepared = runner.engine.prepare(query, None)
    (steps,) = prepared.plans.values()
    (step,) = steps
    return step.sql


@pytest.mark.parametrize(
    ("query", "variables", "joins"),
    [
        (
            "{ albums(limit: 20, offset: 3) { title artist { name }"
            " tracks { name genre { name } mediaType { name } } } }",
            {},
            3,
        ),
        (
            "query($id: Int!) { track(trackId: $id) { name album { title artist { name } } } }",
            {"id": 1},
            2,
        ),
        ("{ tracks(where: {genreId: {isNull: true}}) { trackId genre { name } } }", {}, 1),
        ("{ invoiceLines(limit: 50) { track { name album { title } } invoice { total } } }", {}, 3),
    ],
)
async def test_to_one_relations_join_their_rows_and_answer_as_subqueries_do(
    chinook_runner: Runner, query: str, variables: dict[str, Any], joins: int
) -> None:
    data = await chinook_runner.data(query, variables)
    root = next(iter(data))
    assert data[root] == await _answer_with_subqueries(chinook_runner, query, variables)
    text = _planned_sql(chinook_runner, query)
    expected = joins if chinook_runner.dialect == "postgresql" else 0
    assert text.count(" LEFT JOIN ") == expected, text


async def test_a_joined_to_one_relation_is_null_where_the_key_is(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ employees { employeeId employeeByReportsTo { employeeId lastName } } }"
    )
    rows = chinook_runner.sql(
        "SELECT e.employee_id, m.employee_id, m.last_name FROM employee e"
        " LEFT JOIN employee m ON m.employee_id = e.reports_to ORDER BY e.employee_id"
    )
    got = [
        (
            e["employeeId"],
            e["employeeByReportsTo"]["employeeId"] if e["employeeByReportsTo"] else None,
            e["employeeByReportsTo"]["lastName"] if e["employeeByReportsTo"] else None,
        )
        for e in data["employees"]
    ]
    assert got == [tuple(r) for r in rows]
    assert any(r[1] is None for r in rows)


async def test_keys_longer_than_an_identifier_keep_their_full_names(chinook_runner: Runner) -> None:
    long = "aTitleWhoseNameIsLongerThanAnyIdentifierPostgreSQLKeepsInItsCatalog_x"
    assert len(long) > 63
    query = (
        f"{{ albums(limit: 2) {{ {long}: title __typename"
        f" artist {{ {long}: name }} tracks(limit: 1) {{ {long}: name }} }} }}"
    )
    data = await chinook_runner.data(query)
    rows = chinook_runner.sql(
        "SELECT al.title, ar.name FROM album al JOIN artist ar ON ar.artist_id = al.artist_id"
        " ORDER BY al.album_id LIMIT 2"
    )
    assert [(a[long], a["__typename"], a["artist"][long]) for a in data["albums"]] == [
        (title, "Album", name) for title, name in rows
    ]
    assert all(set(a["tracks"][0]) == {long} for a in data["albums"])
    assert data["albums"] == await _answer_with_subqueries(chinook_runner, query, {})
