"""An OTLP receiver committing in checkpoints (``commit_every`` / ``commit_seconds``): output
appears while it runs, and a SIGKILL after a checkpoint loses nothing acknowledged and writes
nothing committed a second time."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.dataset as ds
import pytest
import yaml

from tests.ingest.conftest import pipeline_doc
from tests.ingest.processes import stopped
from tests.ingest.sdk_clients import send_traces
from tests.ingest.test_otlp_http import PROTOBUF, span, trace_request
from tests.ingest.test_otlp_process import Service, stop
from tests.pipeline.conftest import free_port


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path, free_port(), free_port())
    yield svc
    if svc.proc is not None:
        svc.proc.kill()
        svc.proc.wait()


def configure(svc: Service, sink: dict[str, Any], **options: Any) -> None:
    doc = pipeline_doc(svc.grpc_port, svc.http_port, "out/telemetry/", **options)
    doc["sink"]["parquet"] |= sink
    (svc.dir / "pipeline.yaml").write_text(yaml.safe_dump(doc))


def files(svc: Service) -> list[Path]:
    return sorted((svc.dir / "out" / "telemetry").rglob("*.parquet"))


def span_ids(svc: Service) -> list[str]:
    if not files(svc):
        return []
    table = ds.dataset(svc.dir / "out" / "telemetry", format="parquet").to_table()
    return sorted(table.column("span_id").to_pylist())


def wait_for(svc: Service, count: int) -> None:
    """Until the committed output holds ``count`` spans, the receiver running all along."""
    deadline = time.monotonic() + 30
    while len(span_ids(svc)) < count:
        assert svc.proc is not None
        assert svc.proc.poll() is None, stopped(svc.proc)
        assert time.monotonic() < deadline, f"{len(span_ids(svc))} spans committed"
        time.sleep(0.05)


def test_checkpoints_commit_while_running_and_a_kill_repeats_nothing(service: Service) -> None:
    configure(
        service, {"partition_by": ["service_name"]}, commit_every=3
    )  # three export requests (one span each)
    service.start()
    first = send_traces("grpc", service.grpc_port)
    wait_for(service, 3)
    second = send_traces("http", service.http_port, service="payments")
    wait_for(service, 6)
    committed = files(service)
    assert len(committed) == 2 and len({f.name for f in committed}) == 2
    assert {f.parent.name for f in committed} == {
        "service_name=checkout",
        "service_name=payments",
    }
    # acknowledged after the last checkpoint: in the spool only
    late = [f"{0x7700 + i:016x}" for i in range(2)]
    for i in range(2):
        body = trace_request(span(f"late-{i}", span_id=(0x7700 + i).to_bytes(8, "big")))
        response = httpx.post(
            f"http://127.0.0.1:{service.http_port}/v1/traces",
            content=body.SerializeToString(),
            headers=PROTOBUF,
        )
        assert response.status_code == 200
    code, _ = stop(service, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert files(service) == committed  # what was committed stays as it was

    service.start()
    code, output = stop(service, signal.SIGTERM)
    assert code == 0, output
    sent = [s.span_id for s in [*first, *second]] + late
    assert span_ids(service) == sorted(sent)  # each acknowledged span exactly once
    assert not list((service.dir / "out").rglob(".*tmp-*"))


def test_commit_seconds_publishes_a_quiet_receiver_s_spans(service: Service) -> None:
    configure(
        service, {"time_partition": {"column": "time", "granularity": "day"}}, commit_seconds=0.5
    )
    service.start()
    sent = send_traces("http", service.http_port)
    wait_for(service, 3)  # committed without a stop nor more requests
    assert span_ids(service) == sorted(s.span_id for s in sent)
    (day,) = {f.parent.name for f in files(service)}
    assert day == time.strftime("day=%Y-%m-%d", time.gmtime())
    code, output = stop(service, signal.SIGTERM)
    assert code == 0, output
    assert span_ids(service) == sorted(s.span_id for s in sent)


def test_beside_another_source_the_receiver_runs_until_stopped(service: Service) -> None:
    """Checkpoints need a run's only source: beside another one the options do not end the
    receiver's input (and the run) at the first checkpoint."""
    (service.dir / "numbers.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    otlp = pipeline_doc(service.grpc_port, service.http_port, "-", commit_seconds=0.2)
    steps = {
        "otlp": otlp["source"],
        "numbers": {"jsonl": {"path": "numbers.jsonl"}},
        "spans": {"parquet": {"path": "out/spans.parquet"}},
        "copy": {"jsonl": {"path": "out/numbers.jsonl"}},
    }
    connections = [{"from": "otlp", "to": "spans"}, {"from": "numbers", "to": "copy"}]
    (service.dir / "pipeline.yaml").write_text(
        yaml.safe_dump({"steps": steps, "connections": connections})
    )
    service.start()
    send_traces("http", service.http_port)
    time.sleep(1.0)  # well past commit_seconds
    assert service.proc is not None and service.proc.poll() is None
    assert not (service.dir / "out" / "spans.parquet").exists()  # no commit yet
    response = httpx.post(
        f"http://127.0.0.1:{service.http_port}/v1/traces",
        content=trace_request(span("late")).SerializeToString(),
        headers=PROTOBUF,
    )
    assert response.status_code == 200  # still accepting
