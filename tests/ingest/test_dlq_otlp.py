"""An OTLP receiver (``quiver run`` in a process of its own) whose sink refuses every
checkpoint: the run goes on, each checkpoint becomes a dead-letter entry, the spool is emptied,
and once the sink works ``quiver ingest dlq replay`` writes every span."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow.dataset as ds
import pytest
import yaml

from tests.e2e.conftest import quiver_command, quiver_env
from tests.ingest.conftest import pipeline_doc
from tests.ingest.processes import stopped
from tests.ingest.test_otlp_http import PROTOBUF, span, trace_request
from tests.ingest.test_otlp_process import Service, stop
from tests.pipeline.conftest import free_port


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path, free_port(), free_port())
    doc = pipeline_doc(svc.grpc_port, svc.http_port, "out/telemetry/", commit_every=1)
    doc["engine"] = {"retry": {"max_attempts": 2, "initial_delay": 0.01}}
    doc["dlq"] = {"path": "dlq", "max_age": "1d", "max_bytes": "64MiB"}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    yield svc
    if svc.proc is not None:
        svc.proc.kill()
        svc.proc.wait()


def entries(svc: Service) -> list[Path]:
    return sorted((svc.dir / "dlq").glob("*.json"))


def test_refused_checkpoints_are_kept_and_replayed_once_the_sink_works(service: Service) -> None:
    service.start()
    # a file where the output directory should be, once the run has started (a run is refused
    # before it starts when a part of an output's path is a file)
    shutil.rmtree(service.dir / "out", ignore_errors=True)
    (service.dir / "out").write_text("a file where the output directory should be")
    url = f"http://127.0.0.1:{service.http_port}/v1/traces"
    for i in range(3):
        request = trace_request(span(f"op{i}", span_id=bytes([i + 1]) * 8))
        answer = httpx.post(url, content=request.SerializeToString(), headers=PROTOBUF)
        assert answer.status_code == 200
    deadline = time.monotonic() + 30
    while len(entries(service)) < 3:
        assert service.proc is not None
        assert service.proc.poll() is None, stopped(service.proc)
        assert time.monotonic() < deadline, f"{len(entries(service))} entries"
        time.sleep(0.05)
    code, output = stop(service, signal.SIGTERM)
    assert code == 0, output
    assert "dead-letter" in output

    # the spool was emptied: a new run, the output directory back, has nothing to hand on
    # and adds no entry
    (service.dir / "out").unlink()
    service.start()
    code, output = stop(service, signal.SIGTERM)
    assert code == 0, output
    assert len(entries(service)) == 3

    replay = subprocess.run(
        [*quiver_command(), "ingest", "dlq", "replay", "pipeline.yaml", "--all"],
        cwd=service.dir,
        env=quiver_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert replay.returncode == 0, replay.stderr
    assert "3 delivered, 0 failed" in replay.stderr
    table = ds.dataset(service.dir / "out" / "telemetry", format="parquet").to_table()
    assert sorted(table.column("span_id").to_pylist()) == [
        bytes([i + 1]).hex() * 8 for i in range(3)
    ]
    assert entries(service) == []
