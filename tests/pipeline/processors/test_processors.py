"""Every built-in processor through its contract: one batch in, ProcessorOutput out."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quiver.pipeline.component import LINE_COLUMN, ProcessorOutput, RunContext, component_info
from quiver.pipeline.processors.cast import CastProcessor
from quiver.pipeline.processors.dedupe import DedupeProcessor, HashSet
from quiver.pipeline.processors.derive import DeriveProcessor
from quiver.pipeline.processors.filter import FilterProcessor
from quiver.pipeline.processors.lookup import LookupProcessor
from quiver.pipeline.processors.python import PythonProcessor
from quiver.pipeline.processors.rename import RenameProcessor
from quiver.pipeline.processors.select import SelectProcessor
from quiver.pipeline.processors.sql import SqlProcessor
from quiver.pipeline.processors.validate import ValidateProcessor
from quiver.runtime.errors import ConfigError, PermanentError


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


# -- validate -------------------------------------------------------------------------------


def test_validate_converts_every_type(run_ctx: RunContext) -> None:
    proc = make(
        ValidateProcessor,
        {
            "schema": {
                "i": "int",
                "l": "long",
                "f": "float",
                "d": {"type": "decimal", "scale": 2, "precision": 10},
                "s": "str",
                "b": "bool",
                "day": "date",
                "at": "datetime",
                "t": "time",
                "eu": {"type": "date", "format": "%d/%m/%Y"},
            }
        },
    )
    b = batch(
        [
            {
                "i": "42",
                "l": "9000000000",
                "f": "1.5",
                "d": "12.345",
                "s": "x",
                "b": "true",
                "day": "2024-02-29",
                "at": "2024-01-02 03:04:05",
                "t": "12:30:00",
                "eu": "31/12/2023",
            }
        ]
    )
    out = process(proc, b, run_ctx)
    assert out.errors == []
    (row,) = rows_of(out)
    assert row == {
        "i": 42,
        "l": 9_000_000_000,
        "f": 1.5,
        "d": decimal.Decimal("12.35"),
        "s": "x",
        "b": True,
        "day": dt.date(2024, 2, 29),
        "at": dt.datetime(2024, 1, 2, 3, 4, 5),
        "t": dt.time(12, 30),
        "eu": dt.date(2023, 12, 31),
    }
    assert out.batch is not None and out.batch.schema.field("i").type == pa.int32()


@pytest.mark.parametrize(
    ("rule", "value", "reason"),
    [
        ("int", "1.5", "expected int"),
        ("int", "abc", "expected int"),
        ("int", "3000000000", "expected int"),
        ("long", "12x", "expected long"),
        ("float", "one", "expected float"),
        ("bool", "maybe", "expected bool"),
        ("date", "2023-02-30", "expected date"),
        (
            {"type": "date", "format": "%d/%m/%Y"},
            "2023-12-31",
            "expected date in the format %d/%m/%Y",
        ),
        ("datetime", "yesterday", "expected datetime"),
        ("time", "25:00", "expected time"),
        ({"type": "decimal", "precision": 4, "scale": 2}, "123.45", "expected decimal(4,2)"),
        ({"required": True}, "", "required value is missing"),
        ({"required": True}, None, "required value is missing"),
        ({"pattern": "[a-z]+@[a-z]+"}, "Bob@x", "does not match the pattern [a-z]+@[a-z]+"),
        ({"type": "int", "min": 0}, "-1", "below the minimum 0"),
        ({"type": "float", "max": 9.5}, "9.6", "above the maximum 9.5"),
        ({"type": "date", "min": "2024-01-01"}, "2023-12-31", "below the minimum 2024-01-01"),
        ({"min_length": 3}, "ab", "shorter than 3 characters"),
        ({"max_length": 3}, "abcd", "longer than 3 characters"),
        ({"enum": ["DE", "FR"]}, "US", "not one of DE, FR"),
        ({"type": "int", "enum": [1, 2]}, "3", "not one of 1, 2"),
    ],
)
def test_validate_rejects_bad_values_with_line_column_value_and_reason(
    run_ctx: RunContext, rule: Any, value: Any, reason: str
) -> None:
    proc = make(ValidateProcessor, {"schema": {"v": rule}})
    out = process(proc, batch([{"v": value}], 11), run_ctx)
    assert len(out.errors) == 1
    (e,) = out.errors
    assert (e.line, e.column, e.value, e.reason) == (11, "v", value, reason)
    assert e.row == {"v": value, LINE_COLUMN: 11}
    assert out.batch is not None and out.batch.num_rows == 0


def test_validate_accepts_good_values_of_every_check(run_ctx: RunContext) -> None:
    proc = make(
        ValidateProcessor,
        {
            "schema": {
                "a": {"type": "int", "min": 0, "max": 10, "enum": [0, 5, 10]},
                "b": {"pattern": ".+@.+", "min_length": 3, "max_length": 10, "required": True},
                "c": {"type": "decimal", "min": 0},
            }
        },
    )
    out = process(
        proc, batch([{"a": "5", "b": "a@b", "c": "0"}, {"a": "", "b": "x@y", "c": None}]), run_ctx
    )
    assert out.errors == []
    assert rows_of(out) == [
        {"a": 5, "b": "a@b", "c": decimal.Decimal("0E-9")},
        {"a": None, "b": "x@y", "c": None},
    ]


def test_validate_reports_every_failing_field_of_a_row_once(run_ctx: RunContext) -> None:
    proc = make(
        ValidateProcessor,
        {"schema": {"id": "int", "email": {"pattern": ".+@.+", "required": True}}},
    )
    out = process(proc, batch([{"id": "x", "email": "nope"}]), run_ctx)
    (e,) = out.errors
    assert e.column == "id" and e.value == "x"
    assert e.reason == "id: expected int; email: does not match the pattern .+@.+"


def test_validate_without_convert_keeps_the_original_values(run_ctx: RunContext) -> None:
    proc = make(ValidateProcessor, {"schema": {"n": "int"}, "convert": False})
    out = process(proc, batch([{"n": "007"}, {"n": "x"}]), run_ctx)
    assert rows_of(out) == [{"n": "007"}]


def test_validate_names_a_missing_column_with_a_suggestion(run_ctx: RunContext) -> None:
    proc = make(ValidateProcessor, {"schema": {"emial": "str"}})
    with pytest.raises(PermanentError, match=r"emial.*did you mean 'email'"):
        process(proc, batch([{"email": "a"}]), run_ctx)


def test_validate_config_rejects_unknown_rule_keys_and_types() -> None:
    config = component_info(ValidateProcessor).config
    with pytest.raises(ValueError, match="patern"):
        config.model_validate({"schema": {"a": {"patern": "x"}}})
    with pytest.raises(ValueError, match="integer"):
        config.model_validate({"schema": {"a": "integer"}})


# -- cast -----------------------------------------------------------------------------------


def test_cast_converts_and_rejects_values_that_do_not_fit(run_ctx: RunContext) -> None:
    proc = make(
        CastProcessor,
        {
            "columns": {
                "qty": "int",
                "price": {"type": "decimal", "scale": 2},
                "day": {"type": "date", "format": "%d.%m.%Y"},
            }
        },
    )
    out = process(
        proc,
        batch(
            [
                {"qty": "3", "price": "9.99", "day": "01.02.2024"},
                {"qty": "three", "price": "1", "day": "x"},
            ]
        ),
        run_ctx,
    )
    assert rows_of(out) == [
        {"qty": 3, "price": decimal.Decimal("9.99"), "day": dt.date(2024, 2, 1)}
    ]
    (e,) = out.errors
    assert (e.line, e.column, e.value) == (3, "qty", "three")
    assert "qty: expected int" in e.reason and "day: expected date" in e.reason


# -- select / rename --------------------------------------------------------------------------


def test_select_keeps_listed_columns_in_order_and_the_line_column(run_ctx: RunContext) -> None:
    out = process(
        make(SelectProcessor, {"columns": ["c", "a"]}), batch([{"a": 1, "b": 2, "c": 3}]), run_ctx
    )
    assert out.batch is not None and out.batch.schema.names == ["c", "a", LINE_COLUMN]


def test_select_exclude_drops_columns(run_ctx: RunContext) -> None:
    out = process(make(SelectProcessor, {"exclude": ["b"]}), batch([{"a": 1, "b": 2}]), run_ctx)
    assert rows_of(out) == [{"a": 1}]


def test_select_unknown_column_is_an_error_with_a_suggestion(run_ctx: RunContext) -> None:
    with pytest.raises(PermanentError, match="did you mean 'total'"):
        process(make(SelectProcessor, {"columns": ["totl"]}), batch([{"total": 1}]), run_ctx)


def test_select_needs_exactly_one_of_columns_or_exclude() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        component_info(SelectProcessor).config.model_validate({"columns": ["a"], "exclude": ["b"]})


def test_rename_renames_and_refuses_duplicates(run_ctx: RunContext) -> None:
    out = process(
        make(RenameProcessor, {"columns": {"a": "x"}}), batch([{"a": 1, "b": 2}]), run_ctx
    )
    assert rows_of(out) == [{"x": 1, "b": 2}]
    with pytest.raises(PermanentError, match="duplicate column"):
        process(make(RenameProcessor, {"columns": {"a": "b"}}), batch([{"a": 1, "b": 2}]), run_ctx)


# -- filter / derive / sql --------------------------------------------------------------------


ORDERS: list[dict[str, Any]] = [
    {"id": 1, "total": 50.0, "country": "DE"},
    {"id": 2, "total": 150.0, "country": "XX"},
    {"id": 3, "total": 250.0, "country": "FR"},
    {"id": 4, "total": None, "country": "DE"},
]


def test_filter_keeps_matching_rows_and_drops_false_and_null(run_ctx: RunContext) -> None:
    out = process(
        make(FilterProcessor, {"expression": "total > 100 and country <> 'XX'"}),
        batch(ORDERS),
        run_ctx,
    )
    assert [r["id"] for r in rows_of(out)] == [3]


def test_filter_otherwise_routes_the_other_rows(run_ctx: RunContext) -> None:
    out = process(
        make(FilterProcessor, {"expression": "total > 100", "otherwise": "small"}),
        batch(ORDERS),
        run_ctx,
    )
    assert [r["id"] for r in rows_of(out)] == [2, 3]
    assert [r["id"] for r in out.routes["small"][0].to_pylist()] == [1, 4]


def test_filter_reject_turns_other_rows_into_row_errors(run_ctx: RunContext) -> None:
    proc = make(
        FilterProcessor, {"expression": "country <> 'XX'", "reject": True, "reason": "embargo"}
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [(e.line, e.reason) for e in out.errors] == [(3, "embargo")]


def test_filter_with_an_unknown_column_fails_with_the_batch_columns(run_ctx: RunContext) -> None:
    with pytest.raises(PermanentError, match=r"the batch columns are id, total, country\)$"):
        process(make(FilterProcessor, {"expression": "amount > 1"}), batch(ORDERS), run_ctx)


def test_filter_check_reports_syntax_errors(run_ctx: RunContext) -> None:
    problems = make(FilterProcessor, {"expression": "total >> > 1"}).check(run_ctx)
    assert problems and "syntax error" in problems[0].message


def test_derive_adds_replaces_and_chains_columns(run_ctx: RunContext) -> None:
    proc = make(
        DeriveProcessor,
        {"columns": {"gross": "total * 2", "country": "lower(country)", "big": "gross > 200"}},
    )
    out = process(proc, batch(ORDERS[:3]), run_ctx)
    assert rows_of(out) == [
        {"id": 1, "total": 50.0, "country": "de", "gross": 100.0, "big": False},
        {"id": 2, "total": 150.0, "country": "xx", "gross": 300.0, "big": True},
        {"id": 3, "total": 250.0, "country": "fr", "gross": 500.0, "big": True},
    ]
    assert out.batch is not None and out.batch.column(LINE_COLUMN).to_pylist() == [2, 3, 4]


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


# -- dedupe ---------------------------------------------------------------------------------


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


# -- lookup ---------------------------------------------------------------------------------


@pytest.fixture
def countries(run_ctx: RunContext) -> str:
    Path(run_ctx.base_dir, "countries.csv").write_text(
        "code,name,region\nDE,Germany,EU\nFR,France,EU\n"
    )
    return "countries.csv"


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


# -- python ---------------------------------------------------------------------------------


def py(run_ctx: RunContext, code: str, **options: Any) -> PythonProcessor:
    Path(run_ctx.base_dir, "t.py").write_text(code)
    proc: PythonProcessor = make(PythonProcessor, {"file": "t.py", **options})
    return proc


def test_python_row_function_maps_splits_drops_and_rejects(run_ctx: RunContext) -> None:
    proc = py(
        run_ctx,
        "def transform(row, ctx):\n"
        "    if row['id'] == 1: return {**row, 'run': ctx.run_id[:0] + 'x'}\n"
        "    if row['id'] == 2: return None\n"
        "    if row['id'] == 3: return [{**row, 'run': 'a'}, {**row, 'run': 'b'}]\n"
        "    raise ValueError('bad id')\n",
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [(r["id"], r["run"]) for r in rows_of(out)] == [(1, "x"), (3, "a"), (3, "b")]
    assert out.batch is not None and out.batch.column(LINE_COLUMN).to_pylist() == [2, 4, 4]
    (e,) = out.errors
    assert (e.line, e.reason) == (5, "ValueError: bad id")


def test_python_batch_function_gets_and_returns_arrow(run_ctx: RunContext) -> None:
    proc = py(
        run_ctx,
        "import pyarrow.compute as pc\n"
        "def double(batch, ctx):\n"
        "    return batch.set_column(0, 'id', pc.multiply(batch.column('id'), 2))\n",
        function="double",
        mode="batch",
    )
    out = process(proc, batch(ORDERS), run_ctx)
    assert [r["id"] for r in rows_of(out)] == [2, 4, 6, 8]
    assert out.batch is not None and out.batch.column(LINE_COLUMN).to_pylist() == [2, 3, 4, 5]


def test_python_check_reports_syntax_errors_with_their_line(run_ctx: RunContext) -> None:
    proc = py(run_ctx, "def transform(row, ctx):\n    return row\n\ndef broken(:\n")
    (problem,) = proc.check(run_ctx)
    assert problem.where.endswith("t.py:4:12") and "syntax error" in problem.message


def test_python_check_reports_a_missing_function_and_failed_imports(run_ctx: RunContext) -> None:
    proc = py(run_ctx, "def other(row, ctx):\n    return row\n")
    (problem,) = proc.check(run_ctx)
    assert "no function 'transform'" in problem.message and "other" in problem.fix
    broken = py(run_ctx, "import quiver_no_such_module\n")
    (problem,) = broken.check(run_ctx)
    assert "import failed" in problem.message and problem.where.endswith("t.py:1")


def test_python_batch_exception_fails_with_the_user_line(run_ctx: RunContext) -> None:
    proc = py(run_ctx, "def transform(batch, ctx):\n    raise KeyError('nope')\n", mode="batch")
    with pytest.raises(PermanentError) as err:
        process(proc, batch(ORDERS), run_ctx)
    assert err.value.details[0].where.endswith("t.py:2")


def test_validate_checks_typed_columns_without_going_through_text(run_ctx: RunContext) -> None:
    proc = make(
        ValidateProcessor,
        {
            "schema": {
                "n": {"type": "int", "min": 0},
                "x": {"type": "decimal", "scale": 1},
                "ok": "bool",
            }
        },
    )
    b = pa.RecordBatch.from_pydict(
        {
            "n": pa.array([5, -1, 3_000_000_000, None], pa.int64()),
            "x": pa.array([1.25, 2.0, 3.0, 4.0]),
            "ok": pa.array([True, False, None, True]),
            LINE_COLUMN: pa.array([2, 3, 4, 5], pa.int64()),
        }
    )
    out = process(proc, b, run_ctx)
    assert [(e.line, e.reason) for e in out.errors] == [
        (3, "below the minimum 0"),
        (4, "expected int"),
    ]
    assert rows_of(out) == [
        {"n": 5, "x": decimal.Decimal("1.3"), "ok": True},
        {"n": None, "x": decimal.Decimal("4.0"), "ok": True},
    ]


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
