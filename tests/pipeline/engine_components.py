"""Small real components the engine tests plug in by import string (``module:Class``).

They follow the component contract exactly; each does one thing the tests need to observe:
a generated row stream, a slow stream (to interrupt runs), a sink whose target directory
appears later, processors that route, reject or fail.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
from pydantic import Field

from quiver.pipeline.component import (
    LINE_COLUMN,
    ComponentConfig,
    FileWriting,
    ProcessorOutput,
    RowError,
    RunContext,
    Starting,
    processor,
    sink,
    source,
    without_line,
)
from quiver.runtime.errors import PermanentError, RetryableError

MODULE = __name__


class RowsConfig(ComponentConfig):
    rows: int = 10
    batch_rows: int = 4
    delay: float = 0.0
    fail_at_batch: int | None = None
    start: int = 1


@source("rows", config=RowsConfig)
class RowsSource:
    """Rows id=start.., value=id*10, with __line = id; optionally slow or failing."""

    def __init__(self, cfg: RowsConfig) -> None:
        self.cfg = cfg

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        first = self.cfg.start
        last = self.cfg.start + self.cfg.rows
        for n, lo in enumerate(range(first, last, self.cfg.batch_rows)):
            if self.cfg.fail_at_batch is not None and n == self.cfg.fail_at_batch:
                raise PermanentError.one("the source broke", "rows source", "none")
            ids = list(range(lo, min(lo + self.cfg.batch_rows, last)))
            if self.cfg.delay:
                await asyncio.sleep(self.cfg.delay)
            yield pa.record_batch({"id": ids, "value": [i * 10 for i in ids], LINE_COLUMN: ids})


class FlakyStartConfig(ComponentConfig):
    marker: str
    failures: int = 2


@source("flaky_start", config=FlakyStartConfig)
class FlakyStartSource:
    """Fails with RetryableError until `failures` attempts were counted in the marker file."""

    def __init__(self, cfg: FlakyStartConfig) -> None:
        self.cfg = cfg

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        marker = Path(self.cfg.marker)
        count = int(marker.read_text()) if marker.exists() else 0
        if count < self.cfg.failures:
            with open(self.cfg.marker, "w") as fh:
                fh.write(str(count + 1))
            raise RetryableError.one("not ready yet", "flaky source", "wait")
        yield pa.record_batch({"id": [1, 2], LINE_COLUMN: [1, 2]})


class DirSinkConfig(ComponentConfig):
    path: str = Field(description="CSV file; its directory must exist (it is not created).")


@sink("dir_csv", config=DirSinkConfig)
class DirCsvSink(FileWriting):
    """Writes CSV to a temp file in an existing directory; RetryableError while it is missing."""

    def __init__(self, cfg: DirSinkConfig) -> None:
        self.cfg = cfg
        self.path = cfg.path
        self.attempts = 0
        self._writer: pacsv.CSVWriter | None = None
        self._tmp = ""

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        self.attempts += 1
        path = os.path.join(ctx.base_dir, self.cfg.path)
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            raise RetryableError.one(f"directory {folder} does not exist yet", path, "create it")
        self._final = path
        self._tmp = f"{path}.tmp-{ctx.run_id}"
        self._writer = pacsv.CSVWriter(self._tmp, schema)

    async def write(self, batch: pa.RecordBatch) -> None:
        assert self._writer is not None
        self._writer.write_batch(without_line(batch))

    async def commit(self) -> None:
        assert self._writer is not None
        self._writer.close()
        os.replace(self._tmp, self._final)

    async def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._tmp and os.path.exists(self._tmp):
            os.unlink(self._tmp)


class SplitConfig(ComponentConfig):
    route: str = "odd"


@processor("split", config=SplitConfig)
class SplitProcessor:
    """Even ids to the default output, odd ids to the named route."""

    def __init__(self, cfg: SplitConfig) -> None:
        self.cfg = cfg

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        ids = batch.column("id").to_pylist()
        even = batch.filter(pa.array([i % 2 == 0 for i in ids]))
        odd = batch.filter(pa.array([i % 2 == 1 for i in ids]))
        return ProcessorOutput(even, routes={self.cfg.route: [odd]})


class RejectConfig(ComponentConfig):
    ids: list[int] = Field(default_factory=list)


@processor("reject_ids", config=RejectConfig)
class RejectIdsProcessor:
    """Rejects the rows whose id is listed (with line and value, without the row)."""

    def __init__(self, cfg: RejectConfig) -> None:
        self.cfg = cfg

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        ids = batch.column("id").to_pylist()
        lines = batch.column(LINE_COLUMN).to_pylist()
        bad = [(i, line) for i, line in zip(ids, lines, strict=True) if i in self.cfg.ids]
        keep = batch.filter(pa.array([i not in self.cfg.ids for i in ids]))
        errors = [RowError(line, "id is blocked", "id", i) for i, line in bad]
        return ProcessorOutput(keep, errors=errors)


class BreakConfig(ComponentConfig):
    at_id: int


@processor("break_at", config=BreakConfig)
class BreakProcessor:
    """Raises PermanentError on the batch holding `at_id`."""

    def __init__(self, cfg: BreakConfig) -> None:
        self.cfg = cfg

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        if self.cfg.at_id in batch.column("id").to_pylist():
            raise PermanentError.one(f"cannot handle id {self.cfg.at_id}", "", "none")
        return ProcessorOutput(batch)


class SlowConfig(ComponentConfig):
    delay: float = 0.01


@processor("slow", config=SlowConfig)
class SlowProcessor:
    """Sleeps before passing each batch on (a slow consumer)."""

    def __init__(self, cfg: SlowConfig) -> None:
        self.cfg = cfg

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        await asyncio.sleep(self.cfg.delay)
        return ProcessorOutput(batch)


class HiccupConfig(ComponentConfig):
    path: str
    fail_writes: list[int] = Field(default_factory=list)


@sink("hiccup", config=HiccupConfig)
class HiccupSink(FileWriting):
    """A CSV sink whose listed write calls (1-based) fail once with a reset connection."""

    def __init__(self, cfg: HiccupConfig) -> None:
        self.cfg = cfg
        self.written = 0
        self._failed: set[int] = set()
        self._inner = DirCsvSink(DirSinkConfig(path=cfg.path))

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        await self._inner.open(schema, ctx)

    async def write(self, batch: pa.RecordBatch) -> None:
        n = self.written + 1
        if n in self.cfg.fail_writes and n not in self._failed:
            self._failed.add(n)
            raise ConnectionResetError("connection reset by peer")
        await self._inner.write(batch)
        self.written = n

    async def commit(self) -> None:
        await self._inner.commit()

    async def abort(self) -> None:
        await self._inner.abort()


class StartRecorderConfig(ComponentConfig):
    log: str


@processor("start_recorder", config=StartRecorderConfig)
class StartRecorder(Starting):
    """Has the optional ``start`` hook; appends "start" / "process" to a log file."""

    def __init__(self, cfg: StartRecorderConfig) -> None:
        self.cfg = cfg

    def _note(self, what: str) -> None:
        with open(self.cfg.log, "a") as f:
            f.write(what + "\n")

    async def start(self, ctx: RunContext) -> None:
        self._note("start")

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        self._note("process")
        return ProcessorOutput(batch)


class NotingRowsConfig(RowsConfig):
    log: str


@source("noting_rows", config=NotingRowsConfig)
class NotingRowsSource(RowsSource):
    """RowsSource that appends "batch" to a log file as it yields each batch."""

    cfg: NotingRowsConfig

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        async for batch in super().batches(ctx):
            with open(self.cfg.log, "a") as f:
                f.write("batch\n")
            yield batch
