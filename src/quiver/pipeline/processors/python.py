"""The ``python`` processor: your own Python function over rows or whole batches.

```yaml
- python: {file: transform.py, function: transform}              # mode: row (default)
- python: {file: enrich.py, function: enrich, mode: batch}
```

Row mode calls ``function(row: dict, ctx) -> dict | list[dict] | None`` once per row:
return the (new) row, several rows, or ``None`` to drop it. An exception rejects that row
(with its line and the exception message; the error policy applies). Batch mode calls
``function(batch: pyarrow.RecordBatch, ctx) -> pyarrow.RecordBatch | pyarrow.Table | None``
once per batch; an exception fails the run. ``ctx`` is the run context (``ctx.run_id``,
``ctx.variables``, ``ctx.base_dir``, ``ctx.log(message, level)``). Functions run in a worker
thread, so the progress display stays live. ``quiver validate`` imports the file and checks
the function exists and takes the right arguments.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from quiver.pipeline.component import (
    LINE_COLUMN,
    Checking,
    ComponentConfig,
    ProcessorOutput,
    RowError,
    RunContext,
    processor,
    without_kept_text,
    without_line,
)
from quiver.pipeline.config import resolve_path
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError

__all__ = ["PythonConfig", "PythonProcessor", "load_function"]


class PythonConfig(ComponentConfig):
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
    except Exception as exc:
        raise ConfigError.one(
            f"importing the file raised {type(exc).__name__}: {exc}",
            _user_frame(exc, path),
            "fix the module-level code",
        ) from exc
    finally:
        if added:
            sys.path.remove(folder)
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
        except Exception as exc:
            raise PermanentError.one(
                f"{self.cfg.function} raised {type(exc).__name__}: {exc}",
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
        return ProcessorOutput(result)

    def _rows(
        self, fn: Callable[..., Any], batch: pa.RecordBatch, ctx: RunContext
    ) -> ProcessorOutput:
        out: list[dict[str, Any]] = []
        errors: list[RowError] = []
        for row in without_kept_text(batch).to_pylist():
            line = row.pop(LINE_COLUMN, None)
            try:
                result = self._call(fn, dict(row), ctx)
            except Exception as exc:
                errors.append(
                    RowError(line, f"{type(exc).__name__}: {exc}", row=row, kind="script")
                )
                continue
            if result is None:
                continue
            produced = [result] if isinstance(result, dict) else result
            if not isinstance(produced, list) or not all(isinstance(r, dict) for r in produced):
                raise PermanentError.one(
                    f"{self.cfg.function} returned {type(result).__name__} for line {line}",
                    self._path,
                    "return a dict, a list of dicts, or None to drop the row",
                )
            for r in produced:
                out.append({**r, LINE_COLUMN: line} if line is not None else r)
        if not out:
            return ProcessorOutput(None, errors=errors)
        return ProcessorOutput(self._to_batch(out), errors=errors)

    def _to_batch(self, rows: list[dict[str, Any]]) -> pa.RecordBatch:
        if self._schema is not None and set(rows[0]) == set(self._schema.names):
            try:
                return pa.RecordBatch.from_pylist(rows, schema=self._schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
        try:
            batch = pa.RecordBatch.from_pylist(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise PermanentError.one(
                f"the rows returned by {self.cfg.function} do not form a table: {exc}",
                self._path,
                "return the same type for a given key in every row",
            ) from exc
        if self._schema is None and not any(pa.types.is_null(f.type) for f in batch.schema):
            self._schema = batch.schema
        return batch
