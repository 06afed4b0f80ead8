"""The database source against real PostgreSQL, MariaDB and SQLite."""

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

from ..conftest import PG_URL, ScratchDatabase, build, read_all, write_all
from ..database_rows import orders


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


@pytest.mark.parametrize("table", ["", "a..b", "orders."])
def test_a_table_name_with_an_empty_part_is_refused_in_the_config(table: str) -> None:
    with pytest.raises(ValidationError, match="table name"):
        build(DatabaseSource, {"url": "sqlite:///x.db", "table": table})


def test_an_empty_incremental_column_is_refused_in_the_config() -> None:
    options = {"url": "sqlite:///x.db", "table": "t", "incremental": {"column": "", "state": "s"}}
    with pytest.raises(ValidationError, match="identifier is empty"):
        build(DatabaseSource, options)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://postgres@127.0.0.1:5432/no_such_db_quiver", "does not exist"),
        ("mysql://root@127.0.0.1:3306/no_such_db_quiver", "does not exist"),
        ("postgresql://nobody_quiver@127.0.0.1:5432/test", "refused the credentials"),
        ("mysql://nobody_quiver@127.0.0.1:3306/test", "refused the credentials"),
    ],
)
async def test_a_wrong_database_or_user_fails_at_once_instead_of_retrying(
    url: str, message: str, run_ctx: RunContext
) -> None:
    with pytest.raises(PermanentError, match=message):
        await read_all(build(DatabaseSource, {"url": url, "table": "t"}), run_ctx)
