"""HTTP variables are as exact as inline literals: a JSON variable keeps a 30-digit integer,
a long decimal and ``1e400``; a Decimal variable keeps every digit. Ordinary bodies are parsed
by orjson; only one holding a number orjson would round is parsed again exactly."""

from __future__ import annotations

import decimal
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from tests.conftest import DIALECTS, Dialect
from tests.graphql import type_matrix as tm

pytestmark = pytest.mark.asyncio(loop_scope="session")

#: A JSON value orjson would round (or refuse), written as a client writes it.
EXACT_JSON = (
    '{"big": 123456789012345678901234567890, "long": 0.12345678901234567890123,'
    ' "huge": 1e400, "tiny": 1e-400, "small": [1, 2.5, -3]}'
)


@pytest_asyncio.fixture(scope="module", loop_scope="session", params=DIALECTS)
async def served(
    request: pytest.FixtureRequest, tmp_path_factory: Any
) -> AsyncIterator[tuple[Dialect, httpx.AsyncClient]]:
    async with tm.served_matrix(request.param, tmp_path_factory) as (_, __, client):
        yield request.param, client


def _exact(text: str | bytes) -> Any:
    return json.loads(text, parse_float=decimal.Decimal, parse_int=decimal.Decimal)


async def _post(client: httpx.AsyncClient, body: str) -> Any:
    r = await client.post(
        "/graphql", content=body.encode(), headers={"content-type": "application/json"}
    )
    return orjson.loads(r.content) if b"1e400" not in r.content else _exact(r.content)


async def test_a_json_variable_keeps_every_number_exactly(
    served: tuple[Dialect, httpx.AsyncClient],
) -> None:
    _, client = served
    query = "mutation($v: JSON) { updateCell(id: 2, set: {j: $v}) { j } }"
    by_variable = await _post(
        client, f'{{"query": {json.dumps(query)}, "variables": {{"v": {EXACT_JSON}}}}}'
    )
    assert "errors" not in by_variable, by_variable
    served_value = by_variable["data"]["updateCell"]["j"]
    literal = "mutation { updateCell(id: 2, set: {j: V}) { j } }".replace(
        "V", EXACT_JSON.replace('"', "")
    )
    by_literal = await _post(client, json.dumps({"query": literal}))
    assert "errors" not in by_literal, by_literal
    assert _exact(json.dumps(served_value, default=str)) == _exact(
        json.dumps(by_literal["data"]["updateCell"]["j"], default=str)
    )
    again = await _post(client, json.dumps({"query": "{ cells(where: {id: {eq: 2}}) { j } }"}))
    text = json.dumps(again["data"]["cells"][0]["j"], default=str)
    assert "123456789012345678901234567890" in text, text
    assert "0.12345678901234567890123" in text, text


async def test_a_decimal_variable_keeps_every_digit(
    served: tuple[Dialect, httpx.AsyncClient],
) -> None:
    dialect, client = served
    field, value = {
        "postgresql": ("n", "12345678901234567890.123456789"),
        "mysql": ("decWide", "12345678901234567890.123456789"),
        "sqlite": ("n", "0.5"),  # SQLite keeps NUMERIC as a double
    }[dialect]
    query = f"mutation($v: Decimal) {{ updateCell(id: 2, set: {{{field}: $v}}) {{ {field} }} }}"
    body = await _post(client, f'{{"query": {json.dumps(query)}, "variables": {{"v": {value}}}}}')
    assert "errors" not in body, body
    assert decimal.Decimal(body["data"]["updateCell"][field]) == decimal.Decimal(value)


async def test_a_body_that_is_not_json_is_still_refused(
    served: tuple[Dialect, httpx.AsyncClient],
) -> None:
    _, client = served
    for body in ('{"query": "{ cells { id } }", "variables": {"v": 1e400', "{nope}"):
        r = await client.post(
            "/graphql", content=body.encode(), headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, r.text
        assert "not valid JSON" in r.text


async def test_a_float_variable_with_more_digits_than_a_double_takes_its_double(
    served: tuple[Dialect, httpx.AsyncClient],
) -> None:
    dialect, client = served
    field = "f8" if dialect == "postgresql" else "dbl"
    query = f"query($v: Float) {{ cells(where: {{{field}: {{lt: $v}}}}) {{ {field} }} }}"
    body = await _post(
        client, f'{{"query": {json.dumps(query)}, "variables": {{"v": 0.1234567890123456789}}}}'
    )
    assert "errors" not in body, body
    assert all(float(r[field]) < 0.1234567890123456789 for r in body["data"]["cells"]), body
