"""The otlp sink against a collector that answers badly (tests/hostile_server.py): failures are
retryable exactly as the OTLP specification says (429, 502, 503, 504; UNAVAILABLE, ...), worded
as for every HTTP client of the product, Retry-After honoured up to a cap, answers read only up
to a bound; a bad endpoint is refused when the pipeline is read, naming the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from quiver.ingest.sinks.otlp import OtlpSink
from quiver.pipeline.component import RunContext
from quiver.pipeline.config import load_pipeline
from quiver.runtime.errors import ConfigError, PermanentError, QuiverError, RetryableError
from quiver.runtime.outbound_http import MAX_RETRY_AFTER
from tests.hostile_server import Hostile, hostile_server

from .certs import make_pki
from .conftest import build
from .telemetry_rows import rows_of, span_request

MIB = 1 << 20


@pytest.fixture(scope="module")
def hostile() -> Iterator[Hostile]:
    with hostile_server() as server:
        yield server


def spans() -> pa.RecordBatch:
    return rows_of("traces", span_request(3, services=1))


async def export(endpoint: str, run_ctx: RunContext, **options: Any) -> tuple[OtlpSink, list[str]]:
    logged: list[str] = []
    ctx = RunContext(run_ctx.run_id, run_ctx.base_dir, log=lambda m, level: logged.append(m))
    sink: OtlpSink = build(
        OtlpSink, {"endpoint": endpoint, "protocol": "http", "compression": "none", **options}
    )
    batch = spans()
    await sink.open(batch.schema, ctx)
    try:
        await sink.write(batch)
    finally:
        await sink.abort()
    return sink, logged


async def failure(
    endpoint: str, kind: type[QuiverError], run_ctx: RunContext, **options: Any
) -> QuiverError:
    with pytest.raises(kind) as caught:
        await export(endpoint, run_ctx, **options)
    return caught.value


@pytest.mark.parametrize(
    ("code", "kind", "fix"),
    [
        (429, RetryableError, "the server is overloaded or rate limiting"),
        (502, RetryableError, "a gateway or proxy in front of the collector"),
        (503, RetryableError, "the server is overloaded or rate limiting"),
        (504, RetryableError, "a gateway or proxy in front of the collector timed out"),
        (500, PermanentError, "the server failed while answering"),
        (408, PermanentError, "the server gave up waiting for the request"),
        (501, PermanentError, "the server does not implement this request"),
        (401, PermanentError, "check the credentials in `headers`"),
        (404, PermanentError, "check `endpoint`"),
    ],
)
async def test_statuses_follow_the_specification_with_the_shared_hints(
    hostile: Hostile, run_ctx: RunContext, code: int, kind: type[QuiverError], fix: str
) -> None:
    err = await failure(f"{hostile.url}/status/{code}", kind, run_ctx)
    assert f"HTTP {code}" in str(err) and "told to fail" in str(err)
    said = err.details[0].fix
    assert said.startswith(fix), said
    if kind is PermanentError and code >= 500:
        assert "not retried: OTLP/HTTP retries only 429, 502, 503 and 504" in said, said


async def test_retry_after_far_in_the_future_is_honoured_up_to_the_cap(
    hostile: Hostile, run_ctx: RunContext
) -> None:
    err = await failure(f"{hostile.url}/status/503/retry-after/86400", RetryableError, run_ctx)
    assert err.retry_after == MAX_RETRY_AFTER  # type: ignore[attr-defined]
    assert f"cut to {MAX_RETRY_AFTER:.0f}s" in err.details[0].fix


async def test_a_redirect_is_permanent_naming_where_it_leads(
    hostile: Hostile, run_ctx: RunContext
) -> None:
    err = await failure(f"{hostile.url}/redirect", PermanentError, run_ctx)
    assert "redirects to /redirect: set `endpoint`" in err.details[0].fix


async def test_an_accepted_export_with_an_unreadable_answer_counts_as_sent(
    hostile: Hostile, run_ctx: RunContext
) -> None:
    before = hostile.sent
    for path in ("gzip/200", "big/200", "big/200/chunked"):
        sink, logged = await export(f"{hostile.url}/{path}", run_ctx)
        assert sink.sent == 3, path
        assert any("accepted the data but its answer could not be read" in m for m in logged), (
            path,
            logged,
        )
        if path.startswith("big"):
            assert any(f"it is longer than {MIB} bytes" in m for m in logged), logged
    assert hostile.sent - before < 16 * MIB  # not 400 MB


async def test_an_answer_that_never_ends_is_cut_off_at_the_timeout(
    hostile: Hostile, run_ctx: RunContext
) -> None:
    sink, logged = await export(f"{hostile.url}/endless/200", run_ctx, timeout_seconds=0.5)
    assert sink.sent == 3 and logged
    err = await failure(f"{hostile.url}/endless/503", RetryableError, run_ctx, timeout_seconds=0.5)
    assert "HTTP 503" in str(err)


async def test_a_big_error_answer_is_quoted_not_read(hostile: Hostile, run_ctx: RunContext) -> None:
    before = hostile.sent
    err = await failure(f"{hostile.url}/big/502/chunked", RetryableError, run_ctx)
    assert "HTTP 502 Whatever: xxxx" in str(err)
    assert hostile.sent - before < 16 * MIB


async def test_no_answer_and_bytes_that_are_not_http_are_retryable(
    hostile: Hostile, run_ctx: RunContext
) -> None:
    err = await failure(f"{hostile.url}/silent", RetryableError, run_ctx, timeout_seconds=0.3)
    assert "raise `timeout_seconds`" in err.details[0].fix
    err = await failure(f"{hostile.url}/garbage", RetryableError, run_ctx)
    assert "broke the HTTP protocol" in err.details[0].fix


async def test_a_certificate_that_fails_verification_is_permanent(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    pki = make_pki(tmp_path)
    with hostile_server(pki.server_cert, pki.server_key) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        err = await failure(url, PermanentError, run_ctx)
        assert "the server's TLS certificate failed verification" in str(err)
        assert "`tls.ca_file`" in err.details[0].fix
        sink, _ = await export(url, run_ctx, tls={"ca_file": str(pki.ca)})
        assert sink.sent == 3


async def test_https_to_a_port_that_is_not_tls_is_permanent(
    hostile: Hostile, run_ctx: RunContext
) -> None:
    url = hostile.url.replace("http://", "https://")
    err = await failure(url, PermanentError, run_ctx)
    assert "the TLS handshake failed" in str(err)


# -- gRPC --------------------------------------------------------------------------------------


async def test_grpc_to_a_certificate_that_fails_verification_is_permanent(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    (tmp_path / "pki").mkdir()
    (tmp_path / "other").mkdir()
    pki = make_pki(tmp_path / "pki")
    other = make_pki(tmp_path / "other")  # a CA that did not sign the server's certificate
    with hostile_server(pki.server_cert, pki.server_key) as server:
        port = server.url.rsplit(":", 1)[1]
        sink: OtlpSink = build(
            OtlpSink,
            {
                "endpoint": f"localhost:{port}",
                "tls": {"ca_file": str(other.ca)},
                "timeout_seconds": 3,
            },
        )
        await sink.open(spans().schema, run_ctx)
        with pytest.raises(PermanentError) as caught:
            await sink.write(spans())
        await sink.abort()
    assert "TLS" in str(caught.value) and "`tls.ca_file`" in caught.value.details[0].fix


# -- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "endpoint", "said"),
    [
        ("http", "127.0.0.1:4318", "does not start with http:// or https://"),
        ("http", "http://", "has no host"),
        ("http", "http://collector:port", "is not a valid URL"),
        ("http", "ftp://collector:4318", "does not start with http:// or https://"),
        ("grpc", "collector", "is not host:port"),
        ("grpc", "collector:port", "is not host:port"),
        ("grpc", "ftp://collector:4317", "does not start with http:// or https://"),
    ],
)
def test_a_bad_endpoint_is_a_config_error_naming_the_setting(
    tmp_path: Path, protocol: str, endpoint: str, said: str
) -> None:
    (tmp_path / "pipeline.yaml").write_text(
        "source:\n  otlp: {http: {endpoint: '127.0.0.1:0'}}\n"
        f"sink:\n  otlp: {{protocol: {protocol}, endpoint: '{endpoint}'}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_pipeline(tmp_path / "pipeline.yaml")
    text = str(caught.value)
    assert "endpoint" in text and said in text, text


async def test_grpc_with_tls_to_a_plain_port_is_permanent(
    hostile: Hostile, tmp_path: Path, run_ctx: RunContext
) -> None:
    pki = make_pki(tmp_path)
    port = hostile.url.rsplit(":", 1)[1]
    sink: OtlpSink = build(
        OtlpSink,
        {"endpoint": f"localhost:{port}", "tls": {"ca_file": str(pki.ca)}, "timeout_seconds": 3},
    )
    await sink.open(spans().schema, run_ctx)
    with pytest.raises(PermanentError) as caught:
        await sink.write(spans())
    await sink.abort()
    assert "the TLS handshake failed" in caught.value.details[0].fix, str(caught.value)
