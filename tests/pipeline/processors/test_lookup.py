"""The lookup processor: joins with a table read from a file."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.lookup import LookupProcessor
from quiver.runtime.errors import ConfigError

from .contract import ORDERS, batch, make, process, rows_of


def test_lookup_left_join_adds_columns_and_keeps_order(run_ctx: RunContext, countries: str) -> None:
    proc = make(LookupProcessor, {"file": countries, "on": {"country": "code"}, "prefix": "c_"})
    out = process(proc, batch(ORDERS), run_ctx)
    assert [(r["id"], r["c_name"], r["c_region"]) for r in rows_of(out)] == [
        (1, "Germany", "EU"),
        (2, None, None),
        (3, "France", "EU"),
        (4, "Germany", "EU"),
    ]


def test_lookup_inner_drops_unmatched_and_reject_reports_them(
    run_ctx: RunContext, countries: str
) -> None:
    inner = make(
        LookupProcessor,
        {"file": countries, "on": {"country": "code"}, "columns": ["name"], "how": "inner"},
    )
    assert [r["name"] for r in rows_of(process(inner, batch(ORDERS), run_ctx))] == [
        "Germany",
        "France",
        "Germany",
    ]
    rejecting = make(
        LookupProcessor, {"file": countries, "on": {"country": "code"}, "reject_unmatched": True}
    )
    out = process(rejecting, batch(ORDERS), run_ctx)
    (e,) = out.errors
    assert (e.line, e.column, e.value) == (3, "country", "XX")
    assert "no match in countries.csv" in e.reason


def test_lookup_reads_parquet_and_joins_on_shared_names(run_ctx: RunContext) -> None:
    pq.write_table(
        pa.table({"id": [1, 3], "score": [0.5, 0.9]}), Path(run_ctx.base_dir, "s.parquet")
    )
    out = process(
        make(LookupProcessor, {"file": "s.parquet", "on": ["id"]}), batch(ORDERS), run_ctx
    )
    assert [r["score"] for r in rows_of(out)] == [0.5, None, 0.9, None]


def test_lookup_refuses_duplicate_keys_and_missing_files(run_ctx: RunContext) -> None:
    Path(run_ctx.base_dir, "dup.csv").write_text("code,name\nDE,a\nDE,b\n")
    proc = make(LookupProcessor, {"file": "dup.csv", "on": {"country": "code"}})
    with pytest.raises(ConfigError, match="not unique"):
        process(proc, batch(ORDERS), run_ctx)
    missing = make(LookupProcessor, {"file": "nope.csv", "on": ["id"]})
    assert "not found" in missing.check(run_ctx)[0].message


def test_a_lookup_csv_with_text_after_a_closing_quote_is_refused_naming_its_line(
    run_ctx: RunContext,
) -> None:
    Path(run_ctx.base_dir, "q.csv").write_text('code,name\nDE,"Germany"\nFR,"Fr"ance\n')
    proc = make(LookupProcessor, {"file": "q.csv", "on": {"country": "code"}})
    with pytest.raises(ConfigError, match=r"text after the closing quote at line 3, column 8"):
        process(proc, batch(ORDERS), run_ctx)
