"""Where an OTAP span's CPU time goes inside the receiver, stage by stage, in one process on
one Arrow thread (``pyarrow.set_cpu_count(1)``): BatchArrowRecords of ``--otap-spans`` spans
(the span set of ``ingest_bench.py``) decoded from their IPC streams, joined into the
telemetry layout, written to the spool (no fsync; LZ4-compressed as shipped, and uncompressed
for comparison) and to a Parquet file.

Run by hand (not a test):

    .venv/bin/python benchmarks/otap_stages_bench.py [--requests 100] [--spans 1000]
        [--otap-spans 8192] [--repeat 3]

Prints CPU microseconds per span and spans per CPU-second for each stage (best of
``--repeat``), beside the protocol's floor measured in the same run: the protobuf parse of
each BatchArrowRecords and the reading of its IPC streams into record batches, as the bare
server of ``otap_load.py`` does. The sum is decode + spool + the Parquet sink as
``otap_load.py`` configures it (``no_dictionary`` for ids and times, where the sink has it).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.ipc as ipc

sys.path.insert(0, str(Path(__file__).parent))

import ingest_bench
import otap_load

from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2
from quiver.ingest.otap.service import decode_batch
from quiver.ingest.otap.streams import IpcStreams
from quiver.ingest.spool import Spool
from quiver.pipeline.sinks.parquet import ParquetSink, ParquetSinkConfig


class _Pipe:
    def __init__(self) -> None:
        self.data = b""

    closed = False

    def read(self, n: int = -1) -> bytes:
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out

    def readable(self) -> bool:
        return True


def floor(bodies: list[bytes]) -> None:
    readers: dict[int, tuple[_Pipe, ipc.RecordBatchStreamReader | None]] = {}
    for body in bodies:
        bar = otap_pb2.BatchArrowRecords.FromString(body)
        for p in bar.arrow_payloads:
            pipe, reader = readers.get(p.type, (_Pipe(), None))
            pipe.data += p.record
            if reader is None:
                reader = ipc.open_stream(pipe)
            readers[p.type] = (pipe, reader)
            reader.read_next_batch()


def decode_all(bodies: list[bytes]) -> list[pa.RecordBatch]:
    streams = IpcStreams("traces")
    out = []
    for body in bodies:
        batch = decode_batch(streams, otap_pb2.BatchArrowRecords.FromString(body))
        assert batch is not None
        out.append(batch)
    return out


def spool_all(
    batches: list[pa.RecordBatch], folder: str, compression: Literal["lz4", "none"] = "lz4"
) -> None:
    spool = Spool(tempfile.mkdtemp(dir=folder), fsync=False, compression=compression)
    spool.open()
    for batch in batches:
        spool._write([batch])
    spool.close()


#: as benchmarks/otap_load.py writes telemetry rows
TELEMETRY_PARQUET = {"no_dictionary": ["trace_id", "span_id", "parent_span_id", "time", "end_time"]}


def parquet_all(batches: list[pa.RecordBatch], folder: str, options: dict[str, Any]) -> None:
    from quiver.pipeline.component import RunContext

    path = tempfile.mktemp(dir=folder, suffix=".parquet")
    sink = ParquetSink(ParquetSinkConfig(path=path, **options))
    ctx = RunContext(run_id="bench", base_dir=folder)

    async def run() -> None:
        await sink.open(batches[0].schema, ctx)
        for batch in batches:
            await sink.write(batch)
        await sink.commit()

    asyncio.run(run())


def timed(what: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        what()
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--spans", type=int, default=1000)
    parser.add_argument("--otap-spans", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    bodies = ingest_bench.make_bodies(args.requests, args.spans)
    (stream,) = otap_load.encode_streams(bodies, args.otap_spans, 1)
    total = args.requests * args.spans
    batches = decode_all(stream)
    with tempfile.TemporaryDirectory() as folder:
        stages: list[tuple[str, Callable[[], object]]] = [
            ("floor: protobuf + IPC read (baseline)", lambda: floor(stream)),
            ("decode + join into the layout", lambda: decode_all(stream)),
            ("spool write (no fsync)", lambda: spool_all(batches, folder)),
            ("spool write (no fsync, uncompressed)", lambda: spool_all(batches, folder, "none")),
            ("parquet sink (default options)", lambda: parquet_all(batches, folder, {})),
        ]
        if "no_dictionary" in ParquetSinkConfig.model_fields:
            stages.append(
                (
                    "parquet sink (no_dictionary ids, times)",
                    lambda: parquet_all(batches, folder, TELEMETRY_PARQUET),
                )
            )
        results = {}
        for name, what in stages:
            seconds = timed(what, args.repeat)
            results[name] = seconds
            print(
                f"{name:40s} {seconds / total * 1e6:6.2f} µs/span "
                f"{total / seconds:12,.0f} spans/CPU-s"
            )
        last = list(results)[-1]  # the parquet sink as the OTAP benchmark runs it
        ours = sum(results[name] for name in [*list(results)[1:3], last])  # spool as shipped
        base = results["floor: protobuf + IPC read (baseline)"]
        print(
            f"{'receiver stages (sum)':40s} {ours / total * 1e6:6.2f} µs/span "
            f"{total / ours:12,.0f} spans/CPU-s; floor/ours {base / ours:.2f}"
        )


if __name__ == "__main__":
    main()
