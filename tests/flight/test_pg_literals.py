"""PostgreSQL export values travel as escaped constants: each one reads back as itself."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pytest

from quiver.flight.export import pg_inline, pg_literal
from quiver.flight.tickets import TicketError
from quiver.sql.connect import connect_adbc
from quiver.sql.url import parse_database_url
from tests.conftest import POSTGRESQL_ADMIN_URL

HOSTILE = [
    "x' OR '1'='1",
    "back\\slash' -- ",
    "\\'; DROP TABLE t; --",
    "$1 $2 \"quoted\" ''",
    "E'\\x41'",
    "ünïcødé ✓ 𝄞",
    "new\nline\ttab",
    "",
]


@pytest.fixture(scope="module")
def pg() -> Any:
    conn = connect_adbc(parse_database_url(POSTGRESQL_ADMIN_URL))
    try:
        yield conn
    finally:
        conn.close()


def _one(conn: Any, text: str) -> Any:
    with conn.cursor() as cursor:
        cursor.execute(text)
        return cursor.fetchone()[0]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_text_reads_back_as_itself(pg: Any, value: str) -> None:
    assert _one(pg, f"SELECT CAST({pg_literal(value)} AS text)") == value
    assert _one(pg, f"SELECT {pg_literal(value)} = $$" + value + "$$") is True


@pytest.mark.parametrize(
    "value, cast, expected",
    [
        (42, "integer", 42),
        (-(2**62), "bigint", -(2**62)),
        (decimal.Decimal("12345678901234567890.123"), "numeric", None),
        (1.5e-300, "double precision", 1.5e-300),
        (True, "boolean", True),
        (dt.datetime(2026, 1, 2, 3, 4, 5, 678901), "timestamp", None),
        (dt.date(2026, 2, 28), "date", dt.date(2026, 2, 28)),
        (uuid.UUID("12345678-1234-5678-1234-567812345678"), "uuid", None),
        (b"\x00\x01'\\", "bytea", b"\x00\x01'\\"),
    ],
)
def test_typed_values_read_back_exactly(pg: Any, value: Any, cast: str, expected: Any) -> None:
    got = _one(pg, f"SELECT CAST({pg_literal(value)} AS {cast})")
    if expected is None:
        assert str(got) == str(value) or got == value
    else:
        assert got == expected


def test_array_values_keep_quotes_commas_and_nulls(pg: Any) -> None:
    values = ["a,b", 'say "hi"', "back\\slash", None, "{braces}", "it's"]
    assert _one(pg, f"SELECT CAST({pg_literal(values)} AS text[])") == values
    assert _one(pg, f"SELECT 3 = ANY({pg_literal([1, 2, 3])})") is True


def test_placeholders_inside_quoted_names_and_strings_are_left_alone() -> None:
    text = "SELECT \"a$1\" FROM t WHERE x = $1 AND y = '$2' AND z = $2 LIMIT $3"
    assert pg_inline(text, ["o'k", 5, 10]) == (
        "SELECT \"a$1\" FROM t WHERE x = E'o''k' AND y = '$2' AND z = E'5' LIMIT E'10'"
    )


def test_an_untyped_constant_is_typed_like_a_parameter(pg: Any) -> None:
    text = pg_inline("SELECT n FROM generate_series(1, 10) AS g(n) WHERE n > $1 LIMIT $2", [7, 2])
    with pg.cursor() as cursor:
        cursor.execute(text)
        assert [r[0] for r in cursor.fetchall()] == [8, 9]


def test_a_nul_character_is_a_clear_error() -> None:
    with pytest.raises(TicketError, match="NUL"):
        pg_literal("a\x00b")
