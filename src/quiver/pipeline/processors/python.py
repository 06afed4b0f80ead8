"""The ``python`` processor: your own Python function over rows or whole batches.

```yaml
- python: {file: transform.py, function: transform}              # mode: row (default)
- python: {file: enrich.py, function: enrich, mode: batch}
```

Row mode calls ``function(row: dict, ctx) -> dict | list[dict] | None`` once per row:
return the (new) row, several rows, or ``None`` to drop it. An exception rejects that row
(with its line and the exception message; the error policy applies; ``sys.exit()`` is such an
exception, never the end of the process), and so does a row whose
result cannot be stored: not a dict, or a value Arrow cannot hold (text with half a surrogate
pair, an integer beyond 64 bits, an object of another kind, a value of another type than the
column has in the rows before, lists and dicts nested more than 128 levels deep or holding
themselves). The output columns are every key any row returns, in order of
first appearance, or those of ``output_schema`` (as the ``js`` step's), whose types every
value is converted to; with it a batch whose rows were all rejected still has its columns.
Batch mode calls
``function(batch: pyarrow.RecordBatch, ctx) -> pyarrow.RecordBatch | pyarrow.Table | None``
once per batch; an exception fails the run. ``ctx`` is the run context (``ctx.run_id``,
``ctx.variables``, ``ctx.base_dir``, ``ctx.log(message, level)``). Functions run in a worker
thread, so the progress display stays live. ``quiver validate`` imports the file and checks
the function exists and takes the right arguments.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import importlib.util
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import (
    LINE_COLUMN,
    Checking,
    ProcessorOutput,
    RowError,
    RunContext,
    is_internal,
    processor,
    schema_without_line,
    without_kept_text,
    without_line,
)
from quiver.pipeline.config import resolve_path
from quiver.pipeline.conform import conform
from quiver.pipeline.json_text import MAX_JSON_DEPTH
from quiver.pipeline.processors.script_output import OutputSchemaOption
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError

__all__ = ["PythonConfig", "PythonProcessor", "load_function"]


class PythonConfig(OutputSchemaOption):
    """Run a Python function from a file."""

    file: str = Field(description="Python file, relative to the pipeline file.")
    function: str = Field(default="transform", description="Name of the function in the file.")
    mode: Literal["row", "batch"] = Field(
        default="row", description="`row`: called per row with a dict; `batch`: per RecordBatch."
    )


def _user_frame(exc: BaseException, path: str) -> str:
    """``file:line`` of the deepest frame of the user's file in a traceback."""
    where = path
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == path:
            where = f"{path}:{frame.lineno}"
    return where


def load_function(path: str, name: str) -> Callable[..., Any]:
    """Import ``path`` and return its function ``name`` (ConfigError with file:line otherwise)."""
    if not Path(path).is_file():
        raise ConfigError.one(
            "Python file not found",
            path,
            "check `file` (relative paths start at the pipeline file's directory)",
        )
    module = _loaded_module(path)
    fn = getattr(module, name, None)
    if not callable(fn):
        found = [
            n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_")
        ]
        raise ConfigError.one(
            f"no function '{name}' in the file",
            path,
            f"define `def {name}(row, ctx):` or set `function:` to one of: "
            f"{', '.join(found) or 'no functions found'}",
        )
    return fn  # type: ignore[no-any-return]


#: Files already imported, by path, with the (modification time, size) they were read at: a
#: file's module-level code runs once a process, as an import would, though a run loads the
#: step twice (the checks before the run, then the run).
_LOADED: dict[str, tuple[tuple[int, int], ModuleType]] = {}


def _loaded_module(path: str) -> ModuleType:
    """``path`` imported, or the module it was imported as if the file has not changed."""
    info = os.stat(path)
    version = (info.st_mtime_ns, info.st_size)
    known = _LOADED.get(path)
    if known is not None and known[0] == version:
        return known[1]
    digest = hashlib.sha1(path.encode()).hexdigest()[:10]
    module_name = f"quiver_user_{Path(path).stem}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    folder = str(Path(path).parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ConfigError.one(
            f"syntax error: {exc.msg}",
            f"{path}:{exc.lineno}:{exc.offset}",
            "fix the Python syntax",
        ) from exc
    except ImportError as exc:
        raise ConfigError.one(
            f"import failed: {exc}",
            _user_frame(exc, path),
            f"install the missing module (pip install {exc.name})"
            if exc.name
            else "fix the import",
        ) from exc
    except (Exception, SystemExit) as exc:
        raise ConfigError.one(
            f"importing the file raised {_raised(exc)}",
            _user_frame(exc, path),
            "fix the module-level code",
        ) from exc
    finally:
        if added:
            sys.path.remove(folder)
    _LOADED[path] = (version, module)
    return module


def _raised(exc: BaseException) -> str:
    """What the user's code raised, for messages. ``sys.exit()`` (SystemExit) is an exception
    like any other here: a step's code never ends the process, which would end the run with
    the code it chose and without a word, its outputs unwritten."""
    if isinstance(exc, SystemExit):
        return (
            f"SystemExit: sys.exit({exc.code!r}) was called, which does not end a run (raise "
            "an exception instead)"
        )
    return f"{type(exc).__name__}: {exc}"


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


@processor("python", config=PythonConfig)
class PythonProcessor(Checking):
    """Run your Python function on each row or each batch."""

    def __init__(self, cfg: PythonConfig) -> None:
        self.cfg = cfg
        self._fn: Callable[..., Any] | None = None
        self._arity = 2
        self._schema: pa.Schema | None = None
        self._path = cfg.file

    def _load(self, ctx: RunContext) -> Callable[..., Any]:
        if self._fn is None:
            self._path = resolve_path(self.cfg.file, ctx.base_dir)
            self._fn = load_function(self._path, self.cfg.function)
            self._arity = _arity(self._fn)
            if self._arity not in (1, 2):
                raise ConfigError.one(
                    f"function '{self.cfg.function}' takes {self._arity} arguments",
                    self._path,
                    f"define it as `def {self.cfg.function}({self.cfg.mode}, ctx):`",
                )
        return self._fn

    def check(self, ctx: RunContext) -> list[ErrorDetail]:
        try:
            self._load(ctx)
        except ConfigError as exc:
            return exc.details
        return []

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        fn = self._load(ctx)
        if self.cfg.mode == "batch":
            return await asyncio.to_thread(self._batch, fn, batch, ctx)
        return await asyncio.to_thread(self._rows, fn, batch, ctx)

    def _call(self, fn: Callable[..., Any], value: Any, ctx: RunContext) -> Any:
        return fn(value, ctx) if self._arity == 2 else fn(value)

    def _batch(
        self, fn: Callable[..., Any], batch: pa.RecordBatch, ctx: RunContext
    ) -> ProcessorOutput:
        has_line = LINE_COLUMN in batch.schema.names
        given = without_line(batch)  # no internal columns: line numbers, kept decimal text
        try:
            result = self._call(fn, given, ctx)
        except (Exception, SystemExit) as exc:
            raise PermanentError.one(
                f"{self.cfg.function} raised {_raised(exc)}",
                _user_frame(exc, self._path),
                "fix the function; in row mode an exception rejects only its row",
            ) from exc
        if result is None:
            return ProcessorOutput(None)
        if isinstance(result, pa.Table):
            result = result.combine_chunks()
            batches = result.to_batches()
            result = batches[0] if batches else pa.RecordBatch.from_pylist([], schema=result.schema)
        if not isinstance(result, pa.RecordBatch):
            raise PermanentError.one(
                f"{self.cfg.function} returned {type(result).__name__}",
                self._path,
                "return a pyarrow.RecordBatch, a pyarrow.Table or None",
            )
        if (
            has_line
            and LINE_COLUMN not in result.schema.names
            and result.num_rows == batch.num_rows
        ):
            result = result.append_column(LINE_COLUMN, batch.column(LINE_COLUMN))
        declared = self.cfg.declared_schema()
        if declared is not None:
            if LINE_COLUMN in result.schema.names:
                declared = declared.append(result.schema.field(LINE_COLUMN))
            result = conform(
                result,
                declared,
                where=self._path,
                origin="output_schema",
                missing="null",
                fix_columns="return only the columns output_schema declares",
                fix_types="return the types output_schema declares",
            )
        return ProcessorOutput(result)

    def _rows(
        self, fn: Callable[..., Any], batch: pa.RecordBatch, ctx: RunContext
    ) -> ProcessorOutput:
        produced: list[_Produced] = []
        errors: list[RowError] = []
        for row in self._python_rows(without_kept_text(batch)):
            line = row.pop(LINE_COLUMN, None)
            try:
                result = self._call(fn, dict(row), ctx)
            except (Exception, SystemExit) as exc:
                reason = _writable(_raised(exc))
                errors.append(RowError(line, reason, row=row, kind="script"))
                continue
            if result is None:
                continue
            results = [result] if isinstance(result, dict) else result
            if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
                errors.append(
                    RowError(
                        line,
                        f"{self.cfg.function} returned {_kind(result)}: return a dict, a list "
                        "of dicts, or None to drop the row",
                        value=_storable(result),
                        row=row,
                        kind="script",
                    )
                )
                continue
            produced += [_Produced(line, row, r) for r in results]
        line_type = (
            batch.schema.field(LINE_COLUMN).type if LINE_COLUMN in batch.schema.names else None
        )
        out, rejected = self._to_batch(produced, line_type, without_line(batch).schema)
        errors = sorted([*errors, *rejected], key=lambda e: e.line if e.line is not None else 0)
        return ProcessorOutput(out, errors=errors)

    def _python_rows(self, batch: pa.RecordBatch) -> list[dict[str, Any]]:
        """The rows as dicts of Python values; a PermanentError naming the column and value
        when a value has no Python form (a duration beyond ``timedelta``'s 999999999 days, a
        zoned time whose local date is past the year 9999)."""
        try:
            rows: list[dict[str, Any]] = batch.to_pylist()
            return rows
        except _CONVERSION_ERRORS as exc:
            failure = exc
        for column, name in zip(batch.columns, batch.schema.names, strict=True):
            for at in range(len(column)):
                try:
                    column[at].as_py()
                except _CONVERSION_ERRORS as exc:
                    raise PermanentError.one(
                        f"column {name!r} ({column.type}) holds a value Python cannot hold, "
                        f"at line {_line_at(batch, at)}: {type(exc).__name__}: {exc}",
                        self._path,
                        "use `mode: batch` (which hands on Arrow values) or a `js` step, or "
                        "leave the column out before this step (`select`)",
                    ) from None
        raise failure

    def _to_batch(
        self, produced: list[_Produced], line_type: pa.DataType | None, given: pa.Schema
    ) -> tuple[pa.RecordBatch | None, list[RowError]]:
        """The returned rows as one batch, and an error for each row that cannot be in it.

        A column the rows came in with keeps its type when every value returned for it still
        fits (an ``int8`` column returned unchanged stays ``int8``, a ``uint64`` beyond int64
        stays ``uint64``); other columns take the type their values have."""
        declared = self.cfg.declared_schema()
        known = declared if declared is not None else self._schema
        bad: dict[int, RowError] = {}

        def reject(i: int, reason: str, column: str | None = None, value: Any = None) -> None:
            if i not in bad:
                p = produced[i]
                bad[i] = RowError(
                    p.line, _writable(reason), column, _storable(value), p.row, kind="script"
                )

        names: list[str] = list(known.names) if known is not None else []
        for i, p in enumerate(produced):
            for key, value in p.result.items():
                if type(value) in _NESTED and (why := _nesting_problem(value)) is not None:
                    reject(i, f"the value of {key!r} {why}", key, value)
                if not isinstance(key, str):
                    reject(i, f"returned a key that is not text: {key!r}", value=key)
                elif key == LINE_COLUMN or is_internal(key):
                    reject(i, f"returned the reserved key {key!r}", key)
                elif key not in names:
                    if known is None:
                        names.append(key)
                    else:
                        why = (
                            "output_schema does not declare"
                            if declared is not None
                            else "no row of the first batch returned (declare every field "
                            "in output_schema)"
                        )
                        reject(
                            i,
                            f"returned field {key!r}, which {why}",
                            key,
                            p.result[key],
                        )
        fields = {f.name: f for f in self.cfg.fields() or ()}
        types: dict[str, pa.DataType | None] = {
            n: known.field(n).type if known is not None else None for n in names
        }
        for name in names:
            # the values of rows already rejected take no part (they may not be storable)
            values = [None if i in bad else p.result.get(name) for i, p in enumerate(produced)]
            for i, v in enumerate(values):
                if v is None and name in fields and fields[name].required:
                    reject(i, f"required field {name!r} is empty", name)
            if types[name] is None and name in given.names:
                types[name] = _kept_type(values, given.field(name).type)
            types[name] = self._column_type(name, values, types[name], reject)
        good = [p for i, p in enumerate(produced) if i not in bad]
        errors = [bad[i] for i in sorted(bad)]
        if known is None:  # keys only rejected rows returned are no columns
            names = [n for n in names if any(n in p.result for p in good)]
        if not good and known is None:
            return None, errors
        arrays = [_arrow_array([p.result.get(n) for p in good], types[n]) for n in names]
        schema = pa.schema([pa.field(n, a.type) for n, a in zip(names, arrays, strict=True)])
        if line_type is not None:
            arrays.append(pa.array([p.line for p in good], type=line_type))
            schema = schema.append(pa.field(LINE_COLUMN, line_type))
        out = pa.RecordBatch.from_arrays(arrays, schema=schema)
        if self._schema is None and good and not any(pa.types.is_null(t) for t in schema.types):
            self._schema = schema_without_line(schema)
        return out, errors

    @staticmethod
    def _column_type(
        name: str,
        values: list[Any],
        wanted: pa.DataType | None,
        reject: Callable[[int, str, str | None, Any], None],
    ) -> pa.DataType:
        """The type of column ``name``: ``wanted``, else inferred from all its values, else
        from its first value that converts; values that do not convert reject their row."""
        try:
            return _arrow_array(values, wanted).type
        except _CONVERSION_ERRORS:
            pass
        column_type = wanted
        if column_type is None:
            for v in values:
                if v is None:
                    continue
                try:
                    column_type = pa.array([v]).type
                    break
                except _CONVERSION_ERRORS:
                    continue
        for i, v in enumerate(values):
            if v is None:
                continue
            if column_type is None:
                try:
                    pa.array([v])
                except _CONVERSION_ERRORS as exc:
                    reason = f"the value of {name!r} ({_kind(v)}) cannot be stored: "
                    reject(i, reason + _first_line(exc), name, v)
                continue
            try:
                _arrow_array([v], column_type)
            except _CONVERSION_ERRORS as exc:
                reject(
                    i,
                    f"the value of {name!r} ({_kind(v)}) cannot be stored as "
                    f"{column_type}: {_first_line(exc)}",
                    name,
                    v,
                )
        return column_type if column_type is not None else pa.null()


_MICROSECONDS_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}


def _arrow_array(values: list[Any], kind: pa.DataType | None) -> pa.Array:
    """``pa.array(values, type=kind)``, save that timedeltas become a duration exactly:
    pyarrow multiplies the days out before it adds the rest, which overflows for the least
    durations (``duration[us]`` of -2**63 + 1) although the whole value fits."""
    try:
        return pa.array(values, type=kind)
    except (OverflowError, pa.ArrowInvalid):
        if kind is None or not pa.types.is_duration(kind):
            raise
        if not all(v is None or isinstance(v, dt.timedelta) for v in values):
            raise
    counts: list[int | None] = []
    for v in values:
        if v is None:
            counts.append(None)
            continue
        micros = (v.days * 86_400 + v.seconds) * 1_000_000 + v.microseconds
        if kind.unit == "ns":
            count = micros * 1_000
        elif micros % _MICROSECONDS_PER[kind.unit]:
            raise pa.ArrowInvalid(f"{v!r} is not a whole number of {kind.unit}")
        else:
            count = micros // _MICROSECONDS_PER[kind.unit]
        if not -(2**63) <= count < 2**63:
            raise OverflowError(f"{v!r} does not fit {kind}")
        counts.append(count)
    return pa.array(counts, pa.int64()).cast(kind)


_CONVERSION_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    UnicodeError,
    TypeError,
    ValueError,
)


def _kept_type(values: list[Any], given: pa.DataType) -> pa.DataType | None:
    """``given`` (the type of the input column of the same name) when every returned value
    converts to it exactly, else ``None`` (the type is inferred from the values). Arrow
    truncates quietly (2.5 into an int, a datetime into a date, microseconds into a
    ``timestamp[s]``), so the values are read back and compared."""
    try:
        back = _arrow_array(values, given).to_pylist()
    except _CONVERSION_ERRORS:
        return None
    for a, b in zip(back, values, strict=True):
        if type(a) is not type(b) and not _same_kind_of_value(a, b):
            return None
        if a != b and not (a != a and b != b):  # NaN equals NaN here
            return None
    return given


def _same_kind_of_value(stored: Any, returned: Any) -> bool:
    """Whether ``returned`` is the kind of Python value Arrow gives back as ``stored``: an
    int for a float, a datetime for a pandas Timestamp, a list for a tuple, and so on."""
    if stored is None or returned is None:
        return stored is None and returned is None
    if isinstance(stored, bool) or isinstance(returned, bool):
        return False
    kinds = (int | float, dt.datetime, dt.date, dt.time, dt.timedelta, list | tuple, dict)
    return any(isinstance(stored, k) and isinstance(returned, k) for k in kinds)


_NESTED = frozenset({dict, list, tuple, set, frozenset})


def _nesting_problem(value: Any) -> str | None:
    """Why a returned list, tuple, set or dict cannot be stored, else None: it nests more than
    :data:`MAX_JSON_DEPTH` levels deep (as a JSON Lines record may), or holds itself. Arrow
    would take such a value apart without bound (the memory of the process, or its stack).
    Each container is looked at once, however often it is referred to."""
    below: dict[int, int] = {}  # levels below each container looked at
    path: set[int] = set()

    def depth(v: Any) -> int:
        key = id(v)
        if key in below:
            return below[key]
        if key in path:
            raise _HoldsItselfError
        if len(path) >= MAX_JSON_DEPTH:
            raise _TooDeepError
        path.add(key)
        items = v.values() if isinstance(v, dict) else v
        levels = 1 + max((depth(x) for x in items if type(x) in _NESTED), default=0)
        path.discard(key)
        below[key] = levels
        return levels

    try:
        levels = depth(value)
    except _HoldsItselfError:
        return (
            "holds itself (a list or dict inside itself), which cannot be stored; return a "
            "copy without the cycle"
        )
    except _TooDeepError:
        levels = MAX_JSON_DEPTH + 1
    if levels <= MAX_JSON_DEPTH:
        return None
    return (
        f"nests lists and dicts more than {MAX_JSON_DEPTH} levels deep, as no value may; "
        "flatten it, or hold the deep part as a JSON string"
    )


class _HoldsItselfError(Exception):
    pass


class _TooDeepError(Exception):
    pass


@dataclass(frozen=True)
class _Produced:
    """One row a function returned, with the input row and line it was returned for."""

    line: int | None
    row: dict[str, Any]
    result: dict[Any, Any]


def _line_at(batch: pa.RecordBatch, at: int) -> Any:
    """The line number of row ``at`` (its position from 1 when the batch has none)."""
    if LINE_COLUMN in batch.schema.names:
        return batch.column(LINE_COLUMN)[at].as_py()
    return at + 1


def _kind(value: Any) -> str:
    """What a returned value is, for messages: its type, and the value when short."""
    return type(value).__name__


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _storable(value: Any) -> Any:
    """``value`` as the rejects file can write it: plain values as they are, others as their
    repr (text with half a surrogate pair escaped)."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, str):
        return _writable(value)
    try:
        text = _writable(repr(value))
    except RecursionError:
        return f"<{type(value).__name__} nested too deep to show>"
    return text if len(text) <= 200 else text[:199] + "…"


def _writable(text: str) -> str:
    """``text`` with half surrogate pairs, which UTF-8 cannot write, as ``\\udxxx`` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
