"""V8 isolates made, stopped and rebuilt on many threads never crash the process.

V8 starts once per process, so each test runs its scenario in a fresh Python process, where
the threads that make isolates exist before V8 starts (as the engine's executor threads do),
and asserts that process ends normally: a crash shows as a failed test, not a dead worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def run_fresh(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "scenario.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_isolates_made_on_threads_started_before_v8_survive_time_limits(tmp_path: Path) -> None:
    done = run_fresh(
        tmp_path,
        """
        import threading
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa

        from quiver.pipeline.js_runtime.isolate import Isolate, IsolateOptions, ScriptAbortError

        options = IsolateOptions(
            source="function transform(row) { while (row.id === 99) {} return row; }",
            script_name="loop.js",
            timeout_seconds=0.3,
        )
        # The threads exist before V8 starts, as the engine's executor threads do.
        threads = ThreadPoolExecutor(4)
        ready = threading.Barrier(4)
        list(threads.map(lambda _: ready.wait(), range(4)))

        def use(_: int) -> str:
            isolate = Isolate(options)
            try:
                for _ in range(2):
                    try:
                        isolate.run(pa.RecordBatch.from_pydict({"id": [1, 99]}))
                    except ScriptAbortError as exc:
                        assert exc.kind == "timeout", exc.message
                    else:
                        raise AssertionError("the endless loop was not stopped")
                    out = isolate.run(pa.RecordBatch.from_pydict({"id": [1, 2]}))
                    assert out.batch.column("id").to_pylist() == [1, 2]
            finally:
                isolate.close()
            return "ok"

        for _ in range(2):
            assert list(threads.map(use, range(4))) == ["ok"] * 4
        print("all isolates ran")
        """,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all isolates ran" in done.stdout


def test_concurrent_runs_with_thread_isolation_and_endless_loops_finish(tmp_path: Path) -> None:
    done = run_fresh(
        tmp_path,
        """
        import asyncio

        import pyarrow as pa

        from quiver.pipeline.component import RunContext
        from quiver.pipeline.processors.js import JsProcessor, JsProcessorConfig
        from quiver.runtime.errors import PermanentError

        async def one_run(n: int) -> list[int]:
            proc = JsProcessor(
                JsProcessorConfig(
                    script="function transform(row) { while (row.id === 99) {} return row; }",
                    timeout_seconds=0.3,
                    workers=2,
                    isolation="thread",
                    min_rows_per_worker=1,
                )
            )
            ctx = RunContext(run_id=f"r{n}", base_dir=".", variables={}, log=lambda m, l: None)
            try:
                for _ in range(2):
                    try:
                        await proc.process(pa.RecordBatch.from_pydict({"id": [1, 99]}), ctx)
                    except PermanentError as exc:
                        assert "time limit" in str(exc), str(exc)
                    else:
                        raise AssertionError("the endless loop was not stopped")
                out = await proc.process(pa.RecordBatch.from_pydict({"id": [1, 2, 3]}), ctx)
                assert out.batch is not None
                return list(out.batch.column("id").to_pylist())
            finally:
                await proc.close()

        async def main() -> None:
            got = await asyncio.gather(*(one_run(n) for n in range(4)))
            assert got == [[1, 2, 3]] * 4, got

        asyncio.run(main())
        print("all runs finished")
        """,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "all runs finished" in done.stdout


def test_v8_started_by_other_code_first_is_a_config_error_not_a_crash(tmp_path: Path) -> None:
    done = run_fresh(
        tmp_path,
        """
        import asyncio

        import pyarrow as pa
        from py_mini_racer import init_mini_racer

        from quiver.pipeline.component import RunContext
        from quiver.pipeline.processors.js import JsProcessor, JsProcessorConfig
        from quiver.runtime.errors import ConfigError

        init_mini_racer()  # other code of the process starts V8 with its own flags

        async def main() -> None:
            proc = JsProcessor(
                JsProcessorConfig(script="function transform(row) { return row; }", workers=2)
            )
            ctx = RunContext(run_id="r", base_dir=".", variables={}, log=lambda m, l: None)
            try:
                await proc.process(pa.RecordBatch.from_pydict({"id": [1, 2]}), ctx)
            except ConfigError as exc:
                print(exc)
            finally:
                await proc.close()

        asyncio.run(main())

        from quiver.pipeline.js_runtime.isolate import IsolateOptions
        from quiver.pipeline.js_runtime.syntax import check_script

        (detail,) = check_script(IsolateOptions(source="var x = 1;", script_name="s.js"))
        print("validate:", detail.message, "|", detail.fix)
        """,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "V8 was started in this process by other code" in done.stdout
    assert "isolation: process" in done.stdout
    assert "validate: V8 was started in this process by other code" in done.stdout
    assert "start_v8()" in done.stdout


def test_v8_started_in_the_background_is_waited_for_by_the_first_isolate(tmp_path: Path) -> None:
    done = run_fresh(
        tmp_path,
        """
        import threading

        import pyarrow as pa

        from quiver.pipeline.js_runtime import v8
        from quiver.pipeline.js_runtime.isolate import Isolate, IsolateOptions

        v8.start_v8_in_background()
        starting = [t for t in threading.enumerate() if t.name == "quiver-v8-start"]
        print("starting on a thread of its own:", len(starting))
        isolate = Isolate(
            IsolateOptions(source="function transform(row) { row.id *= 2; return row; }",
                           script_name="double.js")
        )
        out = isolate.run(pa.RecordBatch.from_pydict({"id": [1, 2]}))
        print("ids:", out.batch.column("id").to_pylist())
        isolate.close()
        """,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "starting on a thread of its own: 1" in done.stdout
    assert "ids: [2, 4]" in done.stdout


def test_a_failed_background_start_of_v8_is_reported_by_the_script_check(tmp_path: Path) -> None:
    done = run_fresh(
        tmp_path,
        """
        import threading

        from py_mini_racer import init_mini_racer

        from quiver.pipeline.js_runtime import v8
        from quiver.pipeline.js_runtime.isolate import IsolateOptions
        from quiver.pipeline.js_runtime.syntax import check_script

        init_mini_racer()  # other code of the process starts V8 with its own flags
        v8.start_v8_in_background()
        for t in threading.enumerate():
            if t.name == "quiver-v8-start":
                t.join()
        (detail,) = check_script(IsolateOptions(source="var x = 1;", script_name="s.js"))
        print("validate:", detail.message)
        """,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "validate: V8 was started in this process by other code" in done.stdout


def test_quiver_run_starts_v8_while_loading_only_for_a_pipeline_with_a_js_step(
    tmp_path: Path,
) -> None:
    (tmp_path / "js.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors:\n  - js: {script: 'function transform(row) { return row; }'}\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    (tmp_path / "plain.yaml").write_text(
        "source: {csv: {path: in.csv}}\n"
        "processors:\n  - python: {file: js.py}\n"
        "sink: {csv: {path: out.csv}}\n"
    )
    done = run_fresh(
        tmp_path,
        """
        import threading

        from quiver.pipeline.commands import _start_v8_early
        from quiver.pipeline.js_runtime import v8

        def started(file: str) -> bool:
            _start_v8_early(file)
            for t in threading.enumerate():
                if t.name == "quiver-v8-start":
                    t.join()
            return v8._started

        print("plain:", started("plain.yaml"))
        print("missing file:", started("nowhere.yaml"))
        print("js:", started("js.yaml"))
        """,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "plain: False" in done.stdout
    assert "missing file: False" in done.stdout
    assert "js: True" in done.stdout


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_isolate_threads_and_workers_are_batch_work(tmp_path: Path) -> None:
    done = run_fresh(
        tmp_path,
        """
        import os
        import threading

        import pyarrow as pa

        from quiver.pipeline.js_runtime.isolate import IsolateOptions
        from quiver.pipeline.js_runtime.pool import WorkerPool
        from quiver.pipeline.processors.js import _IsolateThreads

        def policies():
            found = {}
            for tid in os.listdir("/proc/self/task"):
                found[int(tid)] = os.sched_getscheduler(int(tid))
            return found

        before = set(policies())
        runner = _IsolateThreads(
            IsolateOptions("function transform(row) { row.y = 1; return row; }", "t.js"), 2
        )
        out = runner.run(pa.RecordBatch.from_pydict({"x": [1, 2]}))
        assert out.batch.column("y").to_pylist() == [1, 1]
        now = policies()
        serving = {i.isolate_thread_id for i in runner._all}
        assert all(now[tid] == os.SCHED_BATCH for tid in serving), now
        started = {tid: p for tid, p in now.items() if tid not in before}
        batch = [tid for tid, p in started.items() if p == os.SCHED_BATCH]
        # each isolate: its serving thread, its event loop's thread and V8's own
        assert len(batch) >= 3 * len(serving), started
        assert now[threading.main_thread().native_id] == os.SCHED_OTHER
        runner.close()

        # isolation: process: the worker's threads
        pool = WorkerPool(IsolateOptions("function transform(row) { return row; }", "t.js"), 1)
        pool.start()
        (pid,) = pool.pids()
        assert pool.run(pa.RecordBatch.from_pydict({"x": [1]})).batch.num_rows == 1
        worker = {int(t): os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")}
        # its main thread and those it started (V8's); not those its imports started before
        assert worker[pid] == os.SCHED_BATCH, worker
        assert sum(p == os.SCHED_BATCH for p in worker.values()) >= 3, worker
        pool.close()
        print("ok")
        """,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
