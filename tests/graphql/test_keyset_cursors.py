"""Keyset cursors: a cursor holds its row's order keys, signed; pages follow the order keys.

Expected orders are computed in Python from rows read with plain SQL, never from Quiver.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb, Dialect, create_empty_database, drop_database
from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")

# Scores and groups repeat and hold nulls, so ties and null placement both matter.
ROWS = [
    (i, None if i % 5 == 0 else f"g{i % 3}", None if i % 4 == 1 else (i * 7) % 6, f"item {i:02d}")
    for i in range(1, 38)
]


async def _engine(url: str, secret: str | None = None) -> GraphQLEngine:
    schema = await reflect_database(url)
    graphql: dict[str, Any] = {"cursor_secret": secret} if secret else {}
    settings = QuiverSettings.model_validate(
        {"database": {"url": url, "pool_max": 2}, "graphql": graphql}
    )
    return await GraphQLEngine.open(schema, settings)


@pytest_asyncio.fixture(loop_scope="session", params=DIALECTS)
async def items(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Runner]:
    """An engine over a fresh ``item`` table in each dialect."""
    dialect: Dialect = request.param
    url = (
        f"sqlite:///{tmp_path / 'items.sqlite'}"
        if dialect == "sqlite"
        else create_empty_database(dialect)
    )
    db = ChinookDb(dialect, url)
    engine: GraphQLEngine | None = None
    try:
        db.query(
            "CREATE TABLE item (id INTEGER PRIMARY KEY, grp VARCHAR(10), score INTEGER,"
            " label VARCHAR(20) NOT NULL)"
        )
        mark = "?" if dialect == "sqlite" else "%s"
        for row in ROWS:
            db.query(f"INSERT INTO item VALUES ({mark}, {mark}, {mark}, {mark})", row)
        engine = await _engine(url, "a secret shared by the test's engines")
        yield Runner(engine, db)
    finally:
        if engine is not None:
            await engine.close()
        db.close()
        if dialect != "sqlite":
            drop_database(url)


def _rows(runner: Runner) -> list[tuple[Any, ...]]:
    return runner.sql("SELECT id, grp, score, label FROM item")


_COLUMNS = {"grp": 1, "score": 2, "label": 3}
_PLACEMENT = {
    "ASC": (False, True),
    "DESC": (True, False),
    "ASC_NULLS_FIRST": (False, False),
    "ASC_NULLS_LAST": (False, True),
    "DESC_NULLS_FIRST": (True, False),
    "DESC_NULLS_LAST": (True, True),
}


def _expected(rows: list[tuple[Any, ...]], order: list[tuple[str, str]]) -> list[int]:
    """Ids in the order ``order`` gives, the key ascending last (a stable multi-pass sort)."""
    out = sorted(rows, key=lambda r: r[0])
    for name, direction in reversed(order):
        col = _COLUMNS[name]
        descending, nulls_last = _PLACEMENT[direction]
        present = sorted(
            (r for r in out if r[col] is not None), key=lambda r: r[col], reverse=descending
        )
        nulls = [r for r in out if r[col] is None]
        out = present + nulls if nulls_last else nulls + present
    return [r[0] for r in out]


def _order_arg(order: list[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{{{n}: {d}}}" for n, d in order) + "]"


ORDERS = [
    [],
    [("score", "ASC")],
    [("score", "DESC")],
    [("grp", "ASC_NULLS_FIRST"), ("score", "DESC_NULLS_LAST")],
    [("grp", "DESC"), ("score", "ASC_NULLS_FIRST"), ("label", "DESC")],
    [("score", "DESC_NULLS_LAST"), ("grp", "ASC")],
]


def _page_query(order: list[tuple[str, str]]) -> str:
    return (
        "query($first: Int, $after: String, $last: Int, $before: String) {"
        f" itemsConnection(first: $first, after: $after, last: $last, before: $before,"
        f" orderBy: {_order_arg(order)}) {{ edges {{ cursor node {{ id }} }}"
        " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"
    )


async def _page(runner: Runner, query: str, **variables: Any) -> dict[str, Any]:
    data = await runner.data(query, variables)
    conn: dict[str, Any] = data["itemsConnection"]
    return conn


async def _forward(
    runner: Runner, query: str, size: int, between: Callable[[int], None] | None = None
) -> list[int]:
    seen: list[int] = []
    after = None
    for n in range(200):
        conn = await _page(runner, query, first=size, after=after)
        seen.extend(e["node"]["id"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            return seen
        after = conn["pageInfo"]["endCursor"]
        if between is not None:
            between(n)
    raise AssertionError("paging never ended")


@pytest.mark.parametrize("order", ORDERS, ids=[_order_arg(o) for o in ORDERS])
@pytest.mark.parametrize("size", [1, 4, 10])
async def test_paging_forward_visits_the_full_order_once(
    items: Runner, order: list[tuple[str, str]], size: int
) -> None:
    expected = _expected(_rows(items), order)
    assert await _forward(items, _page_query(order), size) == expected


@pytest.mark.parametrize("order", ORDERS[1:], ids=[_order_arg(o) for o in ORDERS[1:]])
async def test_paging_backward_visits_the_full_order_once(
    items: Runner, order: list[tuple[str, str]]
) -> None:
    query = _page_query(order)
    seen: list[int] = []
    before = None
    for _ in range(100):
        conn = await _page(items, query, last=4, before=before)
        seen[:0] = [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasPreviousPage"]:
            break
        before = conn["pageInfo"]["startCursor"]
    assert seen == _expected(_rows(items), order)


async def test_rows_inserted_or_deleted_between_pages_neither_repeat_nor_skip_rows(
    items: Runner,
) -> None:
    order = [("score", "ASC"), ("grp", "DESC")]
    query = _page_query(order)
    before_rows = _rows(items)
    mark = "?" if items.dialect == "sqlite" else "%s"
    deleted: list[int] = []
    first = await _page(items, query, first=6)
    page_one = [e["node"]["id"] for e in first["edges"]]
    # Rows that sort ahead of the cursor and behind it arrive; the cursor's own row and a row
    # not yet seen leave.
    items.sql(f"INSERT INTO item VALUES ({mark}, {mark}, {mark}, {mark})", (100, "g9", 0, "new"))
    items.sql(f"INSERT INTO item VALUES ({mark}, {mark}, {mark}, {mark})", (101, None, 5, "new"))
    expected_rest = [i for i in _expected(before_rows, order) if i not in page_one]
    for gone in (page_one[-1], expected_rest[3]):
        items.sql(f"DELETE FROM item WHERE id = {mark}", (gone,))
        deleted.append(gone)
    seen = list(page_one)
    after = first["pageInfo"]["endCursor"]
    for _ in range(50):
        conn = await _page(items, query, first=6, after=after)
        seen.extend(e["node"]["id"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)), f"a row repeated: {seen}"
    survivors = {r[0] for r in before_rows} - set(deleted)
    assert survivors <= set(seen), f"rows skipped: {sorted(survivors - set(seen))}"
    # Row 100 sorts ahead of the cursor: a later page never shows it; row 101 sorts behind.
    assert 100 not in seen and 101 in seen
    rest = [i for i in _expected(_rows(items), order) if i in set(seen) - set(page_one)]
    assert seen[len(page_one) :] == rest


def _tampered(cursor: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    payload = raw[:-16]
    tag, values = orjson.loads(bytes(payload))
    forged = orjson.dumps([tag, [v + 1 if isinstance(v, int) else v for v in values]])
    return base64.urlsafe_b64encode(forged + raw[-16:]).rstrip(b"=").decode()


def _unsigned(cursor: str, values: list[Any]) -> str:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    tag, _ = orjson.loads(raw[:-16])
    payload = orjson.dumps([tag, values])
    return base64.urlsafe_b64encode(payload + b"\0" * 16).rstrip(b"=").decode()


async def test_a_forged_tampered_or_never_issued_cursor_is_refused(items: Runner) -> None:
    query = _page_query([("score", "ASC")])
    conn = await _page(items, query, first=3)
    good = conn["pageInfo"]["endCursor"]
    assert (await _page(items, query, first=3, after=good))["edges"]
    forged = [
        _tampered(good),
        _unsigned(good, [0, 3]),
        good[:-2],
        good + "A",
        "WyJ4Il0",  # base64 of ["x"] with no signature
        "o3_deadbeef",  # the shape of an offset cursor
        "",
        "not base64 at all!",
    ]
    for cursor in forged:
        for arg in ("after", "before"):
            kind, body = await items.raw(query, {"first": 2, arg: cursor})
            assert kind == "request_error", (cursor, body)
            error = body["errors"][0]
            assert error["extensions"]["code"] == "BAD_USER_INPUT", body
            assert "cursor" in error["message"] and arg in error["message"], body


async def test_a_cursor_is_refused_by_another_ordering_and_under_another_secret(
    items: Runner,
) -> None:
    conn = await _page(items, _page_query([("score", "ASC")]), first=3)
    cursor = conn["pageInfo"]["endCursor"]
    errors = await items.errors(_page_query([("score", "DESC")]), {"first": 2, "after": cursor})
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "another connection or ordering" in errors[0]["message"]
    same = await _engine(items.db.url, "a secret shared by the test's engines")
    other = await _engine(items.db.url, "another secret")
    try:
        ok = Runner(same, items.db)
        page = await _page(ok, _page_query([("score", "ASC")]), first=2, after=cursor)
        assert page["edges"]
        refused = await Runner(other, items.db).errors(
            _page_query([("score", "ASC")]), {"first": 2, "after": cursor}
        )
        assert refused[0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert "not a cursor this server issued" in refused[0]["message"]
    finally:
        await same.close()
        await other.close()


async def test_a_bad_cursor_is_refused_even_when_no_page_window_is_selected(
    items: Runner,
) -> None:
    errors = await items.errors(
        "query($c: String) { itemsConnection(first: 2, after: $c) { totalCount } }",
        {"c": "forged"},
    )
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_paging_by_an_enum_follows_the_enum_order(
    dialect: Literal["postgresql", "mysql"],
) -> None:
    """Enums sort by their declared order, not by their text, and cursors compare the same."""
    url = create_empty_database(dialect)
    db = ChinookDb(dialect, url)
    engine: GraphQLEngine | None = None
    try:
        if dialect == "mysql":
            db.query("CREATE TABLE item (id INT PRIMARY KEY, kind ENUM('b', 'a', 'c'))")
        else:
            db.query("CREATE TYPE kind AS ENUM ('b', 'a', 'c')")
            db.query("CREATE TABLE item (id INT PRIMARY KEY, kind kind)")
        db.query(
            "INSERT INTO item VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'a'), (5, 'b'),"
            " (6, NULL), (7, 'c'), (8, 'a')"
        )
        engine = await _engine(url)
        runner = Runner(engine, db)
        for direction, expected in (
            ("ASC", [2, 5, 1, 4, 8, 3, 7, 6]),
            ("DESC", [6, 3, 7, 1, 4, 8, 2, 5]),
        ):
            query = (
                "query($first: Int, $after: String) { itemsConnection(first: $first,"
                f" after: $after, orderBy: [{{kind: {direction}}}]) {{ edges {{ node {{ id }} }}"
                " pageInfo { hasNextPage endCursor } } }"
            )
            assert await _forward(runner, query, 2) == expected
    finally:
        if engine is not None:
            await engine.close()
        db.close()
        drop_database(url)


async def test_the_paging_arguments_say_what_they_take(items: Runner) -> None:
    conn = items.engine.graphql_schema.query_type.fields["itemsConnection"]  # type: ignore[union-attr]
    described = {name: arg.description or "" for name, arg in conn.args.items()}
    assert "cursor" in described["after"] and "cursor" in described["before"]
    assert "at most" in described["first"] and "at most" in described["last"]


async def test_paging_by_a_single_precision_float_on_mariadb_keeps_every_row() -> None:
    """MariaDB serves a FLOAT with 6 digits; a cursor must hold the exact value."""
    url = create_empty_database("mysql")
    db = ChinookDb("mysql", url)
    engine: GraphQLEngine | None = None
    try:
        db.query("CREATE TABLE item (id INT PRIMARY KEY, f FLOAT)")
        values = [1.2345671, 1.2345675, 1.2345679, 1.2345675, 123456789.0, 123456795.0, 0.1]
        for i, v in enumerate(values, 1):
            db.query("INSERT INTO item VALUES (%s, %s)", (i, v))
        expected = [r[0] for r in db.query("SELECT id FROM item ORDER BY f, id")]
        engine = await _engine(url)
        query = (
            "query($first: Int, $after: String) { itemsConnection(first: $first, after: $after,"
            " orderBy: [{f: ASC}]) { edges { node { id } } pageInfo { hasNextPage endCursor } } }"
        )
        assert await _forward(Runner(engine, db), query, 1) == expected
    finally:
        if engine is not None:
            await engine.close()
        db.close()
        drop_database(url)


#: A million rows: reading them all for one page of ten takes PostgreSQL and SQLite over a
#: second and MariaDB many; reading from the cursor on takes milliseconds.
MILLION_ROWS = {
    "postgresql": [
        "CREATE TABLE events (id int PRIMARY KEY, kind text)",
        "INSERT INTO events SELECT g, md5(g::text) FROM generate_series(1, 1000000) g",
        "ANALYZE events",
    ],
    "mysql": [
        "CREATE TABLE events (id int PRIMARY KEY, kind varchar(32))",
        "INSERT INTO events SELECT seq, MD5(seq) FROM seq_1_to_1000000",
    ],
    "sqlite": [
        "CREATE TABLE events (id integer PRIMARY KEY, kind text)",
        "INSERT INTO events WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g"
        " WHERE x < 1000000) SELECT x, hex(x) FROM g",
    ],
}


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
async def test_paging_reads_from_the_cursor_not_every_row(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    from tests.graphql.test_statement_timeout import execute_statements

    url: str = request.getfixturevalue(f"fresh_{dialect}")
    execute_statements(url, MILLION_ROWS[dialect])
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate(
        {"database": {"url": url, "pool_max": 2, "statement_timeout_ms": 800}}
    )
    engine = await GraphQLEngine.open(schema, settings)
    page = (
        "query ($after: String) { eventsConnection(first: 10, after: $after) {"
        " nodes { id } pageInfo { hasNextPage hasPreviousPage endCursor } } }"
    )
    back = (
        "query ($before: String) { eventsConnection(last: 10, before: $before) {"
        " nodes { id } pageInfo { hasNextPage hasPreviousPage startCursor } } }"
    )

    async def run(query: str, variables: dict[str, Any] | None = None) -> Any:
        body = orjson.loads((await engine.execute(engine.prepare(query, None), variables)).body)
        # within the 0.8 s statement timeout, where reading every row ran past it
        assert "errors" not in body, body
        return body["data"]["eventsConnection"]

    try:
        first = await run(page)
        second = await run(page, {"after": first["pageInfo"]["endCursor"]})
        last = await run(back)
        before_last = await run(back, {"before": last["pageInfo"]["startCursor"]})
    finally:
        await engine.close()
    assert first["nodes"] == [{"id": i} for i in range(1, 11)]
    assert second["nodes"] == [{"id": i} for i in range(11, 21)]
    assert second["pageInfo"]["hasNextPage"] and second["pageInfo"]["hasPreviousPage"]
    assert last["nodes"] == [{"id": i} for i in range(999_991, 1_000_001)]
    assert before_last["nodes"] == [{"id": i} for i in range(999_981, 999_991)]
    assert before_last["pageInfo"]["hasNextPage"] and before_last["pageInfo"]["hasPreviousPage"]
