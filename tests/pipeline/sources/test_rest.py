"""The rest source and sink against a real HTTP server (starlette + uvicorn on a free port)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.rest import RestSink
from quiver.pipeline.sources.rest import JsonPath, RestSource
from quiver.runtime.delivery import RetriesExhaustedError
from quiver.runtime.errors import PermanentError, RetryableError
from quiver.runtime.outbound_http import retry_after_seconds

from ..conftest import build, read_all, serve_app, write_all

ITEMS = [{"id": i, "name": f"item{i}", "price": i * 1.5} for i in range(1, 24)]
TOKEN = "s3cret"
FAST_RETRY = {"max_attempts": 4, "initial_delay": 0.01, "max_delay": 0.05}


class State:
    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.received: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.keys: list[str] = []
        self.times: list[float] = []
        self.fail_ingest: list[int] = []  # statuses to answer the next ingest requests with
        self.fail_calls: set[int] = set()  # ingest request numbers answered with 503

    def count(self, name: str) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.calls[name]


STATE = State()


async def paged(request: Request) -> Response:
    page = int(request.query_params.get("page", "1"))
    size = int(request.query_params.get("per_page", "10"))
    STATE.times.append(time.monotonic())
    return JSONResponse({"data": {"items": ITEMS[(page - 1) * size : page * size]}})


async def offset(request: Request) -> Response:
    start, limit = int(request.query_params["offset"]), int(request.query_params["limit"])
    return JSONResponse(ITEMS[start : start + limit])


async def cursor(request: Request) -> Response:
    at = int(request.query_params.get("cursor", "0"))
    nxt = at + 7 if at + 7 < len(ITEMS) else None
    return JSONResponse({"results": ITEMS[at : at + 7], "meta": {"next": nxt and str(nxt)}})


async def linked(request: Request) -> Response:
    page = int(request.query_params.get("p", "1"))
    headers = {}
    if page * 10 < len(ITEMS):
        headers["Link"] = f'</linked?p={page + 1}>; rel="next", </linked?p=1>; rel="first"'
    return JSONResponse(ITEMS[(page - 1) * 10 : page * 10], headers=headers)


async def drf(request: Request) -> Response:
    page = int(request.query_params.get("page", "1"))
    more = page * 10 < len(ITEMS)
    nxt = f"{request.url.path}?page={page + 1}&kind={request.query_params['kind']}"
    return JSONResponse(
        {"next": nxt if more else None, "results": ITEMS[(page - 1) * 10 : page * 10]}
    )


async def flaky(request: Request) -> Response:
    if STATE.count("flaky") <= 2:
        return JSONResponse({"error": "busy"}, status_code=503)
    return JSONResponse(ITEMS[:3])


async def secured(request: Request) -> Response:
    if request.headers.get("authorization") != f"Bearer {TOKEN}":
        return JSONResponse({"error": "bad token"}, status_code=401)
    return JSONResponse(ITEMS[:2])


async def limited(request: Request) -> Response:
    return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "1"})


async def busy_once(request: Request) -> Response:
    STATE.times.append(time.monotonic())
    if STATE.count("busy_once") == 1:
        return JSONResponse({"error": "wait"}, status_code=429, headers={"Retry-After": "0.4"})
    return JSONResponse(ITEMS[:1])


async def drifting(request: Request) -> Response:
    return JSONResponse([{"id": 1}, {"id": 2, "surprise": True}])


async def twice(request: Request) -> Response:
    body = b'[{"id": 1}, {"id": 2, "id": 3}, {"id": 4, "tags": [{"a": 1, "a": 2}]}, {"id": 5}]'
    return Response(body, media_type="application/json")


async def twice_outside(request: Request) -> Response:
    body = b'{"total": 1, "total": 2, "items": [{"id": 1}]}'
    return Response(body, media_type="application/json")


async def ingest(request: Request) -> Response:
    body = await request.body()
    if STATE.count("ingest") in STATE.fail_calls:
        return Response("try later", status_code=503)
    if STATE.fail_ingest:
        return Response("overloaded", status_code=STATE.fail_ingest.pop(0))
    STATE.bodies.append(body)
    STATE.keys.append(request.headers.get("idempotency-key", ""))
    if request.headers["content-type"] == "application/x-ndjson":
        STATE.received.extend(orjson.loads(line) for line in body.splitlines() if line)
    else:
        doc = orjson.loads(body)
        STATE.received.extend(doc["records"] if isinstance(doc, dict) else doc)
    return JSONResponse({"ok": True}, status_code=201)


APP = Starlette(
    routes=[
        Route("/paged", paged),
        Route("/offset", offset),
        Route("/cursor", cursor),
        Route("/linked", linked),
        Route("/flaky", flaky),
        Route("/drf", drf),
        Route("/secured", secured),
        Route("/limited", limited),
        Route("/drifting", drifting),
        Route("/twice", twice),
        Route("/twice-outside", twice_outside),
        Route("/busy-once", busy_once),
        Route("/ingest", ingest, methods=["POST", "PUT"]),
    ]
)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_app(APP) as url:
        yield url


@pytest.fixture
def api(server: str) -> Iterator[str]:
    global STATE
    STATE = State()
    yield server


async def ids(options: dict[str, Any], ctx: RunContext) -> list[int]:
    table = await read_all(build(RestSource, options), ctx)
    return [int(v) for v in table.column("id").to_pylist()]


async def test_page_pagination_reads_every_page_until_a_short_one(
    api: str, run_ctx: RunContext
) -> None:
    options = {
        "url": f"{api}/paged",
        "records": "data.items",
        "pagination": {"page": {"param": "page", "size_param": "per_page", "size": 10}},
        "batch_rows": 8,
    }
    source = build(RestSource, options)
    batches = [b async for b in source.batches(run_ctx)]
    assert [b.num_rows for b in batches] == [8, 8, 7]
    table = pa.Table.from_batches(batches)
    assert table.column("id").to_pylist() == list(range(1, 24))
    assert table.column(LINE_COLUMN).to_pylist() == list(range(1, 24))
    assert table.schema.field("price").type == pa.float64()


async def test_offset_cursor_and_link_pagination(api: str, run_ctx: RunContext) -> None:
    everything = list(range(1, 24))
    offset = {"url": f"{api}/offset", "pagination": {"offset": {"limit": 5}}}
    assert await ids(offset, run_ctx) == everything
    cursor = {
        "url": f"{api}/cursor",
        "records": "$.results[*]",
        "pagination": {"cursor": {"path": "meta.next", "param": "cursor"}},
    }
    assert await ids(cursor, run_ctx) == everything
    link = {"url": f"{api}/linked", "pagination": {"link": {}}}
    assert await ids(link, run_ctx) == everything
    next_url = {
        "url": f"{api}/drf",
        "params": {"kind": "all"},
        "records": "results",
        "pagination": {"next_url": {"path": "next"}},
    }
    assert await ids(next_url, run_ctx) == everything


async def test_max_pages_stops_early(api: str, run_ctx: RunContext) -> None:
    options = {
        "url": f"{api}/paged",
        "records": "data.items",
        "pagination": {"page": {"size_param": "per_page", "size": 5}},
        "max_pages": 2,
    }
    assert await ids(options, run_ctx) == list(range(1, 11))


async def test_5xx_is_retried_with_backoff_then_succeeds(api: str, run_ctx: RunContext) -> None:
    options = {"url": f"{api}/flaky", "retry": FAST_RETRY}
    assert await ids(options, run_ctx) == [1, 2, 3]
    assert STATE.calls["flaky"] == 3
    retries = [m for level, m in run_ctx.logs if level == "warning"]  # type: ignore[attr-defined]
    assert len(retries) == 2 and "503" in retries[0]


async def test_429_exhausts_retries_with_a_clear_error(api: str, run_ctx: RunContext) -> None:
    options = {"url": f"{api}/limited", "retry": {**FAST_RETRY, "max_attempts": 2}}
    with pytest.raises(RetriesExhaustedError) as err:
        await read_all(build(RestSource, options), run_ctx)
    assert "429" in str(err.value) and "Retry-After: 1" in str(err.value)


async def test_retry_after_holds_the_next_attempt_back(api: str, run_ctx: RunContext) -> None:
    options = {"url": f"{api}/busy-once", "retry": FAST_RETRY}
    assert await ids(options, run_ctx) == [1]
    assert len(STATE.times) == 2 and STATE.times[1] - STATE.times[0] >= 0.35


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


async def test_auth_header_comes_from_config_and_401_is_permanent(
    api: str, run_ctx: RunContext
) -> None:
    good = {"url": f"{api}/secured", "auth": {"bearer": TOKEN}}
    assert await ids(good, run_ctx) == [1, 2]
    bad = {"url": f"{api}/secured", "auth": {"bearer": "wrong"}, "retry": FAST_RETRY}
    with pytest.raises(PermanentError) as err:
        await read_all(build(RestSource, bad), run_ctx)
    assert "401" in str(err.value) and "credentials" in err.value.details[0].fix


async def test_rate_limit_spaces_requests(api: str, run_ctx: RunContext) -> None:
    options = {
        "url": f"{api}/paged",
        "records": "data.items",
        "pagination": {"page": {"size_param": "per_page", "size": 5}},
        "rate_limit": 20,
    }
    started = time.monotonic()
    assert len(await ids(options, run_ctx)) == 23
    assert len(STATE.times) == 5  # so 4 waits of at least 1/20 s each
    assert time.monotonic() - started >= 0.2


async def test_field_missing_from_the_schema_rejects_the_record_with_its_number(
    api: str, run_ctx: RunContext
) -> None:
    source = build(RestSource, {"url": f"{api}/drifting", "batch_rows": 1})
    table = await read_all(source, run_ctx)
    assert table.column("id").to_pylist() == [1]
    [error] = source.take_errors()
    assert error.line == 2 and error.column == "surprise"
    assert "record 2 has field(s) ['surprise']" in error.reason
    declared = {
        "url": f"{api}/drifting",
        "batch_rows": 1,
        "schema": {"id": "int", "surprise": "bool"},
    }
    table = await read_all(build(RestSource, declared), run_ctx)
    assert table.column("surprise").to_pylist() == [None, True]


async def test_a_record_naming_a_key_twice_is_rejected_and_the_others_flow(
    api: str, run_ctx: RunContext
) -> None:
    source = build(RestSource, {"url": f"{api}/twice"})
    table = await read_all(source, run_ctx)
    assert table.column("id").to_pylist() == [1, 5]
    errors = source.take_errors()
    assert [(e.line, e.column) for e in errors] == [(2, "id"), (3, None)]
    assert "record 3: key 'a' appears twice" in errors[1].reason
    assert "record 2: key 'id' appears twice in one JSON object" in errors[0].reason


async def test_a_page_naming_a_key_twice_outside_its_records_fails_the_run(
    api: str, run_ctx: RunContext
) -> None:
    source = build(RestSource, {"url": f"{api}/twice-outside", "records": "items"})
    with pytest.raises(PermanentError, match="key 'total' appears twice"):
        await read_all(source, run_ctx)


async def test_unreachable_server_is_retryable(run_ctx: RunContext) -> None:
    from ..conftest import free_port

    options = {"url": f"http://127.0.0.1:{free_port()}/x", "retry": FAST_RETRY}
    with pytest.raises(RetriesExhaustedError) as err:
        await read_all(build(RestSource, options), run_ctx)
    assert isinstance(err.value.last_error, RetryableError)
    assert "all 4 attempts failed" in str(err.value) and "ConnectError" in str(err.value)


def rows(n: int) -> pa.RecordBatch:
    return pa.record_batch(
        {"id": list(range(1, n + 1)), LINE_COLUMN: pa.array(range(1, n + 1), pa.int64())}
    )


async def test_sink_posts_rows_in_requests_of_batch_rows(api: str, run_ctx: RunContext) -> None:
    sink = build(RestSink, {"url": f"{api}/ingest", "batch_rows": 4, "wrap": "records"})
    await write_all(sink, [rows(10)], run_ctx)
    assert STATE.received == [{"id": i} for i in range(1, 11)]
    assert len(STATE.bodies) == 3
    assert STATE.keys == [f"{run_ctx.run_id}-{i}" for i in (1, 2, 3)]


async def test_sink_jsonl_body(api: str, run_ctx: RunContext) -> None:
    sink = build(RestSink, {"url": f"{api}/ingest", "format": "jsonl", "method": "PUT"})
    await write_all(sink, [rows(3)], run_ctx)
    assert STATE.bodies == [b'{"id":1}\n{"id":2}\n{"id":3}\n']


async def test_retried_write_resumes_after_the_requests_already_accepted(
    api: str, run_ctx: RunContext
) -> None:
    sink = build(RestSink, {"url": f"{api}/ingest", "batch_rows": 4})
    batch = rows(10)
    await sink.open(batch.schema, run_ctx)
    STATE.fail_calls = {2}  # the server answers 503 to the second request
    with pytest.raises(RetryableError, match="503"):
        await sink.write(batch)
    assert [r["id"] for r in STATE.received] == [1, 2, 3, 4]
    await sink.write(batch)  # the engine retries the same batch
    await sink.commit()
    assert [r["id"] for r in STATE.received] == list(range(1, 11))


async def test_a_later_batch_reusing_a_written_batchs_id_is_sent_whole(
    api: str, run_ctx: RunContext
) -> None:
    # CPython hands a freed batch's id() to the next object: progress must not survive a
    # write that succeeded, or the next batch would be taken for a retry and skipped.
    sink = build(RestSink, {"url": f"{api}/ingest", "batch_rows": 4})
    batch = rows(6)
    await sink.open(batch.schema, run_ctx)
    await sink.write(batch)
    await sink.write(batch)  # a new write of an object with the same id()
    await sink.commit()
    assert [r["id"] for r in STATE.received] == list(range(1, 7)) * 2


async def test_sink_4xx_is_permanent(api: str, run_ctx: RunContext) -> None:
    STATE.fail_ingest = [422]
    sink = build(RestSink, {"url": f"{api}/ingest"})
    with pytest.raises(PermanentError, match="HTTP 422"):
        await write_all(sink, [rows(2)], run_ctx)


def test_json_paths() -> None:
    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}, "x y": 3}
    assert JsonPath("$.a.b[1].c").find(doc) == 2
    assert JsonPath("a.b[*]").find(doc) == [{"c": 1}, {"c": 2}]
    assert JsonPath("$['x y']").find(doc) == 3
    assert JsonPath("a.missing.c").find(doc) is None
    assert JsonPath("$").find(doc) is doc
    with pytest.raises(ValueError, match="character 2"):
        JsonPath("a..b")
