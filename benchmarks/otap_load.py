"""The OTAP case of ``ingest_bench.py``: a load generator sending OpenTelemetry Arrow streams
(BatchArrowRecords on ``ArrowTraces``) to ``quiver run`` of ``otlp (arrow) -> parquet``, and
the protocol's floor beside it.

Run through ``ingest_bench.py --only otap`` (the span set is the one the OTLP cases send,
re-cut into ``--otap-spans`` spans per BatchArrowRecords, as an OTAP exporter batches):

  quiver    ``quiver run`` with ``source: {otlp: {grpc: ..., arrow: {}}}`` and a parquet sink
            with ``no_dictionary`` for the id and time columns (``--parquet-defaults``: none)
            (spool fsync'd before every BatchStatus, as shipped); ``--concurrency`` streams,
            each its own connection and its own IPC streams (schemas sent once per stream),
            every BatchStatus checked OK; spans/s is spans acknowledged / seconds from the
            first send to the last BatchStatus. The Parquet file is read back and must hold
            every span acknowledged.
  baseline  a bare grpc.aio server of the same services that parses each BatchArrowRecords
            and reads every payload's Arrow IPC stream into record batches, then answers OK:
            the floor of the protocol on this machine.

The BatchArrowRecords are encoded before the clock starts (quiver.ingest.otap.encode).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import psutil
import pyarrow.parquet as pq
from ingest_bench import QUIVER, PeakRss, Result, free_port, wait_listening
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from quiver.ingest.otap.encode import OtapEncoder
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2

TRACES = "/opentelemetry.proto.experimental.arrow.v1.ArrowTracesService/ArrowTraces"

BARE_SERVER = textwrap.dedent(
    """
    import asyncio, sys
    import grpc, grpc.aio, pyarrow as pa, pyarrow.ipc as ipc
    from quiver.ingest.otap.proto import arrow_service_pb2 as pb
    port = int(sys.argv[1])

    class Pipe:
        def __init__(self): self.data = b""
        def read(self, n=-1):
            out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
            return out
        closed = False
        def readable(self): return True

    async def traces(requests, context):
        readers = {}
        async for body in requests:
            bar = pb.BatchArrowRecords.FromString(body)
            for p in bar.arrow_payloads:
                pipe, reader = readers.get(p.type, (None, None))
                if pipe is None:
                    pipe = Pipe()
                pipe.data += p.record
                if reader is None:
                    reader = ipc.open_stream(pipe)
                readers[p.type] = (pipe, reader)
                reader.read_next_batch()
            yield pb.BatchStatus(batch_id=bar.batch_id).SerializeToString()

    async def main():
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", 256 << 20)])
        handler = grpc.stream_stream_rpc_method_handler(traces)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "opentelemetry.proto.experimental.arrow.v1.ArrowTracesService",
            {"ArrowTraces": handler}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()
    asyncio.run(main())
    """
)


def encode_streams(bodies: list[bytes], spans_per_batch: int, streams: int) -> list[list[bytes]]:
    """The spans of ``bodies`` (OTLP requests) re-cut into BatchArrowRecords of
    ``spans_per_batch`` spans, dealt round-robin to ``streams`` streams (each with its own
    encoder), serialised."""
    requests = [ExportTraceServiceRequest.FromString(b) for b in bodies]
    cut: list[ExportTraceServiceRequest] = []
    current, room = ExportTraceServiceRequest(), spans_per_batch
    for request in requests:
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                spans = list(ss.spans)
                while spans:
                    take, spans = spans[:room], spans[room:]
                    out_rs = current.resource_spans.add()
                    out_rs.resource.CopyFrom(rs.resource)
                    out_ss = out_rs.scope_spans.add()
                    out_ss.scope.CopyFrom(ss.scope)
                    out_ss.spans.extend(take)
                    room -= len(take)
                    if not room:
                        cut.append(current)
                        current, room = ExportTraceServiceRequest(), spans_per_batch
    if room < spans_per_batch:
        cut.append(current)
    encoders = [OtapEncoder() for _ in range(streams)]
    out: list[list[bytes]] = [[] for _ in range(streams)]
    for i, request in enumerate(cut):
        out[i % streams].append(encoders[i % streams].traces(request).SerializeToString())
    return out


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def report_cpu(system: str, spans: int, cpu: float) -> None:
    """Spans per CPU-second of the server: its speed on one core of its own, whatever else
    ran on the machine."""
    print(f"otap {system}: {cpu:.2f} server CPU-s, {spans / cpu:,.0f} spans per server CPU-s")


def drive(port: int, streams: list[list[bytes]]) -> float:
    """Send every stream at once (one connection each); seconds until the last BatchStatus."""
    failures: list[str] = []

    def one(bodies: list[bytes]) -> None:
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 256 << 20)]
        ) as channel:
            call = channel.stream_stream(TRACES)
            for reply in call(iter(bodies), timeout=600):
                status = otap_pb2.BatchStatus.FromString(reply)
                if status.status_code != otap_pb2.StatusCode.OK:
                    failures.append(f"{status.status_code}: {status.status_message}")

    start = time.perf_counter()
    with ThreadPoolExecutor(len(streams)) as pool:
        for future in [pool.submit(one, s) for s in streams]:
            future.result()
    seconds = time.perf_counter() - start
    if failures:
        raise SystemExit(f"{len(failures)} OTAP batches failed, e.g. {failures[0]}")
    return seconds


#: The Parquet options telemetry rows are best written with (docs/benchmarks.md, OTAP): ids
#: and times have as many distinct values as rows, so no dictionary.
TELEMETRY_PARQUET = {"no_dictionary": ["trace_id", "span_id", "parent_span_id", "time", "end_time"]}


def run_quiver(
    streams: list[list[bytes]], total: int, fsync: bool, work: Path, sink_defaults: bool = False
) -> Result:
    folder = Path(tempfile.mkdtemp(prefix="ingest-otap-", dir=work))
    port = free_port()
    pipeline = {
        "source": {
            "otlp": {
                "grpc": {"endpoint": f"127.0.0.1:{port}", "max_message_bytes": 256 << 20},
                "arrow": {},
                "spool": {"fsync": fsync, "max_bytes": 1 << 34},
                "max_queued_batches": 4096,
            }
        },
        "sink": {
            "parquet": {"path": "out/spans.parquet", **({} if sink_defaults else TELEMETRY_PARQUET)}
        },
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
        seconds = drive(port, streams)
        cpu = cpu_seconds(proc.pid) - cpu
        report_cpu("quiver", total, cpu)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    peak = rss.stop()
    if proc.returncode != 0:
        raise SystemExit(f"quiver run exited {proc.returncode}: {output.decode()[-2000:]}")
    rows = pq.ParquetFile(folder / "out" / "spans.parquet").metadata.num_rows
    if rows != total:
        raise SystemExit(f"otap: {total} spans acknowledged, {rows} in the Parquet file")
    return Result("otap", "quiver", total, seconds, total / seconds, peak, cpu, rows)


def run_baseline(streams: list[list[bytes]], total: int) -> Result:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", BARE_SERVER, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rss = PeakRss(proc.pid)
    try:
        wait_listening(port)
        cpu = cpu_seconds(proc.pid)
        seconds = drive(port, streams)
        cpu = cpu_seconds(proc.pid) - cpu
        report_cpu("baseline", total, cpu)
    finally:
        proc.terminate()
        proc.wait(30)
    peak = rss.stop()
    return Result("otap", "baseline (IPC decode only)", total, seconds, total / seconds, peak, cpu)


def run(
    bodies: list[bytes],
    spans: int,
    spans_per_batch: int,
    concurrency: int,
    fsync: bool,
    work: Path,
    sink_defaults: bool = False,
) -> tuple[Result, Result]:
    """The baseline and quiver results of the OTAP case."""
    streams = encode_streams(bodies, spans_per_batch, concurrency)
    total = len(bodies) * spans
    base = run_baseline(streams, total)
    return base, run_quiver(streams, total, fsync, work, sink_defaults)
