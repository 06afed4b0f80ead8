"""`quiver run` of a receiver says, at the default verbosity, where each receiver listens
(endpoint, protocol, TLS or not), as the Collector does at start, and when stopped, how much
it received; `--quiet` says neither, and JSON logs carry them as info events."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from quiver.pipeline.runlog import RunLog
from tests.e2e.conftest import quiver_command, quiver_env
from tests.ingest.certs import make_pki
from tests.ingest.conftest import wait_listening
from tests.ingest.processes import finish
from tests.pipeline.conftest import free_port

LOG = {
    "resourceLogs": [
        {"scopeLogs": [{"logRecords": [{"body": {"stringValue": "a"}}, {"body": {}}]}]}
    ]
}


def start(folder: Path, text: str, *args: str) -> subprocess.Popen[str]:
    (folder / "pipeline.yaml").write_text(text)
    return subprocess.Popen(
        [*quiver_command(), "run", "pipeline.yaml", *args],
        cwd=folder,
        env=quiver_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc, 60)
    assert proc.returncode == 0, err
    return err


def test_each_receiver_says_where_it_listens_and_what_it_received(tmp_path: Path) -> None:
    grpc_port, http_port = free_port(), free_port()
    proc = start(
        tmp_path,
        "source:\n"
        "  otlp:\n"
        f"    grpc: {{endpoint: '127.0.0.1:{grpc_port}'}}\n"
        f"    http: {{endpoint: '127.0.0.1:{http_port}'}}\n"
        "sink: {parquet: {path: out/t.parquet}}\n",
    )
    wait_listening(grpc_port, 60)
    wait_listening(http_port, 60)
    sent = httpx.post(f"http://127.0.0.1:{http_port}/v1/logs", json=LOG, timeout=10)
    assert sent.status_code == 200
    lines = stop(proc).splitlines()
    assert lines[:3] == [
        f"OTLP/gRPC receiver listening on 127.0.0.1:{grpc_port} (plaintext)",
        f"OTLP/HTTP receiver listening on http://127.0.0.1:{http_port} (plaintext)",
        "OTLP receivers stopped: received 2 items (spans, data points, log records) in 1 request",
    ], "\n".join(lines)
    assert "2 rows read, 2 written" in lines[-1]


def test_a_tls_listener_says_so(tmp_path: Path) -> None:
    make_pki(tmp_path)
    port = free_port()
    proc = start(
        tmp_path,
        "source:\n"
        "  otlp:\n"
        "    http:\n"
        f"      endpoint: '127.0.0.1:{port}'\n"
        f"      tls: {{cert_file: server.pem, key_file: server.key, client_ca_file: ca.pem}}\n"
        "sink: {parquet: {path: out/t.parquet}}\n",
    )
    wait_listening(port, 60)
    err = stop(proc)
    assert (
        f"OTLP/HTTP receiver listening on https://127.0.0.1:{port} "
        "(TLS, client certificates required)\n"
    ) in err, err
    assert "received 0 items (spans, data points, log records) in 0 requests" in err


def test_quiet_runs_say_nothing_and_json_logs_carry_the_lines_as_info(tmp_path: Path) -> None:
    port = free_port()
    text = f"source: {{otlp: {{http: {{endpoint: '127.0.0.1:{port}'}}}}}}\n"
    text += "sink: {parquet: {path: out/t.parquet}}\n"
    proc = start(tmp_path, text, "--quiet")
    wait_listening(port, 60)
    assert stop(proc) == ""
    proc = start(tmp_path, text, "--log-format", "json")
    wait_listening(port, 60)
    events = [json.loads(line) for line in stop(proc).splitlines()]
    listening = [e for e in events if "listening on" in e["message"]]
    assert [(e["level"], e["message"]) for e in listening] == [
        ("info", f"OTLP/HTTP receiver listening on http://127.0.0.1:{port} (plaintext)")
    ]


def test_malformed_http_requests_leave_the_terminal_alone(tmp_path: Path) -> None:
    """uvicorn logs "Invalid HTTP request received." for each; the run log has it at debug."""
    port = free_port()
    text = f"source: {{otlp: {{http: {{endpoint: '127.0.0.1:{port}'}}}}}}\n"
    text += "sink: {parquet: {path: out/t.parquet}}\n"
    for debug in (False, True):
        proc = start(tmp_path, text, *(["--debug"] if debug else []))
        wait_listening(port, 60)
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"garbage\r\n\r\n")
            client.settimeout(10)
            with contextlib.suppress(OSError):
                client.recv(100)
        err = stop(proc)
        if debug:
            assert "OTLP/HTTP receiver: Invalid HTTP request received." in err, err
        else:
            assert "Invalid HTTP request" not in err, err


def test_a_client_leaving_in_the_middle_of_its_body_is_no_warning(tmp_path: Path) -> None:
    """A client gone before its body ended is the client's doing, not a failure inside the
    receiver: the run log has no warning about it, and the receiver goes on."""
    port = free_port()
    text = f"source: {{otlp: {{http: {{endpoint: '127.0.0.1:{port}'}}}}}}\n"
    text += "sink: {parquet: {path: out/t.parquet}}\n"
    proc = start(tmp_path, text)
    wait_listening(port, 60)
    head = f"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    head += "Content-Type: application/x-protobuf\r\n"
    for framing, part in (
        ("Content-Length: 1000\r\n\r\n", b"\x0a" * 10),
        ("Transfer-Encoding: chunked\r\n\r\n", b"5\r\nabc"),
    ):
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall((head + framing).encode() + part)
            time.sleep(0.3)  # the body has begun to arrive
    reply = httpx.post(
        f"http://127.0.0.1:{port}/v1/logs",
        content=b"{}",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert reply.status_code == 200
    err = stop(proc)
    assert "warning" not in err and "Exception in ASGI application" not in err, err


def test_lines_go_through_a_progress_display_that_holds_stderr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """rich's progress display replaces sys.stderr while it runs, to print lines above
    itself: a line written to the stderr of before would be drawn across the bar."""
    log = RunLog("r", "text", level="notice")
    held = io.StringIO()
    monkeypatch.setattr(sys, "stderr", held)
    log("OTLP/HTTP receiver listening on http://127.0.0.1:4318 (plaintext)", "notice")
    log("not shown by default", "info")
    assert held.getvalue() == "OTLP/HTTP receiver listening on http://127.0.0.1:4318 (plaintext)\n"
