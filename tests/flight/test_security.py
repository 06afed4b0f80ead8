"""API keys (shared with HTTP), the Basic -> Bearer handshake, TLS and mutual TLS."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.flight as flight
import pytest

from quiver.config.settings import QuiverSettings
from quiver.flight import connect
from quiver.flight.server import FlightHandle
from quiver.graphql.http import GraphQLApp
from quiver.schema.ir import Schema
from tests.flight.conftest import reflect, start

KEY = "k3y-for-the-flight-tests-0123456789"
AUTH = {"api_keys": [{"name": "analyst", "key": KEY}]}


@pytest.fixture(scope="module")
def sqlite_url(chinook_sqlite: Path) -> str:
    return f"sqlite:///{chinook_sqlite.absolute()}"


@pytest.fixture(scope="module")
def schema(sqlite_url: str) -> Schema:
    return reflect(sqlite_url)


@pytest.fixture(scope="module")
def locked(sqlite_url: str, schema: Schema) -> Iterator[FlightHandle]:
    handle = start(sqlite_url, schema, auth=AUTH)
    try:
        yield handle
    finally:
        handle.stop()


def test_a_call_without_a_key_is_refused(locked: FlightHandle) -> None:
    client = flight.FlightClient(locked.location)
    with pytest.raises(flight.FlightUnauthenticatedError, match="no credentials"):
        list(client.list_flights())
    with pytest.raises(flight.FlightUnauthenticatedError, match="not valid"):
        options = flight.FlightCallOptions(headers=[(b"authorization", b"Bearer wrong")])
        client.do_get(flight.Ticket(b"export:Genre::"), options).read_all()


def test_a_bearer_key_is_accepted(locked: FlightHandle) -> None:
    with connect(locked.location, api_key=KEY) as client:
        assert client.read("export:Genre::name").num_rows > 0


def test_basic_credentials_are_traded_for_a_bearer_token(locked: FlightHandle) -> None:
    client = flight.FlightClient(locked.location)
    name, value = client.authenticate_basic_token("analyst", KEY)
    assert name == b"authorization" and value == f"Bearer {KEY}".encode()
    options = flight.FlightCallOptions(headers=[(name, value)])
    assert client.do_get(flight.Ticket(b"export:Genre::"), options).read_all().num_rows > 0


async def test_http_uses_the_same_keys(sqlite_url: str, schema: Schema) -> None:
    settings = QuiverSettings.model_validate({"database": {"url": sqlite_url}, "auth": AUTH})
    app = GraphQLApp(schema, settings)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            body = {"query": "{ genres(limit: 1) { name } }"}
            refused = await http.post("/graphql", json=body)
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert refused.headers["www-authenticate"].startswith("Bearer")
            ok = await http.post("/graphql", json=body, headers={"authorization": f"Bearer {KEY}"})
            assert ok.status_code == 200 and ok.json()["data"]["genres"]
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await app.shutdown()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for localhost and a client certificate, all signed by it."""
    d = tmp_path_factory.mktemp("certs")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    return d


def test_a_tls_round_trip(sqlite_url: str, schema: Schema, certificates: Path) -> None:
    tls = {
        "tls_cert": str(certificates / "server.pem"),
        "tls_key": str(certificates / "server.key"),
    }
    handle = start(sqlite_url, schema, flight=tls)
    try:
        assert handle.location.startswith("grpc+tls://")
        with connect(handle.location, tls_root_certs=certificates / "ca.pem") as client:
            assert client.read("export:Genre::name").num_rows > 0
        plain = handle.location.replace("grpc+tls", "grpc+tcp")
        with pytest.raises(flight.FlightUnavailableError):
            flight.FlightClient(plain).do_get(flight.Ticket(b"export:Genre::")).read_all()
    finally:
        handle.stop()


def test_mutual_tls_refuses_a_client_without_a_certificate(
    sqlite_url: str, schema: Schema, certificates: Path
) -> None:
    tls = {
        "tls_cert": str(certificates / "server.pem"),
        "tls_key": str(certificates / "server.key"),
        "tls_client_ca": str(certificates / "ca.pem"),
    }
    handle = start(sqlite_url, schema, flight=tls)
    try:
        ca = certificates / "ca.pem"
        with connect(
            handle.location,
            tls_root_certs=ca,
            cert_chain=certificates / "client.pem",
            private_key=certificates / "client.key",
        ) as client:
            assert client.read("export:Genre::name").num_rows > 0
        with (
            connect(handle.location, tls_root_certs=ca) as anonymous,
            pytest.raises(flight.FlightUnavailableError),
        ):
            anonymous.read("export:Genre::name")
    finally:
        handle.stop()
