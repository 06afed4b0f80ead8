"""Tenants on the OTLP receivers, with the SDK's exporters as clients: resolved from the
X-Scope-OrgID header / metadata, the tenant.id resource attribute or the API key, written to
Parquet partitioned by tenant, and refused with the OTLP specification's status codes."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import grpc
import httpx
import pyarrow.parquet as pq
import pytest

from quiver.ingest.otlp.convert import convert_request
from tests.e2e.conftest import quiver_command, quiver_env
from tests.ingest.conftest import Receiver, plain, wait_listening
from tests.ingest.processes import finish
from tests.ingest.sdk_clients import send_logs, send_metrics, send_traces
from tests.ingest.test_otlp_grpc import TRACES, failure
from tests.ingest.test_otlp_http import PROTOBUF, proto_status, span, trace_request

from ..pipeline.conftest import PG_URL
from .conftest import free_port, unique

PARTITIONED = {
    "parquet": {
        "path": "out/tenants/",
        "partition_by": ["tenant_id", "service_name"],
        "time_partition": {"column": "time", "granularity": "day"},
    }
}


def rows(table: Any) -> list[dict[str, Any]]:
    return list(plain(table).to_pylist())


def by_tenant(table: Any, signal: str = "traces") -> dict[str, set[str]]:
    """Span ids (or, for other signals, service names) by tenant."""
    out: dict[str, set[str]] = {}
    for r in rows(table):
        if r["signal"] == signal:
            out.setdefault(str(r["tenant_id"]), set()).add(
                r["span_id"] if signal == "traces" else r["service_name"]
            )
    return out


def resource_request(*tenants: str | None) -> bytes:
    """One span per resource, each resource with the tenant.id given (None: none)."""
    request = trace_request()
    del request.resource_spans[:]
    for i, tenant in enumerate(tenants):
        rs = request.resource_spans.add()
        if tenant is not None:
            attr = rs.resource.attributes.add()
            attr.key, attr.value.string_value = "tenant.id", tenant
        rs.scope_spans.add().spans.append(span(f"s{i}", span_id=bytes([i + 1]) * 8))
    return cast(bytes, request.SerializeToString())


def post(rec: Receiver, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{rec.http_url}/v1/traces", content=body, headers={**PROTOBUF, **(headers or {})}
    )


def test_two_tenants_over_grpc_and_http_land_in_their_own_parquet_partitions(
    receiver: Callable[..., Receiver],
) -> None:
    acme, globex = unique("acme"), unique("globex")
    rec = receiver(sink=PARTITIONED, tenancy={})
    by_grpc = send_traces("grpc", rec.grpc_port, "cart", headers=(("x-scope-orgid", acme),))
    by_http = send_traces("http", rec.http_port, "cart", headers={"X-Scope-OrgID": globex})
    send_metrics("grpc", rec.grpc_port, "meter", headers=(("x-scope-orgid", acme),))
    send_logs("http", rec.http_port, "logger", headers={"X-Scope-OrgID": globex})
    table = rec.stop()

    assert by_tenant(table) == {
        acme: {s.span_id for s in by_grpc},
        globex: {s.span_id for s in by_http},
    }
    assert by_tenant(table, "metrics") == {acme: {"meter"}}
    assert by_tenant(table, "logs") == {globex: {"logger"}}
    # one directory per tenant, then service, then day; the files hold that tenant's rows only
    out = rec.out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"tenant_id={acme}", f"tenant_id={globex}"]
    )
    assert sorted(p.name for p in (out / f"tenant_id={acme}").iterdir()) == [
        "service_name=cart",
        "service_name=meter",
    ]
    files = list((out / f"tenant_id={globex}" / "service_name=cart").glob("day=*/*.parquet"))
    assert len(files) == 1
    spans = pq.read_table(files[0])
    assert set(spans.column("span_id").to_pylist()) == {s.span_id for s in by_http}
    assert "tenant_id" not in spans.column_names  # carried by the directory name


def test_a_request_without_a_tenant_is_refused_401_and_unauthenticated(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(tenancy={"sources": ["header"]})
    response = post(rec, trace_request(span("x")).SerializeToString())
    assert response.status_code == 401
    assert "no tenant: send an API key bound to a tenant or the x-scope-orgid header" in (
        proto_status(response)
    )
    error = failure(rec, TRACES, trace_request(span("x")).SerializeToString())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "no tenant" in error.details()
    assert rec.stop().num_rows == 0


def test_rows_without_a_tenant_go_to_the_default_tenant(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(tenancy={"default": "shared"})
    post(rec, resource_request("blue", None)).raise_for_status()
    send_traces("grpc", rec.grpc_port, "cart")
    table = rec.stop()
    assert {r["tenant_id"] for r in rows(table) if r["service_name"] == "cart"} == {"shared"}
    assert sorted(
        (r["span_name"], r["tenant_id"]) for r in rows(table) if r["span_name"] in ("s0", "s1")
    ) == [
        ("s0", "blue"),
        ("s1", "shared"),
    ]


def test_the_header_wins_over_the_resource_attribute_in_the_default_order_and_not_when_reversed(
    receiver: Callable[..., Receiver],
) -> None:
    header_first = receiver(tenancy={})
    post(header_first, resource_request("red", None), {"X-Scope-OrgID": "green"}).raise_for_status()
    assert {r["tenant_id"] for r in rows(header_first.stop())} == {"green"}

    resource_first = receiver(tenancy={"sources": ["resource_attribute", "header"]})
    post(
        resource_first, resource_request("red", None), {"X-Scope-OrgID": "green"}
    ).raise_for_status()
    got = sorted((r["span_name"], r["tenant_id"]) for r in rows(resource_first.stop()))
    assert got == [("s0", "red"), ("s1", "green")]


@pytest.mark.parametrize(
    ("tenancy", "headers", "status", "code", "message"),
    [
        ({}, {"X-Scope-OrgID": "../etc"}, 400, "INVALID_ARGUMENT", "is not a tenant id"),
        ({"tenants": ["acme"]}, {"X-Scope-OrgID": "other"}, 403, "PERMISSION_DENIED", "not taken"),
    ],
    ids=["invalid-id", "not-allowed"],
)
def test_a_bad_or_unknown_tenant_is_refused_on_both_receivers(
    receiver: Callable[..., Receiver],
    tenancy: dict[str, Any],
    headers: dict[str, str],
    status: int,
    code: str,
    message: str,
) -> None:
    rec = receiver(tenancy=tenancy)
    body = trace_request(span("x")).SerializeToString()
    response = post(rec, body, headers)
    assert response.status_code == status
    assert message in proto_status(response)
    metadata = tuple((k.lower(), v) for k, v in headers.items())
    error = failure(rec, TRACES, body, metadata)
    assert error.code() == grpc.StatusCode[code]
    assert message in error.details()
    assert rec.stop().num_rows == 0


KEY_A, KEY_B = "key-a-71c2", "key-b-09fe"


def bound_keys(on_conflict: str = "refuse") -> dict[str, Any]:
    return {
        "auth": {
            "api_keys": [{"key": KEY_A, "tenant": "acme"}, {"key": KEY_B, "tenant": "globex"}]
        },
        "tenancy": {"on_conflict": on_conflict},
    }


def test_a_key_bound_to_a_tenant_cannot_send_as_another(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(**bound_keys())
    sent_a = send_traces("grpc", rec.grpc_port, "a", headers=(("x-api-key", KEY_A),))
    sent_b = send_traces("http", rec.http_port, "b", headers={"x-api-key": KEY_B})
    # the same tenant named again is fine
    send_traces("http", rec.http_port, "a2", headers={"x-api-key": KEY_A, "X-Scope-OrgID": "acme"})

    body = trace_request(span("spoof")).SerializeToString()
    response = post(rec, body, {"x-api-key": KEY_A, "X-Scope-OrgID": "globex"})
    assert response.status_code == 403
    assert "belongs to tenant 'acme' and cannot send as 'globex'" in proto_status(response)
    error = failure(rec, TRACES, body, (("x-api-key", KEY_A), ("x-scope-orgid", "globex")))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # a resource attribute is a claim too
    response = post(rec, resource_request("globex"), {"x-api-key": KEY_A})
    assert response.status_code == 403

    got = by_tenant(rec.stop())
    assert got["globex"] == {s.span_id for s in sent_b}
    assert {s.span_id for s in sent_a} <= got["acme"]
    assert len(got["acme"]) == 6


def test_with_on_conflict_key_the_keys_tenant_is_used(receiver: Callable[..., Receiver]) -> None:
    rec = receiver(**bound_keys("key"))
    post(
        rec, resource_request("globex"), {"x-api-key": KEY_A, "X-Scope-OrgID": "globex"}
    ).raise_for_status()
    assert {r["tenant_id"] for r in rows(rec.stop())} == {"acme"}


def test_keys_bound_to_tenants_need_tenancy(tmp_path: Path) -> None:
    from quiver.ingest.otlp.config import OtlpSourceConfig

    with pytest.raises(ValueError, match="auth binds keys to tenants but tenancy is not set"):
        OtlpSourceConfig.model_validate(
            {"http": {}, "auth": {"api_keys": [{"key": "k", "tenant": "a"}]}}
        )


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "otlp-tenants"


def test_the_tenants_example_partitions_by_tenant_and_sets_the_audit_tenant_apart(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "otlp-tenants"
    shutil.copytree(EXAMPLE, folder)
    grpc_port, http_port = free_port(), free_port()
    keys = {"ACME_KEY": "k-acme", "GLOBEX_KEY": "k-globex", "SHARED_KEY": "k-shared"}
    env = quiver_env({**keys, "OTLP_GRPC_PORT": str(grpc_port), "OTLP_HTTP_PORT": str(http_port)})
    proc = subprocess.Popen(
        [*quiver_command(), "run", "pipeline.yaml", "--quiet"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(grpc_port, 60)
        wait_listening(http_port, 60)
        acme = send_traces("grpc", grpc_port, "shop", headers=(("x-api-key", "k-acme"),))
        globex = send_traces("http", http_port, "shop", headers={"x-api-key": "k-globex"})
        audit = send_traces(
            "http", http_port, "ledger", headers={"x-api-key": "k-shared", "X-Scope-OrgID": "audit"}
        )
        spoof = httpx.post(
            f"http://127.0.0.1:{http_port}/v1/traces",
            content=trace_request(span("x")).SerializeToString(),
            headers={**PROTOBUF, "x-api-key": "k-acme", "X-Scope-OrgID": "globex"},
        )
        assert spoof.status_code == 403
        proc.send_signal(signal.SIGINT)
        output, _ = finish(proc, 60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output.decode()
    table = pq.read_table(folder / "out" / "telemetry")
    assert by_tenant(table) == {
        "acme": {s.span_id for s in acme},
        "globex": {s.span_id for s in globex},
    }
    assert sorted(
        pq.read_table(folder / "out" / "audit.parquet").column("span_id").to_pylist()
    ) == (sorted(s.span_id for s in audit))


async def _spool_old_layout(path: Path) -> None:
    from quiver.ingest.spool import Spool

    spool = Spool(str(path), max_bytes=1 << 24, segment_bytes=1 << 20, fsync=False)
    spool.open()
    batch = convert_request("traces", trace_request(span("from before"))).batch
    assert batch is not None
    await spool.append(batch.drop_columns(["tenant_id"]))  # the layout before tenancy
    spool.close()


def test_batches_spooled_before_the_tenant_column_are_handed_on_with_it(
    receiver: Callable[..., Receiver], tmp_path: Path
) -> None:
    asyncio.run(_spool_old_layout(tmp_path / "spool"))
    rec = receiver(sink=PARTITIONED, tenancy={}, spool={"path": str(tmp_path / "spool")})
    post(rec, trace_request(span("now")).SerializeToString(), {"X-Scope-OrgID": "acme"})
    got = sorted((r["span_name"], r["tenant_id"]) for r in rows(rec.stop()))
    assert got == [("from before", None), ("now", "acme")]


def test_a_database_table_sink_gets_the_tenant_column(receiver: Callable[..., Receiver]) -> None:
    import adbc_driver_postgresql.dbapi as pg

    schema = unique("tenancy")
    with pg.connect(PG_URL, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}"')
        try:
            rec = receiver(
                sink={"database": {"url": PG_URL, "table": f"{schema}.spans", "mode": "create"}},
                processors=[{"select": {"columns": ["span_name", "span_id", "tenant_id"]}}],
                tenancy={},
            )
            acme = send_traces("grpc", rec.grpc_port, headers=(("x-scope-orgid", "acme"),))
            globex = send_traces("http", rec.http_port, headers={"X-Scope-OrgID": "globex"})
            rec.stop()
            cur.execute(f'SELECT tenant_id, span_id FROM "{schema}".spans')
            got = sorted(cur.fetchall())
        finally:
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
    assert got == sorted(
        [("acme", s.span_id) for s in acme] + [("globex", s.span_id) for s in globex]
    )
