"""Relations on awkward shapes: composite keys, self references, two foreign keys onto one
table, and filters through to-one relations.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")


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
