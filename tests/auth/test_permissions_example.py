"""examples/permissions: the configuration passes ``quiver check``, and each tenant's key reads
its own rows from ``quiver serve``."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import httpx

from tests.graphql.servers import QUIVER, free_port, serving

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "permissions"


def _shop(tmp_path: Path) -> str:
    shutil.copy(EXAMPLE / "quiver.yaml", tmp_path / "quiver.yaml")
    with sqlite3.connect(tmp_path / "shop.sqlite") as conn:
        conn.executescript((EXAMPLE / "schema.sql").read_text())
    return f"sqlite:///{(tmp_path / 'shop.sqlite').absolute()}"


def test_the_example_configuration_passes_check(tmp_path: Path) -> None:
    url = _shop(tmp_path)
    done = subprocess.run(
        [QUIVER, "check", "--db", url], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr + done.stdout


def test_each_tenant_reads_its_own_rows_without_emails(tmp_path: Path) -> None:
    url = _shop(tmp_path)
    port = free_port()
    query = {"query": "{ customers { name orders { total } } }"}
    with serving("serve", "--db", url, "--port", str(port), port=port, cwd=tmp_path) as base:

        def ask(key: str, body: dict[str, str]) -> dict[str, object]:
            headers = {"authorization": f"Bearer {key}"}
            answer: dict[str, object] = httpx.post(
                f"{base}/graphql", json=body, headers=headers, timeout=20
            ).json()
            return answer

        acme = ask("acme-key-change-me-0123456789", query)
        assert acme == {"data": {"customers": [{"name": "Ada", "orders": [{"total": 120}]}]}}
        globex = ask("globex-key-change-me-012345", query)
        assert globex == {"data": {"customers": [{"name": "Bob", "orders": [{"total": 80}]}]}}
        hidden = ask("acme-key-change-me-0123456789", {"query": "{ customers { email } }"})
        assert "email" in str(hidden["errors"])
        ops = ask("ops-key-change-me-0123456789", {"query": "{ customers { email } }"})
        assert ops == {
            "data": {"customers": [{"email": "ada@acme.example"}, {"email": "bob@globex.example"}]}
        }
