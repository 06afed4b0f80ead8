"""The pipeline engine: runs a compiled :class:`~quiver.pipeline.plan.PipelinePlan`.

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
(retry with backoff and jitter, a circuit breaker per sink). With a dead-letter queue
(``dlq:``), a sink that fails for good does not fail the run: the rows it received since its
last commit become an entry of the queue (:mod:`quiver.pipeline.dead_letters`), written and
``fsync``'d before the sources acknowledge anything, and the other sinks commit.

The engine calls a component's optional hooks (``start``, ``flush``, ``close``, a source's
``commit`` / ``abort`` ...) only when its class declares them (see
:mod:`quiver.pipeline.component`); the plan resolved them once. Running per input file
(``--resume``, ``{stem}`` outputs) is scheduled by :mod:`quiver.pipeline.units`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import os
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from quiver.pipeline.component import (
    LINE_COLUMN,
    Acknowledging,
    ByteCounting,
    Checkpointing,
    Closing,
    Draining,
    Flushing,
    Listening,
    Processor,
    ProcessorOutput,
    RowError,
    RowRejecting,
    RunContext,
    Sink,
    Source,
    Starting,
    is_internal,
    kept_text_of,
    schema_without_line,
    without_kept_text,
    without_line,
)
from quiver.pipeline.conform import conform
from quiver.pipeline.metrics import EngineMetrics
from quiver.pipeline.output import FileSinkConfig
from quiver.pipeline.plan import DEFAULT_OUTPUT, PipelinePlan, PlanStep
from quiver.pipeline.rejects import RejectsWriter
from quiver.pipeline.resume import STEM
from quiver.pipeline.runlog import RunLog
from quiver.pipeline.units import RunUnit, UnitSchedule, schedule_units
from quiver.runtime.delivery import CircuitBreaker, DeadLetter, DeadLetterHook, Delivery, file_error
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError, QuiverError
from quiver.runtime.metrics import expose
from quiver.runtime.wording import plural

if TYPE_CHECKING:
    from quiver.pipeline.dead_letters import DeadLetterQueue, StagedRows

__all__ = ["PipelineEngine", "RunFailedError", "RunResult", "StepStats"]

_END = object()
_ABORT_WAIT_SECONDS = 30.0
_STOP_WAIT_SECONDS = 0.4  # after a stop signal: for a sink call in flight, then for each abort
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
    rows_written: int = 0  # a sink's rows committed (rows_in counts those handed to it)
    batches_in: int = 0
    batches_out: int = 0
    rejected: int = 0
    script_errors: int = 0  # of the rejected rows, those a script failed on (RowError.kind)
    first_script_error: str | None = None
    routes: dict[str, int] = field(default_factory=dict)
    unconnected_rows: int = 0
    busy_seconds: float = 0.0
    retries: int = 0
    dead_lettered: int = 0  # a sink's rows kept in the dead-letter queue


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
    dead_letters: list[str] = field(default_factory=list)  # ids of the entries this run added
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
        """Rows committed by the sinks, summed over them (a row copied to three sinks is
        three rows written); a failed unit's rows count nowhere."""
        return sum(self.rows_written_by_sink.values())

    @property
    def rows_written_by_sink(self) -> dict[str, int]:
        return {n: s.rows_written for n, s in self.steps.items() if s.kind == "sink"}

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
        self.batches.append(without_line(batch))

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
                    found[line] = without_kept_text(batch.slice(i, 1)).to_pylist()[0]
        for line in seen_twice:  # e.g. several input files: the line alone is ambiguous
            del found[line]
        return found

    def close(self) -> None:
        self._file.close()


def _internal_as(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with the internal columns of ``schema`` (nulls for those it lacks) and no
    others: the line column, and the kept text of decimal columns.

    A sink is fed by several steps (fan-in) or a processor may drop the line numbers: every
    batch a sink receives keeps the shape of its first one.
    """
    names = batch.schema.names
    extra = [n for n in names if is_internal(n) and n not in schema.names]
    if extra:
        batch = batch.drop_columns(extra)
    for f in schema:
        if is_internal(f.name) and f.name not in names:
            batch = batch.append_column(f, pa.nulls(batch.num_rows, f.type))
    return batch


def _check_line_column(schema: pa.Schema, step: PlanStep) -> None:
    """A source's rows carry Quiver's internal columns (the line number, the text of decimals
    read from text), whose names start with a control character no user column name holds
    unless written by hand with it. An input column with such a name is refused: one that
    doubles an internal column, and one that no internal column of this source explains (a
    sink would leave it out of what it writes)."""
    names = schema.names
    for name in dict.fromkeys(n for n in names if is_internal(n)):
        kept = kept_text_of(name)
        doubled = len(schema.get_all_field_indices(name)) > 1
        explained = name == LINE_COLUMN or (
            kept is not None
            and kept in names
            and pa.types.is_decimal(schema.field(kept).type)
            and pa.types.is_string(schema.field(name).type)
        )
        if explained and not doubled:
            continue
        what = (
            "the line number of each row"
            if name == LINE_COLUMN
            else "the text a decimal value was read from"
            if kept is not None
            else "its own columns"
        )
        raise PermanentError.one(
            f"the input has a column named {name!r}, a name Quiver reserves for {what}",
            f"source '{step.name}'",
            "rename the column in the input (names holding control characters are reserved)",
        )


class PipelineEngine:
    """Runs one :class:`PipelinePlan`. Create one engine per run."""

    def __init__(
        self,
        plan: PipelinePlan,
        *,
        run_id: str | None = None,
        log: RunLog | None = None,
        dry_run: int | None = None,
        resume: bool = False,
        workers: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.log = log or RunLog(self.run_id, pipeline=plan.name)
        self.dry_run = dry_run
        self.resume = resume
        self.workers = max(1, workers if workers is not None else os.cpu_count() or 1)
        self.progress = progress
        self.result = RunResult(self.run_id, plan.name, plan.file)
        self.result.warnings.extend(plan.warnings)
        for name, step in plan.steps.items():
            self.result.steps[name] = StepStats(name, step.kind, step.component)
        self._rejects_path = plan.on_error.rejects if dry_run is None else None
        self._rejected_before = 0  # rows rejected in units already committed (--resume)
        self.rejects = RejectsWriter(self._rejects_path, self.run_id)
        self.result.rejects_file = self._rejects_path
        self.ctx = RunContext(
            self.run_id, plan.base_dir, dict(plan.variables), self.log, pipeline=plan.name
        )
        self._breakers = {
            s.name: CircuitBreaker(plan.circuit_breaker, name=f"sink '{s.name}'")
            for s in plan.sinks
        }
        self._tap_left = dict(plan.taps)
        self._warned: set[str] = set()
        self._schedule = UnitSchedule([])
        self._queues: dict[str, asyncio.Queue[Any]] = {}
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._originals: _OriginalRows | None = None  # per unit, see _keeps_original_rows
        # per unit: (step, output) -> an empty batch, or None once rows went out (see _emit)
        self._empty: dict[tuple[str, str], pa.RecordBatch | None] = {}
        self._sources: dict[str, Any] = {}  # the current unit's source components
        self._kept: dict[str, Any] = {}  # sources that live across units (checkpoints)
        self._checkpoint = False  # the current unit is a checkpoint
        self._draining = False
        self.dead_letters: DeadLetterQueue | None = None
        if plan.dlq is not None and plan.dlq_path is not None and dry_run is None:
            # loaded only for a run with a queue (see quiver.pipeline.dead_letter_config)
            from quiver.pipeline.dead_letters import DeadLetterQueue

            self.dead_letters = DeadLetterQueue.of(
                plan.dlq, plan.dlq_path, plan.name, self._log_dead_letters
            )
        # per unit: the rows handed to each sink covered by the queue, the final failure the
        # delivery runtime reported for a step, and the sinks that gave up
        self._staged: dict[str, StagedRows] = {}
        self._final: dict[str, DeadLetter] = {}
        self._gave_up: dict[str, BaseException] = {}
        self._running = False
        self.metrics = EngineMetrics(
            plan.name,
            self.result.steps,
            self._breakers,
            self._queued,
            lambda: (self.ready, self._draining),
        )

    # ------------------------------------------------------------------ public

    @property
    def ready(self) -> bool:
        """Whether the run takes input: it runs, no stop drains it, and every source that
        listens (:class:`~quiver.pipeline.component.Listening`) listens. Safe to read from
        another thread (the monitoring endpoint's)."""
        if not self._running or self._draining:
            return False
        sources = dict(self._sources)
        for step in self.plan.sources:
            component = sources.get(step.name)
            if component is None:
                return False
            if step.listens and not cast(Listening, component).listening:
                return False
        return True

    def _queued(self) -> dict[str, int]:
        return {name: q.qsize() for name, q in list(self._queues.items())}

    @property
    def drains(self) -> bool:
        """Whether a stop signal can end this run gracefully: every source declares
        :class:`~quiver.pipeline.component.Draining` (brokers, sockets) and this is no dry run."""
        sources = self.plan.sources
        return bool(sources) and self.dry_run is None and all(s.drains for s in sources)

    def drain(self) -> None:
        """End the run as if its input had ended: each source stops taking input and hands on
        what it holds; then the sinks commit and the sources acknowledge. Call on the loop."""
        if not self._draining:
            self._draining = True
            self.log.event("run_draining", "stop requested: draining the sources", level="info")
        for name, component in self._sources.items():
            if self.plan.steps[name].drains:
                cast(Draining, component).drain()

    async def run(self) -> RunResult:
        """Run to the end. Raises RunFailedError / QuiverError on failure (sinks aborted)."""
        result = self.result
        plan = self.plan
        start = time.perf_counter()
        result.started_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        self.log.event(
            "run_started",
            f"run {self.run_id}: {plan.name} ({plural(len(plan.steps), 'step')})",
            file=plan.file,
            dry_run=self.dry_run,
        )
        for w in plan.warnings:
            self.log.event("warning", w, level="warning")
        retention: asyncio.Task[None] | None = None
        withdraws = [expose(lambda: self.metrics.registry)]
        self._running = True
        try:
            if self.dead_letters is not None:
                await asyncio.to_thread(self.dead_letters.create)
                withdraws.append(expose(self.dead_letters.metrics.registry))
                retention = asyncio.create_task(self._retention(), name="dlq-retention")
            checkpointer = self._checkpointer()
            if checkpointer is not None:
                await self._run_checkpoints(checkpointer)
            else:
                await self._run_units()
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
                f"{type(exc).__name__}: {exc}", plan.file, "run with --debug for details"
            )
            result.error = err
            self.rejects.abort()
            self.log.event("run_failed", f"run failed: {err}", level="error")
            raise err from exc
        finally:
            if retention is not None:
                retention.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retention
            self._running = False
            for withdraw in withdraws:
                withdraw()
            result.seconds = time.perf_counter() - start
            result.finished_at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
            # every row a step rejected, the one failing a fail_fast run included, so the
            # summary line agrees with the table of steps
            result.rejected = sum(s.rejected for s in result.steps.values())
        return self._finished(result)

    async def _run_units(self) -> None:
        """The units of a run: the whole input, or one input file after the other."""
        plan, result = self.plan, self.result
        self._schedule = schedule_units(plan, resume=self.resume, dry_run=self.dry_run is not None)
        if self._schedule.skipped:
            result.files_skipped.extend(self._schedule.skipped)
            self.log.event(
                "resume",
                f"resuming: {len(self._schedule.skipped)} input file(s) already done, "
                f"{len(self._schedule.units)} to go",
                skipped=len(self._schedule.skipped),
            )
        for unit in self._schedule.units:
            await self._run_unit(unit)

    def _checkpointer(self) -> Checkpointing | None:
        """The run's one source when it commits in checkpoints (kept across units), else None."""
        sources = self.plan.sources
        if self.dry_run is not None or len(sources) != 1 or not sources[0].checkpoints:
            return None
        step = sources[0]
        source = cast(Checkpointing, step.cls(step.config))
        if not source.checkpoints():
            return None
        self._kept[step.name] = source
        return source

    async def _run_checkpoints(self, source: Checkpointing) -> None:
        """One unit per checkpoint of ``source``, until its input ends or it is drained."""
        for s in self.plan.sinks:
            if (
                s.writes_files
                and s.path_option
                and STEM not in str(s.path_option)
                and not (isinstance(s.config, FileSinkConfig) and s.config.writes_directory)
            ):
                raise ConfigError.one(
                    f"sink '{s.name}' writes one file, but the source commits in checkpoints: "
                    "each checkpoint would replace the previous one's output",
                    s.where,
                    "put {stem} in the sink path, e.g. out/{stem}.parquet (one file per "
                    "checkpoint), give a parquet sink a directory (out/, partition_by), or "
                    "leave out commit_every / commit_seconds",
                )
        number = 0
        while True:
            number += 1
            stem = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{number:06d}"
            await self._run_unit(RunUnit(stem=stem, checkpoint=True))
            self.log.event("checkpoint", f"checkpoint {stem} committed", checkpoint=stem)
            if not source.more():
                return

    def _log_dead_letters(self, message: str, level: str) -> None:
        self.log.event("dlq", message, level=level)

    async def _retention(self) -> None:
        """Apply the queue's retention while the run goes on (entries age without new ones)."""
        queue = self.dead_letters
        assert queue is not None
        period = min(60.0, max(1.0, queue.max_age / 10))
        while True:
            await asyncio.sleep(period)
            with contextlib.suppress(QuiverError):
                await asyncio.to_thread(queue.enforce)

    def _finished(self, result: RunResult) -> RunResult:
        self.log.event(
            "run_finished",
            f"run {self.run_id} finished: {plural(result.rows_read, 'row')} read, "
            f"{result.rows_written} written, {result.rejected} rejected"
            + (
                f", {plural(dead, 'row')} dead-lettered"
                if (dead := sum(s.dead_lettered for s in result.steps.values()))
                else ""
            )
            + f" in {result.seconds:.2f}s",
            rows_read=result.rows_read,
            rows_written=result.rows_written,
            rejected=result.rejected,
            seconds=round(result.seconds, 3),
        )
        return result

    # ------------------------------------------------------------------ one unit

    def _keeps_original_rows(self) -> bool:
        """Whether rows rejected after the first step need the source's rows kept aside."""
        plan = self.plan
        if self.dry_run is not None or self.rejects.path is None or len(plan.sources) != 1:
            return False
        return any(not s.fed_by_sources for s in plan.steps.values() if s.kind == "processor")

    def _instantiate(self, step: PlanStep, unit: RunUnit) -> Any:
        if step.name in self._kept:
            return self._kept[step.name]
        if step.kind == "sink" and self.dry_run is not None:
            return _CollectSink()
        return step.cls(unit.config_of(step))

    async def _run_unit(self, unit: RunUnit) -> None:
        plan = self.plan
        self.rejects = RejectsWriter(unit.rejects_path(self._rejects_path), self.run_id)
        if unit.file is not None:
            self.log.event("input_started", f"reading {unit.file}", input=unit.file)
        comps = {name: self._instantiate(step, unit) for name, step in plan.steps.items()}
        self._sources = {s.name: comps[s.name] for s in plan.sources}
        self._checkpoint = unit.checkpoint
        self.ctx.stem = unit.stem
        if self._draining:  # a stop came between two units
            self.drain()
        self._queues = {
            name: asyncio.Queue(maxsize=plan.queue_batches * max(1, step.inputs))
            for name, step in plan.steps.items()
            if step.kind != "source"
        }
        self._inflight = {}
        self._empty = {}
        self._originals = _OriginalRows() if self._keeps_original_rows() else None
        opened: dict[str, Sink] = {}
        self._final, self._gave_up, self._staged = {}, {}, {}
        if self.dead_letters is not None:
            for s in plan.sinks:
                if plan.dead_letters_of(s.name):
                    self._staged[s.name] = self.dead_letters.stage(s.name, self.run_id)
        rows_before = self.result.rows_read
        sink_rows_before = {s.name: self.result.steps[s.name].rows_in for s in plan.sinks}
        tasks: dict[asyncio.Task[None], str] = {}
        settled = False  # committed: a kept source stays open for the next unit
        for name, step in plan.steps.items():
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
                        name = tasks[t]
                        raise _step_error(
                            plan.steps[name], t.exception(), unit.path_of(plan.steps[name])
                        )
            self._check_reject_ratio()
            for name in plan.steps:
                if name in opened:
                    try:
                        await self._delivery(name).call(
                            opened[name].commit, name=f"commit '{name}'"
                        )
                    except Exception as exc:
                        if await self._give_up(name, opened, exc):
                            continue
                        if isinstance(exc, OSError):
                            raise _step_error(
                                plan.steps[name], exc, unit.path_of(plan.steps[name])
                            ) from exc
                        raise
                    stats = self.result.steps[name]
                    stats.rows_written += stats.rows_in - sink_rows_before[name]
                    self.log.event("sink_committed", f"sink '{name}' committed", step=name)
            await self._keep_dead_letters()  # durable before any source acknowledges
            for step in plan.sources:  # e.g. acknowledge queue messages
                if step.acknowledges:
                    source = cast(Acknowledging, comps[step.name])
                    # a dry run takes nothing: what it read is handed back
                    await (source.commit() if self.dry_run is None else source.abort())
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
            else:
                for step in plan.sinks:
                    output = unit.output_path(step)
                    if output is not None:
                        self.result.outputs.append(output)
            self._rejected_before += self.rejects.count
            self.rejects = RejectsWriter(None, self.run_id)
            settled = True
            self.metrics.units += 1
            if unit.file is not None:
                self.result.files_processed.append(unit.file)
                self._schedule.finish(
                    unit, self.result.rows_read - rows_before, record=self.dry_run is None
                )
        except BaseException as exc:
            # a stop signal leaves a second for everything; a failure may wait for a write
            wait = _STOP_WAIT_SECONDS if isinstance(exc, asyncio.CancelledError) else None
            with contextlib.suppress(Exception):
                self.rejects.abort()  # first: it takes no time, whatever the steps still do
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            inflight = [c for c in self._inflight.values() if not c.done()]
            if inflight:
                await asyncio.wait(inflight, timeout=wait or _ABORT_WAIT_SECONDS)
            for step in plan.sources:  # e.g. requeue messages
                if step.acknowledges:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(cast(Acknowledging, comps[step.name]).abort())
            for name, sink in opened.items():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(sink.abort()), wait)
                self.log.event("sink_aborted", f"sink '{name}' aborted", step=name, level="debug")
            raise
        finally:
            for staged in self._staged.values():  # a failed unit: its sources hand them back
                with contextlib.suppress(Exception):
                    staged.discard()
            self._staged = {}
            if self._originals is not None:
                self._originals.close()
                self._originals = None
            for name, step in plan.steps.items():
                if settled and name in self._kept and cast(Checkpointing, comps[name]).more():
                    continue  # reads the next checkpoint
                if step.closes and not isinstance(comps[name], _CollectSink):
                    with contextlib.suppress(Exception):
                        res = cast(Closing, comps[name]).close()
                        if res is not None:
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

        hook: DeadLetterHook | None = None
        if step in self._staged:

            async def hook(letter: DeadLetter) -> None:
                self._final[step] = letter

        return Delivery(
            self.plan.retry,
            breaker=self._breakers.get(step),
            dead_letter=hook,
            on_retry=on_retry,
        )

    async def _give_up(self, name: str, opened: dict[str, Sink], exc: BaseException) -> bool:
        """Whether sink ``name``, which failed for good with ``exc``, hands its rows to the
        dead-letter queue: then it is aborted and the rest of the unit's rows go to the queue
        too; otherwise (no queue for it, or no final failure) the caller fails the run."""
        if name not in self._staged or name not in self._final:
            return False
        self._gave_up[name] = exc
        sink = opened.pop(name, None)
        if sink is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(sink.abort())
        self.log.event(
            "sink_gave_up",
            f"sink '{name}' failed for good: {exc}; its rows since the last commit go to the "
            "dead-letter queue",
            level="warning",
            step=name,
        )
        return True

    async def _keep_dead_letters(self) -> None:
        """Seal the rows of every sink that gave up into an entry of the queue (``fsync``'d);
        forget those of the sinks that committed."""
        queue = self.dead_letters
        staged_rows, self._staged = self._staged, {}
        try:
            for name, staged in list(staged_rows.items()):
                exc = self._gave_up.get(name)
                if exc is None or queue is None:
                    staged.discard()
                    del staged_rows[name]
                    continue
                if not staged.rows:
                    staged.discard()
                    del staged_rows[name]
                    self.log.event(
                        "dlq",
                        f"sink '{name}' failed for good with no rows to keep: {exc}",
                        level="warning",
                        step=name,
                    )
                    continue
                from quiver.pipeline.dead_letters import Failure  # loaded with the queue

                letter = self._final.get(name)
                now = time.time()
                failure = Failure.of(letter) if letter else Failure.from_error(exc, 1, now, now)
                step = self.plan.steps[name]
                entry = await asyncio.to_thread(
                    queue.add, staged, failure, step.component, self.run_id
                )
                del staged_rows[name]
                self.result.steps[name].dead_lettered += entry.rows
                self.result.dead_letters.append(entry.id)
        finally:
            for staged in staged_rows.values():
                with contextlib.suppress(Exception):
                    staged.discard()

    async def _source_task(self, step: PlanStep, src: Source) -> None:
        stats = self.result.steps[step.name]
        delivery = self._delivery(step.name)
        gen: AsyncIterator[pa.RecordBatch] | None = None
        limit = self.dry_run
        rejecting = cast(RowRejecting, src) if step.rejects_rows else None
        counting = cast(ByteCounting, src) if step.counts_bytes else None

        async def first() -> pa.RecordBatch | None:
            nonlocal gen
            gen = src.batches(self.ctx)
            try:
                return await anext(gen)
            except StopAsyncIteration:
                return None

        def take_source_errors() -> None:  # rows a file source could not read
            errors = rejecting.take_errors() if rejecting is not None else []
            if errors:
                self._reject(step, errors, None)

        try:
            batch = await delivery.call(first, name=f"read '{step.name}'")
            while batch is not None:
                _check_line_column(batch.schema, step)
                take_source_errors()
                if limit is not None:
                    batch = batch.slice(0, max(0, limit - stats.rows_out))
                if batch.num_rows:
                    stats.rows_out += batch.num_rows
                    stats.batches_out += 1
                    if self._originals is not None:
                        self._originals.add(batch)
                    self._report_progress(counting)
                await self._emit(step, DEFAULT_OUTPUT, batch)
                if limit is not None and stats.rows_out >= limit:
                    break
                assert gen is not None
                try:
                    batch = await anext(gen)
                except StopAsyncIteration:
                    batch = None
            take_source_errors()
        finally:
            if isinstance(gen, AsyncGenerator):
                with contextlib.suppress(Exception):
                    await gen.aclose()
        await self._finish(step)

    def _report_progress(self, src: ByteCounting | None) -> None:
        if self.progress is None:
            return
        done = self._schedule.bytes_done + src.bytes_read if src is not None else 0
        self.progress(self.result.rows_read, done, self._schedule.bytes_total)

    async def _inputs(self, step: PlanStep) -> AsyncIterator[pa.RecordBatch]:
        queue = self._queues[step.name]
        remaining = step.inputs
        while remaining:
            item = await queue.get()
            if item is _END:
                remaining -= 1
                continue
            yield item

    async def _processor_task(self, step: PlanStep, proc: Processor) -> None:
        if step.starts:
            await cast(Starting, proc).start(self.ctx)
        stats = self.result.steps[step.name]
        delivery = self._delivery(step.name)
        concurrent = step.concurrent and self.workers > 1
        inflight: deque[tuple[pa.RecordBatch, asyncio.Task[ProcessorOutput]]] = deque()

        async def call(batch: pa.RecordBatch) -> ProcessorOutput:
            async def once() -> ProcessorOutput:
                return await proc.process(batch, self.ctx)

            t0 = time.perf_counter()
            try:
                return await delivery.call(once, name=f"step '{step.name}'")
            finally:
                stats.busy_seconds += time.perf_counter() - t0

        try:
            async for batch in self._inputs(step):
                if not batch.num_rows:
                    await self._pass_columns(step, proc, batch)
                    continue
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
        if step.flushes:
            async for out in cast(Flushing, proc).flush(self.ctx):
                await self._handle_output(step, out, None)
        await self._finish(step)

    async def _pass_columns(self, step: PlanStep, proc: Processor, empty: pa.RecordBatch) -> None:
        """Let a step say which columns it would give for no rows (see _emit). A step that
        cannot (a script that needs rows) passes nothing on, and its sinks write an empty
        output without columns: a question about columns never fails a run."""
        try:
            out = await proc.process(empty, self.ctx)
        except Exception:
            return
        if out.batch is not None:
            await self._emit(step, DEFAULT_OUTPUT, out.batch.slice(0, 0))
        for route, batches in out.routes.items():
            for b in batches:
                await self._emit(step, route, b.slice(0, 0))

    async def _handle_output(
        self, step: PlanStep, out: ProcessorOutput, source: pa.RecordBatch | None
    ) -> None:
        stats = self.result.steps[step.name]
        if out.errors:
            self._reject(step, out.errors, source)
        if out.batch is not None:
            if out.batch.num_rows:
                stats.rows_out += out.batch.num_rows
                stats.batches_out += 1
            await self._emit(step, DEFAULT_OUTPUT, out.batch)
        for route, batches in out.routes.items():
            for b in batches:
                if b.num_rows:
                    stats.routes[route] = stats.routes.get(route, 0) + b.num_rows
                await self._emit(step, route, b)

    def _reject(
        self, step: PlanStep, errors: list[RowError], source: pa.RecordBatch | None
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
                e.kind,
            )
            for e in errors
        ]
        stats.rejected += len(fixed)
        script_errors = [e for e in fixed if e.kind == "script"]
        stats.script_errors += len(script_errors)
        if script_errors and stats.first_script_error is None:
            stats.first_script_error = _describe_row_error(script_errors[0])
        on_error = self.plan.on_error
        if on_error.policy == "fail_fast" and self.dry_run is None:
            first = fixed[0]
            raise RunFailedError(
                [
                    ErrorDetail(
                        _describe_row_error(first),
                        f"step '{first.step}'",
                        (
                            "fix the script: it failed on this row (a script that fails on "
                            "every row rejects them all)"
                            if first.kind == "script"
                            else "fix the input row"
                        )
                        + ", or set `on_error: {policy: reject, rejects: rejects.csv}` to set "
                        "bad rows aside and go on",
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
                        f"{self._fix_rejects()}, or raise on_error.max_rejects (--max-rejects)",
                    )
                ],
                code="TOO_MANY_ERRORS",
            )

    def _fix_rejects(self) -> str:
        """What to fix for the rows rejected so far: the script when a script failed on most
        of them (its errors are not the data's), else the input."""
        steps = self.result.steps.values()
        rejected = sum(s.rejected for s in steps)
        failing = [s for s in steps if s.script_errors]
        if failing and sum(s.script_errors for s in failing) * 2 >= rejected:
            worst = max(failing, key=lambda s: s.script_errors)
            return (
                f"fix the script of step '{worst.name}' (it failed on {worst.script_errors:,} "
                f"rows; first: {worst.first_script_error})"
            )
        return "fix the input"

    def _check_reject_ratio(self) -> None:
        """Fail before anything is committed when more than ``max_reject_ratio`` of the rows
        read so far (rows a source could not read included) were rejected."""
        ratio = self.plan.on_error.max_reject_ratio
        if ratio is None or self.dry_run is not None:
            return
        rejected = self._rejected_before + self.rejects.count
        unreadable = sum(s.rejected for s in self.result.steps.values() if s.kind == "source")
        seen = self.result.rows_read + unreadable
        if not seen or rejected / seen <= ratio:
            return
        raise RunFailedError(
            [
                ErrorDetail(
                    f"{rejected:,} of {seen:,} rows rejected ({rejected / seen:.1%}), more than "
                    f"the {ratio:.1%} on_error.max_reject_ratio allows; nothing was written",
                    self.plan.file,
                    f"{self._fix_rejects()} (run with --dry-run to see rejected rows and their "
                    "reasons), or raise on_error.max_reject_ratio (--max-reject-ratio)",
                )
            ],
            code="TOO_MANY_ERRORS",
        )

    def _original_rows(
        self, step: PlanStep, errors: list[RowError], source: pa.RecordBatch | None
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
        if self._originals is not None and not step.fed_by_sources:
            found = self._originals.rows(lines)
            lines -= found.keys()
        else:
            found = {}
        if lines and source is not None and LINE_COLUMN in source.schema.names:
            keep = {e.line for e in errors if e.line in lines and e.row is None}
            if step.fed_by_sources:
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

    async def _sink_task(self, step: PlanStep, sink: Sink, opened: dict[str, Sink]) -> None:
        # The sink receives the line column (to name input lines in its errors) and is opened
        # with the schema without it: what it writes.
        stats = self.result.steps[step.name]
        delivery = self._delivery(step.name)
        staged = self._staged.get(step.name)  # kept for the dead-letter queue until commit
        schema: pa.Schema | None = None
        columns: pa.Schema = pa.schema([])  # of an empty output (see _emit)
        async for batch in self._inputs(step):
            if not batch.num_rows:
                columns = schema_without_line(batch.schema) if schema is None else columns
                continue
            self._tap(step.name, DEFAULT_OUTPUT, batch)
            if schema is None:
                schema = batch.schema
                _refuse_repeated_names(step.name, schema)
                _refuse_rows_without_columns(step.name, schema)
                opened[step.name] = sink
                try:
                    await self._sink_call(
                        step.name,
                        delivery,
                        _bind(sink.open, schema_without_line(schema), self.ctx),
                        f"open '{step.name}'",
                    )
                except Exception as exc:
                    if not await self._give_up(step.name, opened, exc):
                        raise
            else:
                batch = conform(
                    _internal_as(batch, schema),
                    schema,
                    where=f"sink '{step.name}'",
                    origin="the first batch",
                    fix_columns="make the steps before this sink produce the same columns "
                    "for every batch",
                    fix_types="add a `cast` step before the sink to fix the column types",
                )
            if staged is not None:
                await asyncio.to_thread(staged.add, without_line(batch))
                if step.name in self._gave_up:
                    continue  # the sink failed for good: the rest goes to the queue
            t0 = time.perf_counter()
            try:
                await self._sink_call(
                    step.name, delivery, _bind(sink.write, batch), f"write '{step.name}'", batch
                )
            except Exception as exc:
                if not await self._give_up(step.name, opened, exc):
                    raise
                continue
            took = time.perf_counter() - t0
            stats.busy_seconds += took
            self.metrics.observe_write(step.name, took)
            stats.rows_in += batch.num_rows
            stats.batches_in += 1
        if schema is None and not self._checkpoint:  # a checkpoint with no rows writes nothing
            _refuse_repeated_names(step.name, columns)
            opened[step.name] = sink
            try:
                await self._sink_call(
                    step.name,
                    delivery,
                    _bind(sink.open, columns, self.ctx),
                    f"open '{step.name}'",
                )
            except Exception as exc:
                if not await self._give_up(step.name, opened, exc):
                    raise

    # ------------------------------------------------------------------ plumbing

    async def _emit(self, step: PlanStep, output: str, batch: pa.RecordBatch) -> None:
        # An empty batch is held back: if the output sends no rows at all, the last one goes
        # on at the end (_finish), so the sinks still learn the columns (a header-only CSV
        # file, a step that rejected every row) and write an empty output that has them.
        held = (step.name, output)
        if not batch.num_rows:
            rows_went_out = held in self._empty and self._empty[held] is None
            if not rows_went_out:
                self._empty[held] = batch
            return
        self._empty[held] = None
        self._tap(step.name, output, batch)
        targets = step.targets.get(output)
        if not targets:
            stats = self.result.steps[step.name]
            stats.unconnected_rows += batch.num_rows
            key = f"{step.name}.{output}"
            if key not in self._warned:
                self._warned.add(key)
                label = step.name if output == DEFAULT_OUTPUT else key
                message = f"output '{label}' is not connected; its rows are dropped"
                self.result.warnings.append(message)
                self.log.event("unconnected_output", message, level="warning", step=step.name)
            return
        for target in targets:
            await self._queues[target].put(batch)

    async def _finish(self, step: PlanStep) -> None:
        for output, targets in step.targets.items():
            empty = self._empty.pop((step.name, output), None)
            if empty is not None:  # the output sent no rows: its columns go on
                for target in targets:
                    await self._queues[target].put(empty)
        for targets in step.targets.values():
            for target in targets:
                await self._queues[target].put(_END)

    def _tap(self, step: str, output: str, batch: pa.RecordBatch) -> None:
        key = step if output == DEFAULT_OUTPUT else f"{step}.{output}"
        left = self._tap_left.get(key, 0)
        if left <= 0:
            return
        rows = without_line(batch.slice(0, left)).to_pylist()
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


def _refuse_repeated_names(sink: str, schema: pa.Schema) -> None:
    """Refuse columns that share a name before ``sink`` writes them: a CSV header or a JSON
    object naming one twice, which no reader (Quiver's own sources included) can tell apart.
    They come from a source that allows them (a Parquet or Arrow file, a database query) or a
    step that makes them; no check is made per batch, only when the sink opens."""
    names = [n for n in schema.names if not is_internal(n)]
    if len(set(names)) == len(names):
        return
    twice = sorted({n for n in names if names.count(n) > 1})
    raise PermanentError.one(
        f"the columns reaching it ({', '.join(names)}) name {', '.join(map(repr, twice))} "
        "more than once, which no reader of its output could tell apart",
        f"sink '{sink}'",
        "rename the columns apart before the sink (a `sql` step: select a, b.a as b_a ...), "
        "or read only one of them (`columns:` of a parquet or arrow source)",
    )


def _refuse_rows_without_columns(sink: str, schema: pa.Schema) -> None:
    """Refuse rows that reach ``sink`` without a column (a script answering ``{}`` for each
    row): a CSV file of empty lines or a Parquet file of no rows would lose them unsaid."""
    if any(not is_internal(n) for n in schema.names):
        return
    raise PermanentError.one(
        "the rows reaching it have no columns, so it cannot write them",
        f"sink '{sink}'",
        "make the steps before this sink give each row at least one field (a script that "
        "returns {} or an object without fields drops them all)",
    )


def _step_error(
    plan_step: PlanStep, exc: BaseException | None, path: str | None = None
) -> BaseException:
    """The error of a failed step as the run reports it: a file system error says what went
    wrong with which file (``path``: the file the step reads or writes); an error naming one
    of the step's options says where that option is in the pipeline file."""
    step = plan_step.name
    if isinstance(exc, OSError) and exc.errno is not None:
        named = exc.filename if exc.filename is not None and exc.errno != errno.ENOSPC else None
        err = file_error(exc, str(named) if named is not None else path, f"step '{step}'")
        err.__cause__ = exc
        return err
    if isinstance(exc, QuiverError):
        if not any(d.where for d in exc.details):
            exc.details = [ErrorDetail(d.message, f"step '{step}'", d.fix) for d in exc.details]
        else:
            exc.details = [
                ErrorDetail(d.message, plan_step.option_where(d.where), d.fix) for d in exc.details
            ]
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
