"""The database sink never turns a number into NULL: NaN and infinities are stored where the
database can hold them, and refused with their record number where it cannot."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.sinks.database import DatabaseSink
from quiver.runtime.errors import PermanentError

from ..conftest import ScratchDatabase, build, write_all


def floats(*values: float) -> pa.RecordBatch:
    n = len(values)
    return pa.record_batch(
        {
            "id": list(range(1, n + 1)),
            "x": pa.array(values, pa.float64()),
            LINE_COLUMN: pa.array(range(10, 10 + n), pa.int64()),
        }
    )


async def stored(db: ScratchDatabase) -> list[float | None]:
    return [r[0] for r in await db.query(f"SELECT x FROM {db.table('m')} ORDER BY id")]


async def test_nan_is_stored_or_refused_with_its_record_never_made_null(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    sink = build(DatabaseSink, {"url": test_db.url, "table": test_db.table("m"), "mode": "append"})
    batch = floats(1.5, math.nan, 2.5)
    if test_db.dialect == "postgresql":  # double precision holds NaN
        await write_all(sink, [batch], run_ctx)
        values = await stored(test_db)
        assert values[0] == 1.5 and values[2] == 2.5
        assert values[1] is not None and math.isnan(values[1])
        return
    with pytest.raises(
        PermanentError, match=r"column 'x' holds NaN in 1 row\(s\), at input line\(s\) 11;"
    ):
        await write_all(sink, [batch], run_ctx)
    assert await _rows_if_any(test_db) == []  # nothing written, no NULL in place of NaN


async def test_infinities_are_stored_or_refused_with_their_record(
    test_db: ScratchDatabase, run_ctx: RunContext
) -> None:
    sink = build(DatabaseSink, {"url": test_db.url, "table": test_db.table("m"), "mode": "append"})
    batch = floats(math.inf, -math.inf, 0.5)
    if test_db.dialect in ("postgresql", "sqlite"):
        await write_all(sink, [batch], run_ctx)
        assert await stored(test_db) == [math.inf, -math.inf, 0.5]
        return
    with pytest.raises(
        PermanentError, match=r"column 'x' holds Infinity in 2 row\(s\), at input line\(s\) 10, 11;"
    ):
        await write_all(sink, [batch], run_ctx)


async def _rows_if_any(db: ScratchDatabase) -> list[float | None]:
    try:
        return await stored(db)
    except Exception:  # the table was never created: nothing was written
        return []
