"""Tenants on OTAP streams: the stream's metadata names the tenant of all its batches, a
resource attribute that of each batch's rows; refusals and limits answer batch by batch."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from quiver.ingest.otap.encode import OtapEncoder
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2
from tests.ingest.conftest import Receiver, plain
from tests.ingest.test_otap import good_bar, stream
from tests.ingest.test_otlp_http import span, trace_request

_S = otap_pb2.StatusCode


def tenant_bar(batch_id: int, name: str, tenant: str | None) -> otap_pb2.BatchArrowRecords:
    """One span whose resource has the tenant.id ``tenant`` (None: none)."""
    request = trace_request(span(name))
    if tenant is not None:
        attr = request.resource_spans[0].resource.attributes.add()
        attr.key, attr.value.string_value = "tenant.id", tenant
    bar = OtapEncoder().traces(request)
    bar.batch_id = batch_id
    return bar


def test_the_stream_metadata_names_the_tenant_of_its_batches(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={}, tenancy={})
    answers = stream(
        rec, [good_bar(i, f"a{i}") for i in range(3)], metadata=(("x-scope-orgid", "acme"),)
    )
    assert [a.status_code for a in answers] == [_S.OK] * 3
    answers = stream(rec, [good_bar(7, "g")], metadata=(("x-scope-orgid", "globex"),))
    assert [a.status_code for a in answers] == [_S.OK]
    rows = plain(rec.stop()).to_pylist()
    assert sorted((r["span_name"], r["tenant_id"]) for r in rows) == [
        ("a0", "acme"),
        ("a1", "acme"),
        ("a2", "acme"),
        ("g", "globex"),
    ]


def test_batches_without_a_tenant_are_unauthenticated_one_by_one(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={}, tenancy={"tenants": ["acme"]})
    answers = stream(
        rec,
        [
            tenant_bar(1, "ok", "acme"),
            tenant_bar(2, "none", None),
            tenant_bar(3, "other", "initech"),
        ],
    )
    got = {a.batch_id: (a.status_code, a.status_message) for a in answers}
    assert got[1] == (_S.OK, "")
    assert got[2][0] == _S.UNAUTHENTICATED and "no tenant" in got[2][1]
    assert got[3][0] == _S.PERMISSION_DENIED and "'initech' is not taken" in got[3][1]
    assert [(r["span_name"], r["tenant_id"]) for r in plain(rec.stop()).to_pylist()] == [
        ("ok", "acme")
    ]


def test_a_stream_whose_key_is_bound_to_another_tenant_is_refused(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={}, auth={"api_keys": [{"key": "ka", "tenant": "acme"}]}, tenancy={})
    with pytest.raises(grpc.RpcError) as caught:
        stream(rec, [good_bar()], metadata=(("x-api-key", "ka"), ("x-scope-orgid", "globex")))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    [answer] = stream(rec, [good_bar()], metadata=(("x-api-key", "ka"),))
    assert answer.status_code == _S.OK
    assert plain(rec.stop()).column("tenant_id").to_pylist() == ["acme"]


def test_a_tenant_over_its_limit_is_resource_exhausted_per_batch(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver(arrow={}, tenancy={"limits": {"requests_per_second": 0.1, "request_burst": 2}})
    slow = stream(rec, [good_bar(i) for i in range(4)], metadata=(("x-scope-orgid", "slow"),))
    other = stream(rec, [good_bar(9)], metadata=(("x-scope-orgid", "other"),))
    assert sorted(a.status_code for a in slow) == [
        _S.OK,
        _S.OK,
        _S.RESOURCE_EXHAUSTED,
        _S.RESOURCE_EXHAUSTED,
    ]
    assert [a.status_code for a in other] == [_S.OK]
    counts = plain(rec.stop()).group_by("tenant_id").aggregate([("span_name", "count")])
    assert dict(
        zip(
            counts.column("tenant_id").to_pylist(),
            counts.column("span_name_count").to_pylist(),
            strict=True,
        )
    ) == {"slow": 2, "other": 1}
