"""Depth, alias, cost and introspection limits as graphql-core validation rules."""

from __future__ import annotations

from typing import Any

import pytest

from graphql import GraphQLError, build_schema, parse, specified_rules, validate
from quiver.config.settings import GraphQLSettings
from quiver.graphql.limits import DEFAULT_LIST_SIZE, MAX_REPORTED_COST, validation_rules

SCHEMA = build_schema(
    """
    type Query {
      artists(limit: Int, offset: Int): [Artist!]!
      artist(id: Int!): Artist
      artistsConnection(first: Int, after: String): ArtistConnection!
    }
    type Artist { id: Int! name: String albums(limit: Int): [Album!]! }
    type Album { id: Int! title: String! artist: Artist! tracks(limit: Int): [Track!]! }
    type Track { id: Int! name: String! album: Album! }
    type ArtistConnection { edges: [ArtistEdge!]! totalCount: Int! }
    type ArtistEdge { cursor: String! node: Artist! }
    """
)


def check(query: str, **settings: Any) -> list[GraphQLError]:
    rules = list(specified_rules) + validation_rules(GraphQLSettings(**settings))
    return validate(SCHEMA, parse(query), rules)


def codes(errors: list[GraphQLError]) -> list[str]:
    return [str((e.extensions or {}).get("code")) for e in errors]


def nested(depth: int) -> str:
    """A query whose deepest field sits ``depth`` levels down."""
    body = "id"
    levels = ["artist", "albums(limit: 1)"]
    inner = []
    for i in range(depth - 1):
        inner.append(levels[i % 2] if i else "artist(id: 1)")
    for name in reversed(inner):
        body = f"{name} {{ {body} }}"
    return "{ " + body + " }"


def test_a_query_within_every_limit_is_valid() -> None:
    assert check("{ artists(limit: 5) { id name albums(limit: 2) { title } } }") == []


def test_depth_at_the_limit_passes_and_one_more_fails() -> None:
    assert check(nested(5), max_depth=5) == []
    errors = check(nested(6), max_depth=5)
    assert codes(errors) == ["DEPTH_LIMIT_EXCEEDED"]
    message = errors[0].message
    assert "6 levels deep" in message
    assert "limit is 5" in message
    assert "graphql.max_depth" in message
    assert errors[0].extensions == {"code": "DEPTH_LIMIT_EXCEEDED", "limit": 5, "depth": 6}
    assert errors[0].locations  # points at the deepest field


def test_depth_follows_fragments() -> None:
    query = """
    query { artist(id: 1) { ...A } }
    fragment A on Artist { albums(limit: 1) { ...B } }
    fragment B on Album { artist { albums(limit: 1) { title } } }
    """
    assert check(query, max_depth=5) == []
    assert codes(check(query, max_depth=4)) == ["DEPTH_LIMIT_EXCEEDED"]


def test_depth_counts_inline_fragments() -> None:
    query = "{ artist(id: 1) { ... on Artist { albums(limit: 1) { artist { id } } } } }"
    assert check(query, max_depth=4) == []
    assert codes(check(query, max_depth=3)) == ["DEPTH_LIMIT_EXCEEDED"]


def test_fragment_cycles_do_not_hang_the_limits() -> None:
    query = """
    { artist(id: 1) { ...A } }
    fragment A on Artist { albums(limit: 1) { artist { ...A } } }
    """
    errors = check(query)
    assert "GRAPHQL_VALIDATION_FAILED" not in codes(errors)
    assert any("Cannot spread fragment 'A' within itself" in e.message for e in errors)


def test_many_repeated_fragment_spreads_are_checked_quickly() -> None:
    frags = ["fragment F0 on Artist { id name }"]
    for i in range(1, 30):
        spreads = " ".join(f"...F{i - 1}" for _ in range(5))
        frags.append(f"fragment F{i} on Artist {{ {spreads} }}")
    # 5**20 expansions: memoised per fragment, so this returns at once with the real cost
    errors = check("{ artist(id: 1) { ...F20 } }\n" + "\n".join(frags[:21]))
    assert codes(errors) == ["COST_LIMIT_EXCEEDED"]
    assert (errors[0].extensions or {})["cost"] == 1 + 2 * 5**20
    # 5**29 would outgrow what JSON carries exactly: the cost saturates there
    errors = check("{ artist(id: 1) { ...F29 } }\n" + "\n".join(frags))
    assert (errors[0].extensions or {})["cost"] == MAX_REPORTED_COST == 2**53 - 1


def test_introspection_fields_do_not_count_toward_depth() -> None:
    query = "{ __schema { types { fields { type { ofType { ofType { ofType { name } } } } } } } }"
    assert check(query, max_depth=2) == []


def test_aliases_at_the_limit_pass_and_one_more_fails() -> None:
    three = "{ a: artist(id: 1) { id } b: artist(id: 2) { id } c: artist(id: 3) { n: name } }"
    assert check(three, max_aliases=4) == []
    errors = check(three, max_aliases=3)
    assert codes(errors) == ["ALIAS_LIMIT_EXCEEDED"]
    assert "uses 4 aliases" in errors[0].message
    assert "limit is 3" in errors[0].message
    assert "graphql.max_aliases" in errors[0].message


def test_aliases_inside_fragments_count() -> None:
    query = "{ artist(id: 1) { ...F } } fragment F on Artist { a: id b: name }"
    assert codes(check(query, max_aliases=1)) == ["ALIAS_LIMIT_EXCEEDED"]


def test_cost_multiplies_nested_selections_by_the_limit() -> None:
    # artists: 1 + 10 * (id + albums: 1 + 5 * (title)) = 1 + 10 * (1 + 1 + 5) = 71
    query = "{ artists(limit: 10) { id albums(limit: 5) { title } } }"
    assert check(query, max_cost=71) == []
    errors = check(query, max_cost=70)
    assert codes(errors) == ["COST_LIMIT_EXCEEDED"]
    assert "estimated cost is 71" in errors[0].message
    assert "limit is 70" in errors[0].message
    assert "graphql.max_cost" in errors[0].message
    assert errors[0].extensions == {"code": "COST_LIMIT_EXCEEDED", "limit": 70, "cost": 71}


def test_list_fields_without_a_limit_count_the_default_rows() -> None:
    query = "{ artists { id name } }"
    expected = 1 + DEFAULT_LIST_SIZE * 2
    assert check(query, max_cost=expected) == []
    assert codes(check(query, max_cost=expected - 1)) == ["COST_LIMIT_EXCEEDED"]
    # graphql.default_list_limit is the row count when configured
    assert check(query, max_cost=1 + 7 * 2, default_list_limit=7) == []


def test_variable_limits_use_their_default_or_the_default_rows() -> None:
    with_default = "query ($n: Int = 3) { artists(limit: $n) { id } }"
    assert check(with_default, max_cost=4) == []
    without = "query ($n: Int) { artists(limit: $n) { id } }"
    assert codes(check(without, max_cost=4)) == ["COST_LIMIT_EXCEEDED"]


def test_connection_rows_come_from_first_and_edges_are_not_counted_again() -> None:
    # 1 + 20 * (edges 1 + 1 * (node 1 + 1 * name 1) + totalCount 1) = 1 + 20 * 4
    query = "{ artistsConnection(first: 20) { edges { node { name } } totalCount } }"
    assert check(query, max_cost=81) == []
    assert codes(check(query, max_cost=80)) == ["COST_LIMIT_EXCEEDED"]


def test_fragments_add_their_cost_at_every_spread() -> None:
    query = """
    { a: artists(limit: 10) { ...F } b: artists(limit: 10) { ...F } }
    fragment F on Artist { id name }
    """
    assert check(query, max_cost=42) == []
    assert codes(check(query, max_cost=41)) == ["COST_LIMIT_EXCEEDED"]


@pytest.mark.parametrize(
    "field", ["__schema { queryType { name } }", '__type(name: "Artist") { name }']
)
def test_introspection_is_refused_when_disabled(field: str) -> None:
    query = "{ " + field + " }"
    assert check(query) == []
    errors = check(query, introspection=False)
    assert codes(errors) == ["INTROSPECTION_DISABLED"]
    assert "graphql.introspection" in errors[0].message


def test_introspection_inside_a_fragment_is_refused_when_disabled() -> None:
    query = "{ ...Q } fragment Q on Query { __schema { types { name } } }"
    assert codes(check(query, introspection=False)) == ["INTROSPECTION_DISABLED"]


def test_typename_is_always_allowed() -> None:
    assert check("{ __typename artist(id: 1) { __typename } }", introspection=False) == []


def test_the_limits_report_on_the_named_operation() -> None:
    query = "query Deep " + nested(4)[0:] + " query Shallow { artist(id: 1) { id } }"
    errors = check(query, max_depth=3)
    assert codes(errors) == ["DEPTH_LIMIT_EXCEEDED"]
