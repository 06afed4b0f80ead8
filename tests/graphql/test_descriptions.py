"""The schema's argument descriptions say what is true of each table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from graphql import GraphQLObjectType
from quiver.graphql.typesystem import build_graphql_schema
from quiver.schema.catalog import build_catalog
from quiver.schema.reflect import reflect_database


async def build(tmp_path: Path) -> dict[str, dict[str, str | None]]:
    path = tmp_path / "shapes.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE order_line (order_id INTEGER, line_no INTEGER, qty INTEGER,
                                     PRIMARY KEY (order_id, line_no));
            CREATE TABLE event_log (at TEXT, message TEXT);
            CREATE VIEW big_lines AS SELECT order_id, qty FROM order_line WHERE qty > 10;
            """
        )
    schema = build_graphql_schema(build_catalog(await reflect_database(f"sqlite:///{path}")))
    query = schema.query_type
    assert isinstance(query, GraphQLObjectType)
    out: dict[str, dict[str, str | None]] = {}
    for name, root in query.fields.items():
        if "orderBy" in root.args:
            out[name] = {arg: root.args[arg].description for arg in ("where", "orderBy")}
    return out


async def test_order_by_names_the_key_that_breaks_ties(tmp_path: Path) -> None:
    args = await build(tmp_path)
    lines = [v for k, v in args.items() if k.startswith("orderLine")]
    assert len(lines) == 2  # the list and the connection
    for described in lines:
        assert "primary-key order (orderId, lineNo)" in str(described["orderBy"])


async def test_order_by_on_views_and_keyless_tables_claims_no_primary_key_order(
    tmp_path: Path,
) -> None:
    args = await build(tmp_path)
    keyless = [v for k, v in args.items() if k.startswith(("eventLog", "bigLine"))]
    assert len(keyless) == 4  # lists and connections of the table and the view
    for described in keyless:
        text = str(described["orderBy"])
        assert "has no primary key" in text
        assert "primary-key order" not in text


async def test_where_says_what_it_does(tmp_path: Path) -> None:
    for described in (await build(tmp_path)).values():
        text = str(described["where"])
        assert text != "Rows to return."
        assert text.startswith("Keep only the rows that match")


async def test_every_argument_of_every_field_has_a_description(tmp_path: Path) -> None:
    path = tmp_path / "shop.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE customer (id INTEGER PRIMARY KEY, name TEXT);
            CREATE TABLE purchase (id INTEGER PRIMARY KEY, total REAL,
                                   customer_id INTEGER REFERENCES customer (id));
            CREATE TABLE event_log (at TEXT, message TEXT);
            """
        )
    schema = build_graphql_schema(build_catalog(await reflect_database(f"sqlite:///{path}")))
    missing = [
        f"{type_name}.{field_name}({arg_name})"
        for type_name, named in schema.type_map.items()
        if isinstance(named, GraphQLObjectType) and not type_name.startswith("__")
        for field_name, field in named.fields.items()
        for arg_name, arg in field.args.items()
        if not arg.description
    ]
    assert missing == [], "\n".join(missing)
