"""``quiver run`` as a collector serves its own telemetry: Prometheus ``/metrics`` and
``/healthz`` / ``/readyz`` on ``--metrics host:port`` or the pipeline's
``telemetry.metrics.endpoint``. Each test starts a real ``quiver run``, sends data with a real
client (the OpenTelemetry SDK, an MQTT client against Mosquitto) and scrapes the endpoint."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from quiver.runtime.monitoring import serve_monitoring
from tests.e2e.conftest import quiver_command, quiver_env
from tests.ingest.conftest import Receiver, mqtt_publish
from tests.ingest.processes import TrackedPopen, finish, stopped
from tests.ingest.sdk_clients import send_traces

from .conftest import free_port, unique

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample ``/metrics`` serves, by name and labels, parsed by prometheus_client."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def wait_for(
    check: Callable[[], Any],
    what: str,
    proc: subprocess.Popen[Any] | None = None,
    seconds: float = 20.0,
) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended while waiting for {what}; {stopped(proc)}")
        if time.monotonic() > deadline:
            extra = f"; {stopped(proc)}" if proc is not None else ""
            raise AssertionError(f"no {what} after {seconds}s{extra}")
        time.sleep(0.05)


def status(port: int, path: str) -> int:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code


def start_run(folder: Path, doc: dict[str, Any], *args: str) -> subprocess.Popen[bytes]:
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return TrackedPopen(
        [*quiver_command(), "run", "pipeline.yaml", "--quiet", *args],
        cwd=folder,
        env=quiver_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def stop_run(proc: subprocess.Popen[bytes]) -> str:
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc, 30)
    text = (out + err).decode(errors="replace")
    assert proc.returncode in (0, 128 + signal.SIGTERM), text
    return text


# ---------------------------------------------------------------- an OTLP collector


def test_an_otlp_collector_counts_received_spans_tenants_and_its_dead_letter_queue(
    tmp_path: Path,
) -> None:
    http_port, metrics_port = free_port(), free_port()
    tenant = unique("acme")
    doc = {
        "name": "otlp-to-parquet",
        "source": {
            "otlp": {
                "http": {"endpoint": f"127.0.0.1:{http_port}"},
                "tenancy": {},
            }
        },
        "sink": {"parquet": {"path": "out/traces.parquet"}},
        "dlq": {"path": "dlq"},
        "telemetry": {"metrics": {"endpoint": f"127.0.0.1:{metrics_port}"}},
    }
    proc = start_run(tmp_path, doc)
    wait_for(lambda: status(metrics_port, "/readyz") == 200, "/readyz 200", proc)
    assert status(metrics_port, "/healthz") == 200
    before = scrape(metrics_port)
    assert value(before, "quiver_pipeline_ready", pipeline="otlp-to-parquet") == 1
    assert (
        value(
            before,
            "quiver_ingest_receiver_accepted_rows_total",
            pipeline="otlp-to-parquet",
            receiver="otlp",
        )
        == 0
    )

    sent = send_traces("http", http_port, "cart", headers={"X-Scope-OrgID": tenant})
    assert len(sent) == 3

    def counted() -> Samples | None:
        s = scrape(metrics_port)
        rows = value(
            s, "quiver_pipeline_rows_in_total", pipeline="otlp-to-parquet", step="sink", kind="sink"
        )
        return s if rows == 3 else None

    after = wait_for(counted, "3 rows handed to the sink", proc)
    p = {"pipeline": "otlp-to-parquet"}
    assert value(after, "quiver_ingest_receiver_accepted_rows_total", **p, receiver="otlp") == 3
    assert value(after, "quiver_ingest_receiver_accepted_requests_total", **p, receiver="otlp") >= 1  # type: ignore[operator]
    assert (
        value(
            after,
            "quiver_ingest_receiver_refused_requests_total",
            **p,
            receiver="otlp",
            reason="backpressure",
        )
        == 0
    )
    assert value(after, "quiver_pipeline_rows_out_total", **p, step="source", kind="source") == 3
    assert value(after, "quiver_pipeline_sink_write_seconds_count", **p, sink="sink") >= 1  # type: ignore[operator]
    assert value(after, "quiver_pipeline_circuit_breaker_state", **p, sink="sink") == 0
    assert value(after, "quiver_pipeline_queued_batches", **p, step="sink") == 0
    assert value(after, "quiver_ingest_tenant_items_total", tenant=tenant, signal="traces") == 3
    assert value(after, "quiver_pipeline_dlq_entries", **p) == 0
    assert {
        "quiver_pipeline_dlq_bytes",
        "quiver_ingest_receiver_spool_bytes",
        "quiver_pipeline_retries_total",
        "quiver_pipeline_rejected_rows_total",
        "process_resident_memory_bytes",
    } <= names(after)
    assert_documented(after)

    stop_run(proc)
    with pytest.raises(httpx.TransportError):  # the endpoint ends with the run
        status(metrics_port, "/healthz")


# ---------------------------------------------------------------- an MQTT source


def test_an_mqtt_run_with_the_metrics_option_counts_messages_and_rejected_ones(
    tmp_path: Path,
) -> None:
    prefix, metrics_port = unique("metrics"), free_port()
    doc = {
        "name": "mqtt-readings",
        "source": {
            "mqtt": {
                "topics": [f"{prefix}/#"],
                "qos": 1,
                "batch_seconds": 0.1,
                "schema": {"n": "int"},
            }
        },
        "sink": {"csv": {"path": "out.csv"}},
        "on_error": {"policy": "reject", "rejects": "rejects.csv"},
    }
    proc = start_run(tmp_path, doc, "--metrics", f"127.0.0.1:{metrics_port}")
    wait_for(lambda: status(metrics_port, "/readyz") == 200, "/readyz 200", proc)
    good = [(f"{prefix}/a", b'{"n": %d}' % i) for i in range(5)]
    mqtt_publish([*good, (f"{prefix}/a", b"not json")], 1)
    p = {"pipeline": "mqtt-readings"}

    def counted() -> Samples | None:
        s = scrape(metrics_port)
        done = value(s, "quiver_pipeline_rows_in_total", **p, step="sink", kind="sink") == 5
        rejected = (
            value(s, "quiver_pipeline_rejected_rows_total", **p, step="source", kind="source") == 1
        )
        return s if done and rejected else None

    after = wait_for(counted, "5 rows in the sink and 1 rejected", proc)
    assert value(after, "quiver_pipeline_rows_out_total", **p, step="source", kind="source") == 5
    assert value(after, "quiver_pipeline_batches_in_total", **p, step="sink", kind="sink") >= 1  # type: ignore[operator]
    # no dead-letter queue, no receiver intake, no tenancy configured: none of their metrics
    assert not {n for n in names(after) if n.startswith(("quiver_pipeline_dlq", "quiver_ingest_"))}
    assert_documented(after)
    output = stop_run(proc)
    assert (tmp_path / "out.csv").read_text().count("\n") == 6, output  # header + 5 rows


# ---------------------------------------------------------------- readiness


def test_readyz_answers_503_from_the_moment_a_stop_drains_the_run(
    receiver: Callable[..., Receiver],
) -> None:
    """In the same process as the run, so the drain can be watched from its first moment."""
    rec = receiver()
    metrics_port = free_port()
    server = serve_monitoring(f"127.0.0.1:{metrics_port}", ready=lambda: rec.engine.ready)
    try:
        assert status(metrics_port, "/readyz") == 200
        assert status(metrics_port, "/healthz") == 200
        assert status(metrics_port, "/nowhere") == 404
        assert rec.loop is not None
        seen: list[tuple[bool, bool]] = []
        drained = threading.Event()

        def drain() -> None:  # on the run's loop: the run cannot end within this call
            rec.engine.drain()
            seen.append((rec.engine.ready, status(metrics_port, "/readyz") == 503))
            drained.set()

        rec.loop.call_soon_threadsafe(drain)
        assert drained.wait(10)
        assert seen == [(False, True)]  # not ready the moment it drains, run still going
        rec.thread.join(60)
        assert not rec.thread.is_alive() and rec.error is None
        assert status(metrics_port, "/readyz") == 503  # the run has ended
        assert status(metrics_port, "/healthz") == 200
    finally:
        server.stop()


def test_health_false_serves_metrics_only_and_openmetrics_on_request() -> None:
    from prometheus_client import CollectorRegistry, Counter
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    from quiver.runtime.metrics import expose

    registry = CollectorRegistry()
    Counter("quiver_test_things", "Things.", registry=registry).inc(2)
    withdraw = expose(registry)
    metrics_port = free_port()
    server = serve_monitoring(f"127.0.0.1:{metrics_port}", ready=lambda: True, health=False)
    try:
        assert status(metrics_port, "/healthz") == 404
        assert status(metrics_port, "/readyz") == 404
        assert value(scrape(metrics_port), "quiver_test_things_total") == 2
        response = httpx.get(
            f"http://127.0.0.1:{metrics_port}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.count("# EOF") == 1  # one document of every registry
        families = {f.name: f for f in openmetrics_families(response.text)}  # type: ignore[no-untyped-call]
        assert families["quiver_test_things"].samples[0].value == 2
        assert "process_cpu_seconds" in families
    finally:
        server.stop()
        withdraw()


# ---------------------------------------------------------------- errors


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def file_pipeline(folder: Path, **extra: Any) -> None:
    (folder / "in.csv").write_text("n\n1\n2\n")
    doc = {"source": {"csv": {"path": "in.csv"}}, "sink": {"csv": {"path": "out.csv"}}, **extra}
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def run_quiver(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*quiver_command(), "run", "pipeline.yaml", "--quiet", *args],
        cwd=folder,
        env=quiver_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_metrics_address_not_of_this_machine_says_so(tmp_path: Path) -> None:
    file_pipeline(tmp_path)
    done = run_quiver(tmp_path, "--metrics", "192.0.2.1:9464")  # TEST-NET-1: never local
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: --metrics: cannot serve metrics on 192.0.2.1:9464: "), lines
    assert lines[0].endswith("(EADDRNOTAVAIL)"), lines
    assert "192.0.2.1 is not an address of this machine" in lines[1], lines
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out.csv").exists()


def test_a_metrics_port_in_use_is_one_error_line_with_a_fix(tmp_path: Path, busy_port: int) -> None:
    file_pipeline(tmp_path)
    done = run_quiver(tmp_path, "--metrics", f"127.0.0.1:{busy_port}")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (
        f"error: --metrics: cannot serve metrics on 127.0.0.1:{busy_port}: Address already in use"
        " (EADDRINUSE)"
    ), done.stderr
    assert lines[1].strip().startswith(f"fix: stop the process listening on port {busy_port}")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out.csv").exists()


def test_a_port_in_use_named_by_the_file_points_at_its_line(tmp_path: Path, busy_port: int) -> None:
    file_pipeline(tmp_path, telemetry={"metrics": {"endpoint": f"127.0.0.1:{busy_port}"}})
    done = run_quiver(tmp_path)
    assert done.returncode == 1, done.stderr
    assert "pipeline.yaml:" in done.stderr and "telemetry.metrics.endpoint" in done.stderr
    assert "Address already in use" in done.stderr and "Traceback" not in done.stderr


def test_a_malformed_metrics_endpoint_is_refused(tmp_path: Path) -> None:
    file_pipeline(tmp_path)
    done = run_quiver(tmp_path, "--metrics", "8888")
    assert done.returncode == 2, done.stderr
    assert "error: --metrics: '8888' is not host:port" in done.stderr
    assert "fix: write host:port, e.g. 127.0.0.1:8888" in done.stderr

    file_pipeline(tmp_path, telemetry={"metrics": {"endpoint": "localhost"}})
    done = run_quiver(tmp_path)
    assert done.returncode == 2, done.stderr
    assert "telemetry.metrics.endpoint" in done.stderr and "not host:port" in done.stderr


def test_a_file_run_serves_its_metrics_while_it_runs_and_ends_as_usual(tmp_path: Path) -> None:
    file_pipeline(tmp_path)
    done = run_quiver(tmp_path, "--metrics", f"127.0.0.1:{free_port()}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.csv").read_text().splitlines() == ["n", "1", "2"]


def test_without_the_option_nothing_listens(tmp_path: Path) -> None:
    """Off by default: the engine's metrics exist in the process, no port is opened."""
    from quiver.pipeline.config import load_pipeline

    file_pipeline(tmp_path)
    spec = load_pipeline(str(tmp_path / "pipeline.yaml"), {})
    assert spec.telemetry.metrics is None and spec.telemetry.health is True


# ---------------------------------------------------------------- the docs

DOCS = Path(__file__).resolve().parents[2] / "docs"


def family(sample: str) -> str:
    """The metric a sample belongs to, as the docs name it (counters with ``_total``)."""
    for suffix in ("_bucket", "_count", "_sum"):
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def assert_documented(samples: Samples) -> None:
    engine = (DOCS / "pipelines" / "engine.md").read_text()
    ingest = (DOCS / "ingest.md").read_text()
    ours = {
        family(n) for n in names(samples) if n.startswith("quiver_") and not n.endswith("_created")
    }
    assert ours
    missing = {n for n in ours if f"`{n}`" not in engine}
    assert not missing, f"docs/pipelines/engine.md does not list {sorted(missing)}"
    receivers = {n for n in ours if n.startswith("quiver_ingest_")}
    missing = {n for n in receivers if f"`{n}" not in ingest}
    assert not missing, f"docs/ingest.md does not list {sorted(missing)}"


def test_the_monitoring_example_of_the_ingest_docs_is_a_valid_pipeline(tmp_path: Path) -> None:
    from quiver.pipeline.config import load_pipeline

    text = (DOCS / "ingest.md").read_text().split("## Monitoring", 1)[1]
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "pipeline.yaml").write_text(block)
    spec = load_pipeline(str(tmp_path / "pipeline.yaml"), {})
    assert spec.telemetry.metrics is not None
    assert spec.telemetry.metrics.endpoint == "0.0.0.0:8888"
