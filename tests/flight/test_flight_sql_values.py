"""String constants of Flight SQL reach the filter as standard SQL reads them."""

from __future__ import annotations

from typing import Any

import pytest


def _names(conn: Any, where: str) -> list[str]:
    with conn.cursor() as cur:
        cur.execute(f"SELECT name FROM Genre WHERE {where}")
        return sorted(cur.fetch_arrow_table().column("name").to_pylist())


@pytest.mark.parametrize(
    "where",
    [
        "name = 'Rock' OR name = 'it''s'",
        "name IN ('Rock', 'back\\slash')",
        "name = 'Rock' OR name = 'ünï ✓'",
    ],
)
def test_quotes_and_backslashes_in_sql_constants_are_only_values(conn: Any, where: str) -> None:
    assert _names(conn, where) == ["Rock"]


def test_a_backslash_does_not_escape_the_closing_quote(conn: Any) -> None:
    """Standard SQL: 'x\\' is the text x\\, so what follows is SQL again (and refused here)."""
    import adbc_driver_manager

    with pytest.raises(adbc_driver_manager.OperationalError, match="is not a column"):
        _names(conn, "name = 'Rock' OR name = 'x\\' OR 1=1 --'")
    assert _names(conn, "name = 'Rock'") == ["Rock"]
