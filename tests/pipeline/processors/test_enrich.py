"""The enrich processor: static, host, service, time and looked-up values."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import cast

import pyarrow as pa
import pytest
from pydantic import ValidationError

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.enrich import EnrichConfig, EnrichProcessor
from quiver.pipeline.processors.field_paths import parse_path, read_path
from quiver.runtime.errors import ConfigError

from .contract import make, process
from .telemetry_rows import spans


def _run(
    options: dict[str, object], ctx: RunContext, b: pa.RecordBatch | None = None
) -> pa.RecordBatch:
    out = process(make(EnrichProcessor, options), spans() if b is None else b, ctx)
    assert out.batch is not None
    return out.batch


def _at(batch: pa.RecordBatch, path: str) -> list[object]:
    return cast(list[object], read_path(batch, parse_path(path)).to_pylist())


def test_static_values_and_the_host_name_are_added(run_ctx: RunContext) -> None:
    out = _run(
        {
            "static": {"resource.env": "prod", "attributes.v": 2, "team": "core"},
            "host_name": "host",
        },
        run_ctx,
    )
    assert _at(out, "resource.env") == ["prod"] * 5
    assert _at(out, "attributes.v") == ["2"] * 5
    assert _at(out, "team") == ["core"] * 5
    assert _at(out, "host") == [socket.gethostname()] * 5


def test_service_fills_only_unset_names(run_ctx: RunContext) -> None:
    b = spans()
    b = b.set_column(2, "service_name", pa.array([None, "cart", None, None, None], pa.string()))
    out = _run({"service": "fallback"}, run_ctx, b)
    assert _at(out, "service_name") == ["fallback", "cart", "fallback", "fallback", "fallback"]
    assert _at(out, "resource.service.name")[:2] == ["checkout", "checkout"]
    plain = pa.RecordBatch.from_pydict({"x": [1]})
    assert _at(_run({"service": "s"}, run_ctx, plain), "service_name") == ["s"]


def test_timestamp_is_the_processing_time(run_ctx: RunContext) -> None:
    before = dt.datetime.now(dt.UTC)
    out = _run({"timestamp": "received", "static": {}}, run_ctx)
    stamps = _at(out, "received")
    assert out.schema.field("received").type == pa.timestamp("ns", tz="UTC")
    assert all(before <= s <= dt.datetime.now(dt.UTC) for s in stamps)  # type: ignore[operator]
    text = _at(_run({"timestamp": "attributes.received"}, run_ctx), "attributes.received")
    assert dt.datetime.fromisoformat(str(text[0])) >= before


def test_lookup_joins_a_csv_on_a_field_path(run_ctx: RunContext) -> None:
    Path(run_ctx.base_dir, "owners.csv").write_text("service,owner,tier\ncheckout,payments,1\n")
    out = _run(
        {
            "lookup": {
                "file": "owners.csv",
                "key": "resource.service.name",
                "on": "service",
                "fields": {"owner": "attributes.owner", "tier": "tier"},
            }
        },
        run_ctx,
    )
    assert _at(out, "attributes.owner") == ["payments", "payments", None, "payments", None]
    assert _at(out, "tier") == [1, 1, None, 1, None]
    assert _at(out, "attributes.http.method")[0] == "GET"


def test_lookup_problems_are_reported_before_the_run(run_ctx: RunContext) -> None:
    Path(run_ctx.base_dir, "dupes.csv").write_text("service,owner\na,x\na,y\n")
    proc = make(EnrichProcessor, {"lookup": {"file": "dupes.csv", "key": "k", "on": "service"}})
    assert "not unique" in proc.check(run_ctx)[0].message
    proc = make(EnrichProcessor, {"lookup": {"file": "dupes.csv", "key": "k", "on": "svc"}})
    assert "lacks column(s) svc" in proc.check(run_ctx)[0].message
    proc = make(EnrichProcessor, {"lookup": {"file": "none.csv", "key": "k", "on": "svc"}})
    with pytest.raises(ConfigError, match="not found"):
        proc._load(run_ctx)


def test_a_malformed_target_is_refused_with_its_location() -> None:
    with pytest.raises(ValidationError) as info:
        EnrichConfig.model_validate({"lookup": {"file": "f", "key": "attributes[x", "on": "k"}})
    assert info.value.errors()[0]["loc"] == ("lookup", "key")
