"""DuckDB over one RecordBatch: the shared engine of the sql, filter, derive, validate and cast
processors. The batch is visible as the table ``input``; nothing is copied into DuckDB.

Each processor owns one in-memory DuckDB database; every call uses its own cursor, so calls
may run in worker threads (DuckDB releases the GIL while it works). DuckDB is imported and the
database opened on first use: processors that only need the helpers here (``select``,
``rename``) and pipelines that never reach a query do not pay for them.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from quiver.pipeline.component import is_internal
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError
from quiver.runtime.hints import did_you_mean
from quiver.sql.connect import connect_duckdb
from quiver.sql.dialects import DUCKDB

if TYPE_CHECKING:
    import duckdb

Params = Sequence[Any] | dict[str, Any] | None

__all__ = [
    "BatchSql",
    "parse_select",
    "quote_ident",
    "read_table_file",
    "require_columns",
    "table_to_batch",
]


#: A DuckDB identifier, quoted by the DuckDB dialect (empty names are refused).
quote_ident = DUCKDB.quote_ident


def require_columns(schema: pa.Schema, wanted: list[str]) -> None:
    """PermanentError naming every wanted column the input lacks, with a did-you-mean."""
    names = [n for n in schema.names if not is_internal(n)]
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        hints = [h for h in (did_you_mean(m, names) for m in missing) if h]
        raise PermanentError.one(
            f"column(s) {', '.join(missing)} not in the input"
            + (f"; {' '.join(hints)}" if hints else ""),
            "",
            f"the input columns are: {', '.join(names)}",
        )


def read_table_file(
    path: str, fmt: str = "auto", delimiter: str = ",", what: str = "table"
) -> pa.Table:
    """A whole CSV or Parquet file (``fmt`` ``auto`` goes by the extension) as a Table."""
    if not os.path.exists(path):
        folder = os.path.dirname(path) or "."
        siblings = sorted(os.listdir(folder))[:20] if os.path.isdir(folder) else []
        raise ConfigError.one(
            f"{what} file not found",
            path,
            f"check the path (relative to the pipeline file); files there: "
            f"{', '.join(siblings) or 'none'}",
        )
    if fmt == "auto":
        fmt = "parquet" if Path(path).suffix.lower() in (".parquet", ".pq") else "csv"
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        if fmt == "parquet":
            return pq.read_table(path)
        return pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ConfigError.one(
            f"cannot read the {what}: {exc}", path, "check the file format"
        ) from exc


def table_to_batch(table: pa.Table) -> pa.RecordBatch:
    """One RecordBatch holding all rows of ``table`` (an empty one when it has none)."""
    table = table.combine_chunks()
    batches = table.to_batches()
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    return batches[0]


def parse_select(query: str) -> list[ErrorDetail]:
    """Syntax check of one SELECT statement, without running it."""
    import duckdb

    try:
        statements = connect_duckdb().extract_statements(query)
    except duckdb.Error as exc:
        return [ErrorDetail(f"SQL syntax error: {exc}", "", "fix the query")]
    if len(statements) != 1:
        return [
            ErrorDetail(
                f"expected one SQL statement, found {len(statements)}",
                "",
                "keep a single SELECT; chain several sql steps for more",
            )
        ]
    if statements[0].type != duckdb.StatementType.SELECT:
        return [
            ErrorDetail(
                f"expected a SELECT statement, found {statements[0].type.name}",
                "",
                "write `select ... from input`",
            )
        ]
    return []


class BatchSql:
    """Runs queries against a batch registered as ``input`` (plus optional extra tables)."""

    def __init__(self, step: str) -> None:
        self.step = step
        self._db: duckdb.DuckDBPyConnection | None = None
        self._opening = threading.Lock()
        self._tables: dict[str, Any] = {}

    def _database(self) -> duckdb.DuckDBPyConnection:
        """The in-memory database, opened by the first query (calls may come from threads)."""
        with self._opening:
            if self._db is None:
                self._db = connect_duckdb()
            return self._db

    def add_table(self, name: str, table: pa.Table) -> None:
        """A table every query can join (e.g. a lookup table), kept for the processor's life."""
        self._tables[name] = table

    def run(
        self,
        batch: pa.RecordBatch,
        query: str,
        params: Params = None,
    ) -> pa.Table:
        import duckdb

        if "" in batch.schema.names:  # DuckDB would rename it (to v1) without a word
            raise PermanentError.one(
                f"column {batch.schema.names.index('') + 1} of the input has an empty name, "
                "which SQL cannot refer to",
                "",
                "name it: `rename: {columns: {'': name}}` before this step, or the source's "
                "`columns`",
            )
        cursor = self._database().cursor()
        try:
            cursor.register("input", batch)
            for name, table in self._tables.items():
                cursor.register(name, table)
            return cursor.sql(
                query,
                params=(params if isinstance(params, dict) else list(params)) if params else None,
            ).to_arrow_table()
        except duckdb.Error as exc:
            raise PermanentError.one(
                f"query failed: {exc}".strip(),
                "",
                "check the column names and types in the expression; the batch columns are "
                + ", ".join(n for n in batch.schema.names if not is_internal(n)),
            ) from exc
        finally:
            cursor.close()

    async def run_async(
        self,
        batch: pa.RecordBatch,
        query: str,
        params: Params = None,
    ) -> pa.Table:
        return await asyncio.to_thread(self.run, batch, query, params)

    def close(self) -> None:
        with self._opening:
            if self._db is not None:
                self._db.close()
                self._db = None
