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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from quiver.pipeline.component import LINE_COLUMN, RowError, is_internal
from quiver.pipeline.json_text import strict_json
from quiver.pipeline.value_text import duration_texts
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError, QuiverError
from quiver.runtime.hints import did_you_mean
from quiver.sql.connect import connect_duckdb
from quiver.sql.dialects import DUCKDB

if TYPE_CHECKING:
    import duckdb

Params = Sequence[Any] | dict[str, Any] | None

__all__ = [
    "EXPLAINED_FAILURES",
    "BatchSql",
    "expression_columns",
    "failed_rows",
    "failure_probe",
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

    from quiver.pipeline.sources.csv import misquoted_body

    try:
        if fmt == "parquet":
            return pq.read_table(path)
        misquoted = misquoted_body(Path(path).read_bytes(), delimiter)
        if misquoted is not None:
            raise pa.ArrowInvalid(misquoted)
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
    import duckdb

    query = f"SELECT ({expression}) FROM input"
    try:
        cursor = connect_duckdb()
        row = cursor.execute("SELECT json_serialize_sql(?)", [query]).fetchone()
    except duckdb.Error:
        return []
    tree = strict_json(row[0]) if row else {}
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
    # DuckDB's excerpt of the query text it ran, which is not the text the user wrote
    text = text.split("\n\nLINE ", 1)[0].strip()
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


def _refuse_unreadable(batch: pa.RecordBatch, step: str) -> None:
    """Refuse the input columns DuckDB cannot read (half floats, decimals of more than 38
    digits or of a negative scale, durations beyond 292 years), each named with its type and
    a fix, rather than DuckDB's own error naming neither."""
    problems = []
    for f in batch.schema:
        kind = f.type
        if pa.types.is_duration(kind) and kind.unit in ("s", "ms"):
            # DuckDB reads durations as microseconds: a count beyond int64 of them fails
            limit = 2**63 // (10**6 if kind.unit == "s" else 10**3)
            counts = batch.column(f.name).cast(pa.int64())
            beyond = pc.or_(pc.greater_equal(counts, limit), pc.less_equal(counts, -limit))
            if not pc.any(beyond).as_py():
                continue
            text = duration_texts(counts.filter(beyond).slice(0, 1).cast(kind))[0].as_py()
            problems.append(
                ErrorDetail(
                    f"column {f.name!r} holds {text}, beyond the 292 years that the {step} "
                    "step's SQL engine (DuckDB) can hold in a duration",
                    f"{step} step",
                    "drop the column before this step with `select`, or bring it back "
                    "after (a `js` or `python` step keeps every value)",
                )
            )
            continue
        if pa.types.is_float16(kind):
            fix = f'cast it to float first (a `cast` step: {{columns: {{{f.name}: "float"}}}})'
        elif pa.types.is_decimal(kind) and (kind.precision > 38 or kind.scale < 0):
            digits = min(38, kind.precision - min(kind.scale, 0))
            scale = max(kind.scale, 0) if kind.precision <= 38 else 0
            fix = (
                f"cast it to decimal({digits},{scale}) first where its values fit (a `cast` "
                "step), or drop it before this step with `select`"
            )
        else:
            continue
        problems.append(
            ErrorDetail(
                f"column {f.name!r} is {kind}, which the {step} step's SQL engine (DuckDB) "
                "cannot read",
                f"{step} step",
                fix,
            )
        )
    if problems:
        raise PermanentError(problems)


_NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def _refuse_inexact_durations(column: pa.Array | pa.ChunkedArray, name: str, step: str) -> None:
    """Refuse a duration or interval column returned by a query when DuckDB, which keeps them
    in microseconds of at most 292 years, could not hold one of its values exactly."""
    if pa.types.is_duration(column.type):
        per = _NS_PER_UNIT[column.type.unit]
        values = [
            None if v is None else (0, 0, v * per) for v in column.cast(pa.int64()).to_pylist()
        ]
    else:
        values = [None if v is None else tuple(v) for v in column.to_pylist()]
    for at, value in enumerate(values):
        if value is None:
            continue
        nanoseconds = value[2]
        if nanoseconds % 1000 or not -(2**63) <= nanoseconds < 2**63:
            text = duration_texts(column.slice(at, 1))[0].as_py()
            raise PermanentError.one(
                f"column {name!r} holds {text}, which the {step} step's "
                "SQL engine (DuckDB) cannot hold exactly (it keeps durations in "
                "microseconds, of at most 292 years)",
                f"{step} step",
                "round the column to microseconds first, or leave it out of the query's "
                "result and add it back after (a `js` or `python` step keeps every value)",
            )


def _restored(column: pa.ChunkedArray, kind: pa.DataType) -> pa.ChunkedArray:
    """``column`` as DuckDB returned it, cast back to the input's ``kind`` exactly (an
    interval back to a duration when it has no months or days and a whole count of the
    unit); ArrowInvalid when a value does not fit."""
    if pa.types.is_duration(kind) and pa.types.is_interval(column.type):
        per = _NS_PER_UNIT[kind.unit]
        counts: list[int | None] = []
        for value in column.to_pylist():
            if value is None:
                counts.append(None)
                continue
            months, days, nanoseconds = value
            if months or days or nanoseconds % per:
                raise pa.ArrowInvalid(f"{value} is not a {kind}")
            counts.append(nanoseconds // per)
        return pa.chunked_array([pa.array(counts, pa.int64()).cast(kind)], kind)
    return column.cast(kind)


def failed_rows(batch: pa.RecordBatch, failed: list[tuple[int, str]]) -> list[RowError]:
    """The rows of ``batch`` a row-wise query failed on (:meth:`BatchSql.run_rowwise`) as
    row errors, with their lines and values."""
    if not failed:
        return []
    lines = batch.column(LINE_COLUMN) if LINE_COLUMN in batch.schema.names else None
    errors = []
    for index, reason in failed:
        row = {
            name: batch.column(name)[index].as_py()
            for name in batch.schema.names
            if not is_internal(name)
        }
        line = lines[index].as_py() if lines is not None else None
        errors.append(RowError(line, reason, row=row))
    return errors


#: How many failing rows of a batch a row-wise query runs alone for their own reasons.
EXPLAINED_FAILURES = 100


def failure_probe(expression: str) -> str:
    """An expression true where ``expression`` fails on its row (DuckDB's ``try`` gives null
    for an error, and the CASE makes a null value of the expression 0, not null)."""
    return f"(try(CASE WHEN ({expression}) IS NULL THEN 0 ELSE 1 END) IS NULL)"


class BatchSql:
    """Runs queries against a batch registered as ``input`` (plus optional extra tables)."""

    def __init__(self, step: str) -> None:
        self.step = step
        self._db: duckdb.DuckDBPyConnection | None = None
        self._opening = threading.Lock()
        self._tables: dict[str, Any] = {}
        self._round_trips: dict[pa.DataType, pa.DataType] = {}

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
        _refuse_unreadable(batch, self.step)
        try:
            result = self._execute(batch, query, params)
        except duckdb.Error as exc:
            raise query_failure(str(exc), batch.schema, shown or {}) from exc
        return self._with_input_types(result, batch)

    def _execute(self, batch: pa.RecordBatch, query: str, params: Params) -> pa.Table:
        """The query's result over ``batch`` as ``input`` (and the extra tables), as DuckDB
        gives it; DuckDB's own error if it fails."""
        cursor = self._database().cursor()
        try:
            cursor.register("input", batch)
            for name, table in self._tables.items():
                cursor.register(name, table)
            return cursor.sql(
                query,
                params=(params if isinstance(params, dict) else list(params)) if params else None,
            ).to_arrow_table()
        finally:
            cursor.close()

    def run_rowwise(
        self,
        batch: pa.RecordBatch,
        query: str,
        params: Params = None,
        shown: Mapping[str, str] | None = None,
        probe: str | None = None,
    ) -> tuple[pa.Table, list[tuple[int, str]]]:
        """The result of a query computing each row from that row alone (an expression per
        row: derive, filter), one result row per input row but those failing, and the rows
        that failed (index in ``batch``, why): a value the expression cannot take (a division
        by zero, text that does not cast, an overflow) rejects its row rather than the batch.

        Only a failing batch costs more. ``probe`` is a query giving, for each input row in
        order, one boolean column: whether the expression fails on it (DuckDB's ``try``); it
        finds every failing row in one pass. The first :data:`EXPLAINED_FAILURES` failing rows
        of a batch are run alone for their own reason; the others of the batch are given the
        first one's. Without a probe, or where it cannot run (``try`` takes no subquery), each
        failing row is found by halving the rows before it, for at most
        :data:`EXPLAINED_FAILURES` rows of a batch; past them the batch fails. A query that also
        fails on a row of nulls fails for its own sake (a misspelt column, a constant that does
        not cast): it is raised as it is."""
        try:
            return self.run(batch, query, params, shown), []
        except PermanentError:
            if not batch.num_rows or self._fails_on_nulls(batch.schema, query, params, shown):
                raise  # no row to blame, or it fails whatever the values: the query is at fault
            flags = self._probe(batch, probe, params) if probe is not None else None
            if flags is None:
                return self._rowwise_by_halving(batch, query, params, shown)
        failing = np.flatnonzero(flags)
        if not failing.size:  # not one row's failure: found, or raised, row by row
            return self._rowwise_by_halving(batch, query, params, shown)
        failed = []
        first: str | None = None
        for n, index in enumerate(failing.tolist()):
            why = None
            if n < EXPLAINED_FAILURES:
                why = self._failure(batch.slice(index, 1), query, params, shown)
            if why is None:
                why = "the expression cannot be computed for this row"
                if first is not None:
                    why += f"; on the first row of its batch it failed with: {first}"
            first = first or why
            failed.append((index, why))
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[failing] = False
        return self.run(batch.filter(pa.array(keep)), query, params, shown), failed

    def _probe(self, batch: pa.RecordBatch, probe: str, params: Params) -> np.ndarray | None:
        """The probe's flags for ``batch`` (True: the expression fails on the row), or None
        when the probe cannot run."""
        import duckdb

        try:
            result = self._execute(batch, probe, params)
        except duckdb.Error:
            return None
        if result.num_rows != batch.num_rows or result.num_columns != 1:
            return None
        flags: np.ndarray = (
            result.column(0).combine_chunks().fill_null(True).to_numpy(zero_copy_only=False)
        )
        return flags

    def _rowwise_by_halving(
        self,
        batch: pa.RecordBatch,
        query: str,
        params: Params,
        shown: Mapping[str, str] | None,
    ) -> tuple[pa.Table, list[tuple[int, str]]]:
        failed: list[tuple[int, str]] = []
        parts: list[pa.Table] = []
        start = 0
        while start < batch.num_rows or not parts:
            rest = batch.slice(start)
            try:
                parts.append(self.run(rest, query, params, shown))
                break
            except PermanentError:
                if not rest.num_rows or len(failed) >= EXPLAINED_FAILURES:
                    raise
                found = self._first_failing_row(rest, query, params, shown)
                if found is None:
                    raise
                bad, why = found
                at = start + bad
                if bad:
                    parts.append(self.run(rest.slice(0, bad), query, params, shown))
                failed.append((at, why))
                start = at + 1
        return pa.concat_tables(parts, promote_options="default"), failed

    def _fails_on_nulls(
        self,
        schema: pa.Schema,
        query: str,
        params: Params,
        shown: Mapping[str, str] | None,
    ) -> bool:
        """Whether the query fails on a row holding nothing but nulls."""
        try:
            nulls = pa.RecordBatch.from_pylist([{}], schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # a column that holds no nulls
            return False
        return self._failure(nulls, query, params, shown) is not None

    def _failure(
        self,
        rows: pa.RecordBatch,
        query: str,
        params: Params,
        shown: Mapping[str, str] | None,
    ) -> str | None:
        """Why the query fails on ``rows``, or None when it runs."""
        try:
            self.run(rows, query, params, shown)
        except PermanentError as exc:
            return exc.details[0].message if exc.details else str(exc)
        return None

    def _first_failing_row(
        self,
        rows: pa.RecordBatch,
        query: str,
        params: Params,
        shown: Mapping[str, str] | None,
    ) -> tuple[int, str] | None:
        """The first row of ``rows`` (on all of which the query fails) on which it fails
        alone, with why, found by halving the rows before it; None when no row fails alone
        (the failure is not one row's)."""
        low, high = 1, rows.num_rows  # the shortest failing prefix is within [low, high]
        while low < high:
            middle = (low + high) // 2
            if self._failure(rows.slice(0, middle), query, params, shown) is None:
                low = middle + 1
            else:
                high = middle
        why = self._failure(rows.slice(low - 1, 1), query, params, shown)
        return None if why is None else (low - 1, why)

    async def run_rowwise_async(
        self,
        batch: pa.RecordBatch,
        query: str,
        params: Params = None,
        shown: Mapping[str, str] | None = None,
        probe: str | None = None,
    ) -> tuple[pa.Table, list[tuple[int, str]]]:
        return await asyncio.to_thread(self.run_rowwise, batch, query, params, shown, probe)

    def _round_trip_type(self, kind: pa.DataType) -> pa.DataType:
        """The type DuckDB gives back for an input column of type ``kind`` selected as it is."""
        known = self._round_trips.get(kind)
        if known is None:
            cursor = self._database().cursor()
            try:
                cursor.register("input", pa.record_batch({"c": pa.array([], kind)}))
                known = cursor.sql("SELECT * FROM input").to_arrow_table().schema.field(0).type
            finally:
                cursor.close()
            self._round_trips[kind] = known
        return known

    def _with_input_types(self, result: pa.Table, batch: pa.RecordBatch) -> pa.Table:
        """``result`` with each column that has the name of an input column and the type DuckDB
        turns that column's type into (a ``time32[s]`` comes back ``time64[us]``, a zoned
        timestamp in UTC, a duration as an interval) cast back to the input's type, so a column
        a query passes through keeps its type as well as its values. A value the input type
        cannot hold keeps DuckDB's type; durations and intervals DuckDB cannot hold exactly
        (nanoseconds, more than 292 years) are refused rather than passed on changed."""
        given = batch.schema
        for at, name in enumerate(result.schema.names):
            if name not in given.names or is_internal(name):
                continue
            want = given.field(name).type
            got = result.schema.field(at).type
            if pa.types.is_interval(got) and (
                pa.types.is_duration(want) or pa.types.is_interval(want)
            ):
                _refuse_inexact_durations(batch.column(name), name, self.step)
            if got == want or got != self._round_trip_type(want):
                continue
            try:
                column = _restored(result.column(at), want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
                continue
            result = result.set_column(at, name, column)
        return result

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
