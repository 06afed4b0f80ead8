"""The jsonl sink: JSON types, the line column left out, huge batches."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from pathlib import Path

import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.jsonl import JsonlSink, JsonlSinkConfig

from ..conftest import build


async def test_sink_writes_json_types_and_drops_the_line_column(
    tmp_path: Path, run_ctx: RunContext
) -> None:
    batch = pa.record_batch(
        {
            "id": [1, 2],
            "price": pa.array([decimal.Decimal("1.10"), None], pa.decimal128(5, 2)),
            "day": [dt.date(2024, 1, 2), dt.date(2024, 1, 3)],
            "at": [dt.datetime(2024, 1, 2, 3, 4, 5), None],
            "tags": [["a", "b"], []],
            "raw": [b"\x00\x01", b""],
            LINE_COLUMN: [7, 8],
        }
    )
    sink = build(JsonlSink, {"path": "out/o.jsonl", "drop_nulls": True})
    await sink.open(batch.schema, run_ctx)
    await sink.write(batch)
    await sink.commit()
    lines = (tmp_path / "out" / "o.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "id": 1,
            "price": "1.1",
            "day": "2024-01-02",
            "at": "2024-01-02T03:04:05.000000",
            "tags": ["a", "b"],
            "raw": "AAE=",
        },
        {"id": 2, "day": "2024-01-03", "tags": [], "raw": ""},
    ]


def test_a_huge_batch_is_encoded_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    from quiver.pipeline.sinks import jsonl as jsonl_sink

    batch = pa.record_batch({"a": [str(i) * 20 for i in range(50)], "b": list(range(50))})
    sink = JsonlSink(JsonlSinkConfig.model_validate({"path": "x"}))
    whole = bytes(sink.encode(batch))
    monkeypatch.setattr(jsonl_sink, "_SLICE_BYTES", 100)
    assert sink.encode(batch) == whole and whole.count(b"\n") == 50
