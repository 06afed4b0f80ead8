"""Telemetry ingestion throughput: spans/s from a load generator into Parquet through
``quiver run`` with the ``otlp`` source, over OTLP/gRPC and OTLP/HTTP, beside a baseline
measured in the same run.

Run by hand (not a test):

    .venv/bin/python benchmarks/ingest_bench.py [--requests 400] [--spans 500]
        [--concurrency 8] [--only grpc,http,otap] [--otap-spans 8192] [--no-fsync]
        [--parquet-defaults] [--signal traces|logs|metrics] [--json results.json]

For each transport:

  quiver    ``quiver run`` of ``otlp -> parquet`` (spool fsync'd before every answer, as
            shipped) in a subprocess; the load generator (this process, ``--concurrency``
            threads, one connection each) sends ``--requests`` pre-encoded
            ExportTraceServiceRequest bodies of ``--spans`` spans each (8 span attributes, 3
            resource attributes, an event on every 4th span), then SIGTERM; spans/s is spans
            acknowledged / seconds from the first send to the last answer. The Parquet file is
            then read back: its rows must equal the spans acknowledged, or the run fails.
  baseline  a bare server of the same transport (grpc.aio / uvicorn + Starlette) that only
            decodes each request with the opentelemetry-proto classes and answers OK, driven
            the same way: the protocol's floor on this machine. The ratio quiver / baseline is
            the share of that floor left after conversion to Arrow, the spool and the sink.

``--signal logs`` / ``--signal metrics`` send ExportLogsServiceRequest bodies of ``--spans``
log records (6 attributes, a string body, ids on every other record) or
ExportMetricsServiceRequest bodies of ``--spans`` data points (a counter, a gauge and a
histogram, 3 point attributes) instead; "spans" in the table then counts those items.

OTAP (``--only otap``): the same spans as OpenTelemetry Arrow streams, ``--otap-spans`` per
BatchArrowRecords, to the ``arrow`` option of the ``otlp`` source; see ``otap_load.py``.

Load generator and server share the machine's cores (the generator's threads mostly wait in
grpc / socket calls). The OpenTelemetry Collector publishes about 10-12K spans/s per CPU for
OTLP with batching, for context. Prints a table, then a JSON summary (also to ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import httpx
import psutil
import pyarrow.parquet as pq
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

VENV_BIN = Path(sys.executable).parent
QUIVER = str(VENV_BIN / "quiver")
TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SERVICES = {
    "traces": ("trace", "TraceService", "ExportTraceServiceRequest"),
    "logs": ("logs", "LogsService", "ExportLogsServiceRequest"),
    "metrics": ("metrics", "MetricsService", "ExportMetricsServiceRequest"),
}
SIGNAL = "traces"  # set from --signal

BARE_SERVER = textwrap.dedent(
    """
    import asyncio, importlib, sys
    transport, port, signal = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    package, service, request_name = {
        "traces": ("trace", "TraceService", "ExportTraceServiceRequest"),
        "logs": ("logs", "LogsService", "ExportLogsServiceRequest"),
        "metrics": ("metrics", "MetricsService", "ExportMetricsServiceRequest"),
    }[signal]
    module = importlib.import_module(
        f"opentelemetry.proto.collector.{package}.v1.{package}_service_pb2")
    ExportTraceServiceRequest = getattr(module, request_name)
    OK = getattr(module, request_name.replace("Request", "Response"))().SerializeToString()

    if transport == "grpc":
        import grpc, grpc.aio
        async def export(body, context):
            ExportTraceServiceRequest.FromString(body)
            return OK
        async def main():
            server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
            handler = grpc.unary_unary_rpc_method_handler(export)
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
                f"opentelemetry.proto.collector.{package}.v1.{service}", {"Export": handler}),))
            server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            await server.wait_for_termination()
        asyncio.run(main())
    else:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route
        async def export(request):
            ExportTraceServiceRequest.FromString(await request.body())
            return Response(OK, media_type="application/x-protobuf")
        app = Starlette(routes=[Route(f"/v1/{signal}", export, methods=["POST"])])
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    """
)


@dataclass
class Result:
    transport: str
    system: str
    spans: int
    seconds: float
    spans_per_second: float
    peak_rss_mb: float
    cpu_seconds: float  # the server's CPU time (all its threads) while the load ran
    checked_rows: int | None = None

    @property
    def spans_per_cpu_second(self) -> float:
        """Throughput on one core of its own: what a shared machine's wall time hides."""
        return self.spans / self.cpu_seconds if self.cpu_seconds else 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def make_log_bodies(requests: int, records: int) -> list[bytes]:
    """``requests`` distinct ExportLogsServiceRequest bodies of ``records`` log records."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    bodies = []
    t0 = 1_765_000_000_000_000_000
    value: str | int | bool  # an attribute's value
    for r in range(requests):
        request = ExportLogsServiceRequest()
        rl = request.resource_logs.add()
        for key, value in (("service.name", f"svc-{r % 5}"), ("host.name", "bench-host")):
            kv = rl.resource.attributes.add()
            kv.key, kv.value.string_value = key, value
        scope = rl.scope_logs.add()
        scope.scope.name = "bench.logger"
        for i in range(records):
            n = r * records + i
            log = scope.log_records.add(
                time_unix_nano=t0 + n * 1000,
                observed_time_unix_nano=t0 + n * 1000 + 5,
                severity_number=9 if n % 7 else 17,
                severity_text="INFO" if n % 7 else "ERROR",
            )
            log.body.string_value = f"request {n % 1000} served in {n % 97} ms"
            if n % 2:
                log.trace_id, log.span_id = (n + 1).to_bytes(16, "big"), (n + 1).to_bytes(8, "big")
            for key, value in (
                ("http.method", "GET"),
                ("http.route", f"/api/items/{i % 20}"),
                ("http.status_code", 200),
                ("user.id", f"user-{n % 977}"),
                ("cache.hit", n % 3 == 0),
                ("region", "eu-west-1"),
            ):
                kv = log.attributes.add()
                kv.key = key
                if isinstance(value, bool):
                    kv.value.bool_value = value
                elif isinstance(value, int):
                    kv.value.int_value = value
                else:
                    kv.value.string_value = value
        bodies.append(request.SerializeToString())
    return bodies


def make_metric_bodies(requests: int, points: int) -> list[bytes]:
    """``requests`` distinct ExportMetricsServiceRequest bodies of ``points`` data points."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    bodies = []
    t0 = 1_765_000_000_000_000_000
    for r in range(requests):
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        kv = rm.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", f"svc-{r % 5}"
        scope = rm.scope_metrics.add()
        scope.scope.name = "bench.meter"
        counter = scope.metrics.add(name="requests", unit="1").sum
        counter.aggregation_temporality, counter.is_monotonic = 2, True
        gauge = scope.metrics.add(name="temperature").gauge
        histogram = scope.metrics.add(name="latency", unit="ms").histogram
        histogram.aggregation_temporality = 2
        for i in range(points):
            n = r * points + i
            if i % 3 == 0:
                p = counter.data_points.add(as_int=n)
            elif i % 3 == 1:
                p = gauge.data_points.add(as_double=n / 10)
            else:
                p = histogram.data_points.add(
                    count=10, sum=n * 1.5, bucket_counts=[2, 3, 5], explicit_bounds=[1.0, 10.0]
                )
            p.time_unix_nano, p.start_time_unix_nano = t0 + n * 1000, t0
            for key, value in (
                ("route", f"/api/items/{i % 20}"),
                ("host", f"h{n % 7}"),
                ("region", "eu-west-1"),
            ):
                kv = p.attributes.add()
                kv.key, kv.value.string_value = key, value
        bodies.append(request.SerializeToString())
    return bodies


def make_bodies(requests: int, spans: int) -> list[bytes]:
    """``requests`` distinct export bodies of ``spans`` items of the ``--signal``."""
    if SIGNAL == "logs":
        return make_log_bodies(requests, spans)
    if SIGNAL == "metrics":
        return make_metric_bodies(requests, spans)
    bodies = []
    t0 = 1_765_000_000_000_000_000
    value: str | int | bool  # an attribute's value
    for r in range(requests):
        request = ExportTraceServiceRequest()
        rs = request.resource_spans.add()
        for key, value in (
            ("service.name", f"svc-{r % 5}"),
            ("host.name", "bench-host"),
            ("deployment.environment", "bench"),
        ):
            kv = rs.resource.attributes.add()
            kv.key, kv.value.string_value = key, value
        scope = rs.scope_spans.add()
        scope.scope.name, scope.scope.version = "bench.tracer", "1.0"
        for i in range(spans):
            n = r * spans + i
            span = Span(
                trace_id=(n // 8 + 1).to_bytes(16, "big"),
                span_id=(n + 1).to_bytes(8, "big"),
                parent_span_id=(n // 8 * 8 + 1).to_bytes(8, "big") if n % 8 else b"",
                name=f"GET /api/items/{i % 20}",
                kind=Span.SpanKind.SPAN_KIND_SERVER,
                start_time_unix_nano=t0 + n * 1000,
                end_time_unix_nano=t0 + n * 1000 + 250_000,
            )
            for key, value in (
                ("http.method", "GET"),
                ("http.route", f"/api/items/{i % 20}"),
                ("http.status_code", 200),
                ("net.peer.name", "10.0.0.1"),
                ("user.id", f"user-{n % 977}"),
                ("cache.hit", n % 3 == 0),
                ("db.rows", n % 50),
                ("region", "eu-west-1"),
            ):
                kv = span.attributes.add()
                kv.key = key
                if isinstance(value, bool):
                    kv.value.bool_value = value
                elif isinstance(value, int):
                    kv.value.int_value = value
                else:
                    kv.value.string_value = value
            if i % 4 == 0:
                event = span.events.add()
                event.name, event.time_unix_nano = "cache miss", t0 + n * 1000 + 10
            scope.spans.append(span)
        bodies.append(request.SerializeToString())
    return bodies


def drive(transport: str, port: int, bodies: list[bytes], concurrency: int) -> float:
    """Send every body (each thread its own connection); seconds until the last answer."""
    lock = threading.Lock()
    queue = list(bodies)
    failures: list[str] = []

    def take() -> bytes | None:
        with lock:
            return queue.pop() if queue else None

    def worker() -> None:
        if transport == "grpc":
            with grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 << 20)]
            ) as channel:
                package, service, _ = SERVICES[SIGNAL]
                export = channel.unary_unary(
                    f"/opentelemetry.proto.collector.{package}.v1.{service}/Export"
                )
                while (body := take()) is not None:
                    try:
                        export(body, timeout=120)
                    except grpc.RpcError as exc:
                        failures.append(f"{exc.code()}: {exc.details()}")
            return
        with httpx.Client(timeout=120) as client:
            while (body := take()) is not None:
                response = client.post(
                    f"http://127.0.0.1:{port}/v1/{SIGNAL}",
                    content=body,
                    headers={"content-type": "application/x-protobuf"},
                )
                if response.status_code != 200:
                    failures.append(f"HTTP {response.status_code}")

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    seconds = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    return seconds


class PeakRss:
    """Peak resident memory of a process tree, polled."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process tree so far."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def run_quiver(
    transport: str, bodies: list[bytes], spans: int, concurrency: int, fsync: bool, work: Path
) -> Result:
    folder = Path(tempfile.mkdtemp(prefix=f"ingest-{transport}-", dir=work))
    port = free_port()
    listener = {"endpoint": f"127.0.0.1:{port}"}
    if transport == "grpc":
        listener["max_message_bytes"] = 64 << 20  # type: ignore[assignment]
    else:
        listener["max_body_bytes"] = 64 << 20  # type: ignore[assignment]
    pipeline = {
        "source": {
            "otlp": {
                transport: listener,
                "spool": {"fsync": fsync, "max_bytes": 1 << 34},
                "max_queued_batches": 4096,
            }
        },
        "sink": {"parquet": {"path": "out/spans.parquet"}},
    }
    (folder / "pipeline.yaml").write_text(json.dumps(pipeline))
    proc = subprocess.Popen(
        [QUIVER, "run", "pipeline.yaml", "--quiet"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    rss = PeakRss(proc.pid)
    try:
        wait_listening(port)
        cpu = cpu_seconds(proc.pid)
        seconds = drive(transport, port, bodies, concurrency)
        cpu = cpu_seconds(proc.pid) - cpu
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    peak = rss.stop()
    if proc.returncode != 0:
        raise SystemExit(f"quiver run exited {proc.returncode}: {output.decode()[-2000:]}")
    total = len(bodies) * spans
    rows = pq.ParquetFile(folder / "out" / "spans.parquet").metadata.num_rows
    if rows != total:
        raise SystemExit(f"{transport}: {total} spans acknowledged, {rows} in the Parquet file")
    return Result(transport, "quiver", total, seconds, total / seconds, peak, cpu, rows)


def run_baseline(transport: str, bodies: list[bytes], spans: int, concurrency: int) -> Result:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE_SERVER, transport, str(port), SIGNAL],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rss = PeakRss(proc.pid)
    try:
        wait_listening(port)
        cpu = cpu_seconds(proc.pid)
        seconds = drive(transport, port, bodies, concurrency)
        cpu = cpu_seconds(proc.pid) - cpu
    finally:
        proc.terminate()
        proc.wait(30)
    peak = rss.stop()
    total = len(bodies) * spans
    return Result(transport, "baseline (decode only)", total, seconds, total / seconds, peak, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--spans", type=int, default=500, help="spans per request")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--only", default="grpc,http")
    parser.add_argument("--otap-spans", type=int, default=8192, help="spans per OTAP batch")
    parser.add_argument("--no-fsync", action="store_true", help="spool without fsync")
    parser.add_argument(
        "--parquet-defaults",
        action="store_true",
        help="OTAP: the parquet sink with its default options (no no_dictionary)",
    )
    parser.add_argument("--json", help="write the results here too")
    parser.add_argument("--signal", choices=sorted(SERVICES), default="traces")
    args = parser.parse_args()
    global SIGNAL
    SIGNAL = args.signal
    if SIGNAL != "traces" and "otap" in args.only:
        parser.error("--only otap sends spans: use it with --signal traces")
    transports = [t for t in args.only.split(",") if t]
    bodies = make_bodies(args.requests, args.spans)
    mib = sum(map(len, bodies)) / 2**20
    print(
        f"{args.requests} requests x {args.spans} {SIGNAL} items ({mib:.1f} MiB of protobuf), "
        f"{args.concurrency} connections, {os.cpu_count()} cores shared by generator and "
        f"server, Python {platform.python_version()}, fsync {'off' if args.no_fsync else 'on'}"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as work:
        for transport in transports:
            if transport == "otap":
                import otap_load

                results += otap_load.run(
                    bodies,
                    args.spans,
                    args.otap_spans,
                    args.concurrency,
                    not args.no_fsync,
                    Path(work),
                    args.parquet_defaults,
                )
                continue
            base = run_baseline(transport, bodies, args.spans, args.concurrency)
            ours = run_quiver(
                transport, bodies, args.spans, args.concurrency, not args.no_fsync, Path(work)
            )
            results += [base, ours]
    print(
        f"\n{'transport':<10}{'system':<26}{'spans/s':>12}{'per CPU-s':>12}{'seconds':>10}"
        f"{'peak MB':>10}"
    )
    for r in results:
        print(
            f"{r.transport:<10}{r.system:<26}{r.spans_per_second:>12,.0f}"
            f"{r.spans_per_cpu_second:>12,.0f}{r.seconds:>10.2f}{r.peak_rss_mb:>10.0f}"
        )
    ratios = {}
    for transport in transports:
        base, ours = (r for r in results if r.transport == transport)
        ratios[transport] = ours.spans_per_second / base.spans_per_second
        print(f"{transport}: quiver / baseline = {ratios[transport]:.2f}")
    rows = [asdict(r) | {"spans_per_cpu_second": r.spans_per_cpu_second} for r in results]
    summary = {"results": rows, "ratios": ratios, "args": vars(args)}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
