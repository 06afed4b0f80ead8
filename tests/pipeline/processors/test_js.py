"""The ``js`` processor through its component API: both script styles, every context function,
typed output, routes, row errors with line numbers, limits, and order across workers."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from quiver.pipeline.component import LINE_COLUMN, ProcessorOutput, RunContext, component_info
from quiver.pipeline.processors.js import JsProcessor, JsProcessorConfig
from quiver.runtime.errors import ConfigError, PermanentError


def orders(n: int = 4, first_line: int = 2) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "id": pa.array(range(1, n + 1), pa.int64()),
            "name": pa.array([f"name{i}" for i in range(1, n + 1)]),
            "total": pa.array([Decimal(f"{i}.50") for i in range(1, n + 1)], pa.decimal128(10, 2)),
            LINE_COLUMN: pa.array(range(first_line, first_line + n), pa.int64()),
        }
    )


#: How isolates run: one in this process, two on threads of this process, one worker process.
RUNNERS = pytest.mark.parametrize(
    ("workers", "isolation"),
    [(0, "thread"), (2, "thread"), (1, "process")],
    ids=["one-isolate", "threads", "process"],
)


class Run:
    """A processor plus a RunContext that records log lines."""

    def __init__(self, tmp_path: Path, **options: Any) -> None:
        options.setdefault("workers", 0)
        self.proc = JsProcessor(JsProcessorConfig(**options))
        self.logs: list[tuple[str, str]] = []
        self.ctx = RunContext(
            run_id="t",
            base_dir=str(tmp_path),
            variables={"COUNTRY": "NL"},
            log=lambda message, level: self.logs.append((level, message)),
        )

    async def __call__(self, batch: pa.RecordBatch) -> ProcessorOutput:
        return await self.proc.process(batch, self.ctx)

    async def close(self) -> None:
        await self.proc.close()


@pytest.fixture
async def run_js(tmp_path: Path) -> Any:
    made: list[Run] = []

    def make(**options: Any) -> Run:
        r = Run(tmp_path, **options)
        made.append(r)
        return r

    yield make
    for r in made:
        await r.close()


def rows(batch: pa.RecordBatch | None) -> list[dict[str, Any]]:
    assert batch is not None
    got: list[dict[str, Any]] = batch.to_pylist()
    return got


# ------------------------------------------------------------------ the component


def test_js_is_registered_as_a_processor_with_its_config() -> None:
    info = component_info(JsProcessor)
    assert (info.kind, info.name, info.config) == ("processor", "js", JsProcessorConfig)


def test_config_needs_exactly_one_of_file_and_script() -> None:
    with pytest.raises(ValidationError, match="either `file`"):
        JsProcessorConfig()
    with pytest.raises(ValidationError, match="either `file`"):
        JsProcessorConfig(file="a.js", script="function transform(r){return r}")


def test_unknown_output_type_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ValidationError, match="unknown field type 'strng'; did you mean 'string'"):
        JsProcessorConfig(script="x", output_schema={"a": "strng"})


def test_unknown_config_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="timeout"):
        JsProcessorConfig(script="x", timeout=3)  # type: ignore[call-arg]


# ------------------------------------------------------------------ transform(row, ctx)


async def test_transform_derives_fields_and_keeps_line_numbers(run_js: Any) -> None:
    js = run_js(
        script="""
        function transform(row, ctx) {
          row.gross = row.total * 2;
          row.upper = row.name.toUpperCase();
          row.country = ctx.variables.COUNTRY;
          return row;
        }"""
    )
    out = await js(orders(3, first_line=10))
    got = rows(out.batch)
    assert [r["upper"] for r in got] == ["NAME1", "NAME2", "NAME3"]
    assert [r["gross"] for r in got] == [3.0, 5.0, 7.0]
    assert {r["country"] for r in got} == {"NL"}
    assert [r[LINE_COLUMN] for r in got] == [10, 11, 12]
    # unchanged input columns keep their Arrow types
    assert out.batch is not None
    assert out.batch.schema.field("total").type == pa.decimal128(10, 2)
    assert out.batch.schema.field("id").type == pa.int64()
    assert out.errors == []


async def test_transform_null_drops_and_array_fans_out(run_js: Any) -> None:
    js = run_js(
        script="""
        function transform(row) {
          if (row.id === 1) return null;
          if (row.id === 2) return [{id: row.id, part: 'a'}, {id: row.id, part: 'b'}];
          return {id: row.id, part: 'only'};
        }"""
    )
    out = await js(orders(3))
    assert [(r["id"], r["part"], r[LINE_COLUMN]) for r in rows(out.batch)] == [
        (2, "a", 3),
        (2, "b", 3),
        (3, "only", 4),
    ]


async def test_transform_returning_undefined_is_a_row_error(run_js: Any) -> None:
    js = run_js(script="function transform(row) { row.x = 1; }")
    out = await js(orders(2))
    assert out.batch is None or out.batch.num_rows == 0
    assert [e.line for e in out.errors] == [2, 3]
    assert "returned undefined" in out.errors[0].reason


async def test_ctx_emit_reject_lookups_and_log(run_js: Any, tmp_path: Path) -> None:
    (tmp_path / "names.csv").write_text("code,label\nname1,First\nname2,Second\n")
    js = run_js(
        script="""
        function transform(row, ctx) {
          if (row.id === 3) { ctx.reject('id 3 is not allowed'); return null; }
          var hit = ctx.lookups.labels[row.name];
          if (!hit) {
            ctx.emit('unknown');
            ctx.log('no label for ' + row.name, 'warn');
            return null;
          }
          row.label = hit.label;
          row.flag = ctx.lookups.flags[String(row.id)];
          ctx.emit('audit', {id: row.id, at_line: ctx.line});
          return row;
        }""",
        lookups={
            "labels": {"path": "names.csv", "key": "code"},
            "flags": {"values": {"1": "one", "2": "two"}},
        },
    )
    out = await js(orders(4))
    assert [(r["id"], r["label"], r["flag"]) for r in rows(out.batch)] == [
        (1, "First", "one"),
        (2, "Second", "two"),
    ]
    assert rows(out.routes["audit"][0]) == [
        {"id": 1, "at_line": 2, LINE_COLUMN: 2},
        {"id": 2, "at_line": 3, LINE_COLUMN: 3},
    ]
    unknown = rows(out.routes["unknown"][0])
    assert [(r["id"], r["name"], r[LINE_COLUMN]) for r in unknown] == [(4, "name4", 5)]
    assert [(e.line, e.reason) for e in out.errors] == [(4, "id 3 is not allowed")]
    assert out.errors[0].row is not None and out.errors[0].row["id"] == 3
    assert js.logs == [("warning", "no label for name4")]


async def test_console_goes_to_the_run_log(run_js: Any) -> None:
    js = run_js(
        script="""
        function transform(row) {
          console.log('row', row.id, {ok: true});
          if (row.id === 2) console.error('second');
          return row;
        }"""
    )
    await js(orders(2))
    assert js.logs == [
        ("info", 'row 1 {"ok":true}'),
        ("info", 'row 2 {"ok":true}'),
        ("error", "second"),
    ]


# ------------------------------------------------------------------ FlowEngine process(context)


async def test_process_style_with_typed_output_schema(run_js: Any) -> None:
    js = run_js(
        script="""
        function process(context) {
          var c = context.input.current();
          context.output.setField('full', c.name + '#' + c.id);
          context.output.setField('amount', c.total * 3);
          return c.id !== 2;
        }""",
        output_schema={
            "id": "integer",
            "full": "string",
            "amount": {"type": "decimal", "scale": 2},
        },
    )
    out = await js(orders(3))
    assert out.batch is not None
    assert out.batch.schema.field("id").type == pa.int32()
    assert out.batch.schema.field("amount").type == pa.decimal128(38, 2)
    assert rows(out.batch) == [
        {"id": 1, "full": "name1#1", "amount": Decimal("4.50"), LINE_COLUMN: 2},
        {"id": 3, "full": "name3#3", "amount": Decimal("10.50"), LINE_COLUMN: 4},
    ]
    assert out.errors == []


async def test_set_field_outside_the_output_schema_is_a_row_error_at_the_call(
    run_js: Any,
) -> None:
    js = run_js(
        script=(
            "function process(context) {\n  context.output.setField('nope', 1);\n  return true;\n}"
        ),
        output_schema={"id": "long"},
    )
    out = await js(orders(1))
    assert len(out.errors) == 1
    assert "Field 'nope' not found in output schema (declared: id)" in out.errors[0].reason
    assert out.errors[0].reason.endswith("(at inline.js:2:18)")


async def test_process_without_schema_keeps_input_and_applies_set_and_remove(run_js: Any) -> None:
    js = run_js(
        script="""
        function process(context) {
          context.output.setField('tag', 'x' + context.input.getValue('id'));
          context.output.removeField('name');
          return true;
        }"""
    )
    out = await js(orders(2))
    assert rows(out.batch) == [
        {"id": 1, "total": Decimal("1.50"), "tag": "x1", LINE_COLUMN: 2},
        {"id": 2, "total": Decimal("2.50"), "tag": "x2", LINE_COLUMN: 3},
    ]


async def test_process_must_return_a_boolean(run_js: Any) -> None:
    js = run_js(script="function process(context) { }")
    out = await js(orders(1))
    assert (
        "must return true (keep the row) or false (skip it), got undefined" in out.errors[0].reason
    )


async def test_input_schema_describes_the_columns(run_js: Any) -> None:
    js = run_js(
        script="""
        function process(context) {
          var s = context.input.schema();
          context.output.setField('desc', s.FieldCount + ':' + s.Fields.map(function (f) {
            return f.Name + '/' + f.Type + '/' + f.Index; }).join(','));
          return true;
        }""",
        output_schema={"desc": "string"},
    )
    out = await js(orders(1))
    assert rows(out.batch)[0]["desc"] == "3:id/long/0,name/string/1,total/decimal/2"


async def test_validation_failures_reject_the_row_with_their_messages(run_js: Any) -> None:
    batch = pa.RecordBatch.from_pydict(
        {
            "id": [1, 2, 3, 4],
            "email": ["a@x.org", "", "c@x.org", "bad"],
            "amount": [10, 5, -1, 7],
            LINE_COLUMN: [2, 3, 4, 5],
        }
    )
    js = run_js(
        script="""
        function process(context) {
          var c = context.input.current();
          var ok = context.validate.required(['id', 'email']);
          ok = context.validate.businessRule('amount >= 0', 'amount must not be negative') && ok;
          ok = context.validate.custom(function (r) {
            return r.email === '' || r.email.indexOf('@') > 0 || 'email has no @';
          }) && ok;
          return ok;
        }"""
    )
    out = await js(batch)
    assert [r["id"] for r in rows(out.batch)] == [1]
    assert [(e.line, e.reason) for e in out.errors] == [
        (3, "required field 'email' is missing"),
        (4, "amount must not be negative"),
        (5, "email has no @"),
    ]


async def test_business_rule_with_an_unknown_name_is_a_script_error(run_js: Any) -> None:
    js = run_js(
        script="function process(context) { return context.validate.businessRule('amout > 0'); }"
    )
    out = await js(orders(1))
    assert 'businessRule("amout > 0"): ReferenceError: amout is not defined' in out.errors[0].reason


async def test_route_send_moves_and_send_copy_copies(run_js: Any) -> None:
    js = run_js(
        script="""
        function process(context) {
          var c = context.input.current();
          if (c.id === 1) context.route.send('review');
          if (c.id === 2) context.route.sendCopy('audit');
          if (c.id === 3) { context.route.send('invalid'); return false; }
          return true;
        }""",
        routes=["review", "audit", "invalid"],
    )
    out = await js(orders(4))
    assert [r["id"] for r in rows(out.batch)] == [2, 4]
    assert [r["id"] for r in rows(out.routes["review"][0])] == [1]
    assert [r["id"] for r in rows(out.routes["audit"][0])] == [2]
    assert [r["id"] for r in rows(out.routes["invalid"][0])] == [3]
    assert out.routes["invalid"][0].schema.field("total").type == pa.decimal128(10, 2)
    assert out.errors == []


async def test_sending_to_an_undeclared_route_is_a_row_error(run_js: Any) -> None:
    js = run_js(
        script="function process(context) { context.route.send('bad'); return true; }",
        routes=["good"],
    )
    out = await js(orders(1))
    assert "unknown route 'bad'; this step declares: good" in out.errors[0].reason


async def test_utils_now_guid_format_date_and_log(run_js: Any) -> None:
    js = run_js(
        script="""
        function process(context) {
          var u = context.utils;
          context.output.setField('at', u.now());
          context.output.setField('guid', u.newGuid());
          var at = '2024-03-05T07:08:09.123Z';
          context.output.setField('day', u.formatDate(at, 'dd/MM/yyyy HH:mm:ss.fff tt'));
          var jan2 = new Date(Date.UTC(2024, 0, 2));
          context.output.setField('month', u.formatDate(jan2, "MMMM d, yyyy"));
          u.log('row ' + context.input.current().id, 'debug');
          u.log('warning', 'FlowEngine argument order');
          return true;
        }""",
        output_schema={"at": "datetime", "guid": "string", "day": "string", "month": "string"},
    )
    before = dt.datetime.now(dt.UTC)
    out = await js(orders(1))
    got = rows(out.batch)[0]
    assert before - dt.timedelta(seconds=1) <= got["at"] <= dt.datetime.now(dt.UTC)
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", got["guid"]
    )
    assert got["day"] == "05/03/2024 07:08:09.123 AM"
    assert got["month"] == "January 2, 2024"
    assert js.logs == [("debug", "row 1"), ("warning", "FlowEngine argument order")]


async def test_add_metadata_lands_in_the_batch_schema_metadata(run_js: Any) -> None:
    js = run_js(
        script="function process(c) { c.output.addMetadata('source', 'crm'); return true; }"
    )
    out = await js(orders(1))
    assert out.batch is not None
    assert out.batch.schema.metadata == {b"source": b"crm"}


# ------------------------------------------------------------------ typed output


async def test_every_output_type_is_converted(run_js: Any) -> None:
    js = run_js(
        script="""
        function process(context) {
          var o = context.output;
          o.setField('s', 42); o.setField('i', '17'); o.setField('l', 9007199254740991);
          o.setField('d', '12.345'); o.setField('f', '2.5'); o.setField('b', 'yes');
          o.setField('ts', '2024-05-06T10:20:30Z'); o.setField('day', '2024-05-06');
          o.setField('t', '10:20:30.5');
          return true;
        }""",
        output_schema={
            "s": "string",
            "i": "integer",
            "l": "long",
            "d": {"type": "decimal", "precision": 10, "scale": 2},
            "f": "double",
            "b": "boolean",
            "ts": "datetime",
            "day": "date",
            "t": "time",
        },
    )
    out = await js(orders(1))
    assert out.errors == []
    assert out.batch is not None
    types = {f.name: f.type for f in out.batch.schema}
    assert types == {
        "s": pa.string(),
        "i": pa.int32(),
        "l": pa.int64(),
        "d": pa.decimal128(10, 2),
        "f": pa.float64(),
        "b": pa.bool_(),
        "ts": pa.timestamp("ms", tz="UTC"),
        "day": pa.date32(),
        "t": pa.time64("us"),
        LINE_COLUMN: pa.int64(),
    }
    got = rows(out.batch)[0]
    assert got["s"] == "42" and got["i"] == 17 and got["l"] == 9007199254740991
    assert got["d"] == Decimal("12.34") and got["f"] == 2.5 and got["b"] is True
    assert got["ts"] == dt.datetime(2024, 5, 6, 10, 20, 30, tzinfo=dt.UTC)
    assert got["day"] == dt.date(2024, 5, 6)
    assert got["t"] == dt.time(10, 20, 30, 500000)


async def test_a_value_that_does_not_fit_its_type_rejects_the_row_with_field_and_value(
    run_js: Any,
) -> None:
    js = run_js(
        script="function transform(row) { return {id: row.id, age: row.id === 2 ? 'old' : 40}; }",
        output_schema={"id": "long", "age": {"type": "integer", "required": True}},
    )
    out = await js(orders(3, first_line=7))
    assert [r["id"] for r in rows(out.batch)] == [1, 3]
    (err,) = out.errors
    assert (err.line, err.column, err.value) == (8, "age", "old")
    assert 'cannot convert "old" to integer' in err.reason


async def test_required_field_left_empty_rejects_the_row(run_js: Any) -> None:
    js = run_js(
        script="function transform(row) { return {id: row.id, note: row.id > 1 ? 'x' : null}; }",
        output_schema={"id": "long", "note": {"type": "string", "required": True}},
    )
    out = await js(orders(2))
    assert [e.reason for e in out.errors] == [
        "output field 'note': field 'note' is required but has no value"
    ]


async def test_timestamp_input_columns_arrive_as_dates(run_js: Any) -> None:
    batch = pa.RecordBatch.from_pydict(
        {"at": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("us"))}
    )
    js = run_js(
        script="""
        function transform(row) {
          return {y: row.at.getUTCFullYear(), iso: row.at.toISOString(), at: row.at};
        }"""
    )
    out = await js(batch)
    got = rows(out.batch)[0]
    assert got["y"] == 2024 and got["iso"] == "2024-01-02T03:04:05.000Z"
    assert got["at"] == dt.datetime(2024, 1, 2, 3, 4, 5)


async def test_inferred_schema_stays_the_same_across_batches(run_js: Any) -> None:
    js = run_js(
        script="function transform(row) { return {id: row.id, x: row.id > 2 ? 1.5 : null}; }"
    )
    first = await js(orders(2))
    second = await js(orders(4))
    assert first.batch is not None and second.batch is not None
    assert first.batch.schema == second.batch.schema
    assert [r["x"] for r in rows(second.batch)] == [None, None, "1.5", "1.5"]


async def test_a_column_appearing_in_a_later_batch_fails_with_a_fix(run_js: Any) -> None:
    js = run_js(script="function transform(row) { if (row.id > 2) row.late = 1; return row; }")
    await js(orders(2))
    with pytest.raises(PermanentError, match="late") as info:
        await js(orders(4))
    assert "output_schema" in str(info.value)


# ------------------------------------------------------------------ errors and limits


async def test_script_error_names_source_line_and_script_position(
    run_js: Any, tmp_path: Path
) -> None:
    (tmp_path / "enrich.js").write_text(
        "function transform(row) {\n"
        "  if (row.id === 2) {\n"
        "    return row.missing.field;\n"
        "  }\n"
        "  return row;\n"
        "}\n"
    )
    js = run_js(file="enrich.js")
    out = await js(orders(3, first_line=20))
    assert [r["id"] for r in rows(out.batch)] == [1, 3]
    (err,) = out.errors
    assert err.line == 21
    assert err.reason == (
        "TypeError: Cannot read properties of undefined (reading 'field') (at enrich.js:3:24)"
    )
    assert err.row is not None and err.row["name"] == "name2"


async def test_missing_script_file_is_a_config_error_with_a_suggestion(
    run_js: Any, tmp_path: Path
) -> None:
    (tmp_path / "enrich.js").write_text("function transform(r) { return r; }")
    js = run_js(file="enrhic.js")
    with pytest.raises(ConfigError, match=r"did you mean 'enrich\.js'"):
        await js(orders(1))


async def test_script_without_an_entry_function_is_a_config_error(run_js: Any) -> None:
    js = run_js(script="function main() {}")
    with pytest.raises(ConfigError, match="neither function process"):
        await js(orders(1))


@RUNNERS
async def test_endless_loop_is_stopped_by_the_time_limit_and_the_next_batch_runs(
    run_js: Any, workers: int, isolation: str
) -> None:
    js = run_js(
        script="function transform(row) { while (row.id === 99) {} return row; }",
        timeout_seconds=0.5,
        workers=workers,
        isolation=isolation,
        min_rows_per_worker=1,
    )
    looping = pa.RecordBatch.from_pydict({"id": [1, 99]})
    with pytest.raises(PermanentError) as info:
        await js(looping)
    assert "time limit of 0.5 s" in str(info.value)
    assert "timeout_seconds" in str(info.value)
    out = await js(orders(2))
    assert [r["id"] for r in rows(out.batch)] == [1, 2]


@RUNNERS
async def test_heap_blow_up_is_stopped_by_the_heap_limit_and_the_next_batch_runs(
    run_js: Any, workers: int, isolation: str
) -> None:
    js = run_js(
        script="""
        var keep = [];
        function transform(row) {
          if (row.id === 99) { while (true) keep.push(new Array(100000).fill(row.id)); }
          return row;
        }""",
        heap_limit_mb=64,
        timeout_seconds=20,
        workers=workers,
        isolation=isolation,
    )
    with pytest.raises(PermanentError) as info:
        await js(pa.RecordBatch.from_pydict({"id": [99]}))
    assert "heap limit of 64 MB" in str(info.value)
    out = await js(orders(2))
    assert [r["id"] for r in rows(out.batch)] == [1, 2]


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_batches_keep_their_order_across_several_workers(run_js: Any, isolation: str) -> None:
    js = run_js(
        script="""
        function transform(row) {
          var spin = (row.id * 7919) % 300;   // uneven work per row
          for (var i = 0; i < spin; i++) {}
          return {id: row.id, sq: row.id * row.id};
        }""",
        workers=2,
        isolation=isolation,
        min_rows_per_worker=100,
    )
    assert js.proc.cfg.workers == 2
    for start in (0, 5000):
        n = 2500
        batch = pa.RecordBatch.from_pydict(
            {
                "id": list(range(start, start + n)),
                LINE_COLUMN: list(range(start + 2, start + 2 + n)),
            }
        )
        out = await js(batch)
        got = rows(out.batch)
        assert [r["id"] for r in got] == list(range(start, start + n))
        assert [r[LINE_COLUMN] for r in got] == list(range(start + 2, start + 2 + n))
        assert all(r["sq"] == r["id"] * r["id"] for r in got)
    assert js.proc.style == "transform"


@pytest.mark.parametrize("isolation", ["thread", "process"])
@pytest.mark.parametrize(
    ("keep", "kept"),
    [
        ("true", lambda i: True),
        ("row.id % 7 !== 0", lambda i: i % 7 != 0),
        ("row.id < 1300", lambda i: i < 1300),
    ],
    ids=["all-rows", "drops-in-every-slice", "drops-in-the-second-slice-only"],
)
async def test_slices_are_put_back_together_whether_or_not_they_keep_every_row(
    run_js: Any, isolation: str, keep: str, kept: Callable[[int], bool]
) -> None:
    js = run_js(
        script=f"""
        function transform(row) {{
          if (!({keep})) return null;
          row.name = row.name.toUpperCase();
          row.twice = row.id * 2;
          return row;
        }}""",
        workers=2,
        isolation=isolation,
        min_rows_per_worker=10,
    )
    batch = orders(2000, first_line=10)
    expected = [
        {**r, "name": r["name"].upper(), "twice": r["id"] * 2}
        for r in batch.to_pylist()
        if kept(r["id"])
    ]
    out = await js(batch)
    assert rows(out.batch) == [{k: r[k] for k in out.batch.schema.names} for r in expected]
    assert out.batch.schema.names == ["id", "name", "total", "twice", LINE_COLUMN]


@pytest.mark.parametrize("isolation", ["thread", "process"])
async def test_buffers_kept_between_batches_never_leak_one_batch_into_the_next(
    run_js: Any, isolation: str
) -> None:
    # number columns go in, and packed columns come out, through ArrayBuffers an isolate
    # keeps while they are big enough: batches that shrink and grow must not see stale bytes
    js = run_js(
        script="""
        function transform(row) {
          return {id: row.id, x: row.v * 2, big: row.v > 500,
                  tag: row.v % 3 === 0 ? null : "t" + row.v,
                  half: row.v % 2 ? null : row.v / 2};
        }""",
        workers=1,
        isolation=isolation,
    )
    start = 0
    for n in (10, 1000, 5, 3000, 7, 3000, 1):
        ids = list(range(start, start + n))
        values = [(i * 7919) % 1000 for i in ids]
        out = await js(pa.RecordBatch.from_pydict({"id": ids, "v": values}))
        assert rows(out.batch) == [
            {
                "id": i,
                "x": v * 2,
                "big": v > 500,
                "tag": None if v % 3 == 0 else f"t{v}",
                "half": None if v % 2 else v / 2,
            }
            for i, v in zip(ids, values, strict=True)
        ]
        start += n


async def test_thread_isolation_runs_the_isolates_side_by_side_in_this_process(
    run_js: Any,
) -> None:
    import psutil

    js = run_js(
        script="""
        function transform(row, ctx) {
          if (row.first) {
            var t0 = Date.now();
            while (Date.now() - t0 < 400) {}
            ctx.log("busy " + t0 + " " + Date.now());
          }
          return {id: row.id};
        }""",
        workers=2,
        isolation="thread",
        min_rows_per_worker=1,
    )
    n = 10
    batch = pa.RecordBatch.from_pydict(
        {"id": list(range(n)), "first": [i % 5 == 0 for i in range(n)]}
    )
    out = await js(batch)
    assert [r["id"] for r in rows(out.batch)] == list(range(n))
    spans = [tuple(int(x) for x in m.split()[1:]) for _, m in js.logs if m.startswith("busy")]
    assert len(spans) == 2
    # both slices were inside V8 at the same time: Python's lock does not serialise them
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert psutil.Process().children() == []


async def test_worker_pool_reports_script_load_errors_as_config_errors(run_js: Any) -> None:
    js = run_js(script="var x = ;", workers=1)
    with pytest.raises(ConfigError, match="SyntaxError"):
        await js(orders(1))


# ------------------------------------------------------------------ quiver validate


def test_check_reports_syntax_errors_with_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "clean.js").write_text(
        "function process(context) {\n  var x = 1;\n  return x +* 2;\n}\n"
    )
    proc = JsProcessor(JsProcessorConfig(file="clean.js"))
    (detail,) = proc.check(RunContext("t", str(tmp_path)))
    assert detail.message == "SyntaxError: Unexpected token '*'"
    assert detail.where == "clean.js:3:13"


def test_check_reports_top_level_errors_and_missing_entry_points(tmp_path: Path) -> None:
    bad_top = JsProcessor(JsProcessorConfig(script="var a = 1;\nundefinedThing();\n"))
    (detail,) = bad_top.check(RunContext("t", str(tmp_path)))
    assert detail.message == "ReferenceError: undefinedThing is not defined"
    assert detail.where == "inline.js:2:1"
    no_entry = JsProcessor(JsProcessorConfig(script="function go() {}"))
    (detail,) = no_entry.check(RunContext("t", str(tmp_path)))
    assert "neither function process(context) nor function transform(row, ctx)" in detail.message
    ok = JsProcessor(JsProcessorConfig(script="function transform(r) { return r; }"))
    assert ok.check(RunContext("t", str(tmp_path))) == []


# ------------------------------------------------------------------ more of the API


async def test_validate_errors_lists_the_messages_so_far(run_js: Any) -> None:
    js = run_js(
        script="""
        function process(context) {
          context.validate.required(['missing_field']);
          context.validate.businessRule(false, 'rule two');
          context.output.setField('seen', context.validate.errors().join(' | '));
          return true;
        }""",
        output_schema={"id": "long", "seen": "string"},
    )
    out = await js(orders(1))
    assert rows(out.batch)[0]["seen"] == "required field 'missing_field' is missing | rule two"


async def test_short_form_ctx_utilities(run_js: Any, tmp_path: Path) -> None:
    (tmp_path / "codes.jsonl").write_text(
        '{"code": 1, "label": "one"}\n{"code": 2, "label": "two"}\n'
    )
    js = run_js(
        script="""
        function transform(row, ctx) {
          return {
            id: row.id,
            label: ctx.lookups.codes[String(row.id)].label,
            guid_ok: /^[0-9a-f-]{36}$/.test(ctx.newGuid()),
            year: ctx.formatDate(ctx.now(), 'yyyy'),
            day: ctx.formatDate(Date.UTC(2020, 1, 29), 'ddd dd MMM'),
          };
        }""",
        lookups={"codes": {"path": "codes.jsonl", "key": "code"}},
    )
    out = await js(orders(2))
    got = rows(out.batch)
    assert [(r["id"], r["label"], r["guid_ok"], r["day"]) for r in got] == [
        (1, "one", True, "Sat 29 Feb"),
        (2, "two", True, "Sat 29 Feb"),
    ]
    assert got[0]["year"] == str(dt.datetime.now(dt.UTC).year)


async def test_a_killed_worker_is_replaced_and_the_next_batch_runs(run_js: Any) -> None:
    import os
    import signal

    js = run_js(script="function transform(row) { return row; }", workers=1, isolation="process")
    await js(orders(1))
    runner = js.proc._runner
    assert runner is not None
    (pid,) = runner.pids()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(PermanentError, match="exited unexpectedly"):
        await js(orders(2))
    out = await js(orders(3))
    assert [r["id"] for r in rows(out.batch)] == [1, 2, 3]
    (new_pid,) = runner.pids()
    assert new_pid != pid
    await js.close()
    from quiver.pipeline.js_runtime.worker import exchange_dir

    left = [p.name for p in Path(exchange_dir()).glob("quiver-js-*.arrow")]
    assert not [n for n in left if n.startswith((f"quiver-js-{pid}-", f"quiver-js-{new_pid}-"))]


async def test_engine_keeps_row_order_with_concurrent_batches_and_workers(tmp_path: Path) -> None:
    from quiver.pipeline.config import load_pipeline
    from quiver.pipeline.engine import PipelineEngine
    from quiver.pipeline.planner import compile_plan

    n = 6000
    (tmp_path / "in.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(n)))
    (tmp_path / "double.js").write_text(
        "function transform(row) {\n"
        "  for (var i = 0; i < (row.id * 31) % 500; i++) {}\n"
        "  return {id: row.id, twice: row.id * 2};\n"
        "}\n"
    )
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv, types: {id: int}, batch_rows: 700}}\n"
        "processors:\n"
        "  - js: {file: double.js, workers: 2, min_rows_per_worker: 100}\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    result = await PipelineEngine(compile_plan(load_pipeline(tmp_path / "p.yaml")), workers=3).run()
    assert result.status == "ok"
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "id,twice"
    assert lines[1:] == [f"{i},{i * 2}" for i in range(n)]


@RUNNERS
async def test_text_columns_arrive_intact_ascii_unicode_empty_null_and_sliced(
    run_js: Any, workers: int, isolation: str
) -> None:
    values = ["plain", "", "Zoë 🚀", None, 'quote " and \\ backslash', "x" * 40, "last"]
    ascii_only = ["a", "", "bb", "ccc", 'q"\\', "d" * 30, "e"]
    # no nulls, not ASCII: characters of 2, 3 and 4 UTF-8 bytes, one or two UTF-16 units
    unicode = ["Zoë 🚀", "", "日本語", 'a"b\\c\u2028', "𝄞𝄞x", "plain", "é\n"]
    batch = pa.RecordBatch.from_pydict(
        {"mixed": values, "ascii": ascii_only, "uni": unicode, "n": list(range(len(values)))}
    )
    js = run_js(
        script="function transform(row) { return {n: row.n, m: row.mixed, a: row.ascii, "
        "len: row.ascii.length, u: row.uni, ulen: row.uni.length, "
        "last: row.uni.charCodeAt(row.uni.length - 1) || 0}; }",
        workers=workers,
        isolation=isolation,
        min_rows_per_worker=1,
    )
    for part in (batch, batch.slice(2, 4)):
        out = await js(part)
        got = rows(out.batch)
        assert [r["m"] for r in got] == part.column(0).to_pylist()
        assert [r["a"] for r in got] == part.column(1).to_pylist()
        assert [r["len"] for r in got] == [len(v) for v in part.column(1).to_pylist()]
        uni = part.column(2).to_pylist()
        assert [r["u"] for r in got] == uni
        assert [r["ulen"] for r in got] == [len(v.encode("utf-16-le")) // 2 for v in uni]
        assert [r["last"] for r in got] == [
            int.from_bytes(v.encode("utf-16-le")[-2:], "little") if v else 0 for v in uni
        ]


# ------------------------------------------------------------------ script positions


@pytest.mark.parametrize(
    ("source", "where", "message"),
    [
        ("function transform(row, ctx) {\n  return row;\n}}\n", "s.js:3:2", "Unexpected token '}'"),
        ("function transform(row, ctx) {\n  return row;\n\n\n", "s.js:2:14", "end of input"),
        ("function transform(row) {\n  return `x", "s.js:2:12", "end of input"),
        ("function transform(row) {\n  return row; /* open", "s.js:2:15", "Invalid or unexpected"),
        ("var a = 1;\nthrow new Error('top');", "s.js:2:7", "Error: top"),
    ],
)
def test_script_errors_at_the_end_of_a_file_point_inside_it(
    tmp_path: Path, source: str, where: str, message: str
) -> None:
    (tmp_path / "s.js").write_text(source)
    (detail,) = JsProcessor(JsProcessorConfig(file="s.js")).check(RunContext("t", str(tmp_path)))
    assert message in detail.message
    assert detail.where == where
    line, column = (int(x) for x in where.split(":")[1:])
    assert line <= len(source.splitlines()) and column <= len(source.splitlines()[line - 1]) + 1


def test_inline_script_errors_point_into_the_file_holding_the_script(tmp_path: Path) -> None:
    proc = JsProcessor(
        JsProcessorConfig(
            script="function transform(row) {\n  return row;\n}}\n",
            script_name="pipeline.yaml",
            script_line=7,
            script_indent=6,
        )
    )
    (detail,) = proc.check(RunContext("t", str(tmp_path)))
    assert detail.where == "pipeline.yaml:9:8"


async def test_a_thrown_value_at_the_top_level_is_reported_at_its_line(run_js: Any) -> None:
    broken = run_js(script="function transform(row) {\n  return null;\n}\nthrow 'x';\n")
    with pytest.raises(ConfigError) as info:
        await broken(orders(1))
    assert info.value.details[0].where == "inline.js:4:1"


# ------------------------------------------------------------------ worker life cycle


def _exchange_files(pid: int) -> list[Path]:
    from quiver.pipeline.js_runtime.worker import exchange_dir

    return sorted(Path(exchange_dir()).glob(f"quiver-js-{pid}-*.arrow"))


def start_endless_run(tmp_path: Path, options: str) -> subprocess.Popen[str]:
    """``quiver run`` of a pipeline whose script loops forever (600 s time limit) on its first
    batch; ``options``: more lines of the js step's options."""
    (tmp_path / "in.csv").write_text("id\n" + "".join(f"{i}\n" for i in range(100)))
    (tmp_path / "p.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors:\n"
        "  - js:\n"
        f"{options}"
        "      timeout_seconds: 600\n"
        "      script: 'function transform(row) { while (true) {} }'\n"
        "sink: {csv: {path: out/out.csv}}\n"
    )
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("quiver")), "run", "p.yaml", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_workers_die_with_a_killed_engine_and_its_hand_over_files_are_removed_later(
    tmp_path: Path,
) -> None:
    import signal
    import time

    import psutil

    from quiver.pipeline.js_runtime.isolate import IsolateOptions
    from quiver.pipeline.js_runtime.pool import WorkerPool

    engine = start_endless_run(
        tmp_path, "      workers: 2\n      isolation: process\n      min_rows_per_worker: 10\n"
    )
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 30
        # both slices handed over (one file each) and both workers spinning in the loop
        while len(_exchange_files(engine.pid)) < 2 or not workers:
            assert engine.poll() is None, engine.stderr.read() if engine.stderr else ""
            assert time.monotonic() < deadline, "the run never reached its JavaScript step"
            time.sleep(0.05)
            workers = psutil.Process(engine.pid).children()
        assert len(workers) == 2
        time.sleep(0.3)
        assert all(w.cpu_times().user > 0.1 for w in workers)
        handed_over = _exchange_files(engine.pid)
        engine.send_signal(signal.SIGKILL)
        engine.wait(timeout=10)
        _, alive = psutil.wait_procs(workers, timeout=3)
        assert alive == [], "JavaScript workers outlived the killed engine"
        # the killed engine cannot remove its files; the next pool start (this one, or one
        # of a test running beside this one) does
        pool = WorkerPool(IsolateOptions("function transform(r) { return r; }", "t.js"), 1)
        pool.start()
        pool.close()
        assert not any(p.exists() for p in handed_over)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        for w in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                w.kill()
        if engine.stderr is not None:
            engine.stderr.close()


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_run_stopped_in_the_middle_of_a_batch_leaves_no_hand_over_files(
    tmp_path: Path, signum: str
) -> None:
    """The stop signal ends the process at once (the workers are stuck in the loop): its
    hand-over files in shared memory go with it, not at the next pool start."""
    import signal
    import time

    import psutil

    engine = start_endless_run(
        tmp_path, "      workers: 2\n      isolation: process\n      min_rows_per_worker: 10\n"
    )
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 30
        while len(_exchange_files(engine.pid)) < 2 or len(workers) < 2:
            assert engine.poll() is None, engine.stderr.read() if engine.stderr else ""
            assert time.monotonic() < deadline, "the run never reached its JavaScript step"
            time.sleep(0.05)
            workers = psutil.Process(engine.pid).children()
        worker_pids = [w.pid for w in workers]
        engine.send_signal(getattr(signal, signum))
        assert engine.wait(timeout=10) == {"SIGINT": 130, "SIGTERM": 143}[signum]
        assert _exchange_files(engine.pid) == []
        assert [p for pid in worker_pids for p in _exchange_files(pid)] == []
        assert not (tmp_path / "out" / "out.csv").exists()
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
        if engine.stderr is not None:
            engine.stderr.close()


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_interrupting_a_run_stops_a_script_in_the_middle_of_a_batch_at_once(
    tmp_path: Path, isolation: str
) -> None:
    import signal
    import time

    import psutil

    run = start_endless_run(tmp_path, f"      isolation: {isolation}\n")
    try:
        tree = psutil.Process(run.pid)
        deadline = time.monotonic() + 30

        def busy() -> float:  # CPU seconds of the run and its workers
            procs = [tree, *tree.children(recursive=True)]
            return sum(p.cpu_times().user for p in procs if p.is_running())

        while busy() < 1.0:  # imports and start-up take well under 1 CPU-second
            assert run.poll() is None, run.communicate()[1]
            assert time.monotonic() < deadline, "the script never started looping"
            time.sleep(0.1)
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=15)  # not the script's 600 s time limit
        assert run.returncode == 130, stderr
        assert "interrupted" in stderr
        assert not (tmp_path / "out" / "out.csv").exists()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_pool_start_removes_only_hand_over_files_whose_writer_is_gone(tmp_path: Path) -> None:
    import os

    from quiver.pipeline.js_runtime.worker import process_start, remove_stale_exchange_files

    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(done.stdout)
    me, my_start = os.getpid(), process_start(os.getpid())
    assert process_start(dead) is None and my_start
    names = {
        f"quiver-js-{dead}-12345-0.arrow": False,  # writer gone
        f"quiver-js-{dead}-3.arrow": False,  # older naming, writer gone
        f"quiver-js-{me}-{my_start + 1}-0.arrow": False,  # id reused by a later process
        f"quiver-js-{me}-{my_start}-9999.arrow": True,  # this process: still in use
        "quiver-js-notes.arrow": True,  # not a hand-over file
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = remove_stale_exchange_files(str(tmp_path))
    assert sorted(Path(p).name for p in removed) == sorted(n for n, k in names.items() if not k)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, k in names.items() if k)


async def test_workers_outlive_the_thread_that_started_them(run_js: Any) -> None:
    import threading

    js = run_js(script="function transform(row) { return row; }", workers=1, isolation="process")
    started = threading.Thread(target=lambda: asyncio_run(js.proc.start(js.ctx)))
    started.start()
    started.join()
    runner = js.proc._runner
    assert runner is not None
    (pid,) = runner.pids()
    import time

    time.sleep(0.5)  # a worker tied to the ended thread would be killed by now
    out = await js(orders(2))
    assert [r["id"] for r in rows(out.batch)] == [1, 2]
    assert runner.pids() == [pid]


def asyncio_run(coro: Any) -> None:
    import asyncio

    asyncio.run(coro)


async def test_rows_of_different_shapes_and_odd_keys_land_in_their_columns(run_js: Any) -> None:
    js = run_js(
        script="""
        function transform(row) {
          if (row.id % 2) return {'id': row.id, 'a "quoted"\\nkey': 'odd', 'big': 10n ** 20n};
          return {'big': undefined, 'id': row.id, 'when': new Date(Date.UTC(2024, 0, row.id))};
        }"""
    )
    out = await js(orders(4))
    got = rows(out.batch)
    assert [r["id"] for r in got] == [1, 2, 3, 4]
    assert [r['a "quoted"\nkey'] for r in got] == ["odd", None, "odd", None]
    assert [r["big"] for r in got] == ["100000000000000000000", None] * 2
    assert [r["when"] for r in got][1::2] == [
        dt.datetime(2024, 1, d, tzinfo=dt.UTC) for d in (2, 4)
    ]


def test_an_isolate_reports_where_the_time_of_a_batch_went() -> None:
    from quiver.pipeline.js_runtime.isolate import Isolate, IsolateOptions

    iso = Isolate(
        IsolateOptions(
            "function transform(row) {\n"
            "  var t = Date.now(); while (Date.now() - t < 60) {}\n"
            "  return row;\n"
            "}\n",
            "slow.js",
        )
    )
    try:
        assert iso.stage_timings() == {}
        iso.run(orders(1))
        inside = iso.stage_timings()
        assert set(inside) == {"parse", "cut", "loop", "stringify"}
        assert inside["loop"] >= 0.06
        assert set(iso.last_timings) == {"encode", "v8", "decode"}
        assert iso.last_timings["v8"] >= inside["loop"] - 0.002
    finally:
        iso.close()


def test_a_worker_whose_parent_is_gone_exits_instead_of_waiting_for_work() -> None:
    import os

    from quiver.pipeline.js_runtime.worker import PARENT_ENV

    dead = subprocess.Popen(
        [sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE, text=True
    )
    out, _ = dead.communicate()
    env = {**os.environ, PARENT_ENV: out.strip()}  # its parent is not the process it names
    worker = subprocess.Popen(
        [sys.executable, "-m", "quiver.pipeline.js_runtime.worker"],
        stdin=subprocess.PIPE,  # held open: only the parent check can end it
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert worker.wait(timeout=10) == 1
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.close()
        worker.stdout.close()


async def test_an_input_column_the_script_changes_part_way_through_a_batch_keeps_every_row(
    run_js: Any,
) -> None:
    """Columns that hold the input's values keep none of their own in V8 until a row changes
    them: the rows before keep the input's values, whatever rows were fanned out, dropped,
    rejected or left without the column."""
    js = run_js(
        script="""
        function transform(row, ctx) {
          if (row.id === 2) return [row, Object.assign({}, row, {extra: 'copy'})];
          if (row.id === 3) { row.name = 'three'; throw new Error('no'); }
          if (row.id === 4) return null;
          if (row.id === 5) {
            ctx.emit('late', Object.assign({}, row, {name: 'routed'}));
            row.name = 'five';
          }
          if (row.id === 6) delete row.name;
          if (row.id >= 2) ctx.emit('late', row);
          return row;
        }"""
    )
    out = await js(orders(7))
    got = rows(out.batch)
    assert [(r["id"], r["name"], r["extra"]) for r in got] == [
        (1, "name1", None),
        (2, "name2", None),
        (2, "name2", "copy"),
        (5, "five", None),
        (6, None, None),
        (7, "name7", None),
    ]
    assert [r[LINE_COLUMN] for r in got] == [2, 3, 3, 6, 7, 8]
    assert [str(r["total"]) for r in got] == ["1.50", "2.50", "2.50", "5.50", "6.50", "7.50"]
    assert [e.line for e in out.errors] == [4]
    late = out.routes["late"][0].to_pylist()
    assert [(r["id"], r["name"]) for r in late] == [
        (5, "routed"),
        (5, "five"),
        (6, None),
        (7, "name7"),
    ]


def test_a_lookup_csv_with_text_after_a_closing_quote_is_refused_naming_its_line(
    tmp_path: Path,
) -> None:
    from quiver.pipeline.processors.js import JsLookupConfig, _load_lookup
    from quiver.runtime.errors import ConfigError

    (tmp_path / "names.csv").write_text('code,label\nname1,"First"\nname2,"Sec"ond\n')
    cfg = JsLookupConfig.model_validate({"path": "names.csv", "key": "code"})
    with pytest.raises(ConfigError, match=r"text after the closing quote at line 3, column 12"):
        _load_lookup("labels", cfg, str(tmp_path))
