"""Enum columns: their GraphQL type names and value names."""

from __future__ import annotations

import pytest

from quiver.graphql.typesystem import enum_value_names
from quiver.schema.ir import Scalar
from quiver.schema.reflect import CatalogColumn, CatalogTable, build_schema, mysql_enum_values


def _table(name: str, *columns: CatalogColumn, schema: str | None = None) -> CatalogTable:
    key = CatalogColumn("id", Scalar.INT, nullable=False)
    return CatalogTable(schema, name, False, (key, *columns), primary_key=("id",))


def _enum(name: str, type_name: str | None, *values: str) -> CatalogColumn:
    return CatalogColumn(name, Scalar.STRING, True, enum_values=values, enum_name=type_name)


def test_an_enum_named_like_an_entity_or_a_generated_type_gets_enum_appended() -> None:
    schema = build_schema(
        [
            _table("mood", _enum("m", "Mood", "a", "b")),
            _table("task", _enum("state", "TaskWhere", "x"), _enum("n", "IntArray", "y")),
        ]
    )
    names = {f.name: f.enum_name for e in schema.entities for f in e.fields if f.enum_name}
    assert names == {"m": "MoodEnum", "state": "TaskWhereEnum", "n": "IntArrayEnum"}


def test_two_different_enums_under_one_name_are_numbered_and_one_enum_is_shared() -> None:
    schema = build_schema(
        [
            _table("a", _enum("s", "Status", "on", "off"), schema="public"),
            _table("b", _enum("s", "Status", "open"), _enum("t", "Status", "on", "off")),
        ]
    )
    by_entity = {e.name: {f.name: f.enum_name for f in e.fields} for e in schema.entities}
    assert by_entity["A"]["s"] == by_entity["B"]["t"] == "Status"
    assert by_entity["B"]["s"] == "Status2"


def test_an_inline_enum_is_named_after_its_entity_and_field() -> None:
    schema = build_schema([_table("orders", _enum("order_status", None, "new", "paid"))])
    (field,) = [f for f in schema.entities[0].fields if f.enum_values]
    assert field.enum_name == "OrderOrderStatus"
    assert field.enum_values == ("new", "paid")


@pytest.mark.parametrize(
    ("values", "names"),
    [
        (("happy", "sad"), ["happy", "sad"]),
        (("in progress", "1st", "true", "null"), ["in_progress", "_1st", "true_", "null_"]),
        (("", "?"), ["_", "_2"]),
        # GraphQL reserves names beginning with __ for introspection.
        (("__typename", "__x", "_x", "__", "-_y"), ["_typename", "_x_2", "_x", "_", "_y"]),
        (("a-b", "a b", "a_b"), ["a_b_2", "a_b_3", "a_b"]),
        (("ünïcode", "€"), ["_n_code", "_"]),
    ],
)
def test_enum_values_become_unique_graphql_names(values: tuple[str, ...], names: list[str]) -> None:
    got = enum_value_names(values)
    assert [got[v] for v in values] == names
    assert len(set(got.values())) == len(values)
    assert not any(name.startswith("__") for name in got.values())


def test_mariadb_enum_values_are_read_from_the_column_type() -> None:
    assert mysql_enum_values("enum('happy','in progress','it''s','a,b')") == (
        "happy",
        "in progress",
        "it's",
        "a,b",
    )
    assert mysql_enum_values("varchar(10)") is None
