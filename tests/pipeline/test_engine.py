"""The engine end to end: graph shapes, routes, error policies, atomic output, retries, resume,
taps, dry runs and reports, with the real CSV source and sink and small test components."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import io
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from quiver.pipeline.config import load_pipeline
from quiver.pipeline.engine import PipelineEngine, RunFailedError, RunResult
from quiver.pipeline.planner import compile_plan
from quiver.pipeline.report import build_report, write_report
from quiver.pipeline.runlog import RunLog
from quiver.runtime.errors import ConfigError, QuiverError

C = "tests.pipeline.engine_components:"
ROWS = f"{C}RowsSource"


def write_pipeline(tmp_path: Path, doc: dict[str, Any], name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def run(path: str, **kwargs: Any) -> RunResult:
    spec = load_pipeline(path, kwargs.pop("variables", None))
    log = kwargs.pop("log", None) or RunLog("t", stream=io.StringIO())
    return asyncio.run(PipelineEngine(compile_plan(spec), log=log, **kwargs).run())


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


ORDERS = "id,email,total\n1,a@x.com,10\n2,bad,5\n3,c@x.com,-1\n4,d@x.com,7\n"


def test_linear_pipeline_writes_valid_rows_and_rejects_with_exact_lines(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(ORDERS)
    path = write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [
                {
                    "validate": {
                        "schema": {
                            "email": {"pattern": ".+@.+"},
                            "total": {"type": "int", "min": 0},
                        }
                    }
                }
            ],
            "sink": {"csv": {"path": "out/good.csv"}},
            "on_error": {"policy": "reject", "rejects": "out/rejects.csv"},
        },
    )
    result = run(path)
    assert result.status == "ok"
    assert [r["id"] for r in read_csv(tmp_path / "out/good.csv")] == ["1", "4"]
    rejects = read_csv(tmp_path / "out/rejects.csv")
    assert [(r["line"], r["column"], r["value"]) for r in rejects] == [
        ("3", "email", "bad"),
        ("4", "total", "-1"),
    ]
    assert json.loads(rejects[0]["row"]) == {"id": "2", "email": "bad", "total": "5"}
    assert result.rejected == 2
    assert result.steps["validate"].rows_in == 4 and result.steps["validate"].rows_out == 2


def test_fail_fast_names_the_first_bad_line_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(ORDERS)
    path = write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [{"validate": {"schema": {"email": {"pattern": ".+@.+"}}}}],
            "sink": {"csv": {"path": "out/good.csv"}},
        },
    )
    with pytest.raises(RunFailedError) as err:
        run(path)
    assert "line 3" in str(err.value) and "column 'email'" in str(err.value)
    assert err.value.code == "ROW_REJECTED"
    assert not (tmp_path / "out/good.csv").exists()
    assert leftovers(tmp_path) == []


def test_max_errors_stops_the_run_and_leaves_no_output(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "source": {ROWS: {"rows": 20, "batch_rows": 5}},
            "processors": [{f"{C}RejectIdsProcessor": {"ids": [2, 3, 12]}}],
            "sink": {"csv": {"path": "out.csv"}},
            "on_error": {"policy": "reject", "rejects": "rej.csv", "max_errors": 2},
        },
    )
    with pytest.raises(RunFailedError, match="more than 2 rows rejected"):
        run(path)
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "rej.csv").exists()
    assert leftovers(tmp_path) == []


def test_rejected_rows_get_the_original_row_from_their_line(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "source": {ROWS: {"rows": 6}},
            "processors": [{f"{C}RejectIdsProcessor": {"ids": [5]}}],
            "sink": {"csv": {"path": "out.csv"}},
            "on_error": {"policy": "reject", "rejects": "rej.csv"},
        },
    )
    run(path)
    (rej,) = read_csv(tmp_path / "rej.csv")
    assert rej["line"] == "5" and rej["reason"] == "id is blocked"
    assert json.loads(rej["row"]) == {"id": 5, "value": 50}
    assert len(read_csv(tmp_path / "out.csv")) == 5


def test_fan_out_sends_every_row_to_each_connected_step(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "steps": {
                "read": {ROWS: {"rows": 9}},
                "a": {"csv": {"path": "a.csv"}},
                "b": {"csv": {"path": "b.csv"}},
            },
            "connections": [{"from": "read", "to": ["a", "b"]}],
        },
    )
    result = run(path)
    assert len(read_csv(tmp_path / "a.csv")) == 9
    assert len(read_csv(tmp_path / "b.csv")) == 9
    assert result.steps["a"].rows_in == result.steps["b"].rows_in == 9


def test_fan_in_merges_several_sources_into_one_sink(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "steps": {
                "one": {ROWS: {"rows": 5}},
                "two": {ROWS: {"rows": 7, "start": 100}},
                "all": {"csv": {"path": "all.csv"}},
            },
            "connections": [{"from": "one", "to": "all"}, {"from": "two", "to": "all"}],
        },
    )
    run(path)
    ids = sorted(int(r["id"]) for r in read_csv(tmp_path / "all.csv"))
    assert ids == [1, 2, 3, 4, 5, *range(100, 107)]


def test_a_batch_with_other_columns_than_the_first_stops_the_sink_and_says_which(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.csv").write_text("id,name\n1,x\n")
    (tmp_path / "b.csv").write_text("id,colour\n2,red\n")
    path = write_pipeline(
        tmp_path,
        {
            "steps": {
                "a": {"csv": {"path": "a.csv"}},
                "b": {"csv": {"path": "b.csv"}},
                "slow": {f"{C}SlowProcessor": {"delay": 0.2}},
                "all": {"csv": {"path": "all.csv"}},
            },
            "connections": [
                {"from": "a", "to": "all"},
                {"from": "b", "to": "slow"},
                {"from": "slow", "to": "all"},
            ],
        },
    )
    with pytest.raises(QuiverError) as info:
        run(path)
    message = str(info.value)
    assert "sink 'all'" in message
    assert "missing ['name'], extra ['colour']" in message
    assert "same columns for every batch" in message
    assert not (tmp_path / "all.csv").exists()


def test_named_route_outputs_feed_their_own_steps(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "steps": {
                "read": {ROWS: {"rows": 10}},
                "split": {f"{C}SplitProcessor": {"route": "odd"}},
                "even": {"csv": {"path": "even.csv"}},
                "odd": {"csv": {"path": "odd.csv"}},
            },
            "connections": [
                {"from": "read", "to": "split"},
                {"from": "split", "to": "even"},
                {"from": "split.odd", "to": "odd"},
            ],
        },
    )
    result = run(path)
    assert [r["id"] for r in read_csv(tmp_path / "even.csv")] == ["2", "4", "6", "8", "10"]
    assert [r["id"] for r in read_csv(tmp_path / "odd.csv")] == ["1", "3", "5", "7", "9"]
    assert result.steps["split"].routes == {"odd": 5}


def test_an_unconnected_route_is_counted_and_warned_about(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "source": {ROWS: {"rows": 10}},
            "processors": [{f"{C}SplitProcessor": {}}],
            "sink": {"csv": {"path": "out.csv"}},
        },
    )
    result = run(path)
    assert result.steps["SplitProcessor"].unconnected_rows == 5
    assert any("split" in w.lower() and "not connected" in w for w in result.warnings)


def test_a_failing_step_aborts_every_sink(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "steps": {
                "read": {ROWS: {"rows": 40, "batch_rows": 4}},
                "direct": {"csv": {"path": "direct.csv"}},
                "check": {f"{C}BreakProcessor": {"at_id": 30}},
                "checked": {"csv": {"path": "checked.csv"}},
            },
            "connections": [
                {"from": "read", "to": ["direct", "check"]},
                {"from": "check", "to": "checked"},
            ],
        },
    )
    with pytest.raises(QuiverError, match="cannot handle id 30"):
        run(path)
    assert not (tmp_path / "direct.csv").exists()
    assert not (tmp_path / "checked.csv").exists()
    assert leftovers(tmp_path) == []


def test_a_source_failing_mid_stream_leaves_no_output(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {"source": {ROWS: {"rows": 40, "fail_at_batch": 3}}, "sink": {"csv": {"path": "o.csv"}}},
    )
    with pytest.raises(QuiverError, match="the source broke"):
        run(path)
    assert not (tmp_path / "o.csv").exists()
    assert leftovers(tmp_path) == []


def test_bounded_queues_keep_a_fast_source_close_to_a_slow_consumer(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "source": {ROWS: {"rows": 400, "batch_rows": 4}},
            "processors": [{f"{C}SlowProcessor": {"delay": 0.002}}],
            "sink": {"csv": {"path": "o.csv"}},
            "engine": {"queue_batches": 2},
        },
    )
    spec = load_pipeline(path)
    engine = PipelineEngine(compile_plan(spec), log=RunLog("t", stream=io.StringIO()))
    ahead: list[int] = []

    async def main() -> None:
        task = asyncio.create_task(engine.run())
        while not task.done():
            steps = engine.result.steps
            ahead.append(steps["source"].batches_out - steps["SlowProcessor"].batches_in)
            await asyncio.sleep(0.001)
        await task

    asyncio.run(main())
    assert len(read_csv(tmp_path / "o.csv")) == 400
    # queue of 2 batches + the batch being put + the batch in the processor's hands
    assert max(ahead) <= 4


def test_sink_retries_until_its_directory_appears(tmp_path: Path) -> None:
    target = tmp_path / "late"
    path = write_pipeline(
        tmp_path,
        {
            "source": {ROWS: {"rows": 5}},
            "sink": {f"{C}DirCsvSink": {"path": "late/out.csv"}},
            "engine": {
                "retry": {"initial_delay": 0.05, "max_delay": 0.1, "max_attempts": 40},
                "circuit_breaker": {"failure_threshold": 3, "reset_timeout": 0.05},
            },
        },
    )
    timer = threading.Timer(0.3, lambda: target.mkdir())
    timer.start()
    try:
        result = run(path)
    finally:
        timer.cancel()
    assert result.steps["sink"].retries >= 1
    assert [r["id"] for r in read_csv(target / "out.csv")] == ["1", "2", "3", "4", "5"]


def test_sink_gives_up_after_max_attempts_with_the_last_error(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "source": {ROWS: {"rows": 5}},
            "sink": {f"{C}DirCsvSink": {"path": "never/out.csv"}},
            "engine": {"retry": {"initial_delay": 0.001, "max_attempts": 3}},
        },
    )
    with pytest.raises(QuiverError) as err:
        run(path)
    assert "all 3 attempts failed" in str(err.value)
    assert "does not exist yet" in str(err.value)


def test_source_that_is_not_ready_is_retried_before_its_first_batch(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = write_pipeline(
        tmp_path,
        {
            "source": {f"{C}FlakyStartSource": {"marker": str(marker), "failures": 2}},
            "sink": {"csv": {"path": "o.csv"}},
            "engine": {"retry": {"initial_delay": 0.001}},
        },
    )
    result = run(path)
    assert result.steps["source"].retries == 2
    assert len(read_csv(tmp_path / "o.csv")) == 2


def test_taps_log_the_sampled_rows_of_a_step(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "steps": {
                "read": {ROWS: {"rows": 10}},
                "split": {f"{C}SplitProcessor": {}},
                "even": {"csv": {"path": "even.csv"}},
                "odd": {"csv": {"path": "odd.csv"}},
            },
            "connections": [
                {"from": "read", "to": "split"},
                {"from": "split", "to": "even"},
                {"from": "split.odd", "to": "odd"},
            ],
            "taps": [{"step": "split.odd", "sample": 3}, {"step": "read", "sample": 1}],
        },
    )
    stream = io.StringIO()
    run(path, log=RunLog("tap-run", "json", stream=stream))
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    taps = [e for e in events if e["event"] == "tap"]
    assert [e["row"]["id"] for e in taps if e["tap"] == "split.odd"] == [1, 3, 5]
    assert [e["row"] for e in taps if e["tap"] == "read"] == [{"id": 1, "value": 10}]
    assert all(e["run_id"] == "tap-run" for e in events)


def test_dry_run_returns_the_first_rows_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(ORDERS)
    path = write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [{"validate": {"schema": {"email": {"pattern": ".+@.+"}}}}],
            "sink": {"csv": {"path": "out.csv"}},
            "on_error": {"policy": "reject", "rejects": "rej.csv"},
        },
    )
    result = run(path, dry_run=3)
    assert result.dry_run["sink"].column("id").to_pylist() == ["1", "3"]
    assert [e.line for e in result.dry_run_rejects] == [3]
    assert sorted(os.listdir(tmp_path)) == ["in.csv", "p.yaml"]


def three_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for n, name in enumerate(["a", "b", "c"]):
        rows = "".join(f"{n * 10 + i},{name}\n" for i in range(3))
        (folder / f"{name}.csv").write_text("id,name\n" + rows)


def resumable(tmp_path: Path) -> str:
    return write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in/*.csv"}},
            "processors": [
                {"validate": {"schema": {"id": {"type": "int", "max": "${MAX:-1000}"}}}},
            ],
            "sink": {"csv": {"path": "out/{stem}.csv"}},
        },
    )


def test_resume_skips_completed_files_and_never_duplicates_output(tmp_path: Path) -> None:
    three_inputs(tmp_path)
    path = resumable(tmp_path)
    # id 11 is in b.csv: the first run commits a.csv's output, then fails on b
    with pytest.raises(RunFailedError):
        run(path, resume=True, variables={"MAX": "10"})
    assert sorted(os.listdir(tmp_path / "out")) == [".p.quiver-state.json", "a.csv"]
    state = json.loads((tmp_path / "out/.p.quiver-state.json").read_text())
    assert [Path(f).name for f in state["completed"]] == ["a.csv"]

    result = run(path, resume=True)
    assert [Path(f).name for f in result.files_skipped] == ["a.csv"]
    assert [Path(f).name for f in result.files_processed] == ["b.csv", "c.csv"]
    for name, first in (("a", 0), ("b", 10), ("c", 20)):
        rows = read_csv(tmp_path / f"out/{name}.csv")
        assert [int(r["id"]) for r in rows] == [first, first + 1, first + 2]
    again = run(path, resume=True)
    assert len(again.files_skipped) == 3 and again.rows_read == 0


def test_resume_reprocesses_a_file_that_changed(tmp_path: Path) -> None:
    three_inputs(tmp_path)
    path = resumable(tmp_path)
    run(path, resume=True)
    changed = tmp_path / "in/b.csv"
    changed.write_text("id,name\n77,b\n")
    os.utime(changed, ns=(1, 1))
    result = run(path, resume=True)
    assert [Path(f).name for f in result.files_processed] == ["b.csv"]
    assert [r["id"] for r in read_csv(tmp_path / "out/b.csv")] == ["77"]


def test_several_inputs_into_one_output_file_cannot_resume(tmp_path: Path) -> None:
    three_inputs(tmp_path)
    path = write_pipeline(
        tmp_path,
        {"source": {"csv": {"path": "in/*.csv"}}, "sink": {"csv": {"path": "out/all.csv"}}},
    )
    with pytest.raises(ConfigError, match=r"put \{stem\} in the sink path"):
        run(path, resume=True)


def test_report_counts_rows_per_step_and_rejects(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(ORDERS)
    path = write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "processors": [{"validate": {"schema": {"total": {"type": "int", "min": 0}}}}],
            "sink": {"csv": {"path": "out.csv"}},
            "on_error": {"policy": "reject", "rejects": "rej.csv"},
        },
    )
    result = run(path)
    write_report(str(tmp_path / "r/report.json"), result, 0)
    report = json.loads((tmp_path / "r/report.json").read_text())
    assert report["status"] == "ok" and report["exit_code"] == 0
    assert report["rows_read"] == 4 and report["rows_written"] == 3 and report["rejected"] == 1
    assert report["steps"]["validate"]["rejected"] == 1
    assert report["steps"]["sink"]["rows_in"] == 3
    assert report["rows_per_second"] > 0
    assert build_report(result)["rejects_file"] == str(tmp_path / "rej.csv")


def test_processor_concurrency_keeps_batch_order(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "source": {ROWS: {"rows": 200, "batch_rows": 7}},
            "processors": [{"derive": {"columns": {"double": "value * 2"}}}],
            "sink": {"csv": {"path": "o.csv"}},
        },
    )
    run(path, workers=4)
    rows = read_csv(tmp_path / "o.csv")
    assert [int(r["id"]) for r in rows] == list(range(1, 201))
    assert all(int(r["double"]) == int(r["id"]) * 20 for r in rows)


def test_progress_reports_rows_and_bytes_of_the_input(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(ORDERS)
    path = write_pipeline(
        tmp_path, {"source": {"csv": {"path": "in.csv"}}, "sink": {"csv": {"path": "o.csv"}}}
    )
    calls: list[tuple[int, int, int | None]] = []
    spec = load_pipeline(path)
    engine = PipelineEngine(
        compile_plan(spec),
        log=RunLog("t", stream=io.StringIO()),
        progress=lambda rows, done, total: calls.append((rows, done, total)),
    )
    asyncio.run(engine.run())
    rows, done, total = calls[-1]
    assert rows == 4 and total == len(ORDERS) and 0 < done <= total


def test_per_file_runs_keep_a_rejects_file_per_input(tmp_path: Path) -> None:
    three_inputs(tmp_path)
    path = write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in/*.csv"}},
            "processors": [
                {"validate": {"schema": {"id": {"type": "int", "enum": [0, 10, 11, 20]}}}}
            ],
            "sink": {"csv": {"path": "out/{stem}.csv"}},
            "on_error": {"policy": "reject", "rejects": "out/rejects.csv", "max_errors": 3},
        },
    )
    # a.csv rejects 2 rows, b.csv 1, c.csv 2: the run fails on c (more than 3 in total)
    with pytest.raises(RunFailedError, match="more than 3 rows rejected"):
        run(path, resume=True)
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == [".p.quiver-state.json", "a.csv", "b.csv", "rejects.a.csv", "rejects.b.csv"]
    assert [r["line"] for r in read_csv(tmp_path / "out/rejects.a.csv")] == ["3", "4"]
    assert [r["value"] for r in read_csv(tmp_path / "out/rejects.b.csv")] == ["12"]


def test_a_glob_matching_nothing_is_a_config_error(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {"source": {"csv": {"path": "none/*.csv"}}, "sink": {"csv": {"path": "out/{stem}.csv"}}},
    )
    with pytest.raises(ConfigError, match="no input file matches"):
        run(path, resume=True)


def test_rows_a_source_cannot_read_go_to_the_rejects_file(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("id,name\n1,a\n2,b,extra\n3,c\n")
    path = write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "sink": {"csv": {"path": "o.csv"}},
            "on_error": {"policy": "reject", "rejects": "rej.csv"},
        },
    )
    result = run(path)
    assert [r["id"] for r in read_csv(tmp_path / "o.csv")] == ["1", "3"]
    (rej,) = read_csv(tmp_path / "rej.csv")
    assert rej["step"] == "source" and rej["line"] == "3"
    assert result.steps["source"].rejected == 1


def test_a_diamond_graph_joins_both_branches(tmp_path: Path) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "steps": {
                "read": {ROWS: {"rows": 12, "batch_rows": 5}},
                "small": {"filter": {"expression": "id <= 6"}},
                "big": {"derive": {"columns": {"value": "value + 1000"}}},
                "both": {"filter": {"expression": "true"}},
                "out": {"csv": {"path": "out.csv"}},
            },
            "connections": [
                {"from": "read", "to": ["small", "big"]},
                {"from": "small", "to": "both"},
                {"from": "big", "to": "both"},
                {"from": "both", "to": "out"},
            ],
        },
    )
    result = run(path)
    rows = read_csv(tmp_path / "out.csv")
    assert len(rows) == 18 and result.steps["both"].rows_in == 18
    assert sorted(int(r["value"]) for r in rows if int(r["id"]) == 3) == [30, 1030]


def test_a_write_that_hits_a_reset_connection_is_retried_without_duplicates(
    tmp_path: Path,
) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "source": {ROWS: {"rows": 20, "batch_rows": 4}},
            "sink": {f"{C}HiccupSink": {"path": "out.csv", "fail_writes": [2, 4]}},
            "engine": {"retry": {"initial_delay": 0.001}},
        },
    )
    result = run(path)
    assert [int(r["id"]) for r in read_csv(tmp_path / "out.csv")] == list(range(1, 21))
    assert result.steps["sink"].retries == 2


@pytest.mark.parametrize("rejects_rows", [True, False], ids=["with-rejects", "without-rejects"])
def test_a_run_removes_the_rejects_temp_file_a_killed_run_left(
    tmp_path: Path, rejects_rows: bool
) -> None:
    path = write_pipeline(
        tmp_path,
        {
            "source": {ROWS: {"rows": 6}},
            "processors": [{f"{C}RejectIdsProcessor": {"ids": [5] if rejects_rows else []}}],
            "sink": {"csv": {"path": "out/out.csv"}},
            "on_error": {"policy": "reject", "rejects": "out/rej.csv"},
        },
    )
    out = tmp_path / "out"
    out.mkdir()
    # left by runs killed mid-way: the current name and the name earlier versions used
    (out / "rej.csv.tmp-0123456789ab").write_text("step,line\nvalidate,3\n")
    (out / "rej.csv.0123456789ab.tmp").write_text("step,line\nvalidate,3\n")
    # the temporary file of a run still going on is locked and must survive
    live = out / "rej.csv.tmp-ba9876543210"
    with live.open("w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        run(path)
        assert sorted(os.listdir(out)) == [
            "out.csv",
            *(["rej.csv"] if rejects_rows else []),
            "rej.csv.tmp-ba9876543210",
        ]
    if rejects_rows:
        assert [r["line"] for r in read_csv(out / "rej.csv")] == ["5"]


def test_a_row_rejected_by_a_later_step_is_written_as_the_source_read_it(tmp_path: Path) -> None:
    lines = ["id,total,note"] + [f"{i},{i}.50,n{i}" for i in range(1, 41)] + ["41,,"]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    path = write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv", "batch_rows": 8}},
            "processors": [
                {"validate": {"schema": {"id": "int", "total": "decimal"}}},
                {"derive": {"columns": {"total": "total * 2"}}},
                {f"{C}RejectIdsProcessor": {"ids": [3, 17, 41]}},
            ],
            "sink": {"csv": {"path": "out.csv"}},
            "on_error": {"policy": "reject", "rejects": "rej.csv"},
        },
    )
    result = run(path)
    assert result.rejected == 3
    rejects = read_csv(tmp_path / "rej.csv")
    assert [(r["step"], r["line"], r["value"]) for r in rejects] == [
        ("RejectIdsProcessor", "4", "3"),
        ("RejectIdsProcessor", "18", "17"),
        ("RejectIdsProcessor", "42", "41"),
    ]
    # the text as read, not the validated and derived values (id 3, total 7.00)
    assert [json.loads(r["row"]) for r in rejects] == [
        {"id": "3", "total": "3.50", "note": "n3"},
        {"id": "17", "total": "17.50", "note": "n17"},
        {"id": "41", "total": None, "note": None},
    ]
    assert len(read_csv(tmp_path / "out.csv")) == 38
    assert leftovers(tmp_path) == []


def test_a_processor_start_hook_runs_once_while_the_source_reads(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    path = write_pipeline(
        tmp_path,
        {
            "source": {C + "NotingRowsSource": {"rows": 8, "delay": 0.2, "log": str(log)}},
            "processors": [{C + "StartRecorder": {"log": str(log)}}],
            "sink": {"csv": {"path": "out.csv"}},
        },
    )
    run(path)
    events = log.read_text().split()
    # start ran before the (slow) source produced anything, and only once.
    assert events[0] == "start"
    assert events.count("start") == 1
    assert events.count("process") == events.count("batch") == 2
    assert len(read_csv(tmp_path / "out.csv")) == 8


def test_a_run_that_rejects_nothing_leaves_no_rejects_file_of_an_earlier_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "in.csv").write_text("a,b\n1,2\n3\n")
    path = write_pipeline(
        tmp_path,
        {
            "source": {"csv": {"path": "in.csv"}},
            "sink": {"csv": {"path": "out/o.csv"}},
            "on_error": {"policy": "reject", "rejects": "out/rejects.csv"},
        },
    )
    assert run(path).rejected == 1
    assert [r["line"] for r in read_csv(tmp_path / "out/rejects.csv")] == ["3"]
    (tmp_path / "in.csv").write_text("a,b\n1,2\n3,4\n")
    result = run(path)
    assert result.rejected == 0 and result.rejects_files == []
    assert not (tmp_path / "out/rejects.csv").exists()
    assert len(read_csv(tmp_path / "out/o.csv")) == 2
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("sink", ["csv", "jsonl", "parquet"])
def test_columns_sharing_a_name_are_refused_before_a_sink_writes_them(
    tmp_path: Path, sink: str
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_arrays([pa.array([1, 2]), pa.array(["x", "y"])], names=["a", "a"])
    pq.write_table(table, tmp_path / "in.parquet")
    path = write_pipeline(
        tmp_path,
        {"source": {"parquet": {"path": "in.parquet"}}, "sink": {sink: {"path": f"o.{sink}"}}},
    )
    with pytest.raises(QuiverError) as raised:
        run(path)
    (detail,) = raised.value.details
    assert detail.where == "sink 'sink'"
    assert detail.message == (
        "the columns reaching it (a, a) name 'a' more than once, which no reader of its "
        "output could tell apart"
    )
    assert not (tmp_path / f"o.{sink}").exists() and leftovers(tmp_path) == []
