"""Text columns a ``transform(row, ctx)`` script cannot touch stay out of V8 and pass through
beside its output: which scripts qualify (quiver.pipeline.js_runtime.reads), and that every
output, route, rejected row and column order is exactly what the same script gives when every
column enters V8."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, ProcessorOutput, RunContext
from quiver.pipeline.js_runtime import codec
from quiver.pipeline.js_runtime import isolate as isolate_module
from quiver.pipeline.js_runtime.reads import transform_reads
from quiver.pipeline.processors.js import JsProcessor, JsProcessorConfig

# ------------------------------------------------------------------ which scripts qualify


@pytest.mark.parametrize(
    ("script", "reads"),
    [
        ("function transform(row, ctx) { return row; }", set()),
        (
            "function transform(row, ctx) {\n"
            "  row.customer_upper = row.customer.toUpperCase();\n"
            "  if (row.qty > 5) return null;\n"
            "  return row;\n"
            "}",
            {"customer_upper", "customer", "qty"},
        ),
        # a helper that never receives the row; another function's own `row`
        (
            "function helper(r) { return r.note; }\n"
            "function transform(row, ctx) { row.x = ctx.line; return row; }\n"
            "var f = function (row) { return row.other; };",
            {"x", "other"},
        ),
        # optional chaining, a method of a value read from the row, `ctx.reject(...)`
        (
            "function transform(row, ctx) {\n"
            "  if (!row?.email) { ctx.reject('no email'); return null; }\n"
            "  row.domain = row.email.split('@')[1];\n"
            "  return row;\n"
            "}",
            {"email", "domain"},
        ),
        ("function transform(row) { obj.row = 1; return row; } var obj = {};", set()),
    ],
    ids=["identity", "reads-and-writes", "helpers", "methods-and-reject", "property-named-row"],
)
def test_scripts_that_reach_their_row_only_by_name_say_which_names(
    script: str, reads: set[str]
) -> None:
    assert transform_reads(script) == frozenset(reads)


@pytest.mark.parametrize(
    "script",
    [
        "function transform(row) { return {id: row.id}; }",  # a new object
        "function transform(row) { return row.a > 1 ? row : null; }",
        "function transform(row) { return [row, row]; }",
        "function transform(row) { var k = 'a'; row[k] = 1; return row; }",
        "function transform(row) { console.log(row); return row; }",
        "function transform(row) { return Object.assign({}, row); }",
        "function transform(row) { var r = row; r.a = 1; return r; }",
        "function transform(row) { for (var k in row) {} return row; }",
        "function transform(row) { return {...row}; }",
        "function transform(row) { var o = {row}; return row; }",
        "function transform(row) { row.toString(); return row; }",  # `this` is the row
        "function transform(row) { delete row.a; row.a = 1; return row; }",  # key order
        "function transform(row, ctx) { ctx.emit('copy'); return row; }",
        "function transform(row, ctx) { ctx['em' + 'it']('copy'); return row; }",
        "function transform(row, ctx) { helper(ctx); return row; } function helper(c) {}",
        "function transform(row) { return eval('row'); }",
        "function transform(row) { arguments[0].a = 1; return row; }",
        "function transform(row) { with (row) { a = 1; } return row; }",
        "function transform(row) { return row; } var t = transform;",
        "function transform(row) { return row; } this['transf' + 'orm'] = function (r) {};",
        "function transform(row) { return row; } function transform(row) { return null; }",
        "Object.defineProperty(Object.prototype, 'x', {get: function () { return 1; }});\n"
        "function transform(row) { row.y = row.x; return row; }",
        "function transform(row) { return [1].map(function (row) { return row; }); }",
        "async function transform(row) { return row; }",
        "function transform({a}) { return null; }",
        "function transform(row) { return row; ",  # does not parse
        "function process(context) { return true; }",
        "var transform = function (row) { return row; };",
    ],
)
def test_scripts_that_could_reach_any_property_send_every_column(script: str) -> None:
    assert transform_reads(script) is None


# ------------------------------------------------------------------ same answers either way


def batch(first_line: int = 2) -> pa.RecordBatch:
    n = 7
    return pa.RecordBatch.from_pydict(
        {
            "id": pa.array(range(1, n + 1), pa.int64()),
            "customer": pa.array(["Ann", "Bob", None, "Émile", "Dee", "Eve", "Fay"]),
            "email": pa.array(["a@x.nl", "b@y.com", "c@z.org", None, "d@q.de", "e@r.fr", "f@s.it"]),
            "note": pa.array(["one, two", None, "", "ünï", "x", "y\nz", "w"]),
            "qty": pa.array(["1", "2", "3", "4", "5", "6", "7"]),
            "at": pa.array([dt.datetime(2024, 1, d) for d in range(1, n + 1)], pa.timestamp("ms")),
            "city": pa.array(["Oslo", "Rome", "Lima", "Kiev", "Nice", "Bonn", "Graz"]),
            LINE_COLUMN: pa.array(range(first_line, first_line + n), pa.int64()),
        }
    )


SCRIPTS = {
    "derive": (
        "function transform(row, ctx) {\n"
        "  row.customer_upper = row.customer === null ? null : row.customer.toUpperCase();\n"
        "  row.total = Number(row.qty) * 2;\n"
        "  return row;\n"
        "}"
    ),
    "identity": "function transform(row, ctx) { return row; }",
    "adds-only": "function transform(row, ctx) { row.flag = true; return row; }",
    "filters": (
        "function transform(row, ctx) { if (Number(row.qty) % 2 === 0) return null; "
        "row.qty = row.qty + '!'; return row; }"
    ),
    "drops-all": "function transform(row, ctx) { return null; }",
    "throws-and-rejects": (
        "function transform(row, ctx) {\n"
        "  if (row.qty === '3') throw new Error('bad qty ' + row.qty);\n"
        "  if (row.qty === '5') { ctx.reject('five'); return null; }\n"
        "  if (row.qty === '6') return undefined;\n"
        "  row.seen = ctx.line;\n"
        "  return row;\n"
        "}"
    ),
    "changes-a-read-column": (
        "function transform(row, ctx) { row.email = row.email && row.email.length; return row; }"
    ),
}


async def _run(
    tmp_path: Path,
    script: str,
    workers: int,
    isolation: Literal["thread", "process"],
    **options: Any,
) -> ProcessorOutput:
    proc = JsProcessor(
        JsProcessorConfig(script=script, workers=workers, isolation=isolation, **options)
    )
    ctx = RunContext(run_id="t", base_dir=str(tmp_path), variables={}, log=lambda m, lvl: None)
    try:
        return await proc.process(batch(), ctx)
    finally:
        await proc.close()


def _seen(out: ProcessorOutput) -> Any:
    main = None if out.batch is None else (out.batch.schema, out.batch.to_pylist())
    routes = {k: [(b.schema, b.to_pylist()) for b in v] for k, v in out.routes.items()}
    return main, routes, out.errors


@pytest.mark.asyncio
@pytest.mark.parametrize("name", sorted(SCRIPTS))
@pytest.mark.parametrize(
    ("workers", "isolation"),
    [(0, "thread"), (2, "thread"), (1, "process")],
    ids=["one-isolate", "threads", "process"],
)
async def test_answers_match_those_with_every_column_in_v8(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    workers: int,
    isolation: Literal["thread", "process"],
) -> None:
    script = SCRIPTS[name]
    assert transform_reads(script) is not None  # the script qualifies
    options: dict[str, Any] = {"min_rows_per_worker": 1} if workers > 1 else {}
    pruned = _seen(await _run(tmp_path, script, workers, isolation, **options))
    # the same script with every column in V8: one isolate in this process
    monkeypatch.setattr(isolate_module, "transform_reads", lambda source: None)
    full = _seen(await _run(tmp_path, script, 0, "thread"))
    assert pruned == full


@pytest.mark.asyncio
async def test_rejected_rows_show_every_column_in_input_order(tmp_path: Path) -> None:
    out = await _run(tmp_path, SCRIPTS["throws-and-rejects"], 0, "thread")
    rejected = {e.line: e for e in out.errors}
    assert sorted(e.line or 0 for e in out.errors) == [4, 6, 7]
    row = rejected[4].row
    assert row is not None
    assert list(row) == ["id", "customer", "email", "note", "qty", "at", "city"]
    assert (row["note"], row["city"], row["qty"]) == ("", "Lima", "3")


@pytest.mark.asyncio
async def test_typed_output_reads_its_declared_fields_from_the_input(tmp_path: Path) -> None:
    script = "function transform(row, ctx) { row.n = Number(row.qty); return row; }"
    out = await _run(
        tmp_path,
        script,
        0,
        "thread",
        output_schema={"city": "string", "n": "long"},
    )
    assert out.batch is not None
    got = out.batch.select(["city", "n"]).to_pylist()
    assert got[:2] == [{"city": "Oslo", "n": 1}, {"city": "Rome", "n": 2}]


@pytest.mark.asyncio
async def test_columns_the_script_cannot_touch_do_not_enter_v8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    real_encode = codec.encode_input

    def encode(b: pa.RecordBatch, *args: Any) -> Any:
        seen.append(b.schema.names)
        return real_encode(b, *args)

    monkeypatch.setattr(isolate_module, "encode_input", encode)
    out = await _run(tmp_path, SCRIPTS["derive"], 0, "thread")
    # text columns the script names, every column of another type, the line numbers
    assert seen == [["id", "customer", "qty", "at", LINE_COLUMN]]
    assert out.batch is not None
    assert out.batch.schema.names == [
        "id",
        "customer",
        "email",
        "note",
        "qty",
        "at",
        "city",
        "customer_upper",
        "total",
        LINE_COLUMN,
    ]
