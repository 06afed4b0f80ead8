"""Every filter operator on every scalar of ``scalar_sample`` (Chinook), the scalar inputs that
are easy to get wrong, and Unicode, NUL and surrogates in string filters.

Expected results come from plain SQL through independent drivers, or from a reference evaluation
in Python over rows read with plain SQL; never from Quiver itself. A test that shows a defect of
the engine is marked ``xfail(strict=True)`` on the databases where the defect shows.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from tests.graphql.conftest import Runner, is_client_error
from tests.graphql.reference import SAMPLE_COLUMNS, holds, sample_rows

pytestmark = pytest.mark.asyncio(loop_scope="session")


MAX64 = 2**63 - 1
MIN64 = -(2**63)
BIG_A = 3885017522865996339  # a value of row 1, beyond 2**53
D = dt.date.fromisoformat
T = dt.time.fromisoformat
DT = dt.datetime.fromisoformat


#: (field, operator, GraphQL literal, reference value)
SCALAR_CASES: list[tuple[str, str, str, Any]] = [
    ("big", "eq", f'"{MAX64}"', MAX64),
    ("big", "eq", str(MAX64), MAX64),
    ("big", "eq", f'"{MIN64}"', MIN64),
    ("big", "neq", f'"{BIG_A}"', BIG_A),
    ("big", "gt", str(2**53), 2**53),
    ("big", "gte", f'"{BIG_A}"', BIG_A),
    ("big", "lt", f'"{MIN64 + 1}"', MIN64 + 1),
    ("big", "lte", str(-(2**53) - 1), -(2**53) - 1),
    ("big", "in", f'["{MAX64}", {MIN64}, "{BIG_A}"]', [MAX64, MIN64, BIG_A]),
    ("big", "nin", f'["{MAX64}", {BIG_A}]', [MAX64, BIG_A]),
    ("amount", "eq", '"-30239439.5336"', Decimal("-30239439.5336")),
    ("amount", "neq", '"-30239439.5336"', Decimal("-30239439.5336")),
    ("amount", "gt", '"89328725.6741"', Decimal("89328725.6741")),
    ("amount", "gte", '"89328725.6741"', Decimal("89328725.6741")),
    ("amount", "lt", '"-90000000"', Decimal("-90000000")),
    ("amount", "lte", '"0"', Decimal("0")),
    (
        "amount",
        "in",
        '["97424893.776", "-30239439.5336"]',
        [Decimal("97424893.776"), Decimal("-30239439.5336")],
    ),
    ("amount", "nin", '["97424893.7760"]', [Decimal("97424893.776")]),
    ("ratio", "gt", "1e10", 1e10),
    ("ratio", "lt", "-0.5", -0.5),
    ("ratio", "gte", "0", 0.0),
    ("ratio", "lte", "-87936661028.6672", -87936661028.6672),
    ("day", "eq", '"2021-07-18"', D("2021-07-18")),
    ("day", "neq", '"2021-07-18"', D("2021-07-18")),
    ("day", "gt", '"2090-09-19"', D("2090-09-19")),
    ("day", "gte", '"2090-09-19"', D("2090-09-19")),
    ("day", "lt", '"1975-01-01"', D("1975-01-01")),
    ("day", "lte", '"1973-12-01"', D("1973-12-01")),
    (
        "day",
        "in",
        '["2021-07-18", "1973-12-01", "1900-01-01"]',
        [D("2021-07-18"), D("1973-12-01"), D("1900-01-01")],
    ),
    ("day", "nin", '["2021-07-18"]', [D("2021-07-18")]),
    ("atTime", "eq", '"12:54:04"', T("12:54:04")),
    ("atTime", "neq", '"12:54:04"', T("12:54:04")),
    ("atTime", "gt", '"22:00:00"', T("22:00:00")),
    ("atTime", "gte", '"23:35:16"', T("23:35:16")),
    ("atTime", "lt", '"00:21:00"', T("00:21:00")),
    ("atTime", "lte", '"00:20:32"', T("00:20:32")),
    ("atTime", "in", '["12:54:04", "00:08:56"]', [T("12:54:04"), T("00:08:56")]),
    ("atTime", "nin", '["12:54:04"]', [T("12:54:04")]),
    ("created", "eq", '"2016-07-10T18:32:21"', DT("2016-07-10T18:32:21")),
    ("created", "neq", '"2016-07-10T18:32:21"', DT("2016-07-10T18:32:21")),
    ("created", "gt", '"2030-01-01T00:00:00"', DT("2030-01-01T00:00:00")),
    ("created", "gte", '"2034-11-09T05:38:08"', DT("2034-11-09T05:38:08")),
    ("created", "lt", '"1976-01-01T00:00:00"', DT("1976-01-01T00:00:00")),
    ("created", "lte", '"1973-08-24T21:38:56"', DT("1973-08-24T21:38:56")),
    (
        "created",
        "in",
        '["2016-07-10T18:32:21", "1973-08-24T21:38:56"]',
        [DT("2016-07-10T18:32:21"), DT("1973-08-24T21:38:56")],
    ),
    ("created", "nin", '["2016-07-10T18:32:21"]', [DT("2016-07-10T18:32:21")]),
    ("uid", "eq", '"e1ab3e01-a524-4b60-a0d0-b29c0cf197f4"', "e1ab3e01-a524-4b60-a0d0-b29c0cf197f4"),
    (
        "uid",
        "neq",
        '"e1ab3e01-a524-4b60-a0d0-b29c0cf197f4"',
        "e1ab3e01-a524-4b60-a0d0-b29c0cf197f4",
    ),
    (
        "uid",
        "in",
        '["e1ab3e01-a524-4b60-a0d0-b29c0cf197f4", "00000000-0000-0000-0000-000000000000"]',
        ["e1ab3e01-a524-4b60-a0d0-b29c0cf197f4", "00000000-0000-0000-0000-000000000000"],
    ),
    ("flag", "eq", "true", True),
    ("flag", "neq", "true", True),
    ("flag", "eq", "false", False),
    ("flag", "in", "[false]", [False]),
    ("flag", "nin", "[false]", [False]),
    ("label", "startsWith", '"quote \' and \\""', "quote ' and \""),
    ("label", "endsWith", '"#1"', "#1"),
    ("label", "contains", '"\\\\"', "\\"),
    ("label", "contains", '"日本"', "日本"),
    ("label", "contains", '"🎵"', "🎵"),
    ("label", "startsWith", '"%"', "%"),
    ("label", "contains", '"_"', "_"),
    ("label", "like", '"%\\\\\\\\%"', "%\\\\%"),
    ("label", "like", '"% #1_"', "% #1_"),
    ("label", "like", '"_lpha%"', "_lpha%"),
    ("label", "like", '"%!%"', "%!%"),
    ("label", "like", '"Ünïcödé%"', "Ünïcödé%"),
    ("label", "like", '"%\\\\_%"', "%\\_%"),
    ("label", "ilike", '"ALPHA%"', "ALPHA%"),
]


for _field in SAMPLE_COLUMNS:
    SCALAR_CASES.append((_field, "isNull", "true", True))
    SCALAR_CASES.append((_field, "isNull", "false", False))


for _field, _empty in (
    ("big", "[]"),
    ("amount", "[]"),
    ("day", "[]"),
    ("atTime", "[]"),
    ("created", "[]"),
    ("uid", "[]"),
    ("flag", "[]"),
    ("label", "[]"),
    ("ratio", "[]"),
):
    SCALAR_CASES.append((_field, "in", _empty, []))
    SCALAR_CASES.append((_field, "nin", _empty, []))


@pytest.mark.parametrize(
    ("field", "op", "literal", "value"),
    SCALAR_CASES,
    ids=[f"{f}-{o}-{i}" for i, (f, o, _, _) in enumerate(SCALAR_CASES)],
)
async def test_every_operator_on_every_scalar(
    chinook_runner: Runner, field: str, op: str, literal: str, value: Any
) -> None:
    data = await chinook_runner.data(
        f"{{ scalarSamples(where: {{{field}: {{{op}: {literal}}}}}) {{ id }} }}"
    )
    rows = sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if holds(r[field], op, value)]
    assert [r["id"] for r in data["scalarSamples"]] == expected


@pytest.mark.parametrize(
    ("op", "literal"),
    [
        ("eq", '"9223372036854775808"'),
        ("lt", '"9223372036854775808"'),
        ("gt", "-9223372036854775809"),
        ("in", '["1", "99999999999999999999"]'),
    ],
)
async def test_a_bigint_beyond_64_bits_is_answered_exactly_or_rejected_clearly(
    chinook_runner: Runner, request: pytest.FixtureRequest, op: str, literal: str
) -> None:
    try:
        kind, body = await chinook_runner.raw(
            f"{{ scalarSamples(where: {{big: {{{op}: {literal}}}}}) {{ id }} }}"
        )
    except Exception as exc:  # a crash is the defect this test looks for
        pytest.fail(f"GraphQLEngine.execute raised {type(exc).__name__}: {exc}")
    if kind == "data":
        rows = sample_rows(chinook_runner)
        arg: Any = json.loads(literal)
        arg = [int(a) for a in arg] if isinstance(arg, list) else int(arg)
        expected = [r["id"] for r in rows if holds(r["big"], op, arg)]
        assert [r["id"] for r in body["data"]["scalarSamples"]] == expected
    else:
        assert is_client_error(kind, body, "BigInt", "64", "range"), body


@pytest.mark.parametrize(
    "literal",
    ['"2016-07-10T18:32:21Z"', '"2016-07-10T20:32:21+02:00"', '"2016-07-10T13:32:21-05:00"'],
)
async def test_a_datetime_with_an_offset_selects_the_same_instant(
    chinook_runner: Runner, request: pytest.FixtureRequest, literal: str
) -> None:
    """``created`` is a timestamp without time zone; an offset given in a filter is either
    applied (the instant in UTC) or rejected with a clear error, never a database error."""
    kind, body = await chinook_runner.raw(
        f"{{ scalarSamples(where: {{created: {{eq: {literal}}}}}) {{ id created }} }}"
    )
    if kind != "data":
        assert is_client_error(kind, body, "DateTime", "offset", "time zone"), body
        return
    rows = sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if r["created"] == DT("2016-07-10T18:32:21")]
    assert [r["id"] for r in body["data"]["scalarSamples"]] == expected == [1]


@pytest.mark.parametrize(
    ("op", "literal", "value"),
    [
        ("startsWith", '"e1ab"', "e1ab"),
        ("like", '"%-4b60-%"', "%-4b60-%"),
        ("ilike", '"E1AB%"', "E1AB%"),
        ("contains", '"a0d0"', "a0d0"),
        ("endsWith", '"f4"', "f4"),
    ],
)
async def test_uuid_columns_take_the_documented_pattern_operators(
    chinook_runner: Runner, request: pytest.FixtureRequest, op: str, literal: str, value: str
) -> None:
    data = await chinook_runner.data(
        f"{{ scalarSamples(where: {{uid: {{{op}: {literal}}}}}) {{ id }} }}"
    )
    rows = sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if holds(r["uid"], op, value)]
    assert [r["id"] for r in data["scalarSamples"]] == expected
    assert expected


async def test_a_uuid_in_upper_case_or_without_hyphens_matches_its_row(
    chinook_runner: Runner,
) -> None:
    data = await chinook_runner.data(
        '{ a: scalarSamples(where: {uid: {eq: "E1AB3E01-A524-4B60-A0D0-B29C0CF197F4"}}) { id }'
        '  b: scalarSamples(where: {uid: {eq: "e1ab3e01a5244b60a0d0b29c0cf197f4"}}) { id } }'
    )
    (rid,) = chinook_runner.sql(
        "SELECT id FROM scalar_sample WHERE uid = ?",
        ("e1ab3e01-a524-4b60-a0d0-b29c0cf197f4",),
    )[0]
    assert data == {"a": [{"id": rid}], "b": [{"id": rid}]}


async def test_a_malformed_uuid_in_a_filter_is_rejected(chinook_runner: Runner) -> None:
    kind, body = await chinook_runner.raw('{ scalarSamples(where: {uid: {eq: "nope"}}) { id } }')
    assert is_client_error(kind, body, "UUID"), body


async def test_ilike_folds_the_case_of_non_ascii_letters(chinook_runner: Runner) -> None:
    data = await chinook_runner.data('{ scalarSamples(where: {label: {ilike: "ünï%"}}) { id } }')
    rows = sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if r["label"] and r["label"].casefold().startswith("ünï")]
    assert [r["id"] for r in data["scalarSamples"]] == expected
    assert expected


async def test_ilike_ignores_case_but_not_accents(
    chinook_runner: Runner, request: pytest.FixtureRequest
) -> None:
    data = await chinook_runner.data('{ tracks(where: {name: {ilike: "%ü%"}}) { trackId } }')
    rows = chinook_runner.sql("SELECT track_id, name FROM track ORDER BY track_id")
    expected = [i for i, n in rows if "ü" in n.casefold()]
    assert [t["trackId"] for t in data["tracks"]] == expected
    assert expected


async def test_a_decimal_variable_accepts_a_json_number(chinook_runner: Runner) -> None:
    kind, body = await chinook_runner.raw(
        "query($a: Decimal) { scalarSamples(where: {amount: {eq: $a}}) { id } }",
        {"a": 97424893.776},
    )
    rows = sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if r["amount"] == Decimal("97424893.776")]
    assert kind == "data", body
    assert [r["id"] for r in body["data"]["scalarSamples"]] == expected == [23]


async def test_a_decimal_float_literal_is_accepted_or_rejected_with_its_location(
    chinook_runner: Runner,
) -> None:
    kind, body = await chinook_runner.raw(
        "{ scalarSamples(where: {amount: {eq: -30239439.5336}}) { id } }"
    )
    if kind == "data":
        rows = sample_rows(chinook_runner)
        expected = [r["id"] for r in rows if r["amount"] == Decimal("-30239439.5336")]
        assert [r["id"] for r in body["data"]["scalarSamples"]] == expected
        return
    error = body["errors"][0]
    assert error.get("locations"), error
    assert "Decimal" in error["message"] and '"' in error["message"], error


@pytest.mark.parametrize(
    ("op", "pattern"),
    [
        ("like", "_nïcödé%"),
        ("like", "日本_ #%"),
        ("like", "emoji _ #44"),
        ("ilike", "_NÏCÖDÉ%"),
    ],
)
async def test_an_underscore_in_like_matches_one_character_not_one_byte(
    chinook_runner: Runner, request: pytest.FixtureRequest, op: str, pattern: str
) -> None:
    data = await chinook_runner.data(
        f"query($p: String!) {{ scalarSamples(where: {{label: {{{op}: $p}}}}) {{ id }} }}",
        {"p": pattern},
    )
    rows = sample_rows(chinook_runner)
    expected = [r["id"] for r in rows if holds(r["label"], op, pattern)]
    assert [r["id"] for r in data["scalarSamples"]] == expected
    assert expected


@pytest.mark.parametrize(("op", "value"), [("eq", "a\x00b"), ("contains", "\x00")])
async def test_a_nul_character_in_a_string_filter(
    chinook_runner: Runner, request: pytest.FixtureRequest, op: str, value: str
) -> None:
    """No text in Chinook holds NUL: the filter matches nothing, or is rejected clearly."""
    kind, body = await chinook_runner.raw(
        f"query($n: String!) {{ tracks(where: {{name: {{{op}: $n}}}}) {{ trackId }} }}",
        {"n": value},
    )
    if kind == "data":
        assert body["data"]["tracks"] == []
    else:
        assert is_client_error(kind, body, "NUL", "\\u0000", "null character"), body


async def test_a_lone_surrogate_in_a_variable_is_rejected_cleanly(
    chinook_runner: Runner, request: pytest.FixtureRequest
) -> None:
    """GraphQLEngine.execute takes Python values; a str with a lone surrogate cannot be encoded."""
    try:
        kind, body = await chinook_runner.raw(
            "query($n: String!) { tracks(where: {name: {eq: $n}}) { trackId } }", {"n": "\ud800"}
        )
    except Exception as exc:  # a crash is the defect this test looks for
        pytest.fail(f"GraphQLEngine.execute raised {type(exc).__name__}: {exc}")
    assert is_client_error(kind, body, "$n", "surrogate", "UTF-8"), body


async def test_json_values_round_trip_with_quotes_backslashes_and_unicode(
    chinook_runner: Runner,
) -> None:
    data = await chinook_runner.data("{ scalarSamples { id doc label } }")
    rows = chinook_runner.sql("SELECT id, doc, label FROM scalar_sample ORDER BY id")
    expected = [
        {
            "id": i,
            "doc": None if doc is None else (json.loads(doc) if isinstance(doc, str) else doc),
            "label": label,
        }
        for i, doc, label in rows
    ]
    assert data["scalarSamples"] == expected
    assert any(d["doc"] for d in expected)
