"""API keys, bearer tokens and TLS (with and without client certificates) on both receivers,
with the SDK's exporters as the clients."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import pytest

from tests.ingest.certs import make_pki
from tests.ingest.conftest import Receiver
from tests.ingest.sdk_clients import send_traces
from tests.ingest.test_otlp_grpc import TRACES, failure
from tests.ingest.test_otlp_http import PROTOBUF, proto_status, rows_of, span, trace_request

KEY = "k-3f9a7c"
TOKEN = "t-81bd2e"


@pytest.fixture
def guarded(receiver: Callable[..., Receiver], monkeypatch: pytest.MonkeyPatch) -> Receiver:
    monkeypatch.setenv("TEST_OTLP_KEY", KEY)
    return receiver(auth={"api_keys": ["${env:TEST_OTLP_KEY}"], "bearer_tokens": [TOKEN]})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "wrong"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": "Bearer x"},
    ],
    ids=["none", "wrong-key", "not-bearer", "wrong-token"],
)
def test_http_without_valid_credentials_is_401(guarded: Receiver, headers: dict[str, str]) -> None:
    body = trace_request(span("x")).SerializeToString()
    response = httpx.post(
        f"{guarded.http_url}/v1/traces", content=body, headers={**PROTOBUF, **headers}
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "missing or wrong credentials" in proto_status(response)
    assert guarded.stop().num_rows == 0


def test_a_key_from_the_environment_or_a_bearer_token_lets_clients_in(guarded: Receiver) -> None:
    by_key = send_traces("http", guarded.http_port, service="k", headers={"x-api-key": KEY})
    by_token = send_traces(
        "grpc", guarded.grpc_port, service="t", headers=(("authorization", f"Bearer {TOKEN}"),)
    )
    table = guarded.stop()
    assert {(r["service_name"], r["span_id"]) for r in rows_of(table, "traces")} == {
        ("k", s.span_id) for s in by_key
    } | {("t", s.span_id) for s in by_token}


def test_grpc_without_valid_credentials_is_unauthenticated(guarded: Receiver) -> None:
    body = trace_request(span("x")).SerializeToString()
    for metadata in [(), (("x-api-key", "wrong"),)]:
        error = failure(guarded, TRACES, body, metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "missing or wrong credentials" in error.details()
    assert guarded.stop().num_rows == 0


def test_tls_on_both_receivers(receiver: Callable[..., Receiver], tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = {"cert_file": str(pki.server_cert), "key_file": str(pki.server_key)}
    rec = receiver(grpc={"tls": tls}, http={"tls": tls})
    trusted = ssl.create_default_context(cafile=str(pki.ca))
    body = trace_request(span("over https")).SerializeToString()
    url = f"https://localhost:{rec.http_port}/v1/traces"
    assert httpx.post(url, content=body, headers=PROTOBUF, verify=trusted).status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{rec.http_url}/v1/traces", content=body, headers=PROTOBUF)  # plain HTTP
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    sent = send_traces("grpc", rec.grpc_port, credentials=credentials)
    names = [r["span_name"] for r in rows_of(rec.stop(), "traces")]
    assert sorted(names) == sorted(["over https", *[s.name for s in sent]])


def test_client_certificates_are_required_with_a_client_ca(
    receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path)
    tls = {
        "cert_file": str(pki.server_cert),
        "key_file": str(pki.server_key),
        "client_ca_file": str(pki.ca),
    }
    rec = receiver(grpc={"tls": tls}, http={"tls": tls})
    body = trace_request(span("mutual")).SerializeToString()
    url = f"https://localhost:{rec.http_port}/v1/traces"
    anonymous = ssl.create_default_context(cafile=str(pki.ca))
    with pytest.raises(httpx.HTTPError):
        httpx.post(url, content=body, headers=PROTOBUF, verify=anonymous)
    known = ssl.create_default_context(cafile=str(pki.ca))
    known.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    assert httpx.post(url, content=body, headers=PROTOBUF, verify=known).status_code == 200
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes(),
        certificate_chain=pki.client_cert.read_bytes(),
    )
    sent = send_traces("grpc", rec.grpc_port, credentials=credentials)
    names = [r["span_name"] for r in rows_of(rec.stop(), "traces")]
    assert sorted(names) == sorted(["mutual", *[s.name for s in sent]])
