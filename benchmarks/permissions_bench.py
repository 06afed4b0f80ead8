"""What a role's row filter costs a GraphQL query, on PostgreSQL and MariaDB.

Loads customers (20,000, ten tenants) and orders (100,000) into a new database of each, opens
the GraphQL engine, and runs one nested query (customers with their orders and an order count)
in turn as:

* ``admin``: a key without a role (the baseline: the plain tables);
* ``all rows``: a role whose filter keeps every row (``tenantId: {gte: 0}``): the same rows as
  the baseline, so the ratio is the cost of filtering through the role's derived tables;
* ``one tenant``: a role that sees a tenth of the rows (what a tenant key really runs).

Each is run ``--rounds`` times, alternating, and the median time per query is kept; the ratio
printed is against ``admin`` from the same run.

    .venv/bin/python benchmarks/permissions_bench.py [--rounds 5] [--queries 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from typing import Any

from quiver.auth.keys import Principal
from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database

QUERY = (
    "{ customers(where: {id: {lt: 2000}})"
    " { id name orders { id total } ordersAggregate { count } } }"
)
MINE = {"tenantId": {"eq": "$claims.tenant_id"}}
EVERY = {"tenantId": {"gte": 0}}


def _permissions() -> dict[str, Any]:
    return {
        "api_keys": [
            {"name": "all", "key": "all-rows-key-0123456789", "role": "all"},
            {
                "name": "one",
                "key": "one-tenant-key-012345",
                "role": "tenant",
                "claims": {"tenant_id": 3},
            },
        ],
        "permissions": {
            "all": {
                "Customer": {"select": {"filter": EVERY}},
                "Order": {"select": {"filter": EVERY}},
            },
            "tenant": {
                "Customer": {"select": {"filter": MINE}},
                "Order": {"select": {"filter": MINE}},
            },
        },
    }


def _create(dialect: str) -> str:
    name = f"quiver_bench_{uuid.uuid4().hex[:8]}"
    if dialect == "postgresql":
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        with psycopg.connect(url, autocommit=True) as c:
            c.execute(
                "CREATE TABLE customers (id INT PRIMARY KEY, tenant_id INT NOT NULL, name TEXT)"
            )
            c.execute(
                "CREATE TABLE orders (id INT PRIMARY KEY, tenant_id INT NOT NULL,"
                " customer_id INT NOT NULL REFERENCES customers(id), total INT)"
            )
            c.execute("CREATE INDEX ON orders (customer_id)")
            c.execute(
                "INSERT INTO customers SELECT g, g % 10, 'c' || g FROM generate_series(1, 20000) g"
            )
            c.execute(
                "INSERT INTO orders SELECT g, g % 10, 1 + g % 20000, g"
                " FROM generate_series(1, 100000) g"
            )
            c.execute("ANALYZE")
        return url
    import pymysql

    my = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    with my.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"USE `{name}`")
        cur.execute(
            "CREATE TABLE customers (id INT PRIMARY KEY, tenant_id INT NOT NULL, name VARCHAR(40))"
        )
        cur.execute(
            "CREATE TABLE orders (id INT PRIMARY KEY, tenant_id INT NOT NULL,"
            " customer_id INT NOT NULL,"
            " total INT, KEY (customer_id), FOREIGN KEY (customer_id) REFERENCES customers(id))"
        )
        cur.execute(
            "INSERT INTO customers SELECT seq, seq % 10, CONCAT('c', seq) FROM seq_1_to_20000"
        )
        cur.execute(
            "INSERT INTO orders SELECT seq, seq % 10, 1 + seq % 20000, seq FROM seq_1_to_100000"
        )
        cur.execute("ANALYZE TABLE customers, orders")
    my.close()
    return f"mysql://root@127.0.0.1:3306/{name}"


def _drop(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        import pymysql

        my = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
        with my.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        my.close()


async def _run(url: str, rounds: int, queries: int) -> dict[str, float]:
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate(
        {"database": {"url": url}, "auth": _permissions(), "graphql": {"max_cost": 10**9}}
    )
    engine = await GraphQLEngine.open(schema, settings)
    views = {
        "admin": engine,
        "all rows": engine.for_principal(Principal("all", "", "all")),
        "one tenant": engine.for_principal(Principal("one", "", "tenant", (("tenant_id", 3),))),
    }
    times: dict[str, list[float]] = {k: [] for k in views}
    try:
        for view in views.values():  # plan and warm the caches
            outcome = await view.execute(view.prepare(QUERY), None)
            assert outcome.kind == "data", outcome.body[:300]
        for _ in range(rounds):
            for name, view in views.items():
                prepared = view.prepare(QUERY)
                started = time.perf_counter()
                for _ in range(queries):
                    await view.execute(prepared, None)
                times[name].append((time.perf_counter() - started) / queries)
    finally:
        await engine.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}, cores: {os.cpu_count()}")
    for dialect in ("postgresql", "mysql"):
        url = _create(dialect)
        try:
            result = asyncio.run(_run(url, args.rounds, args.queries))
        finally:
            _drop(url)
        base = result["admin"]
        for name, seconds in result.items():
            print(
                f"{dialect:10} {name:10} {seconds * 1000:8.2f} ms/query"
                f"  ratio vs admin {seconds / base:5.2f}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
