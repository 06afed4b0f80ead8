"""Pipelines with a dead-letter queue against real sinks: a PostgreSQL table refusing rows
(a check constraint) sends them to the queue and the run goes on; once the table is fixed a
replay delivers them. JetStream checkpoints: the checkpoint the table refuses is kept, the
others commit, and every message is acknowledged."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine, RunFailedError, RunResult
from quiver.pipeline.plan import PipelinePlan
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.redelivery import queue_of, replay_entries
from quiver.pipeline.runlog import RunLog
from quiver.runtime.errors import QuiverError

from .conftest import free_port, js_publish, unique, with_source_options

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "pipelines"


def _plan(folder: Path, yaml: str, **variables: str) -> PipelinePlan:
    (folder / "pipeline.yaml").write_text(yaml)
    return compile_plan(load_pipeline(folder / "pipeline.yaml", variables, environ={}))


async def _run(plan: PipelinePlan) -> tuple[RunResult, list[dict[str, object]]]:
    out = io.StringIO()
    engine = PipelineEngine(plan, log=RunLog("t", "json", stream=out))
    result = await engine.run()
    return result, [json.loads(line) for line in out.getvalue().splitlines()]


def _sql(url: str, *statements: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url.replace("postgresql://", "postgres://"), autocommit=True) as conn:
        rows: list[tuple[object, ...]] = []
        for statement in statements:
            cur = conn.execute(statement)
            rows = cur.fetchall() if cur.description else []
        return rows


_CSV_TO_PG = """
name: orders
source: {csv: {path: in.csv, types: {id: int, qty: int}}}
sink: {database: {url: "${URL}", table: orders}}
engine: {retry: {max_attempts: 2, initial_delay: 0.01}}
dlq: {path: dlq}
"""


async def test_rows_a_postgresql_table_refuses_go_to_the_queue_and_replay_delivers_them(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    url = fresh_postgresql
    _sql(url, "CREATE TABLE orders (id integer PRIMARY KEY, qty integer CHECK (qty > 0))")
    (tmp_path / "in.csv").write_text("id,qty\n1,5\n2,-1\n3,7\n")
    plan = _plan(tmp_path, _CSV_TO_PG, URL=url)
    result, events = await _run(plan)

    assert result.status == "ok"
    assert result.rows_written == 0
    assert result.steps["sink"].dead_lettered == 3
    assert _sql(url, "SELECT count(*) FROM orders") == [(0,)]  # the transaction rolled back
    queue = queue_of(plan)
    [entry] = queue.entries()
    assert result.dead_letters == [entry.id]
    assert (entry.pipeline, entry.sink, entry.component, entry.rows) == (
        "orders",
        "sink",
        "database",
        3,
    )
    assert entry.error_class == "permanent"
    assert "orders_qty_check" in entry.message
    assert queue.read(entry.id).to_pydict() == {"id": [1, 2, 3], "qty": [5, -1, 7]}
    assert any(e["event"] == "sink_gave_up" for e in events)

    # the table still refuses: the entry stays, its attempts counted
    [again] = await replay_entries(plan, queue, queue.entries())
    assert not again.delivered
    assert "orders_qty_check" in (again.error or "")
    kept = queue.get(entry.id)
    assert (kept.attempts, kept.replays) == (entry.attempts + 1, 1)

    _sql(url, "ALTER TABLE orders DROP CONSTRAINT orders_qty_check")
    [done] = await replay_entries(plan, queue, queue.entries())
    assert done.delivered and done.rows == 3
    assert _sql(url, "SELECT id, qty FROM orders ORDER BY id") == [(1, 5), (2, -1), (3, 7)]
    assert queue.entries() == []
    assert queue.metrics.sample("quiver_pipeline_dlq_replayed_total", outcome="delivered") == 1


async def test_without_a_queue_a_refusing_table_still_fails_the_run(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    url = fresh_postgresql
    _sql(url, "CREATE TABLE orders (id integer PRIMARY KEY, qty integer CHECK (qty > 0))")
    (tmp_path / "in.csv").write_text("id,qty\n1,-5\n")
    plan = _plan(tmp_path, _CSV_TO_PG.replace("dlq: {path: dlq}", ""), URL=url)
    with pytest.raises(QuiverError, match="orders_qty_check"):
        await _run(plan)
    assert not (tmp_path / "dlq").exists()


async def test_a_sink_not_listed_in_dlq_sinks_fails_the_run(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    url = fresh_postgresql
    _sql(url, "CREATE TABLE orders (id integer PRIMARY KEY, qty integer CHECK (qty > 0))")
    (tmp_path / "in.csv").write_text("id,qty\n1,-5\n")
    graph = """
steps:
  src: {csv: {path: in.csv, types: {id: int, qty: int}}}
  db: {database: {url: "${URL}", table: orders}}
  copy: {jsonl: {path: copy.jsonl}}
connections:
  - {from: src, to: [db, copy]}
engine: {retry: {max_attempts: 1}}
dlq: {path: dlq, sinks: [copy]}
"""
    plan = _plan(tmp_path, graph, URL=url)
    with pytest.raises(QuiverError, match="orders_qty_check"):
        await _run(plan)
    assert queue_of(plan).entries() == []
    assert not (tmp_path / "copy.jsonl").exists()  # a failed run writes nothing


async def test_the_other_sinks_commit_when_one_gives_up(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    url = fresh_postgresql
    _sql(url, "CREATE TABLE orders (id integer PRIMARY KEY, qty integer CHECK (qty > 0))")
    (tmp_path / "in.csv").write_text("id,qty\n1,5\n2,-1\n")
    graph = """
steps:
  src: {csv: {path: in.csv, types: {id: int, qty: int}}}
  db: {database: {url: "${URL}", table: orders}}
  copy: {parquet: {path: copy.parquet}}
connections:
  - {from: src, to: [db, copy]}
engine: {retry: {max_attempts: 1}}
dlq: {path: dlq}
"""
    plan = _plan(tmp_path, graph, URL=url)
    result, _ = await _run(plan)
    assert result.rows_written_by_sink == {"db": 0, "copy": 2}
    assert pq.read_table(tmp_path / "copy.parquet").column("id").to_pylist() == [1, 2]
    [entry] = queue_of(plan).entries()
    assert entry.sink == "db"


async def test_a_sink_that_cannot_be_reached_is_dead_lettered_once_retries_run_out(
    tmp_path: Path,
) -> None:
    (tmp_path / "in.csv").write_text("id,qty\n1,5\n2,6\n")
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    plan = _plan(
        tmp_path,
        _CSV_TO_PG.replace("max_attempts: 2", "max_attempts: 3"),
        URL=url,
    )
    result, _ = await _run(plan)
    assert result.status == "ok"
    [entry] = queue_of(plan).entries()
    assert entry.error_class == "retries_exhausted"
    assert entry.attempts == 3
    assert entry.rows == 2
    assert result.steps["sink"].retries == 2


async def test_a_queue_that_cannot_be_created_fails_the_run_with_a_clear_error(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    url = fresh_postgresql
    _sql(url, "CREATE TABLE orders (id integer PRIMARY KEY, qty integer CHECK (qty > 0))")
    (tmp_path / "in.csv").write_text("id,qty\n1,5\n")
    (tmp_path / "dlq").mkdir()
    (tmp_path / "dlq" / ".staging").write_text("a file where the staging directory should be")
    plan = _plan(tmp_path, _CSV_TO_PG, URL=url)
    with pytest.raises(QuiverError, match="cannot create the dead-letter queue directory"):
        await _run(plan)
    assert _sql(url, "SELECT count(*) FROM orders") == [(0,)]


async def test_a_refused_jetstream_checkpoint_is_kept_and_the_others_commit(
    fresh_postgresql: str, js_stream: tuple[str, str], tmp_path: Path
) -> None:
    """Ten messages in checkpoints of two: the table refuses the checkpoint holding a negative
    quantity; the run goes on, commits the four others and acknowledges all ten."""
    import nats

    url = fresh_postgresql
    _sql(
        url,
        "CREATE TABLE orders (id integer PRIMARY KEY, qty integer CHECK (qty > 0), "
        "nats_subject text)",
    )
    stream, prefix = js_stream
    durable = unique("d")
    bodies = [json.dumps({"id": i, "qty": -1 if i == 4 else i + 1}).encode() for i in range(10)]
    await js_publish(f"{prefix}.in", bodies)
    yaml = """
name: telemetry
source:
  nats:
    subject: "${P}.in"
    stream: "${S}"
    durable: "${D}"
    fetch_wait: 0.2
    idle_timeout: 1.5
    commit_every: 2
    ack_wait: 5
sink: {database: {url: "${URL}", table: orders}}
engine: {retry: {max_attempts: 1}}
dlq: {path: dlq}
"""
    plan = _plan(tmp_path, yaml, P=prefix, S=stream, D=durable, URL=url)
    result, _ = await _run(plan)
    assert result.status == "ok"
    kept = queue_of(plan).entries()
    assert sum(e.rows for e in kept) == 2, [(e.rows, e.message) for e in kept]
    rows = {r["id"] for e in kept for r in queue_of(plan).read(e.id).to_pylist()}
    assert 4 in rows
    committed = {r[0] for r in _sql(url, "SELECT id FROM orders")}
    assert committed | rows == set(range(10))
    assert not committed & rows
    nc = await nats.connect("nats://127.0.0.1:4222")
    info = await nc.jetstream().consumer_info(stream, durable)
    await nc.close()
    assert info.ack_floor.stream_seq == 10  # the refused checkpoint too: the queue holds it


async def test_a_run_failing_elsewhere_leaves_no_entry_and_no_staging_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "in.csv").write_text("id,qty\n1,5\nx,6\n")
    plan = _plan(
        tmp_path,
        """
source: {csv: {path: in.csv, types: {id: int, qty: int}}}
sink: {jsonl: {path: out.jsonl}}
dlq: {path: dlq}
""",
    )
    with pytest.raises((RunFailedError, QuiverError)):
        await _run(plan)
    assert queue_of(plan).entries() == []
    assert list((tmp_path / "dlq" / ".staging").iterdir()) == []


async def test_the_mqtt_example_keeps_a_refused_checkpoint_and_replays_it(
    fresh_postgresql: str, tmp_path: Path
) -> None:
    """examples/pipelines/mqtt-dlq as its comments say: 30 readings in checkpoints of ten, one
    of 250 degrees; the table takes two checkpoints, the queue keeps the third, and a replay
    with the table fixed delivers it."""
    import asyncio
    import shutil

    from .conftest import mqtt_publish
    from .test_dlq_cli import quiver

    url = fresh_postgresql
    _sql(
        url, "CREATE TABLE temperatures (plant text, line text, celsius real CHECK (celsius < 200))"
    )
    folder = tmp_path / "mqtt-dlq"
    shutil.copytree(EXAMPLES / "mqtt-dlq", folder)
    prefix = unique("plant")
    variables = {"PREFIX": prefix, "DATABASE_URL": url}

    def engine() -> PipelineEngine:
        spec = with_source_options(
            load_pipeline(folder / "pipeline.yaml", variables, environ={}), idle_timeout=1.5
        )
        return PipelineEngine(compile_plan(spec), log=RunLog("t", "json", stream=io.StringIO()))

    await engine().run()  # the session exists from now on: nothing published is missed
    messages = [
        (f"{prefix}/lyon/line/{i % 3}/temp", b'{"celsius": %d.5}' % (250 if i == 25 else i))
        for i in range(30)
    ]
    await asyncio.to_thread(mqtt_publish, messages, 1)
    result = await engine().run()
    assert result.status == "ok"
    assert _sql(url, "SELECT count(*) FROM temperatures") == [(20,)]
    assert result.steps["sink"].dead_lettered == 10
    args = [f"--variable=PREFIX={prefix}", f"--variable=DATABASE_URL={url}"]
    listed = await asyncio.to_thread(
        quiver, "ingest", "dlq", "list", "pipeline.yaml", *args, cwd=folder
    )
    [line] = listed.stdout.splitlines()
    assert "\tsink\t10 rows\t1 attempts\t" in line  # a refused row is not retried
    _sql(url, "ALTER TABLE temperatures DROP CONSTRAINT temperatures_celsius_check")
    replay = await asyncio.to_thread(
        quiver, "ingest", "dlq", "replay", "pipeline.yaml", "--all", *args, cwd=folder
    )
    assert replay.returncode == 0, replay.stderr
    assert _sql(url, "SELECT count(*), max(celsius) FROM temperatures") == [(30, 250.5)]


async def test_retention_drops_entries_that_age_while_the_run_goes_on(tmp_path: Path) -> None:
    """An entry younger than max_age when the run starts, older before it ends: dropped by the
    run itself (counted, logged), without any new entry."""
    import pyarrow as pa

    from quiver.pipeline.dead_letters import DeadLetterQueue, Failure
    from quiver.runtime.errors import PermanentError

    yaml = """
name: aging
source: {nats: {subject: "${P}.in", idle_timeout: 4}}
sink: {jsonl: {path: out.jsonl}}
dlq: {path: dlq, max_age: 2s}
"""
    plan = _plan(tmp_path, yaml, P=unique("subj"))
    queue = DeadLetterQueue(str(tmp_path / "dlq"))
    queue.create()
    staged = queue.stage("sink", "earlier")
    staged.add(pa.record_batch({"id": [1, 2]}))
    now = time.time()
    failure = Failure.from_error(PermanentError.one("x"), 1, now, now)
    entry = queue.add(staged, failure, "jsonl", "earlier")
    out = io.StringIO()
    engine = PipelineEngine(plan, log=RunLog("t", "json", stream=out))
    await engine.run()
    assert queue.entries() == []
    assert engine.dead_letters is not None
    metrics = engine.dead_letters.metrics
    assert metrics.sample("quiver_pipeline_dlq_dropped_total", reason="max_age") == 1
    assert metrics.sample("quiver_pipeline_dlq_entries") == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    [dropped] = [e for e in events if e["event"] == "dlq"]
    assert entry.id in dropped["message"] and "older than 2s" in dropped["message"]
