"""The engine's own metrics (``quiver_pipeline_*``) after runs against real sinks, read from
its registry in the Prometheus text format; ``tests/ingest/test_run_metrics.py`` scrapes them
from a running ``quiver run`` over HTTP."""

from __future__ import annotations

import io
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog

from .conftest import free_port


def samples(engine: PipelineEngine) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(engine.metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def engine_of(folder: Path, text: str) -> PipelineEngine:
    (folder / "pipeline.yaml").write_text(text)
    plan = compile_plan(load_pipeline(folder / "pipeline.yaml", {}, environ={}))
    return PipelineEngine(plan, log=RunLog("t", "json", stream=io.StringIO()))


async def test_a_database_that_cannot_be_reached_shows_in_retries_breaker_and_dead_letters(
    tmp_path: Path,
) -> None:
    """Nothing listens on the port: each write is refused by the operating system, retried,
    the breaker opens, and the rows go to the dead-letter queue."""
    (tmp_path / "in.csv").write_text("id,qty\n1,5\n2,-1\n3,7\n")
    engine = engine_of(
        tmp_path,
        f"""
name: orders
source: {{csv: {{path: in.csv, types: {{id: int, qty: int}}}}}}
sink: {{database: {{url: "postgresql://postgres@127.0.0.1:{free_port()}/test", table: t}}}}
engine:
  retry: {{max_attempts: 3, initial_delay: 0.01, max_delay: 0.02}}
  circuit_breaker: {{failure_threshold: 2}}
dlq: {{path: dlq}}
""",
    )
    result = await engine.run()
    assert result.status == "ok"
    got = samples(engine)

    def value(name: str, **labels: str) -> float | None:
        return got.get((name, frozenset({"pipeline": "orders", **labels}.items())))

    assert value("quiver_pipeline_rows_out_total", step="source", kind="source") == 3
    assert value("quiver_pipeline_retries_total", step="sink") == 2
    assert value("quiver_pipeline_circuit_breaker_state", sink="sink") == 1  # open
    assert value("quiver_pipeline_circuit_breaker_opened_total", sink="sink") == 1
    assert value("quiver_pipeline_sink_rows_dead_lettered_total", sink="sink") == 3
    assert value("quiver_pipeline_sink_rows_written_total", sink="sink") == 0
    assert value("quiver_pipeline_sink_write_seconds_count", sink="sink") == 0
    assert value("quiver_pipeline_units_committed_total") == 1
    assert value("quiver_pipeline_ready") == 0  # the run has ended
    assert engine.dead_letters is not None
    assert (
        engine.dead_letters.metrics.sample("quiver_pipeline_dlq_added_rows_total", sink="sink") == 3
    )


async def test_routes_rejects_and_sink_writes_are_counted_per_step(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,qty\n1,5\n2,x\n3,70\n4,8\n")
    engine = engine_of(
        tmp_path,
        """
name: split
steps:
  read: {csv: {path: in.csv}}
  check: {validate: {schema: {id: int, qty: int}}}
  route: {filter: {expression: "qty < 10", otherwise: big}}
  small: {csv: {path: small.csv}}
  large: {csv: {path: large.csv}}
connections:
  - {from: read, to: check}
  - {from: check, to: route}
  - {from: route, to: small}
  - {from: route.big, to: large}
on_error: {policy: reject, rejects: rejects.csv}
""",
    )
    result = await engine.run()
    assert result.status == "ok", result.error
    got = samples(engine)

    def value(name: str, **labels: str) -> float | None:
        return got.get((name, frozenset({"pipeline": "split", **labels}.items())))

    assert value("quiver_pipeline_rows_out_total", step="read", kind="source") == 4
    assert value("quiver_pipeline_rejected_rows_total", step="check", kind="processor") == 1
    assert value("quiver_pipeline_rows_in_total", step="route", kind="processor") == 3
    assert value("quiver_pipeline_rows_out_total", step="route", kind="processor") == 2
    assert value("quiver_pipeline_routed_rows_total", step="route", route="big") == 1
    assert value("quiver_pipeline_sink_rows_written_total", sink="small") == 2
    assert value("quiver_pipeline_sink_rows_written_total", sink="large") == 1
    assert value("quiver_pipeline_sink_write_seconds_count", sink="small") == 1
    assert value("quiver_pipeline_circuit_breaker_state", sink="large") == 0
