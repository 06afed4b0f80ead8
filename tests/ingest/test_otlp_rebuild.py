"""Rows of the telemetry layout rebuilt into OTLP requests convert back to the same rows."""

from __future__ import annotations

import pyarrow as pa
import pytest

from quiver.ingest.otlp.convert import convert_request
from quiver.ingest.otlp.decode import decode_body
from quiver.ingest.otlp.rebuild import (
    RebuildError,
    item_count,
    rebuild_requests,
    request_json,
    signal_rows,
)

from .conftest import plain
from .telemetry_rows import example_rows, rows_of, span_request


def round_trip(batch: pa.RecordBatch, json: bool) -> pa.Table:
    out = []
    for signal, rows in signal_rows(batch).items():
        request = rebuild_requests(signal, rows)
        assert item_count(request) == len(rows)
        body = request_json(request) if json else request.SerializeToString()
        again = convert_request(signal, decode_body(signal, body, json=json))
        assert again.rejected == 0, again.error_message
        assert again.batch is not None
        out.append(again.batch)
    return pa.Table.from_batches(out)


@pytest.mark.parametrize("json", [False, True], ids=["proto", "json"])
def test_every_signal_of_the_examples_comes_back_as_the_same_rows(json: bool) -> None:
    batch = example_rows()
    assert set(batch.column("signal").to_pylist()) == {"traces", "metrics", "logs"}
    assert plain(round_trip(batch, json)).to_pylist() == plain(pa.table(batch)).to_pylist()


def test_spans_of_many_resources_keep_their_order_and_services() -> None:
    batch = rows_of("traces", span_request(300, services=4))
    back = round_trip(batch, json=False)
    assert back.column("span_id").to_pylist() == batch.column("span_id").to_pylist()
    assert back.column("service_name").to_pylist() == batch.column("service_name").to_pylist()


def test_a_service_name_set_by_a_processor_becomes_the_resource_service() -> None:
    batch = rows_of("traces", span_request(2, services=1))
    renamed = batch.set_column(
        batch.schema.get_field_index("service_name"), "service_name", pa.array(["x", "x"])
    )
    renamed = renamed.set_column(
        batch.schema.get_field_index("resource_attributes"),
        "resource_attributes",
        pa.array([[], []], batch.schema.field("resource_attributes").type),
    )
    assert round_trip(renamed, json=False).column("service_name").to_pylist() == ["x", "x"]


def test_rows_without_a_signal_column_are_refused() -> None:
    with pytest.raises(RebuildError, match="no `signal` column"):
        signal_rows(pa.record_batch({"a": [1]}))


def test_an_id_that_is_not_hex_names_its_row() -> None:
    batch = rows_of("traces", span_request(2, services=1))
    bad = batch.set_column(
        batch.schema.get_field_index("trace_id"), "trace_id", pa.array(["ab" * 16, "zz"])
    )
    with pytest.raises(RebuildError, match="row 2: trace_id 'zz' is not a hex string"):
        rebuild_requests("traces", signal_rows(bad)["traces"])


def test_a_slice_of_a_batch_rebuilds_its_own_rows() -> None:
    batch = rows_of("traces", span_request(10, services=2)).slice(3, 4)
    back = round_trip(batch, json=False)
    assert plain(back).to_pylist() == plain(pa.table(batch)).to_pylist()


def test_metrics_of_many_scopes_each_stay_in_their_own_scope() -> None:
    # a scope's metrics were once found by id() of its message: a later scope's message
    # could get a freed one's id() and have its points added to another scope's metric
    metric_rows = signal_rows(example_rows())["metrics"]
    gauge = next(r for r in metric_rows if r["metric_type"] == "gauge")
    rows = [{**gauge, "scope_name": f"scope-{i}"} for i in range(200)]
    request = rebuild_requests("metrics", rows)
    scopes = [s for r in request.resource_metrics for s in r.scope_metrics]
    assert [s.scope.name for s in scopes] == [f"scope-{i}" for i in range(200)]
    assert [len(s.metrics) for s in scopes] == [1] * 200
    assert [len(s.metrics[0].gauge.data_points) for s in scopes] == [1] * 200
