"""Spans in the telemetry layout, as the OTLP receivers produce them, for processor tests."""

from __future__ import annotations

import pyarrow as pa

from quiver.ingest.arrow_layout import telemetry_batch

__all__ = ["SPANS", "spans"]

_SEC = 1_000_000_000
#: (time s, service, http.method, http.status_code, duration ms, user e-mail)
SPANS = [
    (0, "checkout", "GET", "200", 12, "ann@example.com"),
    (3, "checkout", "POST", "500", 80, "bob@example.org"),
    (7, "cart", "GET", "200", 5, None),
    (11, "checkout", "GET", "404", 30, "cy@example.net"),
    (14, "cart", None, None, 9, None),
]


def spans() -> pa.RecordBatch:
    """Five spans of two services, with HTTP attributes (the last one has none)."""
    attrs = []
    for _, _, method, status, _, email in SPANS:
        entry = []
        if method is not None:
            entry.append(("http.method", method))
        if status is not None:
            entry.append(("http.status_code", status))
        if email is not None:
            entry.append(("user.email", email))
        attrs.append(entry)
    return telemetry_batch(
        {
            "signal": ["traces"] * len(SPANS),
            "time": [(t + 1_700_000_000) * _SEC for t, *_ in SPANS],
            "service_name": [s for _, s, *_ in SPANS],
            "resource_attributes": [
                [("service.name", s), ("host.name", "node-1")] for _, s, *_ in SPANS
            ],
            "attributes": attrs,
            "span_name": [f"span{i}" for i in range(len(SPANS))],
            "duration_ns": [d * 1_000_000 for *_, d, _ in SPANS],
        },
        len(SPANS),
    )
