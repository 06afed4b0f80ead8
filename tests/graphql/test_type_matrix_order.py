"""Every orderable column of every database sorts the same way in a list, in a connection and
page by page through its cursors, and its gt/lt filters keep the rows that order puts after or
before the value: String columns of types that are not text (money, interval, inet, ranges,
MariaDB's BIT and INET4) compare in their type's own order, not in the order of their text.

The matrix table (``tests/graphql/type_matrix.py``) gets extra rows whose text sorts otherwise
than their values ("$1,000.00" < "$9.00", "10 days" < "9 days", "10.0.0.2" < "9.0.0.1").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from graphql import GraphQLList, GraphQLNonNull, GraphQLScalarType
from tests.conftest import DIALECTS, ChinookDb, Dialect
from tests.graphql import type_matrix as tm

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Rows whose values sort otherwise as text, per dialect (the matrix table's other columns null).
EXTRA_ROWS: dict[str, list[str]] = {
    "postgresql": [
        "INSERT INTO {t} (id, m, iv, ip, net, rng, o, mac, vbits, vc, n) VALUES"
        " (101, 9.00, '9 days', '9.0.0.1', '9.0.0.0/8', '[9,10)', 9, '0a:00:2b:01:02:03',"
        " B'11', 'b', 9)",
        "INSERT INTO {t} (id, m, iv, ip, net, rng, o, mac, vbits, vc, n) VALUES"
        " (102, 10.00, '10 days', '10.0.0.2', '10.0.0.0/8', '[10,20)', 10,"
        " '08:00:2b:01:02:04', B'101', 'B', 10)",
        "INSERT INTO {t} (id, m, iv, ip, net, rng, o) VALUES"
        " (103, 1000, '1 day 02:00:00', '100.0.0.1', '100.0.0.0/8', '[100,101)', 100)",
        "INSERT INTO {t} (id, m, iv, ip, rng, o) VALUES"
        " (104, -3, '-10 days', '::ffff:1.2.3.4', '[-5,-1)', 1000)",
        "INSERT INTO {t} (id, m, iv) VALUES (105, 10.00, '240:00:00')",
    ],
    "mysql": [
        "INSERT INTO {t} (id, bit8, ip4, ip6, st, vc) VALUES"
        " (101, b'11', '9.0.0.1', '::9', 'b', 'b')",
        "INSERT INTO {t} (id, bit8, ip4, ip6, st, vc) VALUES"
        " (102, b'1000', '10.0.0.2', '::10', 'a,b', 'B')",
        "INSERT INTO {t} (id, bit8, ip4, ip6, st) VALUES (103, b'100', '100.0.0.1', '1::', 'a')",
    ],
    "sqlite": [
        # SQLite keeps timestamps as text in several forms: they sort as instants.
        "INSERT INTO {t} (id, dtm, ts, vc) VALUES"
        " (101, '2024-01-02T03:04:05', '2024-01-02 03:04:06', 'b')",
        "INSERT INTO {t} (id, dtm, ts, vc) VALUES"
        " (102, '2024-01-02 03:04:06', '2024-01-02T03:04:05', 'B')",
    ],
}


#: Fields left out, each failing for a reason of its own, not its order: MariaDB fails to
#: read a latin1 column's values ordered in JSON_ARRAYAGG as UTF-8.
PAGING_GAPS = {"postgresql": set[str](), "mysql": set[str](), "sqlite": set[str]()}
FILTER_GAPS = {"postgresql": set[str](), "mysql": {"latin"}, "sqlite": set[str]()}


class Served:
    def __init__(self, client: httpx.AsyncClient, db: ChinookDb, app: Any, table: str) -> None:
        self.client = client
        self.db = db
        self.app = app
        self.table = table
        self.dialect = db.dialect

    @property
    def gql(self) -> Any:
        return self.app.engine.graphql_schema

    async def body(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        r = await self.client.post(
            "/graphql",
            content=orjson.dumps({"query": query, "variables": variables or {}}),
            headers={"content-type": "application/json"},
        )
        return orjson.loads(r.content)

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = await self.body(query, variables)
        assert "errors" not in body, (query, variables, body)
        return body["data"]

    def column(self, name: str) -> str:
        return self.app.engine.catalog.fields["Cell"][name].column  # type: ignore[no-any-return]


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=DIALECTS)
async def served(request: pytest.FixtureRequest, tmp_path_factory: Any) -> AsyncIterator[Served]:
    dialect: Dialect = request.param
    async with tm.served_matrix(dialect, tmp_path_factory) as (m, app, client):
        for statement in EXTRA_ROWS[dialect]:
            m.db.query(statement.format(t=m.table))
        yield Served(client, m.db, app, m.table)


def _named(t: Any) -> Any:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return t


def _order_fields(served: Served) -> list[str]:
    gaps = PAGING_GAPS[served.dialect]
    return [n for n in served.gql.get_type("CellOrderBy").fields if n not in gaps]


def _string_fields(served: Served) -> list[str]:
    """Orderable String fields (not enums): the columns of types without a GraphQL scalar."""
    cell = served.gql.get_type("Cell").fields
    return [
        n
        for n in _order_fields(served)
        if n not in FILTER_GAPS[served.dialect]
        if isinstance(_named(cell[n].type), GraphQLScalarType)
        and not isinstance(cell[n].type, GraphQLList)
        and _named(cell[n].type).name == "String"
    ]


async def _connection_ids(served: Served, order: str, page: int | None) -> list[int]:
    """Every row's id, through the connection, ``page`` rows at a time (None: one page)."""
    ids: list[int] = []
    after: str | None = None
    for _ in range(100):
        data = await served.data(
            "query($after: String, $first: Int) { cellsConnection(first: $first,"
            f" after: $after, orderBy: {order})"
            " { edges { node { id } } pageInfo { hasNextPage endCursor } } }",
            {"after": after, "first": page or 1000},
        )
        conn = data["cellsConnection"]
        ids += [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            return ids
        after = conn["pageInfo"]["endCursor"]
    raise AssertionError("the connection never ended")


@pytest.mark.parametrize("direction", ["ASC", "DESC"])
async def test_list_and_connection_orders_agree_for_every_orderable_field(
    served: Served, direction: str
) -> None:
    problems = []
    for name in _order_fields(served):
        order = f"[{{{name}: {direction}}}, {{id: ASC}}]"
        listed = [
            r["id"] for r in (await served.data(f"{{ cells(orderBy: {order}) {{ id }} }}"))["cells"]
        ]
        try:
            whole = await _connection_ids(served, order, None)
            paged = await _connection_ids(served, order, 2)
        except AssertionError as err:
            problems.append(f"{name} {direction}: {err}")
            continue
        if not listed == whole == paged:
            problems.append(f"{name} {direction}: list {listed}, connection {whole}, pages {paged}")
    assert not problems, "\n".join(problems)


def _compared(served: Served, name: str, op: str, value: str) -> set[int]:
    """The rows the database's own SQL comparison keeps, the value cast to the column."""
    col = served.column(name)
    placeholder = "?" if served.dialect == "sqlite" else "%s"
    value_sql = placeholder
    db_type = (served.app.engine.catalog.fields["Cell"][name].db_type or "").lower()
    if served.dialect == "mysql" and db_type.startswith("bit("):
        value_sql = f"CAST(CONV({placeholder}, 2, 10) AS UNSIGNED)"
    elif served.dialect == "mysql" and db_type in ("inet4", "inet6"):
        value_sql = f"CAST({placeholder} AS {db_type})"
    elif served.dialect == "mysql" and db_type.startswith("set("):
        col = f"CAST({col} AS CHAR)"  # a SET compares with text as its text
    elif served.dialect == "postgresql" and db_type in ("bit", "varbit"):
        value_sql = f"CAST({placeholder} AS varbit)"
    sym = {"gt": ">", "lt": "<", "gte": ">=", "lte": "<="}[op]
    rows = served.db.query(f"SELECT id FROM {served.table} WHERE {col} {sym} {value_sql}", (value,))
    return {r[0] for r in rows}


@pytest.mark.parametrize("op", ["gt", "lt", "gte", "lte"])
async def test_string_comparisons_match_the_database_and_the_order(served: Served, op: str) -> None:
    """For each value a String field serves: the rows ``op`` keeps are those the database's
    own comparison keeps, and those that orderBy puts after (before) the value's rows."""
    problems = []
    for name in _string_fields(served):
        rows = (
            await served.data(
                f"{{ cells(orderBy: [{{{name}: ASC}}, {{id: ASC}}]) {{ id {name} }} }}"
            )
        )["cells"]
        present = [r for r in rows if r[name] is not None]
        for value in dict.fromkeys(r[name] for r in present):
            data = await served.data(
                f"query($v: String!) {{ cells(where: {{{name}: {{{op}: $v}}}}) {{ id }} }}",
                {"v": value},
            )
            got = {r["id"] for r in data["cells"]}
            truth = _compared(served, name, op, value)
            # Values equal as the type may be served otherwise ("10 days", "240:00:00").
            equal = await served.data(
                f"query($v: String!) {{ cells(where: {{{name}: {{eq: $v}}}}) {{ id }} }}",
                {"v": value},
            )
            same = {r["id"] for r in equal["cells"]}
            first = next(i for i, r in enumerate(present) if r["id"] in same)
            last = max(i for i, r in enumerate(present) if r["id"] in same)
            by_order = {
                "gt": present[last + 1 :],
                "gte": present[first:],
                "lt": present[:first],
                "lte": present[: last + 1],
            }[op]
            ordered = {r["id"] for r in by_order}
            if not got == truth == ordered:
                problems.append(
                    f"{name} {op} {value!r}: served {sorted(got)}, SQL {sorted(truth)},"
                    f" by the order {sorted(ordered)}"
                )
    assert not problems, "\n".join(problems)


async def test_min_and_max_are_the_first_and_last_values_in_order(served: Served) -> None:
    aggregate = served.gql.get_type("CellAggregate").fields
    if "min" not in aggregate:
        pytest.skip("no field has min and max")
    gaps = FILTER_GAPS[served.dialect]
    fields = [
        n
        for n in _named(aggregate["min"].type).fields
        if n in _order_fields(served) and n not in gaps
    ]
    selection = " ".join(fields)
    data = await served.data(
        f"{{ cellsAggregate {{ min {{ {selection} }} max {{ {selection} }} }} }}"
    )
    problems = []
    for name in fields:
        rows = (await served.data(f"{{ cells(orderBy: {{{name}: ASC}}) {{ {name} }} }}"))["cells"]
        values = [r[name] for r in rows if r[name] is not None]
        # Equal values may be served otherwise ("10 days", "240:00:00"): compare with eq.
        for kind, expected in (("min", values[0]), ("max", values[-1])):
            got = data["cellsAggregate"][kind][name]
            if got == expected:
                continue
            same = await served.body(
                f"query($v: String!) {{ cells(where: {{{name}: {{eq: $v}}}}) {{ {name} }} }}",
                {"v": got},
            )
            served_equal = [r[name] for r in (same.get("data") or {}).get("cells", [])]
            if expected not in served_equal:
                problems.append(f"{name} {kind}: {got!r}, the order says {expected!r}")
    assert not problems, "\n".join(problems)
