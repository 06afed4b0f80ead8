"""Adversarial tests of the GraphQL engine on SQLite, PostgreSQL and MariaDB.

Awkward schemas (quoted and reserved identifiers, composite keys, self references, views, empty
tables), every filter operator on every scalar, pagination corner cases, documents with
fragments, aliases and directives, and the HTTP surface. Expected results come from plain SQL
through independent drivers, or from a reference evaluation in Python over rows read with plain
SQL; never from Quiver itself.

A test that shows a defect of the engine is marked ``xfail(strict=True)`` on the databases where
the defect shows, with the defect in its reason, so it starts failing as soon as it is fixed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import Engine
from quiver.graphql.http import create_app
from quiver.runtime.errors import QuiverError
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb, Dialect, create_empty_database, drop_database
from tests.graphql.conftest import Runner
from tests.graphql.edge_fixtures import LONG_COLUMN, LONG_FIELD, build_sqlite, quote, statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Codes of an error that tells the client its request is wrong (never a crash).
CLIENT_ERROR_CODES = {"BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"}


def xfail_on(
    request: pytest.FixtureRequest, dialect: str, dialects: Iterable[str], reason: str
) -> None:
    """Mark the running test as a known, strict failure when it runs on one of ``dialects``."""
    if dialect in set(dialects):
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


# ============================================================================================
# Fixtures: the awkward database in each dialect
# ============================================================================================


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=DIALECTS)
async def awkward(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runner]:
    dialect: Dialect = request.param
    if dialect == "sqlite":
        url = build_sqlite(tmp_path_factory.mktemp("awkward") / "awkward.sqlite")
        db = ChinookDb(dialect, url)
    else:
        url = create_empty_database(dialect)
        db = ChinookDb(dialect, url)
        for statement in statements(dialect):
            db.query(statement)
    engine: Engine | None = None
    try:
        schema = await reflect_database(url)
        settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
        engine = await Engine.open(schema, settings)
        yield Runner(engine, db)
    finally:
        if engine is not None:
            await engine.close()
        db.close()
        if dialect != "sqlite":
            drop_database(url)


def q(runner: Runner, name: str) -> str:
    return quote(runner.dialect, name)  # type: ignore[arg-type]


# ============================================================================================
# Awkward identifiers
# ============================================================================================

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
    assert data["ordersAggregate"] == {"count": count, "sum": {"from": int(total)}}


async def test_non_ascii_column_names_get_a_readable_field_name(awkward: Runner) -> None:
    data = await awkward.data('{ __type(name: "MixedCase") { fields { name } } }')
    names = {f["name"] for f in data["__type"]["fields"]}
    assert not names & {"nCD"}, names


# ============================================================================================
# Composite keys, self references, two foreign keys to one table
# ============================================================================================


async def test_by_key_lookup_with_a_composite_primary_key(awkward: Runner) -> None:
    data = await awkward.data(
        "query($a: Int!, $b: Int!) { pair(a: $a, b: $b) { a b label"
        " pairChildren { id note } pairChildrenAggregate { count } }"
        " none: pair(a: 2, b: 2) { a } }",
        {"a": 1, "b": 2},
    )
    (label,) = awkward.sql("SELECT label FROM pair WHERE a = 1 AND b = 2")[0]
    children = awkward.sql("SELECT id, note FROM pair_child WHERE pa = 1 AND pb = 2 ORDER BY id")
    assert data["pair"] == {
        "a": 1,
        "b": 2,
        "label": label,
        "pairChildren": [{"id": i, "note": n} for i, n in children],
        "pairChildrenAggregate": {"count": len(children)},
    }
    assert data["none"] is None


async def test_composite_foreign_key_forward_relation_filter_and_order(awkward: Runner) -> None:
    data = await awkward.data(
        "{ all: pairChildren { id pair { a b label } }"
        '  f: pairChildren(where: {pair: {label: {startsWith: "one"}}}) { id }'
        "  o: pairChildren(orderBy: [{pair: {label: DESC}}, {id: DESC}]) { id } }"
    )
    rows = awkward.sql(
        "SELECT c.id, p.a, p.b, p.label FROM pair_child c"
        " LEFT JOIN pair p ON p.a = c.pa AND p.b = c.pb ORDER BY c.id"
    )
    assert data["all"] == [
        {"id": i, "pair": None if a is None else {"a": a, "b": b, "label": lab}}
        for i, a, b, lab in rows
    ]
    assert [r["id"] for r in data["f"]] == [
        i for i, a, _, lab in rows if a is not None and lab is not None and lab.startswith("one")
    ]
    # DESC puts nulls (no pair, or a pair without label) first; ties broken by id DESC.
    nulls = sorted((r for r in rows if r[3] is None), key=lambda r: -r[0])
    rest = sorted((r for r in rows if r[3] is not None), key=lambda r: (r[3], r[0]), reverse=True)
    assert [r["id"] for r in data["o"]] == [r[0] for r in nulls + rest]


async def test_every_some_none_over_a_composite_relation_with_nulls(awkward: Runner) -> None:
    data = await awkward.data(
        '{ every: pairs(where: {pairChildren: {every: {note: {eq: "c1"}}}}) { a b }'
        "  some: pairs(where: {pairChildren: {some: {note: {isNull: true}}}}) { a b }"
        "  none: pairs(where: {pairChildren: {none: {}}}) { a b }"
        "  notEvery: pairs(where: {not: {pairChildren:"
        ' {every: {note: {startsWith: "c"}}}}}) { a b } }'
    )
    pairs = awkward.sql("SELECT a, b FROM pair ORDER BY a, b")
    kids = awkward.sql("SELECT pa, pb, note FROM pair_child")

    def notes(a: int, b: int) -> list[Any]:
        return [n for pa, pb, n in kids if (pa, pb) == (a, b)]

    def keys(pred: Callable[[list[Any]], bool]) -> list[dict[str, int]]:
        return [{"a": a, "b": b} for a, b in pairs if pred(notes(a, b))]

    assert data["every"] == keys(lambda ns: all(n == "c1" for n in ns))
    assert data["some"] == keys(lambda ns: any(n is None for n in ns))
    assert data["none"] == keys(lambda ns: not ns)
    # A null note fails startsWith, so "every" is false for a pair with a null-note child.
    assert data["notEvery"] == keys(
        lambda ns: not all(n is not None and n.startswith("c") for n in ns)
    )
    assert data["some"] and data["notEvery"]


async def test_self_reference_two_levels_each_way(awkward: Runner) -> None:
    data = await awkward.data(
        "{ nodes { id parent { id parent { id } } nodes(limit: 10) { id } }"
        '  deep: nodes(where: {parent: {parent: {name: {eq: "root"}}}}) { id }'
        "  fan: nodes(where: {nodes: {some: {nodes: {some: {}}}}}) { id } }"
    )
    rows = dict(awkward.sql("SELECT id, parent_id FROM node ORDER BY id"))
    names = dict(awkward.sql("SELECT id, name FROM node"))
    for n in data["nodes"]:
        p = rows[n["id"]]
        assert (n["parent"] or {}).get("id") == p
        if p is not None:
            gp = rows[p]
            assert (n["parent"]["parent"] or {}).get("id") == gp
        assert [c["id"] for c in n["nodes"]] == sorted(k for k, v in rows.items() if v == n["id"])
    assert [n["id"] for n in data["deep"]] == sorted(
        k
        for k, p in rows.items()
        if p is not None and rows[p] is not None and names[rows[p]] == "root"
    )
    has_child = {p for p in rows.values() if p is not None}
    assert [n["id"] for n in data["fan"]] == sorted(
        k for k in rows if any(rows[c] == k and c in has_child for c in rows)
    )


async def test_two_foreign_keys_onto_one_table(awkward: Runner) -> None:
    data = await awkward.data(
        "{ flights { id origin { code } dest { code } }"
        "  airports { id flightsByOriginId { id } flightsByDestId { id }"
        "    out: flightsByOriginIdAggregate { count } } }"
    )
    rows = awkward.sql(
        "SELECT f.id, o.code, d.code, f.dest_id FROM flight f JOIN airport o ON o.id = f.origin_id"
        " LEFT JOIN airport d ON d.id = f.dest_id ORDER BY f.id"
    )
    assert data["flights"] == [
        {"id": i, "origin": {"code": oc}, "dest": None if did is None else {"code": dc}}
        for i, oc, dc, did in rows
    ]
    links = awkward.sql("SELECT id, origin_id, dest_id FROM flight ORDER BY id")
    for a in data["airports"]:
        outs = [i for i, o, _ in links if o == a["id"]]
        assert [f["id"] for f in a["flightsByOriginId"]] == outs
        assert [f["id"] for f in a["flightsByDestId"]] == [i for i, _, d in links if d == a["id"]]
        assert a["out"]["count"] == len(outs)


@pytest.mark.parametrize(
    "direction",
    ["ASC", "DESC", "ASC_NULLS_FIRST", "ASC_NULLS_LAST", "DESC_NULLS_FIRST", "DESC_NULLS_LAST"],
)
async def test_order_by_a_nullable_to_one_relation_in_every_direction(
    awkward: Runner, direction: str
) -> None:
    data = await awkward.data(f"{{ flights(orderBy: [{{dest: {{code: {direction}}}}}]) {{ id }} }}")
    rows = awkward.sql("SELECT f.id, d.code FROM flight f LEFT JOIN airport d ON d.id = f.dest_id")
    desc = direction.startswith("DESC")
    nulls_first = direction.endswith("NULLS_FIRST") or direction == "DESC"
    present = sorted((r for r in rows if r[1] is not None), key=lambda r: r[0])
    present.sort(key=lambda r: r[1], reverse=desc)
    absent = sorted(r[0] for r in rows if r[1] is None)
    ids = [r[0] for r in present]
    assert [f["id"] for f in data["flights"]] == (absent + ids if nulls_first else ids + absent)


# ============================================================================================
# Views, empty tables, key-only tables
# ============================================================================================


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


# ============================================================================================
# Every operator on every scalar of scalar_sample (Chinook)
# ============================================================================================

SAMPLE_COLUMNS = {
    "id": "id",
    "flag": "flag",
    "big": "big",
    "ratio": "ratio",
    "amount": "amount",
    "day": "day",
    "atTime": "at_time",
    "created": "created",
    "uid": "uid",
    "doc": "doc",
    "label": "label",
}


def _norm(column: str, value: Any) -> Any:
    """A value read by a driver, as the Python value the reference compares."""
    if value is None:
        return None
    if column == "flag":
        return bool(value)
    if column in ("big", "id"):
        return int(value)
    if column == "ratio":
        return float(value)
    if column == "amount":
        return Decimal(str(value))
    if column == "day":
        return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])
    if column == "at_time":
        if isinstance(value, dt.timedelta):
            return (dt.datetime.min + value).time()
        return value if isinstance(value, dt.time) else dt.time.fromisoformat(str(value))
    if column == "created":
        if isinstance(value, dt.datetime):
            return value.replace(tzinfo=None)
        return dt.datetime.fromisoformat(str(value).replace(" ", "T")[:19])
    if column == "uid":
        return str(value).lower()
    return value


def _sample_rows(runner: Runner) -> list[dict[str, Any]]:
    cols = ", ".join(SAMPLE_COLUMNS.values())
    rows = runner.sql(f"SELECT {cols} FROM scalar_sample ORDER BY id")
    return [
        {f: _norm(c, v) for (f, c), v in zip(SAMPLE_COLUMNS.items(), r, strict=True)} for r in rows
    ]


def _like_regex(pattern: str, fold: bool) -> re.Pattern[str]:
    out: list[str] = []
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
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if fold else 0))


def _holds(value: Any, op: str, arg: Any) -> bool:
    if op == "isNull":
        return bool((value is None) == arg)
    if value is None:
        return False
    match op:
        case "eq":
            return bool(value == arg)
        case "neq":
            return bool(value != arg)
        case "gt":
            return bool(value > arg)
        case "gte":
            return bool(value >= arg)
        case "lt":
            return bool(value < arg)
        case "lte":
            return bool(value <= arg)
        case "in":
            return value in arg
        case "nin":
            return value not in arg
        case "like":
            return _like_regex(arg, False).fullmatch(value) is not None
        case "ilike":
            return _like_regex(arg, True).fullmatch(value) is not None
        case "startsWith":
            return bool(value.startswith(arg))
        case "endsWith":
            return bool(value.endswith(arg))
        case "contains":
            return arg in value
    raise AssertionError(op)


MAX64 = 2**63 - 1
MIN64 = -(2**63)
BIG_A = 3885017522865996339  # a value of row 1, beyond 2**53
D = dt.date.fromisoformat
T = dt.time.fromisoformat
DT = dt.datetime.fromisoformat

#: (field, operator, GraphQL literal, reference value)
SCALAR_CASES: list[tuple[str, str, str, Any]] = [
    ("big", "eq", f'"{MAX64}"', MAX64),
    ("big", "eq", str(MAX64), MAX64),
    ("big", "eq", f'"{MIN64}"', MIN64),
    ("big", "neq", f'"{BIG_A}"', BIG_A),
    ("big", "gt", str(2**53), 2**53),
    ("big", "gte", f'"{BIG_A}"', BIG_A),
    ("big", "lt", f'"{MIN64 + 1}"', MIN64 + 1),
    ("big", "lte", str(-(2**53) - 1), -(2**53) - 1),
    ("big", "in", f'["{MAX64}", {MIN64}, "{BIG_A}"]', [MAX64, MIN64, BIG_A]),
    ("big", "nin", f'["{MAX64}", {BIG_A}]', [MAX64, BIG_A]),
    ("amount", "eq", '"-30239439.5336"', Decimal("-30239439.5336")),
    ("amount", "neq", '"-30239439.5336"', Decimal("-30239439.5336")),
    ("amount", "gt", '"89328725.6741"', Decimal("89328725.6741")),
    ("amount", "gte", '"89328725.6741"', Decimal("89328725.6741")),
    ("amount", "lt", '"-90000000"', Decimal("-90000000")),
    ("amount", "lte", '"0"', Decimal("0")),
    (
        "amount",
        "in",
        '["97424893.776", "-30239439.5336"]',
        [Decimal("97424893.776"), Decimal("-30239439.5336")],
    ),
    ("amount", "nin", '["97424893.7760"]', [Decimal("97424893.776")]),
    ("ratio", "gt", "1e10", 1e10),
    ("ratio", "lt", "-0.5", -0.5),
    ("ratio", "gte", "0", 0.0),
    ("ratio", "lte", "-87936661028.6672", -87936661028.6672),
    ("day", "eq", '"2021-07-18"', D("2021-07-18")),
    ("day", "neq", '"2021-07-18"', D("2021-07-18")),
    ("day", "gt", '"2090-09-19"', D("2090-09-19")),
    ("day", "gte", '"2090-09-19"', D("2090-09-19")),
    ("day", "lt", '"1975-01-01"', D("1975-01-01")),
    ("day", "lte", '"1973-12-01"', D("1973-12-01")),
    (
        "day",
        "in",
        '["2021-07-18", "1973-12-01", "1900-01-01"]',
        [D("2021-07-18"), D("1973-12-01"), D("1900-01-01")],
    ),
    ("day", "nin", '["2021-07-18"]', [D("2021-07-18")]),
    ("atTime", "eq", '"12:54:04"', T("12:54:04")),
    ("atTime", "neq", '"12:54:04"', T("12:54:04")),
    ("atTime", "gt", '"22:00:00"', T("22:00:00")),
    ("atTime", "gte", '"23:35:16"', T("23:35:16")),
    ("atTime", "lt", '"00:21:00"', T("00:21:00")),
    ("atTime", "lte", '"00:20:32"', T("00:20:32")),
    ("atTime", "in", '["12:54:04", "00:08:56"]', [T("12:54:04"), T("00:08:56")]),
    ("atTime", "nin", '["12:54:04"]', [T("12:54:04")]),
    ("created", "eq", '"2016-07-10T18:32:21"', DT("2016-07-10T18:32:21")),
    ("created", "neq", '"2016-07-10T18:32:21"', DT("2016-07-10T18:32:21")),
    ("created", "gt", '"2030-01-01T00:00:00"', DT("2030-01-01T00:00:00")),
    ("created", "gte", '"2034-11-09T05:38:08"', DT("2034-11-09T05:38:08")),
    ("created", "lt", '"1976-01-01T00:00:00"', DT("1976-01-01T00:00:00")),
    ("created", "lte", '"1973-08-24T21:38:56"', DT("1973-08-24T21:38:56")),
    (
        "created",
        "in",
        '["2016-07-10T18:32:21", "1973-08-24T21:38:56"]',
        [DT("2016-07-10T18:32:21"), DT("1973-08-24T21:38:56")],
    ),
    ("created", "nin", '["2016-07-10T18:32:21"]', [DT("2016-07-10T18:32:21")]),
    ("uid", "eq", '"e1ab3e01-a524-4b60-a0d0-b29c0cf197f4"', "e1ab3e01-a524-4b60-a0d0-b29c0cf197f4"),
    (
        "uid",
        "neq",
        '"e1ab3e01-a524-4b60-a0d0-b29c0cf197f4"',
        "e1ab3e01-a524-4b60-a0d0-b29c0cf197f4",
    ),
    (
        "uid",
        "in",
        '["e1ab3e01-a524-4b60-a0d0-b29c0cf197f4", "00000000-0000-0000-0000-000000000000"]',
        ["e1ab3e01-a524-4b60-a0d0-b29c0cf197f4", "00000000-0000-0000-0000-000000000000"],
    ),
    ("flag", "eq", "true", True),
    ("flag", "neq", "true", True),
    ("flag", "eq", "false", False),
    ("flag", "in", "[false]", [False]),
    ("flag", "nin", "[false]", [False]),
    ("label", "startsWith", '"quote \' and \\""', "quote ' and \""),
    ("label", "endsWith", '"#1"', "#1"),
    ("label", "contains", '"\\\\"', "\\"),
    ("label", "contains", '"日本"', "日本"),
    ("label", "contains", '"🎵"', "🎵"),
    ("label", "startsWith", '"%"', "%"),
    ("label", "contains", '"_"', "_"),
    ("label", "like", '"%\\\\\\\\%"', "%\\\\%"),
    ("label", "like", '"% #1_"', "% #1_"),
    ("label", "like", '"_lpha%"', "_lpha%"),
    ("label", "like", '"%!%"', "%!%"),
    ("label", "like", '"Ünïcödé%"', "Ünïcödé%"),
    ("label", "like", '"%\\\\_%"', "%\\_%"),
    ("label", "ilike", '"ALPHA%"', "ALPHA%"),
]
for _field in SAMPLE_COLUMNS:
    SCALAR_CASES.append((_field, "isNull", "true", True))
    SCALAR_CASES.append((_field, "isNull", "false", False))
for _field, _empty in (
    ("big", "[]"),
    ("amount", "[]"),
    ("day", "[]"),
    ("atTime", "[]"),
    ("created", "[]"),
    ("uid", "[]"),
    ("flag", "[]"),
    ("label", "[]"),
    ("ratio", "[]"),
):
    SCALAR_CASES.append((_field, "in", _empty, []))
    SCALAR_CASES.append((_field, "nin", _empty, []))


@pytest.mark.parametrize(
    ("field", "op", "literal", "value"),
    SCALAR_CASES,
    ids=[f"{f}-{o}-{i}" for i, (f, o, _, _) in enumerate(SCALAR_CASES)],
)
async def test_every_operator_on_every_scalar(
    chinook_runner: Runner, field: str, op: str, literal: str, value: Any
) -> None:
    data = await chinook_runner.data(
        f"{{ scalarSamples(where: {{{field}: {{{op}: {literal}}}}}) {{ id }} }}"
    )
    rows = _sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if _holds(r[field], op, value)]
    assert [r["id"] for r in data["scalarSamples"]] == expected


# ----- scalar inputs the engine gets wrong -----


def _is_client_error(kind: str, body: dict[str, Any], *needles: str) -> bool:
    """A request error with a client code whose message names one of ``needles``."""
    if kind == "data" or "errors" not in body:
        return False
    error = body["errors"][0]
    code = error.get("extensions", {}).get("code")
    return code in CLIENT_ERROR_CODES and any(n in error["message"] for n in needles)


@pytest.mark.parametrize(
    ("op", "literal"),
    [
        ("eq", '"9223372036854775808"'),
        ("lt", '"9223372036854775808"'),
        ("gt", "-9223372036854775809"),
        ("in", '["1", "99999999999999999999"]'),
    ],
)
async def test_a_bigint_beyond_64_bits_is_answered_exactly_or_rejected_clearly(
    chinook_runner: Runner, request: pytest.FixtureRequest, op: str, literal: str
) -> None:
    try:
        kind, body = await chinook_runner.raw(
            f"{{ scalarSamples(where: {{big: {{{op}: {literal}}}}}) {{ id }} }}"
        )
    except Exception as exc:  # a crash is the defect this test looks for
        pytest.fail(f"Engine.execute raised {type(exc).__name__}: {exc}")
    if kind == "data":
        rows = _sample_rows(chinook_runner)
        arg: Any = json.loads(literal)
        arg = [int(a) for a in arg] if isinstance(arg, list) else int(arg)
        expected = [r["id"] for r in rows if _holds(r["big"], op, arg)]
        assert [r["id"] for r in body["data"]["scalarSamples"]] == expected
    else:
        assert _is_client_error(kind, body, "BigInt", "64", "range"), body


@pytest.mark.parametrize(
    "literal",
    ['"2016-07-10T18:32:21Z"', '"2016-07-10T20:32:21+02:00"', '"2016-07-10T13:32:21-05:00"'],
)
async def test_a_datetime_with_an_offset_selects_the_same_instant(
    chinook_runner: Runner, request: pytest.FixtureRequest, literal: str
) -> None:
    """``created`` is a timestamp without time zone; an offset given in a filter is either
    applied (the instant in UTC) or rejected with a clear error, never a database error."""
    kind, body = await chinook_runner.raw(
        f"{{ scalarSamples(where: {{created: {{eq: {literal}}}}}) {{ id created }} }}"
    )
    if kind != "data":
        assert _is_client_error(kind, body, "DateTime", "offset", "time zone"), body
        return
    rows = _sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if r["created"] == DT("2016-07-10T18:32:21")]
    assert [r["id"] for r in body["data"]["scalarSamples"]] == expected == [1]


@pytest.mark.parametrize(
    ("op", "literal", "value"),
    [
        ("startsWith", '"e1ab"', "e1ab"),
        ("like", '"%-4b60-%"', "%-4b60-%"),
        ("ilike", '"E1AB%"', "E1AB%"),
        ("contains", '"a0d0"', "a0d0"),
        ("endsWith", '"f4"', "f4"),
    ],
)
async def test_uuid_columns_take_the_documented_pattern_operators(
    chinook_runner: Runner, request: pytest.FixtureRequest, op: str, literal: str, value: str
) -> None:
    data = await chinook_runner.data(
        f"{{ scalarSamples(where: {{uid: {{{op}: {literal}}}}}) {{ id }} }}"
    )
    rows = _sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if _holds(r["uid"], op, value)]
    assert [r["id"] for r in data["scalarSamples"]] == expected
    assert expected


async def test_a_uuid_in_upper_case_or_without_hyphens_matches_its_row(
    chinook_runner: Runner, request: pytest.FixtureRequest
) -> None:
    xfail_on(
        request,
        chinook_runner.dialect,
        ("sqlite", "mysql"),
        "CHAR(36) uuid columns of SQLite and MariaDB reflect as String, not UUID (docs/querying.md"
        " lists CHAR(36) under UUID): values are compared as text, so an upper-case or"
        " hyphen-less UUID finds no row (PostgreSQL finds it)",
    )
    data = await chinook_runner.data(
        '{ a: scalarSamples(where: {uid: {eq: "E1AB3E01-A524-4B60-A0D0-B29C0CF197F4"}}) { id }'
        '  b: scalarSamples(where: {uid: {eq: "e1ab3e01a5244b60a0d0b29c0cf197f4"}}) { id } }'
    )
    (rid,) = chinook_runner.sql(
        "SELECT id FROM scalar_sample WHERE uid = ?",
        ("e1ab3e01-a524-4b60-a0d0-b29c0cf197f4",),
    )[0]
    assert data == {"a": [{"id": rid}], "b": [{"id": rid}]}


async def test_a_malformed_uuid_in_a_filter_is_rejected(
    chinook_runner: Runner, request: pytest.FixtureRequest
) -> None:
    xfail_on(
        request,
        chinook_runner.dialect,
        ("sqlite", "mysql"),
        'CHAR(36) uuid columns of SQLite and MariaDB reflect as String: uid: {eq: "nope"} is'
        " accepted and silently matches nothing (PostgreSQL says \"UUID cannot represent 'nope'\")",
    )
    kind, body = await chinook_runner.raw('{ scalarSamples(where: {uid: {eq: "nope"}}) { id } }')
    assert _is_client_error(kind, body, "UUID"), body


async def test_ilike_folds_the_case_of_non_ascii_letters(chinook_runner: Runner) -> None:
    data = await chinook_runner.data('{ scalarSamples(where: {label: {ilike: "ünï%"}}) { id } }')
    rows = _sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if r["label"] and r["label"].casefold().startswith("ünï")]
    assert [r["id"] for r in data["scalarSamples"]] == expected
    assert expected


async def test_ilike_ignores_case_but_not_accents(
    chinook_runner: Runner, request: pytest.FixtureRequest
) -> None:
    data = await chinook_runner.data('{ tracks(where: {name: {ilike: "%ü%"}}) { trackId } }')
    rows = chinook_runner.sql("SELECT track_id, name FROM track ORDER BY track_id")
    expected = [i for i, n in rows if "ü" in n.casefold()]
    assert [t["trackId"] for t in data["tracks"]] == expected
    assert expected


async def test_a_decimal_variable_accepts_a_json_number(chinook_runner: Runner) -> None:
    kind, body = await chinook_runner.raw(
        "query($a: Decimal) { scalarSamples(where: {amount: {eq: $a}}) { id } }",
        {"a": 97424893.776},
    )
    rows = _sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if r["amount"] == Decimal("97424893.776")]
    assert kind == "data", body
    assert [r["id"] for r in body["data"]["scalarSamples"]] == expected == [23]


async def test_a_decimal_float_literal_is_accepted_or_rejected_with_its_location(
    chinook_runner: Runner,
) -> None:
    kind, body = await chinook_runner.raw(
        "{ scalarSamples(where: {amount: {eq: -30239439.5336}}) { id } }"
    )
    if kind == "data":
        rows = _sample_rows(chinook_runner)
        expected = [r["id"] for r in rows if r["amount"] == Decimal("-30239439.5336")]
        assert [r["id"] for r in body["data"]["scalarSamples"]] == expected
        return
    error = body["errors"][0]
    assert error.get("locations"), error
    assert "Decimal" in error["message"] and '"' in error["message"], error


# ============================================================================================
# Pagination: limit/offset and Relay connections
# ============================================================================================


async def test_limit_zero_offset_beyond_the_end_and_nested_limits(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ zero: genres(limit: 0) { genreId } past: genres(offset: 1000) { genreId }"
        "  edge: genres(offset: 24, limit: 5) { genreId }"
        "  album(albumId: 1) { none: tracks(limit: 0) { trackId }"
        "    past: tracks(offset: 100) { trackId }"
        "    last: tracks(offset: 9, limit: 10) { trackId } } }"
    )
    genres = [r[0] for r in chinook_runner.sql("SELECT genre_id FROM genre ORDER BY genre_id")]
    tracks = [
        r[0]
        for r in chinook_runner.sql(
            "SELECT track_id FROM track WHERE album_id = 1 ORDER BY track_id"
        )
    ]
    assert data["zero"] == [] and data["past"] == []
    assert [g["genreId"] for g in data["edge"]] == genres[24:29]
    assert data["album"]["none"] == [] and data["album"]["past"] == []
    assert [t["trackId"] for t in data["album"]["last"]] == tracks[9:19]


CONNECTION = """
  query($first: Int, $after: String, $last: Int, $before: String) {
    genresConnection(first: $first, after: $after, last: $last, before: $before,
                     orderBy: [{name: DESC}]) {
      totalCount edges { cursor node { genreId } } nodes { genreId }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }"""


@pytest.mark.parametrize(
    ("first", "after", "last", "before"),
    [
        (0, None, None, None),
        (3, None, None, None),
        (None, None, 100, None),
        (None, None, 3, None),
        (3, 2, None, None),
        (None, 2, None, 6),
        (2, 1, None, 5),
        (None, 1, 2, 5),
        (100, 20, None, None),
        (None, None, 2, 3),
        (2, None, 1, None),
        (None, 24, None, None),
        (None, None, None, 0),
        (None, 5, None, 2),
        (0, None, 0, None),
    ],
)
async def test_connection_windows_follow_the_relay_algorithm(
    chinook_runner: Runner,
    first: int | None,
    after: int | None,
    last: int | None,
    before: int | None,
) -> None:
    """Cursors are taken from the full connection; positions index the plain-SQL order."""
    full = (await chinook_runner.data(CONNECTION, {"first": 1000}))["genresConnection"]
    cursors = [e["cursor"] for e in full["edges"]]
    rows = chinook_runner.sql("SELECT genre_id, name FROM genre")
    order = [g for g, _ in sorted(((g, n) for g, n in rows), key=lambda r: r[1], reverse=True)]
    # Ties on name (none in Chinook) would be broken by the key ascending.
    assert len({n for _, n in rows}) == len(rows)
    assert [e["node"]["genreId"] for e in full["edges"]] == order
    window = list(range(len(order)))
    if after is not None:
        window = [i for i in window if i > after]
    if before is not None:
        window = [i for i in window if i < before]
    if first is not None:
        window = window[:first]
    if last is not None:
        window = window[-last:] if last else []
    variables = {
        "first": first,
        "last": last,
        "after": None if after is None else cursors[after],
        "before": None if before is None else cursors[before],
    }
    conn = (await chinook_runner.data(CONNECTION, variables))["genresConnection"]
    assert conn["totalCount"] == len(order)
    assert [e["node"]["genreId"] for e in conn["edges"]] == [order[i] for i in window]
    assert [n["genreId"] for n in conn["nodes"]] == [order[i] for i in window]
    assert [e["cursor"] for e in conn["edges"]] == [cursors[i] for i in window]
    page = conn["pageInfo"]
    assert page["startCursor"] == (cursors[window[0]] if window else None)
    assert page["endCursor"] == (cursors[window[-1]] if window else None)
    if first is not None and before is None:
        lo = (after + 1) if after is not None else 0
        assert page["hasNextPage"] == (lo + first < len(order))
    if last is not None and after is None and first is None:
        hi = before if before is not None else len(order)
        assert page["hasPreviousPage"] == (hi - last > 0)


async def test_paging_a_connection_to_the_end_with_a_filter_and_relation_order(
    chinook_runner: Runner,
) -> None:
    query = """
      query($after: String) {
        tracksConnection(first: 7, after: $after, where: {genre: {name: {eq: "Jazz"}}},
                         orderBy: [{album: {title: ASC}}, {milliseconds: DESC}]) {
          edges { cursor node { trackId } } pageInfo { hasNextPage endCursor }
        }
      }"""
    got: list[int] = []
    after = None
    for _ in range(100):
        conn = (await chinook_runner.data(query, {"after": after}))["tracksConnection"]
        got.extend(e["node"]["trackId"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    rows = chinook_runner.sql(
        "SELECT t.track_id, a.title, t.milliseconds FROM track t JOIN genre g ON g.genre_id ="
        " t.genre_id LEFT JOIN album a ON a.album_id = t.album_id WHERE g.name = 'Jazz'"
    )
    expected = sorted(rows, key=lambda r: (r[1] is None, r[1] or "", -r[2], r[0]))
    if chinook_runner.dialect == "mysql":  # case-insensitive collation orders titles differently
        expected = sorted(rows, key=lambda r: (r[1] is None, (r[1] or "").lower(), -r[2], r[0]))
    assert sorted(got) == sorted(r[0] for r in rows)
    assert got == [r[0] for r in expected]


async def test_a_cursor_of_another_connection_is_rejected(chinook_runner: Runner) -> None:
    full = (await chinook_runner.data(CONNECTION, {"first": 3}))["genresConnection"]
    cursor = full["pageInfo"]["endCursor"]
    errors = await chinook_runner.errors(
        "query($c: String) { albumsConnection(first: 2, after: $c) { totalCount } }", {"c": cursor}
    )
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT" and "cursor" in errors[0]["message"]
    errors = await chinook_runner.errors(
        "query($c: String) { genresConnection(first: 2, after: $c, orderBy: [{genreId: ASC}])"
        " { totalCount } }",
        {"c": cursor},
    )
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "cursor", ["o99999999999999999999999", "o²", "o١", "o01", "o-1", "o", "", "x1"]
)
async def test_a_forged_cursor_is_rejected_cleanly(
    chinook_runner: Runner, request: pytest.FixtureRequest, cursor: str
) -> None:
    try:
        errors = await chinook_runner.errors(
            "query($c: String) { genresConnection(first: 2, after: $c) { edges { cursor } } }",
            {"c": cursor},
        )
    except Exception as exc:  # a crash is the defect this test looks for
        pytest.fail(f"Engine.execute raised {type(exc).__name__}: {exc}")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors
    assert "cursor" in errors[0]["message"], errors


# ============================================================================================
# Filter combinations
# ============================================================================================


def _tracks(runner: Runner) -> list[dict[str, Any]]:
    rows = runner.sql(
        "SELECT t.track_id, t.name, t.composer, t.milliseconds, t.album_id, t.genre_id,"
        " g.name, al.artist_id FROM track t LEFT JOIN genre g ON g.genre_id = t.genre_id"
        " LEFT JOIN album al ON al.album_id = t.album_id ORDER BY t.track_id"
    )
    keys = ("id", "name", "composer", "ms", "album", "genre", "genreName", "artist")
    return [dict(zip(keys, r, strict=True)) for r in rows]


async def test_empty_and_or_not_and_deep_nesting(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ andEmpty: tracksAggregate(where: {and: []}) { count }"
        "  orEmpty: tracksAggregate(where: {or: []}) { count }"
        "  notEmpty: tracksAggregate(where: {not: {}}) { count }"
        "  notOrEmpty: tracksAggregate(where: {not: {or: []}}) { count }"
        "  emptyWhere: tracksAggregate(where: {}) { count }"
        "  andOfEmpty: tracksAggregate(where: {and: [{}, {}]}) { count }"
        "  orOfEmpty: tracksAggregate(where: {or: [{}, {milliseconds: {lt: 0}}]}) { count }"
        "  deep: tracks(where: {not: {not: {or: [{and: [{composer: {isNull: true}},"
        "    {milliseconds: {gt: 400000}}]}, {not: {or: [{milliseconds: {gte: 1000}},"
        '    {composer: {isNull: true}}]}}, {and: [{name: {startsWith: "A"}}, {not: {}}]}]}}})'
        "    { trackId } }"
    )
    tracks = _tracks(chinook_runner)
    total = len(tracks)
    assert data["andEmpty"]["count"] == total
    assert data["orEmpty"]["count"] == 0
    assert data["notEmpty"]["count"] == 0
    assert data["notOrEmpty"]["count"] == total
    assert data["emptyWhere"]["count"] == total
    assert data["andOfEmpty"]["count"] == total
    assert data["orOfEmpty"]["count"] == total
    expected = [
        t["id"]
        for t in tracks
        if (t["composer"] is None and t["ms"] > 400000)
        or not (t["ms"] >= 1000 or t["composer"] is None)
    ]
    assert [t["trackId"] for t in data["deep"]] == expected
    assert expected


async def test_relation_filters_two_levels_deep_each_way(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        '{ up: tracks(where: {album: {artist: {name: {startsWith: "Iron"}}}}) { trackId }'
        '  down: artists(where: {albums: {some: {tracks: {some: {genre: {name: {eq: "Jazz"}}}}}}})'
        "    { artistId }"
        "  every: artists(where: {albums: {every:"
        " {tracks: {every: {milliseconds: {gt: 200000}}}}}})"
        "    { artistId }"
        '  none: genres(where: {tracks: {none: {album: {artist: {name: {contains: "a"}}}}}})'
        "    { genreId } }"
    )
    tracks = _tracks(chinook_runner)
    artists = dict(chinook_runner.sql("SELECT artist_id, name FROM artist"))
    albums = dict(chinook_runner.sql("SELECT album_id, artist_id FROM album"))
    genres = [r[0] for r in chinook_runner.sql("SELECT genre_id FROM genre ORDER BY genre_id")]
    assert [t["trackId"] for t in data["up"]] == [
        t["id"]
        for t in tracks
        if t["artist"] is not None and artists[t["artist"]].startswith("Iron")
    ]

    def album_tracks(album: int) -> list[dict[str, Any]]:
        return [t for t in tracks if t["album"] == album]

    def artist_albums(artist: int) -> list[int]:
        return [a for a, ar in albums.items() if ar == artist]

    assert [a["artistId"] for a in data["down"]] == sorted(
        ar
        for ar in artists
        if any(t["genreName"] == "Jazz" for al in artist_albums(ar) for t in album_tracks(al))
    )
    assert [a["artistId"] for a in data["every"]] == sorted(
        ar
        for ar in artists
        if all(t["ms"] > 200000 for al in artist_albums(ar) for t in album_tracks(al))
    )
    assert [g["genreId"] for g in data["none"]] == [
        g
        for g in genres
        if not any(
            t["genre"] == g and t["artist"] is not None and "a" in artists[t["artist"]]
            for t in tracks
        )
    ]
    assert data["up"] and data["down"] and data["every"]


async def test_every_over_related_rows_with_null_columns(chinook_runner: Runner) -> None:
    """A null composer fails eq/neq/startsWith, so ``every`` is false for an album with one."""
    data = await chinook_runner.data(
        '{ neq: albums(where: {tracks: {every: {composer: {neq: "nobody"}}}}) { albumId }'
        "  isNull: albums(where: {tracks: {every: {composer: {isNull: true}}}}) { albumId }"
        "  notEvery: albumsAggregate(where: {not: {tracks: {every: {composer: {isNull: false}}}}})"
        "    { count } }"
    )
    tracks = _tracks(chinook_runner)
    albums = [r[0] for r in chinook_runner.sql("SELECT album_id FROM album ORDER BY album_id")]

    def composers(album: int) -> list[Any]:
        return [t["composer"] for t in tracks if t["album"] == album]

    assert [a["albumId"] for a in data["neq"]] == [
        a for a in albums if all(c is not None and c != "nobody" for c in composers(a))
    ]
    assert [a["albumId"] for a in data["isNull"]] == [
        a for a in albums if all(c is None for c in composers(a))
    ]
    assert data["notEvery"]["count"] == sum(
        1 for a in albums if not all(c is not None for c in composers(a))
    )


# ============================================================================================
# Documents: fragments, aliases, directives, __typename, variables
# ============================================================================================


async def test_nested_and_repeated_fragments_with_directives_at_several_levels(
    chinook_runner: Runner,
) -> None:
    query = """
      query($s: Boolean!, $i: Boolean!) {
        a: albums(limit: 2) { ...A }
        b: albums(limit: 1, offset: 5) { ...A title @include(if: $i) }
        c: albums(limit: 1) @skip(if: $s) { albumId }
      }
      fragment A on Album {
        albumId
        ... on Album { title @skip(if: $s) artist { ...R ...R } }
        artist @include(if: $i) { name }
        ... @include(if: $i) { tracks(limit: 2) { ...T } }
      }
      fragment R on Artist { artistId ... { name @skip(if: $s) } }
      fragment T on Track { trackId ... { __typename } }
    """
    rows = chinook_runner.sql(
        "SELECT al.album_id, al.title, ar.artist_id, ar.name FROM album al"
        " JOIN artist ar ON ar.artist_id = al.artist_id ORDER BY al.album_id"
    )

    def tracks(album: int) -> list[dict[str, Any]]:
        ids = chinook_runner.sql(
            "SELECT track_id FROM track WHERE album_id = ? ORDER BY track_id LIMIT 2", (album,)
        )
        return [{"trackId": r[0], "__typename": "Track"} for r in ids]

    def album(row: tuple[Any, ...], s: bool, i: bool, title_too: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"albumId": row[0]}
        if not s or (i and title_too):
            out["title"] = row[1]
        artist: dict[str, Any] = {"artistId": row[2]}
        if not s or i:
            artist["name"] = row[3]
        out["artist"] = artist
        if i:
            out["tracks"] = tracks(row[0])
        return out

    for s in (True, False):
        for i in (True, False):
            data = await chinook_runner.data(query, {"s": s, "i": i})
            assert data["a"] == [album(r, s, i, False) for r in rows[:2]], (s, i)
            assert data["b"] == [album(r, s, i, True) for r in rows[5:6]], (s, i)
            assert ("c" in data) == (not s)
            assert next(iter(data["b"][0])) == "albumId"


async def test_aliases_of_one_field_with_different_arguments(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ album(albumId: 1) { t1: tracks(limit: 1) { name } t2: tracks(limit: 1, offset: 1)"
        " { name } all: tracksAggregate { count } one: tracksAggregate(where: {trackId: {eq: 1}})"
        " { count } same: tracks(limit: 1) { name } same: tracks(limit: 1) { trackId } }"
        "  x: album(albumId: 2) { title } y: album(albumId: 3) { title } }"
    )
    names = chinook_runner.sql(
        "SELECT track_id, name FROM track WHERE album_id = 1 ORDER BY track_id"
    )
    titles = dict(chinook_runner.sql("SELECT album_id, title FROM album WHERE album_id IN (2, 3)"))
    a = data["album"]
    assert a["t1"] == [{"name": names[0][1]}] and a["t2"] == [{"name": names[1][1]}]
    assert a["all"] == {"count": len(names)} and a["one"] == {"count": 1}
    assert a["same"] == [{"name": names[0][1], "trackId": names[0][0]}]
    assert data["x"] == {"title": titles[2]} and data["y"] == {"title": titles[3]}


async def test_typename_everywhere(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ __typename genresConnection(first: 1) { __typename totalCount"
        "    edges { __typename node { __typename } } pageInfo { __typename }"
        "    nodes { __typename } }"
        "  genresAggregate { __typename count sum { __typename } avg { __typename }"
        "    min { __typename } max { __typename genreId }"
        "    groupBy(fields: [name]) { __typename keys { __typename } } }"
        "  genre(genreId: 1) { __typename tracksAggregate { __typename count } } }"
    )
    c = data["genresConnection"]
    assert data["__typename"] == "Query"
    assert c["__typename"] == "GenreConnection"
    assert c["edges"] == [{"__typename": "GenreEdge", "node": {"__typename": "Genre"}}]
    assert c["pageInfo"] == {"__typename": "PageInfo"} and c["nodes"] == [{"__typename": "Genre"}]
    agg = data["genresAggregate"]
    assert agg["__typename"] == "GenreAggregate"
    for key in ("sum", "avg", "min", "max"):
        assert agg[key]["__typename"].startswith("Genre"), agg[key]
    count = chinook_runner.sql("SELECT COUNT(*) FROM genre")[0][0]
    assert agg["count"] == count == len(agg["groupBy"]) == c["totalCount"]
    assert {g["__typename"] for g in agg["groupBy"]} == {"GenreAggregateGroup"}
    assert {g["keys"]["__typename"] for g in agg["groupBy"]} == {"GenreGroupKey"}
    assert data["genre"]["__typename"] == "Genre"
    assert data["genre"]["tracksAggregate"]["__typename"] == "TrackAggregate"


async def test_variables_inside_lists_and_nested_input_objects(chinook_runner: Runner) -> None:
    query = """
      query($n: String!, $ids: [Int!]!, $ms: Int!, $g: String!) {
        tracksAggregate(where: {
          or: [{name: {eq: $n}}, {trackId: {in: $ids}}, {trackId: {in: [$ms, 3]}}]
          genre: {name: {in: [$g, "Metal"]}}
        }) { count }
      }"""
    tracks = _tracks(chinook_runner)
    cases: list[dict[str, Any]] = [
        {"n": "Balls to the Wall", "ids": [1, 2, 3], "ms": 4, "g": "Rock"},
        {"n": "Balls to the Wall", "ids": [], "ms": 5, "g": "Jazz"},
        {"n": "x", "ids": list(range(1, 300)), "ms": 3000, "g": "Rock"},
    ]
    for variables in cases:
        data = await chinook_runner.data(query, variables)
        expected = sum(
            1
            for t in tracks
            if (
                t["name"] == variables["n"]
                or t["id"] in variables["ids"]
                or t["id"] in (variables["ms"], 3)
            )
            and t["genreName"] in (variables["g"], "Metal")
        )
        assert data["tracksAggregate"]["count"] == expected, variables


async def test_one_document_with_variables_of_input_object_type_and_many_shapes(
    chinook_runner: Runner,
) -> None:
    query = """
      query($w: TrackWhere, $o: [TrackOrderBy!], $l: Int) {
        tracks(where: $w, orderBy: $o, limit: $l) { trackId }
        both: tracksAggregate(where: $w) { count }
      }"""
    tracks = _tracks(chinook_runner)
    cases: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
        ({"w": None}, lambda t: True),
        ({"w": {}}, lambda t: True),
        ({"w": {"name": {"startsWith": "A"}}}, lambda t: t["name"].startswith("A")),
        (
            {"w": {"composer": {"isNull": True}, "not": {"milliseconds": {"lt": 300000}}}},
            lambda t: t["composer"] is None and not t["ms"] < 300000,
        ),
        (
            {"w": {"trackId": {"in": [5, 1, 700]}, "or": [{"milliseconds": {"gt": 1}}]}},
            lambda t: t["id"] in (5, 1, 700),
        ),
        ({"w": {"trackId": {"in": []}}}, lambda t: False),
        ({"w": {"trackId": {"nin": []}}}, lambda t: True),
        ({"w": {"genre": {"name": {"eq": "Jazz"}}}}, lambda t: t["genreName"] == "Jazz"),
        ({"w": {"name": {"startsWith": "A"}}}, lambda t: t["name"].startswith("A")),
    ]
    for variables, pred in cases:
        for order, key in (
            (None, lambda t: t["id"]),
            ([{"milliseconds": "DESC"}], lambda t: (-t["ms"], t["id"])),
        ):
            data = await chinook_runner.data(query, {**variables, "o": order, "l": 50})
            matching = [t for t in tracks if pred(t)]
            expected = [t["id"] for t in sorted(matching, key=key)][:50]
            assert [t["trackId"] for t in data["tracks"]] == expected, (variables, order)
            assert data["both"]["count"] == len(matching)


# ============================================================================================
# Aggregates over every scalar
# ============================================================================================


async def test_sum_and_avg_of_bigints_beyond_64_bits_are_exact(
    chinook_runner: Runner, request: pytest.FixtureRequest
) -> None:
    xfail_on(
        request,
        chinook_runner.dialect,
        ("sqlite",),
        "scalarSamplesAggregate(where: {big: {gt: 0}}) { sum { big } } fails on SQLite with"
        " DATABASE_ERROR ('integer overflow'): SUM over BIGINT past 2**63 (PostgreSQL and MariaDB"
        " answer the exact '113719010998688530247')",
    )
    data = await chinook_runner.data(
        "{ scalarSamplesAggregate(where: {big: {gt: 0}}) { count sum { big } avg { big } } }"
    )
    values = [
        r["big"] for r in _sample_rows(chinook_runner) if r["big"] is not None and r["big"] > 0
    ]
    agg = data["scalarSamplesAggregate"]
    assert agg["count"] == len(values)
    assert int(agg["sum"]["big"]) == sum(values) > 2**63
    assert abs(agg["avg"]["big"] - sum(values) / len(values)) <= 1e-9 * abs(agg["avg"]["big"])


@pytest.mark.parametrize("field", ["big", "amount", "day", "atTime", "created", "uid", "label"])
async def test_min_and_max_of_every_ordered_scalar(
    chinook_runner: Runner, request: pytest.FixtureRequest, field: str
) -> None:
    data = await chinook_runner.data(
        f"{{ scalarSamplesAggregate {{ min {{ {field} }} max {{ {field} }} }} }}"
    )
    rows = _sample_rows(chinook_runner)
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


# ============================================================================================
# The HTTP surface end to end
# ============================================================================================


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def http_client(chinook_db: ChinookDb) -> AsyncIterator[tuple[httpx.AsyncClient, Runner]]:
    schema = await reflect_database(chinook_db.url)
    settings = QuiverSettings.model_validate(
        {"database": {"url": chinook_db.url, "pool_max": 2}, "graphql": {"max_batch": 10}}
    )
    app = create_app(schema, settings)
    await app.startup()
    try:
        assert app.engine is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://quiver") as client:
            yield client, Runner(app.engine, chinook_db)
    finally:
        await app.shutdown()


async def _post(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await client.post(
        "/graphql", content=orjson.dumps(body), headers={"content-type": "application/json"}
    )


async def test_a_batch_mixing_good_and_bad_operations_answers_each_in_order(
    http_client: tuple[httpx.AsyncClient, Runner],
) -> None:
    client, runner = http_client
    genre = "query($n: Int!) { genre(genreId: $n) { name } }"
    r = await _post(
        client,
        [
            {"query": genre, "variables": {"n": 2}},
            {"query": "{ nope }"},
            {"query": "{ genres(limit: 1) { name"},
            {"query": genre, "variables": {"n": "x"}},
            {"query": genre},
            {
                "query": "query A { genres(limit: 1) { name } }"
                " query B { genre(genreId: 3) { name } }",
                "operationName": "B",
            },
            {"query": "{ genres(limit: -1) { name } }"},
            {"query": genre, "variables": {"n": 999999}},
        ],
    )
    assert r.status_code == 200, r.text
    out = r.json()
    names = dict(runner.sql("SELECT genre_id, name FROM genre WHERE genre_id IN (2, 3)"))
    assert out[0] == {"data": {"genre": {"name": names[2]}}}
    assert out[1]["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert out[2]["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert out[3]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$n" in out[3]["errors"][0]["message"]
    assert "was not provided" in out[4]["errors"][0]["message"]
    assert out[5] == {"data": {"genre": {"name": names[3]}}}
    assert out[6]["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert out[7] == {"data": {"genre": None}}
    assert len(out) == 8


async def test_one_failing_operation_does_not_sink_its_batch(
    http_client: tuple[httpx.AsyncClient, Runner], request: pytest.FixtureRequest
) -> None:
    _, runner = http_client
    client, _ = http_client
    r = await _post(
        client,
        [
            {"query": "{ genre(genreId: 1) { name } }"},
            {
                "query": "query($b: BigInt) { scalarSamples(where: {big: {eq: $b}}) { id } }",
                "variables": {"b": "99999999999999999999"},
            },
            {"query": "{ genre(genreId: 2) { name } }"},
        ],
    )
    assert r.status_code == 200, r.text
    out = r.json()
    names = dict(runner.sql("SELECT genre_id, name FROM genre WHERE genre_id IN (1, 2)"))
    assert out[0] == {"data": {"genre": {"name": names[1]}}}
    assert out[2] == {"data": {"genre": {"name": names[2]}}}


async def test_get_with_variables_of_scalar_and_input_object_type(
    http_client: tuple[httpx.AsyncClient, Runner],
) -> None:
    client, runner = http_client
    query = (
        "query($n: Int!, $w: GenreWhere, $o: [GenreOrderBy!]) {"
        " genres(limit: $n, where: $w, orderBy: $o) { genreId name } }"
    )
    variables = {"n": 3, "w": {"name": {"startsWith": "R"}}, "o": [{"name": "DESC"}]}
    r = await client.get(
        "/graphql", params={"query": query, "variables": orjson.dumps(variables).decode()}
    )
    assert r.status_code == 200, r.text
    rows = runner.sql("SELECT genre_id, name FROM genre")
    expected = sorted((x for x in rows if x[1].startswith("R")), key=lambda x: x[1], reverse=True)
    assert r.json() == {"data": {"genres": [{"genreId": g, "name": n} for g, n in expected[:3]]}}
    r = await client.get("/graphql", params={"query": query, "variables": '{"n": 2'})
    assert r.status_code == 400 and "variables" in r.json()["errors"][0]["message"]
    r = await client.get("/graphql", params={"query": query, "variables": "[1]"})
    assert r.status_code == 400 and "variables" in r.json()["errors"][0]["message"]


async def test_automatic_persisted_queries_round_trip_over_post_and_get(
    http_client: tuple[httpx.AsyncClient, Runner],
) -> None:
    client, runner = http_client
    # A document unique to this test run, so no other test has registered its hash.
    query = f"{{ genres(limit: 2) {{ name }} marker: __typename }} # {id(runner)}-{runner.dialect}"
    digest = hashlib.sha256(query.encode()).hexdigest()
    ext = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    names = [r[0] for r in runner.sql("SELECT name FROM genre ORDER BY genre_id LIMIT 2")]
    expected = {"data": {"genres": [{"name": n} for n in names], "marker": "Query"}}

    r = await _post(client, {"extensions": ext})
    assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    r = await _post(client, {"query": query + " ", "extensions": ext})
    assert r.status_code == 400 and "sha" in r.json()["errors"][0]["message"]
    r = await _post(client, {"extensions": ext})
    assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    r = await _post(client, {"query": query, "extensions": ext})
    assert r.json() == expected
    r = await _post(client, {"extensions": ext})
    assert r.json() == expected
    r = await client.get("/graphql", params={"extensions": orjson.dumps(ext).decode()})
    assert r.status_code == 200 and r.json() == expected
    r = await _post(client, [{"extensions": ext}, {"query": query}])
    assert r.json() == [expected, expected]

    bad = f"{{ genres {{ nope }} }} # {id(runner)}-{runner.dialect}"
    bad_ext = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(bad.encode()).hexdigest()}
    }
    r = await _post(client, {"query": bad, "extensions": bad_ext})
    assert r.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    r = await _post(client, {"extensions": bad_ext})
    assert r.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


# ============================================================================================
# Unicode, NUL and surrogates in string filters
# ============================================================================================


@pytest.mark.parametrize(
    ("op", "pattern"),
    [
        ("like", "_nïcödé%"),
        ("like", "日本_ #%"),
        ("like", "emoji _ #44"),
        ("ilike", "_NÏCÖDÉ%"),
    ],
)
async def test_an_underscore_in_like_matches_one_character_not_one_byte(
    chinook_runner: Runner, request: pytest.FixtureRequest, op: str, pattern: str
) -> None:
    data = await chinook_runner.data(
        f"query($p: String!) {{ scalarSamples(where: {{label: {{{op}: $p}}}}) {{ id }} }}",
        {"p": pattern},
    )
    rows = _sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if _holds(r["label"], op, pattern)]
    assert [r["id"] for r in data["scalarSamples"]] == expected
    assert expected


@pytest.mark.parametrize(("op", "value"), [("eq", "a\x00b"), ("contains", "\x00")])
async def test_a_nul_character_in_a_string_filter(
    chinook_runner: Runner, request: pytest.FixtureRequest, op: str, value: str
) -> None:
    """No text in Chinook holds NUL: the filter matches nothing, or is rejected clearly."""
    kind, body = await chinook_runner.raw(
        f"query($n: String!) {{ tracks(where: {{name: {{{op}: $n}}}}) {{ trackId }} }}",
        {"n": value},
    )
    if kind == "data":
        assert body["data"]["tracks"] == []
    else:
        assert _is_client_error(kind, body, "NUL", "\\u0000", "null character"), body


async def test_a_lone_surrogate_in_a_variable_is_rejected_cleanly(
    chinook_runner: Runner, request: pytest.FixtureRequest
) -> None:
    """Engine.execute takes Python values; a str holding a lone surrogate cannot be encoded."""
    try:
        kind, body = await chinook_runner.raw(
            "query($n: String!) { tracks(where: {name: {eq: $n}}) { trackId } }", {"n": "\ud800"}
        )
    except Exception as exc:  # a crash is the defect this test looks for
        pytest.fail(f"Engine.execute raised {type(exc).__name__}: {exc}")
    assert _is_client_error(kind, body, "$n", "surrogate", "UTF-8"), body


# ============================================================================================
# Deep nesting within the default limits (max_depth 15)
# ============================================================================================


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


# ============================================================================================
# Names that collide with the API's own names, or are not GraphQL names
# ============================================================================================


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
    with a QuiverError that names it; never a GraphQLError traceback out of Engine.open."""
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    db = ChinookDb(dialect, url)  # type: ignore[arg-type]
    try:
        t, c = quote(dialect, "1st table"), quote(dialect, "2nd col")  # type: ignore[arg-type]
        db.query(f"CREATE TABLE {t} ({c} INTEGER PRIMARY KEY, val INTEGER)")
        db.query(f"INSERT INTO {t} VALUES (1, 10), (2, 20)")
        schema = await reflect_database(url)
        settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 1}})
        try:
            engine = await Engine.open(schema, settings)
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


async def test_paging_a_keyless_view_visits_every_row_once(chinook_runner: Runner) -> None:
    query = """
      query($after: String) {
        customerSpendsConnection(first: 7, after: $after,
                                 orderBy: [{country: ASC}, {customerId: DESC}]) {
          totalCount edges { node { customerId totalSpent } } pageInfo { hasNextPage endCursor }
        }
      }"""
    seen: list[int] = []
    after = None
    for _ in range(50):
        conn = (await chinook_runner.data(query, {"after": after}))["customerSpendsConnection"]
        seen.extend(e["node"]["customerId"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    rows = chinook_runner.sql("SELECT customer_id, country, total_spent FROM customer_spend")
    assert sorted(seen) == sorted(r[0] for r in rows)
    if chinook_runner.dialect != "mysql":  # MariaDB's collation orders countries differently
        assert seen == [r[0] for r in sorted(rows, key=lambda r: (r[1], -r[0]))]


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


async def test_one_prepared_document_run_concurrently_with_different_shapes(
    chinook_runner: Runner,
) -> None:
    """Plans are cached per variable shape; concurrent runs must not see each other's plans."""
    query = (
        "query($w: TrackWhere, $l: Int, $o: Int, $s: Boolean!) {"
        " tracks(where: $w, limit: $l, offset: $o) { trackId name @skip(if: $s) } }"
    )
    engine = chinook_runner.engine
    prepared = engine.prepare(query, None)
    tracks = _tracks(chinook_runner)
    cases: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for i in range(24):
        where: dict[str, Any] | None = (
            None,
            {"albumId": {"eq": i + 1}},
            {"trackId": {"in": list(range(i, i + 5))}},
            {"name": {"startsWith": "A"}, "not": {"composer": {"isNull": True}}},
        )[i % 4]
        limit = (None, 3, 0)[i % 3]
        offset = (None, 2)[i % 2]
        skip = i % 5 == 0
        rows = [t for t in tracks if where is None or _track_matches(t, where)]
        rows = rows[offset or 0 :]
        rows = rows if limit is None else rows[:limit]
        expected = [
            {"trackId": t["id"]} if skip else {"trackId": t["id"], "name": t["name"]} for t in rows
        ]
        cases.append(({"w": where, "l": limit, "o": offset, "s": skip}, expected))
    outcomes = await asyncio.gather(*(engine.execute(prepared, v) for v, _ in cases))
    for (variables, expected), outcome in zip(cases, outcomes, strict=True):
        assert outcome.kind == "data", outcome.body
        assert orjson.loads(outcome.body)["data"]["tracks"] == expected, variables


def _track_matches(t: dict[str, Any], where: dict[str, Any]) -> bool:
    if "albumId" in where:
        return bool(t["album"] == where["albumId"]["eq"])
    if "trackId" in where:
        return bool(t["id"] in where["trackId"]["in"])
    return bool(t["name"].startswith("A") and t["composer"] is not None)


async def test_to_one_relation_filters_need_the_related_row(awkward: Runner) -> None:
    data = await awkward.data(
        "{ has: pairChildren(where: {pair: {}}) { id }"
        "  hasNot: pairChildren(where: {not: {pair: {}}}) { id }"
        "  nullLabel: pairChildren(where: {pair: {label: {isNull: true}}}) { id }"
        "  destNullCode: flights(where: {dest: {code: {isNull: true}}}) { id }"
        '  notAAA: flights(where: {not: {dest: {code: {eq: "AAA"}}}}) { id }'
        '  everyFromB: airports(where: {flightsByDestId: {every: {origin: {code: {eq: "BBB"}}}}})'
        "    { id } }"
    )
    kids = awkward.sql(
        "SELECT c.id, p.a, p.label FROM pair_child c"
        " LEFT JOIN pair p ON p.a = c.pa AND p.b = c.pb ORDER BY c.id"
    )
    flights = awkward.sql(
        "SELECT f.id, f.dest_id, d.code, o.code FROM flight f LEFT JOIN airport d"
        " ON d.id = f.dest_id JOIN airport o ON o.id = f.origin_id ORDER BY f.id"
    )
    airports = [r[0] for r in awkward.sql("SELECT id FROM airport ORDER BY id")]
    assert [r["id"] for r in data["has"]] == [i for i, a, _ in kids if a is not None]
    assert [r["id"] for r in data["hasNot"]] == [i for i, a, _ in kids if a is None]
    assert [r["id"] for r in data["nullLabel"]] == [
        i for i, a, lab in kids if a is not None and lab is None
    ]
    assert [r["id"] for r in data["destNullCode"]] == [
        i for i, d, code, _ in flights if d is not None and code is None
    ]
    assert [r["id"] for r in data["notAAA"]] == [
        i for i, d, code, _ in flights if not (d is not None and code == "AAA")
    ]
    assert [r["id"] for r in data["everyFromB"]] == [
        a for a in airports if all(o == "BBB" for i, d, _, o in flights if d == a)
    ]
    assert data["destNullCode"] and data["notAAA"]


async def test_a_limit_given_by_a_variable_cannot_step_around_max_cost(
    chinook_runner: Runner,
) -> None:
    errors = await chinook_runner.errors("{ tracks(limit: 100000) { trackId } }")
    assert errors[0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    errors = await chinook_runner.errors(
        "query($n: Int!) { tracks(limit: $n) { trackId } }", {"n": 100000}
    )
    assert errors[0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert errors[0]["extensions"]["cost"] > errors[0]["extensions"]["limit"]
    data = await chinook_runner.data("query($n: Int!) { tracks(limit: $n) { trackId } }", {"n": 3})
    assert len(data["tracks"]) == 3


async def test_json_values_round_trip_with_quotes_backslashes_and_unicode(
    chinook_runner: Runner,
) -> None:
    data = await chinook_runner.data("{ scalarSamples { id doc label } }")
    rows = chinook_runner.sql("SELECT id, doc, label FROM scalar_sample ORDER BY id")
    expected = [
        {
            "id": i,
            "doc": None if doc is None else (json.loads(doc) if isinstance(doc, str) else doc),
            "label": label,
        }
        for i, doc, label in rows
    ]
    assert data["scalarSamples"] == expected
    assert any(d["doc"] for d in expected)
