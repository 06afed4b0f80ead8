"""Rows the database source and sink tests write and read back."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa

from quiver.pipeline.component import LINE_COLUMN

from .conftest import ScratchDatabase


def orders(ids: list[int], name: str = "n") -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array(ids, pa.int64()),
            "name": pa.array([f"{name}{i}" for i in ids]),
            "total": pa.array([decimal.Decimal(f"{i}.50") for i in ids], pa.decimal128(10, 2)),
            "placed": pa.array([dt.datetime(2024, 1, 1, 12, 0, i % 60) for i in ids]),
            LINE_COLUMN: pa.array(range(1, len(ids) + 1), pa.int64()),
        }
    )


async def rows(db: ScratchDatabase, table: str, order: str = "id") -> list[tuple[object, ...]]:
    return await db.query(f"SELECT id, name FROM {db.table(table)} ORDER BY {order}")
