"""The database source and sink when things go wrong mid-run: a connection killed by the server
while loading or reading, a bad row late in an append, rows without an upsert key."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.database import DatabaseSink
from quiver.pipeline.sources.database import DatabaseSource
from quiver.runtime.errors import PermanentError, QuiverError

from .conftest import ScratchDatabase, build, unique
from .test_connector_pipelines import run


def rows(first: int, count: int) -> pa.RecordBatch:
    ids = list(range(first, first + count))
    return pa.record_batch(
        {
            "id": pa.array(ids, pa.int64()),
            "name": [f"n{i}" for i in ids],
            LINE_COLUMN: pa.array([i + 1 for i in ids], pa.int64()),
        }
    )


async def kill_session(db: ScratchDatabase, marker: str) -> None:
    """End, from a second connection, the session of the run: on MariaDB the connection
    using this test's own database, on PostgreSQL the one whose statement names ``marker``."""
    if db.dialect == "mysql":
        found = await db.query(
            "SELECT id FROM information_schema.processlist "
            "WHERE db = DATABASE() AND id <> CONNECTION_ID()"
        )
        assert len(found) == 1, found
        await db.query(f"KILL {found[0][0]}")
    else:
        found = await db.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE pid <> pg_backend_pid() AND query LIKE '%{marker}%'"
        )
        assert found == [(True,)], found


def assert_names_the_lost_server(err: QuiverError, db: ScratchDatabase) -> None:
    detail = err.details[0]
    assert "connection to the database was lost" in detail.message
    assert detail.where.startswith(db.url.split("@")[0].split("//")[0])
    assert "127.0.0.1" in detail.where


@pytest.mark.parametrize("test_db", ["postgresql", "mysql"], indirect=True)
async def test_a_load_whose_connection_is_killed_fails_at_once_and_writes_nothing(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    name = unique("killed")
    table = test_db.table(name)
    await test_db.query(f"CREATE TABLE {table} (id BIGINT, name VARCHAR(20))")
    await test_db.query(f"INSERT INTO {table} VALUES (0, 'kept')")
    sink = build(DatabaseSink, {"url": test_db.url, "table": table, "mode": "append"})
    await sink.open(rows(1, 1).schema, run_ctx)
    await sink.write(rows(1, 1000))
    await asyncio.sleep(0.2)  # the first rows are on their way into the table

    await kill_session(test_db, name)

    with pytest.raises(PermanentError) as err:  # permanent: the transaction went with it
        for start in range(1001, 200_001, 20_000):
            await sink.write(rows(start, 20_000))
        await sink.commit()
    await sink.abort()
    assert_names_the_lost_server(err.value, test_db)
    assert "nothing was written" in err.value.details[0].fix
    assert "Not connected" not in str(err.value)
    assert await test_db.query(f"SELECT id, name FROM {table}") == [(0, "kept")]


@pytest.mark.parametrize("test_db", ["postgresql", "mysql"], indirect=True)
async def test_a_read_whose_connection_is_killed_names_the_server_and_the_record(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    name = unique("big")
    table = test_db.table(name)
    if test_db.dialect == "mysql":
        await test_db.query(
            f"CREATE TABLE {table} AS SELECT seq AS id, REPEAT('x', 200) AS pad "
            "FROM seq_1_to_300000"
        )
    else:
        await test_db.query(
            f"CREATE TABLE {table} AS SELECT g AS id, repeat('x', 200) AS pad "
            "FROM generate_series(1, 300000) g"
        )
    source = build(
        DatabaseSource,
        {
            "url": test_db.url,
            "query": f"SELECT id, pad FROM {table} /* {name} */",
            "batch_rows": 500,
        },
    )
    batches = source.batches(run_ctx)
    first = await anext(batches)
    assert first.num_rows == 500

    await kill_session(test_db, name)

    with pytest.raises(PermanentError) as err:
        async for _ in batches:
            pass
    await batches.aclose()
    assert_names_the_lost_server(err.value, test_db)
    assert "after record" in err.value.details[0].message
    assert "run the pipeline again" in err.value.details[0].fix


async def test_a_late_bad_row_in_an_append_writes_nothing_and_names_its_line(
    test_db: ScratchDatabase, tmp_path: Path
) -> None:
    """Appends load straight into the table inside the run's transaction: a failure on the
    last row still leaves the table as it was."""
    table = test_db.table(unique("late"))
    await test_db.query(f"CREATE TABLE {table} (id BIGINT NOT NULL, qty BIGINT)")
    await test_db.query(f"INSERT INTO {table} VALUES (42, 1)")
    body = "".join(f"{i},{i}\n" for i in range(1, 3000))
    (tmp_path / "in.csv").write_text("id,qty\n" + body + ",7\n")  # line 3001: no id
    yaml = f"""
source: {{csv: {{path: in.csv, types: {{id: int, qty: int}}, batch_rows: 500}}}}
sink: {{database: {{url: "${{DB}}", table: {table}, mode: append, batch_rows: 700}}}}
"""
    with pytest.raises(QuiverError) as err:
        await run(tmp_path, yaml, DB=test_db.url)
    assert "null" in str(err.value).lower()
    if test_db.dialect == "mysql":  # LOAD DATA's warning, tied back to the input line
        assert "input line 3001" in str(err.value)
    assert await test_db.query(f"SELECT id, qty FROM {table}") == [(42, 1)]


async def test_rows_without_an_upsert_key_are_refused_naming_their_input_lines(
    test_db: ScratchDatabase, tmp_path: Path
) -> None:
    (tmp_path / "in.csv").write_text("id,name\n1,a\n,b\n3,c\n,d\n")
    table = test_db.table(unique("keys"))
    yaml = f"""
source: {{csv: {{path: in.csv, types: {{id: int}}}}}}
sink: {{database: {{url: "${{DB}}", table: {table}, mode: upsert, keys: [id]}}}}
"""
    with pytest.raises(PermanentError) as err:
        await run(tmp_path, yaml, DB=test_db.url)
    message = err.value.details[0].message
    assert "key column 'id' is null in 2 row(s), at input line(s) 3, 5" in message


async def test_an_integer_out_of_the_columns_range_is_refused_with_its_line(
    test_db: ScratchDatabase, tmp_path: Path
) -> None:
    """Integers are narrowed to an INTEGER column on the way into a direct COPY; a value that
    does not fit is refused, never wrapped."""
    table = test_db.table(unique("narrow"))
    await test_db.query(f"CREATE TABLE {table} (id INTEGER, qty SMALLINT)")
    (tmp_path / "in.csv").write_text("id,qty\n1,1\n2,2\n3,40000\n")
    yaml = f"""
source: {{csv: {{path: in.csv, types: {{id: int, qty: int}}}}}}
sink: {{database: {{url: "${{DB}}", table: {table}, mode: append}}}}
"""
    if test_db.dialect == "sqlite":  # INTEGER holds 64 bits whatever the declared type
        await run(tmp_path, yaml, DB=test_db.url)
        assert await test_db.query(f"SELECT qty FROM {table} ORDER BY id") == [(1,), (2,), (40000,)]
        return
    with pytest.raises(QuiverError) as err:
        await run(tmp_path, yaml, DB=test_db.url)
    assert "40000" in str(err.value)
    if test_db.dialect == "postgresql":
        assert "at input line 4" in str(err.value) and "32767" in str(err.value)
    else:
        assert "input line 4" in str(err.value)
    assert await test_db.query(f"SELECT * FROM {table}") == []


@pytest.mark.parametrize("test_db", ["mysql"], indirect=True)
async def test_an_append_into_a_table_that_cannot_roll_back_goes_through_staging(
    test_db: ScratchDatabase, tmp_path: Path
) -> None:
    """MyISAM keeps rows a failed transaction loaded: the rows wait in the staging table and
    reach the target in one statement at commit, so a late failure still writes nothing."""
    table = test_db.table(unique("myisam"))
    await test_db.query(f"CREATE TABLE {table} (id BIGINT NOT NULL, v DOUBLE) ENGINE=MyISAM")
    body = "".join(f"{i},{i}.5\n" for i in range(1, 3000))
    (tmp_path / "in.csv").write_text("id,v\n" + body + "3000,nan\n")
    yaml = f"""
source: {{csv: {{path: in.csv, types: {{id: int, v: float}}, batch_rows: 500}}}}
sink: {{database: {{url: "${{DB}}", table: {table}, mode: append}}}}
"""
    with pytest.raises(QuiverError, match=r"input line\(s\) 3001"):
        await run(tmp_path, yaml, DB=test_db.url)
    assert await test_db.query(f"SELECT COUNT(*) FROM {table}") == [(0,)]

    (tmp_path / "in.csv").write_text("id,v\n" + body)
    await run(tmp_path, yaml, DB=test_db.url)
    assert await test_db.query(f"SELECT COUNT(*), SUM(v) FROM {table}") == [(2999, 4499999.5)]


@pytest.mark.parametrize("test_db", ["mysql"], indirect=True)
async def test_a_commit_on_a_killed_connection_is_not_retried_and_says_to_check(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    """Killed between the last rows and the COMMIT: whether a COMMIT reached the server
    cannot be known from the client, so the message says to check rather than guess."""
    name = unique("commit")
    table = test_db.table(name)
    await test_db.query(f"CREATE TABLE {table} (id BIGINT, name VARCHAR(20))")
    sink = build(DatabaseSink, {"url": test_db.url, "table": table, "mode": "append"})
    await sink.open(rows(1, 1).schema, run_ctx)
    await sink.write(rows(1, 100))

    await kill_session(test_db, name)

    with pytest.raises(PermanentError) as err:
        await sink.commit()
    details = err.value.details
    assert "connection to the database was lost while committing" in details[0].message
    assert "not confirmed" in details[-1].message
    assert "check whether the rows arrived" in details[-1].fix
    assert await test_db.query(f"SELECT COUNT(*) FROM {table}") == [(0,)]
    with pytest.raises(PermanentError, match="nothing to commit"):
        await sink.commit()  # a retry of the commit cannot bring the rows back


@pytest.mark.parametrize("test_db", ["postgresql", "sqlite"], indirect=True)
async def test_an_append_into_a_view_inserts_through_it_rather_than_bulk_loading(
    test_db: ScratchDatabase, tmp_path: Path
) -> None:
    """A view that takes INSERTs (PostgreSQL's simple views, SQLite's INSTEAD OF triggers)
    cannot take a COPY or bulk insert: its rows go through the staging table."""
    base, view = test_db.table(unique("base")), test_db.table(unique("v"))
    await test_db.query(f"CREATE TABLE {base} (id BIGINT, name VARCHAR(10))")
    await test_db.query(f"CREATE VIEW {view} AS SELECT id, name FROM {base}")
    if test_db.dialect == "sqlite":
        await test_db.query(
            f"CREATE TRIGGER {unique('t')} INSTEAD OF INSERT ON {view} "
            f"BEGIN INSERT INTO {base} VALUES (NEW.id, NEW.name); END"
        )
    (tmp_path / "in.csv").write_text("id,name\n1,a\n2,b\n")
    yaml = f"""
source: {{csv: {{path: in.csv, types: {{id: int}}}}}}
sink: {{database: {{url: "${{DB}}", table: {view}, mode: append}}}}
"""
    await run(tmp_path, yaml, DB=test_db.url)
    assert await test_db.query(f"SELECT id, name FROM {base} ORDER BY id") == [(1, "a"), (2, "b")]


async def test_a_truncate_that_fails_late_keeps_the_old_rows(
    test_db: ScratchDatabase, tmp_path: Path
) -> None:
    """`truncate` empties the table inside the run's transaction and loads straight into it:
    a failure on the last row rolls both back."""
    table = test_db.table(unique("trunc"))
    await test_db.query(f"CREATE TABLE {table} (id BIGINT NOT NULL, qty BIGINT)")
    await test_db.query(f"INSERT INTO {table} VALUES (42, 1), (43, 2)")
    body = "".join(f"{i},{i}\n" for i in range(1, 3000))
    (tmp_path / "in.csv").write_text("id,qty\n" + body + ",7\n")  # line 3001: no id
    yaml = f"""
source: {{csv: {{path: in.csv, types: {{id: int, qty: int}}, batch_rows: 500}}}}
sink: {{database: {{url: "${{DB}}", table: {table}, mode: truncate}}}}
"""
    with pytest.raises(QuiverError):
        await run(tmp_path, yaml, DB=test_db.url)
    assert await test_db.query(f"SELECT id, qty FROM {table} ORDER BY id") == [(42, 1), (43, 2)]

    (tmp_path / "in.csv").write_text("id,qty\n" + body)
    await run(tmp_path, yaml, DB=test_db.url)
    [(count, total)] = await test_db.query(f"SELECT COUNT(*), SUM(qty) FROM {table}")
    assert (int(count), int(total)) == (2999, 4498500)


@pytest.mark.parametrize("mode", ["append", "truncate", "upsert"])
async def test_an_input_without_rows_leaves_the_table_as_it_was(
    test_db: ScratchDatabase, tmp_path: Path, mode: str
) -> None:
    """A CSV file with its header only: its columns reach the sink but no rows; the run
    succeeds, an existing table keeps its rows (truncate empties it) and a missing one is
    created empty."""
    (tmp_path / "in.csv").write_text("id,name\n")
    keys = ", keys: [id]" if mode == "upsert" else ""
    kept, missing = test_db.table(unique("kept")), test_db.table(unique("missing"))
    await test_db.query(f"CREATE TABLE {kept} (id BIGINT, name VARCHAR(10))")
    await test_db.query(f"INSERT INTO {kept} VALUES (1, 'a')")
    if mode == "upsert":
        await test_db.query(f"CREATE UNIQUE INDEX {unique('k')} ON {kept} (id)")
    for table in (kept, missing):
        yaml = f"""
source: {{csv: {{path: in.csv}}}}
sink: {{database: {{url: "${{DB}}", table: {table}, mode: {mode}{keys}}}}}
"""
        result = await run(tmp_path, yaml, DB=test_db.url)
        assert result.rows_written == 0
    # truncate-and-load of no rows leaves the table empty, as an empty file is written
    expected = [] if mode == "truncate" else [(1, "a")]
    assert await test_db.query(f"SELECT id, name FROM {kept}") == expected
    # the header's columns reach the sink, which creates the missing table empty
    assert await test_db.query(f"SELECT * FROM {missing}") == []
