"""OTLP/JSON values of a kind their field cannot hold are a 400 naming the field, never stored
as something else: the protobuf JSON parser, told to ignore unknown fields, also dropped an
unknown enum name, read a string where an object belongs as an empty object, and took
``true`` or ``" 1"`` as integers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.ingest.conftest import Receiver, plain

JSON = {"content-type": "application/json"}
TRACE, SPAN = "01" * 16, "02" * 8


def spans(**fields: Any) -> dict[str, Any]:
    span = {"traceId": TRACE, "spanId": SPAN, "name": "s", **fields}
    return {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}


def logs(**fields: Any) -> dict[str, Any]:
    return {"resourceLogs": [{"scopeLogs": [{"logRecords": [{**fields}]}]}]}


def metrics(**fields: Any) -> dict[str, Any]:
    metric = {"name": "m", **fields}
    return {"resourceMetrics": [{"scopeMetrics": [{"metrics": [metric]}]}]}


SPAN_AT = "resourceSpans[0].scopeSpans[0].spans[0]"
LOG_AT = "resourceLogs[0].scopeLogs[0].logRecords[0]"
METRIC_AT = "resourceMetrics[0].scopeMetrics[0].metrics[0]"

REFUSED = [
    pytest.param(
        "traces",
        spans(kind="SPAN_KIND_SERVR"),
        f"{SPAN_AT}.kind: 'SPAN_KIND_SERVR' is not a value of SpanKind; write its number or one of "
        "SPAN_KIND_UNSPECIFIED",
        id="unknown-span-kind-name",
    ),
    pytest.param(
        "traces",
        spans(status={"code": "ERROR"}),
        f"{SPAN_AT}.status.code: 'ERROR' is not a value of StatusCode",
        id="unknown-status-code-name",
    ),
    pytest.param(
        "traces",
        spans(kind=1.5),
        f"{SPAN_AT}.kind: 1.5 is not a value of SpanKind",
        id="fractional-enum",
    ),
    pytest.param(
        "traces",
        spans(status="error"),
        f"{SPAN_AT}.status: 'error' is not an object; a Status is written as a JSON object",
        id="string-for-a-message",
    ),
    pytest.param(
        "traces",
        spans(attributes=[{"key": "http.method", "value": "GET"}]),
        f"{SPAN_AT}.attributes[0].value: 'GET' is not an object",
        id="string-for-an-attribute-value",
    ),
    pytest.param(
        "traces",
        {"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": "v"}]}}]},
        "resourceSpans[0].resource.attributes[0].value: 'v' is not an object",
        id="string-for-a-resource-attribute-value",
    ),
    pytest.param(
        "traces",
        spans(events={"name": "e"}),
        f"{SPAN_AT}.events: an object is not an array",
        id="object-for-a-list",
    ),
    pytest.param(
        "traces",
        spans(startTimeUnixNano=" 1700000000000000000"),
        f"{SPAN_AT}.startTimeUnixNano: ' 1700000000000000000' is not an integer",
        id="integer-string-with-a-space",
    ),
    pytest.param(
        "traces",
        spans(droppedAttributesCount=True),
        f"{SPAN_AT}.droppedAttributesCount: true is not an integer",
        id="boolean-for-an-integer",
    ),
    pytest.param(
        "logs",
        logs(severityNumber="SEVERITY_NUMBER_WARNING"),
        f"{LOG_AT}.severityNumber: 'SEVERITY_NUMBER_WARNING' is not a value of SeverityNumber",
        id="unknown-severity-name",
    ),
    pytest.param(
        "logs",
        logs(timeUnixNano="1_700_000_000_000_000_000"),
        f"{LOG_AT}.timeUnixNano: '1_700_000_000_000_000_000' is not an integer",
        id="integer-string-with-underscores",
    ),
    pytest.param(
        "logs",
        logs(body={"intValue": "١٢"}),
        f"{LOG_AT}.body.intValue: '١٢' is not an integer",
        id="digits-of-another-script",
    ),
    pytest.param(
        "metrics",
        metrics(sum={"aggregationTemporality": "DELTA", "dataPoints": [{"asInt": "1"}]}),
        f"{METRIC_AT}.sum.aggregationTemporality: 'DELTA' is not a value of AggregationTemporality",
        id="unknown-temporality-name",
    ),
    pytest.param(
        "metrics",
        metrics(sum={"isMonotonic": "true", "dataPoints": [{"asInt": "1"}]}),
        f"{METRIC_AT}.sum.isMonotonic: 'true' is not a boolean; write true or false",
        id="string-for-a-boolean",
    ),
    pytest.param(
        "traces",
        {
            "resourceSpans": [
                {
                    "scopeSpans": spans()["resourceSpans"][0]["scopeSpans"],
                    "scope_spans": spans(name="dropped")["resourceSpans"][0]["scopeSpans"],
                }
            ]
        },
        "resourceSpans[0]: scopeSpans and scope_spans name the same field, and only one of "
        "their values would be read; send it once",
        id="a-field-under-its-json-and-proto-names",
    ),
    pytest.param(
        "traces",
        spans(trace_id="03" * 16),
        f"{SPAN_AT}: traceId and trace_id name the same field",
        id="an-id-under-both-names",
    ),
    pytest.param(
        "logs",
        {**logs(), "resource_logs": logs(body={"stringValue": "dropped"})["resourceLogs"]},
        "the body: resourceLogs and resource_logs name the same field",
        id="the-top-level-list-under-both-names",
    ),
]


@pytest.mark.parametrize(("signal", "doc", "message"), REFUSED)
def test_a_value_its_field_cannot_hold_is_a_400_naming_the_field(
    receiver: Callable[..., Receiver], signal: str, doc: dict[str, Any], message: str
) -> None:
    rec = receiver()
    response = httpx.post(
        f"{rec.http_url}/v1/{signal}", content=orjson.dumps(doc), headers=JSON, timeout=10
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]
    after = httpx.post(
        f"{rec.http_url}/v1/traces", content=orjson.dumps(spans(name="after")), headers=JSON
    )
    assert after.status_code == 200
    assert [r["span_name"] for r in plain(rec.stop()).to_pylist()] == ["after"]


def test_enum_names_numbers_integer_strings_and_nulls_are_read_as_the_specification_says(
    receiver: Callable[..., Receiver],
) -> None:
    rec = receiver()
    for signal, doc in (
        (
            "traces",
            spans(
                kind="SPAN_KIND_SERVER",
                status={"code": 2, "message": None},
                startTimeUnixNano="1700000000000000000",
                endTimeUnixNano=1_700_000_000_000_000_500,
                droppedAttributesCount="3",
                attributes=[{"key": "n", "value": {"intValue": "-7"}}],
                events=None,
            ),
        ),
        ("logs", logs(severityNumber="SEVERITY_NUMBER_WARN", body={"stringValue": "b"})),
        (
            "metrics",
            metrics(
                sum={
                    "aggregationTemporality": 1,
                    "isMonotonic": True,
                    "dataPoints": [{"asInt": "5"}],
                }
            ),
        ),
    ):
        response = httpx.post(
            f"{rec.http_url}/v1/{signal}", content=orjson.dumps(doc), headers=JSON, timeout=10
        )
        assert response.status_code == 200, response.text
    rows = {r["signal"]: r for r in plain(rec.stop()).to_pylist()}
    span = rows["traces"]
    assert (span["span_kind"], span["status_code"], span["duration_ns"]) == ("server", "error", 500)
    assert (span["dropped_attributes_count"], dict(span["attributes"])) == (3, {"n": "-7"})
    assert rows["logs"]["severity_number"] == 13
    assert (rows["metrics"]["aggregation_temporality"], rows["metrics"]["value_int"]) == (
        "delta",
        5,
    )
