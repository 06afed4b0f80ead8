"""`filter` on telemetry rows: an expression comparing a map value (always text) with a number
says so and gives the cast that fixes it, and no error shows the helper columns a map key is
read into."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.filter import FilterProcessor
from quiver.runtime.errors import PermanentError
from tests.e2e.conftest import QuiverRunner, quiver
from tests.pipeline.processors.contract import make, process

__all__ = ["quiver"]

ATTRIBUTES = pa.map_(pa.string(), pa.string())


def spans() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "span_name": ["GET /", "GET /cart", "GET /pay"],
            "attributes": pa.array(
                [
                    [("http.status_code", "200")],
                    [("http.status_code", "503")],
                    [("http.status_code", "n/a")],
                ],
                ATTRIBUTES,
            ),
        }
    )


def write_pipeline(folder: Path, expression: str) -> None:
    pq.write_table(pa.Table.from_batches([spans()]), folder / "spans.parquet")
    (folder / "pipeline.yaml").write_text(
        "source: {parquet: {path: spans.parquet}}\n"
        "processors:\n"
        f'  - filter: {{expression: "{expression}"}}\n'
        "sink: {parquet: {path: out/errors.parquet}}\n"
    )


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_map_value_compared_with_a_number_gets_the_cast_that_fixes_it(
    quiver: QuiverRunner, tmp_path: Path, command: str
) -> None:
    write_pipeline(tmp_path, "attributes['http.status_code'] >= 500")
    run = quiver(command, "pipeline.yaml")
    assert run.code == 2, run.explain()
    assert (
        "error: pipeline.yaml:3:5 processors[0] filter: text is compared with or used as a "
        "number: Binder Error: Cannot compare values of type VARCHAR and type INTEGER_LITERAL"
    ) in run.output, run.explain()
    assert (
        'fix: map values such as attributes["http.status_code"] are text, whatever they hold: '
        'cast it, e.g. TRY_CAST(attributes["http.status_code"] AS INTEGER) >= 500'
    ) in run.output, run.explain()
    assert "__quiver" not in run.output and "\x1f" not in run.output


def test_the_suggested_cast_works(run_ctx: RunContext) -> None:
    processor = make(
        FilterProcessor,
        {"expression": 'TRY_CAST(attributes["http.status_code"] AS INTEGER) >= 500'},
    )
    out = process(processor, spans(), run_ctx)
    assert out.batch is not None
    assert out.batch.column("span_name").to_pylist() == ["GET /cart"]


@pytest.mark.parametrize(
    "expression",
    [
        "attributes['http.status_code'] = 'x' and nosuch = 1",
        "attributes['http.status_code'] + 1 > 2",
        "attributes['http.status_code'] between 1 and 3",
        "attributes['http.status_code'].nothing = 1",
    ],
)
def test_errors_never_name_the_helper_columns(run_ctx: RunContext, expression: str) -> None:
    processor = make(FilterProcessor, {"expression": expression})
    with pytest.raises(PermanentError) as raised:
        process(processor, spans(), run_ctx)
    [detail] = raised.value.details
    shown = detail.message + detail.fix
    assert "__quiver" not in shown and "\x1f" not in shown and "path0" not in shown, detail
    assert "Candidate functions" not in detail.message


def test_a_text_column_used_as_a_number_gets_the_cast_too(run_ctx: RunContext) -> None:
    processor = make(FilterProcessor, {"expression": "span_name + 1 > 2"})
    with pytest.raises(PermanentError) as raised:
        process(processor, spans(), run_ctx)
    [detail] = raised.value.details
    assert detail.message.startswith("text is compared with or used as a number")
    assert detail.fix.startswith("the column is text: cast it, e.g. TRY_CAST(column AS INTEGER)")
