"""The producer sinks in whole pipelines run by the engine: a file pipeline into Kafka, and a
receiver whose input is settled only once the producer sink wrote (commit after the sink)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine, RunResult
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog

from .conftest import free_port, js_publish, kafka_topic, unique
from .test_kafka_sink import consume


async def run(folder: Path, yaml: str, **variables: str) -> RunResult:
    (folder / "pipeline.yaml").write_text(yaml)
    spec = load_pipeline(folder / "pipeline.yaml", variables, environ={})
    engine = PipelineEngine(compile_plan(spec), log=RunLog("t", "json", stream=io.StringIO()))
    return await engine.run()


async def test_a_csv_file_is_produced_to_kafka_by_a_pipeline(
    kafka_broker: str, tmp_path: Path
) -> None:
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    (tmp_path / "orders.csv").write_text("id,region,total\n1,eu,10.5\n2,us,3\n3,eu,7.25\n")
    result = await run(
        tmp_path,
        """
source: {csv: {path: orders.csv}}
processors:
  - cast: {columns: {id: int, total: float}}
sink:
  kafka:
    bootstrap_servers: ["${K}"]
    topic: "${T}"
    key: region
    idempotent: false
""",
        K=kafka_broker,
        T=topic,
    )
    assert result.rows_written == 3
    records = await consume(kafka_broker, topic, 3)
    assert sorted((r.key, json.loads(r.value)["id"]) for r in records) == [
        (b"eu", 1),
        (b"eu", 3),
        (b"us", 2),
    ]


async def test_jetstream_input_is_acknowledged_only_once_kafka_holds_it(
    kafka_broker: str, js_stream: tuple[str, str], tmp_path: Path
) -> None:
    """JetStream -> kafka sink: while the Kafka broker cannot be reached the run fails and the
    stream keeps every message; the next run, with the broker reachable, forwards them all."""
    stream, prefix = js_stream
    topic = unique("t")
    await kafka_topic(kafka_broker, topic)
    await js_publish(f"{prefix}.in", [b'{"n": %d}' % i for i in range(20)])
    yaml = """
source:
  nats:
    subject: "${P}.in"
    stream: "${S}"
    durable: "${D}"
    fetch_wait: 0.2
    idle_timeout: 1.0
    batch_seconds: 0.2
    ack_wait: 2
sink:
  kafka:
    bootstrap_servers: ["${K}"]
    topic: "${T}"
    idempotent: false
    timeout_seconds: 2
engine:
  retry: {max_attempts: 2, initial_delay: 0.1}
"""
    names = {"P": prefix, "S": stream, "D": unique("d"), "T": topic}
    with pytest.raises(Exception, match="Kafka unavailable"):
        await run(tmp_path, yaml, K=f"127.0.0.1:{free_port()}", **names)
    import nats

    nc = await nats.connect("nats://127.0.0.1:4222")
    info = await nc.jetstream().consumer_info(stream, names["D"])
    await nc.close()
    assert info.delivered.stream_seq >= 1  # the failed run did read messages ...
    assert info.ack_floor.stream_seq == 0  # ... and acknowledged none of them
    result = await run(tmp_path, yaml, K=kafka_broker, **names)
    assert result.rows_written == 20
    records = await consume(kafka_broker, topic, 20)
    assert sorted(json.loads(r.value)["n"] for r in records) == list(range(20))
