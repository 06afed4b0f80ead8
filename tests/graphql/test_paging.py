"""Pagination corner cases: limit/offset and Relay connections.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

import pytest

from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_limit_zero_offset_beyond_the_end_and_nested_limits(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ zero: genres(limit: 0) { genreId } past: genres(offset: 1000) { genreId }"
        "  edge: genres(offset: 24, limit: 5) { genreId }"
        "  album(albumId: 1) { none: tracks(limit: 0) { trackId }"
        "    past: tracks(offset: 100) { trackId }"
        "    last: tracks(offset: 9, limit: 10) { trackId } } }"
    )
    genres = [r[0] for r in chinook_runner.sql("SELECT genre_id FROM genre ORDER BY genre_id")]
    tracks = [
        r[0]
        for r in chinook_runner.sql(
            "SELECT track_id FROM track WHERE album_id = 1 ORDER BY track_id"
        )
    ]
    assert data["zero"] == [] and data["past"] == []
    assert [g["genreId"] for g in data["edge"]] == genres[24:29]
    assert data["album"]["none"] == [] and data["album"]["past"] == []
    assert [t["trackId"] for t in data["album"]["last"]] == tracks[9:19]


CONNECTION = """
  query($first: Int, $after: String, $last: Int, $before: String) {
    genresConnection(first: $first, after: $after, last: $last, before: $before,
                     orderBy: [{name: DESC}]) {
      totalCount edges { cursor node { genreId } } nodes { genreId }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }"""


@pytest.mark.parametrize(
    ("first", "after", "last", "before"),
    [
        (0, None, None, None),
        (3, None, None, None),
        (None, None, 100, None),
        (None, None, 3, None),
        (3, 2, None, None),
        (None, 2, None, 6),
        (2, 1, None, 5),
        (None, 1, 2, 5),
        (100, 20, None, None),
        (None, None, 2, 3),
        (2, None, 1, None),
        (None, 24, None, None),
        (None, None, None, 0),
        (None, 5, None, 2),
        (0, None, 0, None),
    ],
)
async def test_connection_windows_follow_the_relay_algorithm(
    chinook_runner: Runner,
    first: int | None,
    after: int | None,
    last: int | None,
    before: int | None,
) -> None:
    """Cursors are taken from the full connection; positions index the plain-SQL order."""
    full = (await chinook_runner.data(CONNECTION, {"first": 1000}))["genresConnection"]
    cursors = [e["cursor"] for e in full["edges"]]
    rows = chinook_runner.sql("SELECT genre_id, name FROM genre")
    order = [g for g, _ in sorted(((g, n) for g, n in rows), key=lambda r: r[1], reverse=True)]
    # Ties on name (none in Chinook) would be broken by the key ascending.
    assert len({n for _, n in rows}) == len(rows)
    assert [e["node"]["genreId"] for e in full["edges"]] == order
    window = list(range(len(order)))
    if after is not None:
        window = [i for i in window if i > after]
    if before is not None:
        window = [i for i in window if i < before]
    if first is not None:
        window = window[:first]
    if last is not None:
        window = window[-last:] if last else []
    variables = {
        "first": first,
        "last": last,
        "after": None if after is None else cursors[after],
        "before": None if before is None else cursors[before],
    }
    conn = (await chinook_runner.data(CONNECTION, variables))["genresConnection"]
    assert conn["totalCount"] == len(order)
    assert [e["node"]["genreId"] for e in conn["edges"]] == [order[i] for i in window]
    assert [n["genreId"] for n in conn["nodes"]] == [order[i] for i in window]
    assert [e["cursor"] for e in conn["edges"]] == [cursors[i] for i in window]
    page = conn["pageInfo"]
    assert page["startCursor"] == (cursors[window[0]] if window else None)
    assert page["endCursor"] == (cursors[window[-1]] if window else None)
    if first is not None and before is None:
        lo = (after + 1) if after is not None else 0
        assert page["hasNextPage"] == (lo + first < len(order))
    if last is not None and after is None and first is None:
        hi = before if before is not None else len(order)
        assert page["hasPreviousPage"] == (hi - last > 0)


async def test_paging_a_connection_to_the_end_with_a_filter_and_relation_order(
    chinook_runner: Runner,
) -> None:
    query = """
      query($after: String) {
        tracksConnection(first: 7, after: $after, where: {genre: {name: {eq: "Jazz"}}},
                         orderBy: [{album: {title: ASC}}, {milliseconds: DESC}]) {
          edges { cursor node { trackId } } pageInfo { hasNextPage endCursor }
        }
      }"""
    got: list[int] = []
    after = None
    for _ in range(100):
        conn = (await chinook_runner.data(query, {"after": after}))["tracksConnection"]
        got.extend(e["node"]["trackId"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    rows = chinook_runner.sql(
        "SELECT t.track_id, a.title, t.milliseconds FROM track t JOIN genre g ON g.genre_id ="
        " t.genre_id LEFT JOIN album a ON a.album_id = t.album_id WHERE g.name = 'Jazz'"
    )
    expected = sorted(rows, key=lambda r: (r[1] is None, r[1] or "", -r[2], r[0]))
    if chinook_runner.dialect == "mysql":  # case-insensitive collation orders titles differently
        expected = sorted(rows, key=lambda r: (r[1] is None, (r[1] or "").lower(), -r[2], r[0]))
    assert sorted(got) == sorted(r[0] for r in rows)
    assert got == [r[0] for r in expected]


async def test_a_cursor_of_another_connection_is_rejected(chinook_runner: Runner) -> None:
    full = (await chinook_runner.data(CONNECTION, {"first": 3}))["genresConnection"]
    cursor = full["pageInfo"]["endCursor"]
    errors = await chinook_runner.errors(
        "query($c: String) { albumsConnection(first: 2, after: $c) { totalCount } }", {"c": cursor}
    )
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT" and "cursor" in errors[0]["message"]
    errors = await chinook_runner.errors(
        "query($c: String) { genresConnection(first: 2, after: $c, orderBy: [{genreId: ASC}])"
        " { totalCount } }",
        {"c": cursor},
    )
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "cursor", ["o99999999999999999999999", "o²", "o١", "o01", "o-1", "o", "", "x1"]
)
async def test_a_forged_cursor_is_rejected_cleanly(
    chinook_runner: Runner, request: pytest.FixtureRequest, cursor: str
) -> None:
    try:
        errors = await chinook_runner.errors(
            "query($c: String) { genresConnection(first: 2, after: $c) { edges { cursor } } }",
            {"c": cursor},
        )
    except Exception as exc:  # a crash is the defect this test looks for
        pytest.fail(f"GraphQLEngine.execute raised {type(exc).__name__}: {exc}")
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT", errors
    assert "cursor" in errors[0]["message"], errors


async def test_paging_a_keyless_view_visits_every_row_once(chinook_runner: Runner) -> None:
    query = """
      query($after: String) {
        customerSpendsConnection(first: 7, after: $after,
                                 orderBy: [{country: ASC}, {customerId: DESC}]) {
          totalCount edges { node { customerId totalSpent } } pageInfo { hasNextPage endCursor }
        }
      }"""
    seen: list[int] = []
    after = None
    for _ in range(50):
        conn = (await chinook_runner.data(query, {"after": after}))["customerSpendsConnection"]
        seen.extend(e["node"]["customerId"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    rows = chinook_runner.sql("SELECT customer_id, country, total_spent FROM customer_spend")
    assert sorted(seen) == sorted(r[0] for r in rows)
    if chinook_runner.dialect != "mysql":  # MariaDB's collation orders countries differently
        assert seen == [r[0] for r in sorted(rows, key=lambda r: (r[1], -r[0]))]
