"""Aggregates over every scalar.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.graphql.conftest import Runner
from tests.graphql.reference import sample_rows

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_sum_and_avg_of_bigints_beyond_64_bits_are_exact(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ scalarSamplesAggregate(where: {big: {gt: 0}}) { count sum { big } avg { big } } }"
    )
    values = [
        r["big"] for r in sample_rows(chinook_runner) if r["big"] is not None and r["big"] > 0
    ]
    agg = data["scalarSamplesAggregate"]
    assert agg["count"] == len(values)
    assert int(agg["sum"]["big"]) == sum(values) > 2**63
    assert abs(agg["avg"]["big"] - sum(values) / len(values)) <= 1e-9 * abs(agg["avg"]["big"])


async def test_sums_of_bigints_past_64_bits_are_exact_below_zero_and_per_group(
    chinook_runner: Runner,
) -> None:
    data = await chinook_runner.data(
        "{ neg: scalarSamplesAggregate(where: {big: {lt: 0}}) { sum { big } }"
        "  groups: scalarSamplesAggregate { groupBy(fields: [flag]) { keys { flag } sum { big } } }"
        "  none: scalarSamplesAggregate(where: {id: {lt: 0}}) { sum { big } } }"
    )
    rows = sample_rows(chinook_runner)
    negative = [r["big"] for r in rows if r["big"] is not None and r["big"] < 0]
    assert int(data["neg"]["sum"]["big"]) == sum(negative) < -(2**63)
    by_flag: dict[Any, list[int]] = {}
    for r in rows:
        by_flag.setdefault(r["flag"], []).extend([] if r["big"] is None else [r["big"]])
    got = {g["keys"]["flag"]: g["sum"]["big"] for g in data["groups"]["groupBy"]}
    assert {k: None if v is None else int(v) for k, v in got.items()} == {
        bool(k) if k is not None else None: sum(v) if v else None for k, v in by_flag.items()
    }
    assert data["none"]["sum"]["big"] is None


@pytest.mark.parametrize("field", ["big", "amount", "day", "atTime", "created", "uid", "label"])
async def test_min_and_max_of_every_ordered_scalar(
    chinook_runner: Runner, request: pytest.FixtureRequest, field: str
) -> None:
    data = await chinook_runner.data(
        f"{{ scalarSamplesAggregate {{ min {{ {field} }} max {{ {field} }} }} }}"
    )
    rows = sample_rows(chinook_runner)
    values = [r[field] for r in rows if r[field] is not None]
    agg = data["scalarSamplesAggregate"]
    got = [agg["min"][field], agg["max"][field]]
    if field == "label":
        if chinook_runner.dialect == "mysql":  # collation decides; check membership only
            assert set(got) <= set(values)
            return
        expected: list[Any] = [min(values), max(values)]
    elif field == "big":
        got, expected = [int(g) for g in got], [min(values), max(values)]
    elif field == "amount":
        got, expected = [Decimal(g) for g in got], [min(values), max(values)]
    else:
        expected = [str(min(values)), str(max(values))]
        if field == "created":
            expected = [e.replace(" ", "T") for e in expected]
    assert got == expected


async def test_json_columns_are_not_offered_for_ordering_or_grouping(
    chinook_runner: Runner,
) -> None:
    """JSON has no order on PostgreSQL, so ``doc`` is left out of ScalarSampleOrderBy and of the
    groupBy field enum on every database: asking for it is a validation error naming it."""
    for query in (
        "{ scalarSamples(orderBy: [{doc: ASC}]) { id } }",
        "{ scalarSamplesAggregate { groupBy(fields: [doc]) { count } } }",
    ):
        errors = await chinook_runner.errors(query)
        assert errors[0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", errors
        assert "doc" in errors[0]["message"], errors
    data = await chinook_runner.data("{ scalarSamples(orderBy: [{day: ASC}], limit: 1) { doc } }")
    assert len(data["scalarSamples"]) == 1
