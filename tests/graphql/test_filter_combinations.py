"""Filter combinations: empty and nested ``and``/``or``/``not``, relation filters two levels
deep, ``every`` over related rows with null columns.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.graphql.conftest import Runner
from tests.graphql.reference import track_rows

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_empty_and_or_not_and_deep_nesting(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ andEmpty: tracksAggregate(where: {and: []}) { count }"
        "  orEmpty: tracksAggregate(where: {or: []}) { count }"
        "  notEmpty: tracksAggregate(where: {not: {}}) { count }"
        "  notOrEmpty: tracksAggregate(where: {not: {or: []}}) { count }"
        "  emptyWhere: tracksAggregate(where: {}) { count }"
        "  andOfEmpty: tracksAggregate(where: {and: [{}, {}]}) { count }"
        "  orOfEmpty: tracksAggregate(where: {or: [{}, {milliseconds: {lt: 0}}]}) { count }"
        "  deep: tracks(where: {not: {not: {or: [{and: [{composer: {isNull: true}},"
        "    {milliseconds: {gt: 400000}}]}, {not: {or: [{milliseconds: {gte: 1000}},"
        '    {composer: {isNull: true}}]}}, {and: [{name: {startsWith: "A"}}, {not: {}}]}]}}})'
        "    { trackId } }"
    )
    tracks = track_rows(chinook_runner)
    total = len(tracks)
    assert data["andEmpty"]["count"] == total
    assert data["orEmpty"]["count"] == 0
    assert data["notEmpty"]["count"] == 0
    assert data["notOrEmpty"]["count"] == total
    assert data["emptyWhere"]["count"] == total
    assert data["andOfEmpty"]["count"] == total
    assert data["orOfEmpty"]["count"] == total
    expected = [
        t["id"]
        for t in tracks
        if (t["composer"] is None and t["ms"] > 400000)
        or not (t["ms"] >= 1000 or t["composer"] is None)
    ]
    assert [t["trackId"] for t in data["deep"]] == expected
    assert expected


async def test_relation_filters_two_levels_deep_each_way(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        '{ up: tracks(where: {album: {artist: {name: {startsWith: "Iron"}}}}) { trackId }'
        '  down: artists(where: {albums: {some: {tracks: {some: {genre: {name: {eq: "Jazz"}}}}}}})'
        "    { artistId }"
        "  every: artists(where: {albums: {every:"
        " {tracks: {every: {milliseconds: {gt: 200000}}}}}})"
        "    { artistId }"
        '  none: genres(where: {tracks: {none: {album: {artist: {name: {contains: "a"}}}}}})'
        "    { genreId } }"
    )
    tracks = track_rows(chinook_runner)
    artists = dict(chinook_runner.sql("SELECT artist_id, name FROM artist"))
    albums = dict(chinook_runner.sql("SELECT album_id, artist_id FROM album"))
    genres = [r[0] for r in chinook_runner.sql("SELECT genre_id FROM genre ORDER BY genre_id")]
    assert [t["trackId"] for t in data["up"]] == [
        t["id"]
        for t in tracks
        if t["artist"] is not None and artists[t["artist"]].startswith("Iron")
    ]

    def album_tracks(album: int) -> list[dict[str, Any]]:
        return [t for t in tracks if t["album"] == album]

    def artist_albums(artist: int) -> list[int]:
        return [a for a, ar in albums.items() if ar == artist]

    assert [a["artistId"] for a in data["down"]] == sorted(
        ar
        for ar in artists
        if any(t["genreName"] == "Jazz" for al in artist_albums(ar) for t in album_tracks(al))
    )
    assert [a["artistId"] for a in data["every"]] == sorted(
        ar
        for ar in artists
        if all(t["ms"] > 200000 for al in artist_albums(ar) for t in album_tracks(al))
    )
    assert [g["genreId"] for g in data["none"]] == [
        g
        for g in genres
        if not any(
            t["genre"] == g and t["artist"] is not None and "a" in artists[t["artist"]]
            for t in tracks
        )
    ]
    assert data["up"] and data["down"] and data["every"]


async def test_every_over_related_rows_with_null_columns(chinook_runner: Runner) -> None:
    """A null composer fails eq/neq/startsWith, so ``every`` is false for an album with one."""
    data = await chinook_runner.data(
        '{ neq: albums(where: {tracks: {every: {composer: {neq: "nobody"}}}}) { albumId }'
        "  isNull: albums(where: {tracks: {every: {composer: {isNull: true}}}}) { albumId }"
        "  notEvery: albumsAggregate(where: {not: {tracks: {every: {composer: {isNull: false}}}}})"
        "    { count } }"
    )
    tracks = track_rows(chinook_runner)
    albums = [r[0] for r in chinook_runner.sql("SELECT album_id FROM album ORDER BY album_id")]

    def composers(album: int) -> list[Any]:
        return [t["composer"] for t in tracks if t["album"] == album]

    assert [a["albumId"] for a in data["neq"]] == [
        a for a in albums if all(c is not None and c != "nobody" for c in composers(a))
    ]
    assert [a["albumId"] for a in data["isNull"]] == [
        a for a in albums if all(c is None for c in composers(a))
    ]
    assert data["notEvery"]["count"] == sum(
        1 for a in albums if not all(c is not None for c in composers(a))
    )
