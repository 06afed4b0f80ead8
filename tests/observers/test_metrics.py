"""The dispatcher's Prometheus metrics: their names under a namespace, the gauges counted from
the database, ``/metrics`` of ``quiver serve`` and ``quiver observers run --metrics-port``, and
the Grafana dashboard, every query of which names a metric a live ``/metrics`` shows."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from quiver.observers.dispatcher import Dispatcher
from tests.graphql.servers import QUIVER, free_port
from tests.observers.conftest import Receiver, Shop, mutate_over_http, quiver_serve

pytestmark = pytest.mark.asyncio(loop_scope="session")

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "quiver-observers.json"
RENAME = 'mutation { updateAuthors(where: {}, set: {name: "Z"}) { id } }'


def _hook(receiver: Receiver) -> dict[str, Any]:
    return {
        "name": "renamed",
        "entity": "Author",
        "on": ["update"],
        "when": "changed(name)",
        "actions": [{"type": "webhook", "name": "crm", "url": receiver.url, "timeout": 5}],
    }


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape(dispatcher: Dispatcher) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return _samples(generate_latest(dispatcher.metrics.registry).decode())


async def _two_authors(shop: Shop) -> None:
    await shop.mutate(
        'mutation { createAuthors(inputs: [{name: "A", email: "a@x"},'
        ' {name: "B", email: "b@x"}]) { id } }'
    )


async def _rename_two_authors(
    shop: Shop, observer: dict[str, Any]
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The metrics of a dispatcher of ``observer`` after one scan of two authors renamed."""
    dispatcher = await shop.dispatcher([observer])
    try:
        await _two_authors(shop)
        await shop.mutate(RENAME)
        await dispatcher.run_once()
        return _scrape(dispatcher)
    finally:
        await dispatcher.close()


async def test_the_fraiseql_namespace_yields_exactly_the_fraiseql_names(
    shop: Shop, receiver: Receiver
) -> None:
    dispatcher = await shop.dispatcher([_hook(receiver)], metrics_namespace="fraiseql")
    try:
        await _two_authors(shop)
        await shop.mutate(RENAME)
        await dispatcher.run_once()
        await dispatcher.count()
        names = {name for name, _ in _scrape(dispatcher)}
    finally:
        await dispatcher.close()
    assert {
        "fraiseql_observer_events_processed_total",
        "fraiseql_observer_cache_hit_rate",
        "fraiseql_observer_dedup_hit_rate",
        "fraiseql_observer_action_duration_seconds_bucket",
        "fraiseql_observer_backlog_size",
        "fraiseql_observer_dlq_size",
    } <= names
    assert all(n.startswith("fraiseql_observer_") for n in names), names


async def test_events_are_counted_by_observer_and_outcome_and_actions_timed_by_type(
    shop: Shop, receiver: Receiver
) -> None:
    got = await _rename_two_authors(shop, _hook(receiver))
    assert len(receiver.received) == 2
    events = "quiver_observer_events_processed_total"
    assert _value(got, events, observer="renamed", outcome="delivered") == 2
    assert _value(got, events, observer="renamed", outcome="dead_lettered") == 0
    assert _value(got, "quiver_observer_action_duration_seconds_count", kind="webhook") == 2
    assert _value(got, "quiver_observer_action_duration_seconds_sum", kind="webhook") > 0


async def test_a_false_condition_counts_as_skipped(shop: Shop, receiver: Receiver) -> None:
    got = await _rename_two_authors(shop, {**_hook(receiver), "when": "changed(bio)"})
    assert receiver.received == []
    events = "quiver_observer_events_processed_total"
    assert _value(got, events, observer="renamed", outcome="skipped") == 2
    assert _value(got, events, observer="renamed", outcome="delivered") == 0


async def test_backlog_and_dlq_gauges_count_the_database(shop: Shop, receiver: Receiver) -> None:
    receiver.statuses = [500] * 3  # the first author's three attempts: dead-lettered
    dispatcher = await shop.dispatcher([_hook(receiver)], ordered=True)
    try:
        await _two_authors(shop)
        await shop.mutate(RENAME)
        await dispatcher.count()
        before = _scrape(dispatcher)
        await dispatcher.run_once()
        await dispatcher.count()
        after = _scrape(dispatcher)
    finally:
        await dispatcher.close()
    # Two inserts and two updates of Author, none dispatched yet.
    assert _value(before, "quiver_observer_backlog_size") == 4
    assert _value(before, "quiver_observer_dlq_size") == 0
    assert _value(after, "quiver_observer_backlog_size") == 0
    assert _value(after, "quiver_observer_dlq_size") == 1
    events = "quiver_observer_events_processed_total"
    assert _value(after, events, observer="renamed", outcome="dead_lettered") == 1
    assert _value(after, events, observer="renamed", outcome="delivered") == 1
    assert _value(after, "quiver_observer_cache_hit_rate") == 0
    assert _value(after, "quiver_observer_dedup_hit_rate") == 0


def _config(tmp_path: Path, shop: Shop, receiver: Receiver, **extra: Any) -> Path:
    path = tmp_path / "quiver.yaml"
    doc = {
        "database": {"url": shop.url},
        "observers": [_hook(receiver)],
        "dispatcher": {"poll_interval": 0.05},
        **extra,
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _dashboard_metrics() -> dict[str, set[str]]:
    """The metric names of each panel query of the dashboard, by query."""
    doc = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    assert queries, "the dashboard has no query"
    return {q: set(re.findall(r"\bquiver_observer_[a-z_]+\b", q)) for q in queries}


async def _wait_for(client: httpx.AsyncClient, url: str, name: str, proc: Any) -> str:
    """``url``'s body once it shows a sample of ``name`` with a value above 0."""
    for _ in range(300):
        try:
            r = await client.get(url)
            if r.status_code == 200 and any(
                n == name and v > 0 for (n, _), v in _samples(r.text).items()
            ):
                return r.text
        except httpx.HTTPError:
            pass
        assert proc.returncode is None, "quiver exited"
        await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never showed {name}")


async def _stop(proc: Any) -> str:
    proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return str(out.decode())


async def test_every_dashboard_query_names_a_metric_of_quiver_serve_metrics(
    shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("the same dispatcher and exposition on every dialect")
    port = free_port()
    server = {"port": port, "host": "127.0.0.1"}
    cfg = _config(tmp_path, shop, receiver, server=server)
    doc = yaml.safe_load(cfg.read_text())
    doc["dispatcher"]["in_process"] = True
    cfg.write_text(yaml.safe_dump(doc))
    async with quiver_serve(str(cfg), port) as served:
        await mutate_over_http(
            served,
            'mutation { createAuthor(input: {name: "A", email: "a@x"}) { id } }',
            'mutation { updateAuthor(id: 1, set: {name: "Z"}) { id } }',
        )
        text = await _wait_for(
            served.client,
            f"{served.base}/metrics",
            "quiver_observer_events_processed_total",
            served.proc,
        )
    assert served.proc.returncode == 0, served.output
    assert len(receiver.received) == 1
    live = {name for name, _ in _samples(text)}
    assert "quiver_graphql_requests_total" in live  # the server's own metrics stay
    for query, names in _dashboard_metrics().items():
        assert names, f"the dashboard query {query!r} names no observer metric"
        assert names <= live, f"{query!r} reads {names - live}, not on a live /metrics"


async def test_observers_run_serves_its_metrics_on_metrics_port(
    shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("the same dispatcher and exposition on every dialect")
    await _two_authors(shop)
    await shop.mutate(RENAME)
    port = free_port()
    cfg = _config(tmp_path, shop, receiver)
    proc = await asyncio.create_subprocess_exec(
        QUIVER, "observers", "run", "-c", str(cfg), "--metrics-port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient() as client:
            text = await _wait_for(
                client,
                f"http://127.0.0.1:{port}/metrics",
                "quiver_observer_action_duration_seconds_count",
                proc,
            )
            for _ in range(100):  # the event counter moves once the second delivery is in
                got = _samples((await client.get(f"http://127.0.0.1:{port}/metrics")).text)
                events = "quiver_observer_events_processed_total"
                if _value(got, events, observer="renamed", outcome="delivered") == 2:
                    break
                await asyncio.sleep(0.1)
    finally:
        out = await _stop(proc)
    assert f"Metrics: http://127.0.0.1:{port}/metrics" in out
    assert "quiver_observer_backlog_size" in text
    assert _value(got, events, observer="renamed", outcome="delivered") == 2


async def test_a_taken_metrics_port_is_one_clear_error(
    shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    if shop.dialect != "sqlite":
        pytest.skip("a command-line check, the same on every dialect")
    cfg = _config(tmp_path, shop, receiver)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            QUIVER, "observers", "run", "--once", "-c", str(cfg), "--metrics-port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}: Address already in use (EADDRINUSE)" in (
        err.decode()
    )
    assert "Traceback" not in err.decode()
