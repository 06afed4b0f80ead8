"""``quiver run`` with an OTLP receiver, as an operator runs it: SIGTERM stops accepting, and
commits everything acknowledged; after SIGKILL, what was acknowledged is in the spool and the
next run delivers it."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
import yaml

from tests.e2e.conftest import quiver_command, quiver_env
from tests.ingest.conftest import pipeline_doc, plain, wait_listening
from tests.ingest.processes import finish
from tests.ingest.sdk_clients import send_logs, send_traces
from tests.ingest.test_otlp_http import PROTOBUF, span, trace_request
from tests.pipeline.conftest import free_port


@dataclass
class Service:
    dir: Path
    grpc_port: int
    http_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def out(self) -> Path:
        return self.dir / "out" / "telemetry.parquet"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*quiver_command(), "run", "pipeline.yaml", "--quiet"],
            cwd=self.dir,
            env=quiver_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        wait_listening(self.grpc_port, 60)
        wait_listening(self.http_port, 60)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path, free_port(), free_port())
    doc = pipeline_doc(svc.grpc_port, svc.http_port, "out/telemetry.parquet")
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    yield svc
    if svc.proc is not None:
        svc.proc.kill()
        svc.proc.wait()


def stop(svc: Service, signum: int) -> tuple[int, str]:
    assert svc.proc is not None
    proc = svc.proc
    proc.send_signal(signum)
    output, _ = finish(proc, 60)
    svc.proc = None
    return proc.returncode, output.decode(errors="replace")


def test_sigterm_stops_accepting_and_commits_everything_acknowledged(service: Service) -> None:
    service.start()
    by_grpc = send_traces("grpc", service.grpc_port)
    by_http = send_traces("http", service.http_port)
    send_logs("http", service.http_port)
    code, output = stop(service, signal.SIGTERM)
    assert code == 0, output
    table = pq.read_table(service.out)
    spans = {r["span_id"] for r in plain(table).to_pylist() if r["signal"] == "traces"}
    assert spans == {s.span_id for s in [*by_grpc, *by_http]}
    assert table.num_rows == 6 + 2
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"http://127.0.0.1:{service.http_port}/v1/traces", content=b"")
    # the spool was emptied: a new run has nothing to replay
    service.out.unlink()
    service.start()
    code, output = stop(service, signal.SIGTERM)
    assert code == 0, output
    assert pq.read_table(service.out).num_rows == 0


def test_spans_acknowledged_before_sigkill_reach_the_sink_after_restart(
    service: Service,
) -> None:
    service.start()
    acknowledged = []
    for i in range(30):
        name = f"before-kill-{i}"
        body = trace_request(span(name, span_id=bytes([7] * 7 + [i + 1]))).SerializeToString()
        response = httpx.post(
            f"http://127.0.0.1:{service.http_port}/v1/traces", content=body, headers=PROTOBUF
        )
        assert response.status_code == 200
        acknowledged.append(name)
    code, _ = stop(service, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not service.out.exists()  # nothing was committed: the sink's file is not there

    service.start()
    after = send_traces("grpc", service.grpc_port)
    code, output = stop(service, signal.SIGTERM)
    assert code == 0, output
    names = [r["span_name"] for r in plain(pq.read_table(service.out)).to_pylist()]
    assert sorted(names) == sorted([*acknowledged, *[s.name for s in after]])
    assert not [
        n for n in os.listdir(service.dir / ".quiver" / "spool" / "pipeline" / "otlp") if "tmp" in n
    ]


@pytest.mark.slow
def test_every_acknowledged_span_survives_repeated_sigkills(service: Service) -> None:
    """A client streams spans while the receiver is SIGKILLed again and again (at random
    moments, mid-request included); after a last clean stop, the sink holds every span that
    was ever acknowledged."""
    rng = random.Random(13)
    acknowledged: set[str] = set()
    next_id = 0
    for _round in range(8):
        service.start()
        stop_at = time.monotonic() + rng.uniform(0.3, 1.5)
        url = f"http://127.0.0.1:{service.http_port}/v1/traces"
        with httpx.Client(timeout=5) as client:
            killer = threading.Timer(stop_at - time.monotonic(), service_kill, (service,))
            killer.start()
            try:
                while True:
                    ids = [next_id + k for k in range(200)]
                    next_id += 200
                    body = trace_request(
                        *[span(f"s{n}", span_id=(n + 1).to_bytes(8, "big")) for n in ids]
                    ).SerializeToString()
                    try:
                        response = client.post(url, content=body, headers=PROTOBUF)
                    except httpx.HTTPError:
                        break  # killed mid-request: not acknowledged
                    assert response.status_code == 200
                    acknowledged.update(f"{n + 1:016x}" for n in ids)
            finally:
                killer.join()
        assert service.proc is not None
        service.proc.wait(30)
        service.proc = None
    service.start()
    code, output = stop(service, signal.SIGTERM)
    assert code == 0, output
    written = set(pq.read_table(service.out, columns=["span_id"]).column(0).to_pylist())
    assert len(acknowledged) > 1000
    assert acknowledged <= written


def service_kill(svc: Service) -> None:
    if svc.proc is not None:
        svc.proc.send_signal(signal.SIGKILL)


def test_a_second_signal_ends_a_stopping_receiver_at_once_and_loses_nothing(
    service: Service,
) -> None:
    doc = pipeline_doc(
        service.grpc_port, service.http_port, "out/telemetry.parquet", stop_seconds=45
    )
    (service.dir / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    service.start()
    acknowledged = send_traces("http", service.http_port)
    # a request whose body never arrives holds the graceful stop (up to stop_seconds)
    with socket.create_connection(("127.0.0.1", service.http_port)) as stuck:
        stuck.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 1000\r\n\r\npartial"
        )
        time.sleep(0.3)
        assert service.proc is not None
        proc = service.proc
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert proc.poll() is None, "the first signal should wait for the request in flight"
        code, output = stop(service, signal.SIGTERM)
    assert code == 128 + signal.SIGTERM, output
    assert "no output was written" in output
    assert not service.out.exists()

    service.start()
    code, output = stop(service, signal.SIGTERM)
    assert code == 0, output
    written = plain(pq.read_table(service.out)).to_pylist()
    assert sorted(r["span_id"] for r in written) == sorted(s.span_id for s in acknowledged)
