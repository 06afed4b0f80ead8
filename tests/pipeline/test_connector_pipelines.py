"""Connectors inside whole pipelines: YAML in, engine run, data out, as ``quiver run`` does."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine, RunResult
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog

from .conftest import ScratchBucket, ScratchDatabase, ScratchQueue, serve_app

ORDERS = "id,customer,total\n1,ann,10.50\n2,bob,7.25\n3,cid,99.00\n"


async def run(folder: Path, yaml: str, **variables: str) -> RunResult:
    (folder / "pipeline.yaml").write_text(yaml)
    spec = load_pipeline(folder / "pipeline.yaml", variables, environ={})
    engine = PipelineEngine(compile_plan(spec), log=RunLog("t", "json", stream=io.StringIO()))
    return await engine.run()


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


async def test_csv_into_a_table_then_a_query_out_to_csv(
    test_db: ScratchDatabase, tmp_path: Path
) -> None:
    (tmp_path / "orders.csv").write_text(ORDERS)
    table = test_db.table("orders")
    load = f"""
source: {{csv: {{path: orders.csv, types: {{id: int, total: "decimal(8,2)"}}}}}}
sink: {{database: {{url: "${{DB}}", table: {table}, mode: upsert, keys: [id]}}}}
"""
    result = await run(tmp_path, load, DB=test_db.url)
    assert result.rows_written == 3
    (tmp_path / "orders.csv").write_text("id,customer,total\n2,bob,8.00\n4,dan,1.00\n")
    await run(tmp_path, load, DB=test_db.url)  # upsert: 2 updated, 4 inserted

    export = f"""
source:
  database: {{url: "${{DB}}", query: "select id, customer, total from {table} order by id"}}
processors:
  - sql: {{query: "select id, upper(customer) as customer, total from input"}}
sink: {{csv: {{path: out/orders.csv}}}}
"""
    await run(tmp_path, export, DB=test_db.url)
    rows = read_csv(tmp_path / "out" / "orders.csv")
    assert [(r["id"], r["customer"]) for r in rows] == [
        ("1", "ANN"),
        ("2", "BOB"),
        ("3", "CID"),
        ("4", "DAN"),
    ]
    assert float(rows[1]["total"]) == 8.0


async def test_a_failed_run_leaves_the_table_as_it_was(
    test_db: ScratchDatabase, tmp_path: Path
) -> None:
    (tmp_path / "orders.csv").write_text(ORDERS)
    table = test_db.table("orders")
    yaml = f"""
source: {{csv: {{path: orders.csv, types: {{id: int}}, batch_rows: 1}}}}
processors:  # the third row fails after two batches reached the sink
  - sql:
      query: "select id, customer, cast(case when id = 3 then 'x' else '1' end as int) as n
              from input"
sink: {{database: {{url: "${{DB}}", table: {table}, mode: replace}}}}
"""
    await test_db.query(f"CREATE TABLE {table} (id INTEGER, customer VARCHAR(10))")
    await test_db.query(f"INSERT INTO {table} VALUES (42, 'kept')")
    with pytest.raises(Exception, match=r"(?i)conver|cast"):  # 'x' is not an integer
        await run(tmp_path, yaml, DB=test_db.url)
    assert await test_db.query(f"SELECT id, customer FROM {table}") == [(42, "kept")]


async def test_incremental_export_writes_only_new_rows_each_run(
    test_db: ScratchDatabase, tmp_path: Path
) -> None:
    table = test_db.table("events")
    await test_db.query(f"CREATE TABLE {table} (id INTEGER, what VARCHAR(10))")
    await test_db.query(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')")
    yaml = f"""
source:
  database:
    url: "${{DB}}"
    table: {table}
    incremental: {{column: id, state: state/events.json}}
sink: {{jsonl: {{path: "out/${{N}}.jsonl"}}}}
"""
    first = await run(tmp_path, yaml, DB=test_db.url, N="1")
    await test_db.query(f"INSERT INTO {table} VALUES (3, 'c')")
    second = await run(tmp_path, yaml, DB=test_db.url, N="2")
    assert (first.rows_written, second.rows_written) == (2, 1)
    assert orjson.loads((tmp_path / "out" / "2.jsonl").read_text())["what"] == "c"


async def test_queue_messages_are_acknowledged_only_when_the_run_commits(
    rabbit_queue: ScratchQueue, tmp_path: Path
) -> None:
    await rabbit_queue.publish(*(orjson.dumps({"id": i, "v": i * 2}) for i in range(1, 6)))
    failing = """
source: {rabbitmq: {queue: "${Q}", idle_timeout: 0.5, batch_seconds: 0.2}}
processors:
  - sql: {query: "select id, v, cast('x' || v as integer) as broken from input"}
sink: {jsonl: {path: out/messages.jsonl}}
"""
    with pytest.raises(Exception):  # noqa: B017 - the cast fails inside DuckDB
        await run(tmp_path, failing, Q=rabbit_queue.name)
    assert await rabbit_queue.depth() == 5  # handed back: nothing lost
    assert not (tmp_path / "out" / "messages.jsonl").exists()

    working = failing.replace(", cast('x' || v as integer) as broken", "")
    result = await run(tmp_path, working, Q=rabbit_queue.name)
    assert result.rows_written == 5
    lines = (tmp_path / "out" / "messages.jsonl").read_text().splitlines()
    assert [orjson.loads(line)["v"] for line in lines] == [2, 4, 6, 8, 10]
    assert await rabbit_queue.depth() == 0


async def test_dry_run_takes_no_message_from_the_queue(
    rabbit_queue: ScratchQueue, tmp_path: Path
) -> None:
    await rabbit_queue.publish(b'{"id": 1}', b'{"id": 2}')
    yaml = """
source: {rabbitmq: {queue: "${Q}", idle_timeout: 0.5, batch_seconds: 0.2}}
sink: {jsonl: {path: out/m.jsonl}}
"""
    (tmp_path / "pipeline.yaml").write_text(yaml)
    spec = load_pipeline(tmp_path / "pipeline.yaml", {"Q": rabbit_queue.name}, environ={})
    await PipelineEngine(
        compile_plan(spec), log=RunLog("t", "json", stream=io.StringIO()), dry_run=10
    ).run()
    assert await rabbit_queue.depth() == 2


PEOPLE = [{"id": i, "email": f"p{i}@example.com"} for i in range(1, 8)]


async def api_people(request: Request) -> Response:
    if request.headers.get("authorization") != "Bearer t0ken":
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    offset = int(request.query_params["offset"])
    limit = int(request.query_params["limit"])
    return JSONResponse({"people": PEOPLE[offset : offset + limit]})


RECEIVED: list[dict[str, object]] = []


async def api_ingest(request: Request) -> Response:
    RECEIVED.extend(orjson.loads(await request.body()))
    return Response(status_code=204)


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    app = Starlette(
        routes=[Route("/people", api_people), Route("/ingest", api_ingest, methods=["POST"])]
    )
    with serve_app(app) as url:
        yield url


async def test_rest_api_to_parquet_and_back_to_an_api(api: str, tmp_path: Path) -> None:
    pull = """
source:
  rest:
    url: "${API}/people"
    auth: {bearer: "${API_TOKEN}"}
    records: people
    pagination: {offset: {limit: 3}}
sink: {parquet: {path: out/people.parquet}}
"""
    await run(tmp_path, pull, API=api, API_TOKEN="t0ken")
    table = pq.read_table(tmp_path / "out" / "people.parquet")
    assert table.column("id").to_pylist() == list(range(1, 8))

    RECEIVED.clear()
    push = """
source: {parquet: {path: out/people.parquet}}
sink: {rest: {url: "${API}/ingest", batch_rows: 2}}
"""
    await run(tmp_path, push, API=api)
    assert RECEIVED == PEOPLE


async def test_csv_to_s3_and_back(s3_bucket: ScratchBucket, tmp_path: Path) -> None:
    (tmp_path / "orders.csv").write_text(ORDERS)
    creds = (
        f'bucket: {s3_bucket.name}, endpoint_url: "{s3_bucket.options["endpoint_url"]}", '
        "access_key_id: test, secret_access_key: test, region: us-east-1"
    )
    up = f"""
source: {{csv: {{path: orders.csv}}}}
sink: {{s3: {{{creds}, key: exports/orders.csv.gz, format: csv}}}}
"""
    await run(tmp_path, up)
    assert s3_bucket.keys() == ["exports/orders.csv.gz"]
    down = f"""
source: {{s3: {{{creds}, prefix: exports/, format: {{csv: {{types: {{id: int}}}}}}}}}}
sink: {{parquet: {{path: out/orders.parquet}}}}
"""
    await run(tmp_path, down)
    rows = pq.read_table(tmp_path / "out" / "orders.parquet").to_pylist()
    assert [r["id"] for r in rows] == [1, 2, 3] and rows[2]["customer"] == "cid"
