"""An empty ``nin`` is no condition: it matches every row, null columns included."""

from __future__ import annotations

import pytest

from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")

COUNT = "query($v: [String!]!) { tracksAggregate(where: {composer: {nin: $v}}) { count } }"


async def test_an_empty_nin_on_a_nullable_column_matches_null_rows_too(
    chinook_runner: Runner,
) -> None:
    (total,) = chinook_runner.sql("SELECT COUNT(*) FROM track")[0]
    (nulls,) = chinook_runner.sql("SELECT COUNT(*) FROM track WHERE composer IS NULL")[0]
    assert nulls > 0
    data = await chinook_runner.data(COUNT, {"v": []})
    assert data["tracksAggregate"]["count"] == total
    literal = await chinook_runner.data("{ tracks(where: {composer: {nin: []}}) { trackId } }")
    assert len(literal["tracks"]) == total


async def test_a_non_empty_nin_leaves_null_rows_out_as_every_comparison_does(
    chinook_runner: Runner,
) -> None:
    (expected,) = chinook_runner.sql(
        "SELECT COUNT(*) FROM track WHERE composer IS NOT NULL AND composer NOT IN (?)",
        ("AC/DC",),
    )[0]
    data = await chinook_runner.data(COUNT, {"v": ["AC/DC"]})
    assert data["tracksAggregate"]["count"] == expected


async def test_not_of_an_empty_nin_matches_nothing(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ tracksAggregate(where: {not: {composer: {nin: []}}}) { count } }"
    )
    assert data["tracksAggregate"]["count"] == 0
