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
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from quiver.pipeline.component import is_internal
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError, QuiverError
from quiver.runtime.hints import did_you_mean
from quiver.sql.connect import connect_duckdb
from quiver.sql.dialects import DUCKDB

if TYPE_CHECKING:
    import duckdb

Params = Sequence[Any] | dict[str, Any] | None

__all__ = [
    "BatchSql",
    "expression_columns",
    "parse_select",
    "query_failure",
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


def expression_columns(expression: str) -> list[str]:
    """The input columns a SQL expression names, in order of first use; none when it does not
    parse. A lambda's parameters and what a subquery names are not input columns; of a dotted
    name (``input.total``, ``address.city`` on a struct) the column is the part naming it."""
    import json

    import duckdb

    query = f"SELECT ({expression}) FROM input"
    try:
        cursor = connect_duckdb()
        row = cursor.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    except duckdb.Error:
        return []
    tree = json.loads(row[0]) if row else {}
    if tree.get("error") or len(tree.get("statements", [])) != 1:
        return []
    node = tree["statements"][0]["node"]
    found: list[str] = []
    params: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
            return
        if not isinstance(value, dict):
            return
        kind = value.get("class")
        if kind == "SUBQUERY":
            return
        if kind == "LAMBDA":
            lhs: list[str] = []
            _names(value.get("lhs"), lhs)
            params.update(lhs)
            walk(value.get("expr"))
            return
        if kind == "COLUMN_REF":
            parts = value.get("column_names") or []
            if parts:
                name = parts[1] if parts[0] == "input" and len(parts) > 1 else parts[0]
                if name not in found:
                    found.append(name)
            return
        for key, item in value.items():
            if key != "from_table":
                walk(item)

    walk(node.get("select_list"))
    return [n for n in found if n not in params and not _binds_alone(cursor, n)]


def _binds_alone(cursor: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether ``name`` means something without any table (``current_date``): not a column."""
    import duckdb

    if not name.isidentifier():
        return False
    try:
        cursor.execute(f"SELECT {name}")
    except duckdb.Error:
        return False
    return True


def _names(value: Any, into: list[str]) -> None:
    """The names of the column references inside ``value`` (a lambda's parameters)."""
    if isinstance(value, list):
        for item in value:
            _names(item, into)
    elif isinstance(value, dict):
        if value.get("class") == "COLUMN_REF":
            into.extend(value.get("column_names") or [])
        else:
            for item in value.values():
                _names(item, into)


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


_NUMBER = (
    r"(?:U?(?:TINY|SMALL|BIG|HUGE)?INT(?:EGER)?|INTEGER_LITERAL|DOUBLE|FLOAT|REAL"
    r"|DECIMAL(?:\(\d+,\d+\))?|NUMERIC)"
)
#: DuckDB's words for text meeting a number: a comparison, BETWEEN, arithmetic.
_TEXT_AND_NUMBER = re.compile(
    rf"Cannot compare values of type (?:VARCHAR and type {_NUMBER}|{_NUMBER} and type VARCHAR)"
    rf"|Cannot mix values of type (?:VARCHAR and {_NUMBER}|{_NUMBER} and VARCHAR)"
    rf"|'[^']*\((?:VARCHAR, {_NUMBER}|{_NUMBER}, VARCHAR)\)'"
)


def query_failure(text: str, schema: pa.Schema, shown: Mapping[str, str]) -> QuiverError:
    """The error of a failed query over a batch of ``schema``: DuckDB's message without its
    list of candidate functions, the helper columns of ``shown`` named as the user wrote them
    (never by their internal names), and for text meeting a number, the cast that fixes it."""
    text = text.split("\n\tCandidate functions", 1)[0].strip()
    for helper, name in shown.items():
        text = text.replace(f'"{helper}"', name).replace(helper, name)
    columns = [n for n in schema.names if not is_internal(n) and n not in shown]
    if _TEXT_AND_NUMBER.search(text):
        if shown:
            example = next(iter(shown.values()))
            fix = f"map values such as {', '.join(shown.values())} are text, whatever they hold"
        else:
            example = "column"
            fix = "the column is text"
        return PermanentError.one(
            f"text is compared with or used as a number: {text}",
            "",
            f"{fix}: cast it, e.g. TRY_CAST({example} AS INTEGER) >= 500 (or AS DOUBLE; NULL, "
            f"so false, where the text is not a number), or compare with text: {example} = '500'",
        )
    return PermanentError.one(
        f"query failed: {text}",
        "",
        "check the column names and types in the expression; the batch columns are "
        + ", ".join(columns),
    )


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
        shown: Mapping[str, str] | None = None,
    ) -> pa.Table:
        """The query's result; a PermanentError saying what failed, in which ``shown`` names
        the helper columns a processor added (a map key's column: ``attributes["k"]``)."""
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
            raise query_failure(str(exc), batch.schema, shown or {}) from exc
        finally:
            cursor.close()

    async def run_async(
        self,
        batch: pa.RecordBatch,
        query: str,
        params: Params = None,
        shown: Mapping[str, str] | None = None,
    ) -> pa.Table:
        return await asyncio.to_thread(self.run, batch, query, params, shown)

    def close(self) -> None:
        with self._opening:
            if self._db is not None:
                self._db.close()
                self._db = None
