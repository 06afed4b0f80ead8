"""On a MariaDB server whose default ``sql_mode`` is not strict, a value the column cannot hold
is still refused: MariaDB would otherwise cut or clamp it and only warn."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from quiver.sql import database
from tests.graphql.conftest import Runner
from tests.graphql.mutation_fixtures import open_bookshop

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture
async def lax_shop(fresh_mysql: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runner]:
    # A server configured with sql_mode = '': every session Quiver opens starts non-strict.
    dialect = database._MySQL.dialect
    lax = dataclasses.replace(
        dialect, extra_session_sql=("SET SESSION sql_mode = ''", *dialect.extra_session_sql)
    )
    monkeypatch.setattr(database._MySQL, "dialect", lax)
    runner = await open_bookshop("mysql", fresh_mysql)
    try:
        yield runner
    finally:
        await runner.engine.close()
        runner.db.close()


def _one(errors: list[Any]) -> dict[str, Any]:
    assert len(errors) == 1, errors
    error: dict[str, Any] = errors[0]
    return error


async def test_a_too_long_text_is_refused_not_cut(lax_shop: Runner) -> None:
    error = _one(
        await lax_shop.errors(
            'mutation { createAuthor(input: {name: "A", email: "%s"}) { id } }' % ("x" * 41)
        )
    )
    assert error["extensions"]["code"] == "INVALID_VALUE"
    assert error["extensions"]["field"] == "email"
    assert lax_shop.sql("SELECT COUNT(*) FROM authors") == [(0,)]


async def test_a_decimal_beyond_its_precision_is_refused_not_clamped(lax_shop: Runner) -> None:
    error = _one(
        await lax_shop.errors(
            'mutation { createGadgets(inputs: [{price: "1.5"}, {price: "123456789012.5"}]) { id } }'
        )
    )
    assert error["extensions"]["code"] == "INVALID_VALUE"
    assert error["extensions"]["field"] == "price"
    assert error["extensions"]["argumentPath"] == ["inputs", 1, "price"]
    assert lax_shop.sql("SELECT COUNT(*) FROM gadgets") == [(0,)]


async def test_an_update_with_a_too_long_text_changes_nothing(lax_shop: Runner) -> None:
    await lax_shop.data('mutation { createAuthor(input: {name: "A", email: "a@x"}) { id } }')
    error = _one(
        await lax_shop.errors('mutation { updateAuthors(where: {}, set: {country: "NZL"}) { id } }')
    )
    assert error["extensions"]["code"] == "INVALID_VALUE"
    assert lax_shop.sql("SELECT country FROM authors") == [("NZ",)]
