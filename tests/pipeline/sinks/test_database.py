"""The database sink against real PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import decimal

import pyarrow as pa
import pytest
from pydantic import ValidationError

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.database import DatabaseSink
from quiver.runtime.errors import PermanentError

from ..conftest import ScratchDatabase, build, write_all
from ..database_rows import orders, rows


async def test_create_refuses_an_existing_table_and_leaves_it_untouched(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    options = {"url": test_db.url, "table": test_db.table("orders"), "mode": "create"}
    await write_all(build(DatabaseSink, options), [orders([1])], run_ctx)
    again = build(DatabaseSink, options)
    with pytest.raises(PermanentError, match="already exists"):
        await write_all(again, [orders([7])], run_ctx)
    with pytest.raises(PermanentError, match="nothing to commit"):
        await again.commit()  # a retried commit cannot write what was rolled back
    assert await rows(test_db, "orders") == [(1, "n1")]


async def test_append_adds_rows_and_creates_a_missing_table(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    options = {"url": test_db.url, "table": test_db.table("orders"), "mode": "append"}
    await write_all(build(DatabaseSink, options), [orders([1, 2])], run_ctx)
    await write_all(build(DatabaseSink, options), [orders([3])], run_ctx)
    assert await rows(test_db, "orders") == [(1, "n1"), (2, "n2"), (3, "n3")]


async def test_replace_swaps_the_whole_table(test_db: ScratchDatabase, run_ctx: RunContext) -> None:
    options = {"url": test_db.url, "table": test_db.table("orders"), "mode": "replace"}
    await write_all(build(DatabaseSink, options), [orders([1, 2, 3])], run_ctx)
    await write_all(build(DatabaseSink, options), [orders([9], "new")], run_ctx)
    assert await rows(test_db, "orders") == [(9, "new9")]


async def test_truncate_keeps_the_table_definition_and_replaces_its_rows(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table("t")
    await test_db.query(
        f"CREATE TABLE {table} (id INTEGER, name VARCHAR(20), note VARCHAR(5) DEFAULT 'kept')"
    )
    await test_db.query(f"INSERT INTO {table} (id, name) VALUES (1, 'old')")
    options = {"url": test_db.url, "table": table, "mode": "truncate"}
    batch = pa.record_batch({"id": [7, 8], "name": ["a", "b"]})
    await write_all(build(DatabaseSink, options), [batch], run_ctx)
    got = await test_db.query(f"SELECT id, name, note FROM {table} ORDER BY id")
    assert [tuple(r) for r in got] == [(7, "a", "kept"), (8, "b", "kept")]

    failed = build(DatabaseSink, options)
    await failed.open(batch.schema, run_ctx)
    await failed.write(pa.record_batch({"id": [9], "name": ["c"]}))
    await failed.abort()
    assert len(await test_db.query(f"SELECT id FROM {table}")) == 2


async def test_upsert_updates_matching_keys_inserts_others_and_last_row_wins(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    options = {
        "url": test_db.url,
        "table": test_db.table("orders"),
        "mode": "upsert",
        "keys": ["id"],
    }
    await write_all(build(DatabaseSink, options), [orders([1, 2])], run_ctx)
    await write_all(build(DatabaseSink, options), [orders([2, 3], "a"), orders([3], "b")], run_ctx)
    assert await rows(test_db, "orders") == [(1, "n1"), (2, "a2"), (3, "b3")]


async def test_failed_run_leaves_the_target_exactly_as_it_was(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    options = {"url": test_db.url, "table": test_db.table("orders"), "mode": "append"}
    await write_all(build(DatabaseSink, options), [orders([1])], run_ctx)

    sink = build(DatabaseSink, {**options, "mode": "replace"})
    await sink.open(orders([1]).schema, run_ctx)
    await sink.write(orders([5, 6, 7]))
    await sink.abort()  # e.g. a later step failed
    assert await rows(test_db, "orders") == [(1, "n1")]

    missing = build(DatabaseSink, {**options, "table": test_db.table("never")})
    await missing.open(orders([1]).schema, run_ctx)
    await missing.write(orders([1]))
    await missing.abort()
    with pytest.raises(Exception):  # noqa: B017 - each driver names the error its own way
        await test_db.query(f"SELECT * FROM {test_db.table('never')}")


async def test_append_into_existing_table_casts_to_its_column_types(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    await test_db.query(
        f"CREATE TABLE {test_db.table('t')} (id INTEGER, code VARCHAR(10), amount NUMERIC(8, 3))"
    )
    batch = pa.record_batch({"id": ["1", "2"], "code": ["a", "b"], "amount": [1.5, 2.25]})
    sink = build(DatabaseSink, {"url": test_db.url, "table": test_db.table("t")})
    await write_all(sink, [batch], run_ctx)
    got = await test_db.query(f"SELECT id, code, amount FROM {test_db.table('t')} ORDER BY id")
    assert [(int(r[0]), r[1], decimal.Decimal(str(r[2]))) for r in got] == [
        (1, "a", decimal.Decimal("1.5")),
        (2, "b", decimal.Decimal("2.25")),
    ]


async def test_unknown_column_in_existing_table_is_reported_with_a_fix(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    await test_db.query(f"CREATE TABLE {test_db.table('t')} (id INTEGER)")
    sink = build(DatabaseSink, {"url": test_db.url, "table": test_db.table("t")})
    with pytest.raises(PermanentError) as err:
        await write_all(sink, [pa.record_batch({"id": [1], "colour": ["red"]})], run_ctx)
    detail = err.value.details[0]
    assert "colour" in detail.message and "rename" in detail.fix
    assert await test_db.query(f"SELECT * FROM {test_db.table('t')}") == []


async def test_null_upsert_key_is_rejected_with_its_record_number(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    options = {"url": test_db.url, "table": test_db.table("t"), "mode": "upsert", "keys": ["id"]}
    batch = pa.record_batch({"id": [1, None], LINE_COLUMN: pa.array([4, 5], pa.int64())})
    with pytest.raises(PermanentError, match=r"input line\(s\) 5"):
        await write_all(build(DatabaseSink, options), [batch], run_ctx)


def test_config_needs_keys_for_upsert_and_rejects_unknown_options() -> None:
    with pytest.raises(ValidationError, match="needs `keys`"):
        build(DatabaseSink, {"url": "sqlite:///x.db", "table": "a", "mode": "upsert"})
    with pytest.raises(ValidationError, match="extra"):
        build(DatabaseSink, {"url": "sqlite:///x.db", "table": "a", "tabel": "b"})


#: Column names that must reach the database as written: quotes of every dialect, a dot, a
#: percent sign (MariaDB's parameter marker), spaces and letters beyond ASCII.
HOSTILE_COLUMNS = ['we"ird', "back`tick", "it's", "dot.ted", "100%", "sp ace", "größe 名前"]


async def test_hostile_table_and_column_names_round_trip_through_sink_and_source(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    from quiver.pipeline.sources.database import DatabaseSource

    from ..conftest import read_all

    table = test_db.table('or"d`ers ü')
    batch = pa.record_batch(
        {name: pa.array([i, i + 10], pa.int64()) for i, name in enumerate(HOSTILE_COLUMNS)}
    )
    for mode in ("create", "append"):
        sink = build(DatabaseSink, {"url": test_db.url, "table": table, "mode": mode})
        await write_all(sink, [batch], run_ctx)
    options = {"url": test_db.url, "table": table}
    read = await read_all(build(DatabaseSource, options), run_ctx)
    for i, name in enumerate(HOSTILE_COLUMNS):
        assert sorted(int(v) for v in read.column(name).to_pylist()) == [i, i, i + 10, i + 10]
    incremental = {**options, "incremental": {"column": "100%", "state": "s.json"}}
    first = build(DatabaseSource, incremental)
    assert (await read_all(first, run_ctx)).num_rows == 4
    await first.commit()
    again = build(DatabaseSource, incremental)  # now with a parameter beside the % in the name
    assert (await read_all(again, run_ctx)).num_rows == 0


@pytest.mark.parametrize("table", ["", "a..b", ".orders", "db.sales.orders"])
def test_a_table_name_no_quoting_can_express_is_refused_in_the_config(table: str) -> None:
    with pytest.raises(ValidationError, match="table name") as err:
        build(DatabaseSink, {"url": "sqlite:///x.db", "table": table})
    assert "schema.table" in str(err.value)


def test_an_empty_upsert_key_is_refused_in_the_config() -> None:
    with pytest.raises(ValidationError, match="identifier is empty"):
        build(DatabaseSink, {"url": "sqlite:///x.db", "table": "t", "mode": "upsert", "keys": [""]})


async def test_upsert_writes_a_user_column_named_like_its_sequence_column(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table("seq")
    options = {"url": test_db.url, "table": table, "mode": "upsert", "keys": ["id"]}
    first = pa.record_batch({"id": [1, 2, 1], "__quiver_seq": ["a", "b", "c"]})
    await write_all(build(DatabaseSink, options), [first], run_ctx)
    got = await test_db.query(f"SELECT id, __quiver_seq FROM {table} ORDER BY id")
    assert [tuple(r) for r in got] == [(1, "c"), (2, "b")]
