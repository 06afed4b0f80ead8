"""The ``where:`` filter of every comparable field of the type-matrix table (see
``test_subscriptions_type_matrix.py``) selects for a subscription exactly the rows the list
query's filter selects.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from graphql import GraphQLInputObjectType
from tests.graphql import type_matrix as tm
from tests.graphql.conftest import Runner
from tests.graphql.subscription_fixtures import LiveServer
from tests.graphql.test_mutations_type_matrix import _non_finite
from tests.graphql.test_subscriptions_type_matrix import ManyClient, _names, _running

pytestmark = pytest.mark.asyncio(loop_scope="session")


_OPERATORS = (
    "eq",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "in",
    "nin",
    "isNull",
    "like",
    "ilike",
    "startsWith",
    "endsWith",
    "contains",
    "containedBy",
    "overlaps",
)


def _filters(live: LiveServer, rows: dict[int, Any]) -> list[dict[str, Any]]:
    """A ``where`` of every comparison operator of every field, taking a value the matrix
    holds (the first row's that a GraphQL input can carry)."""
    engine = live.app.engine
    assert engine is not None
    where = engine.graphql_schema.get_type("CellWhere")
    assert isinstance(where, GraphQLInputObjectType)
    out: list[dict[str, Any]] = []
    for name, arg in where.fields.items():
        kind = arg.type
        if name in ("and", "or", "not", "t") or not isinstance(kind, GraphQLInputObjectType):
            continue
        held = [row.get(name) for _, row in sorted(rows.items()) if row.get(name) is not None]
        values = [v for v in held if not _non_finite(v)]
        # NaN and infinities too, where the input can carry them (a Decimal's text)
        values += [v for v in held if isinstance(v, str) and v in tm.NON_FINITE]
        for op in _OPERATORS:
            if op not in kind.fields:
                continue
            if op == "isNull":
                out.append({name: {op: True}})
            else:
                # the first and the last value held: the range's two edges
                edges = values[:1] + values[-1:] + [v for v in values if _non_finite(v)]
                for value in {orjson.dumps(v): v for v in edges}.values():
                    out.append({name: {op: [value] if op in ("in", "nin") else value}})
    return out


async def test_where_of_every_type_delivers_exactly_the_rows_the_query_filter_selects(
    live_matrix: LiveServer, modules: Path
) -> None:
    live = live_matrix
    engine = live.app.engine
    assert engine is not None
    runner = Runner(engine, live.db)
    kind, body = await runner.raw(f"{{ cells {{ {' '.join(_names(live))} }} }}")
    assert kind == "data", body
    rows = {row["id"]: row for row in body["data"]["cells"]}
    filters = _filters(live, rows)
    expected: list[set[int] | str] = []
    for where in filters:
        kind, body = await runner.raw(
            "query($w: CellWhere) { cells(where: $w) { id } }", {"w": where}
        )
        if kind == "data":
            expected.append({row["id"] for row in body["data"]["cells"]})
        else:
            expected.append(body["errors"][0]["extensions"]["code"])
    document = "subscription($w: CellWhere) { cellChanged(where: $w) { after { id } } }"
    problems: list[str] = []
    for start in range(0, len(filters), 90):
        chunk = filters[start : start + 90]
        operations = [{"query": document, "variables": {"w": w}} for w in chunk]
        # the events the change below brings if every subscription matches its query
        due = sum(len(want) for want in expected[start : start + 90] if isinstance(want, set))
        async with ManyClient.run(modules, live.url, operations) as client:
            errors: dict[int, str] = {}
            # every subscription runs (counted by the gauge) or was refused
            while await _running(live) != len(chunk) - len(errors):
                with contextlib.suppress(TimeoutError):
                    event = orjson.loads(
                        await asyncio.wait_for(client.proc.stdout.readline(), 0.2)  # type: ignore[union-attr]
                    )
                    if event["event"] == "error":
                        errors[event["index"]] = event["errors"][0]["extensions"]["code"]
            await live.data(
                "mutation($t: String) { updateCells(where: {}, set: {t: $t}) { id } }",
                {"t": f"changed {start}"},
            )
            got: dict[int, set[int]] = {i: set() for i in range(len(chunk))}
            # one change of every row: its events come together, so once the due ones are in
            # a short silence shows that no more follow (a long one if some are missing)
            received = 0
            with contextlib.suppress(TimeoutError):
                while True:
                    event = orjson.loads(
                        await asyncio.wait_for(
                            client.proc.stdout.readline(),  # type: ignore[union-attr]
                            3 if received < due else 0.5,
                        )
                    )
                    if event["event"] == "error":
                        errors[event["index"]] = event["errors"][0]["extensions"]["code"]
                    elif event["event"] == "next":
                        received += 1
                        got[event["index"]].add(
                            event["payload"]["data"]["cellChanged"]["after"]["id"]
                        )
            for i, where in enumerate(chunk):
                want_i = expected[start + i]
                have: set[int] | str = errors.get(i, got[i])
                if have != want_i:
                    problems.append(
                        f"{orjson.dumps(where).decode()}: query {want_i}, subscription {have}"
                    )
    assert not problems, "\n".join(problems)
