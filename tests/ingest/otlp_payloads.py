"""OTLP/JSON request bodies shaped as the specification's examples (examples/*.json of the OTLP
repository): hex ids (upper and lower case), integer enums, 64-bit integers as strings and
as numbers, and a field no OTLP version has, which receivers must ignore."""

from __future__ import annotations

from typing import Any

TRACE_ID = "5B8EFFF798038103D269B633813FC60C"
SPAN_ID = "EEE19B7EC3C1B174"
PARENT_ID = "eee19b7ec3c1b173"
T0 = 1544712660000000000
T1 = 1544712661000000000


def _str(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "value": {"stringValue": value}}


RESOURCE = {
    "attributes": [
        _str("service.name", "my.service"),
        {"key": "host.cpus", "value": {"intValue": "8"}},
    ]
}
SCOPE = {"name": "my.library", "version": "1.0.0", "attributes": [_str("my.scope", "x")]}

TRACES: dict[str, Any] = {
    "resourceSpans": [
        {
            "resource": RESOURCE,
            "scopeSpans": [
                {
                    "scope": SCOPE,
                    "spans": [
                        {
                            "traceId": TRACE_ID,
                            "spanId": SPAN_ID,
                            "parentSpanId": PARENT_ID,
                            "name": "I'm a server span",
                            "startTimeUnixNano": str(T0),
                            "endTimeUnixNano": T1,
                            "kind": 2,
                            "attributes": [
                                _str("my.span.attr", "some value"),
                                {"key": "retries", "value": {"intValue": 3}},
                                {"key": "ratio", "value": {"doubleValue": 0.5}},
                                {"key": "cached", "value": {"boolValue": True}},
                                {
                                    "key": "tags",
                                    "value": {
                                        "arrayValue": {
                                            "values": [{"stringValue": "a"}, {"intValue": "2"}]
                                        }
                                    },
                                },
                                {
                                    "key": "user",
                                    "value": {
                                        "kvlistValue": {"values": [_str("id", "u1")]},
                                    },
                                },
                            ],
                            "status": {"code": 2, "message": "boom"},
                            "links": [{"traceId": TRACE_ID.lower(), "spanId": PARENT_ID}],
                            "aFieldOfAFutureVersion": {"ignored": True},
                        }
                    ],
                }
            ],
        }
    ]
}

METRICS: dict[str, Any] = {
    "resourceMetrics": [
        {
            "resource": RESOURCE,
            "scopeMetrics": [
                {
                    "scope": SCOPE,
                    "metrics": [
                        {
                            "name": "my.counter",
                            "unit": "1",
                            "description": "I am a Counter",
                            "sum": {
                                "aggregationTemporality": 1,
                                "isMonotonic": True,
                                "dataPoints": [
                                    {
                                        "asDouble": 5,
                                        "startTimeUnixNano": T0,
                                        "timeUnixNano": str(T1),
                                        "attributes": [_str("my.counter.attr", "v")],
                                        "exemplars": [
                                            {
                                                "timeUnixNano": str(T0),
                                                "asInt": "4",
                                                "traceId": TRACE_ID,
                                                "spanId": SPAN_ID,
                                                "filteredAttributes": [_str("user", "u1")],
                                            }
                                        ],
                                    }
                                ],
                            },
                        },
                        {
                            "name": "my.gauge",
                            "gauge": {"dataPoints": [{"asInt": "10", "timeUnixNano": T1}]},
                        },
                        {
                            "name": "my.histogram",
                            "histogram": {
                                "aggregationTemporality": 2,
                                "dataPoints": [
                                    {
                                        "timeUnixNano": T1,
                                        "count": "3",
                                        "sum": 3,
                                        "bucketCounts": ["1", 1, 1],
                                        "explicitBounds": [1, 2],
                                        "min": 1,
                                        "max": 1,
                                    }
                                ],
                            },
                        },
                        {
                            "name": "my.exponential",
                            "exponentialHistogram": {
                                "aggregationTemporality": 1,
                                "dataPoints": [
                                    {
                                        "timeUnixNano": T1,
                                        "count": 4,
                                        "scale": 2,
                                        "zeroCount": 1,
                                        "positive": {"offset": -1, "bucketCounts": [2, 1]},
                                    }
                                ],
                            },
                        },
                        {
                            "name": "my.summary",
                            "summary": {
                                "dataPoints": [
                                    {
                                        "timeUnixNano": T1,
                                        "count": 10,
                                        "sum": 55.5,
                                        "quantileValues": [
                                            {"quantile": 0.5, "value": 5},
                                            {"quantile": 0.99, "value": 9.9},
                                        ],
                                    }
                                ]
                            },
                        },
                    ],
                }
            ],
        }
    ]
}

LOGS: dict[str, Any] = {
    "resourceLogs": [
        {
            "resource": RESOURCE,
            "scopeLogs": [
                {
                    "scope": SCOPE,
                    "logRecords": [
                        {
                            "timeUnixNano": str(T0),
                            "observedTimeUnixNano": T1,
                            "severityNumber": 10,
                            "severityText": "Information",
                            "traceId": TRACE_ID,
                            "spanId": SPAN_ID,
                            "body": {"stringValue": "Example log record"},
                            "attributes": [_str("string.attribute", "some string")],
                        },
                        {"severityNumber": 17, "body": {"kvlistValue": {"values": []}}},
                    ],
                }
            ],
        }
    ]
}
