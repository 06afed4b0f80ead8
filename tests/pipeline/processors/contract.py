"""What the processor tests share: a processor built from its options, batches with line
numbers, and one batch run through a processor."""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa

from quiver.pipeline.component import LINE_COLUMN, ProcessorOutput, RunContext, component_info

__all__ = ["ORDERS", "batch", "make", "process", "rows_of"]


def make(cls: type[Any], options: dict[str, Any]) -> Any:
    return cls(component_info(cls).config.model_validate(options))


def batch(rows: list[dict[str, Any]], first_line: int = 2) -> pa.RecordBatch:
    lines = list(range(first_line, first_line + len(rows)))
    return pa.RecordBatch.from_pylist(
        [{**r, LINE_COLUMN: n} for r, n in zip(rows, lines, strict=True)]
    )


def rows_of(out: ProcessorOutput) -> list[dict[str, Any]]:
    assert out.batch is not None
    return [{k: v for k, v in r.items() if k != LINE_COLUMN} for r in out.batch.to_pylist()]


def process(proc: Any, b: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
    result: ProcessorOutput = asyncio.run(proc.process(b, ctx))
    return result


ORDERS: list[dict[str, Any]] = [
    {"id": 1, "total": 50.0, "country": "DE"},
    {"id": 2, "total": 150.0, "country": "XX"},
    {"id": 3, "total": 250.0, "country": "FR"},
    {"id": 4, "total": None, "country": "DE"},
]
