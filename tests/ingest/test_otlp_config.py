"""`quiver validate` on OTLP receiver pipelines: every mistake named with its place and fix."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from quiver.runtime.errors import QuiverError
from tests.e2e.conftest import QuiverRunner, quiver
from tests.ingest.certs import make_pki
from tests.ingest.conftest import Receiver

__all__ = ["quiver"]


def validate(quiver: QuiverRunner, tmp_path: Path, text: str) -> str:
    (tmp_path / "pipeline.yaml").write_text(text)
    run = quiver("validate", "pipeline.yaml")
    assert run.code == 2, run.output
    return run.output


def test_a_receiver_without_a_listener_is_refused_with_an_example(
    quiver: QuiverRunner, tmp_path: Path
) -> None:
    output = validate(
        quiver, tmp_path, "source:\n  otlp: {}\nsink:\n  parquet: {path: out/t.parquet}\n"
    )
    assert "pipeline.yaml:2:3 source.otlp: set grpc, http or both" in output


def test_unknown_keys_and_empty_auth_are_reported_together(
    quiver: QuiverRunner, tmp_path: Path
) -> None:
    output = validate(
        quiver,
        tmp_path,
        "source:\n"
        "  otlp:\n"
        "    http: {endpont: '127.0.0.1:4318'}\n"
        "    auth: {}\n"
        "sink:\n"
        "  parquet: {path: out/t.parquet}\n",
    )
    assert "source.otlp.http.endpont: unknown key 'endpont'; did you mean 'endpoint'?" in output
    assert "source.otlp.auth: auth needs api_keys or bearer_tokens" in output
    assert "2 problems found" in output


def test_tls_files_are_read_beside_the_pipeline_file_and_must_exist(
    quiver: QuiverRunner, tmp_path: Path
) -> None:
    make_pki(tmp_path)  # server.pem: a certificate; k.pem is missing
    output = validate(
        quiver,
        tmp_path,
        "source:\n"
        "  otlp:\n"
        "    grpc: {endpoint: '127.0.0.1:4317', tls: {cert_file: server.pem, key_file: k.pem}}\n"
        "sink:\n"
        "  parquet: {path: out/t.parquet}\n",
    )
    assert f"file not found: {tmp_path / 'k.pem'}" in output
    assert "server.pem" not in output


def test_a_malformed_endpoint_is_refused(quiver: QuiverRunner, tmp_path: Path) -> None:
    output = validate(
        quiver,
        tmp_path,
        "source:\n  otlp: {http: {endpoint: 'localhost'}}\nsink:\n  parquet: {path: t.parquet}\n",
    )
    assert "'localhost' is not host:port (e.g. 127.0.0.1:4318)" in output


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_port_in_use_fails_the_run_naming_the_endpoint(
    receiver: Callable[..., Receiver], transport: str
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        endpoint = f"127.0.0.1:{busy.getsockname()[1]}"
        try:  # the run fails while starting, or right after its other port opened
            rec = receiver(**{transport: {"endpoint": endpoint}})
            assert rec.done.wait(30), "the run went on although its port is taken"
            error = rec.error
        except QuiverError as exc:
            error = exc
    assert isinstance(error, QuiverError)
    [detail] = error.details
    # the line of the endpoint option in the pipeline file
    assert re.fullmatch(
        rf".*pipeline\.yaml:\d+:\d+ source\.otlp\.{transport}\.endpoint", detail.where
    )
    assert detail.message.endswith(
        f"cannot listen on {endpoint}: Address already in use (EADDRINUSE)"
    )
    assert "choose another endpoint" in detail.fix
