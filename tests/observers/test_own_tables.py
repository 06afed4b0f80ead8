"""Quiver's own tables in the served database (change log, ledger, dead letters, job queues)
are never entities of the API: not in GraphQL, not in quiver check."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.graphql.servers import QUIVER

OWN = [
    "quiver_change_log",
    "quiver_change_log_writers",
    "quiver_observer_ledger",
    "quiver_observer_ledger_claims",
    "quiver_observer_dead_letters",
    "quiver_jobs",
    "render_jobs",
]


def _database(tmp_path: Path) -> str:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        for table in OWN:
            db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, payload TEXT)")
        db.execute(
            "CREATE TABLE orders (id INTEGER PRIMARY KEY,"
            " job_id INTEGER REFERENCES quiver_jobs (id))"
        )
    return f"sqlite:///{path}"


SETTINGS = {
    "observers": [
        {
            "name": "render",
            "entity": "Order",
            "actions": [{"type": "job", "job": "render", "table": "render_jobs"}],
        }
    ]
}


async def test_the_graphql_api_serves_none_of_quivers_own_tables(tmp_path: Path) -> None:
    url = _database(tmp_path)
    settings = QuiverSettings.model_validate({"database": {"url": url}, **SETTINGS})
    engine = await GraphQLEngine.open(await reflect_database(url), settings)
    try:
        served = [e.name for e in engine.schema.entities]
        query = engine.graphql_schema.query_type
        assert query is not None
        roots = set(query.fields)
        order = next(e for e in engine.schema.entities if e.name == "Order")
    finally:
        await engine.close()
    assert served == ["Order"]
    assert not any(name.startswith("quiver") or name.startswith("render") for name in roots)
    assert [r.name for r in order.relations] == []  # its link to quiver_jobs is not served


def test_quiver_check_lists_only_the_users_tables(tmp_path: Path) -> None:
    url = _database(tmp_path)
    (tmp_path / "quiver.yaml").write_text(
        "observers:\n"
        "  - name: render\n"
        "    entity: Order\n"
        "    actions: [{type: job, job: render, table: render_jobs}]\n"
    )
    done = subprocess.run(
        [QUIVER, "check", "--db", url], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "schema: 1 type, 0 relations" in done.stdout
    assert [line for line in done.stdout.splitlines() if line.startswith("  ")] == [
        "  Order (orders): 2 fields, 0 relations, key id"
    ]
