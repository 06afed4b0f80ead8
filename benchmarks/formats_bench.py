"""Throughput of the file sources and sinks, with the baselines measured in the same run.

    .venv/bin/python benchmarks/formats_bench.py [--rows 1000000] [--quoted]

Prints rows/s and MB/s for: reading a 10-column CSV with the ``csv`` source (exact line numbers,
malformed-row checks) beside plain ``pyarrow.csv.read_csv`` and DuckDB's ``read_csv``; writing it
back with the ``csv`` sink beside ``pyarrow.csv.write_csv`` and DuckDB's ``COPY``; and the
Parquet and JSONL round trips. Not a timed test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv

from quiver.pipeline.component import RunContext
from quiver.pipeline.sinks.csv import CsvSink, CsvSinkConfig
from quiver.pipeline.sinks.jsonl import JsonlSink, JsonlSinkConfig
from quiver.pipeline.sinks.parquet import ParquetSink, ParquetSinkConfig
from quiver.pipeline.sources.csv import CsvSource, CsvSourceConfig
from quiver.pipeline.sources.jsonl import JsonlSource, JsonlSourceConfig
from quiver.pipeline.sources.parquet import ParquetSource, ParquetSourceConfig

COLUMNS = ["id", "name", "email", "city", "country", "qty", "price", "total", "created", "note"]


def make_csv(path: str, rows: int, quoted: bool) -> None:
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    with open(path, "w", encoding="utf-8") as out:
        out.write(",".join(COLUMNS) + "\n")
        for i in range(rows):
            note = f'"said ""{rng.choice(words)}"",\nthen left"' if quoted and i % 10 == 0 else "ok"
            out.write(
                f"{i},{rng.choice(words)} {rng.choice(words)},user{i}@example.com,"
                f"{rng.choice(words).title()},{rng.choice(['FR', 'DE', 'US', 'JP'])},"
                f"{rng.randint(1, 99)},{rng.random() * 100:.2f},{rng.random() * 1000:.2f},"
                f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},{note}\n"
            )


def timed(label: str, rows: int, size: int, fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    print(
        f"{label:<44} {seconds:7.3f} s  {rows / seconds / 1e3:8.0f} K rows/s"
        f"  {size / seconds / 1e6:7.0f} MB/s"
    )
    return seconds


async def drain(source: Any, ctx: RunContext) -> pa.Table:
    batches = [b async for b in source.batches(ctx)]
    return pa.Table.from_batches(batches)


async def write(sink: Any, table: pa.Table, ctx: RunContext) -> None:
    await sink.open(table.schema, ctx)
    for batch in table.to_batches(max_chunksize=65_536):
        await sink.write(batch)
    await sink.commit()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quoted", action="store_true", help="10%% of rows hold quoted newlines")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext("bench", tmp)
        src = os.path.join(tmp, "in.csv")
        make_csv(src, args.rows, args.quoted)
        size = os.path.getsize(src)
        rows = args.rows
        print(
            f"{rows} rows, 10 columns, {size / 1e6:.0f} MB",
            "(10% quoted newlines)" if args.quoted else "",
        )
        all_text = {name: pa.string() for name in COLUMNS}

        def arrow_read() -> pa.Table:
            return pacsv.read_csv(
                src,
                parse_options=pacsv.ParseOptions(newlines_in_values=args.quoted),
                convert_options=pacsv.ConvertOptions(column_types=all_text),
            )

        timed("read  pyarrow.csv.read_csv (baseline)", rows, size, arrow_read)
        timed(
            "read  duckdb read_csv (baseline)",
            rows,
            size,
            lambda: (
                duckdb.connect()
                .sql(f"select * from read_csv('{src}', all_varchar=true)")
                .to_arrow_table()
            ),
        )
        table: pa.Table = pa.table({})

        def quiver_read() -> None:
            nonlocal table
            table = asyncio.run(
                drain(CsvSource(CsvSourceConfig.model_validate({"path": src})), ctx)
            )

        timed("read  quiver csv source (with __line)", rows, size, quiver_read)
        assert table.num_rows == rows, table.num_rows
        data = table.drop_columns(["__line"])
        con = duckdb.connect()
        con.register("data", data)
        out = os.path.join(tmp, "out.csv")
        timed(
            "write pyarrow.csv.write_csv (baseline)",
            rows,
            size,
            lambda: pacsv.write_csv(data, out),
        )
        timed(
            "write duckdb COPY (baseline)",
            rows,
            size,
            lambda: con.execute(f"copy (select * from data) to '{out}' (header)"),
        )
        timed(
            "write quiver csv sink",
            rows,
            size,
            lambda: asyncio.run(
                write(CsvSink(CsvSinkConfig.model_validate({"path": "out.csv"})), data, ctx)
            ),
        )
        timed(
            "write quiver parquet sink (zstd)",
            rows,
            size,
            lambda: asyncio.run(
                write(
                    ParquetSink(ParquetSinkConfig.model_validate({"path": "o.parquet"})), data, ctx
                )
            ),
        )
        timed(
            "read  quiver parquet source",
            rows,
            size,
            lambda: asyncio.run(
                drain(ParquetSource(ParquetSourceConfig.model_validate({"path": "o.parquet"})), ctx)
            ),
        )
        timed(
            "write quiver jsonl sink",
            rows,
            size,
            lambda: asyncio.run(
                write(JsonlSink(JsonlSinkConfig.model_validate({"path": "o.jsonl"})), data, ctx)
            ),
        )
        timed(
            "read  quiver jsonl source",
            rows,
            size,
            lambda: asyncio.run(
                drain(JsonlSource(JsonlSourceConfig.model_validate({"path": "o.jsonl"})), ctx)
            ),
        )


if __name__ == "__main__":
    main()
