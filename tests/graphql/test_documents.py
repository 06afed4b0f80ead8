"""Documents: fragments, aliases, directives, ``__typename``, variables, one prepared document
run concurrently, and limits given by variables.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.graphql.conftest import Runner
from tests.graphql.reference import track_rows

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_nested_and_repeated_fragments_with_directives_at_several_levels(
    chinook_runner: Runner,
) -> None:
    query = """
      query($s: Boolean!, $i: Boolean!) {
        a: albums(limit: 2) { ...A }
        b: albums(limit: 1, offset: 5) { ...A title @include(if: $i) }
        c: albums(limit: 1) @skip(if: $s) { albumId }
      }
      fragment A on Album {
        albumId
        ... on Album { title @skip(if: $s) artist { ...R ...R } }
        artist @include(if: $i) { name }
        ... @include(if: $i) { tracks(limit: 2) { ...T } }
      }
      fragment R on Artist { artistId ... { name @skip(if: $s) } }
      fragment T on Track { trackId ... { __typename } }
    """
    rows = chinook_runner.sql(
        "SELECT al.album_id, al.title, ar.artist_id, ar.name FROM album al"
        " JOIN artist ar ON ar.artist_id = al.artist_id ORDER BY al.album_id"
    )

    def tracks(album: int) -> list[dict[str, Any]]:
        ids = chinook_runner.sql(
            "SELECT track_id FROM track WHERE album_id = ? ORDER BY track_id LIMIT 2", (album,)
        )
        return [{"trackId": r[0], "__typename": "Track"} for r in ids]

    def album(row: tuple[Any, ...], s: bool, i: bool, title_too: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"albumId": row[0]}
        if not s or (i and title_too):
            out["title"] = row[1]
        artist: dict[str, Any] = {"artistId": row[2]}
        if not s or i:
            artist["name"] = row[3]
        out["artist"] = artist
        if i:
            out["tracks"] = tracks(row[0])
        return out

    for s in (True, False):
        for i in (True, False):
            data = await chinook_runner.data(query, {"s": s, "i": i})
            assert data["a"] == [album(r, s, i, False) for r in rows[:2]], (s, i)
            assert data["b"] == [album(r, s, i, True) for r in rows[5:6]], (s, i)
            assert ("c" in data) == (not s)
            assert next(iter(data["b"][0])) == "albumId"


async def test_aliases_of_one_field_with_different_arguments(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ album(albumId: 1) { t1: tracks(limit: 1) { name } t2: tracks(limit: 1, offset: 1)"
        " { name } all: tracksAggregate { count } one: tracksAggregate(where: {trackId: {eq: 1}})"
        " { count } same: tracks(limit: 1) { name } same: tracks(limit: 1) { trackId } }"
        "  x: album(albumId: 2) { title } y: album(albumId: 3) { title } }"
    )
    names = chinook_runner.sql(
        "SELECT track_id, name FROM track WHERE album_id = 1 ORDER BY track_id"
    )
    titles = dict(chinook_runner.sql("SELECT album_id, title FROM album WHERE album_id IN (2, 3)"))
    a = data["album"]
    assert a["t1"] == [{"name": names[0][1]}] and a["t2"] == [{"name": names[1][1]}]
    assert a["all"] == {"count": len(names)} and a["one"] == {"count": 1}
    assert a["same"] == [{"name": names[0][1], "trackId": names[0][0]}]
    assert data["x"] == {"title": titles[2]} and data["y"] == {"title": titles[3]}


async def test_typename_everywhere(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ __typename genresConnection(first: 1) { __typename totalCount"
        "    edges { __typename node { __typename } } pageInfo { __typename }"
        "    nodes { __typename } }"
        "  genresAggregate { __typename count sum { __typename } avg { __typename }"
        "    min { __typename } max { __typename genreId }"
        "    groupBy(fields: [name]) { __typename keys { __typename } } }"
        "  genre(genreId: 1) { __typename tracksAggregate { __typename count } } }"
    )
    c = data["genresConnection"]
    assert data["__typename"] == "Query"
    assert c["__typename"] == "GenreConnection"
    assert c["edges"] == [{"__typename": "GenreEdge", "node": {"__typename": "Genre"}}]
    assert c["pageInfo"] == {"__typename": "PageInfo"} and c["nodes"] == [{"__typename": "Genre"}]
    agg = data["genresAggregate"]
    assert agg["__typename"] == "GenreAggregate"
    for key in ("sum", "avg", "min", "max"):
        assert agg[key]["__typename"].startswith("Genre"), agg[key]
    count = chinook_runner.sql("SELECT COUNT(*) FROM genre")[0][0]
    assert agg["count"] == count == len(agg["groupBy"]) == c["totalCount"]
    assert {g["__typename"] for g in agg["groupBy"]} == {"GenreAggregateGroup"}
    assert {g["keys"]["__typename"] for g in agg["groupBy"]} == {"GenreGroupKey"}
    assert data["genre"]["__typename"] == "Genre"
    assert data["genre"]["tracksAggregate"]["__typename"] == "TrackAggregate"


async def test_variables_inside_lists_and_nested_input_objects(chinook_runner: Runner) -> None:
    query = """
      query($n: String!, $ids: [Int!]!, $ms: Int!, $g: String!) {
        tracksAggregate(where: {
          or: [{name: {eq: $n}}, {trackId: {in: $ids}}, {trackId: {in: [$ms, 3]}}]
          genre: {name: {in: [$g, "Metal"]}}
        }) { count }
      }"""
    tracks = track_rows(chinook_runner)
    cases: list[dict[str, Any]] = [
        {"n": "Balls to the Wall", "ids": [1, 2, 3], "ms": 4, "g": "Rock"},
        {"n": "Balls to the Wall", "ids": [], "ms": 5, "g": "Jazz"},
        {"n": "x", "ids": list(range(1, 300)), "ms": 3000, "g": "Rock"},
    ]
    for variables in cases:
        data = await chinook_runner.data(query, variables)
        expected = sum(
            1
            for t in tracks
            if (
                t["name"] == variables["n"]
                or t["id"] in variables["ids"]
                or t["id"] in (variables["ms"], 3)
            )
            and t["genreName"] in (variables["g"], "Metal")
        )
        assert data["tracksAggregate"]["count"] == expected, variables


async def test_one_document_with_variables_of_input_object_type_and_many_shapes(
    chinook_runner: Runner,
) -> None:
    query = """
      query($w: TrackWhere, $o: [TrackOrderBy!], $l: Int) {
        tracks(where: $w, orderBy: $o, limit: $l) { trackId }
        both: tracksAggregate(where: $w) { count }
      }"""
    tracks = track_rows(chinook_runner)
    cases: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
        ({"w": None}, lambda t: True),
        ({"w": {}}, lambda t: True),
        ({"w": {"name": {"startsWith": "A"}}}, lambda t: t["name"].startswith("A")),
        (
            {"w": {"composer": {"isNull": True}, "not": {"milliseconds": {"lt": 300000}}}},
            lambda t: t["composer"] is None and not t["ms"] < 300000,
        ),
        (
            {"w": {"trackId": {"in": [5, 1, 700]}, "or": [{"milliseconds": {"gt": 1}}]}},
            lambda t: t["id"] in (5, 1, 700),
        ),
        ({"w": {"trackId": {"in": []}}}, lambda t: False),
        ({"w": {"trackId": {"nin": []}}}, lambda t: True),
        ({"w": {"genre": {"name": {"eq": "Jazz"}}}}, lambda t: t["genreName"] == "Jazz"),
        ({"w": {"name": {"startsWith": "A"}}}, lambda t: t["name"].startswith("A")),
    ]
    for variables, pred in cases:
        for order, key in (
            (None, lambda t: t["id"]),
            ([{"milliseconds": "DESC"}], lambda t: (-t["ms"], t["id"])),
        ):
            data = await chinook_runner.data(query, {**variables, "o": order, "l": 50})
            matching = [t for t in tracks if pred(t)]
            expected = [t["id"] for t in sorted(matching, key=key)][:50]
            assert [t["trackId"] for t in data["tracks"]] == expected, (variables, order)
            assert data["both"]["count"] == len(matching)


def _track_matches(t: dict[str, Any], where: dict[str, Any]) -> bool:
    if "albumId" in where:
        return bool(t["album"] == where["albumId"]["eq"])
    if "trackId" in where:
        return bool(t["id"] in where["trackId"]["in"])
    return bool(t["name"].startswith("A") and t["composer"] is not None)


async def test_one_prepared_document_run_concurrently_with_different_shapes(
    chinook_runner: Runner,
) -> None:
    """Plans are cached per variable shape; concurrent runs must not see each other's plans."""
    query = (
        "query($w: TrackWhere, $l: Int, $o: Int, $s: Boolean!) {"
        " tracks(where: $w, limit: $l, offset: $o) { trackId name @skip(if: $s) } }"
    )
    engine = chinook_runner.engine
    prepared = engine.prepare(query, None)
    tracks = track_rows(chinook_runner)
    cases: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for i in range(24):
        where: dict[str, Any] | None = (
            None,
            {"albumId": {"eq": i + 1}},
            {"trackId": {"in": list(range(i, i + 5))}},
            {"name": {"startsWith": "A"}, "not": {"composer": {"isNull": True}}},
        )[i % 4]
        limit = (None, 3, 0)[i % 3]
        offset = (None, 2)[i % 2]
        skip = i % 5 == 0
        rows = [t for t in tracks if where is None or _track_matches(t, where)]
        rows = rows[offset or 0 :]
        rows = rows if limit is None else rows[:limit]
        expected = [
            {"trackId": t["id"]} if skip else {"trackId": t["id"], "name": t["name"]} for t in rows
        ]
        cases.append(({"w": where, "l": limit, "o": offset, "s": skip}, expected))
    outcomes = await asyncio.gather(*(engine.execute(prepared, v) for v, _ in cases))
    for (variables, expected), outcome in zip(cases, outcomes, strict=True):
        assert outcome.kind == "data", outcome.body
        assert orjson.loads(outcome.body)["data"]["tracks"] == expected, variables


async def test_a_limit_given_by_a_variable_cannot_step_around_max_cost(
    chinook_runner: Runner,
) -> None:
    errors = await chinook_runner.errors("{ tracks(limit: 100000) { trackId } }")
    assert errors[0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    errors = await chinook_runner.errors(
        "query($n: Int!) { tracks(limit: $n) { trackId } }", {"n": 100000}
    )
    assert errors[0]["extensions"]["code"] == "COST_LIMIT_EXCEEDED"
    assert errors[0]["extensions"]["cost"] > errors[0]["extensions"]["limit"]
    data = await chinook_runner.data("query($n: Int!) { tracks(limit: $n) { trackId } }", {"n": 3})
    assert len(data["tracks"]) == 3
