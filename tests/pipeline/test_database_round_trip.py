"""What the database sink writes, the database source reads back, value for value, on every
dialect: every column type, bytes, JSON text, and the floats each database can or cannot hold."""

from __future__ import annotations

import datetime as dt
import decimal
import math

import orjson
import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.database import DatabaseSink
from quiver.pipeline.sources.database import DatabaseSource
from quiver.runtime.errors import PermanentError

from .conftest import ScratchDatabase, build, read_all, unique, write_all

UTC = dt.UTC

#: One column of every type the sink writes, with edge values, a null in every column.
COLUMNS: dict[str, pa.Array] = {
    "i64": pa.array([1, -(2**63), 2**63 - 1, None], pa.int64()),
    "i32": pa.array([7, -(2**31), 2**31 - 1, None], pa.int32()),
    "f64": pa.array([0.1, -1.7976931348623157e308, 5e-324, None], pa.float64()),
    "dec": pa.array(
        [
            decimal.Decimal("1.500"),
            decimal.Decimal("-999999999.999"),
            decimal.Decimal("0.001"),
            None,
        ],
        pa.decimal128(12, 3),
    ),
    "flag": pa.array([True, False, True, None]),
    "txt": pa.array(["plain", "tab\there\nnew \\ 'q' \"dq\" é 😀", "", None]),
    "raw": pa.array([b"\x00\x01\xff\xfe", b"\\\t\n\r'\"\\N", b"", None], pa.binary()),
    "day": pa.array([dt.date(2024, 2, 29), dt.date(1000, 1, 1), dt.date(9999, 12, 31), None]),
    "clock": pa.array(
        [dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(12, 30, 1, 5), None],
        pa.time64("us"),
    ),
    "naive": pa.array(
        [
            dt.datetime(2024, 1, 1, 12, 0, 0, 1),
            dt.datetime(1970, 1, 1),
            dt.datetime(2038, 1, 19, 3, 14, 8),
            None,
        ],
        pa.timestamp("us"),
    ),
    "zoned": pa.array(
        [
            dt.datetime(2024, 1, 1, 12, 0, 0, 1, tzinfo=UTC),
            dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
            dt.datetime(2024, 6, 1, tzinfo=UTC),
            None,
        ],
        pa.timestamp("us", tz="UTC"),
    ),
}


def _lines(n: int) -> pa.Array:
    return pa.array(range(2, n + 2), pa.int64())


def _as_written(dialect: str, name: str, values: list[object]) -> list[object]:
    """The values as the dialect reads them back. MariaDB/MySQL has no time-of-day type (TIME
    is a signed duration up to 838 hours) and no zoned timestamp (DATETIME holds the UTC wall
    time); every other value comes back as written."""
    if dialect == "mysql" and name == "clock":
        return [
            None
            if v is None
            else dt.timedelta(
                hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond
            )
            for v in values
            if isinstance(v, dt.time) or v is None
        ]
    if dialect == "mysql" and name == "zoned":
        return [
            None if v is None else v.astimezone(UTC).replace(tzinfo=None)
            for v in values
            if isinstance(v, dt.datetime) or v is None
        ]
    return values


async def test_every_column_type_comes_back_value_for_value(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("types"))
    batch = pa.record_batch({**COLUMNS, LINE_COLUMN: _lines(4)})
    await write_all(build(DatabaseSink, {"url": test_db.url, "table": table}), [batch], run_ctx)

    got = await read_all(build(DatabaseSource, {"url": test_db.url, "table": table}), run_ctx)

    for name, written in COLUMNS.items():
        read = got.column(name).to_pylist()
        assert read == _as_written(test_db.dialect, name, written.to_pylist()), name
    assert got.schema.field("raw").type == pa.binary()
    assert got.schema.field("flag").type == pa.bool_()
    assert pa.types.is_decimal(got.schema.field("dec").type)
    if test_db.dialect != "mysql":
        assert got.schema.field("zoned").type.tz is not None


@pytest.mark.parametrize("test_db", ["sqlite"], indirect=True)
async def test_appending_again_keeps_every_value_on_the_bulk_load_path(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    """The second run appends straight into the table the first created (COPY, LOAD DATA,
    bulk insert): the values must be the same as through the first run."""
    table = test_db.table(unique("again"))
    batch = pa.record_batch({**COLUMNS, LINE_COLUMN: _lines(4)})
    options = {"url": test_db.url, "table": table, "mode": "append"}
    await write_all(build(DatabaseSink, options), [batch], run_ctx)
    await write_all(build(DatabaseSink, options), [batch.slice(0, 2), batch.slice(2)], run_ctx)

    got = await read_all(build(DatabaseSource, {"url": test_db.url, "table": table}), run_ctx)

    for name, written in COLUMNS.items():
        once = _as_written(test_db.dialect, name, written.to_pylist())
        assert got.column(name).to_pylist() == once + once, name


async def test_json_text_round_trips_into_a_json_column(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("docs"))
    json_type = {"postgresql": "json", "mysql": "JSON", "sqlite": "JSON"}[test_db.dialect]
    await test_db.query(f"CREATE TABLE {table} (id INTEGER, doc {json_type})")
    docs = ['{"a": 1, "b": [true, null, 2.5]}', '"text \\"quoted\\" é"', "[]", None]
    batch = pa.record_batch(
        {"id": pa.array([1, 2, 3, 4], pa.int32()), "doc": docs, LINE_COLUMN: _lines(4)}
    )
    await write_all(
        build(DatabaseSink, {"url": test_db.url, "table": table, "mode": "append"}),
        [batch],
        run_ctx,
    )

    query = f"SELECT id, doc FROM {table} ORDER BY id"
    got = await read_all(build(DatabaseSource, {"url": test_db.url, "query": query}), run_ctx)

    assert got.column("doc").to_pylist() == docs


@pytest.mark.parametrize("test_db", ["mysql"], indirect=True)
async def test_mariadb_binary_columns_are_bytes_both_ways(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("bin"))
    await test_db.query(
        f"CREATE TABLE {table} (id INT, fixed BINARY(4), var VARBINARY(16), blob_ BLOB, "
        "note VARCHAR(10))"
    )
    await test_db.query(
        f"INSERT INTO {table} VALUES (1, X'0001FFFE', X'FF00', X'00FFFE5C0A', 'é'), "
        "(2, NULL, '', NULL, NULL)"
    )
    source = build(DatabaseSource, {"url": test_db.url, "query": f"SELECT * FROM {table}"})
    got = await read_all(source, run_ctx)

    assert got.column("fixed").to_pylist() == [b"\x00\x01\xff\xfe", None]
    assert got.column("var").to_pylist() == [b"\xff\x00", b""]
    assert got.column("blob_").to_pylist() == [b"\x00\xff\xfe\\\n", None]
    assert got.column("note").to_pylist() == ["é", None]
    assert {got.schema.field(c).type for c in ("fixed", "var", "blob_")} == {pa.binary()}

    # ... and the sink writes the bytes it read into the same columns, unchanged.
    await write_all(
        build(DatabaseSink, {"url": test_db.url, "table": table, "mode": "append"}),
        [got.to_batches()[0]],
        run_ctx,
    )
    hexed = await test_db.query(
        f"SELECT HEX(fixed), HEX(var), HEX(blob_) FROM {table} WHERE id = 1"
    )
    assert hexed == [("0001FFFE", "FF00", "00FFFE5C0A")] * 2


SPECIAL = [1.5, math.inf, -math.inf, math.nan]


@pytest.mark.parametrize("test_db", ["postgresql"], indirect=True)
async def test_postgresql_keeps_nan_and_infinities(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("special"))
    batch = pa.record_batch({"v": SPECIAL, LINE_COLUMN: _lines(4)})
    await write_all(build(DatabaseSink, {"url": test_db.url, "table": table}), [batch], run_ctx)
    got = await read_all(build(DatabaseSource, {"url": test_db.url, "table": table}), run_ctx)
    values = got.column("v").to_pylist()
    assert values[:3] == SPECIAL[:3] and math.isnan(values[3])


@pytest.mark.parametrize("test_db", ["sqlite"], indirect=True)
async def test_sqlite_keeps_infinities_and_refuses_nan_with_its_line(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("special"))
    options = {"url": test_db.url, "table": table}
    finite = pa.record_batch({"v": SPECIAL[:3], LINE_COLUMN: _lines(3)})
    await write_all(build(DatabaseSink, options), [finite], run_ctx)
    got = await read_all(build(DatabaseSource, options), run_ctx)
    assert got.column("v").to_pylist() == SPECIAL[:3]

    nan = pa.record_batch({"v": SPECIAL, LINE_COLUMN: _lines(4)})
    with pytest.raises(PermanentError) as err:
        await write_all(build(DatabaseSink, {**options, "mode": "append"}), [nan], run_ctx)
    message = err.value.details[0].message
    assert "'v'" in message and "NaN" in message and "input line(s) 5" in message
    assert "SQLite cannot store NaN" in message
    got = await read_all(build(DatabaseSource, options), run_ctx)
    assert got.num_rows == 3  # nothing of the refused run was written


@pytest.mark.parametrize("test_db", ["mysql"], indirect=True)
async def test_mariadb_refuses_nan_and_infinities_with_their_lines(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("special"))
    batch = pa.record_batch({"v": SPECIAL, LINE_COLUMN: _lines(4)})
    with pytest.raises(PermanentError) as err:
        await write_all(build(DatabaseSink, {"url": test_db.url, "table": table}), [batch], run_ctx)
    message = err.value.details[0].message
    assert "in 3 row(s), at input line(s) 3, 4, 5" in message
    assert "cannot store NaN or infinity" in message
    with pytest.raises(Exception):  # noqa: B017 - the table was never created
        await test_db.query(f"SELECT * FROM {table}")


async def test_a_sqlite_cursor_column_is_compared_as_stored_yet_read_as_declared(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    """A TIMESTAMP column holding '2024-01-02 11:00:00' (space, no fraction) reads as a
    timestamp, and the incremental cursor keeps SQLite's own text, so a later row of the same
    day is not skipped by comparing it with another text form of the last value."""
    table = test_db.table(unique("events"))
    await test_db.query(f"CREATE TABLE {table} (id INTEGER, at TIMESTAMP)")
    await test_db.query(f"INSERT INTO {table} VALUES (1, '2024-01-02 10:00:00')")
    options = {
        "url": test_db.url,
        "table": table,
        "incremental": {"column": "at", "state": "state.json"},
    }

    async def read() -> pa.Table:
        source = build(DatabaseSource, options)
        got = await read_all(source, run_ctx)
        await source.commit()
        return got

    first = await read()
    assert first.column("at").to_pylist() == [dt.datetime(2024, 1, 2, 10)]
    await test_db.query(f"INSERT INTO {table} VALUES (2, '2024-01-02 11:00:00')")
    second = await read()
    assert second.column("id").to_pylist() == [2]
    assert second.column("at").to_pylist() == [dt.datetime(2024, 1, 2, 11)]
    assert (await read()).num_rows == 0


@pytest.mark.parametrize("test_db", ["sqlite"], indirect=True)
async def test_a_sqlite_value_not_of_its_declared_type_is_refused_with_its_record(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("dates"))
    await test_db.query(f"CREATE TABLE {table} (id INTEGER, day DATE, ok BOOLEAN)")
    await test_db.query(
        f"INSERT INTO {table} VALUES (1, NULL, NULL), (2, NULL, NULL), (3, '2024-01-02', 1), "
        "(4, 'soon', 0)"
    )
    options = {"url": test_db.url, "table": table}

    query = {"url": test_db.url, "query": f"SELECT * FROM {table} WHERE id <= 3"}
    got = await read_all(build(DatabaseSource, query), run_ctx)
    assert got.column("day").to_pylist()[2] == "2024-01-02"  # a query reads stored values

    with pytest.raises(PermanentError) as err:
        await read_all(build(DatabaseSource, options), run_ctx)
    assert "column 'day' is declared DATE but holds 'soon' at record 4" in str(err.value)

    await test_db.query(f"DELETE FROM {table} WHERE id = 4")
    got = await read_all(build(DatabaseSource, options), run_ctx)
    assert got.schema.field("day").type == pa.date32()
    assert got.column("day").to_pylist() == [None, None, dt.date(2024, 1, 2)]
    assert got.column("ok").to_pylist() == [None, None, True]


@pytest.mark.parametrize("test_db", ["mysql"], indirect=True)
async def test_nested_values_reach_mariadb_as_json_with_every_character_intact(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table(unique("nested"))
    docs = [{"k": 'q"\\\n\t', "n": [1, 2.5]}, None, {"k": "é 😀", "n": []}]
    batch = pa.record_batch({"doc": pa.array(docs), LINE_COLUMN: _lines(3)})
    for mode in ("append", "append"):  # created through staging, then loaded straight in
        await write_all(
            build(DatabaseSink, {"url": test_db.url, "table": table, "mode": mode}),
            [batch],
            run_ctx,
        )
    got = await read_all(build(DatabaseSource, {"url": test_db.url, "table": table}), run_ctx)
    parsed = [None if v is None else orjson.loads(v) for v in got.column("doc").to_pylist()]
    assert parsed == docs + docs
