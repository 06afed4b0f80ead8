"""Row counts and foreign-key fan-out read from each database, and the cost limit using them."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema import statistics
from quiver.schema.reflect import reflect_database
from quiver.schema.statistics import SAMPLE_ROWS, read_statistics
from quiver.sql.connect import connect_sqlite
from tests.graphql.test_statement_timeout import execute_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: Two customers with three orders each, four lines an order, lines spread over five products.
SHOP = [
    "CREATE TABLE customers (id int PRIMARY KEY, name varchar(20))",
    "CREATE TABLE products (id int PRIMARY KEY, title varchar(20))",
    "CREATE TABLE orders (id int PRIMARY KEY, customer_id int,"
    " FOREIGN KEY (customer_id) REFERENCES customers (id))",
    "CREATE TABLE order_lines (id int PRIMARY KEY, order_id int, product_id int,"
    " FOREIGN KEY (order_id) REFERENCES orders (id),"
    " FOREIGN KEY (product_id) REFERENCES products (id))",
    "CREATE VIEW recent_orders AS SELECT id, customer_id FROM orders",
    "INSERT INTO customers VALUES (1, 'Ada'), (2, 'Bo')",
    "INSERT INTO products VALUES " + ", ".join(f"({i}, 'p{i}')" for i in range(1, 6)),
    "INSERT INTO orders VALUES " + ", ".join(f"({o}, {1 + o % 2})" for o in range(1, 7)),
    "INSERT INTO order_lines VALUES "
    + ", ".join(f"({i}, {1 + i % 6}, {1 + i % 5})" for i in range(1, 25)),
]

NESTED = "{ customers { orders { orderLines { product { title } } } } }"


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def shop(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"fresh_{request.param}")
    execute_statements(url, SHOP)
    return url


async def test_rows_and_fanout_come_from_the_database(shop: str) -> None:
    stats = await read_statistics(shop, await reflect_database(shop))
    assert stats.rows == {"Customer": 2, "Product": 5, "Order": 6, "OrderLine": 24}
    assert stats.fanout == {
        ("Customer", "orders"): 3,
        ("Order", "orderLines"): 4,
        ("Product", "orderLines"): 5,
    }


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
async def test_tables_and_columns_whose_names_hold_a_percent_sign_are_counted(
    dialect: str, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    q = "`" if dialect == "mysql" else '"'
    execute_statements(
        url,
        [
            f"CREATE TABLE {q}box%s{q} (id int PRIMARY KEY)",
            f"CREATE TABLE {q}part%%{q} (id int PRIMARY KEY, {q}box%s_id{q} int,"
            f" FOREIGN KEY ({q}box%s_id{q}) REFERENCES {q}box%s{q} (id))",
            f"INSERT INTO {q}box%s{q} VALUES (1), (2)",
            f"INSERT INTO {q}part%%{q} VALUES (1, 1), (2, 1), (3, 2), (4, 2)",
        ],
    )
    schema = await reflect_database(url)
    names = {e.source: e.name for e in schema.entities}
    stats = await read_statistics(url, schema)
    assert stats.rows == {names["box%s"]: 2, names["part%%"]: 4}
    assert list(stats.fanout.values()) == [2]


async def test_a_database_that_cannot_answer_gives_no_statistics(shop: str) -> None:
    schema = await reflect_database(shop)
    stats = await read_statistics("postgresql://nobody@127.0.0.1:1/none", schema)
    assert stats.rows == {} and stats.fanout == {}


async def _engine(url: str, **graphql: Any) -> GraphQLEngine:
    settings = QuiverSettings.model_validate(
        {"database": {"url": url, "pool_max": 2}, "graphql": graphql}
    )
    return await GraphQLEngine.open(await reflect_database(url), settings)


async def test_a_nested_query_on_a_small_database_costs_what_it_reads(shop: str) -> None:
    engine = await _engine(shop)
    try:
        prepared = engine.prepare(NESTED, None)
        assert prepared.errors == []
        # 1 + 2 customers * (1 + 3 orders * (1 + 4 lines * (product 1 + title 1)))
        assert prepared.cost == 1 + 2 * (1 + 3 * (1 + 4 * 2))
        outcome = await engine.execute(prepared, None)
        assert outcome.kind == "data"
        # An explicit limit still counts as given; a view has no statistics: 100 rows.
        assert engine.prepare("{ customers(limit: 1000) { name } }", None).cost == 1 + 1000
        assert engine.prepare("{ recentOrders { id } }", None).cost == 1 + 100
        # graphql.default_list_limit still caps what the statistics say
    finally:
        await engine.close()
    engine = await _engine(shop, default_list_limit=2, max_cost=10)
    try:
        (error,) = engine.prepare(NESTED, None).errors
        assert error["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
        assert error["extensions"]["cost"] == 1 + 2 * (1 + 2 * (1 + 2 * 2))
    finally:
        await engine.close()


async def test_sqlite_tables_past_the_sample_are_estimated_without_a_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, note TEXT)")
        conn.execute("CREATE TABLE keyed (code TEXT PRIMARY KEY, n INT) WITHOUT ROWID")
        conn.execute("CREATE TABLE shadowed (id INTEGER PRIMARY KEY, rowid TEXT)")
        conn.execute("INSERT INTO shadowed VALUES (1, 'a'), (2, 'b')")
        conn.execute("CREATE TABLE analyzed (id INTEGER PRIMARY KEY, kind INT)")
        conn.execute("CREATE INDEX analyzed_kind ON analyzed (kind)")
        rows = SAMPLE_ROWS + 5_000
        conn.executemany("INSERT INTO big VALUES (?, 'x')", ((i,) for i in range(1, rows + 1)))
        conn.executemany("INSERT INTO keyed VALUES (?, 1)", ((f"k{i:07d}",) for i in range(rows)))
        conn.executemany("INSERT INTO analyzed VALUES (?, 1)", ((i,) for i in range(1, rows + 1)))
        conn.execute("ANALYZE analyzed")
        # ANALYZE's count stands until it runs again (the largest rowid says otherwise)
        conn.execute(f"DELETE FROM analyzed WHERE id > {SAMPLE_ROWS + 1_000}")

    statements: list[str] = []
    opened = connect_sqlite

    def traced(*args: Any, **kwargs: Any) -> Any:
        conn = opened(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(statistics, "connect_sqlite", traced)
    url = f"sqlite:///{path}"
    stats = await read_statistics(url, await reflect_database(url))
    assert stats.rows == {"Big": rows, "Keyed": rows, "Analyzed": rows, "Shadowed": 2}
    whole = [s for s in statements if "count(*)" in s.lower() and "limit" not in s.lower()]
    # only the WITHOUT ROWID table and the one whose rowid is a column of text are counted
    assert sorted(whole) == ['SELECT count(*) FROM "keyed"', 'SELECT count(*) FROM "shadowed"']
