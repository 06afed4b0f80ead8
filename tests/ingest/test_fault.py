"""Fault injection (slow, run by hand): a raw OTLP/gRPC client streams a million spans into
``quiver run`` while the process is SIGKILLed ten times and started again; every span the
receiver acknowledged must reach the Parquet sink.

    .venv/bin/pytest -q -n 0 -m slow tests/ingest/test_fault.py -s

The run commits in checkpoints (``commit_seconds``), so kills land before, during and after
checkpoint commits as well as mid-request. The client sends each request until it is
acknowledged: a request that failed because the process was killed is sent again to the next
run, as an OTLP exporter retries. Spans may reach the sink twice (at-least-once: a kill between
a checkpoint's publication and the spool's commit), never zero times.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import grpc
import pyarrow.dataset as ds
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.e2e.conftest import quiver_command, quiver_env
from tests.ingest.conftest import pipeline_doc, wait_listening
from tests.pipeline.conftest import free_port

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS = 1_000_000
PER_REQUEST = 1_000
KILLS = 10


def request_body(number: int) -> bytes:
    """Request ``number``: spans ``number * PER_REQUEST + 1`` ... as their span ids."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "fault"
    scope = rs.scope_spans.add()
    t0 = 1_765_000_000_000_000_000
    first = number * PER_REQUEST
    scope.spans.extend(
        Span(
            trace_id=(n // 16 + 1).to_bytes(16, "big"),
            span_id=(n + 1).to_bytes(8, "big"),
            name="op",
            kind=Span.SpanKind.SPAN_KIND_SERVER,
            start_time_unix_nano=t0 + n,
            end_time_unix_nano=t0 + n + 1000,
        )
        for n in range(first, first + PER_REQUEST)
    )
    return cast(bytes, request.SerializeToString())


class Process:
    """``quiver run`` in ``folder``, started again after each kill."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder, self.port = folder, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*quiver_command(), "run", "pipeline.yaml", "--quiet"],
            cwd=self.folder,
            env=quiver_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, 60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(300)


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    grpc_port = free_port()
    doc = pipeline_doc(
        grpc_port,
        free_port(),
        "out/spans/",
        commit_seconds=2,
        grpc={"max_message_bytes": 16 << 20},
    )
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    p = Process(tmp_path, grpc_port)
    yield p
    if p.proc is not None and p.proc.poll() is None:
        p.proc.kill()
        p.proc.wait()


@pytest.mark.slow
def test_a_million_spans_survive_ten_sigkills(process: Process) -> None:
    rng = random.Random(13)
    requests = SPANS // PER_REQUEST
    acknowledged = 0  # requests 0 .. acknowledged-1 were answered OK
    started = time.monotonic()
    process.start()
    killer: threading.Timer | None = None

    def arm() -> threading.Timer:
        timer = threading.Timer(rng.uniform(1.0, 6.0), process.kill)
        timer.start()
        return timer

    killer = arm()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{process.port}",
        options=[
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500),
        ],
    )
    export = channel.unary_unary(TRACES)
    body = request_body(0)
    retries = 0
    while acknowledged < requests:
        try:
            export(body, timeout=10, wait_for_ready=True)
        except grpc.RpcError:
            retries += 1  # killed (or busy): send it again, to the next run if need be
            proc = process.proc
            assert proc is not None
            if proc.poll() is None:
                time.sleep(0.05)
                continue
            if killer is not None:
                killer.join()  # it may still be waiting for the killed process
            if proc.returncode != -signal.SIGKILL:
                pytest.fail(f"quiver run ended by itself (exit {proc.returncode})")
            process.start()
            killer = arm() if process.kills < KILLS else None
            continue
        acknowledged += 1
        if acknowledged < requests:
            body = request_body(acknowledged)
    if killer is not None:
        killer.cancel()
        killer.join()
        if process.proc is not None and process.proc.poll() is not None:
            process.start()  # it was killed after the last answer
    channel.close()
    while process.kills < KILLS:  # the stream ended first: kill and restart the idle rest
        process.kill()
        process.start()
    assert process.stop() == 0
    seconds = time.monotonic() - started

    table = ds.dataset(process.folder / "out" / "spans", format="parquet").to_table(
        columns=["span_id"]
    )
    written = set(table.column("span_id").to_pylist())
    missing = [n for n in range(1, SPANS + 1) if f"{n:016x}" not in written]
    print(
        f"\n{SPANS:,} spans acknowledged in {seconds:.0f} s, {process.kills} SIGKILLs, "
        f"{retries} failed sends retried; {table.num_rows:,} rows written "
        f"({table.num_rows - len(written):,} duplicates), {len(missing)} missing"
    )
    assert process.kills == KILLS
    assert not missing, f"{len(missing)} acknowledged spans lost, e.g. {missing[:5]}"
