"""PostgreSQL export values travel as escaped constants: each one reads back as itself."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quiver.flight.export import pg_inline, pg_literal
from quiver.flight.pool import ConnectionPool
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


# --- client encodings and arbitrary text -------------------------------------------------------

# In Shift-JIS the byte after 0x81..0x9F belongs to the same character: "Á" is C3 81 in UTF-8,
# so an escaped backslash after it (81 5C 5C) would leave one lone backslash to escape the
# closing quote. Escaping is only sound when the connection reads the text as UTF-8.
SJIS_BREAKER = "Á\\"


def test_a_pool_connection_reads_text_as_utf8_whatever_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PGCLIENTENCODING", "SJIS")
    url = parse_database_url(POSTGRESQL_ADMIN_URL + "?client_encoding=SJIS")
    pool = ConnectionPool(url, 1)
    try:
        lease = pool.acquire()
        try:
            setting = "SELECT current_setting('client_encoding')"
            assert _one(lease.connection, setting) == "UTF8"
            text = pg_inline(
                "SELECT count(*) FROM (VALUES (1)) AS v(n) WHERE $1 = $1 AND $2 = 'x'",
                [SJIS_BREAKER, ") OR true OR (1 = 1"],
            )
            assert _one(lease.connection, text) == 0
        finally:
            pool.release(lease)
    finally:
        pool.close()


@pytest.fixture(scope="module")
def table(pg: Any) -> Any:
    """A one-column table for round trips, in a schema of its own (named for this process:
    runs side by side share the database)."""
    schema = f"flight_literals_{uuid.uuid4().hex[:12]}"
    with pg.cursor() as cursor:
        cursor.adbc_statement.set_sql_query(
            f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.t (id int PRIMARY KEY, v text)"
        )
        cursor.adbc_statement.execute_update()
    yield f"{schema}.t"
    with pg.cursor() as cursor:
        cursor.adbc_statement.set_sql_query(f"DROP SCHEMA {schema} CASCADE")
        cursor.adbc_statement.execute_update()


def _update(conn: Any, text: str) -> None:
    with conn.cursor() as cursor:
        cursor.adbc_statement.set_sql_query(text)
        cursor.adbc_statement.execute_update()


PG_TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))


@pytest.mark.parametrize("conforming", ["on", "off"])
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=PG_TEXT, other=PG_TEXT)
def test_any_text_filters_exactly_the_row_that_holds_it(
    pg: Any, table: str, conforming: str, value: str, other: str
) -> None:
    _update(pg, f"SET standard_conforming_strings = {conforming}")
    try:
        _update(pg, f"DELETE FROM {table}")
        with pg.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} VALUES (1, $1), (2, $2)", (value, value + "~" + other)
            )
        text = pg_inline(
            f"SELECT id FROM {table} WHERE v = $1 OR v = $2 ORDER BY id", [value, value]
        )
        with pg.cursor() as cursor:
            cursor.execute(text)
            assert [r[0] for r in cursor.fetchall()] == [1]
        assert _one(pg, f"SELECT CAST({pg_literal([value, other])} AS text[])") == [value, other]
    finally:
        _update(pg, "SET standard_conforming_strings = on")


@given(before=st.text(), after=st.text())
def test_text_holding_nul_is_refused_before_it_reaches_postgresql(before: str, after: str) -> None:
    value = before + "\x00" + after
    with pytest.raises(TicketError, match="NUL"):
        pg_literal(value)
    with pytest.raises(TicketError, match="NUL"):
        pg_literal(["ok", value])


def test_a_very_long_value_reads_back_whole(pg: Any) -> None:
    value = "'\\" * 200_000 + "ü"
    assert _one(pg, f"SELECT length({pg_literal(value)})") == len(value)
