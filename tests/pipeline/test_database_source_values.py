"""Stored values the database source reads as GraphQL serves them, or refuses naming the column,
the value, its record and the fix: never a driver's traceback, never another value."""

from __future__ import annotations

from typing import Any, cast

import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sources.database import DatabaseSource
from quiver.runtime.errors import PermanentError

from .conftest import ScratchDatabase, build, read_all


async def _read(db: ScratchDatabase, ctx: RunContext, **options: Any) -> list[dict[str, Any]]:
    table = await read_all(build(DatabaseSource, {"url": db.url, **options}), ctx)
    return cast(list[dict[str, Any]], table.drop_columns([LINE_COLUMN]).to_pylist())


@pytest.mark.parametrize("test_db", ["postgresql"], indirect=True)
@pytest.mark.parametrize("declared", ["numeric(5, 2)", "numeric(30, 2)", "numeric(50, 2)"])
async def test_nan_in_a_constrained_numeric_is_refused_naming_column_value_record_and_fix(
    test_db: ScratchDatabase, run_ctx: RunContext, declared: str
) -> None:
    t = test_db.table("prices")
    await test_db.query(f"CREATE TABLE {t} (id int, price {declared})")
    await test_db.query(f"INSERT INTO {t} VALUES (1, 1.5), (2, 'NaN'), (3, NULL)")
    for form in ({"table": t}, {"query": f"SELECT * FROM {t} ORDER BY id"}):
        with pytest.raises(PermanentError) as caught:
            await _read(test_db, run_ctx, **form)
        said = str(caught.value)
        assert caught.value.code == "STORED_VALUE"
        assert "column 'price' holds NaN at record 2, which no Arrow decimal" in said, said
        assert f"""CAST(NULLIF("price", 'NaN') AS {declared}) AS "price\"""" in said, said
    # The fixes given read the rows: NaN as NULL (still a decimal), or as its text.
    mapped = f"""SELECT id, CAST(NULLIF("price", 'NaN') AS {declared}) AS "price" FROM {t}"""
    rows = await _read(test_db, run_ctx, query=mapped + " ORDER BY id")
    assert [str(r["price"]) if r["price"] is not None else None for r in rows] == [
        "1.50",
        None,
        None,
    ]
    text = f'SELECT id, CAST("price" AS text) AS "price" FROM {t} ORDER BY id'
    assert [r["price"] for r in await _read(test_db, run_ctx, query=text)] == ["1.50", "NaN", None]


@pytest.mark.parametrize("test_db", ["postgresql"], indirect=True)
async def test_non_finite_numerics_without_precision_and_in_arrays_are_read_as_served(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    """GraphQL serves them as the strings NaN, Infinity, -Infinity: so does the source."""
    t = test_db.table("numbers")
    await test_db.query(f"CREATE TABLE {t} (id int, n numeric, an numeric(5, 2)[])")
    await test_db.query(
        f"INSERT INTO {t} VALUES (1, 'NaN', '{{NaN,1.5,NULL}}'), (2, 'Infinity', NULL),"
        " (3, '-Infinity', '{}')"
    )
    rows = await _read(test_db, run_ctx, query=f"SELECT * FROM {t} ORDER BY id")
    assert rows == [
        {"id": 1, "n": "NaN", "an": ["NaN", "1.50", None]},
        {"id": 2, "n": "Infinity", "an": None},
        {"id": 3, "n": "-Infinity", "an": []},
    ]


@pytest.mark.parametrize("test_db", ["postgresql"], indirect=True)
async def test_infinite_dates_inside_arrays_are_refused_naming_column_value_record_and_fix(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    """Not read as dates 30,000 years ago, as the driver hands them out."""
    t = test_db.table("events")
    await test_db.query(f"CREATE TABLE {t} (id int, days date[], ats timestamptz[])")
    await test_db.query(
        f"INSERT INTO {t} VALUES (1, '{{2024-01-01}}', '{{\"2024-01-02 03:04:05+00\"}}'),"
        " (2, '{2024-01-01,NULL,-infinity}', NULL), (3, NULL, '{infinity}')"
    )
    for column, value, record in (("days", "-infinity", 2), ("ats", "infinity", 3)):
        query = f"SELECT id, {column} FROM {t} ORDER BY id"
        with pytest.raises(PermanentError) as caught:
            await _read(test_db, run_ctx, query=query)
        said = str(caught.value)
        assert f"column {column!r} holds {value} at record {record}, which no Arrow list<" in said
        assert f'CAST("{column}" AS text[]) AS "{column}"' in said, said
    # The fix given reads them as PostgreSQL's text, as GraphQL serves them.
    fixed = await _read(
        test_db, run_ctx, query=f'SELECT id, CAST("days" AS text[]) AS "days" FROM {t} ORDER BY id'
    )
    assert [r["days"] for r in fixed] == [["2024-01-01"], ["2024-01-01", None, "-infinity"], None]


@pytest.mark.parametrize("test_db", ["postgresql"], indirect=True)
async def test_an_xml_array_is_read_as_text_as_graphql_serves_it(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    t = test_db.table("docs")
    await test_db.query(f"CREATE TABLE {t} (id int, x xml[])")
    await test_db.query(f"INSERT INTO {t} VALUES (1, ARRAY['<a>1</a>'::xml, NULL]), (2, NULL)")
    rows = await _read(test_db, run_ctx, query=f"SELECT * FROM {t} ORDER BY id")
    assert rows == [{"id": 1, "x": ["<a>1</a>", None]}, {"id": 2, "x": None}]


@pytest.mark.parametrize("test_db", ["postgresql"], indirect=True)
async def test_numerics_of_negative_scale_small_precision_or_huge_precision_are_read_exactly(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    """numeric(3, -2) (PostgreSQL 15) holds whole hundreds, numeric(3, 5) holds 0.00123, and
    numeric(1000, 2) is wider than any Arrow decimal: each read as the Flight export reads
    it (decimal(5, 0), decimal(5, 5), the exact text)."""
    t = test_db.table("odd")
    await test_db.query(
        f"CREATE TABLE {t} (id int, hundreds numeric(3, -2), tiny numeric(3, 5),"
        " wide numeric(1000, 2))"
    )
    await test_db.query(f"INSERT INTO {t} VALUES (1, -99900, 0.00123, 1.5), (2, NULL, -0.001, 0)")
    table = await read_all(build(DatabaseSource, {"url": test_db.url, "table": t}), run_ctx)
    assert [str(f.type) for f in table.schema][1:4] == [
        "decimal128(5, 0)",
        "decimal128(5, 5)",
        "string",
    ]
    rows = table.drop_columns([LINE_COLUMN]).to_pylist()
    assert [(str(r["hundreds"]), str(r["tiny"]), r["wide"]) for r in rows] == [
        ("-99900", "0.00123", "1.50"),
        ("None", "-0.00100", "0.00"),
    ]
