"""The ``js`` processor: JavaScript transforms in V8, one batch per call, on every core.

Two script styles run unchanged:

* FlowEngine's ``function process(context)`` returning ``true`` (keep) or ``false`` (skip),
  with ``context.input / validate / output / route / utils``;
* the short form ``function transform(row, ctx)`` returning a row, ``null`` (drop) or an
  array of rows.

A batch is cut into one slice per isolate, the slices run side by side and come back in input
order. The isolates live in the pipeline's own process, one thread each (``isolation:
thread``, the default: V8 runs outside Python's lock, so they use every core), or in worker
processes of their own (``isolation: process``). See docs/pipelines/javascript.md.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import queue
import re
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa
from pydantic import Field, model_validator

from quiver.pipeline.component import (
    LINE_COLUMN,
    Checking,
    Closing,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RowError,
    RunContext,
    Starting,
    kept_text_column,
    processor,
    without_kept_text,
)
from quiver.pipeline.conform import conform
from quiver.pipeline.js_runtime.codec import FIELD_TYPES, DecodedBatch
from quiver.pipeline.js_runtime.isolate import (
    Isolate,
    IsolateOptions,
    ScriptAbortError,
    ScriptLoadError,
)
from quiver.pipeline.js_runtime.pool import WorkerPool
from quiver.pipeline.js_runtime.v8 import V8StartError, as_batch_work
from quiver.pipeline.json_text import strict_json
from quiver.pipeline.processors.script_output import OutputFieldConfig, OutputSchemaOption
from quiver.pipeline.script_text import checked_text, read_text_file
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError
from quiver.runtime.hints import did_you_mean

__all__ = ["JsFieldConfig", "JsLookupConfig", "JsProcessor", "JsProcessorConfig"]

_CANONICAL_TYPES = sorted(set(FIELD_TYPES.values()))
_WHERE = re.compile(r"^(.*):(\d+):(\d+)$")


#: The config of one declared output field (shared with the ``python`` step).
JsFieldConfig = OutputFieldConfig


class JsLookupConfig(ComponentConfig):
    """A lookup table scripts read as ``ctx.lookups.<name>[key]`` (or ``context.lookups``)."""

    path: str | None = Field(
        default=None,
        description="CSV, TSV, JSON, JSONL or Parquet file, relative to the pipeline file.",
    )
    key: str | None = Field(
        default=None, description="Column whose value (as text) indexes the rows of `path`."
    )
    values: dict[str, Any] | None = Field(
        default=None, description="Inline table: `{key: value}` (instead of `path`)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> JsLookupConfig:
        if (self.path is None) == (self.values is None):
            raise ValueError("give either `path` (with `key`) or `values`")
        return self


class JsProcessorConfig(OutputSchemaOption):
    """Options of the ``js`` processor."""

    file: str | None = Field(
        default=None, description="JavaScript file, relative to the pipeline file."
    )
    script: str | None = Field(default=None, description="Inline JavaScript (instead of `file`).")
    script_name: str | None = Field(
        default=None,
        description="Name of an inline script in error messages (default `inline.js`); with "
        "`script_line` it can be the pipeline file, so errors point into it.",
    )
    script_line: int = Field(
        default=1, ge=1, description="Line of that file where the inline script starts."
    )
    script_indent: int = Field(
        default=0, ge=0, description="Columns the inline script is indented by in that file."
    )
    style: Literal["auto", "process", "transform"] = Field(
        default="auto",
        description="`process`: FlowEngine's `process(context)`; `transform`: "
        "`transform(row, ctx)`; `auto`: whichever the script defines.",
    )
    routes: list[str] | None = Field(
        default=None,
        description="Named outputs the script may send rows to; sending to another name is "
        "a row error. Without it any name is accepted.",
    )
    lookups: dict[str, JsLookupConfig] = Field(
        default_factory=dict, description="Lookup tables handed to the script."
    )
    timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Time limit for one batch slice; an endless loop is stopped.",
    )
    heap_limit_mb: int = Field(
        default=512,
        ge=16,
        description="V8 heap limit of each isolate, in MiB (ArrayBuffers and typed arrays "
        "live outside the heap and are not bounded by it).",
    )
    workers: int | None = Field(
        default=None,
        ge=0,
        description="V8 isolates that run slices of each batch side by side; null: one per "
        "CPU core; 0: one isolate in the pipeline's own process, whatever `isolation` says.",
    )
    isolation: Literal["thread", "process"] = Field(
        default="thread",
        description="thread: the isolates run in the pipeline's own process, one thread each "
        "(V8 runs outside Python's lock, so they use every core; no start-up or copying); "
        "process: each isolate runs in a worker process of its own, so even a crash inside "
        "V8 cannot stop the run (the worker is replaced), at the cost of starting the "
        "processes and copying every batch to them and back.",
    )
    min_rows_per_worker: int = Field(
        default=4096, ge=1, description="Batches smaller than this go to a single worker."
    )
    max_logs_per_batch: int = Field(
        default=100, ge=0, description="Log lines kept per batch slice; the rest are counted."
    )

    @model_validator(mode="after")
    def _one_script(self) -> JsProcessorConfig:
        if (self.file is None) == (self.script is None):
            raise ValueError("give either `file` (a .js file) or `script` (inline JavaScript)")
        return self


def _load_lookup(name: str, cfg: JsLookupConfig, base_dir: str) -> Any:
    if cfg.values is not None:
        return orjson.loads(orjson.dumps(cfg.values, default=str))
    assert cfg.path is not None
    path = Path(cfg.path)
    if not path.is_absolute():
        path = Path(base_dir) / path
    where = f"lookups.{name}.path"
    if not path.exists():
        raise ConfigError.one(f"lookup file not found: {path}", where, "check the path")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = strict_json(path.read_bytes())
        except ValueError as exc:  # not UTF-8 or not JSON (NaN included)
            raise ConfigError.one(
                f"lookup file {path} is not JSON: {exc}", where, "fix the file"
            ) from None
        if isinstance(data, dict):
            return data
        rows = data
    else:
        if suffix in (".csv", ".tsv", ".txt"):
            import pyarrow.csv as pacsv

            from quiver.pipeline.sources.csv import misquoted_body

            delimiter = "\t" if suffix == ".tsv" else ","
            misquoted = misquoted_body(Path(path).read_bytes(), delimiter)
            if misquoted is not None:
                raise ConfigError.one(f"lookup file {path}: {misquoted}", where, "fix the file")
            table = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
        elif suffix in (".jsonl", ".ndjson"):
            import pyarrow.json as pajson

            table = pajson.read_json(path)
        elif suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            raise ConfigError.one(
                f"unsupported lookup file type '{suffix}'",
                where,
                "use a .csv, .tsv, .json, .jsonl or .parquet file",
            )
        rows = table.to_pylist()
    if not cfg.key:
        raise ConfigError.one(
            "a lookup file needs `key`", f"lookups.{name}.key", "name the key column"
        )
    table_out: dict[str, Any] = {}
    for row in rows:
        if not isinstance(row, dict) or cfg.key not in row:
            raise ConfigError.one(
                f"lookup rows have no column '{cfg.key}'",
                f"lookups.{name}.key",
                "name a column of the lookup file",
            )
        table_out[str(row[cfg.key])] = row
    return orjson.loads(orjson.dumps(table_out, default=str))


def _unify(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    """One batch from the in-order slices of one output (schemas may differ when inferred)."""
    if len(batches) == 1:
        return batches[0]
    tables = [pa.Table.from_batches([b]) for b in batches]
    table = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    if table.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    return table.to_batches()[0]


def _reassemble(batch: pa.RecordBatch, results: list[DecodedBatch]) -> pa.RecordBatch | None:
    """The main outputs of the slices of ``batch`` as one batch, without copying the columns
    they pass through unchanged: those are ``batch``'s own. None unless every slice kept its
    rows in order (its output rows are its input rows) with the same columns and types."""
    first = results[0]
    if len(results) < 2 or not first.passthrough or first.batch.num_columns == 0:
        return None
    schema = first.batch.schema
    for r in results[1:]:
        if r.passthrough != first.passthrough or not r.batch.schema.equals(schema):
            return None
    arrays = [
        batch.column(first.passthrough[name])
        if name in first.passthrough
        else pa.concat_arrays([r.batch.column(j) for r in results])
        for j, name in enumerate(schema.names)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _with_kept_text(
    main: pa.RecordBatch, batch: pa.RecordBatch, results: list[DecodedBatch]
) -> pa.RecordBatch:
    """``main`` with the kept text of ``batch``'s decimal columns beside the output columns
    that pass them through untouched by the script (each output row its input row); a value
    the script set is a JavaScript number, written in its shortest exact form."""
    if main.num_rows != batch.num_rows or not all(r.passthrough for r in results):
        return main
    for name in main.schema.names:
        source = results[0].passthrough.get(name)
        if source is not None and all(r.passthrough.get(name) == source for r in results):
            at = batch.schema.get_field_index(kept_text_column(source))
            if at >= 0 and pa.types.is_decimal(main.schema.field(name).type):
                main = main.append_column(kept_text_column(name), batch.column(at))
    return main


def _with_line_last(schema: pa.Schema) -> pa.Schema:
    idx = schema.get_field_index(LINE_COLUMN)
    if idx < 0 or idx == len(schema) - 1:
        return schema
    field = schema.field(idx)
    return schema.remove(idx).append(field)


class _InProcess:
    """One isolate in this process, on a thread of its own.

    A V8 context must be created, used and closed on one thread (closing it from another
    thread crashes the process), so the isolate lives on a daemon thread of its own, which
    stays available to close it even while the interpreter exits.
    """

    def __init__(self, options: IsolateOptions, *, wait: bool = True) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name="quiver-js-v8", daemon=True)
        self._thread.start()
        self._made: Future[Isolate] = Future()
        self._jobs.put((lambda: Isolate(options), self._made))
        self.size = 1
        self._closed = False
        if wait:
            self.ready()

    @property
    def isolate_thread_id(self) -> int | None:
        """The operating system's id of the thread the isolate lives on."""
        return self._thread.native_id

    def ready(self) -> None:
        """Wait until the isolate is made (the script loaded); raise what making it raised."""
        try:
            self.isolate: Isolate = self._made.result()
        except BaseException:
            self._closed = True
            self._jobs.put(None)
            raise
        self.style = self.isolate.style

    def _serve(self) -> None:
        as_batch_work()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def _call(self, fn: Callable[[], Any]) -> Any:
        future: Future[Any] = Future()
        self._jobs.put((fn, future))
        return future.result()

    def run(self, batch: pa.RecordBatch) -> DecodedBatch:
        result: DecodedBatch = self._call(lambda: self.isolate.run(batch))
        return result

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            # Stop a batch still in V8 first: closing must not wait for its time limit.
            self.isolate.cancel()
            self._call(self.isolate.close)
            self._jobs.put(None)
            self._thread.join(timeout=5)


class _IsolateThreads:
    """``isolation: thread``: ``size`` isolates in this process, each on a thread of its own.

    V8 runs a script without holding Python's lock, so the isolates run side by side on every
    core; only encoding a slice for V8 and rebuilding Arrow from its answer take the lock.
    ``run(batch)`` is thread-safe: it takes the next idle isolate.
    """

    def __init__(self, options: IsolateOptions, size: int) -> None:
        self.size = max(1, size)
        self._idle: queue.SimpleQueue[_InProcess] = queue.SimpleQueue()
        self._all: list[_InProcess] = []
        # made side by side, each on its own thread (V8 itself was started before, once)
        made = [_InProcess(options, wait=False) for _ in range(self.size)]
        failure: BaseException | None = None
        for isolate in made:
            try:
                isolate.ready()
            except BaseException as exc:
                failure = failure or exc
            else:
                self._all.append(isolate)
        if failure is not None:
            self.close()
            raise failure
        for isolate in self._all:
            self._idle.put(isolate)
        self.style = self._all[0].style

    def run(self, batch: pa.RecordBatch) -> DecodedBatch:
        isolate = self._idle.get()
        try:
            return isolate.run(batch)
        finally:
            self._idle.put(isolate)

    def close(self) -> None:
        for isolate in self._all:
            isolate.close()


_ABORT_FIXES = {
    "timeout": "look for an endless loop in the script, or raise `timeout_seconds`",
    "memory": "keep less data across rows in the script, or raise `heap_limit_mb`",
    "crash": "check the script for runaway recursion or memory use; rerun with --debug",
    "output": "declare the column in `output_schema` so every value is converted to one type",
    "script": "fix the script",
    "cancelled": "nothing to fix: the run was stopping",
}


@processor(
    "js", config=JsProcessorConfig, summary="JavaScript transform (V8), FlowEngine compatible"
)
class JsProcessor(Concurrent, Starting, Checking, Closing):
    """JavaScript transform (V8), FlowEngine compatible."""

    #: The engine may hand over the next batch before this one is done (``--workers``); the
    #: worker pool keeps every core busy and the engine keeps the output order.

    def __init__(self, cfg: JsProcessorConfig) -> None:
        self.cfg = cfg
        self._runner: WorkerPool | _IsolateThreads | None = None
        self._threads: ThreadPoolExecutor | None = None
        self._start_lock = asyncio.Lock()
        self._schemas: dict[str, pa.Schema] = {}
        self._finalizer: weakref.finalize[Any, Any] | None = None

    # ------------------------------------------------------------------ setup

    @property
    def script_name(self) -> str:
        if self.cfg.file is not None:
            return self.cfg.file
        return (self.cfg.script_name or "inline.js").replace(" ", "_")

    def place(self, where: str) -> str:
        """``name:line:col`` in the script -> the same place in the file holding it."""
        cfg = self.cfg
        if cfg.file is not None or (cfg.script_line == 1 and cfg.script_indent == 0):
            return where
        m = _WHERE.match(where)
        if m is None:
            return where
        line, col = int(m.group(2)), int(m.group(3))
        return f"{m.group(1)}:{line + cfg.script_line - 1}:{col + cfg.script_indent}"

    def options(self, base_dir: str, variables: dict[str, str] | None = None) -> IsolateOptions:
        """The isolate options for this step (reads the script and the lookup tables)."""
        cfg = self.cfg
        if cfg.file is not None:
            path = Path(cfg.file)
            if not path.is_absolute():
                path = Path(base_dir) / path
            try:
                source = read_text_file(path, "script file")
            except FileNotFoundError as exc:
                siblings = (
                    sorted(p.name for p in path.parent.glob("*.js")) if path.parent.is_dir() else []
                )
                hint = did_you_mean(path.name, siblings, fallback="check the path")
                raise ConfigError.one(f"script file not found: {path}", "js.file", hint) from exc
        else:
            assert cfg.script is not None
            source = checked_text(cfg.script, "inline script", "js.script")
        lookups = {name: _load_lookup(name, spec, base_dir) for name, spec in cfg.lookups.items()}
        return IsolateOptions(
            source=source,
            script_name=self.script_name,
            style=cfg.style,
            output_fields=cfg.fields(),
            routes=None if cfg.routes is None else tuple(cfg.routes),
            variables=dict(variables or {}),
            lookups=lookups,
            timeout_seconds=cfg.timeout_seconds,
            heap_limit_mb=cfg.heap_limit_mb,
            max_logs=cfg.max_logs_per_batch,
        )

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        """Problems ``quiver validate`` reports: script file, syntax, top-level code, entry.

        Nothing runs over data; the script's top-level code runs once in a fresh isolate.
        """
        from quiver.pipeline.js_runtime.syntax import check_script

        try:
            options = self.options(ctx.base_dir, ctx.variables)
        except ConfigError as exc:
            return list(exc.details)
        return [ErrorDetail(d.message, self.place(d.where), d.fix) for d in check_script(options)]

    def _start(self, ctx: RunContext) -> WorkerPool | _IsolateThreads:
        options = self.options(ctx.base_dir, ctx.variables)
        workers = self.cfg.workers if self.cfg.workers is not None else (os.cpu_count() or 1)
        try:
            runner: WorkerPool | _IsolateThreads
            if workers == 0 or self.cfg.isolation == "thread":
                runner = _IsolateThreads(options, workers)
            else:
                runner = WorkerPool(options, workers)
                runner.start()
        except ScriptLoadError as exc:
            raise ConfigError.one(
                exc.message,
                self.place(exc.where) or self.script_name,
                "fix the script; `quiver validate` reports this without running",
            ) from exc
        except V8StartError as exc:
            raise ConfigError.one(
                str(exc),
                self.script_name,
                "call quiver.pipeline.js_runtime.v8.start_v8() before other code uses "
                "mini-racer, or run the step with `isolation: process`",
            ) from exc
        self._threads = ThreadPoolExecutor(max_workers=runner.size, thread_name_prefix="quiver-js")
        self._finalizer = weakref.finalize(self, _shutdown, runner, self._threads)
        return runner

    async def start(self, ctx: RunContext) -> None:
        """Start the isolates and load the script (done by the first batch otherwise)."""
        async with self._start_lock:
            if self._runner is None:
                self._runner = await asyncio.to_thread(self._start, ctx)

    async def close(self) -> None:
        """Stop the isolates (and their worker processes)."""
        if self._finalizer is not None:
            await asyncio.to_thread(self._finalizer)
        self._runner = None
        self._threads = None
        self._finalizer = None

    @property
    def style(self) -> str:
        """`process` or `transform` once started, else ''."""
        return "" if self._runner is None else self._runner.style

    # ------------------------------------------------------------------ work

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        if self._runner is None:
            await self.start(ctx)
        runner, threads = self._runner, self._threads
        assert runner is not None and threads is not None
        n = batch.num_rows
        parts = 1 if n == 0 else max(1, min(runner.size, n // self.cfg.min_rows_per_worker))
        step = math.ceil(n / parts) if n else 0
        kept = batch
        batch = without_kept_text(batch)  # the script sees no internal columns
        slices = [batch.slice(i * step, step) for i in range(parts)] if n else [batch]
        loop = asyncio.get_running_loop()
        try:
            results = await asyncio.gather(
                *(loop.run_in_executor(threads, runner.run, s) for s in slices)
            )
        except ScriptAbortError as exc:
            raise PermanentError.one(
                exc.message,
                f"js step ({self.script_name})",
                _ABORT_FIXES.get(exc.kind, "fix the script"),
            ) from exc
        out = self._combine(batch, results, ctx)
        if out.batch is not None and kept is not batch:
            out = dataclasses.replace(out, batch=_with_kept_text(out.batch, kept, results))
        return out

    def _combine(
        self, batch: pa.RecordBatch, results: list[DecodedBatch], ctx: RunContext
    ) -> ProcessorOutput:
        main = self._settle("main output", [r.batch for r in results], _reassemble(batch, results))
        route_names: list[str] = []
        for r in results:
            route_names.extend(n for n in r.routes if n not in route_names)
        routes = {
            name: [
                self._settle(
                    f"route '{name}'", [r.routes[name] for r in results if name in r.routes]
                )
            ]
            for name in route_names
        }
        errors: list[RowError] = []
        for r in results:
            for e in r.errors:
                reason = str(e["message"])
                if e.get("where"):
                    reason += f" (at {self.place(str(e['where']))})"
                errors.append(
                    RowError(
                        line=e.get("line"),
                        reason=reason,
                        column=e.get("field"),
                        value=e.get("value"),
                        row=e.get("row") if isinstance(e.get("row"), dict) else None,
                        kind="script" if e.get("kind") == "script" else "data",
                    )
                )
            for level, message in r.logs:
                ctx.log(message, level)
        metadata: dict[str, str] = {}
        for r in results:
            metadata.update(r.metadata)
        if metadata and main.num_columns:
            merged = dict(main.schema.metadata or {})
            merged.update({k.encode(): v.encode() for k, v in metadata.items()})
            main = main.replace_schema_metadata(merged)
        out_batch: pa.RecordBatch | None = main
        if main.num_columns == 0:
            out_batch = None
        return ProcessorOutput(out_batch, routes, errors)

    def _settle(
        self, what: str, parts: list[pa.RecordBatch], merged: pa.RecordBatch | None = None
    ) -> pa.RecordBatch:
        """One batch for ``what``, with the schema the first batches established; ``merged``:
        the parts already put together."""
        nonempty = [p for p in parts if p.num_columns > 0]
        known = self._schemas.get(what)
        if not nonempty:
            if known is not None:
                return pa.RecordBatch.from_pylist([], schema=known)
            return parts[0]
        if merged is None:
            merged = _unify(nonempty)
        if known is None:
            if merged.num_rows == 0 and self.cfg.output_schema is None:
                return merged
            schema = _with_line_last(merged.schema.remove_metadata())
            for i, f in enumerate(schema):
                if pa.types.is_null(f.type):
                    schema = schema.set(i, f.with_type(pa.string()))
            self._schemas[what] = schema
            known = schema
        return conform(
            merged,
            known,
            where="",
            origin=f"earlier batches of {what}",
            missing="null",
            fix_columns="declare every output column in `output_schema` so all batches share "
            "one schema",
            fix_types="declare the column's type in `output_schema`",
        )


def _shutdown(runner: WorkerPool | _IsolateThreads, threads: ThreadPoolExecutor) -> None:
    threads.shutdown(wait=False, cancel_futures=True)
    runner.close()
