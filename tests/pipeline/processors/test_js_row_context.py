"""The ``js`` processor gives each row of a ``process(context)`` script a context of its own, as
FlowEngine does, and rejects (instead of failing the batch) a row whose output cannot leave V8;
script errors are told apart from data errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from quiver.pipeline.component import LINE_COLUMN, ProcessorOutput, RunContext
from quiver.pipeline.processors.js import JsProcessor, JsProcessorConfig
from quiver.runtime.errors import PermanentError


def people(n: int = 3) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "id": pa.array(range(1, n + 1), pa.int64()),
            "name": pa.array([f"name{i}" for i in range(1, n + 1)]),
            LINE_COLUMN: pa.array(range(2, n + 2), pa.int64()),
        }
    )


@pytest.fixture
async def js(tmp_path: Path) -> Any:
    made: list[JsProcessor] = []
    ctx = RunContext(run_id="t", base_dir=str(tmp_path), variables={}, log=lambda m, lv: None)

    async def run(script: str, batch: pa.RecordBatch, **options: Any) -> ProcessorOutput:
        proc = JsProcessor(JsProcessorConfig(script=script, workers=0, **options))
        made.append(proc)
        return await proc.process(batch, ctx)

    yield run
    for proc in made:
        await proc.close()


def ids(out: ProcessorOutput) -> list[int]:
    assert out.batch is not None
    return [int(v) for v in out.batch.column("id").to_pylist()]


async def test_replacing_context_output_on_one_row_leaves_the_next_rows_their_own(js: Any) -> None:
    out = await js(
        """
        function process(c) {
          var row = c.input.current();
          c.output.setField('tag', 'seen ' + row.id);
          if (row.id === 1) c.output = null;
          return true;
        }""",
        people(3),
    )
    assert out.errors == []
    assert ids(out) == [1, 2, 3]
    assert out.batch is not None
    assert out.batch.column("tag").to_pylist() == ["seen 1", "seen 2", "seen 3"]


async def test_properties_set_on_the_context_do_not_carry_over_to_later_rows(js: Any) -> None:
    out = await js(
        """
        function process(c) {
          var first = c.seen !== true;
          c.seen = true;
          c.output.setField('first', first);
          var fixed = c.utils.now().getUTCFullYear() === 1999;
          c.utils.now = function () { return new Date(Date.UTC(1999, 0, 1)); };
          c.output.setField('fixed_clock', fixed);
          return true;
        }""",
        people(3),
    )
    assert out.batch is not None
    assert out.batch.column("first").to_pylist() == [True, True, True]
    assert out.batch.column("fixed_clock").to_pylist() == [False, False, False]


async def test_input_current_returns_a_copy_that_leaves_output_and_routes_alone(js: Any) -> None:
    out = await js(
        """
        function process(c) {
          var row = c.input.current();
          row.name = 'changed';
          if (row.id === 2) c.route.sendCopy('audit');
          return c.input.current().name !== 'changed';
        }""",
        people(3),
        routes=["audit"],
    )
    assert out.errors == []
    assert out.batch is not None
    assert out.batch.column("name").to_pylist() == ["name1", "name2", "name3"]
    audit = out.routes["audit"][0]
    assert audit.column("name").to_pylist() == ["name2"]


async def test_a_circular_object_rejects_its_row_with_its_line(js: Any) -> None:
    out = await js(
        """
        function process(c) {
          if (c.input.getValue('id') === 2) {
            var o = {}; o.self = o;
            c.output.setField('extra', o);
          }
          return true;
        }""",
        people(3),
    )
    assert ids(out) == [1, 3]
    assert len(out.errors) == 1
    error = out.errors[0]
    assert error.line == 3 and error.column == "extra" and error.kind == "script"
    assert "Converting circular structure to JSON" in error.reason
    assert "\n" not in error.reason


@pytest.mark.parametrize("levels", [129, 900, 5000, 200_000])
async def test_a_value_nested_too_deep_rejects_its_row_with_its_line(js: Any, levels: int) -> None:
    out = await js(
        f"""
        function transform(row, ctx) {{
          var deep = [], at = deep;
          for (var i = 1; i < {levels}; i++) {{ var next = {{}}; at.push(next); at = next.v = []; }}
          if (row.id === 2) row.nested = {{v: deep}};
          if (row.id === 3) row.nested = {{v: [{{v: []}}]}};
          return row;
        }}""",
        people(3),
    )
    assert ids(out) == [1, 3]
    assert [(e.line, e.column, e.kind) for e in out.errors] == [(3, "nested", "script")]
    assert "nests objects and arrays more than 128 levels deep" in out.errors[0].reason


async def test_a_value_nested_as_deep_as_allowed_is_kept(js: Any) -> None:
    out = await js(
        """
        function transform(row, ctx) {
          var deep = [];
          for (var i = 1; i < 128; i++) deep = [deep];
          if (row.id === 2) row.nested = deep;
          return row;
        }""",
        people(3),
    )
    assert out.errors == [] and ids(out) == [1, 2, 3]


async def test_a_lone_surrogate_rejects_its_row_with_its_line(js: Any) -> None:
    out = await js(
        """
        function transform(row, ctx) {
          if (row.id === 3) row.name = 'x\\uD800';
          return row;
        }""",
        people(3),
    )
    assert ids(out) == [1, 2]
    assert [(e.line, e.column, e.kind) for e in out.errors] == [(4, "name", "script")]
    assert "lone UTF-16 surrogate" in out.errors[0].reason


async def test_an_emoji_is_not_mistaken_for_a_lone_surrogate(js: Any) -> None:
    out = await js(
        "function transform(row, ctx) { row.name = '\\uD83D\\uDE00' + row.id; return row; }",
        people(2),
    )
    assert out.errors == []
    assert out.batch is not None
    assert out.batch.column("name").to_pylist() == ["\U0001f600" + "1", "\U0001f600" + "2"]


async def test_a_throwing_script_is_a_script_error_and_a_bad_value_a_data_error(js: Any) -> None:
    out = await js(
        """
        function process(c) {
          if (c.input.getValue('id') === 1) throw new Error('boom');
          c.output.setField('n', c.input.getValue('name'));
          return true;
        }""",
        people(2),
        output_schema={"n": "integer"},
    )
    assert [(e.line, e.kind) for e in out.errors] == [(2, "script"), (3, "data")]


async def test_nan_and_infinities_a_script_computes_are_kept_not_made_null(js: Any) -> None:
    out = await js(
        """
        function transform(row, ctx) {
          row.ratio = row.id === 1 ? 1 / 0 : row.id === 2 ? 0 / 0 : -1 / 0;
          row.half = row.id === 2 ? null : row.id / 2;
          row.big = row.id === 3 ? NaN : 2 ** 60;
          return row;
        }""",
        people(3),
    )
    assert out.errors == [] and out.batch is not None
    ratio = out.batch.column("ratio").to_pylist()
    assert ratio[0] == float("inf") and ratio[1] != ratio[1] and ratio[2] == float("-inf")
    assert out.batch.column("half").to_pylist() == [0.5, None, 1.5]
    big = out.batch.column("big").to_pylist()
    assert big[:2] == [2.0**60, 2.0**60] and big[2] != big[2]


@pytest.mark.parametrize(
    ("assignment", "detail"),
    [
        (
            "row.v = row.id === 3 ? 'three' : row.id;",
            'at line 4: 1 (number) in an earlier row, "three" (string) here',
        ),
        ("if (row.id === 2) row.v = [1, [2]];", "at line 3: [1, [2]] mixes types inside it"),
    ],
)
async def test_a_column_of_mixed_types_names_the_line_and_the_values(
    js: Any, assignment: str, detail: str
) -> None:
    with pytest.raises(PermanentError) as raised:
        await js(f"function transform(row, ctx) {{ {assignment} return row; }}", people(3))
    message = raised.value.details[0].message
    assert f"output column 'v' holds values of different types, {detail}" in message
    assert "declare its type in output_schema" in message


@pytest.mark.parametrize(
    "script",
    [
        "function transform(row, ctx) { if (row.id === 2) row['\\u001fline'] = 9; return row; }",
        "function process(c) {"
        " if (c.input.getValue('id') === 2) c.output.setField('\\u001fline', 9); return true; }",
    ],
)
async def test_a_row_setting_an_internal_column_is_rejected(js: Any, script: str) -> None:
    out = await js(script, people(3))
    assert ids(out) == [1, 3]
    assert out.batch is not None and out.batch.column(LINE_COLUMN).to_pylist() == [2, 4]
    (error,) = out.errors
    assert (error.line, error.kind) == (3, "script")
    assert error.reason.startswith('returned the reserved key "\\u001fline"')
