"""The OTAP column work without a server: payloads decoded in process, each result compared
with what a slower, plainer reading of the same payload gives."""

from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from quiver.ingest.otap import columns
from quiver.ingest.otap.columns import Payload
from quiver.ingest.otap.encode import OtapEncoder
from quiver.ingest.otap.proto import arrow_service_pb2 as otap_pb2
from quiver.ingest.otap.service import decode_batch
from quiver.ingest.otap.streams import IpcStreams
from tests.ingest.test_otlp_http import span


def request(services: list[str], extra: dict[str, str] | None = None) -> ExportTraceServiceRequest:
    """Two spans for each of ``services`` (one resource each), with ``extra`` resource
    attributes."""
    out = ExportTraceServiceRequest()
    for n, service in enumerate(services):
        rs = out.resource_spans.add()
        for key, value in {"service.name": service, **(extra or {})}.items():
            attr = rs.resource.attributes.add()
            attr.key, attr.value.string_value = key, value
        scope = rs.scope_spans.add()
        scope.scope.name = "tracer"
        attr = scope.scope.attributes.add()
        attr.key, attr.value.int_value = "scope.n", n
        scope.spans.extend(
            span(f"{service}-{i}", span_id=bytes([n + 1, i + 1]) * 4) for i in (0, 1)
        )
    return out


def decoded(bars: list[otap_pb2.BatchArrowRecords]) -> list[dict[str, list[Any]]]:
    """The resource columns of each batch, decoded on one stream (as the receiver does)."""
    streams = IpcStreams("traces")
    out = []
    for bar in bars:
        batch = decode_batch(streams, bar)
        assert batch is not None
        out.append(
            {
                name: batch.column(name).to_pylist()
                for name in ("service_name", "resource_attributes", "scope_attributes")
            }
        )
    return out


def test_resources_repeated_batch_after_batch_are_read_anew_whenever_they_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests = [
        request(["a", "b"]),
        request(["a", "b"]),  # the same resources: the maps of the first batch serve again
        request(["a", "c"]),  # same ids, another service.name
        request(["a", "c"], {"region": "eu"}),  # one attribute more
        request(["a"]),  # fewer resources
        request(["a", "c"], {"region": "eu"}),
    ]
    encoder = OtapEncoder()
    bars = [encoder.traces(r) for r in requests]
    read: list[str] = []  # the attribute tables decoded, not reused
    runs = columns.attribute_runs

    def counted_runs(t: Payload) -> np.ndarray:
        read.append(t.name)
        return runs(t)

    monkeypatch.setattr(columns, "attribute_runs", counted_runs)
    got = decoded(bars)
    monkeypatch.undo()
    # resources reused in batch 1; scopes (the same two until batch 4) in batches 1 to 3
    assert read.count("RESOURCE_ATTRS") == 5
    assert read.count("SCOPE_ATTRS") == 3
    # each batch alone, on a stream of its own: nothing remembered from an earlier one
    alone = [decoded([OtapEncoder().traces(r)])[0] for r in requests]
    assert got == alone
    assert got[2]["service_name"] == ["a", "a", "c", "c"]
    assert got[3]["resource_attributes"][3] == [("region", "eu"), ("service.name", "c")]
    assert got[4]["service_name"] == ["a", "a"]
    assert got[1]["scope_attributes"] == [[("scope.n", "0")]] * 2 + [[("scope.n", "1")]] * 2


def test_a_resource_double_of_the_other_sign_of_zero_is_not_taken_for_the_same() -> None:
    def weights(value: float) -> ExportTraceServiceRequest:
        out = request(["a"])
        attr = out.resource_spans[0].resource.attributes.add()
        attr.key, attr.value.double_value = "weight", value
        return out

    encoder = OtapEncoder()
    got = decoded([encoder.traces(weights(w)) for w in (0.0, -0.0, -0.0, 0.0, float("nan"))])
    texts = [dict(row["resource_attributes"][0])["weight"] for row in got]
    assert texts == ["0.0", "-0.0", "-0.0", "0.0", "NaN"]


def test_a_repeated_resource_payload_with_a_bad_parent_id_is_still_refused() -> None:
    streams = IpcStreams("traces")
    encoder = OtapEncoder()
    assert decode_batch(streams, encoder.traces(request(["a", "b"]))) is not None
    bad = encoder.traces(request(["a"]))  # one resource, its attributes as before
    assert decode_batch(streams, bad) is not None
    again = encoder.traces(request(["a", "b"]))
    # the resource ids of the spans say 0 only: attributes of resource 1 have no owner
    for payload in again.arrow_payloads:
        if payload.type == otap_pb2.ArrowPayloadType.SPANS:
            spans_only = encoder.traces(request(["a"]))
            payload.record = next(
                p.record
                for p in spans_only.arrow_payloads
                if p.type == otap_pb2.ArrowPayloadType.SPANS
            )
    with pytest.raises(columns.OtapDataError, match="RESOURCE_ATTRS row 1: parent_id 1"):
        decode_batch(streams, again)


def _reference_equal(column: pa.Array) -> list[bool]:
    values = column.to_pylist()
    return [
        a is not None and b is not None and a == b and a == a  # NaN equals nothing
        for a, b in zip(values[1:], values[:-1], strict=True)
    ]


@pytest.mark.parametrize(
    "column",
    [
        pa.array([1, 1, None, None, 2, 2, 0, 0], pa.int64()),
        pa.array([3, 3, 3], pa.uint8()),
        pa.array([None, 0, 0, None], pa.uint16()),
        pa.array([0.5, 0.5, float("nan"), float("nan"), None, 0.0, -0.0], pa.float64()),
        pa.array([True, True, None, False, False, None, None, True], pa.bool_()),
        pa.array([False, False, True], pa.bool_()),
        pa.array(["x", "x", None, None, "", ""]),
        pa.array([1, 1, 2, 2, 3, 3], pa.int32()).slice(1, 4),
        pa.array([None, None, True, True], pa.bool_()).slice(1),
    ],
    ids=lambda c: str(c.type),
)
def test_equal_to_the_row_before_matches_a_plain_comparison(column: pa.Array) -> None:
    assert columns._equal_to_previous(column).tolist() == _reference_equal(column)


def _reference_runs(batch: pa.RecordBatch) -> list[bool]:
    """Section 6.4.3: same type, key and active value (never for empty, map, slice)."""
    rows = batch.to_pylist()
    active = {1: "str", 2: "int", 3: "double", 4: "bool", 7: "bytes"}
    same = [False]
    for prev, row in itertools.pairwise(rows):
        name = active.get(row["type"]) if row["type"] is not None else None
        same.append(
            name is not None
            and row["type"] == prev["type"]
            and row["key"] == prev["key"]
            and row.get(name) is not None
            and row.get(name) == prev.get(name)
        )
    return same


def _attrs(kinds: list[int | None], rng: random.Random) -> pa.RecordBatch:
    n = len(kinds)
    pick = [rng.randrange(3) for _ in range(n)]

    def column(kind: int, make: Any, kind_type: pa.DataType) -> pa.Array:
        return pa.array(
            [make(p) if k == kind else None for k, p in zip(kinds, pick, strict=True)], kind_type
        )

    return pa.record_batch(
        {
            "parent_id": pa.array(range(n), pa.uint16()),
            "key": pa.DictionaryArray.from_arrays(
                pa.array([rng.randrange(2) for _ in range(n)], pa.uint8()), pa.array(["k", "j"])
            ),
            "type": pa.array(kinds, pa.uint8()),
            "str": column(1, lambda p: "abc"[p], pa.string()),
            "int": column(2, lambda p: p - 1, pa.int64()),
            "double": column(3, lambda p: [0.5, float("nan"), 2.0][p], pa.float64()),
            "bool": column(4, lambda p: p == 1, pa.bool_()),
            "bytes": column(7, lambda p: bytes([p]), pa.binary()),
        }
    )


@pytest.mark.parametrize("sort", [True, False], ids=["sorted by type", "in any order"])
def test_attribute_runs_match_the_specifications_rule(sort: bool) -> None:
    rng = random.Random(7)
    for _ in range(40):
        kinds: list[int | None] = [
            rng.choice([0, 1, 2, 3, 4, 5, 7]) for _ in range(rng.randrange(1, 30))
        ]
        if sort:
            kinds.sort(key=lambda k: k or 0)
        elif rng.random() < 0.3:
            kinds[rng.randrange(len(kinds))] = None
        batch = _attrs(kinds, rng)
        got = columns.attribute_runs(Payload("SPAN_ATTRS", batch, {}))
        key = batch.column("key").dictionary_decode()
        plain = batch.set_column(1, "key", key)
        assert got.tolist() == _reference_runs(plain), kinds


def test_equal_to_previous_without_rows_or_with_one() -> None:
    for rows in (0, 1):
        for column in (pa.array([7] * rows, pa.int64()), pa.array(["x"] * rows)):
            assert columns._equal_to_previous(column).tolist() == []


@pytest.mark.parametrize(
    ("rows", "parents"),
    [(0, 0), (1, 1), (7, 1), (300, 5), (70_000, 40_000), (5, 1 << 40), (3, 1 << 63)],
    ids=["no rows", "one row", "one parent", "few", "33-bit keys", "43-bit keys", "past 64 bits"],
)
def test_attribute_rows_are_put_in_parent_order_keeping_their_payload_order(
    rows: int, parents: int
) -> None:
    rng = np.random.default_rng(rows)
    owners = rng.integers(0, max(parents, 1), rows, dtype=np.uint64).astype(np.int64)
    if rows > 2:
        owners[: rows // 2] = owners[0]  # runs of one parent, as attribute tables have
    order = columns.stable_order(owners, parents)
    assert order.tolist() == sorted(range(rows), key=lambda i: int(owners[i]))


def _ipc(batch: pa.RecordBatch) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue())


def _plain(name: str, values: list[int], kind: pa.DataType) -> tuple[pa.Field, pa.Array]:
    return pa.field(name, kind, metadata={"encoding": "plain"}), pa.array(values, kind)


def _batch(*columns: tuple[pa.Field, pa.Array] | tuple[str, pa.Array]) -> pa.RecordBatch:
    fields = [c[0] if isinstance(c[0], pa.Field) else pa.field(c[0], c[1].type) for c in columns]
    return pa.RecordBatch.from_arrays([c[1] for c in columns], schema=pa.schema(fields))


@pytest.mark.parametrize(
    ("parents", "lists"),
    [
        ([0, 0, 2], [["e0", "e1"], [], ["e2"]]),  # in span order, as senders send them
        ([2, 0, 2], [["e1"], [], ["e0", "e2"]]),  # in any order: put in span order
    ],
)
def test_events_and_links_go_to_their_spans_in_payload_order(
    parents: list[int], lists: list[list[str]]
) -> None:
    spans = _batch(
        _plain("id", [0, 1, 2], pa.uint16()),
        ("start_time_unix_nano", pa.array([1, 2, 3], pa.timestamp("ns"))),
        ("trace_id", pa.array([b"\x01" * 16] * 3, pa.binary(16))),
        ("span_id", pa.array([bytes([i + 1]) * 8 for i in range(3)], pa.binary(8))),
        ("name", pa.array(["a", "b", "c"])),
    )
    events = _batch(
        _plain("id", [0, 1, 2], pa.uint32()),
        _plain("parent_id", parents, pa.uint16()),
        ("time_unix_nano", pa.array([10, 11, 12], pa.timestamp("ns"))),
        ("name", pa.array(["e0", "e1", "e2"])),
    )
    event_attrs = _batch(
        _plain("parent_id", [1], pa.uint32()),
        ("key", pa.array(["k"])),
        ("type", pa.array([2], pa.uint8())),
        ("int", pa.array([5], pa.int64())),
    )
    links = _batch(
        _plain("id", [0, 1, 2], pa.uint32()),
        _plain("parent_id", parents, pa.uint16()),
        ("trace_id", pa.array([bytes([9, i]) * 8 for i in range(3)], pa.binary(16))),
        ("span_id", pa.array([bytes([i + 7]) * 8 for i in range(3)], pa.binary(8))),
    )
    bar = otap_pb2.BatchArrowRecords(batch_id=1)
    types = otap_pb2.ArrowPayloadType
    for kind, table in (
        (types.SPANS, spans),
        (types.SPAN_EVENTS, events),
        (types.SPAN_EVENT_ATTRS, event_attrs),
        (types.SPAN_LINKS, links),
    ):
        bar.arrow_payloads.add(schema_id=str(kind), type=kind, record=_ipc(table))
    batch = decode_batch(IpcStreams("traces"), bar)
    assert batch is not None
    got_events = batch.column("events").to_pylist()
    assert [[e["name"] for e in row] for row in got_events] == lists
    by_name = {e["name"]: e for row in got_events for e in row}
    assert by_name["e1"]["attributes"] == [("k", "5")]
    assert by_name["e0"]["attributes"] == []
    assert by_name["e2"]["time"].value == 12
    got_links = batch.column("links").to_pylist()
    names = {f"{i + 7:02x}" * 8: f"e{i}" for i in range(3)}
    assert [[names[link["span_id"]] for link in row] for row in got_links] == lists
    assert got_links[parents[0]][0]["trace_id"] == "0900" * 8


# -- values past int64 ----------------------------------------------------------------------

T = 1_700_000_000_000_000_000
PAST = (
    "past 2262-04-11T23:47:16.854775807Z, the latest a nanosecond timestamp holds (times are "
    "nanoseconds since 1970-01-01 UTC)"
)
MORE = "more than 9223372036854775807, the largest count a row holds (int64)"


def _bar(*tables: tuple[int, pa.RecordBatch]) -> otap_pb2.BatchArrowRecords:
    bar = otap_pb2.BatchArrowRecords(batch_id=1)
    for kind, table in tables:
        bar.arrow_payloads.add(schema_id=str(kind), type=kind, record=_ipc(table))
    return bar


def _decoded(
    signal: str, *tables: tuple[int, pa.RecordBatch]
) -> tuple[pa.RecordBatch | None, columns.Rejections]:
    rejected = columns.Rejections()
    return decode_batch(IpcStreams(signal), _bar(*tables), rejected), rejected  # type: ignore[arg-type]


def test_spans_with_a_time_past_2262_are_left_out_and_named() -> None:
    """A time past 2262 comes as a negative Timestamp (the Go sender casts OTLP's unsigned
    time), or as a start and duration whose sum is past int64: only its span is left out."""
    types = otap_pb2.ArrowPayloadType
    spans = _batch(
        _plain("id", [0, 1, 2, 3, 4], pa.uint16()),
        ("start_time_unix_nano", pa.array([T, -1, T, T, T + 4], pa.timestamp("ns"))),
        ("duration_time_unix_nano", pa.array([5, 5, 2**63 - T, 5, -4], pa.duration("ns"))),
        ("trace_id", pa.array([b"\x01" * 16] * 5, pa.binary(16))),
        ("span_id", pa.array([bytes([i + 1]) * 8 for i in range(5)], pa.binary(8))),
        ("name", pa.array(["kept", "late start", "late end", "late event", "kept too"])),
    )
    events = _batch(
        _plain("id", [0, 1, 2], pa.uint32()),
        _plain("parent_id", [0, 3, 4], pa.uint16()),
        ("time_unix_nano", pa.array([T, -(2**63), T], pa.timestamp("ns"))),
        ("name", pa.array(["e0", "late", "e2"])),
    )
    batch, rejected = _decoded("traces", (types.SPANS, spans), (types.SPAN_EVENTS, events))
    assert batch is not None
    assert batch.column("span_name").to_pylist() == ["kept", "kept too"]
    assert [[e["name"] for e in row] for row in batch.column("events").to_pylist()] == [
        ["e0"],
        ["e2"],
    ]
    assert batch.column("duration_ns").to_pylist() == [5, -4]
    assert rejected.count == 3
    assert rejected.message == (
        "3 rejected: SPANS row 1: start_time_unix_nano is -1 (18446744073709551615 as OTLP's "
        f"unsigned time), which is {PAST}; SPANS row 2: start_time_unix_nano + "
        "duration_time_unix_nano is -9223372036854775808 (9223372036854775808 as OTLP's "
        f"unsigned time), which is {PAST}; SPANS row 3: SPAN_EVENTS row 1: time_unix_nano is "
        f"-9223372036854775808 (9223372036854775808 as OTLP's unsigned time), which is {PAST}"
    )


def test_log_records_with_an_unsigned_time_past_2262_are_left_out_and_named() -> None:
    logs = _batch(
        ("time_unix_nano", pa.array([T, 2**64 - 1, T], pa.uint64())),
        ("observed_time_unix_nano", pa.array([T, T, 2**63], pa.uint64())),
        ("severity_text", pa.array(["kept", "late", "late observed"])),
    )
    batch, rejected = _decoded("logs", (otap_pb2.ArrowPayloadType.LOGS, logs))
    assert batch is not None and batch.column("severity_text").to_pylist() == ["kept"]
    assert batch.column("time").cast(pa.int64()).to_pylist() == [T]
    assert rejected.message == (
        f"2 rejected: LOGS row 1: time_unix_nano is 18446744073709551615, which is {PAST}; "
        f"LOGS row 2: observed_time_unix_nano is 9223372036854775808, which is {PAST}"
    )
    every, rejected = _decoded("logs", (otap_pb2.ArrowPayloadType.LOGS, logs.slice(1)))
    assert every is None and rejected.count == 2  # no row left: nothing to store


def test_data_points_with_a_count_or_time_past_int64_are_left_out_and_named() -> None:
    types = otap_pb2.ArrowPayloadType
    metrics = _batch(
        _plain("id", [0, 1], pa.uint16()),
        ("metric_type", pa.array([3, 4], pa.uint8())),  # histogram, exponential histogram
        ("name", pa.array(["h", "x"])),
    )
    points = _batch(
        _plain("id", [0, 1, 2, 3], pa.uint32()),
        _plain("parent_id", [0, 0, 0, 0], pa.uint16()),
        ("time_unix_nano", pa.array([T] * 4, pa.timestamp("ns"))),
        ("count", pa.array([1, 2**64 - 1, 1, 1], pa.uint64())),
        ("bucket_counts", pa.array([[1], [1], [0, 2**63], [1]], pa.list_(pa.uint64()))),
    )
    exemplars = _batch(
        _plain("parent_id", [0, 3], pa.uint32()),
        ("time_unix_nano", pa.array([T, -7], pa.timestamp("ns"))),
        ("int_value", pa.array([1, 2], pa.int64())),
    )
    buckets = pa.struct([("offset", pa.int32()), ("bucket_counts", pa.list_(pa.uint64()))])
    exponential = _batch(
        _plain("id", [0, 1], pa.uint32()),
        _plain("parent_id", [1, 1], pa.uint16()),
        ("zero_count", pa.array([2**63, 0], pa.uint64())),
        ("negative", pa.array([{"offset": 0, "bucket_counts": [1]}] * 2, buckets)),
    )
    batch, rejected = _decoded(
        "metrics",
        (types.UNIVARIATE_METRICS, metrics),
        (types.HISTOGRAM_DATA_POINTS, points),
        (types.HISTOGRAM_DP_EXEMPLARS, exemplars),
        (types.EXP_HISTOGRAM_DATA_POINTS, exponential),
    )
    assert batch is not None
    assert batch.column("metric_name").to_pylist() == ["h", "x"]
    assert batch.column("bucket_counts").to_pylist() == [[1], None]
    assert [len(row) for row in batch.column("exemplars").to_pylist()] == [1, 0]
    assert rejected.count == 4
    assert rejected.message == (
        f"4 rejected: HISTOGRAM_DATA_POINTS row 1: count is 18446744073709551615, {MORE}; "
        f"HISTOGRAM_DATA_POINTS row 2: bucket_counts[1] is 9223372036854775808, {MORE}; "
        "HISTOGRAM_DATA_POINTS row 3: HISTOGRAM_DP_EXEMPLARS row 1: time_unix_nano is -7 "
        f"(18446744073709551609 as OTLP's unsigned time), which is {PAST}; and 1 more"
    )
