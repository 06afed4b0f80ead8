"""Telemetry from the OpenTelemetry SDK through the telemetry processors, as a user runs them:
spans converted to the telemetry layout, then the YAML pipelines docs/ingest.md shows, which
filter on attributes, redact, transform, enrich and aggregate them into Parquet."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from quiver.ingest.otlp.convert import convert_request
from tests.ingest.processes import finish
from tests.ingest.sdk_clients import send_traces
from tests.ingest.test_ingest_docs import run_until_stopped
from tests.pipeline.conftest import free_port
from tests.pipeline.test_cli import quiver

_T0 = 1_700_000_000_000_000_000
_S = 1_000_000_000
#: (start s, service, method, status, duration ms, user e-mail)
_CALLS = [
    (0, "checkout", "GET", 200, 12, "ann@example.com"),
    (2, "checkout", "POST", 500, 80, "bob@example.org"),
    (4, "checkout", "GET", 200, 20, "card 4111 1111 1111 1111"),
    (12, "checkout", "GET", 404, 30, "cy@example.net"),
    (5, "cart", "GET", 200, 5, "dee@example.com"),
]


def _spans_parquet(path: Path) -> None:
    batches = []
    for service in ("checkout", "cart"):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("shop")
        for start, svc, method, status, ms, user in _CALLS:
            if svc != service:
                continue
            span = tracer.start_span(
                f"{method} /api",
                start_time=_T0 + start * _S,
                attributes={"http.method": method, "http.status_code": status, "user": user},
            )
            span.end(end_time=_T0 + start * _S + ms * 1_000_000)
        conversion = convert_request("traces", encode_spans(exporter.get_finished_spans()))
        assert conversion.batch is not None and conversion.rejected == 0
        batches.append(conversion.batch)
        provider.shutdown()
    pq.write_table(pa.Table.from_batches(batches), path)


DOC = Path(__file__).resolve().parents[2] / "docs" / "ingest.md"


def _doc_file(name: str) -> str:
    """A pipeline file shown in docs/ingest.md (the block marked ``<!-- pipeline: NAME -->``)."""
    found = re.search(
        rf"<!-- pipeline: {re.escape(name)} -->\n```yaml\n(.*?)```", DOC.read_text(), re.S
    )
    assert found is not None, f"docs/ingest.md shows no {name}"
    return found.group(1)


def test_sdk_spans_run_through_filter_redact_transform_and_enrich(tmp_path: Path) -> None:
    _spans_parquet(tmp_path / "spans.parquet")
    (tmp_path / "owners.csv").write_text("service,owner\ncheckout,payments\n")
    (tmp_path / "spans.yaml").write_text(_doc_file("telemetry-spans.yaml"))
    done = quiver("run", "spans.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(tmp_path / "out" / "spans.parquet").to_pylist()
    assert sorted(r["span_name"] for r in rows) == ["GET /api"] * 3
    attrs = [dict(r["attributes"]) for r in rows]
    assert sorted(a["user"] for a in attrs) == ["[email]", "[email]", "card [card]"]
    assert sorted(a["status"] for a in attrs) == ["200", "200", "404"]
    assert all(a["route"] == "GET GET /api" and "http.status_code" not in a for a in attrs)
    assert all(dict(r["resource_attributes"])["deployment.environment"] == "test" for r in rows)
    assert {r["owner"] for r in rows} == {"payments"}
    assert "events" not in rows[0]


def test_sdk_spans_are_aggregated_in_windows_per_service(tmp_path: Path) -> None:
    _spans_parquet(tmp_path / "spans.parquet")
    (tmp_path / "windows.yaml").write_text(_doc_file("telemetry-windows.yaml"))
    done = quiver("run", "windows.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(tmp_path / "out" / "windows.parquet").to_pylist()
    got = {
        (r["window_start"].timestamp() - _T0 / _S, r["service.name"]): (r["spans"], r["slowest_ns"])
        for r in rows
    }
    assert got == {
        (0, "checkout"): (3, 80_000_000),
        (10, "checkout"): (1, 30_000_000),
        (0, "cart"): (1, 5_000_000),
    }


def test_a_bad_pattern_in_a_pipeline_file_is_reported_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "spans.parquet").write_bytes(b"")
    (tmp_path / "bad.yaml").write_text(
        "source: {parquet: {path: spans.parquet}}\n"
        "processors:\n"
        "  - redact:\n"
        "      fields: [body]\n"
        "      custom: {id: 'a(b'}\n"
        '  - filter: {expression: "attributes[\'x = 1"}\n'
        "  - aggregate: {window: 10 parsecs, metrics: {n: count}}\n"
        "sink: {parquet: {path: out.parquet}}\n"
    )
    done = quiver("validate", "bad.yaml", cwd=tmp_path)
    err = " ".join(done.stderr.split())
    assert done.returncode == 2
    assert "bad.yaml:5:7 processors[0].redact.custom" in err, err
    assert "bad regular expression 'a(b'" in err
    assert "bad.yaml:7:17 processors[2].aggregate.window: '10 parsecs' is not a duration" in err
    assert "bad.yaml:6:5 processors[1] filter (expression): SQL syntax error" in err


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("transform: {rename: {'atributes[\"x\"]': y}}", "did you mean 'attributes'?"),
        ("filter: {expression: \"atributes['x'] = '1'\"}", "did you mean 'attributes'?"),
        ("redact: {fields: [duration_ns]}", "cannot redact duration_ns: it is int64, not text"),
        (
            "aggregate: {window: 1s, group_by: [servce_name], metrics: {n: count}}",
            "did you mean 'service_name'?",
        ),
        ("enrich: {lookup: {file: owners.csv, key: k, on: k}}", "lookup table file not found"),
    ],
)
def test_unknown_field_paths_are_found_by_validate_with_the_step(
    tmp_path: Path, step: str, message: str
) -> None:
    _spans_parquet(tmp_path / "spans.parquet")
    (tmp_path / "v.yaml").write_text(
        "source: {parquet: {path: spans.parquet}}\n"
        f"processors:\n  - {step}\n"
        "sink: {parquet: {path: out.parquet}}\n"
    )
    done = quiver("validate", "v.yaml", cwd=tmp_path)
    err = " ".join(done.stderr.split())
    assert done.returncode == 2, err
    assert re.search(r"v\.yaml:3:\d+ processors\[0\]", err), err  # the step, or the name in it
    assert message in err


def test_late_spans_go_to_the_route_named_by_late(tmp_path: Path) -> None:
    _spans_parquet(tmp_path / "spans.parquet")
    # one span per batch, in file order: checkout's spans at 0, 2, 4, 12 s, then cart's at 5 s,
    # which arrives after the window 0-10 s was written (nothing may be late by more than 1 s)
    (tmp_path / "late.yaml").write_text(
        "steps:\n"
        "  spans: {parquet: {path: spans.parquet, batch_rows: 1}}\n"
        "  windows:\n"
        "    aggregate:\n"
        "      {window: 10s, allowed_lateness: 1s, late: stragglers, metrics: {n: count}}\n"
        "  out: {parquet: {path: out/windows.parquet}}\n"
        "  late: {parquet: {path: out/late.parquet}}\n"
        "connections:\n"
        "  - {from: spans, to: windows}\n"
        "  - {from: windows, to: out}\n"
        "  - {from: windows.stragglers, to: late}\n"
    )
    done = quiver("run", "late.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    windows = pq.read_table(tmp_path / "out" / "windows.parquet").to_pylist()
    assert sorted(r["n"] for r in windows) == [1, 3]
    late = pq.read_table(tmp_path / "out" / "late.parquet").to_pylist()
    assert [r["service_name"] for r in late] == ["cart"]


def test_an_otlp_receiver_pipeline_limits_batches_filters_and_redacts(tmp_path: Path) -> None:
    """Spans sent by the SDK exporter over OTLP/gRPC and OTLP/HTTP, through the processors,
    into Parquet; the run is stopped by SIGTERM as a service would be."""
    grpc_port, http_port = free_port(), free_port()
    (tmp_path / "pipeline.yaml").write_text(
        "source:\n"
        "  otlp:\n"
        f"    grpc: {{endpoint: '127.0.0.1:{grpc_port}'}}\n"
        f"    http: {{endpoint: '127.0.0.1:{http_port}'}}\n"
        "processors:\n"
        "  - memory_limiter: {limit_mib: 100000}\n"
        "  - batch: {size: 1000, timeout: 1}\n"
        "  - filter: {expression: \"signal = 'traces' and resource.service.name <> 'noise'\"}\n"
        "  - transform: {set: {attributes.checked: 'yes'}, delete: [events]}\n"
        "  - redact: {fields: [status_message], patterns: [], custom: {reason: 'card \\w+'}}\n"
        "sink: {parquet: {path: out/spans.parquet}}\n"
    )
    proc = run_until_stopped(tmp_path, (grpc_port, http_port))
    sent = send_traces("grpc", grpc_port)
    send_traces("http", http_port, service="noise")
    proc.send_signal(signal.SIGTERM)
    output, _ = finish(proc, 60)
    assert proc.returncode == 0, output.decode()
    rows = pq.read_table(tmp_path / "out" / "spans.parquet").to_pylist()
    assert sorted(r["span_id"] for r in rows) == sorted(s.span_id for s in sent)
    assert all(dict(r["attributes"])["checked"] == "yes" for r in rows)
    assert "events" not in rows[0]
    assert sorted(str(r["status_message"]) for r in rows) == ["None", "None", "[reason]"]
