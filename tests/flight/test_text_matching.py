"""Text filters match the same rows on every database: ``like``, ``startsWith``, ``contains``
and ``endsWith`` are case-sensitive (MariaDB's and SQLite's own LIKE are not), ``ilike`` is not,
through export tickets, GraphQL tickets read as columns and Flight SQL alike."""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow.flight as flight
import pytest

from tests.flight.conftest import Served

CASES = [
    ("like", "rock", lambda n: n == "rock"),
    ("like", "R%", lambda n: n.startswith("R")),
    ("like", "r%", lambda n: n.startswith("r")),
    ("like", "%METAL", lambda n: n.endswith("METAL")),
    ("ilike", "r%", lambda n: n.lower().startswith("r")),
    ("ilike", "%METAL", lambda n: n.lower().endswith("metal")),
    ("startsWith", "r", lambda n: n.startswith("r")),
    ("contains", "OCK", lambda n: "OCK" in n),
]


def _names(served: Served) -> list[str]:
    return [r[0] for r in served.db.query("SELECT name FROM genre")]


@pytest.mark.parametrize(("op", "value", "keeps"), CASES)
def test_text_operators_of_export_and_graphql_tickets_match_alike_everywhere(
    served: Served, client: flight.FlightClient, op: str, value: str, keeps: Any
) -> None:
    expected = sorted(n for n in _names(served) if keeps(n))
    export = orjson.dumps({"export": {"table": "Genre", "where": {"name": {op: value}}}})
    exported = client.do_get(flight.Ticket(export)).read_all().column("name").to_pylist()
    literal = orjson.dumps(value).decode()
    query = "{ genres(where: {name: {" + op + ": " + literal + "}}) { genreId name } }"
    graphql = orjson.dumps({"graphql": {"query": query}})
    answered = client.do_get(flight.Ticket(graphql)).read_all().column("name").to_pylist()
    assert sorted(exported) == expected
    assert sorted(answered) == expected


@pytest.mark.parametrize(
    ("condition", "keeps"),
    [
        ("name LIKE 'r%'", lambda n: n.startswith("r")),
        ("name LIKE 'R%'", lambda n: n.startswith("R")),
        ("name NOT LIKE 'r%'", lambda n: not n.startswith("r")),
        ("name ILIKE 'r%'", lambda n: n.lower().startswith("r")),
    ],
)
def test_flight_sql_like_is_case_sensitive_and_ilike_is_not(
    served: Served, conn: Any, condition: str, keeps: Any
) -> None:
    with conn.cursor() as cur:
        cur.execute(f"SELECT name FROM Genre WHERE {condition}")
        got = sorted(cur.fetch_arrow_table().column("name").to_pylist())
    assert got == sorted(n for n in _names(served) if keeps(n))
