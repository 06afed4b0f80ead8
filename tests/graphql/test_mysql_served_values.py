"""MariaDB values the database writes into its JSON in a form JSON or UTF-8 does not allow:
text of other character sets (JSON_ARRAYAGG hands out latin1 bytes unconverted), YEAR 0 as
``0000``, ZEROFILL numbers padded with zeros. Each is served as valid UTF-8 JSON of its
declared type, through the real HTTP app, and a connection a failed read left out of step
with the server is never used again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.http import create_app
from quiver.schema.reflect import reflect_database
from tests.conftest import ChinookDb, create_empty_database, drop_database
from tests.graphql import type_matrix as tm
from tests.graphql.conftest import asgi_client

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: column -> (DDL, the text stored in row 1)
CHARSETS = {
    "latin": ("VARCHAR(10) CHARACTER SET latin1", "café"),
    "latinbin": ("VARCHAR(10) CHARACTER SET latin1 COLLATE latin1_bin", "Été"),
    "cyr": ("VARCHAR(10) CHARACTER SET cp1251", "Жжё"),
    "ascii": ("VARCHAR(10) CHARACTER SET ascii", "plain"),
    "ucs": ("VARCHAR(10) CHARACTER SET ucs2", "Жé"),
    "u16": ("VARCHAR(10) CHARACTER SET utf16", "Ж\U0001f600"),
    "u32": ("TEXT CHARACTER SET utf32", "\U0001f600"),
    "greek": ("CHAR(4) CHARACTER SET greek", "αβγ"),
    "latinset": ("SET('é', 'a') CHARACTER SET latin1", "é,a"),
}
NUMBERS = (
    "y YEAR, y4 YEAR(4), iz INT(5) ZEROFILL, tz TINYINT(3) ZEROFILL, sz SMALLINT ZEROFILL,"
    " mz MEDIUMINT ZEROFILL, bz BIGINT ZEROFILL, dz DECIMAL(8, 2) ZEROFILL,"
    " fz FLOAT ZEROFILL, dbz DOUBLE ZEROFILL, boz TINYINT(1) ZEROFILL, d DOUBLE, dc DECIMAL(5, 2)"
)
NUMBER_ROWS = [
    "(1, 0, 1901, 42, 7, 0, 5, 18446744073709551615, 3.5, 1.5, 2.5, 1, -0e0, -0.00)",
    "(2, 2155, 2155, 0, 255, 65535, 16777215, 0, 999999.99, 0, 0, 0, 1e308, -999.99)",
    "(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
]


@dataclass
class Served:
    client: httpx.AsyncClient
    app: Any
    db: ChinookDb

    async def body(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        r = await self.client.post(
            "/graphql",
            content=orjson.dumps({"query": query, "variables": variables or {}}),
            headers={"content-type": "application/json"},
        )
        r.content.decode("utf-8")  # strict: raises on any byte sequence that is not UTF-8
        return orjson.loads(r.content)

    async def rows(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = await self.body(query, variables)
        assert "errors" not in body, body
        return body["data"]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served() -> AsyncIterator[Served]:
    url = create_empty_database("mysql")
    db = ChinookDb("mysql", url)
    try:
        cols = ", ".join(f"{name} {ddl}" for name, (ddl, _) in CHARSETS.items())
        db.query(f"CREATE TABLE texts (id INT PRIMARY KEY, {cols}) CHARACTER SET utf8mb4")
        marks = ", ".join(["%s"] * (len(CHARSETS) + 1))
        db.query(f"INSERT INTO texts VALUES ({marks})", [1, *(v for _, v in CHARSETS.values())])
        db.query(f"INSERT INTO texts VALUES ({marks})", [2, *("a" for _ in CHARSETS)])
        db.query("INSERT INTO texts (id) VALUES (3)")
        db.query(f"CREATE TABLE numbers (id INT PRIMARY KEY, {NUMBERS})")
        db.query(f"INSERT INTO numbers VALUES {', '.join(NUMBER_ROWS)}")
        # A latin1 table that changes after reflection (below): its schema is stale.
        db.query("CREATE TABLE stale (id INT PRIMARY KEY, name VARCHAR(10)) CHARACTER SET utf8mb4")
        db.query("INSERT INTO stale VALUES (1, 'café')")
        reflected = await reflect_database(url)
        db.query("ALTER TABLE stale MODIFY name VARCHAR(10) CHARACTER SET latin1")
        settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 1}})
        app = create_app(reflected, settings)
        async with asgi_client(app) as client:
            yield Served(client, app, db)
    finally:
        db.close()
        drop_database(url)


@pytest.mark.parametrize("column", list(CHARSETS))
async def test_text_of_every_character_set_is_served_as_utf8(served: Served, column: str) -> None:
    data = await served.rows(f"{{ texts(orderBy: {{id: ASC}}) {{ {column} }} }}")
    assert [r[column] for r in data["texts"]] == [CHARSETS[column][1], "a", None]


async def test_text_of_every_character_set_lists_filters_sorts_and_aggregates(
    served: Served,
) -> None:
    names = " ".join(CHARSETS)
    data = await served.rows(f"{{ texts(orderBy: {{id: ASC}}) {{ id {names} }} }}")
    assert data["texts"][0] == {"id": 1, **{c: v for c, (_, v) in CHARSETS.items()}}
    for column, (_, value) in CHARSETS.items():
        for op, arg in (("eq", value), ("like", f"{value[0]}%"), ("in", [value])):
            found = await served.rows(
                f"query($v: {'[String!]' if op == 'in' else 'String'}) "
                f"{{ texts(where: {{{column}: {{{op}: $v}}}}) {{ id }} }}",
                {"v": arg},
            )
            assert found["texts"] == [{"id": 1}], (column, op, arg, found)
        ordered = await served.rows(f"{{ texts(orderBy: {{{column}: DESC}}) {{ {column} }} }}")
        assert {r[column] for r in ordered["texts"]} == {value, "a", None}
        agg = await served.rows(
            f"{{ textsAggregate {{ min {{ {column} }} max {{ {column} }}"
            f" groupBy(fields: [{column}]) {{ count keys {{ {column} }} }} }} }}"
        )
        result = agg["textsAggregate"]
        assert {result["min"][column], result["max"][column]} == {value, "a"}, (column, result)
        keys = {g["keys"][column] for g in result["groupBy"]}
        assert keys == {value, "a", None}, (column, result)


async def test_year_and_zerofill_numbers_are_valid_json_of_their_declared_type(
    served: Served,
) -> None:
    types = tm.field_types(served.app.engine.graphql_schema, "Number")
    data = await served.rows(f"{{ numbers(orderBy: {{id: ASC}}) {{ {' '.join(types)} }} }}")
    problems = [
        p
        for row in data["numbers"]
        for name, t in types.items()
        for p in tm.type_problems(row[name], t, f"row {row['id']}.{name}")
    ]
    assert not problems, "\n".join(problems)
    first, second = data["numbers"][:2]
    assert (first["y"], first["y4"], second["y"]) == (0, 1901, 2155)
    # ZEROFILL is UNSIGNED: an INT of it is a BigInt, a BIGINT a Decimal.
    assert (first["iz"], first["tz"], first["mz"], second["tz"]) == ("42", 7, 5, 255)
    assert first["bz"] == "18446744073709551615" and second["bz"] == "0"
    assert (first["dz"], second["dz"]) == ("3.50", "999999.99")
    assert (first["fz"], first["dbz"], first["boz"]) == (1.5, 2.5, True)
    for name in tm.field_types(served.app.engine.graphql_schema, "NumberMinFields"):
        agg = await served.rows(
            f"{{ numbersAggregate {{ min {{ {name} }} max {{ {name} }}"
            f" groupBy(fields: [{name}]) {{ keys {{ {name} }} }} }} }}"
        )
        assert agg["numbersAggregate"]["max"][name] is not None, (name, agg)
    found = await served.rows("{ numbers(where: {y: {eq: 0}, iz: {eq: 42}}) { id } }")
    assert found["numbers"] == [{"id": 1}]


async def test_a_connection_a_failed_read_left_out_of_step_is_not_reused(served: Served) -> None:
    """The table changed to latin1 after reflection: the read fails (the text is not UTF-8),
    and the next statements on the pool's one connection still succeed."""
    body = await served.body("{ stales { name } }")
    assert body["errors"][0]["extensions"]["code"] == "DATABASE_ERROR", body
    for _ in range(3):
        data = await served.rows("{ stales { id } numbers(where: {id: {eq: 1}}) { id } }")
        assert data == {"stales": [{"id": 1}], "numbers": [{"id": 1}]}
