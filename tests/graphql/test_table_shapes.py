"""Views, empty tables, tables holding only their key, computed view columns, and tables wider
than a database function takes arguments.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.observers.triggers import install_triggers
from quiver.schema.reflect import reflect_database
from tests.conftest import ChinookDb
from tests.graphql.conftest import Runner
from tests.graphql.test_statement_timeout import execute_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_view_without_a_key_lists_aggregates_and_pages(awkward: Runner) -> None:
    data = await awkward.data(
        "{ pairViews(orderBy: [{label: ASC_NULLS_FIRST}]) { a b label }"
        "  pairViewsAggregate { count min { label } } }"
    )
    rows = awkward.sql("SELECT a, b, label FROM pair_view")
    expected = sorted(rows, key=lambda r: (r[2] is not None, r[2] or ""))
    assert [r["label"] for r in data["pairViews"]] == [r[2] for r in expected]
    assert sorted((r["a"], r["b"]) for r in data["pairViews"]) == sorted((r[0], r[1]) for r in rows)
    assert data["pairViewsAggregate"]["count"] == len(rows)
    seen: list[tuple[int, int]] = []
    after = None
    for _ in range(10):
        page = (
            await awkward.data(
                "query($a: String) { pairViewsConnection(first: 1, after: $a,"
                " orderBy: [{b: DESC}, {a: ASC}]) {"
                " edges { cursor node { a b } } pageInfo { hasNextPage endCursor } } }",
                {"a": after},
            )
        )["pairViewsConnection"]
        seen.extend((e["node"]["a"], e["node"]["b"]) for e in page["edges"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == sorted(((r[0], r[1]) for r in rows), key=lambda k: (-k[1], k[0]))


async def test_an_empty_table_through_every_root_field(awkward: Runner) -> None:
    data = await awkward.data(
        "{ emptyTs { id } emptyT(id: 1) { id }"
        "  emptyTsAggregate { count sum { val amount } avg { val amount } min { name amount }"
        "    max { val } groupBy(fields: [val]) { count keys { val } } }"
        "  f: emptyTsConnection(first: 3) { totalCount edges { cursor } nodes { id }"
        "    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } }"
        "  l: emptyTsConnection(last: 3) { totalCount edges { cursor }"
        "    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"
    )
    assert awkward.sql("SELECT COUNT(*) FROM empty_t")[0][0] == 0
    empty_page = {
        "hasNextPage": False,
        "hasPreviousPage": False,
        "startCursor": None,
        "endCursor": None,
    }
    assert data == {
        "emptyTs": [],
        "emptyT": None,
        "emptyTsAggregate": {
            "count": 0,
            "sum": {"val": None, "amount": None},
            "avg": {"val": None, "amount": None},
            "min": {"name": None, "amount": None},
            "max": {"val": None},
            "groupBy": [],
        },
        "f": {"totalCount": 0, "edges": [], "nodes": [], "pageInfo": empty_page},
        "l": {"totalCount": 0, "edges": [], "pageInfo": empty_page},
    }


async def test_a_table_holding_only_its_key(awkward: Runner) -> None:
    data = await awkward.data(
        "{ onlyPks { id __typename } onlyPk(id: 2) { id } onlyPksAggregate { count min { id }"
        " groupBy(fields: [id]) { __typename keys { id __typename } count } __typename } }"
    )
    ids = [r[0] for r in awkward.sql("SELECT id FROM only_pk ORDER BY id")]
    assert data["onlyPks"] == [{"id": i, "__typename": "OnlyPk"} for i in ids]
    assert data["onlyPk"] == ({"id": 2} if 2 in ids else None)
    agg = data["onlyPksAggregate"]
    assert agg["count"] == len(ids) and agg["min"] == {"id": min(ids)}
    assert agg["__typename"] == "OnlyPkAggregate"
    assert [g["keys"]["id"] for g in agg["groupBy"]] == ids
    assert {g["__typename"] for g in agg["groupBy"]} == {"OnlyPkAggregateGroup"}
    assert {g["keys"]["__typename"] for g in agg["groupBy"]} == {"OnlyPkGroupKey"}


async def test_computed_view_columns_filter_and_sum_as_numbers(
    chinook_runner: Runner, request: pytest.FixtureRequest
) -> None:
    data = await chinook_runner.data(
        '{ seven: customerSpendsAggregate(where: {invoiceCount: {eq: "7"}}) { count }'
        "  customerSpendsAggregate { count sum { totalSpent invoiceCount } max { totalSpent } } }"
    )
    rows = chinook_runner.sql("SELECT customer_id, invoice_count, total_spent FROM customer_spend")
    assert data["seven"]["count"] == sum(1 for r in rows if int(r[1]) == 7)
    agg = data["customerSpendsAggregate"]
    assert agg["count"] == len(rows)
    assert int(agg["sum"]["invoiceCount"]) == sum(int(r[1]) for r in rows)
    assert _dec4(agg["sum"]["totalSpent"]) == _dec4(sum(Decimal(str(r[2])) for r in rows))
    assert _dec4(agg["max"]["totalSpent"]) == _dec4(max(Decimal(str(r[2])) for r in rows))


def _dec4(v: Any) -> Decimal:
    return Decimal(str(v)).quantize(Decimal("0.0001"))


WIDE = 130  # beyond PostgreSQL's 100 function arguments and SQLite's 127


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
async def test_a_table_wider_than_a_function_takes_arguments_is_read_and_written(
    request: pytest.FixtureRequest, dialect: str
) -> None:
    url = str(request.getfixturevalue(f"fresh_{dialect}"))
    columns = [f"c{i}" for i in range(WIDE)]
    execute_statements(
        url,
        [
            "CREATE TABLE wide (id INTEGER PRIMARY KEY, "
            + ", ".join(
                f"{c} {'INTEGER' if i % 2 else 'VARCHAR(10)'}" for i, c in enumerate(columns)
            )
            + ")",
            "INSERT INTO wide VALUES (1, "
            + ", ".join(f"'v{i}'" if i % 2 == 0 else str(i) for i in range(WIDE))
            + ")",
        ],
    )
    row = {"id": 1, **{c: (f"v{i}" if i % 2 == 0 else i) for i, c in enumerate(columns)}}
    fields = " ".join(row)
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
    engine = await GraphQLEngine.open(schema, settings)
    try:

        async def data(query: str) -> Any:
            outcome = await engine.execute(engine.prepare(query, None), {})
            body = orjson.loads(outcome.body)
            assert "errors" not in body, body
            return body["data"]

        read = await data(f"{{ wides {{ {fields} }} wide(id: 1) {{ {fields} }} }}")
        assert read["wides"] == [row] and read["wide"] == row
        assert list(read["wide"]) == list(row)  # in the order asked
        created = await data(f"mutation {{ createWide(input: {{id: 2, c1: 5}}) {{ {fields} }} }}")
        assert created["createWide"] == {"id": 2, **dict.fromkeys(columns), "c1": 5}
        updated = await data(f'mutation {{ updateWide(id: 1, set: {{c0: "w"}}) {{ {fields} }} }}')
        assert updated["updateWide"] == {**row, "c0": "w"}
        deleted = await data("mutation { deleteWide(id: 2) { id c129 } }")
        assert deleted["deleteWide"] == {"id": 2, "c129": None}
        # The change-log trigger's images hold every column, and a write from outside passes.
        await install_triggers(engine.database, list(engine.catalog.entities.values()), "wide_log")
        db = ChinookDb(dialect, url)  # type: ignore[arg-type]
        try:
            db.query("UPDATE wide SET c1 = 7 WHERE id = 1")
            as_text = "CAST({} AS TEXT)" if dialect == "postgresql" else "{}"
            ((before, after),) = db.query(
                f"SELECT {as_text.format('before_image')}, {as_text.format('after_image')}"
                " FROM wide_log"
            )
        finally:
            db.close()
        assert json.loads(before) == {**row, "c0": "w"}
        assert json.loads(after) == {**row, "c0": "w", "c1": 7}
    finally:
        await engine.close()
