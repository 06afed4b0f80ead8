"""The formats example (examples/pipelines/formats) runs and writes what its comments promise."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import shutil
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.runlog import RunLog

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipelines" / "formats"


def test_formats_example_reads_a_cp1252_export_and_writes_three_formats(tmp_path: Path) -> None:
    folder = tmp_path / "formats"
    shutil.copytree(EXAMPLE, folder)
    spec = load_pipeline(folder / "pipeline.yaml", environ={})
    log = RunLog("formats", "json", stream=io.StringIO())
    result = asyncio.run(PipelineEngine(compile_plan(spec), log=log).run())
    assert result.steps["read"].rejected == 3

    rows = pq.read_table(folder / "out/orders.parquet").to_pylist()
    assert [(r["order_id"], r["customer"], r["total"]) for r in rows] == [
        (1001, "Müller GmbH", Decimal("120.50")),
        (1002, "Café Zoë", Decimal("75.00")),
        (1004, "Dijkstra B.V.", Decimal("310.00")),
    ]
    assert rows[0]["note"] == "Lieferung an Tor 3\r\nbitte klingeln"
    assert rows[2]["note"] == 'Rabatt "Treue" 5 €'

    lines = gzip.decompress((folder / "out/orders.jsonl.gz").read_bytes()).splitlines()
    assert [json.loads(line)["order_id"] for line in lines] == [1001, 1002, 1004]

    excel = (folder / "out/orders-excel.csv").read_bytes()
    assert excel.startswith(b"\xef\xbb\xbforder_id;customer;total;note\r\n")
    # a decimal keeps the text it was read with (its decimal comma read as a point)
    assert b'1004;Dijkstra B.V.;310.00;"Rabatt ""Treue"" 5 \xe2\x82\xac"\r\n' in excel

    with open(folder / "out/orders.rejects.csv", newline="", encoding="utf-8") as fh:
        rejects = list(csv.DictReader(fh))
    assert [(r["line"], r["column"], r["value"]) for r in rejects] == [
        ("6", "", ""),
        ("8", "total", "abc"),
        ("9", "", ""),
    ]
    assert rejects[0]["reason"].endswith("expected 4 fields, found 5")
    assert rejects[2]["reason"].endswith("byte 0x81 is not valid cp1252 (byte 6 of the row)")
    assert json.loads(rejects[2]["row"])["__raw"] == "1006;\\x81ukasz;12,00;"
