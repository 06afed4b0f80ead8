"""examples/pipelines/otlp runs as its comment says: keyed clients in, two Parquet files out."""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import pyarrow.parquet as pq

from tests.e2e.conftest import quiver_command, quiver_env
from tests.ingest.conftest import wait_listening
from tests.ingest.processes import finish
from tests.ingest.sdk_clients import send_logs, send_metrics, send_traces
from tests.pipeline.conftest import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "otlp"


def test_the_otlp_example_splits_keyed_telemetry_into_two_files(tmp_path: Path) -> None:
    folder = tmp_path / "otlp"
    shutil.copytree(EXAMPLE, folder)
    grpc_port, http_port = free_port(), free_port()
    env = quiver_env(
        {
            "OTLP_API_KEY": "k-example",
            "OTLP_GRPC_PORT": str(grpc_port),
            "OTLP_HTTP_PORT": str(http_port),
        }
    )
    proc = subprocess.Popen(
        [*quiver_command(), "run", "pipeline.yaml", "--quiet"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(grpc_port, 60)
        wait_listening(http_port, 60)
        key = {"x-api-key": "k-example"}
        spans = send_traces("grpc", grpc_port, headers=tuple(key.items()))
        send_metrics("http", http_port, headers=key)
        send_logs("http", http_port, headers=key)
        proc.send_signal(signal.SIGINT)
        output, _ = finish(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output.decode()
    written = pq.read_table(folder / "out" / "spans.parquet")
    assert sorted(written.column("span_id").to_pylist()) == sorted(s.span_id for s in spans)
    rest = pq.read_table(folder / "out" / "metrics_and_logs.parquet")
    assert sorted(rest.column("signal").to_pylist()) == ["logs"] * 2 + ["metrics"] * 3
