"""A Decimal filter value beyond what a decimal column holds compares exactly on PostgreSQL and
MariaDB, or is refused before any SQL runs: never a wrong answer, never a DATABASE_ERROR.

MariaDB reads a decimal literal of more than 81 digits as the widest decimal it has, or as zero,
with only a warning: ``col < 1e99`` left out a DECIMAL(65, 0) column's largest value and
``col = 1e-999999`` found its zeros. The columns here hold their type's extremes, zero and the
values next to it. (SQLite compares decimals as doubles, as documented; it is not tested here.)
"""

from __future__ import annotations

import decimal
import operator
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.graphql.test_statement_timeout import execute_statements

pytestmark = pytest.mark.asyncio(loop_scope="session")

TOP_WHOLE = 10**65 - 1
TOP_FRAC = decimal.Decimal("9" * 35 + "." + "9" * 30)
ROWS: dict[int, tuple[Any, Any]] = {
    1: (TOP_WHOLE, TOP_FRAC),
    2: (-TOP_WHOLE, TOP_FRAC.copy_negate()),
    3: (0, decimal.Decimal(0)),
    4: (1, decimal.Decimal("1e-30")),
    5: (-1, decimal.Decimal("-1e-30")),
    6: (None, None),
}
TYPES = {"postgresql": "numeric", "mysql": "DECIMAL"}
VALUES = [
    "1e65",
    "-1e65",
    "1e99",
    "-1e99",
    "1e999999",
    "-1e999999",
    "1e-999999",
    "-1e-999999",
    "5e-31",
    "-5e-31",
    "1e-31",
    "0.5",
    "99999999999999999999999999999999999999999999999999999999999999998.5",
    "99999999999999999999999999999999999.9999999999999999999999999999995",
]
OPS: dict[str, Callable[[decimal.Decimal, decimal.Decimal], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "in": operator.eq,
    "nin": operator.ne,
}
#: Beyond PostgreSQL's numeric: at most 131072 digits before the point and 16383 after.
PG_REFUSED = {"1e999999", "-1e999999", "1e-999999", "-1e-999999"}


@pytest.fixture(params=["postgresql", "mysql"])
def database(request: pytest.FixtureRequest) -> tuple[str, str]:
    dialect = request.param
    url = str(request.getfixturevalue(f"fresh_{dialect}"))
    kind = TYPES[dialect]
    rows = ", ".join(
        f"({i}, {'NULL' if w is None else w}, {'NULL' if f is None else format(f, 'f')})"
        for i, (w, f) in ROWS.items()
    )
    execute_statements(
        url,
        [
            f"CREATE TABLE edge (id INTEGER PRIMARY KEY, whole {kind}(65, 0), frac {kind}(65, 30))",
            f"INSERT INTO edge VALUES {rows}",
        ],
    )
    return dialect, url


@pytest.mark.parametrize("field", ["whole", "frac"])
async def test_decimals_beyond_a_column_compare_exactly_or_are_refused(
    database: tuple[str, str], field: str
) -> None:
    dialect, url = database
    schema = await reflect_database(url)
    settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
    engine = await GraphQLEngine.open(schema, settings)
    column = 0 if field == "whole" else 1
    try:
        for value in VALUES:
            x = decimal.Decimal(value)
            selections = " ".join(
                f"{op}: edges(where: {{{field}: {{{op}: {'[$v]' if op in ('in', 'nin') else '$v'}"
                "}}) { id }"
                for op in OPS
            )
            query = f"query($v: Decimal!) {{ {selections} }}"
            outcome = await engine.execute(engine.prepare(query, None), {"v": value})
            body = orjson.loads(outcome.body)
            if dialect == "postgresql" and value in PG_REFUSED:
                assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
                continue
            assert "errors" not in body, (value, body)
            for op, compare in OPS.items():
                truth = [
                    i
                    for i, row in ROWS.items()
                    if row[column] is not None and compare(decimal.Decimal(row[column]), x)
                ]
                served = sorted(r["id"] for r in body["data"][op])
                assert served == truth, (field, op, value)
    finally:
        await engine.close()
