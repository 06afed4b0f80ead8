"""The graphql-http audit suite (GraphQL over HTTP conformance) against a real ``quiver serve``.

graphql-http is installed with npm once into ``$XDG_CACHE_HOME/quiver/npm`` (outside the
repository) and run with the machine's node; every audit must pass.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.graphql.servers import free_port, serving

GRAPHQL_HTTP_VERSION = "1.23.1"

AUDIT_SCRIPT = """
const { serverAudits } = require("graphql-http");
(async () => {
  const url = process.argv[2];
  const results = [];
  for (const audit of serverAudits({ url, fetchFn: fetch })) {
    const r = await audit.fn();
    results.push({ id: r.id, name: r.name, status: r.status, reason: r.reason || "" });
  }
  process.stdout.write(JSON.stringify(results));
})().catch((err) => { console.error(err); process.exit(2); });
"""


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quiver" / "npm"


@pytest.fixture(scope="module")
def graphql_http() -> Path:
    """The folder whose node_modules holds graphql-http (installed once, under a lock)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the graphql-http audits")
    folder = _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = folder / "node_modules" / "graphql-http" / "package.json"
        installed = marker.exists() and (
            json.loads(marker.read_text())["version"] == GRAPHQL_HTTP_VERSION
        )
        if not installed:
            (folder / "package.json").write_text('{"private": true}\n')
            subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--silent",
                 f"graphql-http@{GRAPHQL_HTTP_VERSION}", "graphql@16"],
                cwd=folder, check=True, timeout=300, capture_output=True,
            )  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def server_url(chinook_sqlite: Path) -> Iterator[str]:
    port = free_port()
    db = f"sqlite:///{chinook_sqlite.absolute()}"
    with serving("serve", "--db", db, "--port", str(port), port=port) as base:
        yield f"{base}/graphql"


def test_every_graphql_http_audit_passes(graphql_http: Path, server_url: str) -> None:
    script = graphql_http / "run-audits.cjs"
    script.write_text(AUDIT_SCRIPT)
    done = subprocess.run(
        ["node", str(script), server_url],
        cwd=graphql_http, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == 61  # the whole suite of the pinned graphql-http version ran
    failures = [r for r in results if r["status"] != "ok"]
    for r in failures:
        print(f"{r['status']}: {r['id']} {r['name']}: {r['reason']}")
    assert failures == [], "\n".join(f"{r['id']} {r['name']}: {r['reason']}" for r in failures)
