"""The otlp sink forwarding telemetry into a second Quiver OTLP receiver (gRPC and HTTP), the
OpenTelemetry SDK -> Quiver -> Quiver chain, and the specification's retryable and permanent
answers (against small collectors of the test answering what the test says)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import pytest_asyncio
import yaml

from quiver.ingest.otlp.export import retry_status
from quiver.ingest.sinks.otlp import OtlpSink
from quiver.pipeline.component import RunContext
from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan
from quiver.runtime.delivery import Delivery, RetryPolicy
from quiver.runtime.errors import ConfigError, PermanentError, RetryableError
from quiver.runtime.outbound_http import MAX_RETRY_AFTER

from ..pipeline.conftest import write_all
from .conftest import Receiver, build, free_port, plain, wait_listening
from .sdk_clients import Transport, send_traces
from .telemetry_rows import example_rows, rows_of, span_request


def endpoint(rec: Receiver, protocol: str) -> str:
    return f"127.0.0.1:{rec.grpc_port}" if protocol == "grpc" else rec.http_url


@pytest.mark.parametrize(
    ("protocol", "encoding"), [("grpc", "protobuf"), ("http", "protobuf"), ("http", "json")]
)
async def test_every_item_reaches_the_next_collector(
    protocol: str, encoding: str, receiver: Callable[..., Receiver], run_ctx: RunContext
) -> None:
    rec = receiver()
    examples = example_rows()
    spans = rows_of("traces", span_request(5_000, services=5))
    sink: OtlpSink = build(
        OtlpSink,
        {
            "endpoint": endpoint(rec, protocol),
            "protocol": protocol,
            "encoding": encoding,
            "rows_per_request": 700,
        },
    )
    await write_all(sink, [examples, spans], run_ctx, schema=examples.schema)
    assert sink.sent == examples.num_rows + 5_000 and sink.rejected == 0
    table = await asyncio.to_thread(rec.stop)
    got_examples = table.filter(pc.equal(table.column("service_name"), "my.service"))
    assert plain(got_examples).to_pylist() == plain(pa.table(examples)).to_pylist()
    forwarded = table.filter(pc.starts_with(table.column("service_name"), "svc-"))
    assert sorted(forwarded.column("span_id").to_pylist()) == sorted(
        spans.column("span_id").to_pylist()
    )


def run_pipeline(folder: Path, doc: dict[str, Any]) -> tuple[PipelineEngine, threading.Thread]:
    folder.mkdir()
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    engine = PipelineEngine(compile_plan(load_pipeline(folder / "pipeline.yaml")))
    loop: list[asyncio.AbstractEventLoop] = []
    errors: list[BaseException] = []

    def run() -> None:
        async def main() -> None:
            loop.append(asyncio.get_running_loop())
            await engine.run()

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.loops = loop  # type: ignore[attr-defined]
    thread.errors = errors  # type: ignore[attr-defined]
    return engine, thread


def stop_pipeline(engine: PipelineEngine, thread: threading.Thread) -> None:
    thread.loops[0].call_soon_threadsafe(engine.drain)  # type: ignore[attr-defined]
    thread.join(60)
    assert not thread.is_alive(), "the forwarding run did not finish"
    assert not thread.errors, thread.errors  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("protocol", "commit_every"), [("grpc", None), ("http", None), ("grpc", 1)]
)
def test_sdk_spans_travel_through_a_forwarding_quiver(
    protocol: Transport, commit_every: int | None, receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    """OpenTelemetry SDK -> Quiver (otlp receiver, otlp sink) -> Quiver (otlp receiver, parquet);
    with ``commit_every: 1`` the forwarding run commits (and reconnects) after each request."""
    last = receiver()
    grpc_port, http_port = free_port(), free_port()
    doc = {
        "source": {
            "otlp": {
                "grpc": {"endpoint": f"127.0.0.1:{grpc_port}"},
                "http": {"endpoint": f"127.0.0.1:{http_port}"},
                **({"commit_every": commit_every} if commit_every else {}),
            }
        },
        "sink": {"otlp": {"endpoint": endpoint(last, protocol), "protocol": protocol}},
    }
    engine, thread = run_pipeline(tmp_path / "forward", doc)
    wait_listening(grpc_port)
    wait_listening(http_port)
    sent = send_traces(protocol, grpc_port if protocol == "grpc" else http_port)
    stop_pipeline(engine, thread)
    table = last.stop()
    assert sorted(table.column("span_id").to_pylist()) == sorted(s.span_id for s in sent)
    assert set(table.column("service_name").to_pylist()) == {"checkout"}


@pytest.mark.parametrize("protocol", ["grpc", "http"])
async def test_forwarding_over_tls_with_a_bearer_token(
    protocol: str, receiver: Callable[..., Receiver], run_ctx: RunContext, tmp_path: Path
) -> None:
    from .certs import make_pki

    pki = make_pki(tmp_path)
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    rec = receiver(grpc={"tls": tls}, http={"tls": tls}, auth={"bearer_tokens": ["s3cret"]})
    spans = rows_of("traces", span_request(50, services=1))
    target = (
        f"localhost:{rec.grpc_port}" if protocol == "grpc" else f"https://localhost:{rec.http_port}"
    )
    options = {"endpoint": target, "protocol": protocol, "tls": {"ca_file": str(pki.ca)}}

    refused: OtlpSink = build(OtlpSink, {**options, "headers": {"authorization": "Bearer x"}})
    with pytest.raises(PermanentError, match=r"UNAUTHENTICATED|401"):
        await write_all(refused, [spans], run_ctx)

    sink: OtlpSink = build(OtlpSink, {**options, "headers": {"authorization": "Bearer s3cret"}})
    await write_all(sink, [spans], run_ctx)
    table = await asyncio.to_thread(rec.stop)
    assert sorted(table.column("span_id").to_pylist()) == sorted(
        spans.column("span_id").to_pylist()
    )


async def test_items_the_collector_rejects_are_counted_and_not_sent_again(
    receiver: Callable[..., Receiver], run_ctx: RunContext
) -> None:
    rec = receiver()
    spans = rows_of("traces", span_request(5, services=1))
    bad_ids = spans.column("span_id").to_pylist()
    bad_ids[2] = "abcd"  # 2 bytes: the receiver rejects this span (partial_success)
    spans = spans.set_column(spans.schema.get_field_index("span_id"), "span_id", pa.array(bad_ids))
    logged: list[str] = []
    ctx = RunContext(run_ctx.run_id, run_ctx.base_dir, log=lambda m, level: logged.append(m))
    sink: OtlpSink = build(OtlpSink, {"endpoint": f"127.0.0.1:{rec.grpc_port}"})
    await write_all(sink, [spans], ctx)
    assert (sink.sent, sink.rejected) == (4, 1)
    assert any("rejected 1 of 5 traces items" in m and "span_id" in m for m in logged)
    assert (await asyncio.to_thread(rec.stop)).num_rows == 4


def test_rows_without_a_signal_are_refused_when_the_sink_opens(run_ctx: RunContext) -> None:
    sink: OtlpSink = build(OtlpSink, {"endpoint": "127.0.0.1:1"})
    with pytest.raises(ConfigError, match="no `signal` column"):
        asyncio.run(sink.open(pa.schema([("a", pa.int64())]), run_ctx))


# ----------------------------------------------------------------------------- answers


class Answer:
    """What the fake HTTP collector answers: status (or ``statuses``, one per call), headers,
    body; ``paths`` records the paths called."""

    status = 200
    statuses: ClassVar[list[int]] = []
    headers: ClassVar[dict[str, str]] = {}
    body = b""
    paths: ClassVar[list[str]] = []


@pytest.fixture
def http_collector() -> Iterator[tuple[str, type[Answer]]]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            Answer.paths.append(self.path)
            self.send_response(Answer.statuses.pop(0) if Answer.statuses else Answer.status)
            for key, value in Answer.headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(Answer.body)))
            self.end_headers()
            self.wfile.write(Answer.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Answer.paths, Answer.statuses = [], []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", Answer
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "after"),
    [
        (429, {"Retry-After": "7"}, True, 7.0),
        (503, {}, True, None),
        (502, {}, True, None),
        (400, {}, False, None),
        (401, {}, False, None),
        (404, {}, False, None),
    ],
)
async def test_http_answers_are_classified_as_the_specification_says(
    status: int,
    headers: dict[str, str],
    retryable: bool,
    after: float | None,
    http_collector: tuple[str, type[Answer]],
    run_ctx: RunContext,
) -> None:
    url, answer = http_collector
    answer.status, answer.headers, answer.body = status, headers, b"nope"
    sink: OtlpSink = build(OtlpSink, {"endpoint": url, "protocol": "http"})
    await sink.open(example_rows().schema, run_ctx)
    with pytest.raises(RetryableError if retryable else PermanentError) as caught:
        await sink.write(example_rows())
    await sink.abort()
    assert f"{status}" in str(caught.value)
    if retryable:
        assert caught.value.retry_after == after  # type: ignore[attr-defined]


async def test_a_retried_write_sends_only_what_was_not_accepted(
    http_collector: tuple[str, type[Answer]], run_ctx: RunContext
) -> None:
    url, answer = http_collector
    answer.status, answer.headers, answer.body = 200, {}, b""
    answer.statuses = [200, 503]  # traces accepted, metrics refused for now, then all 200
    sink: OtlpSink = build(OtlpSink, {"endpoint": url, "protocol": "http"})
    batch = example_rows()  # three requests: traces, metrics, logs
    await sink.open(batch.schema, run_ctx)
    with pytest.raises(RetryableError):
        await sink.write(batch)
    await sink.write(batch)  # the engine retrying the same batch
    assert answer.paths == ["/v1/traces", "/v1/metrics", "/v1/metrics", "/v1/logs"]
    await sink.write(batch)  # a new write (of equal rows) after success sends everything
    assert answer.paths[4:] == ["/v1/traces", "/v1/metrics", "/v1/logs"]
    await sink.commit()


class GrpcAnswer:
    code: Any = None
    retry_after: float | None = None


@pytest_asyncio.fixture(loop_scope="function")
async def grpc_collector() -> Any:
    import grpc
    import grpc.aio

    async def handle(request: bytes, context: Any) -> bytes:
        metadata: tuple[tuple[str, bytes], ...] = ()
        if GrpcAnswer.retry_after is not None:
            status = retry_status(GrpcAnswer.code.value[0], "busy", GrpcAnswer.retry_after)
            metadata = (("grpc-status-details-bin", status.SerializeToString()),)
        await context.abort(GrpcAnswer.code, "told to fail", metadata)
        return b""

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(handle)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "opentelemetry.proto.collector.trace.v1.TraceService", {"Export": handler}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


@pytest.mark.parametrize(
    ("code", "retry_after", "retryable"),
    [
        ("UNAVAILABLE", None, True),
        ("UNAVAILABLE", 2.5, True),
        ("RESOURCE_EXHAUSTED", 1.5, True),
        ("RESOURCE_EXHAUSTED", None, False),
        ("INVALID_ARGUMENT", None, False),
        ("UNAUTHENTICATED", None, False),
        ("DEADLINE_EXCEEDED", None, True),
    ],
)
async def test_grpc_codes_are_classified_as_the_specification_says(
    code: str, retry_after: float | None, retryable: bool, grpc_collector: str, run_ctx: RunContext
) -> None:
    import grpc

    GrpcAnswer.code, GrpcAnswer.retry_after = grpc.StatusCode[code], retry_after
    spans = rows_of("traces", span_request(3, services=1))
    sink: OtlpSink = build(OtlpSink, {"endpoint": grpc_collector})
    await sink.open(spans.schema, run_ctx)
    with pytest.raises(RetryableError if retryable else PermanentError) as caught:
        await sink.write(spans)
    await sink.abort()
    assert code in str(caught.value)
    if retryable:
        assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]


async def test_a_grpc_retry_hint_far_in_the_future_is_cut_to_the_cap(
    grpc_collector: str, run_ctx: RunContext
) -> None:
    import grpc

    GrpcAnswer.code, GrpcAnswer.retry_after = grpc.StatusCode.UNAVAILABLE, 86_400.0
    spans = rows_of("traces", span_request(3, services=1))
    sink: OtlpSink = build(OtlpSink, {"endpoint": grpc_collector})
    await sink.open(spans.schema, run_ctx)
    with pytest.raises(RetryableError) as caught:
        await sink.write(spans)
    await sink.abort()
    assert caught.value.retry_after == MAX_RETRY_AFTER
    assert "it asked to wait 86400.0s, cut to 300s" in caught.value.details[0].fix


async def test_the_next_attempt_waits_at_least_the_servers_hint() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    calls = 0

    async def op() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            error = RetryableError.one("busy")
            error.retry_after = 4.0  # type: ignore[attr-defined]
            raise error
        return "ok"

    delivery = Delivery(RetryPolicy(initial_delay=0.01), sleep=sleep)
    assert await delivery.call(op) == "ok"
    assert slept == [4.0]
