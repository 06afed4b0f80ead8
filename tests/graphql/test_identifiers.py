"""Awkward identifiers on SQLite, PostgreSQL and MariaDB: quoted, reserved, long and non-ASCII
names, and names that collide with the API's own names or are not GraphQL names.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.runtime.errors import QuiverError
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb
from tests.graphql.conftest import Runner
from tests.graphql.edge_fixtures import LONG_COLUMN, LONG_FIELD, quote

pytestmark = pytest.mark.asyncio(loop_scope="session")


def q(runner: Runner, name: str) -> str:
    return quote(runner.dialect, name)  # type: ignore[arg-type]


MIXED_FIELDS = {
    "id": "Id",
    "order": "order",
    "select": "select",
    "group": "group",
    "pctCol": "pct%col",
    "quoTe": "quo'te",
    LONG_FIELD: LONG_COLUMN,
    "camelCol": "Camel Col",
}


def _mixed_rows(
    runner: Runner, where: str = "", params: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    cols = ", ".join(q(runner, c) for c in MIXED_FIELDS.values())
    rows = runner.sql(
        f"SELECT {cols} FROM {q(runner, 'Mixed Case')} {where} ORDER BY {q(runner, 'Id')}", params
    )
    return [dict(zip(MIXED_FIELDS, r, strict=True)) for r in rows]


async def test_quoted_reserved_and_long_identifiers_round_trip(awkward: Runner) -> None:
    fields = " ".join(MIXED_FIELDS)
    data = await awkward.data(f"{{ mixedCases {{ {fields} }} }}")
    assert data["mixedCases"] == _mixed_rows(awkward)
    assert len(data["mixedCases"]) == 4


async def test_filters_on_quoted_columns_keep_percent_and_quotes_as_data(awkward: Runner) -> None:
    data = await awkward.data(
        '{ a: mixedCases(where: {pctCol: {contains: "%"}}) { id }'
        '  b: mixedCases(where: {quoTe: {eq: "it\'s"}}) { id }'
        '  c: mixedCases(where: {pctCol: {like: "%\\\\\\\\%"}}) { id }'
        '  d: mixedCases(where: {group: {in: ["g1"]}, select: {gt: 0}}) { id }'
        '  e: mixedCases(where: {quoTe: {contains: "\\""}}) { id } }'
    )
    rows = _mixed_rows(awkward)
    assert [r["id"] for r in data["a"]] == [r["id"] for r in rows if "%" in r["pctCol"]]
    assert [r["id"] for r in data["b"]] == [r["id"] for r in rows if r["quoTe"] == "it's"]
    assert [r["id"] for r in data["c"]] == [r["id"] for r in rows if "\\" in r["pctCol"]]
    assert [r["id"] for r in data["d"]] == [
        r["id"] for r in rows if r["group"] == "g1" and (r["select"] or 0) > 0
    ]
    assert [r["id"] for r in data["e"]] == [
        r["id"] for r in rows if r["quoTe"] is not None and '"' in r["quoTe"]
    ]
    assert data["a"] and data["b"] and data["c"] and data["d"] and data["e"]


async def test_aggregates_and_ordering_on_quoted_columns(awkward: Runner) -> None:
    data = await awkward.data(
        "{ mixedCasesAggregate { count min { order select } max { order }"
        f" sum {{ select {LONG_FIELD} }} groupBy(fields: [group]) {{ keys {{ group }} count }} }}"
        "  asc: mixedCases(orderBy: [{order: ASC}]) { id }"
        "  desc: mixedCases(orderBy: [{select: DESC_NULLS_LAST}]) { id } }"
    )
    t, o, s, g, long = (
        q(awkward, "Mixed Case"),
        q(awkward, "order"),
        q(awkward, "select"),
        q(awkward, "group"),
        q(awkward, LONG_COLUMN),
    )
    count, mn, mx, smin, ssum, lsum = awkward.sql(
        f"SELECT COUNT(*), MIN({o}), MAX({o}), MIN({s}), SUM({s}), SUM({long}) FROM {t}"
    )[0]
    agg = data["mixedCasesAggregate"]
    assert agg["count"] == count
    assert agg["min"] == {"order": mn, "select": smin}
    assert agg["max"] == {"order": mx}
    assert int(agg["sum"]["select"]) == int(ssum)
    assert int(agg["sum"][LONG_FIELD]) == int(lsum)
    groups = awkward.sql(f"SELECT {g}, COUNT(*) FROM {t} GROUP BY {g}")
    got = {x["keys"]["group"]: x["count"] for x in agg["groupBy"]}
    assert got == {r[0]: r[1] for r in groups}
    rows = _mixed_rows(awkward)
    non_null = sorted((r for r in rows if r["order"] is not None), key=lambda r: r["order"])
    assert [r["id"] for r in data["asc"]] == [r["id"] for r in non_null] + [
        r["id"] for r in rows if r["order"] is None
    ]
    by_select = sorted((r for r in rows if r["select"] is not None), key=lambda r: -r["select"]) + [
        r for r in rows if r["select"] is None
    ]
    assert [r["id"] for r in data["desc"]] == [r["id"] for r in by_select]


async def test_a_table_named_order_with_columns_from_and_where(awkward: Runner) -> None:
    data = await awkward.data(
        '{ orders(where: {from: {gt: 1}, where: {eq: "w"}}) { id from where }'
        "  order(id: 2) { id from where } ordersAggregate { count sum { from } } }"
    )
    t, f, w = q(awkward, "order"), q(awkward, "from"), q(awkward, "where")
    rows = awkward.sql(f"SELECT id, {f}, {w} FROM {t} WHERE {f} > 1 AND {w} = 'w' ORDER BY id")
    assert [(r["id"], r["from"], r["where"]) for r in data["orders"]] == [tuple(r) for r in rows]
    (row2,) = awkward.sql(f"SELECT id, {f}, {w} FROM {t} WHERE id = 2")
    assert data["order"] == {"id": row2[0], "from": row2[1], "where": row2[2]}
    count, total = awkward.sql(f"SELECT COUNT(*), SUM({f}) FROM {t}")[0]
    assert data["ordersAggregate"] == {"count": count, "sum": {"from": str(int(total))}}


async def test_non_ascii_column_names_get_a_readable_field_name(awkward: Runner) -> None:
    data = await awkward.data('{ __type(name: "MixedCase") { fields { name } } }')
    names = {f["name"] for f in data["__type"]["fields"]}
    assert not names & {"nCD"}, names


async def test_columns_named_like_the_combinators_stay_filterable(awkward: Runner) -> None:
    data = await awkward.data(
        '{ __type(name: "LogicWhere") { inputFields { name type { name } } } }'
    )
    filters = {f["name"]: f["type"]["name"] for f in data["__type"]["inputFields"]}
    string_filters = [name for name, type_name in filters.items() if type_name == "StringFilter"]
    assert len(string_filters) == 3, filters
    rows = awkward.sql(f"SELECT id, {q(awkward, 'and')} FROM logic ORDER BY id")
    name = string_filters[0]
    data = await awkward.data(f'{{ logics(where: {{{name}: {{eq: "a"}}}}) {{ id }} }}')
    assert [r["id"] for r in data["logics"]] == [i for i, v in rows if v == "a"]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_table_and_column_whose_names_start_with_a_digit(
    request: pytest.FixtureRequest, dialect: str
) -> None:
    """Either the API serves the table under a valid GraphQL name, or reflection refuses it
    with a QuiverError that names it; never a GraphQLError traceback out of GraphQLEngine.open."""
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)  # type: ignore[arg-type]
    try:
        t, c = quote(dialect, "1st table"), quote(dialect, "2nd col")  # type: ignore[arg-type]
        db.query(f"CREATE TABLE {t} ({c} INTEGER PRIMARY KEY, val INTEGER)")
        db.query(f"INSERT INTO {t} VALUES (1, 10), (2, 20)")
        schema = await reflect_database(url)
        settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 1}})
        try:
            engine = await GraphQLEngine.open(schema, settings)
        except QuiverError as exc:
            assert "1st table" in str(exc)
            return
        try:
            (entity,) = schema.entities
            prepared = engine.prepare(f"{{ {entity.list_field} {{ val }} }}", None)
            outcome = await engine.execute(prepared, None)
            assert orjson.loads(outcome.body) == {
                "data": {entity.list_field: [{"val": 10}, {"val": 20}]}
            }
        finally:
            await engine.close()
    finally:
        db.close()
