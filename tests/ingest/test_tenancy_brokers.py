"""Tenants taken from MQTT topics (Mosquitto at 127.0.0.1:1883) and NATS subjects (JetStream at
127.0.0.1:4222): the tenant_id column, Parquet partitioned by tenant, and messages without a
tenant rejected."""

from __future__ import annotations

import asyncio
import csv
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from pydantic import ValidationError

from quiver.ingest.mqtt import MqttReceiver
from quiver.ingest.nats import NatsReceiver
from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan

from .conftest import FETCH_WAIT, build, js_publish, mqtt_publish, unique
from .conftest import read_all as take

FAST = {"idle_timeout": 1.0, "batch_seconds": 0.2}


async def test_a_nats_subject_names_the_tenant_and_partitions_the_parquet_output(
    js_stream: tuple[str, str], tmp_path: Path
) -> None:
    stream, prefix = js_stream
    await js_publish(f"{prefix}.tenants.acme.orders", [b'{"n": 1}', b'{"n": 2}'])
    await js_publish(f"{prefix}.tenants.globex.orders", [b'{"n": 3}'])
    await js_publish(f"{prefix}.tenants.globex.refunds", [b'{"n": 4, "tenant_id": "acme"}'])
    await js_publish(f"{prefix}.public.news", [b'{"n": 5}'])  # no tenant: rejected
    doc = {
        "source": {
            "nats": {
                **FAST,
                "subject": f"{prefix}.>",
                "stream": stream,
                "durable": unique("d"),
                "fetch_wait": FETCH_WAIT,
                "tenancy": {"patterns": [f"{prefix}.tenants.{{tenant}}.>"]},
            }
        },
        "sink": {"parquet": {"path": "out/", "partition_by": ["tenant_id"]}},
        "on_error": {"policy": "reject", "rejects": "rejects.csv"},
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(doc))
    await PipelineEngine(compile_plan(load_pipeline(tmp_path / "pipeline.yaml"))).run()

    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["tenant_id=acme", "tenant_id=globex"]
    acme = pq.read_table(out / "tenant_id=acme").column("n").to_pylist()
    globex = pq.read_table(out / "tenant_id=globex").column("n").to_pylist()
    # the subject wins over a tenant_id written in the body
    assert (sorted(acme), sorted(globex)) == ([1, 2], [3, 4])
    with open(tmp_path / "rejects.csv", newline="") as fh:
        rejects = list(csv.DictReader(fh))
    assert len(rejects) == 1
    assert f"no tenant: '{prefix}.public.news' matches none of" in rejects[0]["reason"]


async def test_an_mqtt_topic_names_the_tenant_with_a_default_and_an_allow_list(
    run_ctx: RunContext,
) -> None:
    prefix, cid = unique("m"), unique("c")
    options = {
        "topics": [f"{prefix}/#"],
        "topic_field": None,
        "client_id": cid,
        "tenancy": {
            "patterns": [f"{prefix}/tenants/{{tenant}}/#"],
            "default": "shared",
            "tenants": ["acme", "shared"],
        },
    }
    r = build(MqttReceiver, {**FAST, **options, "idle_timeout": 0.2})
    await take(r, run_ctx)  # the session exists: the broker keeps what follows for it
    await r.close()
    await asyncio.to_thread(
        mqtt_publish,
        [
            (f"{prefix}/tenants/acme/temp", b'{"c": 20}'),
            (f"{prefix}/tenants/acme/a/b/c", b'{"c": 21}'),
            (f"{prefix}/weather", b'{"c": 18}'),  # no tenant in the topic: the default
            (f"{prefix}/tenants/initech/temp", b'{"c": 99}'),  # not allowed: rejected
        ],
    )
    r = build(MqttReceiver, {**FAST, **options})
    rows = (await take(r, run_ctx)).drop_columns([LINE_COLUMN]).to_pylist()
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert sorted(rows, key=lambda x: x["c"]) == [
        {"c": 18, "tenant_id": "shared"},
        {"c": 20, "tenant_id": "acme"},
        {"c": 21, "tenant_id": "acme"},
    ]
    assert len(errors) == 1
    assert errors[0].reason.endswith(
        "tenant 'initech' is not taken by this receiver (tenancy.tenants)"
    )


@pytest.mark.parametrize(
    ("receiver", "options", "message"),
    [
        (
            MqttReceiver,
            {"topics": ["a/#"], "tenancy": {"patterns": ["a/#"]}},
            "exactly one {tenant}",
        ),
        (
            MqttReceiver,
            {"topics": ["a/#"], "tenancy": {"patterns": ["a/#/{tenant}"]}},
            "# may only be the last level",
        ),
        (
            NatsReceiver,
            {"subject": "a.>", "tenancy": {"patterns": ["a.x{tenant}.>"]}},
            "exactly one {tenant}",
        ),
        (
            NatsReceiver,
            {"subject": "a.>", "tenancy": {"patterns": ["a.{tenant}"], "default": "no way"}},
            "'no way' is not a tenant id",
        ),
        (NatsReceiver, {"subject": "a.>", "tenancy": {"pattern": "a.{tenant}"}}, "Extra inputs"),
    ],
)
def test_bad_topic_tenancy_is_refused(
    receiver: type, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        build(receiver, options)


DOCS = Path(__file__).resolve().parents[2] / "docs"


def first_yaml_after(page: str, heading: str) -> dict[str, object]:
    text = (DOCS / page).read_text()
    block = re.search(r"```yaml\n(.*?)```", text[text.index(heading) :], re.S)
    assert block is not None
    doc: dict[str, object] = yaml.safe_load(re.sub(r"\$\{env:(\w+)\}", r"\1", block.group(1)))
    return doc


def test_the_tenancy_examples_of_the_docs_are_valid_options() -> None:
    from quiver.ingest.nats import NatsReceiverConfig
    from quiver.ingest.otlp.config import OtlpSourceConfig

    otlp = first_yaml_after("ingest.md", "## Multi-tenancy")["source"]
    nats = first_yaml_after("ingest-brokers.md", "## Tenants from topics")["source"]
    assert isinstance(otlp, dict) and isinstance(nats, dict)
    tenancy = OtlpSourceConfig.model_validate(otlp["otlp"]).tenancy
    assert tenancy is not None and tenancy.overrides["initech"].item_burst == 2000
    topics = NatsReceiverConfig.model_validate(nats["nats"]).tenancy
    assert topics is not None and topics.patterns == ["tenants.{tenant}.>"]
