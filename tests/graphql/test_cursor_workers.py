"""The workers of one ``quiver serve`` accept each other's cursors without a configured secret."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.graphql.servers import free_port, serving

PAGE = """query($after: String) {
  genresConnection(first: 2, after: $after) {
    edges { node { genreId } } pageInfo { endCursor }
  }
}"""


def test_every_worker_takes_a_cursor_another_issued(chinook_sqlite: Path) -> None:
    port = free_port()
    url = f"sqlite:///{chinook_sqlite.absolute()}"
    args = ("serve", "--db", url, "--workers", "2", "--port", str(port))
    with serving(*args, port=port) as base:
        first = httpx.post(f"{base}/graphql", json={"query": PAGE}, timeout=10).json()
        cursor = first["data"]["genresConnection"]["pageInfo"]["endCursor"]
        expected = None
        # New connections each time, so the requests spread over both workers.
        for _ in range(12):
            r = httpx.post(
                f"{base}/graphql",
                json={"query": PAGE, "variables": {"after": cursor}},
                headers={"connection": "close"},
                timeout=10,
            )
            body = r.json()
            assert "errors" not in body, body
            ids = [e["node"]["genreId"] for e in body["data"]["genresConnection"]["edges"]]
            assert expected is None or ids == expected
            expected = ids
        assert expected == [3, 4]
