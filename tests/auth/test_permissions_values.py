"""Claims reach the database as bind parameters, never as SQL text."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson

from quiver.auth.keys import Principal
from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database

HOSTILE = "x' OR '1'='1"


async def test_a_claim_holding_sql_matches_only_rows_equal_to_it(tmp_path: Path) -> None:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, org TEXT NOT NULL)")
        conn.execute("INSERT INTO accounts VALUES (1, 'acme'), (2, 'globex'), (3, ?)", (HOSTILE,))
    url = f"sqlite:///{path.absolute()}"
    settings = QuiverSettings.model_validate(
        {
            "database": {"url": url},
            "auth": {
                "api_keys": [
                    {"name": "evil", "key": "e" * 20, "role": "org", "claims": {"org": HOSTILE}}
                ],
                "permissions": {
                    "org": {"Account": {"select": {"filter": {"org": {"eq": "$claims.org"}}}}}
                },
            },
        }
    )
    engine = await GraphQLEngine.open(await reflect_database(url), settings)
    try:
        view = engine.for_principal(Principal("evil", "", "org", (("org", HOSTILE),)))
        prepared = view.prepare("{ accounts { id } }")
        outcome = await view.execute(prepared, None)
        assert orjson.loads(outcome.body) == {"data": {"accounts": [{"id": 3}]}}
        plan = next(iter(prepared.plans.values()))
        assert HOSTILE not in plan[0].sql and "'1'='1" not in plan[0].sql
    finally:
        await engine.close()
