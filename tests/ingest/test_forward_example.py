"""examples/pipelines/otlp-forward relays what the OpenTelemetry SDK sends to the next
collector (a second Quiver here) and keeps a Parquet copy, leaving out health checks."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan

from .conftest import Receiver, free_port, wait_listening
from .sdk_clients import span_exporter

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "otlp-forward"


def test_the_relay_forwards_and_archives_every_span_but_health_checks(
    receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    import asyncio

    last = receiver()
    folder = tmp_path / "relay"
    shutil.copytree(EXAMPLE, folder)
    grpc_port, http_port = free_port(), free_port()
    variables = {
        "OTLP_GRPC_PORT": str(grpc_port),
        "OTLP_HTTP_PORT": str(http_port),
        "NEXT_COLLECTOR": f"127.0.0.1:{last.grpc_port}",
    }
    engine = PipelineEngine(
        compile_plan(load_pipeline(folder / "pipeline.yaml", variables, environ={}))
    )
    loops: list[asyncio.AbstractEventLoop] = []
    errors: list[BaseException] = []

    def run() -> None:
        async def main() -> None:
            loops.append(asyncio.get_running_loop())
            await engine.run()

        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_listening(grpc_port)

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter("grpc", grpc_port)))
    tracer = provider.get_tracer("relay-test")
    names = [f"op {i}" for i in range(200)] + ["GET /health"] * 20
    for name in names:
        with tracer.start_as_current_span(name):
            pass
    provider.shutdown()  # flushes: every batch exported and acknowledged

    loops[0].call_soon_threadsafe(engine.drain)
    thread.join(60)
    assert not thread.is_alive() and not errors, errors
    kept = sorted(f"op {i}" for i in range(200))
    archived = pq.read_table(folder / "out" / "telemetry.parquet")
    assert sorted(archived.column("span_name").to_pylist()) == kept
    forwarded = last.stop()
    assert sorted(forwarded.column("span_name").to_pylist()) == kept
    assert sorted(forwarded.column("span_id").to_pylist()) == sorted(
        archived.column("span_id").to_pylist()
    )
