"""The dedupe processor and its hash set."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.processors.dedupe import DedupeProcessor, HashSet
from quiver.runtime.errors import PermanentError

from .contract import batch, make, process, rows_of


def test_dedupe_keeps_the_first_row_of_each_key_across_batches(run_ctx: RunContext) -> None:
    proc = make(DedupeProcessor, {"keys": ["k", "n"]})
    first = process(
        proc, batch([{"k": "a", "n": 1}, {"k": "b", "n": 1}, {"k": "a", "n": 1}]), run_ctx
    )
    second = process(
        proc, batch([{"k": "b", "n": 1}, {"k": "b", "n": 2}, {"k": None, "n": 2}], 5), run_ctx
    )
    assert rows_of(first) == [{"k": "a", "n": 1}, {"k": "b", "n": 1}]
    assert rows_of(second) == [{"k": "b", "n": 2}, {"k": None, "n": 2}]
    assert second.batch is not None and second.batch.column(LINE_COLUMN).to_pylist() == [6, 7]


def test_dedupe_keep_last_emits_the_last_rows_in_input_order(run_ctx: RunContext) -> None:
    proc = make(DedupeProcessor, {"keys": ["k"], "keep": "last"})
    assert process(proc, batch([{"k": "a", "v": 1}, {"k": "b", "v": 2}]), run_ctx).batch is None
    assert process(proc, batch([{"k": "a", "v": 3}, {"k": "c", "v": 4}], 4), run_ctx).batch is None

    async def drain() -> list[dict[str, Any]]:
        return [r for out in [o async for o in proc.flush(run_ctx)] for r in rows_of(out)]

    assert asyncio.run(drain()) == [{"k": "b", "v": 2}, {"k": "a", "v": 3}, {"k": "c", "v": 4}]


def test_dedupe_fails_clearly_beyond_max_keys(run_ctx: RunContext) -> None:
    proc = make(DedupeProcessor, {"keys": ["k"], "max_keys": 3})
    process(proc, batch([{"k": 1}, {"k": 2}, {"k": 1}]), run_ctx)
    with pytest.raises(PermanentError, match="more than max_keys=3"):
        process(proc, batch([{"k": 3}, {"k": 4}]), run_ctx)


def test_hash_set_finds_everything_it_was_given() -> None:
    import numpy as np

    hs = HashSet()
    rng = np.random.default_rng(7)
    added = rng.integers(0, 2**63, size=5000, dtype=np.uint64)
    for chunk in np.array_split(np.unique(added), 37):
        hs.add(chunk)
    assert hs.contains(np.unique(added)).all()
    others = rng.integers(0, 2**63, size=1000, dtype=np.uint64)
    others = others[~np.isin(others, added)]
    assert not hs.contains(others).any()
    assert len(hs.levels) <= 14
