"""The database source and sink against real PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.database import DatabaseSink
from quiver.pipeline.sources.database import DatabaseSource
from quiver.runtime.errors import PermanentError, RetryableError

from .conftest import PG_URL, ScratchDatabase, build, read_all, write_all


def orders(ids: list[int], name: str = "n") -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([f"{name}{i}" for i in ids]),
            "total": pa.array([decimal.Decimal(f"{i}.50") for i in ids], pa.decimal128(10, 2)),
            "placed": pa.array([dt.datetime(2024, 1, 1, 12, 0, i % 60) for i in ids]),
            LINE_COLUMN: pa.array(range(1, len(ids) + 1), pa.int64()),
        }
    )


async def rows(db: ScratchDatabase, table: str, order: str = "id") -> list[tuple[object, ...]]:
    return await db.query(f"SELECT id, name FROM {db.table(table)} ORDER BY {order}")


async def test_create_then_read_back_round_trips_types(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    sink = build(
        DatabaseSink, {"url": test_db.url, "table": test_db.table("orders"), "mode": "create"}
    )
    await write_all(sink, [orders([1, 2]), orders([3])], run_ctx)

    source = build(
        DatabaseSource, {"url": test_db.url, "table": test_db.table("orders"), "batch_rows": 2}
    )
    batches = [b async for b in source.batches(run_ctx)]
    assert [b.num_rows for b in batches] == [2, 1]
    table = pa.Table.from_batches(batches).sort_by("id")
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.column("name").to_pylist() == ["n1", "n2", "n3"]
    assert [decimal.Decimal(str(v)) for v in table.column("total").to_pylist()] == [
        decimal.Decimal("1.50"),
        decimal.Decimal("2.50"),
        decimal.Decimal("3.50"),
    ]
    assert table.column(LINE_COLUMN).to_pylist() == [1, 2, 3]
    if test_db.dialect != "sqlite":  # SQLite has no timestamp or decimal type: it stores text
        assert table.column("placed").to_pylist()[0] == dt.datetime(2024, 1, 1, 12, 0, 1)
        assert table.schema.field("total").type == pa.decimal128(10, 2)


async def test_postgres_types_become_plain_arrow_types(run_ctx: RunContext) -> None:
    query = (
        "select 12.50::numeric(6,2) as price, 1.5::numeric as free, "
        "'00000000-0000-0000-0000-00000000002a'::uuid as id, '{\"a\": 1}'::jsonb as doc"
    )
    source = build(DatabaseSource, {"url": PG_URL, "query": query})
    table = await read_all(source, run_ctx)
    assert table.schema.field("price").type == pa.decimal128(6, 2)
    assert table.column("price").to_pylist() == [decimal.Decimal("12.50")]
    assert table.column("free").to_pylist() == ["1.5"]
    assert table.column("id").to_pylist() == ["00000000-0000-0000-0000-00000000002a"]
    assert table.column("doc").to_pylist() == ['{"a": 1}']


async def test_source_query_streams_in_batches_with_record_numbers(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    sink = build(DatabaseSink, {"url": test_db.url, "table": test_db.table("o"), "mode": "create"})
    await write_all(sink, [orders(list(range(1, 1001)))], run_ctx)
    source = build(
        DatabaseSource,
        {
            "url": test_db.url,
            "query": f"SELECT id, name FROM {test_db.table('o')} WHERE id > 100 ORDER BY id",
            "batch_rows": 300,
        },
    )
    batches = [b async for b in source.batches(run_ctx)]
    assert [b.num_rows for b in batches] == [300, 300, 300]
    assert batches[2].column(LINE_COLUMN).to_pylist()[-1] == 900
    assert batches[0].column("id").to_pylist()[0] == 101


async def test_incremental_reads_only_rows_past_the_last_committed_value(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    table = test_db.table("events")
    await test_db.query(f"CREATE TABLE {table} (id INTEGER, at TIMESTAMP, what VARCHAR(10))")
    await test_db.query(
        f"INSERT INTO {table} VALUES (1, '2024-01-01 10:00:00', 'a'), "
        "(2, '2024-01-02 10:00:00', 'b')"
    )
    options = {
        "url": test_db.url,
        "query": f"SELECT id, at, what FROM {table} WHERE what <> '%'",
        "incremental": {"column": "at", "state": "state/events.json"},
    }

    async def ids_read(commit: bool) -> list[int]:
        source = build(DatabaseSource, options)
        table_ = await read_all(source, run_ctx)
        await (source.commit() if commit else source.abort())
        return [int(v) for v in table_.column("id").to_pylist()] if table_.num_columns else []

    assert await ids_read(commit=True) == [1, 2]
    state = Path(run_ctx.base_dir) / "state" / "events.json"
    assert "2024-01-02" in state.read_text()
    await test_db.query(f"INSERT INTO {table} VALUES (3, '2024-01-03 10:00:00', 'c')")
    assert await ids_read(commit=False) == [3]  # the run failed: the state stays
    assert await ids_read(commit=True) == [3]
    assert await ids_read(commit=True) == []
    assert "2024-01-03" in state.read_text()


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
    with pytest.raises(PermanentError, match="record 5"):
        await write_all(build(DatabaseSink, options), [batch], run_ctx)


async def test_bad_query_is_a_permanent_error_naming_the_database(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    source = build(DatabaseSource, {"url": test_db.url, "table": test_db.table("missing")})
    with pytest.raises(PermanentError) as err:
        await read_all(source, run_ctx)
    assert "missing" in str(err.value)
    assert "***" not in err.value.details[0].where or test_db.dialect == "sqlite"


@pytest.mark.parametrize(
    "url", ["postgresql://postgres@127.0.0.1:1/test", "mysql://root@127.0.0.1:1/test"]
)
async def test_unreachable_server_is_retryable(url: str, run_ctx: RunContext) -> None:
    with pytest.raises(RetryableError, match="unavailable"):
        await read_all(build(DatabaseSource, {"url": url, "table": "t"}), run_ctx)


def test_config_needs_exactly_one_of_table_or_query() -> None:
    with pytest.raises(ValidationError, match="exactly one"):
        build(DatabaseSource, {"url": "sqlite:///x.db", "table": "a", "query": "select 1"})
    with pytest.raises(ValidationError, match="needs `keys`"):
        build(DatabaseSink, {"url": "sqlite:///x.db", "table": "a", "mode": "upsert"})
    with pytest.raises(ValidationError, match="extra"):
        build(DatabaseSink, {"url": "sqlite:///x.db", "table": "a", "tabel": "b"})
