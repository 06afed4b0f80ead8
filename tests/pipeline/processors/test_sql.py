"""The sql processor: a query over the batch, from text or a file, with extra tables."""

from __future__ import annotations

from pathlib import Path

import pytest

from quiver.pipeline.component import LINE_COLUMN, RunContext
from quiver.pipeline.processors.sql import SqlProcessor
from quiver.runtime.errors import ConfigError

from .contract import ORDERS, batch, make, process, rows_of


def test_sql_runs_over_the_batch_as_input(run_ctx: RunContext) -> None:
    proc = make(
        SqlProcessor, {"query": "select *, total * 1.2 as gross from input where country <> 'XX'"}
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [(r["id"], r["gross"]) for r in rows_of(out)] == [(1, 60.0), (3, 300.0), (4, None)]


def test_sql_from_a_file_relative_to_the_pipeline(run_ctx: RunContext) -> None:
    Path(run_ctx.base_dir, "q.sql").write_text("select id from input where id > 2")
    out = process(make(SqlProcessor, {"file": "q.sql"}), batch(ORDERS), run_ctx)
    assert rows_of(out) == [{"id": 3}, {"id": 4}]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("selec * from input", "syntax error"),
        ("select 1; select 2", "one SQL statement"),
        ("delete from input", "expected a SELECT"),
    ],
)
def test_sql_check_parses_the_query_up_front(run_ctx: RunContext, query: str, message: str) -> None:
    problems = make(SqlProcessor, {"query": query}).check(run_ctx)
    assert len(problems) == 1 and message in problems[0].message


def test_sql_joins_extra_tables_loaded_from_files(run_ctx: RunContext, countries: str) -> None:
    proc = make(
        SqlProcessor,
        {
            "query": "select i.id, c.name as country_name from input i "
            "left join countries c on i.country = c.code order by i.id",
            "tables": {"countries": countries},
        },
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [(r["id"], r["country_name"]) for r in rows_of(out)] == [
        (1, "Germany"),
        (2, None),
        (3, "France"),
        (4, "Germany"),
    ]
    missing = make(SqlProcessor, {"query": "select * from input", "tables": {"t": "no.csv"}})
    assert "table 't' file not found" in missing.check(run_ctx)[0].message


def test_sql_query_naming_a_column_twice_is_refused_with_the_names(run_ctx: RunContext) -> None:
    proc = make(SqlProcessor, {"query": "select id, country as id, total, 1 as total from input"})
    with pytest.raises(ConfigError) as raised:
        process(proc, batch(ORDERS), run_ctx)
    (detail,) = raised.value.details
    assert "names 'id', 'total' more than once" in detail.message
    assert detail.where == "query" and "name of its own" in (detail.fix or "")


def test_sql_query_naming_a_column_as_the_internal_line_column_is_refused(
    run_ctx: RunContext,
) -> None:
    proc = make(SqlProcessor, {"query": f'select id as "{LINE_COLUMN}" from input'})
    with pytest.raises(ConfigError, match="the query names an internal column"):
        process(proc, batch(ORDERS), run_ctx)
    kept = process(make(SqlProcessor, {"query": "select * from input"}), batch(ORDERS), run_ctx)
    assert kept.batch is not None and LINE_COLUMN in kept.batch.schema.names
