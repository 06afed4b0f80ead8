"""Arrow types a database has no column type for: the database sink writes nested values as
JSON text (PostgreSQL ``jsonb``, MariaDB/MySQL ``JSON``, SQLite ``TEXT``) and durations and
intervals as ISO 8601 durations where the database has no such type, read back as written;
an unsigned integer SQLite cannot hold is refused with its input line."""

from __future__ import annotations

import datetime as dt
import decimal

import orjson
import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.database import DatabaseSink
from quiver.pipeline.sources.database import DatabaseSource
from quiver.runtime.errors import PermanentError

from .conftest import ScratchDatabase, build, read_all, unique, write_all

STRUCT = pa.struct(
    [
        ("n", pa.int64()),
        ("d", pa.decimal128(6, 3)),
        ("raw", pa.binary()),
        ("f", pa.float64()),
        ("t", pa.string()),
    ]
)
#: The JSON the project's writer gives each struct value: decimals exact, bytes base64, NaN
#: as a string.
STRUCT_JSON = [{"n": 1, "d": "1.25", "raw": "AP8=", "f": "NaN", "t": 'q"\\\n\té'}, None]


def _batch() -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array([1, 2], pa.int64()),
            "s": pa.array(
                [
                    {
                        "n": 1,
                        "d": decimal.Decimal("1.250"),
                        "raw": b"\x00\xff",
                        "f": float("nan"),
                        "t": 'q"\\\n\té',
                    },
                    None,
                ],
                STRUCT,
            ),
            "m": pa.array([[("k", 1), ("j", 2)], None], pa.map_(pa.string(), pa.int64())),
            LINE_COLUMN: pa.array([2, 3], pa.int64()),
        }
    )


def _parsed(values: list[object]) -> list[object]:
    return [None if v is None else orjson.loads(str(v)) for v in values]


@pytest.mark.parametrize("mode", ["replace", "create", "append"])
async def test_structs_and_maps_are_written_as_json_text(
    test_db: ScratchDatabase, run_ctx: RunContext, mode: str
) -> None:
    table = test_db.table(unique("nested"))
    options = {"url": test_db.url, "table": table, "mode": mode}
    await write_all(build(DatabaseSink, options), [_batch()], run_ctx)
    if mode == "append":  # then straight into the table the first run created
        await write_all(build(DatabaseSink, options), [_batch()], run_ctx)

    query = {"url": test_db.url, "query": f"SELECT * FROM {table} ORDER BY id"}
    got = await read_all(build(DatabaseSource, query), run_ctx)

    times = 2 if mode == "append" else 1
    assert _parsed(got.column("s").to_pylist()) == sorted(STRUCT_JSON * times, key=_by_id)
    assert _parsed(got.column("m").to_pylist()) == sorted(
        [[["k", 1], ["j", 2]], None] * times, key=_by_id
    )
    if test_db.dialect == "postgresql":
        kinds = await test_db.query(
            f"SELECT pg_typeof(s)::text, pg_typeof(m)::text FROM {table} LIMIT 1"
        )
        assert kinds == [("jsonb", "jsonb")]


def _by_id(value: object) -> int:
    return 1 if value is None else 0  # rows ordered by id: the value of id 1, then the null


async def test_json_text_goes_into_an_existing_json_or_text_column(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("docs"))
    json_type = {"postgresql": "jsonb", "mysql": "JSON", "sqlite": "TEXT"}[test_db.dialect]
    await test_db.query(f"CREATE TABLE {table} (id BIGINT, s {json_type}, m TEXT)")
    options = {"url": test_db.url, "table": table, "mode": "append"}
    await write_all(build(DatabaseSink, options), [_batch()], run_ctx)

    query = {"url": test_db.url, "query": f"SELECT * FROM {table} ORDER BY id"}
    got = await read_all(build(DatabaseSource, query), run_ctx)

    assert _parsed(got.column("s").to_pylist()) == STRUCT_JSON
    assert got.column("m").to_pylist() == ['[["k",1],["j",2]]', None]


@pytest.mark.parametrize("test_db", ["sqlite"], indirect=True)
async def test_sqlite_takes_lists_as_json_and_durations_as_iso_text(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("kinds"))
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2], pa.int64()),
            "l": pa.array([[1, None, 3], None], pa.list_(pa.int64())),
            "span": pa.array([dt.timedelta(seconds=90, microseconds=5), None], pa.duration("us")),
            "every": pa.array([pa.MonthDayNano([1, 2, 3000]), None], pa.month_day_nano_interval()),
            LINE_COLUMN: pa.array([2, 3], pa.int64()),
        }
    )
    options = {"url": test_db.url, "table": table, "mode": "replace"}
    await write_all(build(DatabaseSink, options), [batch], run_ctx)

    got = await read_all(build(DatabaseSource, {"url": test_db.url, "table": table}), run_ctx)

    assert got.column("l").to_pylist() == ["[1,null,3]", None]
    assert got.column("span").to_pylist() == ["PT90.000005S", None]
    assert got.column("every").to_pylist() == ["P1M2DT0.000003S", None]


@pytest.mark.parametrize("test_db", ["mysql"], indirect=True)
async def test_mariadb_takes_intervals_as_iso_text(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("every"))
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2], pa.int64()),
            "every": pa.array([pa.MonthDayNano([1, 2, 3000]), None], pa.month_day_nano_interval()),
            LINE_COLUMN: pa.array([2, 3], pa.int64()),
        }
    )
    options = {"url": test_db.url, "table": table, "mode": "replace"}
    await write_all(build(DatabaseSink, options), [batch], run_ctx)

    got = await read_all(build(DatabaseSource, {"url": test_db.url, "table": table}), run_ctx)

    assert got.column("every").to_pylist() == ["P1M2DT0.000003S", None]


@pytest.mark.parametrize("test_db", ["sqlite", "postgresql"], indirect=True)
async def test_an_unsigned_integer_beyond_int64_is_refused_with_its_line(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("big"))
    options = {"url": test_db.url, "table": table, "mode": "append"}
    fits = pa.record_batch(
        {"u": pa.array([2**63 - 1], pa.uint64()), LINE_COLUMN: pa.array([2], pa.int64())}
    )
    await write_all(build(DatabaseSink, options), [fits], run_ctx)

    big = pa.record_batch(
        {
            "u": pa.array([1, 2**64 - 1, 2**63], pa.uint64()),
            LINE_COLUMN: pa.array([2, 3, 4], pa.int64()),
        }
    )
    with pytest.raises(PermanentError) as err:
        await write_all(build(DatabaseSink, options), [big], run_ctx)
    detail = err.value.details[0]
    stores = {"sqlite": "SQLite", "postgresql": "PostgreSQL (as bigint)"}[test_db.dialect]
    assert detail.message == (
        "column 'u' holds 18446744073709551615 in 2 row(s), at input line(s) 3, 4; "
        f"{stores} stores integers up to 9223372036854775807"
    )
    assert "cast the column to a decimal or text" in detail.fix
    got = await read_all(build(DatabaseSource, {"url": test_db.url, "table": table}), run_ctx)
    assert got.column("u").to_pylist() == [2**63 - 1]  # nothing of the refused run


@pytest.mark.parametrize("test_db", ["mysql"], indirect=True)
async def test_mariadb_keeps_every_unsigned_64_bit_integer(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("big"))
    values = [0, 2**63 - 1, 2**63, 2**64 - 1, None]
    batch = pa.record_batch(
        {"u": pa.array(values, pa.uint64()), LINE_COLUMN: pa.array(range(2, 7), pa.int64())}
    )
    options = {"url": test_db.url, "table": table, "mode": "replace"}
    await write_all(build(DatabaseSink, options), [batch], run_ctx)

    got = await read_all(build(DatabaseSource, {"url": test_db.url, "table": table}), run_ctx)

    assert got.column("u").to_pylist() == values


@pytest.mark.parametrize("test_db", ["postgresql"], indirect=True)
async def test_postgresql_takes_lists_of_structs_as_jsonb_and_other_lists_as_arrays(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("lists"))
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2], pa.int64()),
            "pts": pa.array(
                [[{"x": 1}, {"x": None}], None], pa.list_(pa.struct([("x", pa.int64())]))
            ),
            "ns": pa.array([[1, 2], None], pa.list_(pa.int64())),
            LINE_COLUMN: pa.array([2, 3], pa.int64()),
        }
    )
    options = {"url": test_db.url, "table": table, "mode": "replace"}
    await write_all(build(DatabaseSink, options), [batch], run_ctx)

    query = {"url": test_db.url, "query": f"SELECT * FROM {table} ORDER BY id"}
    got = await read_all(build(DatabaseSource, query), run_ctx)

    assert _parsed(got.column("pts").to_pylist()) == [[{"x": 1}, {"x": None}], None]
    assert got.column("ns").to_pylist() == [[1, 2], None]
    kinds = await test_db.query(f"SELECT pg_typeof(pts)::text, pg_typeof(ns)::text FROM {table}")
    assert kinds[0] == ("jsonb", "bigint[]")


#: Column types each database offers for integers and floats, narrowest first.
_NUMBER_COLUMNS = {
    "postgresql": ["smallint", "integer", "bigint", "numeric", "real", "double precision"],
    "mysql": [
        "TINYINT",
        "TINYINT UNSIGNED",
        "SMALLINT",
        "SMALLINT UNSIGNED",
        "MEDIUMINT UNSIGNED",
        "INT",
        "INT UNSIGNED",
        "BIGINT",
        "BIGINT UNSIGNED",
        "DECIMAL(5, 0)",
        "FLOAT",
        "DOUBLE",
    ],
    "sqlite": ["INTEGER", "NUMERIC", "REAL", "DOUBLE"],
}
_UNSIGNED_MAX = [(pa.uint8(), 2**8 - 1), (pa.uint16(), 2**16 - 1), (pa.uint32(), 2**32 - 1)]
_UNSIGNED_MAX += [(pa.uint64(), 2**63 - 1), (pa.uint64(), 2**64 - 1)]


@pytest.mark.parametrize("test_db", ["postgresql", "mysql", "sqlite"], indirect=True)
async def test_every_unsigned_width_at_its_limits_is_stored_exactly_or_refused(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    """Each unsigned width's largest value, and 0, into every integer, decimal and float
    column of each database: read back as written, or the run is refused naming the column,
    the value and its input line, with nothing written."""
    for n, declared in enumerate(_NUMBER_COLUMNS[test_db.dialect]):
        for kind, largest in _UNSIGNED_MAX:
            table = test_db.table(f"u{n}_{kind}_{largest.bit_length()}")
            await test_db.query(f"CREATE TABLE {table} (id INTEGER, u {declared})")
            batch = pa.record_batch(
                {
                    "id": pa.array([1, 2], pa.int32()),
                    "u": pa.array([0, largest], kind),
                    LINE_COLUMN: pa.array([2, 3], pa.int64()),
                }
            )
            options = {"url": test_db.url, "table": table, "mode": "append"}
            where = f"{largest} ({kind}) into {declared}"
            try:
                await write_all(build(DatabaseSink, options), [batch], run_ctx)
            except PermanentError as exc:
                said = str(exc)
                assert "column 'u'" in said and str(largest) in said, (where, said)
                assert "line 3" in said or "line(s) 3" in said, (where, said)
                assert await test_db.query(f"SELECT COUNT(*) FROM {table}") == [(0,)], where
                continue
            text = "CHAR" if test_db.dialect == "mysql" else "TEXT"
            rows = await test_db.query(f"SELECT CAST(u AS {text}) FROM {table} ORDER BY id")
            stored = [decimal.Decimal(str(r[0])) for r in rows]
            assert stored == [0, largest], where


@pytest.mark.parametrize("test_db", ["postgresql", "mysql", "sqlite"], indirect=True)
async def test_an_integer_a_float_column_would_round_is_refused_with_its_line(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    single = {"postgresql": "real", "mysql": "FLOAT", "sqlite": None}[test_db.dialect]
    double = {"postgresql": "double precision", "mysql": "DOUBLE", "sqlite": "REAL"}
    cases = [(double[test_db.dialect], 2**53, 2**53 + 1, pa.int64())]
    if single is not None:
        cases.append((single, 2**24, 2**24 + 1, pa.int32()))
    for declared, exact, rounded, kind in cases:
        table = test_db.table(unique("f"))
        await test_db.query(f"CREATE TABLE {table} (x {declared})")
        options = {"url": test_db.url, "table": table, "mode": "append"}
        fits = pa.record_batch({"x": pa.array([exact, -exact, 3], kind)})
        await write_all(build(DatabaseSink, options), [fits], run_ctx)
        batch = pa.record_batch(
            {
                "x": pa.array([exact, rounded, -rounded], kind),
                LINE_COLUMN: pa.array([7, 8, 9], pa.int64()),
            }
        )
        with pytest.raises(PermanentError) as err:
            await write_all(build(DatabaseSink, options), [batch], run_ctx)
        detail = err.value.details[0]
        assert detail.message == (
            f"column 'x' holds {rounded} in 2 row(s), at input line(s) 8, 9; the table's column"
            f" is {declared.lower() if test_db.dialect == 'mysql' else declared}, which holds "
            f"integers exactly only up to {exact} and would store another number"
        )
        assert "change the column to an integer or decimal type" in detail.fix
        assert await test_db.query(f"SELECT COUNT(*) FROM {table}") == [(3,)]
