"""Telemetry processors on span batches: Arrow compute beside the same work in a Python loop.

Run by hand (not a test):

    .venv/bin/python benchmarks/telemetry_processors_bench.py [--rows 200000] [--repeat 3]

Builds ``--rows`` spans in the telemetry layout (four attributes each, one in three with an
e-mail, one in ten with a card number) and times, median of ``--repeat`` runs, in this process:

  filter     ``attributes["http.method"] = 'GET'``: the filter processor beside a loop over
             ``to_pylist()`` rows testing the attribute;
  redact     e-mails and Luhn-checked cards in every attribute value: the redact processor
             beside a loop applying Python ``re.sub`` with a Luhn callback to each value;
  aggregate  count and p95 of duration per service and 10 s window: the aggregate processor
             beside a loop filling a dict of lists and sorting each.

Each line prints both times and the ratio (baseline / ours), and checks the two results agree
on the kept rows, the redacted values or the window counts, so a fast wrong result cannot pass.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from quiver.ingest.arrow_layout import telemetry_batch
from quiver.pipeline.component import RunContext, component_info
from quiver.pipeline.processors.aggregate import AggregateProcessor
from quiver.pipeline.processors.filter import FilterProcessor
from quiver.pipeline.processors.redact import PATTERNS, RedactProcessor

_S = 1_000_000_000
CTX = RunContext(run_id=uuid.uuid4().hex, base_dir=".")


def spans(rows: int) -> pa.RecordBatch:
    attrs = []
    for i in range(rows):
        a = [("http.method", "GET" if i % 3 else "POST"), ("http.route", f"/api/{i % 50}")]
        a.append(("user", f"user{i}@example.com" if i % 3 == 0 else f"user {i}"))
        a.append(("note", "paid with 4111 1111 1111 1111" if i % 10 == 0 else f"order {i}"))
        attrs.append(a)
    return telemetry_batch(
        {
            "signal": ["traces"] * rows,
            "time": [1_700_000_000 * _S + i * 1_000_000 for i in range(rows)],
            "service_name": [f"svc{i % 5}" for i in range(rows)],
            "attributes": attrs,
            "duration_ns": [(i * 7919) % 1_000_000 for i in range(rows)],
        },
        rows,
    )


def make(cls: type[Any], options: dict[str, Any]) -> Any:
    return cls(component_info(cls).config.model_validate(options))


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def baseline_redact(batch: pa.RecordBatch) -> list[list[tuple[str, str]]]:
    email, card = re.compile(PATTERNS["email"]), re.compile(PATTERNS["card"])

    def card_sub(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        return "[card]" if 13 <= len(digits) <= 19 and _luhn(digits) else m.group(0)

    out = []
    for attrs in batch.column("attributes").to_pylist():
        out.append([(k, card.sub(card_sub, email.sub("[email]", v))) for k, v in attrs])
    return out


def baseline_aggregate(batch: pa.RecordBatch) -> dict[tuple[int, str], int]:
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for t, svc, d in zip(
        batch.column("time").cast(pa.int64()).to_pylist(),
        batch.column("service_name").to_pylist(),
        batch.column("duration_ns").to_pylist(),
        strict=True,
    ):
        groups[(t - t % (10 * _S), svc)].append(d)
    result = {}
    for key, values in groups.items():
        values.sort()
        result[key] = len(values)
        _ = values[int(0.95 * (len(values) - 1))]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    batch = spans(args.rows)
    run = asyncio.run

    filt = make(FilterProcessor, {"expression": "attributes[\"http.method\"] = 'GET'"})
    ours, kept = timed(lambda: run(filt.process(batch, CTX)).batch.num_rows, args.repeat)
    base, kept_base = timed(
        lambda: sum(dict(r["attributes"]).get("http.method") == "GET" for r in batch.to_pylist()),
        args.repeat,
    )
    assert kept == kept_base
    print(f"filter     ours {ours:.3f}s  loop {base:.3f}s  ratio {base / ours:.1f}x")

    red = make(RedactProcessor, {"fields": ["attributes"], "patterns": ["email", "card"]})
    ours, out = timed(lambda: run(red.process(batch, CTX)).batch, args.repeat)
    base, out_base = timed(lambda: baseline_redact(batch), args.repeat)
    assert out.column("attributes").to_pylist() == out_base
    print(f"redact     ours {ours:.3f}s  loop {base:.3f}s  ratio {base / ours:.1f}x")

    def aggregate() -> dict[tuple[int, str], int]:
        agg = make(
            AggregateProcessor,
            {
                "window": "10s",
                "group_by": ["service_name"],
                "metrics": {
                    "n": "count",
                    "p95": {"fn": "percentile", "field": "duration_ns", "q": 0.95},
                },
            },
        )

        async def both() -> list[pa.RecordBatch]:
            first = (await agg.process(batch, CTX)).batch
            rest = [o.batch async for o in agg.flush(CTX)]
            return [b for b in [first, *rest] if b is not None]

        rows = [r for b in run(both()) for r in b.to_pylist()]
        return {(int(r["window_start"].timestamp()) * _S, r["service_name"]): r["n"] for r in rows}

    ours, windows = timed(aggregate, args.repeat)
    base, windows_base = timed(lambda: baseline_aggregate(batch), args.repeat)
    assert windows == windows_base
    print(f"aggregate  ours {ours:.3f}s  loop {base:.3f}s  ratio {base / ours:.1f}x")


if __name__ == "__main__":
    main()
