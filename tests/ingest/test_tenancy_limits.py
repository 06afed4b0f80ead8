"""Per-tenant rate limits (429 / RESOURCE_EXHAUSTED with a retry hint for the tenant over its
limit, the others flowing on) and per-tenant metrics with a capped number of labels."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2

from quiver.ingest.tenancy import Tenancy, TenancyConfig, TenantLimitError
from quiver.runtime.metrics import exposed
from tests.ingest.conftest import Receiver, plain
from tests.ingest.sdk_clients import send_traces
from tests.ingest.test_otlp_grpc import TRACES, details, failure
from tests.ingest.test_otlp_http import PROTOBUF, proto_status, span, trace_request

from .conftest import unique


def post(rec: Receiver, tenant: str) -> httpx.Response:
    body = trace_request(span("x")).SerializeToString()
    return httpx.post(
        f"{rec.http_url}/v1/traces", content=body, headers={**PROTOBUF, "X-Scope-OrgID": tenant}
    )


def tenant_metric(name: str, **labels: str) -> float:
    """The value of a tenancy metric in the registries served on /metrics."""
    for registry in exposed():
        value = registry.get_sample_value(name, labels)
        if value is not None:
            return value
    return 0.0


def test_a_tenant_over_its_limit_gets_429_and_resource_exhausted_while_another_flows(
    receiver: Callable[..., Receiver],
) -> None:
    slow, fast = unique("slow"), unique("fast")
    rec = receiver(tenancy={"overrides": {slow: {"requests_per_second": 0.2, "request_burst": 1}}})
    assert post(rec, slow).status_code == 200  # the burst
    limited = post(rec, slow)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert f"tenant {slow!r} is over its limit of 0.2 requests per second" in proto_status(limited)

    error = failure(
        rec, TRACES, trace_request(span("y")).SerializeToString(), (("x-scope-orgid", slow),)
    )
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_details_pb2.RetryInfo()
    assert details(error).details[0].Unpack(info)
    assert 0 < info.retry_delay.seconds + info.retry_delay.nanos / 1e9 <= 5

    # the other tenant is not held back, over both transports
    sent = [
        *send_traces("grpc", rec.grpc_port, headers=(("x-scope-orgid", fast),)),
        *send_traces("http", rec.http_port, headers={"X-Scope-OrgID": fast}),
    ]
    assert (
        tenant_metric(
            "quiver_ingest_tenant_refused_requests_total", tenant=slow, reason="rate_limited"
        )
        == 2
    )
    assert tenant_metric("quiver_ingest_tenant_items_total", tenant=fast, signal="traces") == 6
    assert tenant_metric("quiver_ingest_tenant_items_total", tenant=slow, signal="traces") == 1
    table = plain(rec.stop()).to_pylist()
    assert sorted(r["span_id"] for r in table if r["tenant_id"] == fast) == sorted(
        s.span_id for s in sent
    )
    assert [r["span_name"] for r in table if r["tenant_id"] == slow] == ["x"]


def test_items_per_second_counts_spans_and_a_full_bucket_lets_a_large_request_pass() -> None:
    tenancy = Tenancy(
        TenancyConfig.model_validate({"limits": {"items_per_second": 100, "item_burst": 10}})
    )
    tenancy._limiter.admit({"a": 25})  # larger than the burst: passes on a full bucket
    with pytest.raises(TenantLimitError) as caught:
        tenancy._limiter.admit({"a": 1})
    assert 0.15 < caught.value.retry_after <= 0.16  # 16 tokens owed at 100 a second
    tenancy._limiter.admit({"b": 10})  # another tenant has a bucket of its own
    time.sleep(caught.value.retry_after)
    tenancy._limiter.admit({"a": 1})


def test_a_request_of_two_tenants_takes_nothing_when_one_is_over() -> None:
    tenancy = Tenancy(
        TenancyConfig.model_validate({"limits": {"items_per_second": 1, "item_burst": 5}})
    )
    tenancy._limiter.admit({"a": 5})
    with pytest.raises(TenantLimitError, match="tenant 'a'"):
        tenancy._limiter.admit({"b": 5, "a": 1})
    tenancy._limiter.admit({"b": 5})  # b's bucket was left full


def test_metric_labels_are_capped_and_the_rest_share_other() -> None:
    tenancy = Tenancy(TenancyConfig.model_validate({"max_metric_tenants": 3}))
    for i in range(10):
        tenancy.taken({f"t{i}": 2}, "logs")
    value = tenancy.metrics.value
    assert [
        value("quiver_ingest_tenant_items_total", tenant=f"t{i}", signal="logs") for i in range(4)
    ] == [2, 2, 2, 0]
    assert value("quiver_ingest_tenant_items_total", tenant="_other", signal="logs") == 14
    tenancy.taken({"t1": 1}, "logs")  # a tenant labelled before keeps its label
    assert value("quiver_ingest_tenant_items_total", tenant="t1", signal="logs") == 3
    labels = {
        s.labels["tenant"]
        for m in tenancy.metrics.registry.collect()
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert labels == {"t0", "t1", "t2", "_other"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"limits": {}}, "a limit needs requests_per_second, items_per_second or both"),
        (
            {"limits": {"item_burst": 3, "requests_per_second": 1}},
            "item_burst needs items_per_second",
        ),
        ({"overrides": {"a b": {"items_per_second": 1}}}, "'a b' is not a tenant id"),
        ({"tenants": ["a"], "default": "b"}, "default 'b' is not one of tenants"),
        ({"sources": ["header", "header"]}, "header is listed twice"),
        ({"sources": ["cookie"]}, "Input should be 'header' or 'resource_attribute'"),
        ({"max_tenants": 3}, "Extra inputs are not permitted"),
    ],
)
def test_tenancy_options_are_checked(options: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        TenancyConfig.model_validate(options)
