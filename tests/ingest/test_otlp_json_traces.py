"""OTLP/JSON traces read by quiver.ingest.otlp.json_traces give exactly the rows, rejections
and errors of the general way (orjson, hex ids to base64, json_format.ParseDict)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from google.protobuf import json_format

from quiver.ingest.otlp import json_traces
from quiver.ingest.otlp.convert import Conversion, convert_request
from quiver.ingest.otlp.decode import BadRequestError, decode_body

from .otlp_payloads import TRACES
from .telemetry_rows import span_request


def general(body: bytes) -> Conversion | str:
    """The general way's result: the conversion, or the error message."""
    saved = json_traces.traces_from_json

    def refuse(doc: Any, ids: Any) -> Any:
        raise json_traces.FallbackError

    json_traces.traces_from_json = refuse
    try:
        return convert_request("traces", decode_body("traces", body, json=True))
    except BadRequestError as exc:
        return exc.message
    except Exception as exc:  # any other failure must be the same either way
        return f"{type(exc).__name__}: {exc}"
    finally:
        json_traces.traces_from_json = saved


def fast(body: bytes) -> tuple[Conversion | str, bool]:
    """This reader's result, and whether it took the body itself."""
    try:
        request = decode_body("traces", body, json=True)
    except BadRequestError as exc:
        return exc.message, False
    try:
        return convert_request("traces", request), isinstance(request, json_traces.JsonTraces)
    except BadRequestError as exc:
        return exc.message, False
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}", False


def same(doc: Any) -> bool:
    """``doc`` gives the same either way; True when this reader took it itself."""
    body = orjson.dumps(doc)
    old = general(body)
    new, took = fast(body)
    if isinstance(old, str):
        assert new == old
        return took
    assert isinstance(new, Conversion)
    assert (new.accepted, new.rejected, new.reasons) == (old.accepted, old.rejected, old.reasons)
    if old.batch is None:
        assert new.batch is None
    else:
        assert new.batch is not None and new.batch.schema == old.batch.schema
        assert new.batch.to_pylist() == old.batch.to_pylist()
    return took


def generated(spans: int = 300) -> dict[str, Any]:
    """Spans as an OTLP/JSON exporter writes them: hex ids, enums by name, times as strings."""
    doc: dict[str, Any] = json_format.MessageToDict(span_request(spans))
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = __import__("base64").b64decode(span[key]).hex()
    return doc


def test_the_specification_example_is_read_directly_and_gives_the_same_rows() -> None:
    assert same(TRACES)


def test_exporter_shaped_spans_are_read_directly_and_give_the_same_rows() -> None:
    assert same(generated())


def _span(doc: dict[str, Any]) -> dict[str, Any]:
    span: dict[str, Any] = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    return span


HOSTILE: list[tuple[str, Any]] = [
    ("traceId", "zz" * 16),  # not hex: a bad request
    ("traceId", "abc"),  # odd length: a bad request
    ("traceId", "ab" * 15),  # 15 bytes: the span is rejected
    ("traceId", "00" * 16),  # all zeros: rejected
    ("spanId", None),
    ("spanId", 5),
    ("parentSpanId", "ab" * 9),
    ("kind", "SPAN_KIND_CLIENT"),
    ("kind", "NOT_A_KIND"),
    ("kind", 9),
    ("kind", -1),
    ("kind", True),
    ("name", 5),
    ("name", "caf\u00e9 \U0001f600"),
    ("startTimeUnixNano", "12x"),
    ("startTimeUnixNano", 1.5),
    ("startTimeUnixNano", str(2**64)),
    ("startTimeUnixNano", 2**64 - 1),  # past 2262: the span is rejected
    ("endTimeUnixNano", str(2**63)),
    ("events", [{"name": "e", "timeUnixNano": "5"}, {"timeUnixNano": str(2**64 - 1)}]),
    ("startTimeUnixNano", "007"),
    ("droppedAttributesCount", "3"),
    ("droppedAttributesCount", -1),
    ("flags", 2**32),
    ("status", {"code": "STATUS_CODE_ERROR", "message": "x"}),
    ("status", {"code": 7}),
    ("status", {"code": 1, "other": 1}),
    ("status", None),
    ("trace_id", "ab" * 16),  # the proto field name: accepted by the general way
    ("[ext]", 1),
    ("future", {"spanId": "zz"}),  # an id inside an unknown field is still checked
    ("future", [1, {"x": 2}]),
    ("events", [{"name": "e", "timeUnixNano": "5", "attributes": [{"key": "a"}]}]),
    ("events", [{"name": 5}]),
    ("events", "nope"),
    ("links", [{"traceId": "zz", "spanId": "ab" * 8}]),
    ("links", [{"traceId": "ab" * 16, "spanId": "ab" * 8, "traceState": "k=v"}]),
    ("attributes", [{"key": "i", "value": {"intValue": "-9223372036854775808"}}]),
    ("attributes", [{"key": "i", "value": {"intValue": "9223372036854775808"}}]),
    ("attributes", [{"key": "i", "value": {"intValue": 1.0}}]),
    ("attributes", [{"key": "i", "value": {"intValue": True}}]),
    ("attributes", [{"key": "d", "value": {"doubleValue": 2}}]),
    ("attributes", [{"key": "d", "value": {"doubleValue": "NaN"}}]),
    ("attributes", [{"key": "d", "value": {"doubleValue": 1e308}}]),
    ("attributes", [{"key": "s", "value": {"stringValue": 5}}]),
    ("attributes", [{"key": "s", "value": {"stringValue": "a", "intValue": 1}}]),
    ("attributes", [{"key": "s", "value": {}}]),
    ("attributes", [{"key": "s"}]),
    ("attributes", [{"value": {"boolValue": False}}]),
    ("attributes", [{"key": "b", "value": {"bytesValue": "AAE="}}]),
    ("attributes", [{"key": "b", "value": {"bytesValue": "AAE"}}]),
    ("attributes", [{"key": 5, "value": {"boolValue": False}}]),
    ("attributes", [{"key": "x", "value": {"stringValue": "y"}, "extra": 1}]),
    ("attributes", [{"key": "x", "value": {"stringValue": "y", "traceId": "zz"}}]),
    ("attributes", [{"key": f"k{i}", "value": {"intValue": i}} for i in range(20_000)]),
    ("attributes", "nope"),
    ("attributes", [None]),
]


@pytest.mark.parametrize(("key", "value"), HOSTILE, ids=[f"{k}={v!r:.40}" for k, v in HOSTILE])
def test_hostile_spans_give_the_same_rows_rejections_or_errors(key: str, value: Any) -> None:
    doc = copy.deepcopy(TRACES)
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(copy.deepcopy(spans[0]))  # a good span beside the hostile one
    spans[0][key] = value
    same(doc)


def test_a_time_past_2262_is_read_directly_and_rejects_only_its_span() -> None:
    doc = copy.deepcopy(TRACES)
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append(copy.deepcopy(spans[0]))
    spans[1]["endTimeUnixNano"] = "18446744073709551615"
    assert same(doc)
    out, _ = fast(orjson.dumps(doc))
    assert isinstance(out, Conversion) and (out.accepted, out.rejected) == (1, 1)
    assert out.reasons == [
        "resource_spans[0].scope_spans[0].spans[1]: end_time_unix_nano is 18446744073709551615, "
        "which is past 2262-04-11T23:47:16.854775807Z, the latest a nanosecond timestamp holds "
        "(times are nanoseconds since 1970-01-01 UTC)"
    ]


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"resourceSpans": []},
        {"resourceSpans": None},
        {"resource_spans": [{}]},
        {"resourceSpans": [{"resource": None}]},
        {"resourceSpans": [{"resource": {"attributes": [{"key": "k"}]}, "scopeSpans": [{}]}]},
        {"resourceSpans": [{"scopeSpans": [{"scope": {"name": 5}}]}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [{}]}], "schemaUrl": 1}]},
        {"resourceSpans": [{"resource": {"x": {"traceId": "zz"}}, "scopeSpans": []}]},
        {"resourceSpans": [{"scopeSpans": [{"spans": [None]}]}]},
    ],
)
def test_hostile_envelopes_give_the_same_rows_or_errors(doc: Any) -> None:
    same(doc)
