"""The pipeline engine: builds the step graph and streams RecordBatches through it.

Every step runs as its own asyncio task. Steps are joined by bounded queues
(``engine.queue_batches`` batches per incoming edge), so a fast source waits for a slow sink
and memory stays bounded. A step output may feed several steps (fan-out: the same immutable
batch is handed to each) and a step may read from several (fan-in). Processors return rows
for their default output, batches for named route outputs (``step.route`` in connections)
and rejected rows, which the ``on_error`` policy turns into a failure (``fail_fast``) or a
line in the rejects file (``reject``, bounded by ``max_errors``).

Sinks only publish at the end: when every step has finished, each sink is committed (an
atomic rename for files). If anything fails, or the run is cancelled (SIGINT / SIGTERM),
every sink is aborted and the rejects file is deleted: a failed run leaves no partial output.
Source reads, processor calls and sink calls go through :mod:`quiver.runtime.delivery`
(retry with backoff and jitter, a circuit breaker per sink).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from quiver.pipeline.component import (
    LINE_COLUMN,
    ComponentConfig,
    ProcessorOutput,
    RowError,
    RunContext,
)
from quiver.pipeline.config import DEFAULT_OUTPUT, PipelineSpec, StepSpec, resolve_path
from quiver.pipeline.rejects import RejectsWriter
from quiver.pipeline.resume import STEM, ResumeState, expand_glob, has_glob, state_path_for
from quiver.pipeline.runlog import RunLog
from quiver.runtime.delivery import CircuitBreaker, Delivery
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError, QuiverError

__all__ = ["PipelineEngine", "RunFailedError", "RunResult", "StepStats", "run_pipeline"]

_END = object()
_ABORT_WAIT_SECONDS = 30.0
ProgressCallback = Callable[[int, int, int | None], None]


class RunFailedError(QuiverError):
    """The run stopped: a step failed, a row was rejected under fail_fast, or max_errors hit."""


@dataclass
class StepStats:
    """Counters of one step, as shown in the summary and the report."""

    name: str
    kind: str
    component: str
    rows_in: int = 0
    rows_out: int = 0
    batches_in: int = 0
    batches_out: int = 0
    rejected: int = 0
    routes: dict[str, int] = field(default_factory=dict)
    unconnected_rows: int = 0
    busy_seconds: float = 0.0
    retries: int = 0


@dataclass
class RunResult:
    """What a run did: status, per-step counters, rejects, timings."""

    run_id: str
    pipeline: str
    file: str
    status: str = "running"
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0
    steps: dict[str, StepStats] = field(default_factory=dict)
    rejected: int = 0
    rejects_file: str | None = None
    rejects_files: list[str] = field(default_factory=list)
    error: QuiverError | None = None
    outputs: list[str] = field(default_factory=list)
    files_processed: list[str] = field(default_factory=list)
    files_skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: dict[str, pa.Table] = field(default_factory=dict)
    dry_run_rejects: list[RowError] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return sum(s.rows_out for s in self.steps.values() if s.kind == "source")

    @property
    def rows_written(self) -> int:
        return sum(s.rows_in for s in self.steps.values() if s.kind == "sink")

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0


class _CollectSink:
    """Stands in for every sink during ``--dry-run``: keeps the rows, writes nothing."""

    def __init__(self) -> None:
        self.batches: list[pa.RecordBatch] = []

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        del schema, ctx

    async def write(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)

    async def commit(self) -> None:
        return None

    async def abort(self) -> None:
        self.batches.clear()


class _OriginalRows:
    """The batches a source emitted, kept in an unlinked temporary file by line number.

    A row rejected by a step after the first has been converted on its way (validated types,
    lookups, derived columns); the rejects file must carry it as it was read, so a user can
    fix and re-feed it. Batches are spilled in Arrow IPC form (a memory copy, no parsing),
    so memory stays bounded however long the input; a rejected row is read back by its line.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="quiver-rows-")  # noqa: SIM115 (see close)
        # (first line, last line, offset, size, schema) per spilled batch
        self._index: list[tuple[int, int, int, int, pa.Schema]] = []
        self._usable = True

    def add(self, batch: pa.RecordBatch) -> None:
        if not self._usable or not batch.num_rows or LINE_COLUMN not in batch.schema.names:
            return
        import pyarrow.compute as pc

        try:
            bounds = pc.min_max(batch.column(LINE_COLUMN)).as_py()
            data = batch.serialize()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            self._usable = False  # e.g. dictionary columns: rejects keep the step's values
            return
        if bounds["min"] is None:
            return
        offset = self._file.seek(0, os.SEEK_END)
        self._file.write(memoryview(data))
        self._index.append((bounds["min"], bounds["max"], offset, data.size, batch.schema))

    def rows(self, lines: set[int]) -> dict[int, dict[str, Any]]:
        """The rows read at ``lines`` (a line the source emitted twice is left out)."""
        import pyarrow.ipc as ipc

        found: dict[int, dict[str, Any]] = {}
        seen_twice: set[int] = set()
        if not self._usable:
            return found
        for first, last, offset, size, schema in self._index:
            wanted = {n for n in lines if first <= n <= last}
            if not wanted:
                continue
            self._file.seek(offset)
            batch = ipc.read_record_batch(pa.py_buffer(self._file.read(size)), schema)
            for i, line in enumerate(batch.column(LINE_COLUMN).to_pylist()):
                if line in wanted:
                    if line in found:
                        seen_twice.add(line)
                    found[line] = batch.slice(i, 1).to_pylist()[0]
        for line in seen_twice:  # e.g. several input files: the line alone is ambiguous
            del found[line]
        return found

    def close(self) -> None:
        self._file.close()


def _drop_line(batch: pa.RecordBatch) -> pa.RecordBatch:
    if LINE_COLUMN in batch.schema.names:
        return batch.drop_columns([LINE_COLUMN])
    return batch


def _conform(batch: pa.RecordBatch, schema: pa.Schema, step: str) -> pa.RecordBatch:
    """Make a later batch match the schema the sink was opened with."""
    if batch.schema.equals(schema):
        return batch
    missing = [n for n in schema.names if n not in batch.schema.names]
    extra = [n for n in batch.schema.names if n not in schema.names]
    if missing or extra:
        raise PermanentError.one(
            f"a batch has different columns than the first one (missing: {missing or '-'}, "
            f"extra: {extra or '-'})",
            f"sink '{step}'",
            "make the steps before this sink produce the same columns for every batch",
        )
    try:
        columns = [batch.column(n).cast(schema.field(n).type) for n in schema.names]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PermanentError.one(
            f"a batch's column types differ from the first batch and cannot be converted: {exc}",
            f"sink '{step}'",
            "add a `cast` step before the sink to fix the column types",
        ) from exc
    return pa.RecordBatch.from_arrays(columns, schema=schema)


class PipelineEngine:
    """Runs one :class:`PipelineSpec`. Create one engine per run."""

    def __init__(
        self,
        spec: PipelineSpec,
        *,
        run_id: str | None = None,
        log: RunLog | None = None,
        dry_run: int | None = None,
        resume: bool = False,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.spec = spec
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.log = log or RunLog(self.run_id, pipeline=spec.name)
        self.dry_run = dry_run
        self.resume = resume
        self.workers = max(1, workers if workers is not None else os.cpu_count() or 1)
        self.progress = progress
        self.result = RunResult(self.run_id, spec.name, spec.file)
        self.result.warnings.extend(spec.warnings)
        for name, step in spec.steps.items():
            self.result.steps[name] = StepStats(name, step.kind, step.component)
        on_error = spec.on_error
        rejects_path = (
            resolve_path(on_error.rejects, spec.base_dir)
            if on_error.rejects and dry_run is None
            else None
        )
        self._rejects_path = rejects_path
        self._rejected_before = 0  # rows rejected in units already committed (--resume)
        self.rejects = RejectsWriter(rejects_path, self.run_id)
        self.result.rejects_file = rejects_path
        self.ctx = RunContext(self.run_id, spec.base_dir, dict(spec.variables), self.log)
        self._breakers = {
            s.name: CircuitBreaker(spec.engine.circuit_breaker, name=f"sink '{s.name}'")
            for s in spec.sinks()
        }
        self._tap_left = {t.step: t.sample for t in spec.taps}
        self._warned: set[str] = set()
        self._bytes_base = 0  # bytes of input files finished in earlier units (--resume)
        self._bytes_total: int | None = None
        self._originals: _OriginalRows | None = None  # per unit, see _keeps_original_rows

    # ------------------------------------------------------------------ public

    async def run(self) -> RunResult:
        """Run to the end. Raises RunFailedError / QuiverError on failure (sinks aborted)."""
        result = self.result
        start = time.perf_counter()
        result.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        self.log.event(
            "run_started",
            f"run {self.run_id}: {self.spec.name} ({len(self.spec.steps)} steps)",
            file=self.spec.file,
            dry_run=self.dry_run,
        )
        for w in self.spec.warnings:
            self.log.event("warning", w, level="warning")
        try:
            units = self._plan_units()
            for unit in units:
                await self._run_unit(unit)
            result.status = "ok"
        except asyncio.CancelledError:
            result.status = "interrupted"
            self.rejects.abort()
            self.log.event("run_interrupted", "run interrupted; no output written", level="error")
            raise
        except QuiverError as exc:
            result.status = "failed"
            result.error = exc
            self.rejects.abort()
            self.log.event(
                "run_failed",
                f"run failed: {exc}",
                level="error",
                code=exc.code,
                errors=[
                    {"message": d.message, "where": d.where, "fix": d.fix} for d in exc.details
                ],
            )
            raise
        except Exception as exc:
            result.status = "failed"
            err = RunFailedError.one(
                f"{type(exc).__name__}: {exc}", self.spec.file, "run with --debug for details"
            )
            result.error = err
            self.rejects.abort()
            self.log.event("run_failed", f"run failed: {err}", level="error")
            raise err from exc
        finally:
            result.seconds = time.perf_counter() - start
            result.finished_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            result.rejected = self._rejected_before + self.rejects.count
        self.log.event(
            "run_finished",
            f"run {self.run_id} finished: {result.rows_read} rows read, "
            f"{result.rows_written} written, {result.rejected} rejected in {result.seconds:.2f}s",
            rows_read=result.rows_read,
            rows_written=result.rows_written,
            rejected=result.rejected,
            seconds=round(result.seconds, 3),
        )
        return result

    # ------------------------------------------------------------------ units (resume)

    def _plan_units(self) -> list[tuple[str | None, str | None]]:
        """``(input file, stem)`` per sub-run; ``(None, None)`` is one run over everything."""
        per_file = self.resume or any(
            STEM in str(getattr(s.config, "path", "") or "") for s in self.spec.sinks()
        )
        if not per_file:
            self._bytes_total = self._input_bytes()
            return [(None, None)]
        sources = self.spec.sources()
        raw = getattr(sources[0].config, "path", None) if len(sources) == 1 else None
        pattern = raw if isinstance(raw, str) else ""
        if len(sources) != 1 or not pattern:
            raise ConfigError.one(
                "--resume and {stem} outputs need exactly one source with one `path` (a file "
                "or a glob)",
                self.spec.file,
                "use a file source such as csv with `path: in/*.csv`",
            )
        pattern = resolve_path(pattern, self.spec.base_dir)
        files = expand_glob(pattern) if has_glob(pattern) else [pattern]
        if not files or not all(os.path.isfile(f) for f in files):
            raise ConfigError.one(
                f"no input file matches {pattern}",
                sources[0].where,
                "check the source `path` (relative paths start at the pipeline file)",
            )
        if self.dry_run is not None:
            files = files[:1]
        path_sinks = [s for s in self.spec.sinks() if getattr(s.config, "path", None)]
        if len(files) > 1:
            for s in path_sinks:
                if STEM not in str(getattr(s.config, "path", "")):
                    raise ConfigError.one(
                        f"{len(files)} input files match {pattern} but sink '{s.name}' writes "
                        "one file, so each input would overwrite the previous output",
                        s.where,
                        "put {stem} in the sink path, e.g. out/{stem}.parquet",
                    )
        self._bytes_total = sum(os.path.getsize(f) for f in files)
        state: ResumeState | None = None
        if self.resume:
            out_dir = self.spec.base_dir
            if path_sinks:
                first = resolve_path(
                    str(getattr(path_sinks[0].config, "path", "")), self.spec.base_dir
                )
                out_dir = os.path.dirname(first)
            state = ResumeState.load(
                state_path_for(self.spec.name, out_dir), self.spec.file, pattern
            )
            self._state = state
        units: list[tuple[str | None, str | None]] = []
        for f in files:
            if state is not None and state.is_done(f):
                self.result.files_skipped.append(f)
                self._bytes_total -= os.path.getsize(f)
                continue
            units.append((f, os.path.splitext(os.path.basename(f))[0]))
        if self.result.files_skipped:
            self.log.event(
                "resume",
                f"resuming: {len(self.result.files_skipped)} input file(s) already done, "
                f"{len(units)} to go",
                skipped=len(self.result.files_skipped),
            )
        return units

    def _unit_rejects_path(self, stem: str | None) -> str | None:
        """The rejects file of one unit: per input file (``{stem}``) when running per file."""
        path = self._rejects_path
        if path is None or stem is None:
            return path
        if STEM in path:
            return path.replace(STEM, stem)
        root, ext = os.path.splitext(path)
        return f"{root}.{stem}{ext}"

    def _input_bytes(self) -> int | None:
        """Total size of the local files the sources will read, when that is knowable."""
        total = 0
        for step in self.spec.sources():
            path = getattr(step.config, "path", None)
            paths = [path] if isinstance(path, str) else path if isinstance(path, list) else None
            if not paths:
                return None
            for p in paths:
                if not isinstance(p, str) or "://" in p:
                    return None
                full = resolve_path(p, self.spec.base_dir)
                files = expand_glob(full) if has_glob(full) else [full]
                total += sum(os.path.getsize(f) for f in files if os.path.isfile(f))
        return total or None

    # ------------------------------------------------------------------ one sub-run

    def _keeps_original_rows(self) -> bool:
        """Whether rows rejected after the first step need the source's rows kept aside."""
        spec = self.spec
        if self.dry_run is not None or self.rejects.path is None or len(spec.sources()) != 1:
            return False
        return any(
            not self._fed_by_sources(s.name) for s in spec.steps.values() if s.kind == "processor"
        )

    def _fed_by_sources(self, step: str) -> bool:
        return all(
            self.spec.steps[c.source_step].kind == "source" for c in self.spec.incoming(step)
        )

    def _instantiate(self, step: StepSpec, file: str | None, stem: str | None) -> Any:
        assert step.info is not None and step.config is not None
        config: ComponentConfig = step.config
        updates: dict[str, Any] = {}
        if file is not None and step.kind == "source":
            updates["path"] = file
        if stem is not None and step.kind == "sink":
            path = getattr(config, "path", None)
            if isinstance(path, str) and STEM in path:
                updates["path"] = path.replace(STEM, stem)
        if updates:
            config = config.model_copy(update=updates)
        if step.kind == "sink" and self.dry_run is not None:
            return _CollectSink()
        return step.info.cls(config)

    async def _run_unit(self, unit: tuple[str | None, str | None]) -> None:
        file, stem = unit
        spec = self.spec
        self.rejects = RejectsWriter(self._unit_rejects_path(stem), self.run_id)
        if file is not None:
            self.log.event("input_started", f"reading {file}", input=file)
        comps = {name: self._instantiate(step, file, stem) for name, step in spec.steps.items()}
        cap = spec.engine.queue_batches
        queues: dict[str, asyncio.Queue[Any]] = {
            name: asyncio.Queue(maxsize=cap * max(1, len(spec.incoming(name))))
            for name, step in spec.steps.items()
            if step.kind != "source"
        }
        self._queues = queues
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._originals = _OriginalRows() if self._keeps_original_rows() else None
        opened: dict[str, Any] = {}
        rows_before = self.result.rows_read
        tasks: dict[asyncio.Task[None], str] = {}
        for name, step in spec.steps.items():
            if step.kind == "source":
                coro = self._source_task(step, comps[name])
            elif step.kind == "processor":
                coro = self._processor_task(step, comps[name])
            else:
                coro = self._sink_task(step, comps[name], opened)
            tasks[asyncio.create_task(coro, name=f"step:{name}")] = name
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
                for t in done:
                    if t.exception() is not None:
                        raise _step_error(tasks[t], t.exception())
            for name in spec.steps:
                if name in opened:
                    await self._delivery(name).call(opened[name].commit, name=f"commit '{name}'")
                    self.log.event("sink_committed", f"sink '{name}' committed", step=name)
            for name, step in spec.steps.items():  # e.g. acknowledge queue messages
                settle = "commit" if self.dry_run is None else "abort"  # a dry run takes nothing
                if step.kind == "source" and hasattr(comps[name], settle):
                    await getattr(comps[name], settle)()
            self.rejects.commit()
            if self.rejects.count and self.rejects.path:
                self.result.rejects_files.append(self.rejects.path)
            if self.dry_run is not None:
                self.result.dry_run_rejects.extend(self.rejects.kept)
                for name, sink in comps.items():
                    if isinstance(sink, _CollectSink):
                        self.result.dry_run[name] = (
                            pa.Table.from_batches(sink.batches) if (sink.batches) else pa.table({})
                        )
            for name, step in spec.steps.items():
                path = getattr(comps[name], "path", None) or getattr(
                    getattr(comps[name], "cfg", None), "path", None
                )
                if step.kind == "sink" and isinstance(path, str) and self.dry_run is None:
                    self.result.outputs.append(resolve_path(path, spec.base_dir))
            self._rejected_before += self.rejects.count
            self.rejects = RejectsWriter(None, self.run_id)
            if file is not None:
                self.result.files_processed.append(file)
                self._bytes_base += os.path.getsize(file) if os.path.exists(file) else 0
                state: ResumeState | None = getattr(self, "_state", None)
                if state is not None and self.dry_run is None:
                    state.mark_done(file, self.result.rows_read - rows_before, [])
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            inflight = [c for c in self._inflight.values() if not c.done()]
            if inflight:
                await asyncio.wait(inflight, timeout=_ABORT_WAIT_SECONDS)
            for name, step in spec.steps.items():  # e.g. requeue messages
                if step.kind == "source" and hasattr(comps[name], "abort"):
                    with contextlib.suppress(Exception):
                        await asyncio.shield(comps[name].abort())
            for name, sink in opened.items():
                with contextlib.suppress(Exception):
                    await asyncio.shield(sink.abort())
                self.log.event("sink_aborted", f"sink '{name}' aborted", step=name, level="debug")
            raise
        finally:
            if self._originals is not None:
                self._originals.close()
                self._originals = None
            for comp in comps.values():
                close = getattr(comp, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        res = close()
                        if asyncio.iscoroutine(res):
                            await res

    # ------------------------------------------------------------------ steps

    def _delivery(self, step: str) -> Delivery:
        stats = self.result.steps[step]

        def on_retry(name: str, attempt: int, delay: float, exc: BaseException) -> None:
            stats.retries += 1
            self.log.event(
                "retry",
                f"{name} failed (attempt {attempt}): {exc}; retrying in {delay:.2f}s",
                level="warning",
                step=step,
                attempt=attempt,
            )

        return Delivery(self.spec.engine.retry, breaker=self._breakers.get(step), on_retry=on_retry)

    async def _source_task(self, step: StepSpec, src: Any) -> None:
        stats = self.result.steps[step.name]
        delivery = self._delivery(step.name)
        gen: AsyncIterator[pa.RecordBatch] | None = None
        limit = self.dry_run

        async def first() -> pa.RecordBatch | None:
            nonlocal gen
            gen = src.batches(self.ctx)
            try:
                return await anext(gen)
            except StopAsyncIteration:
                return None

        def take_source_errors() -> None:  # rows a file source could not read
            take = getattr(src, "take_errors", None)
            errors = take() if take is not None else []
            if errors:
                self._reject(step, errors, None)

        try:
            batch = await delivery.call(first, name=f"read '{step.name}'")
            while batch is not None:
                take_source_errors()
                if limit is not None:
                    batch = batch.slice(0, max(0, limit - stats.rows_out))
                if batch.num_rows:
                    stats.rows_out += batch.num_rows
                    stats.batches_out += 1
                    if self._originals is not None:
                        self._originals.add(batch)
                    self._report_progress(src)
                    await self._emit(step.name, DEFAULT_OUTPUT, batch)
                if limit is not None and stats.rows_out >= limit:
                    break
                assert gen is not None
                try:
                    batch = await anext(gen)
                except StopAsyncIteration:
                    batch = None
            take_source_errors()
        finally:
            aclose = getattr(gen, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        await self._finish(step.name)

    def _report_progress(self, src: Any) -> None:
        if self.progress is None:
            return
        read = getattr(src, "bytes_read", None)
        done = self._bytes_base + int(read or 0) if read is not None else 0
        self.progress(self.result.rows_read, done, self._bytes_total)

    async def _inputs(self, name: str) -> AsyncIterator[pa.RecordBatch]:
        queue = self._queues[name]
        remaining = len(self.spec.incoming(name))
        while remaining:
            item = await queue.get()
            if item is _END:
                remaining -= 1
                continue
            yield item

    async def _processor_task(self, step: StepSpec, proc: Any) -> None:
        # Optional start hook: each step is its own task, so a processor's start-up (e.g. the
        # JS isolates) overlaps the source reading its first batch.
        start: Callable[[RunContext], Awaitable[None]] | None = getattr(proc, "start", None)
        if start is not None:
            await start(self.ctx)
        stats = self.result.steps[step.name]
        delivery = self._delivery(step.name)
        concurrent = bool(getattr(proc, "concurrent", False)) and self.workers > 1
        inflight: deque[tuple[pa.RecordBatch, asyncio.Task[ProcessorOutput]]] = deque()

        async def call(batch: pa.RecordBatch) -> ProcessorOutput:
            async def once() -> ProcessorOutput:
                out: ProcessorOutput = await proc.process(batch, self.ctx)
                return out

            t0 = time.perf_counter()
            try:
                return await delivery.call(once, name=f"step '{step.name}'")
            finally:
                stats.busy_seconds += time.perf_counter() - t0

        try:
            async for batch in self._inputs(step.name):
                stats.rows_in += batch.num_rows
                stats.batches_in += 1
                if not concurrent:
                    await self._handle_output(step, await call(batch), batch)
                    continue
                inflight.append((batch, asyncio.create_task(call(batch))))
                if len(inflight) >= self.workers:
                    done_batch, task = inflight.popleft()
                    await self._handle_output(step, await task, done_batch)
            while inflight:
                done_batch, task = inflight.popleft()
                await self._handle_output(step, await task, done_batch)
        finally:
            for _, task in inflight:
                task.cancel()
        flush: Callable[[RunContext], Any] | None = getattr(proc, "flush", None)
        if flush is not None:
            flushed = flush(self.ctx)
            if hasattr(flushed, "__aiter__"):
                async for out in flushed:
                    await self._handle_output(step, out, None)
            else:
                out = await flushed
                if out is not None:
                    await self._handle_output(step, out, None)
        await self._finish(step.name)

    async def _handle_output(
        self, step: StepSpec, out: ProcessorOutput, source: pa.RecordBatch | None
    ) -> None:
        stats = self.result.steps[step.name]
        if out.errors:
            self._reject(step, out.errors, source)
        if out.batch is not None and out.batch.num_rows:
            stats.rows_out += out.batch.num_rows
            stats.batches_out += 1
            await self._emit(step.name, DEFAULT_OUTPUT, out.batch)
        for route, batches in out.routes.items():
            for b in batches:
                if b.num_rows:
                    stats.routes[route] = stats.routes.get(route, 0) + b.num_rows
                    await self._emit(step.name, route, b)

    def _reject(
        self, step: StepSpec, errors: list[RowError], source: pa.RecordBatch | None
    ) -> None:
        stats = self.result.steps[step.name]
        originals = self._original_rows(step, errors, source)
        fixed = [
            RowError(
                e.line,
                e.reason,
                e.column,
                e.value,
                originals.get(e.line, e.row) if e.line is not None else e.row,
                e.step or step.name,
            )
            for e in errors
        ]
        stats.rejected += len(fixed)
        on_error = self.spec.on_error
        if on_error.policy == "fail_fast" and self.dry_run is None:
            first = fixed[0]
            raise RunFailedError(
                [
                    ErrorDetail(
                        _describe_row_error(first),
                        f"step '{first.step}'",
                        "fix the input row, or set `on_error: {policy: reject, rejects: "
                        "rejects.csv}` to set bad rows aside and go on",
                    )
                ],
                code="ROW_REJECTED",
            )
        self.rejects.write(fixed)
        total = self._rejected_before + self.rejects.count
        if on_error.max_errors is not None and total > on_error.max_errors:
            raise RunFailedError(
                [
                    ErrorDetail(
                        f"more than {on_error.max_errors} rows rejected "
                        f"(last: {_describe_row_error(fixed[-1])})",
                        f"step '{step.name}'",
                        "fix the input, or raise on_error.max_errors",
                    )
                ],
                code="TOO_MANY_ERRORS",
            )

    def _original_rows(
        self, step: StepSpec, errors: list[RowError], source: pa.RecordBatch | None
    ) -> dict[int, dict[str, Any]]:
        """The rejected rows as the source read them, by line.

        A step fed by the source sees those rows in its input batch; later steps find them
        among the source's spilled batches. A row found in neither keeps the values the step
        gave (or, if none, its input row).
        """
        if step.kind == "source":
            return {}  # the source gives the raw text of what it could not read
        lines = {e.line for e in errors if e.line is not None}
        if not lines:
            return {}
        if self._originals is not None and not self._fed_by_sources(step.name):
            found = self._originals.rows(lines)
            lines -= found.keys()
        else:
            found = {}
        if lines and source is not None and LINE_COLUMN in source.schema.names:
            keep = {e.line for e in errors if e.line in lines and e.row is None}
            if self._fed_by_sources(step.name):
                keep = lines
            for i, line in enumerate(source.column(LINE_COLUMN).to_pylist()):
                if line in keep:
                    found[line] = source.slice(i, 1).to_pylist()[0]
        return found

    async def _sink_call(
        self,
        step: str,
        delivery: Delivery,
        op: Callable[[], Awaitable[Any]],
        name: str,
        payload: Any = None,
    ) -> None:
        """Run a sink call so that cancelling the run waits for it before the sink is aborted.

        Sinks often do their I/O in worker threads, which cancellation cannot stop; aborting
        while such a call still runs could leave a file the abort did not see.
        """
        call = asyncio.ensure_future(delivery.call(op, name=name, payload=payload))
        self._inflight[step] = call
        await asyncio.shield(call)

    async def _sink_task(self, step: StepSpec, sink: Any, opened: dict[str, Any]) -> None:
        stats = self.result.steps[step.name]
        delivery = self._delivery(step.name)
        schema: pa.Schema | None = None
        async for batch in self._inputs(step.name):
            self._tap(step.name, DEFAULT_OUTPUT, batch)
            out = _drop_line(batch)
            if schema is None:
                schema = out.schema
                opened[step.name] = sink
                await self._sink_call(
                    step.name, delivery, _bind(sink.open, schema, self.ctx), f"open '{step.name}'"
                )
            else:
                out = _conform(out, schema, step.name)
            t0 = time.perf_counter()
            await self._sink_call(
                step.name, delivery, _bind(sink.write, out), f"write '{step.name}'", out
            )
            stats.busy_seconds += time.perf_counter() - t0
            stats.rows_in += out.num_rows
            stats.batches_in += 1
        if schema is None:
            opened[step.name] = sink
            await self._sink_call(
                step.name,
                delivery,
                _bind(sink.open, pa.schema([]), self.ctx),
                f"open '{step.name}'",
            )

    # ------------------------------------------------------------------ plumbing

    async def _emit(self, step: str, output: str, batch: pa.RecordBatch) -> None:
        self._tap(step, output, batch)
        targets = [c.target for c in self.spec.outgoing(step) if c.output == output]
        if not targets:
            stats = self.result.steps[step]
            stats.unconnected_rows += batch.num_rows
            key = f"{step}.{output}"
            if key not in self._warned:
                self._warned.add(key)
                label = step if output == DEFAULT_OUTPUT else key
                message = f"output '{label}' is not connected; its rows are dropped"
                self.result.warnings.append(message)
                self.log.event("unconnected_output", message, level="warning", step=step)
            return
        for target in targets:
            await self._queues[target].put(batch)

    async def _finish(self, step: str) -> None:
        for c in self.spec.outgoing(step):
            await self._queues[c.target].put(_END)

    def _tap(self, step: str, output: str, batch: pa.RecordBatch) -> None:
        key = step if output == DEFAULT_OUTPUT else f"{step}.{output}"
        left = self._tap_left.get(key, 0)
        if left <= 0:
            return
        rows = _drop_line(batch.slice(0, left)).to_pylist()
        self._tap_left[key] = left - len(rows)
        for row in rows:
            self.log.event("tap", f"tap {key}: {row}", tap=key, row=row)


def _bind(fn: Callable[..., Awaitable[Any]], *args: Any) -> Callable[[], Awaitable[Any]]:
    """A zero-argument coroutine factory, so a delivery retry calls ``fn(*args)`` afresh."""

    def call() -> Awaitable[Any]:
        return fn(*args)

    return call


def _describe_row_error(e: RowError) -> str:
    parts = []
    if e.line is not None:
        parts.append(f"line {e.line}")
    if e.column:
        parts.append(f"column '{e.column}'")
    if e.value is not None:
        parts.append(f"value {e.value!r}")
    where = ", ".join(parts)
    return f"{where}: {e.reason}" if where else e.reason


def _step_error(step: str, exc: BaseException | None) -> BaseException:
    if isinstance(exc, QuiverError):
        if not any(d.where for d in exc.details):
            exc.details = [ErrorDetail(d.message, f"step '{step}'", d.fix) for d in exc.details]
        return exc
    if exc is None:
        return RunFailedError.one(f"step '{step}' failed", f"step '{step}'")
    err = RunFailedError.one(
        f"{type(exc).__name__}: {exc}",
        f"step '{step}'",
        "this is an unexpected error in the component; run with --debug for the traceback",
    )
    err.__cause__ = exc
    return err


async def run_pipeline(
    spec: PipelineSpec,
    *,
    dry_run: int | None = None,
    resume: bool = False,
    log: RunLog | None = None,
) -> RunResult:
    """Convenience: run ``spec`` with default settings and return the result."""
    return await PipelineEngine(spec, dry_run=dry_run, resume=resume, log=log).run()
