"""The rest source against a server that answers badly: pages nested too deeply to read, the
stdlib's NaN and Infinity, server errors, broken compression, redirect loops, TLS failures and
pages too large to hold (starlette + uvicorn on a free port, as the other REST tests)."""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from quiver.pipeline.component import RunContext
from quiver.pipeline.json_text import MAX_JSON_DEPTH
from quiver.pipeline.sinks.rest import RestSink
from quiver.pipeline.sources.rest import RestSource
from quiver.runtime.delivery import RetriesExhaustedError
from quiver.runtime.errors import PermanentError, RetryableError

from ..conftest import build, free_port, read_all, serve_app, write_all
from ..test_connector_pipelines import run

FAST_RETRY = {"max_attempts": 3, "initial_delay": 0.01, "max_delay": 0.02}
CALLS: dict[str, int] = {}

BODIES: dict[str, bytes] = {
    "deep": b"[" * 100_000 + b"]" * 100_000,
    # the page's object, its list of records and a record: three levels of the limit
    "just-deep-enough": b'{"items": [{"v": '
    + b"[" * (MAX_JSON_DEPTH - 3)
    + b"]" * (MAX_JSON_DEPTH - 3)
    + b"}]}",
    "one-too-deep": b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    # brackets inside strings are text, not nesting
    "bracket-text": b'[{"a": "' + b"[" * 1000 + b'\\"' + b"{" * 1000 + b'"}]',
    "deep-inside-a-record": b'{"items": [{"id": 1, "v": ' + b"[" * 300 + b"]" * 300 + b"}]}",
    "nan": b'[{"a": NaN}]',
    "infinity": b'[{"a": 1},\n {"a": Infinity}]',
    "minus-infinity": b'{"total": -Infinity, "items": [{"a": 1}]}',
    "nan-as-text": b'[{"a": "NaN", "b": "x NaN y"}]',
    "nan-and-twice": b'[{"a": 1, "a": 2}, {"b": NaN}]',
}


def count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


async def body(request: Request) -> Response:
    name = request.path_params["name"]
    count(name)
    return Response(BODIES[name], media_type="application/json")


async def status(request: Request) -> Response:
    code = int(request.path_params["code"])
    count(f"status-{code}")
    return Response(b'{"error": "no"}', status_code=code, media_type="application/json")


async def not_gzip(request: Request) -> Response:
    count("not-gzip")
    headers = {"Content-Encoding": "gzip"}
    return Response(b'[{"a": 1}]', media_type="application/json", headers=headers)


async def loop(request: Request) -> Response:
    count("loop")
    step = int(request.query_params.get("step", "0"))
    return RedirectResponse(f"/loop?step={(step + 1) % 3}", status_code=302)


async def ingest(request: Request) -> Response:
    await request.body()
    return Response(b"{}", status_code=201)


MIB = 1 << 20
CHUNKS = 64  # a page of 64 MiB, made as it is sent


def big_page(name: str, first: bytes = b"[") -> Iterator[bytes]:
    yield first
    for _ in range(CHUNKS):
        count(name)
        yield b" " * MIB
    yield b"]"


async def big(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "declared":  # sent whole with its Content-Length
        return Response(b"[" + b" " * (2 * MIB) + b"]", media_type="application/json")
    if name == "gzip":  # 1 KiB on the wire, 8 MiB once decompressed
        headers = {"Content-Encoding": "gzip"}
        packed = gzip.compress(b"[" + b" " * (8 * MIB) + b"]")
        return Response(packed, media_type="application/json", headers=headers)
    if name == "exactly":
        return Response(b'[{"a": 1}]' + b" " * (MIB - 10), media_type="application/json")
    code = 500 if name == "error" else 200
    first = b"trouble: " if name == "error" else b"["
    return StreamingResponse(big_page(name, first), code, media_type="application/json")


APP = Starlette(
    routes=[
        Route("/body/{name}", body),
        Route("/status/{code}", status, methods=["GET", "POST"]),
        Route("/not-gzip", not_gzip),
        Route("/loop", loop),
        Route("/ingest", ingest, methods=["POST"]),
        Route("/big/{name}", big, methods=["GET", "POST"]),
    ]
)


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    with serve_app(APP) as url:
        yield url


async def failure(options: dict[str, Any], ctx: RunContext) -> PermanentError:
    with pytest.raises(PermanentError) as err:
        await read_all(build(RestSource, {"retry": FAST_RETRY, **options}), ctx)
    return err.value


# -- nesting -----------------------------------------------------------------------------------


async def test_a_page_nested_deeper_than_the_limit_fails_naming_the_url_and_the_limit(
    api: str, run_ctx: RunContext
) -> None:
    err = await failure({"url": f"{api}/body/deep"}, run_ctx)
    said = str(err)
    assert "page 1 nests objects and arrays 100000 levels deep" in said, said
    assert f"more than the {MAX_JSON_DEPTH} the source reads" in said, said
    assert f"{api}/body/deep" in said, said
    assert CALLS["deep"] == 1  # not retried: the same page would come back


async def test_a_too_deep_page_ends_a_run_with_the_clear_error(api: str, tmp_path: Path) -> None:
    yaml = """
source: {rest: {url: "${API}/body/deep"}}
sink: {jsonl: {path: out/q.jsonl}}
"""
    with pytest.raises(PermanentError) as err:  # not an unexpected error in the component
        await run(tmp_path, yaml, API=api)
    said = str(err.value)
    assert "100000 levels deep" in said and "RecursionError" not in said, said
    assert "unexpected error" not in said, said


async def test_the_nesting_limit_is_the_jsonl_readers(api: str, run_ctx: RunContext) -> None:
    table = await read_all(
        build(RestSource, {"url": f"{api}/body/just-deep-enough", "records": "items"}), run_ctx
    )
    assert table.num_rows == 1
    err = await failure({"url": f"{api}/body/one-too-deep"}, run_ctx)
    assert f"{MAX_JSON_DEPTH + 1} levels deep" in str(err)


async def test_brackets_inside_strings_are_not_nesting(api: str, run_ctx: RunContext) -> None:
    table = await read_all(build(RestSource, {"url": f"{api}/body/bracket-text"}), run_ctx)
    assert table.column("a").to_pylist() == ["[" * 1000 + '"' + "{" * 1000]


async def test_a_page_with_one_record_nested_too_deeply_fails_whole(
    api: str, run_ctx: RunContext
) -> None:
    err = await failure({"url": f"{api}/body/deep-inside-a-record", "records": "items"}, run_ctx)
    assert "page 1 nests objects and arrays 303 levels deep" in str(err)


# -- NaN and infinities ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "token", "at"),
    [
        ("nan", "NaN", "line 1 column 8"),
        ("infinity", "Infinity", "line 2 column 8"),
        ("minus-infinity", "-Infinity", "line 1 column 11"),
        ("nan-and-twice", "NaN", "line 1 column 26"),
    ],
)
async def test_nan_and_infinities_are_not_json_and_fail_the_page_naming_token_and_place(
    api: str, run_ctx: RunContext, name: str, token: str, at: str
) -> None:
    err = await failure({"url": f"{api}/body/{name}", "records": "$"}, run_ctx)
    said = str(err)
    assert f"page 1 is not JSON: {token} at {at} is not a JSON value" in said, said
    assert f"{api}/body/{name}" in said, said
    assert CALLS[name] == 1


async def test_the_string_forms_of_nan_are_still_read(api: str, run_ctx: RunContext) -> None:
    schema = {"a": "float", "b": "str"}
    options = {"url": f"{api}/body/nan-as-text", "schema": schema}
    [row] = (await read_all(build(RestSource, options), run_ctx)).to_pylist()
    assert math.isnan(row["a"]) and row["b"] == "x NaN y"


# -- server errors -----------------------------------------------------------------------------


async def retried(options: dict[str, Any], ctx: RunContext) -> RetryableError:
    with pytest.raises(RetriesExhaustedError) as err:
        await read_all(build(RestSource, {"retry": FAST_RETRY, **options}), ctx)
    last = err.value.last_error
    assert isinstance(last, RetryableError)
    return last


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (500, "the server failed while answering"),
        (502, "a gateway or proxy in front of the API got no valid answer from it"),
        (504, "a gateway or proxy in front of the API timed out waiting for it"),
        (507, "the server reported an error of its own"),
        (503, "the server is overloaded or rate limiting"),
        (429, "the server is overloaded or rate limiting"),
    ],
)
async def test_server_errors_are_retried_with_a_hint_for_their_status(
    api: str, run_ctx: RunContext, code: int, hint: str
) -> None:
    last = await retried({"url": f"{api}/status/{code}"}, run_ctx)
    assert f"HTTP {code}" in str(last)
    fix = last.details[0].fix
    assert fix.startswith(hint), fix
    assert ("rate_limit" in fix) == (code in (429, 503)), fix
    assert CALLS[f"status-{code}"] >= FAST_RETRY["max_attempts"]


@pytest.mark.parametrize(
    ("code", "hint"),
    [
        (501, "the server does not implement this request"),
        (505, "the server does not speak this HTTP version"),
        (405, "the endpoint does not accept this method"),
    ],
)
async def test_statuses_a_retry_cannot_change_fail_at_once(
    api: str, run_ctx: RunContext, code: int, hint: str
) -> None:
    err = await failure({"url": f"{api}/status/{code}"}, run_ctx)
    assert err.details[0].fix.startswith(hint), err.details[0].fix
    assert CALLS[f"status-{code}"] == 1


# -- answers and connections a retry cannot mend ------------------------------------------------


async def test_a_body_that_is_not_its_content_encoding_fails_at_once(
    api: str, run_ctx: RunContext
) -> None:
    err = await failure({"url": f"{api}/not-gzip"}, run_ctx)
    said, fix = str(err), err.details[0].fix
    assert "not encoded as its Content-Encoding header says" in said, said
    assert "compression is broken" in fix and "Accept-Encoding: identity" in fix, fix
    assert "reachable" not in said
    assert CALLS["not-gzip"] == 1


async def test_a_redirect_loop_fails_at_once_naming_where_it_leads(
    api: str, run_ctx: RunContext
) -> None:
    err = await failure({"url": f"{api}/loop"}, run_ctx)
    said = str(err)
    assert "the URL redirects in a loop or more than 20 times" in said, said
    assert f"the last one pointed to {api}/loop?step=" in said, said
    assert "reachable" not in said
    assert CALLS["loop"] == 21  # one request and 20 redirects, once


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("ftp://127.0.0.1/x", "UnsupportedProtocol"),
        ("127.0.0.1/x", "UnsupportedProtocol"),
        ("http://[::1/x", "InvalidURL"),
    ],
)
async def test_a_url_that_cannot_be_requested_fails_at_once(
    run_ctx: RunContext, url: str, said: str
) -> None:
    err = await failure({"url": url}, run_ctx)
    assert said in str(err) and "http:// or https://" in err.details[0].fix, str(err)


async def test_a_header_that_http_cannot_carry_fails_at_once(api: str, run_ctx: RunContext) -> None:
    err = await failure({"url": f"{api}/body/nan-as-text", "headers": {"X-A": "1\r\n"}}, run_ctx)
    assert "check `headers` and `auth`" in err.details[0].fix, str(err)


async def test_https_to_a_plain_http_port_fails_at_once(api: str, run_ctx: RunContext) -> None:
    err = await failure({"url": api.replace("http://", "https://") + "/body/nan"}, run_ctx)
    assert "the TLS handshake failed" in str(err), str(err)
    assert "https:// to a port that serves plain HTTP" in err.details[0].fix


async def test_a_refused_connection_is_still_retried(run_ctx: RunContext) -> None:
    last = await retried({"url": f"http://127.0.0.1:{free_port()}/x"}, run_ctx)
    assert "ConnectError" in str(last) and "reachable" in last.details[0].fix


@pytest.fixture(scope="module")
def tls_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app over https, with a self-signed certificate no one trusts."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with serve_app(
        APP, ssl_certfile=str(folder / "cert.pem"), ssl_keyfile=str(folder / "key.pem")
    ) as url:
        yield url


async def test_a_certificate_that_fails_verification_fails_at_once_saying_so(
    tls_api: str, run_ctx: RunContext
) -> None:
    err = await failure({"url": f"{tls_api}/body/nan-as-text"}, run_ctx)
    said = str(err)
    assert "the server's TLS certificate failed verification: self-signed certificate" in said
    assert "fails every retry" in err.details[0].fix and "SSL_CERT_FILE" in err.details[0].fix


async def test_the_sink_sorts_failed_requests_the_same_way(api: str, run_ctx: RunContext) -> None:
    sink = build(RestSink, {"url": f"{api}/ingest".replace("http://", "https://")})
    batch = pa.record_batch({"id": [1]})
    with pytest.raises(PermanentError, match="the TLS handshake failed"):
        await write_all(sink, [batch], run_ctx)
    sink = build(RestSink, {"url": f"{api}/status/502"})
    with pytest.raises(RetryableError) as err:
        await write_all(sink, [batch], run_ctx)
    assert "a gateway or proxy" in err.value.details[0].fix


# -- pages too large to hold -------------------------------------------------------------------


async def test_a_page_larger_than_max_page_bytes_fails_while_it_streams_in(
    api: str, run_ctx: RunContext
) -> None:
    err = await failure({"url": f"{api}/big/streamed", "max_page_bytes": MIB}, run_ctx)
    said = str(err)
    assert f"the response body is larger than `max_page_bytes` ({MIB} bytes)" in said, said
    assert f"{api}/big/streamed" in said, said
    assert "raise `max_page_bytes`" in err.details[0].fix
    # the client stopped reading: the server made a few MiB of the 64 before it noticed
    assert CALLS["streamed"] < CHUNKS // 2, CALLS["streamed"]


async def test_a_declared_length_past_the_limit_fails_before_the_body_is_read(
    api: str, run_ctx: RunContext
) -> None:
    err = await failure({"url": f"{api}/big/declared", "max_page_bytes": MIB}, run_ctx)
    assert f"(its Content-Length is {2 * MIB + 2})" in str(err), str(err)


async def test_the_limit_counts_the_decompressed_body(api: str, run_ctx: RunContext) -> None:
    err = await failure({"url": f"{api}/big/gzip", "max_page_bytes": MIB}, run_ctx)
    assert "larger than `max_page_bytes`" in str(err), str(err)


async def test_a_page_of_exactly_max_page_bytes_is_read(api: str, run_ctx: RunContext) -> None:
    source = build(RestSource, {"url": f"{api}/big/exactly", "max_page_bytes": MIB})
    assert (await read_all(source, run_ctx)).column("a").to_pylist() == [1]


def test_max_page_bytes_is_at_least_one_and_defaults_to_256_mib() -> None:
    assert build(RestSource, {"url": "http://x"}).cfg.max_page_bytes == 256 * MIB
    with pytest.raises(ValidationError, match="max_page_bytes"):
        build(RestSource, {"url": "http://x", "max_page_bytes": 0})


async def test_an_error_answer_is_read_only_for_the_start_it_quotes(
    api: str, run_ctx: RunContext
) -> None:
    last = await retried({"url": f"{api}/big/error"}, run_ctx)
    assert "HTTP 500 Internal Server Error: trouble:" in str(last), str(last)
    assert CALLS["error"] < CHUNKS // 2, CALLS["error"]


async def test_the_sink_does_not_hold_a_huge_answer(api: str, run_ctx: RunContext) -> None:
    sink = build(RestSink, {"url": f"{api}/big/answer"})
    await write_all(sink, [pa.record_batch({"id": [1]})], run_ctx)
    assert CALLS["answer"] < CHUNKS // 2, CALLS["answer"]
