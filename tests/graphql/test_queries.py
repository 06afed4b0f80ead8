"""Query behaviour on Chinook, identical on SQLite, PostgreSQL and MariaDB.

Expected results come from plain SQL through an independent driver (and, for filters, from a
reference evaluation in Python over rows read with plain SQL).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _dec(v: Any) -> Decimal:
    """Exact decimals to four places (SQLite sums its NUMERIC values as floats)."""
    return Decimal(str(v)).quantize(Decimal("0.0001"))


async def test_list_field_returns_every_row_in_primary_key_order(chinook_runner: Runner) -> None:
    data = await chinook_runner.data("{ albums { albumId title } }")
    expected = chinook_runner.sql("SELECT album_id, title FROM album ORDER BY album_id")
    assert [(a["albumId"], a["title"]) for a in data["albums"]] == [tuple(r) for r in expected]
    assert len(data["albums"]) == 347


async def test_by_key_field_returns_the_row_with_its_reverse_relation(
    chinook_runner: Runner,
) -> None:
    data = await chinook_runner.data(
        "query($id: Int!) { artist(artistId: $id) { name albums { title } } }", {"id": 22}
    )
    name = chinook_runner.sql("SELECT name FROM artist WHERE artist_id = ?", (22,))[0][0]
    titles = chinook_runner.sql(
        "SELECT title FROM album WHERE artist_id = ? ORDER BY album_id", (22,)
    )
    assert data["artist"]["name"] == name
    assert [a["title"] for a in data["artist"]["albums"]] == [t[0] for t in titles]


async def test_by_key_field_is_null_when_no_row_has_the_key(chinook_runner: Runner) -> None:
    data = await chinook_runner.data("{ artist(artistId: 999999) { name } }")
    assert data == {"artist": None}


async def test_forward_relations_follow_foreign_keys_and_are_null_when_the_key_is(
    chinook_runner: Runner,
) -> None:
    data = await chinook_runner.data(
        "{ tracks { trackId album { title } genre { name } mediaType { name } } }"
    )
    rows = chinook_runner.sql(
        "SELECT t.track_id, al.title, g.name, m.name FROM track t"
        " LEFT JOIN album al ON al.album_id = t.album_id"
        " LEFT JOIN genre g ON g.genre_id = t.genre_id"
        " JOIN media_type m ON m.media_type_id = t.media_type_id ORDER BY t.track_id"
    )
    got = [
        (
            t["trackId"],
            t["album"]["title"] if t["album"] else None,
            t["genre"]["name"] if t["genre"] else None,
            t["mediaType"]["name"],
        )
        for t in data["tracks"]
    ]
    assert got == [tuple(r) for r in rows]


async def test_self_reference_and_reverse_relations(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ employees { employeeId employeeByReportsTo { employeeId } employees"
        " { employeeId } customers { customerId } } }"
    )
    rows = chinook_runner.sql("SELECT employee_id, reports_to FROM employee ORDER BY employee_id")
    reports = {r[0]: r[1] for r in rows}
    for e in data["employees"]:
        boss = e["employeeByReportsTo"]
        assert (boss["employeeId"] if boss else None) == reports[e["employeeId"]]
        assert [x["employeeId"] for x in e["employees"]] == sorted(
            k for k, v in reports.items() if v == e["employeeId"]
        )
        customers = chinook_runner.sql(
            "SELECT customer_id FROM customer WHERE support_rep_id = ? ORDER BY customer_id",
            (e["employeeId"],),
        )
        assert [c["customerId"] for c in e["customers"]] == [c[0] for c in customers]


async def test_nested_lists_take_where_order_limit_and_offset(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ album(albumId: 1) { tracks(where: {milliseconds: {gt: 200000}},"
        " orderBy: [{name: DESC}], limit: 3, offset: 1) { name milliseconds } } }"
    )
    rows = chinook_runner.sql(
        "SELECT name, milliseconds FROM track WHERE album_id = 1 AND milliseconds > 200000"
    )
    expected = sorted(rows, key=lambda r: r[0], reverse=True)[1:4]
    assert [(t["name"], t["milliseconds"]) for t in data["album"]["tracks"]] == [
        tuple(r) for r in expected
    ]


async def test_order_by_several_fields_with_nulls_first_and_last(chinook_runner: Runner) -> None:
    nulls = [
        r[0]
        for r in chinook_runner.sql(
            "SELECT track_id FROM track WHERE composer IS NULL ORDER BY milliseconds DESC, track_id"
        )
    ]
    for direction in ("ASC", "DESC"):
        non_null = [
            r[0]
            for r in chinook_runner.sql(
                "SELECT track_id FROM track WHERE composer IS NOT NULL"
                f" ORDER BY composer {direction}, milliseconds DESC, track_id"
            )
        ]
        for nulls_first in (True, False):
            enum = f"{direction}_NULLS_{'FIRST' if nulls_first else 'LAST'}"
            order = f"[{{composer: {enum}}}, {{milliseconds: DESC}}]"
            data = await chinook_runner.data(f"{{ tracks(orderBy: {order}) {{ trackId }} }}")
            got = [t["trackId"] for t in data["tracks"]]
            assert got == (nulls + non_null if nulls_first else non_null + nulls), enum
    assert nulls


async def test_order_by_a_to_one_relation_field(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ albums(orderBy: [{artist: {artistId: DESC}}, {albumId: ASC}], limit: 10) { albumId } }"
    )
    rows = chinook_runner.sql(
        "SELECT album_id FROM album ORDER BY artist_id DESC, album_id ASC LIMIT 10"
    )
    assert [a["albumId"] for a in data["albums"]] == [r[0] for r in rows]


async def test_limit_and_offset_page_through_a_root_list(chinook_runner: Runner) -> None:
    seen: list[int] = []
    for page in range(4):
        data = await chinook_runner.data(
            "query($o: Int) { genres(limit: 7, offset: $o) { genreId } }", {"o": page * 7}
        )
        seen.extend(g["genreId"] for g in data["genres"])
    assert seen == [r[0] for r in chinook_runner.sql("SELECT genre_id FROM genre ORDER BY 1")]


async def test_relay_connection_pages_forward_and_backward_over_every_row(
    chinook_runner: Runner,
) -> None:
    query = """
      query($first: Int, $after: String, $last: Int, $before: String) {
        invoicesConnection(first: $first, after: $after, last: $last, before: $before,
                           orderBy: [{total: DESC}]) {
          totalCount
          edges { cursor node { invoiceId } }
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        }
      }"""
    expected = [
        r[0]
        for r in chinook_runner.sql(
            "SELECT invoice_id FROM invoice ORDER BY total DESC, invoice_id"
        )
    ]
    forward: list[int] = []
    after = None
    while True:
        conn = (await chinook_runner.data(query, {"first": 50, "after": after}))[
            "invoicesConnection"
        ]
        assert conn["totalCount"] == len(expected)
        forward.extend(e["node"]["invoiceId"] for e in conn["edges"])
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
        assert after == conn["edges"][-1]["cursor"]
    assert forward == expected
    backward: list[int] = []
    before = None
    while True:
        conn = (await chinook_runner.data(query, {"last": 60, "before": before}))[
            "invoicesConnection"
        ]
        backward[:0] = [e["node"]["invoiceId"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasPreviousPage"]:
            break
        before = conn["pageInfo"]["startCursor"]
    assert backward == expected


async def test_a_cursor_that_was_not_issued_is_rejected(chinook_runner: Runner) -> None:
    errors = await chinook_runner.errors('{ albumsConnection(after: "xyz") { totalCount } }')
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "cursor" in errors[0]["message"]


async def test_aggregates_count_sum_avg_min_max(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        '{ invoicesAggregate(where: {billingCountry: {eq: "USA"}}) {'
        " count sum { total } avg { total } min { total invoiceDate } max { total } } }"
    )
    (count, total, avg, lo, hi) = chinook_runner.sql(
        "SELECT COUNT(*), SUM(total), AVG(total), MIN(total), MAX(total) FROM invoice"
        " WHERE billing_country = 'USA'"
    )[0]
    agg = data["invoicesAggregate"]
    assert agg["count"] == count
    assert _dec(agg["sum"]["total"]) == _dec(total)
    assert abs(agg["avg"]["total"] - float(avg)) < 1e-6
    assert _dec(agg["min"]["total"]) == _dec(lo)
    assert _dec(agg["max"]["total"]) == _dec(hi)
    assert agg["min"]["invoiceDate"].startswith("20")


async def test_aggregates_grouped_by_fields(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ invoicesAggregate { groupBy(fields: [billingCountry]) {"
        " keys { billingCountry billingCity } count sum { total } } } }"
    )
    rows = chinook_runner.sql(
        "SELECT billing_country, COUNT(*), SUM(total) FROM invoice GROUP BY billing_country"
    )
    got = {
        g["keys"]["billingCountry"]: (g["count"], _dec(g["sum"]["total"]))
        for g in data["invoicesAggregate"]["groupBy"]
    }
    assert got == {r[0]: (r[1], _dec(r[2])) for r in rows}
    assert all(g["keys"]["billingCity"] is None for g in data["invoicesAggregate"]["groupBy"])


async def test_nested_aggregate_on_a_to_many_relation(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ albums(limit: 5) { albumId tracksAggregate { count sum { milliseconds } } } }"
    )
    for a in data["albums"]:
        count, ms = chinook_runner.sql(
            "SELECT COUNT(*), SUM(milliseconds) FROM track WHERE album_id = ?", (a["albumId"],)
        )[0]
        assert a["tracksAggregate"]["count"] == count
        assert int(a["tracksAggregate"]["sum"]["milliseconds"]) == int(ms)


async def test_every_scalar_is_serialised_as_documented(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ scalarSamples { id flag big ratio amount day atTime created uid doc label } }"
    )
    rows = chinook_runner.sql(
        "SELECT id, flag, big, ratio, amount, day, at_time, created, uid, label FROM scalar_sample"
        " ORDER BY id"
    )
    assert len(data["scalarSamples"]) == len(rows) > 0
    for got, row in zip(data["scalarSamples"], rows, strict=True):
        rid, flag, big, ratio, amount, day, at_time, created, uid, label = row
        assert got["id"] == rid
        assert got["flag"] == (None if flag is None else bool(flag))
        assert got["big"] == (None if big is None else str(big))
        if ratio is None:
            assert got["ratio"] is None
        else:
            assert abs(got["ratio"] - float(ratio)) <= 1e-9 * max(1.0, abs(float(ratio)))
        assert (None if got["amount"] is None else _dec(got["amount"])) == (
            None if amount is None else _dec(amount)
        )
        assert got["day"] == (None if day is None else str(day)[:10])
        assert got["atTime"] == (None if at_time is None else str(at_time)[:8].rjust(8, "0"))
        if created is None:
            assert got["created"] is None
        else:
            assert got["created"][:19] == str(created).replace(" ", "T")[:19]
        assert got["uid"] == (None if uid is None else str(uid))
        assert got["label"] == label
        assert got["doc"] is None or isinstance(got["doc"], dict | list | int | float | str | bool)


async def test_big_integers_and_decimals_lose_no_precision(chinook_runner: Runner) -> None:
    data = await chinook_runner.data(
        "{ scalarSamples(where: {big: {isNull: false}}, orderBy: [{big: DESC}], limit: 1) { big } }"
    )
    top = chinook_runner.sql("SELECT MAX(big) FROM scalar_sample")[0][0]
    assert int(data["scalarSamples"][0]["big"]) == int(top)
    assert int(top) > 2**53


async def test_several_root_fields_aliases_fragments_and_directives(chinook_runner: Runner) -> None:
    query = """
      query($skip: Boolean!) {
        __typename
        first: genre(genreId: 1) { ...G }
        second: genre(genreId: 2) { ...G name @skip(if: $skip) }
        count: genresAggregate { count }
      }
      fragment G on Genre { id: genreId __typename ... on Genre { label: name } }
    """
    data = await chinook_runner.data(query, {"skip": True})
    names = dict(chinook_runner.sql("SELECT genre_id, name FROM genre WHERE genre_id IN (1, 2)"))
    assert data["__typename"] == "Query"
    assert data["first"] == {"id": 1, "__typename": "Genre", "label": names[1]}
    assert data["second"] == {"id": 2, "__typename": "Genre", "label": names[2]}
    assert list(data) == ["__typename", "first", "second", "count"]
    data = await chinook_runner.data(query, {"skip": False})
    assert data["second"]["name"] == names[2]


async def test_introspection_answers_schema_questions(chinook_runner: Runner) -> None:
    data = await chinook_runner.data('{ __type(name: "TrackWhere") { inputFields { name } } }')
    names = {f["name"] for f in data["__type"]["inputFields"]}
    assert {"name", "composer", "album", "and", "or", "not"} <= names


async def test_variable_values_never_change_the_sql_text(chinook_runner: Runner) -> None:
    query = "query($n: String!) { tracks(where: {name: {startsWith: $n}}) { trackId } }"
    prepared = chinook_runner.engine.prepare(query, None)
    rows = chinook_runner.sql("SELECT track_id, name FROM track ORDER BY track_id")
    for value in ("A", "For", "'; DROP TABLE track; --", "%", "_", "!", "\\", "Ü" * 50):
        data = await chinook_runner.data(query, {"n": value})
        expected = [r[0] for r in rows if r[1].startswith(value)]
        assert [t["trackId"] for t in data["tracks"]] == expected, value
    assert len(prepared.plans) == 1
    (steps,) = prepared.plans.values()
    assert "DROP" not in steps[0].sql


async def test_scalar_variables_checked_on_the_quick_path_share_plans_with_the_general_one(
    chinook_runner: Runner,
) -> None:
    """An Int given as 90 is checked without graphql-core, 90.0 by its coercion: one plan.
    A Boolean shapes the SQL, so true and false have a plan each."""
    query = (
        "query($id: Int!, $b: Boolean!) { artist(artistId: $id) {"
        " name albums @include(if: $b) { title } } }"
    )
    prepared = chinook_runner.engine.prepare(query, None)
    name = chinook_runner.sql("SELECT name FROM artist WHERE artist_id = 90")[0][0]
    quick = await chinook_runner.data(query, {"id": 90, "b": False})
    general = await chinook_runner.data(query, {"id": 90.0, "b": False})
    assert quick == general == {"artist": {"name": name}}
    assert len(prepared.plans) == 1
    with_albums = await chinook_runner.data(query, {"id": 90, "b": True})
    assert len(with_albums["artist"]["albums"]) == 21
    assert await chinook_runner.data(query, {"id": 90.0, "b": True}) == with_albums
    assert len(prepared.plans) == 2


@pytest.mark.parametrize(
    ("query", "code", "fragment"),
    [
        ("{ albums { title ", "GRAPHQL_PARSE_FAILED", "Expected Name"),
        ("{ albums { nope } }", "GRAPHQL_VALIDATION_FAILED", "Cannot query field 'nope'"),
        (
            '{ albums(where: {title: {startWith: "A"}}) { title } }',
            "GRAPHQL_VALIDATION_FAILED",
            "startWith",
        ),
        ("{ albums(where: {title: {eq: 5}}) { title } }", "GRAPHQL_VALIDATION_FAILED", "String"),
        ("{ albums(where: {title: {eq: null}}) { title } }", "BAD_USER_INPUT", "isNull"),
        ("{ albums(limit: -1) { title } }", "BAD_USER_INPUT", "limit"),
        ("mutation { x }", "GRAPHQL_VALIDATION_FAILED", "'x'"),
    ],
)
async def test_bad_documents_get_a_clear_error_with_a_code(
    chinook_runner: Runner, query: str, code: str, fragment: str
) -> None:
    errors = await chinook_runner.errors(query)
    assert errors[0]["extensions"]["code"] == code, errors
    assert fragment in errors[0]["message"], errors


async def test_wrong_variable_types_are_rejected_before_any_sql_runs(
    chinook_runner: Runner,
) -> None:
    query = "query($id: Int!) { artist(artistId: $id) { name } }"
    errors = await chinook_runner.errors(query, {"id": "one"})
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "$id" in errors[0]["message"]
    errors = await chinook_runner.errors(query, {})
    assert "was not provided" in errors[0]["message"]
    prepared = chinook_runner.engine.prepare(query, None)
    assert prepared.plans == {}


async def test_group_by_inside_a_nested_aggregate(chinook_runner: Runner) -> None:
    query = (
        "{ genre(genreId: 1) { tracksAggregate(where: {milliseconds: {gt: 300000}}) {"
        " groupBy(fields: [mediaTypeId]) { keys { mediaTypeId } count } } } }"
    )
    if chinook_runner.dialect == "mysql":
        errors = await chinook_runner.errors(query)
        assert "not supported on mysql" in errors[0]["message"]
        return
    data = await chinook_runner.data(query)
    rows = chinook_runner.sql(
        "SELECT media_type_id, COUNT(*) FROM track WHERE genre_id = 1 AND milliseconds > 300000"
        " GROUP BY media_type_id ORDER BY media_type_id"
    )
    groups = data["genre"]["tracksAggregate"]["groupBy"]
    assert [(g["keys"]["mediaTypeId"], g["count"]) for g in groups] == [tuple(r) for r in rows]


async def test_group_by_with_no_fields_is_one_group_of_everything(chinook_runner: Runner) -> None:
    data = await chinook_runner.data("{ genresAggregate { count groupBy(fields: []) { count } } }")
    total = chinook_runner.sql("SELECT COUNT(*) FROM genre")[0][0]
    assert data["genresAggregate"] == {"count": total, "groupBy": [{"count": total}]}
