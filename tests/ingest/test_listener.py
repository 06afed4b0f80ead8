"""A listener that cannot start says which option, file, line and endpoint, and why: TLS files
that are missing, unreadable or not PEM, and ports that cannot be bound, for the gRPC and
HTTP receivers alike, in `quiver validate` and when `quiver run` starts; never a traceback
or gRPC's own log lines."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from quiver.ingest.listener import bind_problem, problem_of, tls_file_problems
from tests.e2e.conftest import QuiverRunner, quiver, quiver_command, quiver_env
from tests.ingest.certs import make_pki
from tests.ingest.conftest import wait_listening
from tests.ingest.processes import finish
from tests.pipeline.conftest import free_port

__all__ = ["quiver"]

#: gRPC's C-core log lines: "E1206 20:07:06.256340   23162 add_port.cc:83] ..."
_GRPC_LOG = re.compile(r"^[EWID]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ \S+\.cc:\d+\]", re.M)


def tls_pipeline(transport: str, cert: str, key: str, ca: str | None = None) -> str:
    ca_line = f"        client_ca_file: {ca}\n" if ca else ""
    return (
        "source:\n"
        "  otlp:\n"
        f"    {transport}:\n"
        f"      endpoint: '127.0.0.1:{free_port()}'\n"
        "      tls:\n"
        f"        cert_file: {cert}\n"
        f"        key_file: {key}\n"
        f"{ca_line}"
        "sink:\n"
        "  parquet: {path: out/t.parquet}\n"
    )


def assert_clean(output: str) -> None:
    assert "Traceback" not in output, output
    assert not _GRPC_LOG.search(output), output


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_tls_file_that_is_not_pem_is_named_with_its_option_and_line(
    quiver: QuiverRunner, tmp_path: Path, command: str, transport: str
) -> None:
    pki = make_pki(tmp_path)
    (tmp_path / "key.txt").write_text("this is not a key\n")
    (tmp_path / "pipeline.yaml").write_text(
        tls_pipeline(transport, pki.server_cert.name, "key.txt")
    )
    run = quiver(command, "pipeline.yaml", timeout=60)
    assert run.code == 2, run.explain()
    assert (
        f"error: pipeline.yaml:7:9 source (otlp.{transport}.tls.key_file): "
        f"{tmp_path / 'key.txt'} is not PEM: no '-----BEGIN PRIVATE KEY-----' line"
    ) in run.output, run.explain()
    assert_clean(run.output)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_missing_tls_file_is_named_with_its_option_path_and_line(
    quiver: QuiverRunner, tmp_path: Path, command: str
) -> None:
    pki = make_pki(tmp_path)
    (tmp_path / "pipeline.yaml").write_text(
        tls_pipeline("grpc", "certs/server.pem", pki.server_key.name)
    )
    run = quiver(command, "pipeline.yaml", timeout=60)
    assert run.code == 2, run.explain()
    assert (
        "error: pipeline.yaml:6:9 source (otlp.grpc.tls.cert_file): file not found: "
        f"{tmp_path / 'certs' / 'server.pem'}"
    ) in run.output, run.explain()
    assert "fix: cert_file names the PEM certificate chain" in run.output
    assert_clean(run.output)


def test_tls_files_of_the_wrong_kind_or_not_matching_are_told_apart(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    other = ec.generate_private_key(ec.SECP256R1())
    stranger = tmp_path / "stranger.key"
    stranger.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    der = tmp_path / "server.der"
    der.write_bytes(b"0\x82\x01\x00rest of a DER certificate")
    cert, key, ca = str(pki.server_cert), str(pki.server_key), str(pki.ca)

    assert tls_file_problems(cert, key, ca) == []
    assert tls_file_problems(key, cert, None) == [
        ("cert_file", f"{key} holds a PEM 'PRIVATE KEY' block, not a certificate"),
        ("key_file", f"{cert} holds a PEM 'CERTIFICATE' block, not a private key"),
    ]
    assert tls_file_problems(cert, str(stranger), None) == [
        (
            "key_file",
            f"{cert} and {stranger} do not load: the private key does not belong to the "
            "certificate",
        )
    ]
    [(option, problem)] = tls_file_problems(cert, str(locked), None)
    assert option == "key_file"
    assert "encrypted with a passphrase" in problem
    [(option, problem)] = tls_file_problems(str(der), key, None)
    assert option == "cert_file"
    assert problem.endswith("(DER? convert it: openssl x509 -inform der -in FILE -out FILE.pem)")
    assert tls_file_problems(cert, key, str(tmp_path)) == [
        ("client_ca_file", f"{tmp_path} is a directory, not a PEM file")
    ]


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_port_in_use_is_one_error_line_with_the_endpoint_and_the_reason(
    quiver: QuiverRunner, tmp_path: Path, transport: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        endpoint = f"127.0.0.1:{busy.getsockname()[1]}"
        (tmp_path / "pipeline.yaml").write_text(
            f"source:\n  otlp:\n    {transport}: {{endpoint: '{endpoint}'}}\n"
            "sink:\n  parquet: {path: out/t.parquet}\n"
        )
        run = quiver("run", "pipeline.yaml", "--quiet", timeout=60)
    assert run.code == 1, run.explain()
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    name = "OTLP/gRPC" if transport == "grpc" else "OTLP/HTTP"
    assert errors == [
        f"error: pipeline.yaml:3:12 source.otlp.{transport}.endpoint: the {name} receiver"
        f" cannot listen on {endpoint}: Address already in use (EADDRINUSE)"
    ], run.explain()
    assert_clean(run.output)


def test_a_step_of_a_graph_says_where_its_option_is(quiver: QuiverRunner, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "pipeline.yaml").write_text(
            "steps:\n"
            "  receive:\n"
            "    websocket:\n"
            f"      port: {port}\n"
            "  keep: {parquet: {path: out/t.parquet}}\n"
            "connections:\n"
            "  - {from: receive, to: keep}\n"
        )
        run = quiver("run", "pipeline.yaml", "--quiet", timeout=60)
    assert run.code == 1, run.explain()
    assert (
        f"error: pipeline.yaml:4:7 steps.receive.websocket.port: the WebSocket receiver cannot"
        f" listen on 127.0.0.1:{port}"
    ) in run.stderr, run.explain()
    assert_clean(run.output)


def test_an_address_of_another_machine_is_not_called_a_port_in_use(
    quiver: QuiverRunner, tmp_path: Path
) -> None:
    endpoint = f"192.0.2.1:{free_port()}"  # TEST-NET-1: never an address of this machine
    (tmp_path / "pipeline.yaml").write_text(
        f"source:\n  otlp:\n    grpc: {{endpoint: '{endpoint}'}}\n"
        "sink:\n  parquet: {path: out/t.parquet}\n"
    )
    run = quiver("run", "pipeline.yaml", "--quiet", timeout=60)
    assert run.code == 1, run.explain()
    assert (
        f"the OTLP/gRPC receiver cannot listen on {endpoint}: Cannot assign requested address "
        "(EADDRNOTAVAIL)"
    ) in run.stderr, run.explain()
    assert "192.0.2.1 is not an address of this machine" in run.stderr
    assert_clean(run.output)


def test_bind_problems_carry_the_reason_and_its_fix() -> None:
    assert bind_problem("127.0.0.1", 0) is None
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        problem = bind_problem("127.0.0.1", port)
    assert problem is not None
    assert problem.reason == "Address already in use (EADDRINUSE)"
    assert f"sport = :{port}" in problem.fix
    unknown = bind_problem("no-such-host.invalid", 4317)
    assert unknown is not None
    assert unknown.reason.startswith("the host cannot be resolved")


def test_grpc_logs_nothing_of_its_own_while_a_receiver_runs(tmp_path: Path) -> None:
    """A client speaking plain HTTP to a TLS listener makes gRPC's C core log a failed
    handshake (`I1206 ... ssl_transport_security.cc:2563] Handshake failed ...`) by default."""
    pki = make_pki(tmp_path)
    port = free_port()
    text = tls_pipeline("grpc", pki.server_cert.name, pki.server_key.name)
    (tmp_path / "pipeline.yaml").write_text(re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", text))
    proc = subprocess.Popen(
        [*quiver_command(), "run", "pipeline.yaml", "--quiet"],
        cwd=tmp_path,
        env=quiver_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_listening(port, 60)
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port)) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            plain.settimeout(5)
            with contextlib.suppress(OSError):
                plain.recv(100)
    proc.send_signal(signal.SIGTERM)
    output, _ = finish(proc, 60)
    assert proc.returncode == 0, output.decode()
    assert_clean(output.decode())


def test_a_port_needing_privileges_says_so() -> None:
    # root may bind any port: the system's refusal is built as a process without privileges
    # gets it from bind(2)
    refused = PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    problem = problem_of(refused, "0.0.0.0", 443)
    assert problem.reason == "Permission denied (EACCES)"
    assert problem.fix.startswith("ports below 1024 need privileges: choose a port above 1023")


def test_an_error_naming_an_option_is_placed_at_that_option(tmp_path: Path) -> None:
    from quiver.pipeline.config import load_pipeline
    from quiver.pipeline.planner import compile_plan

    path = tmp_path / "p.yaml"
    path.write_text(
        "source:\n  otlp:\n    grpc: {}\n    http:\n      endpoint: 127.0.0.1:0\n"
        "sink:\n  parquet: {path: out/t.parquet}\n"
    )
    step = compile_plan(load_pipeline(str(path), environ={})).steps["source"]
    file = str(path)
    # the option written in the file: its own line
    assert step.option_where("source otlp.http.endpoint") == (
        f"{file}:5:7 source.otlp.http.endpoint"
    )
    assert step.option_where("otlp.http.endpoint") == f"{file}:5:7 source.otlp.http.endpoint"
    # left at its default: the nearest key written
    assert step.option_where("source otlp.grpc.endpoint") == (
        f"{file}:3:5 source.otlp.grpc.endpoint"
    )
    # not an option of the component, or not a path at all: as the component said it
    assert step.option_where("database") == "database"
    assert step.option_where("row 5 of the request") == "row 5 of the request"
    assert step.option_where("") == ""
