"""String columns of types that are not text (PostgreSQL's money and interval, MariaDB's BIT and
INET4) filter, sort and page in their type's own order, their values read in the form the field
serves them (or any other the type reads); a value the type cannot read is the request's fault
(BAD_USER_INPUT naming it), while a fault of the database stays a DATABASE_ERROR."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.graphql.test_statement_timeout import execute_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

PG_ACCOUNTS = [
    "CREATE TABLE acct (id int PRIMARY KEY, m money, iv interval, span tsrange, mac macaddr)",
    "INSERT INTO acct VALUES (1, 9.00, '9 days'), (2, 10.00, '10 days'), (3, 100.5, '1 day'),"
    " (4, -3, '-1 day'), (5, 1000, '26:00:00'), (6, 20, '2 days')",
    # A view failing on its own rows: a fault of the database, not of the request.
    "CREATE VIEW acct_ratio AS SELECT id, m, 1 / (id - 1) AS ratio FROM acct",
]
MY_HOSTS = [
    "CREATE TABLE host (id INT PRIMARY KEY, flags BIT(8), ip INET4)",
    "INSERT INTO host VALUES (1, b'11', '9.0.0.1'), (2, b'1000', '10.0.0.2'),"
    " (3, b'100', '100.0.0.1')",
]


async def _body(url: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        outcome = await engine.execute(engine.prepare(query, None), variables or {})
    finally:
        await engine.close()
    return orjson.loads(outcome.body)


async def _data(url: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    body = await _body(url, query, variables)
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
def accounts(fresh_postgresql: Any) -> str:
    url = str(fresh_postgresql)
    execute_statements(url, PG_ACCOUNTS)
    return url


@pytest.fixture
def hosts(fresh_mysql: Any) -> str:
    url = str(fresh_mysql)
    execute_statements(url, MY_HOSTS)
    return url


async def test_money_filters_compare_amounts_in_any_form_money_reads(accounts: str) -> None:
    for value in ("9.5", "$9.50", "9.50"):
        data = await _data(
            accounts,
            "query($v: String!) { accts(where: {m: {gt: $v}}, orderBy: {m: ASC}) { m } }",
            {"v": value},
        )
        assert [a["m"] for a in data["accts"]] == ["$10.00", "$20.00", "$100.50", "$1,000.00"]
    data = await _data(
        accounts,
        '{ lt: accts(where: {m: {lte: "$10.00"}}, orderBy: {id: ASC}) { id }'
        ' eq: accts(where: {m: {eq: "1000"}}) { id }'
        ' in: accts(where: {m: {in: ["9", "$20.00"]}}, orderBy: {id: ASC}) { id }'
        ' nin: accts(where: {m: {nin: ["9", "$20.00"]}}, orderBy: {id: ASC}) { id }'
        ' like: accts(where: {m: {startsWith: "$1,"}}) { id } }',
    )
    assert data == {
        "lt": [{"id": 1}, {"id": 2}, {"id": 4}],
        "eq": [{"id": 5}],
        "in": [{"id": 1}, {"id": 6}],
        "nin": [{"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}],
        "like": [{"id": 5}],  # pattern operators read the served text
    }


async def test_a_connection_sorts_and_pages_money_and_intervals_as_a_list_does(
    accounts: str,
) -> None:
    for field, expected in (("m", [4, 1, 2, 6, 3, 5]), ("iv", [4, 3, 5, 6, 1, 2])):
        data = await _data(accounts, f"{{ accts(orderBy: {{{field}: ASC}}) {{ id }} }}")
        assert [a["id"] for a in data["accts"]] == expected
        seen: list[int] = []
        after = None
        for _ in range(5):
            data = await _data(
                accounts,
                "query($after: String) { acctsConnection(first: 2, after: $after,"
                f" orderBy: {{{field}: ASC}}) {{ nodes {{ id }}"
                " pageInfo { hasNextPage endCursor } } }",
                {"after": after},
            )
            conn = data["acctsConnection"]
            seen += [n["id"] for n in conn["nodes"]]
            if not conn["pageInfo"]["hasNextPage"]:
                break
            after = conn["pageInfo"]["endCursor"]
        assert seen == expected, field


async def test_interval_filters_compare_durations(accounts: str) -> None:
    data = await _data(
        accounts,
        '{ accts(where: {iv: {gte: "1 day 02:00:00"}}, orderBy: {iv: ASC}) { iv } }',
    )
    assert [a["iv"] for a in data["accts"]] == ["26:00:00", "2 days", "9 days", "10 days"]


@pytest.mark.parametrize(
    ("where", "shown"),
    [
        ('{m: {gt: "abc"}}', "'abc' is not a valid money value (where.m.gt)"),
        ('{m: {in: ["1", "lots"]}}', "'lots' is not a valid money value (where.m.in)"),
        ('{iv: {lt: "soon"}}', "'soon' is not a valid interval value (where.iv.lt)"),
        # Out of the type's range: no overflow of the query's arithmetic.
        ('{m: {eq: "1' + "0" * 40 + '"}}', "is not a valid money value (where.m.eq)"),
        ('{mac: {eq: "2024-13-45"}}', "'2024-13-45' is not a valid macaddr value (where.mac.eq)"),
        # The database quotes a part of the value only.
        ('{span: {eq: "(1,2)"}}', "a value given for where.span.eq is not a valid tsrange"),
    ],
)
async def test_a_value_the_type_cannot_read_is_bad_user_input(
    accounts: str, where: str, shown: str
) -> None:
    body = await _body(accounts, f"{{ accts(where: {where}) {{ id }} }}")
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert shown in error["message"], error
    assert "give the value as the field serves it" in error["message"]


async def test_a_fault_of_the_database_stays_a_database_error(accounts: str) -> None:
    body = await _body(accounts, '{ acctRatios(where: {m: {neq: "1"}}) { id ratio } }')
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "DATABASE_ERROR", error


async def test_mariadb_bits_and_addresses_compare_as_numbers_and_addresses(hosts: str) -> None:
    data = await _data(
        hosts,
        '{ bits: hosts(where: {flags: {gt: "11"}}, orderBy: {flags: ASC}) { flags }'
        ' padded: hosts(where: {flags: {gte: "00000100"}}, orderBy: {id: ASC}) { id }'
        ' ips: hosts(where: {ip: {gt: "9.0.0.1"}}, orderBy: {ip: DESC}) { ip }'
        ' listed: hosts(where: {flags: {in: ["11", "00001000"]}}, orderBy: {id: ASC}) { id } }',
    )
    assert data == {
        "bits": [{"flags": "00000100"}, {"flags": "00001000"}],
        "padded": [{"id": 2}, {"id": 3}],
        "ips": [{"ip": "100.0.0.1"}, {"ip": "10.0.0.2"}],
        "listed": [{"id": 1}, {"id": 2}],
    }
    for where, shown in (('{flags: {gt: "12"}}', "'12'"), ('{ip: {lt: "abc"}}', "'abc'")):
        body = await _body(hosts, f"{{ hosts(where: {where}) {{ id }} }}")
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert shown in error["message"] and "as the field is served" in error["message"]


PG_PARTIAL_TEXT = [
    'CREATE TABLE tag (id int PRIMARY KEY, c "char", n name, v tsvector[])',
    "INSERT INTO tag VALUES (1, 'a', 'x', ARRAY['a b'::tsvector]), (2, 'b', repeat('y', 63), NULL)",
]


@pytest.fixture
def tags(fresh_postgresql: Any) -> str:
    url = str(fresh_postgresql)
    execute_statements(url, PG_PARTIAL_TEXT)
    return url


async def test_char_and_name_columns_compare_whole_values(tags: str) -> None:
    """PostgreSQL's one-byte "char" and 63-byte name take text filter values (they failed the
    query); a longer value matches nothing rather than its cut-off beginning."""
    data = await _data(
        tags,
        '{ a: tags(where: {c: {eq: "a"}}) { id } ab: tags(where: {c: {eq: "ab"}}) { id }'
        ' gt: tags(where: {c: {gt: "a"}}) { id } x: tags(where: {n: {in: ["x", "q"]}}) { id }'
        f' long: tags(where: {{n: {{eq: "{"y" * 70}"}}}}) {{ id }}'
        f' full: tags(where: {{n: {{eq: "{"y" * 63}"}}}}) {{ id }}'
        ' like: tags(where: {n: {like: "x%"}}) { id } }',
    )
    assert data == {
        "a": [{"id": 1}],
        "ab": [],
        "gt": [{"id": 2}],
        "x": [{"id": 1}],
        "long": [],
        "full": [{"id": 2}],
        "like": [{"id": 1}],
    }


async def test_a_tsvector_list_value_its_type_cannot_read_is_bad_user_input(tags: str) -> None:
    data = await _data(tags, '{ tags(where: {v: {contains: ["a b"]}}) { id } }')
    assert data == {"tags": [{"id": 1}]}
    for value in ("'a", "a:b:c"):
        body = await _body(
            tags, "query($v: [String!]) { tags(where: {v: {contains: $v}}) { id } }", {"v": [value]}
        )
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert f'"{value}"' in error["message"] and "tsvector" in error["message"], error
