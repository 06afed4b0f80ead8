"""One V8 isolate (through mini-racer) loaded with the prelude and one user script.

An :class:`Isolate` runs whole batches: ``run(batch)`` encodes the batch once, calls the
driver loop inside V8 once, and rebuilds Arrow from its answer. A batch that runs past the
time limit or the heap limit raises :class:`ScriptAbortError` and the isolate is rebuilt, so the
next batch starts clean.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from quiver.pipeline.js_runtime.codec import (
    LINE_COLUMN,
    DecodedBatch,
    OutputField,
    OutputTypeError,
    decode_output,
    encode_input,
)
from quiver.pipeline.js_runtime.reads import transform_reads
from quiver.pipeline.js_runtime.v8 import isolate_creation, start_v8
from quiver.pipeline.json_text import MAX_JSON_DEPTH

__all__ = [
    "Isolate",
    "IsolateOptions",
    "ScriptAbortError",
    "ScriptLoadError",
    "clamp_position",
    "locate_js_error",
    "script_code",
]


@dataclass(frozen=True)
class IsolateOptions:
    """Everything an isolate needs to run a script; plain data so it can cross processes."""

    source: str
    script_name: str
    style: str = "auto"
    output_fields: tuple[OutputField, ...] | None = None
    routes: tuple[str, ...] | None = None
    variables: dict[str, str] = field(default_factory=dict)
    lookups: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float = 30.0
    heap_limit_mb: int = 512
    max_logs: int = 100

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "script_name": self.script_name,
            "style": self.style,
            "output_fields": None
            if self.output_fields is None
            else [
                {
                    "name": f.name,
                    "type": f.type,
                    "required": f.required,
                    "precision": f.precision,
                    "scale": f.scale,
                }
                for f in self.output_fields
            ],
            "routes": None if self.routes is None else list(self.routes),
            "variables": self.variables,
            "lookups": self.lookups,
            "timeout_seconds": self.timeout_seconds,
            "heap_limit_mb": self.heap_limit_mb,
            "max_logs": self.max_logs,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> IsolateOptions:
        fields = doc["output_fields"]
        return cls(
            source=doc["source"],
            script_name=doc["script_name"],
            style=doc["style"],
            output_fields=None if fields is None else tuple(OutputField(**f) for f in fields),
            routes=None if doc["routes"] is None else tuple(doc["routes"]),
            variables=dict(doc["variables"]),
            lookups=dict(doc["lookups"]),
            timeout_seconds=float(doc["timeout_seconds"]),
            heap_limit_mb=int(doc["heap_limit_mb"]),
            max_logs=int(doc["max_logs"]),
        )


class ScriptLoadError(Exception):
    """The script could not be loaded: syntax error, top-level exception, no entry function."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.where = where


class ScriptAbortError(Exception):
    """A batch was stopped: time limit, heap limit, cancelled (the run is stopping) or an
    error outside any single row."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


_PRELUDE: str | None = None
_HEADER = re.compile(r"^(<anonymous>|undefined|[^:\n]*):(\d+): (.*)$")
#: How the driver prelude is named in V8's stacks, so its frames are never taken for the script.
PRELUDE_NAME = "quiver-driver.js"
_FRAME = re.compile(r"\(?([^()\s]+):(\d+):(\d+)\)?\s*$")


def prelude_source() -> str:
    global _PRELUDE
    if _PRELUDE is None:
        _PRELUDE = (
            resources.files("quiver.pipeline.js_runtime").joinpath("prelude.js").read_text("utf-8")
        )
    return _PRELUDE


def clamp_position(source: str, line: int, column: int) -> tuple[int, int]:
    """``(line, column)`` moved inside ``source`` (1-based).

    V8 reports errors at the end of input (an unclosed brace, an unterminated string) past the
    user's last line: the code it compiles ends with a ``sourceURL`` comment. Such a position
    becomes the end of the last line that holds code.
    """
    lines = source.splitlines() or [""]
    last = len(lines)
    while last > 1 and not lines[last - 1].strip():
        last -= 1
    if line < 1:
        return 1, 1
    if line > last:
        return last, len(lines[last - 1].rstrip()) + 1
    return line, max(1, min(column, len(lines[line - 1]) + 1))


def script_code(source: str, script_name: str) -> str:
    """The code an isolate compiles: the script, then the comment that names it in stacks."""
    return f"{source}\n//# sourceURL={script_name}"


def locate_js_error(
    text: str, script_name: str, source: str | None = None, *, loading: bool = False
) -> tuple[str, str]:
    """(message, "file:line:col") from a V8 error report; "" when it is not in the script.

    ``loading``: the report comes from compiling the script itself, so its first line is a
    place in the script whatever V8 calls it. With ``source``, the position is kept inside
    it (see :func:`clamp_position`).
    """
    lines = text.splitlines()
    if not lines:
        return "unknown JavaScript error", ""
    head = _HEADER.match(lines[0])
    if head is None:
        return lines[0], ""
    message = head.group(3)
    place: tuple[int, int] | None = None
    for text_line in lines[3:]:
        frame = _FRAME.search(text_line.strip())
        if text_line.strip().startswith("at ") and frame and frame.group(1) == script_name:
            place = int(frame.group(2)), int(frame.group(3))
            break
    if place is None and (loading or head.group(1) == script_name):
        column = 1
        if len(lines) > 2 and "^" in lines[2]:
            column = lines[2].index("^") + 1
        place = int(head.group(2)), column
    if place is None:
        return message, ""
    line, column = place
    if source is not None:
        line, column = clamp_position(source, line, column)
    return message, f"{script_name}:{line}:{column}"


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _array_index(name: str) -> bool:
    """Whether V8 takes ``name`` for an array index (keys it lists before all others)."""
    return name.isascii() and name.isdigit() and (name == "0" or name[0] != "0")


def _whole_row(row: dict[str, Any], whole: pa.RecordBatch, i: int) -> dict[str, Any]:
    """The input row ``i`` of ``whole`` as a rejected row shows it: ``row`` (the columns the
    script saw, as the driver gave them) with the others put back in their places."""
    out: dict[str, Any] = {}
    for name, col in zip(whole.schema.names, whole.columns, strict=True):
        if name != LINE_COLUMN:
            out[name] = row[name] if name in row else col[i].as_py()
    return out


class Isolate:
    """A V8 context holding the prelude and the user script, ready to run batches."""

    def __init__(self, options: IsolateOptions) -> None:
        self.options = options
        self.style = ""
        self._ctx: Any = None
        self._maker: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._inflight: concurrent.futures.Future[Any] | None = None
        self._cancel_lock = threading.Lock()
        self._cancelled = False
        self._run: Any = None
        self._packed: Any = None
        self._alloc: Any = None
        self._refuse_deep: Any = None
        #: The ArrayBuffers this side keeps between batches: number columns in, packed
        #: columns out (see ``alloc`` and ``packed`` in the prelude).
        self._inbuf: Any = None
        self._inbuf_size = 0
        self._outbuf: Any = None
        #: The row properties the script can touch (see reads.py), None when any; and the
        #: columns of the last schema seen that enter V8 (None: all of them).
        self._reads: frozenset[str] | None = None
        self._sent: tuple[pa.Schema, list[int] | None] | None = None
        #: Seconds the last batch spent encoding, in V8 (the call, hand-over included) and
        #: decoding; see :meth:`stage_timings` for the split inside V8.
        self.last_timings: dict[str, float] = {}
        self._start()

    def _start(self) -> None:
        from py_mini_racer import JSEvalException, mini_racer

        # V8 must be started with Quiver's flags before the first isolate of the process,
        # whichever thread makes it (see quiver.pipeline.js_runtime.v8).
        start_v8()
        opts = self.options
        # The context runs its calls on an event loop of ours, so a call in flight can be
        # cancelled from another thread (see cancel()).
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="quiver-js-loop", daemon=True)
        thread.start()
        self._loop, self._loop_thread = loop, thread
        with isolate_creation():
            self._maker = mini_racer(event_loop=loop)
            ctx = self._maker.__enter__()
        self._ctx = ctx
        ctx.set_hard_memory_limit(opts.heap_limit_mb * 1024 * 1024)
        ctx.eval(script_code(prelude_source(), PRELUDE_NAME))
        try:
            ctx.eval(script_code(opts.source, opts.script_name), timeout_sec=opts.timeout_seconds)
        except JSEvalException as exc:
            message, where = locate_js_error(str(exc), opts.script_name, opts.source, loading=True)
            self.close()
            raise ScriptLoadError(message, where) from exc
        init_doc = {
            "scriptName": opts.script_name,
            "style": opts.style,
            "outputFields": None
            if opts.output_fields is None
            else [f.to_js() for f in opts.output_fields],
            "routes": None if opts.routes is None else list(opts.routes),
            "variables": opts.variables,
            "lookups": opts.lookups,
            "maxLogs": opts.max_logs,
            "maxDepth": MAX_JSON_DEPTH,
        }
        answer = ctx.call("__quiver.init", json.dumps(init_doc))
        if answer not in ("process", "transform"):
            self.close()
            raise ScriptLoadError(str(answer), opts.script_name)
        self.style = str(answer)
        self._reads = None
        if self.style == "transform":
            reads = transform_reads(opts.source)
            if reads is not None and opts.output_fields is not None:
                reads |= {f.name for f in opts.output_fields}
            self._reads = reads
        self._run = ctx.eval("__quiver.run").cancelable()
        self._packed = ctx.eval("__quiver.packed")
        self._alloc = ctx.eval("__quiver.alloc")
        self._refuse_deep = ctx.eval("__quiver.refuseDeep")

    def close(self) -> None:
        # Release the function handle before its context: freeing a handle of a closed
        # context crashes the process.
        self._run = None
        self._packed = None
        self._alloc = None
        self._refuse_deep = None
        self._inbuf = self._outbuf = None
        self._inbuf_size = 0
        maker, self._maker, self._ctx = self._maker, None, None
        if maker is not None:
            maker.__exit__(None, None, None)
        loop, thread = self._loop, self._loop_thread
        self._loop = self._loop_thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()

    def cancel(self) -> None:
        """Stop the batch running now, if any, and refuse the next ones (thread-safe): the run
        is stopping. The stopped ``run()`` raises :class:`ScriptAbortError` ("cancelled")."""
        with self._cancel_lock:
            self._cancelled = True
            inflight = self._inflight
        if inflight is not None:
            inflight.cancel()

    def _call(self, payload: str, texts: list[str]) -> Any:
        """The driver's run(payload, *texts), stopped at the time limit or by :meth:`cancel`."""
        from py_mini_racer import JSTimeoutException

        assert self._loop is not None
        run, limit = self._run, self.options.timeout_seconds

        async def call() -> Any:
            return await asyncio.wait_for(run(payload, *texts), timeout=limit)

        with self._cancel_lock:
            if self._cancelled:
                raise concurrent.futures.CancelledError
            inflight = asyncio.run_coroutine_threadsafe(call(), self._loop)
            self._inflight = inflight
        try:
            return inflight.result()
        except TimeoutError as exc:
            raise JSTimeoutException from exc
        finally:
            self._inflight = None

    def _answer(self, text: str) -> Any:
        """The driver's answer to a batch, read. orjson reads JSON nested at most 1024 levels
        deep, fewer than V8 writes: an answer deeper than that is asked for again without the
        rows whose output values are too deep (see :meth:`_without_deep_rows`)."""
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if "depth" not in str(exc) or self._refuse_deep is None:
                raise
            again = self._refuse_deep(MAX_JSON_DEPTH)
            if again is None:
                raise
            return orjson.loads(again)

    def _without_deep_rows(self, decoded: DecodedBatch) -> Any:
        """The driver's answer to the last batch again when an inferred output column of
        ``decoded`` nests more than :data:`MAX_JSON_DEPTH` levels deep (as no JSON record
        may, and the steps and sinks after would run out of stack on): without the rows whose
        values nest so deep, which the driver rejects with their line. None when no column
        does, the common case, found from the columns' types alone."""
        parts = [decoded.batch, *decoded.routes.values()]
        if not any(_deeper_than(f.type, MAX_JSON_DEPTH) for b in parts for f in b.schema):
            return None
        again = self._refuse_deep(MAX_JSON_DEPTH)
        return None if again is None else orjson.loads(again)

    def _packed_output(self, info: dict[str, Any] | None) -> np.ndarray[Any, Any] | None:
        """A copy of the bytes of the packed output columns the answer describes (``pk``)."""
        if not info:
            return None
        if info["fresh"] or self._outbuf is None:
            self._outbuf = self._packed()
        packed: np.ndarray[Any, Any] = np.frombuffer(self._outbuf, np.uint8, count=int(info["n"]))
        return packed.copy()  # the buffer is reused by the next batch

    def _restart(self) -> None:
        # Let V8 finish unwinding the stopped call before the context goes away; its
        # completion callback would otherwise arrive at a closed context.
        with contextlib.suppress(Exception):
            self._ctx.eval("0", timeout_sec=5)
        self.close()
        self._start()

    def run(self, batch: pa.RecordBatch) -> DecodedBatch:
        """Run the script over every row of ``batch``."""
        from py_mini_racer import JSEvalException, JSOOMException, JSTimeoutException

        opts = self.options
        typed = None if opts.output_fields is None else list(opts.output_fields)
        t0 = time.perf_counter()
        whole = None
        sent = self._sent_columns(batch.schema)
        if sent is not None:
            whole, batch = batch, batch.select(sent)
        numbers: list[Any] = []
        texts: list[str] = []
        payload, _types = encode_input(batch, typed, numbers, texts)
        t1 = time.perf_counter()
        try:
            if numbers:
                # Number columns go straight into an ArrayBuffer V8 allocated for them, kept
                # for the next batches while it is big enough.
                slot = 8 * batch.num_rows
                need = slot * len(numbers)
                if need > self._inbuf_size:
                    size = max(need, 2 * self._inbuf_size)
                    self._inbuf, self._inbuf_size = self._alloc(size), size
                view = np.frombuffer(self._inbuf, np.uint8, count=need)
                for k, values in enumerate(numbers):
                    view[k * slot : k * slot + values.nbytes] = values.view(np.uint8)
                del view
            doc = self._answer(self._call(payload.decode("utf-8"), texts))
            packed = self._packed_output(doc["pk"])
        except concurrent.futures.CancelledError as exc:
            # let V8 finish unwinding the stopped call before anything closes the context
            with contextlib.suppress(Exception):
                self._ctx.eval("0", timeout_sec=5)
            raise ScriptAbortError("cancelled", "the run is stopping") from exc
        except JSTimeoutException as exc:
            self._restart()
            raise ScriptAbortError(
                "timeout",
                f"the script ran longer than the time limit of {opts.timeout_seconds:g} s "
                f"on a batch of {batch.num_rows} rows and was stopped",
            ) from exc
        except JSEvalException as exc:
            over_heap = isinstance(exc, JSOOMException)
            with contextlib.suppress(Exception):
                over_heap = over_heap or bool(self._ctx.was_hard_memory_limit_reached())
            if over_heap:
                self._restart()
                raise ScriptAbortError(
                    "memory",
                    f"the script used more than the heap limit of {opts.heap_limit_mb} MB "
                    f"on a batch of {batch.num_rows} rows and was stopped",
                ) from exc
            self._restart()
            message, where = locate_js_error(str(exc), opts.script_name, opts.source)
            raise ScriptAbortError("script", f"{where}: {message}" if where else message) from exc
        t2 = time.perf_counter()
        try:
            decoded = decode_output(doc, batch, typed, packed, whole)
            if typed is None and (again := self._without_deep_rows(decoded)) is not None:
                packed = self._packed_output(again["pk"])
                decoded = decode_output(again, batch, typed, packed, whole)
        except (OutputTypeError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ScriptAbortError("output", str(exc)) from exc
        if whole is not None:
            for e in decoded.errors:
                if isinstance(e.get("row"), dict) and isinstance(e.get("i"), int):
                    e["row"] = _whole_row(e["row"], whole, e["i"])
        self.last_timings = {"encode": t1 - t0, "v8": t2 - t1, "decode": time.perf_counter() - t2}
        return decoded

    def _sent_columns(self, schema: pa.Schema) -> list[int] | None:
        """The columns of ``schema`` that enter V8, or None for all: those the script can
        touch, and every column that is not text (only text reaches a script unchanged)."""
        reads = self._reads
        if reads is None:
            return None
        if self._sent is not None and self._sent[0].equals(schema):
            return self._sent[1]
        names = schema.names
        wanted = [
            j
            for j, f in enumerate(schema)
            if f.name in reads or f.name == LINE_COLUMN or not _is_text(f.type)
        ]
        sent: list[int] | None = wanted
        if len(wanted) == len(names):
            sent = None
        elif len(set(names)) != len(names) or any(_array_index(n) for n in names):
            sent = None  # names that are ambiguous, or that V8 orders before all others
        self._sent = (schema, sent)
        return sent

    def stage_timings(self) -> dict[str, float]:
        """Seconds the last batch spent in V8's JSON.parse, cutting text columns, the row loop
        and JSON.stringify (millisecond resolution)."""
        if self._ctx is None:
            return {}
        doc = orjson.loads(self._ctx.eval("__quiver.timings()") or "null") or {}
        return {k: float(v) / 1000 for k, v in doc.items()}


def _deeper_than(kind: pa.DataType, levels: int) -> bool:
    """Whether ``kind`` nests lists, structs and maps more than ``levels`` deep (looking no
    deeper than that)."""
    if pa.types.is_struct(kind):
        inner = [f.type for f in kind.fields]
    elif pa.types.is_map(kind):
        inner = [kind.key_type, kind.item_type]
    elif (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        inner = [kind.value_type]
    else:
        return False
    return levels <= 0 or any(_deeper_than(t, levels - 1) for t in inner)
