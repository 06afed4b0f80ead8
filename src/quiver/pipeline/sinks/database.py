"""The ``database`` sink: write rows into a PostgreSQL, MariaDB/MySQL or SQLite table.

The whole run is one transaction of the run's own connection: ``commit`` commits it and
``abort`` rolls it back, so a failed or interrupted run leaves the target exactly as it was.
``append``, ``truncate`` and ``create`` load every batch straight into the target inside that
transaction (PostgreSQL ``COPY``, MariaDB/MySQL ``LOAD DATA LOCAL INFILE``, SQLite bulk
insert), creating the table first when it is missing. ``replace`` and ``upsert``, and loads
the target's column types cannot take as they are, go through a private staging table (a
temporary table of the same connection) that ``commit`` moves into the target.

Modes:

``create``
    the table must not exist; it is created from the incoming schema.
``append``
    rows are added; the table is created when missing.
``replace``
    the table is swapped for one holding exactly this run's rows (created from the
    incoming schema), atomically.
``truncate``
    the table keeps its definition (types, defaults, indexes, grants) and its rows are
    replaced by this run's, in one transaction; it is created when missing.
``upsert``
    rows whose ``keys`` match an existing row update it (only the incoming columns),
    the others are inserted; within one run the last row for a key wins. The table is
    created when missing, with a unique index on ``keys``. On MariaDB/MySQL an existing
    table needs a unique index on exactly ``keys``.

PostgreSQL and SQLite use ADBC bulk ingestion (COPY for PostgreSQL); MariaDB/MySQL loads a
tab-separated file the run writes with Arrow compute functions (``LOAD DATA LOCAL INFILE``)
and checks the server's warnings, so no value is changed on the way.

Values a database has no column type for are written as text: nested values (structs and
maps; on SQLite lists too) as JSON text (``jsonb`` on PostgreSQL, ``JSON`` on MariaDB/MySQL),
durations and intervals on SQLite and intervals on MariaDB/MySQL as ISO 8601 durations.
Values a database cannot hold are refused with their input line: NaN in SQLite (infinities
are kept), NaN and infinities in MariaDB/MySQL, unsigned integers beyond int64 in SQLite and
PostgreSQL. A lost connection ends the run: its
transaction is gone, so nothing was written and nothing is retried on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import os
import queue
import re
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator, model_validator

from quiver.pipeline.component import (
    LINE_COLUMN,
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    RunContext,
    internal_column,
    schema_without_line,
    sink,
    without_line,
)
from quiver.pipeline.json_text import json_strings
from quiver.pipeline.value_text import duration_texts
from quiver.runtime.errors import (
    ConfigError,
    ErrorDetail,
    PermanentError,
    QuiverError,
)
from quiver.sql.adbc_stream import connect_postgresql_adbc
from quiver.sql.connect import connect_adbc, connect_mysql_bulk, database_error
from quiver.sql.dialects import IdentifierError, check_identifier, dialect_for, split_table_name
from quiver.sql.url import parse_database_url

__all__ = ["DatabaseSink", "DatabaseSinkConfig"]

_SEQ = internal_column("seq")
#: Modes whose rows go straight into the target (where its type allows): the others build
#: a new table (``replace``, swapped in at commit so readers are not locked out meanwhile)
#: or merge (``upsert``) from the staging table.
_DIRECT_MODES = ("append", "truncate", "create")


class DatabaseSinkConfig(ComponentConfig):
    """Write into a table, all of the run or nothing."""

    url: str = Field(
        description="Database URL: postgresql://user:pw@host:5432/db, mysql://user@host/db "
        "(also mariadb://) or sqlite:///relative/file.db (resolved against the pipeline file)."
    )
    table: str = Field(description="Target table, optionally qualified: `schema.table`.")
    mode: Literal["create", "append", "replace", "truncate", "upsert"] = Field(
        "append",
        description="create (must not exist), append (create when missing), replace (swap "
        "for a new table atomically), truncate (empty the table, keeping its definition, and "
        "insert) or upsert (update rows matching `keys`, insert the others).",
    )
    keys: list[str] = Field(
        default_factory=list, description="Key columns of `upsert` (required for that mode)."
    )
    batch_rows: int = Field(
        100_000,
        ge=1,
        description="Most rows per bulk-load statement on MariaDB/MySQL (`LOAD DATA LOCAL "
        "INFILE`, or multi-row INSERTs where the server refuses local files).",
    )

    @field_validator("table")
    @classmethod
    def _table_name(cls, table: str) -> str:
        _split_table(table)  # an IdentifierError is a ValueError: pydantic reports it
        return table

    @field_validator("keys")
    @classmethod
    def _key_names(cls, keys: list[str]) -> list[str]:
        return [check_identifier(k) for k in keys]

    @model_validator(mode="after")
    def _keys_for_upsert(self) -> DatabaseSinkConfig:
        if self.mode == "upsert" and not self.keys:
            raise ValueError("mode `upsert` needs `keys`: the columns that identify a row")
        if self.mode != "upsert" and self.keys:
            raise ValueError(f"`keys` only applies to mode `upsert`, not `{self.mode}`")
        return self


def _split_table(name: str) -> tuple[str | None, str]:
    """``schema.table`` -> ``("schema", "table")``; ``table`` -> ``(None, "table")``."""
    parts = split_table_name(name)
    if len(parts) > 2:
        raise IdentifierError(
            [
                ErrorDetail(
                    f"the table name {name!r} has {len(parts)} parts",
                    "table name",
                    "write `table` or `schema.table`",
                )
            ]
        )
    return (parts[0] if len(parts) == 2 else None), parts[-1]


def _plain(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """Drop the line column and decode dictionary columns: what the database receives."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    table = without_line(table)
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, pc.cast(table.column(i), f.type.value_type))
    return table


@sink("database", config=DatabaseSinkConfig)
class DatabaseSink(ColumnBound):
    """Rows into a PostgreSQL, MariaDB/MySQL or SQLite table, in one transaction per run."""

    def __init__(self, cfg: DatabaseSinkConfig) -> None:
        self.cfg = cfg
        self.url = parse_database_url(cfg.url)
        self.db_schema, self.table = _split_table(cfg.table)
        self.stage = f"_quiver_stage_{uuid.uuid4().hex[:12]}"
        self._backend: _Backend | None = None
        self._seq = 0
        self.columns: list[str] = []
        self.schema = pa.schema([])
        #: integer columns going into existing floating-point columns: type, significand bits
        self._float_columns: dict[str, tuple[str, int]] = {}

    def columns_used(self) -> list[ColumnUse]:
        return [ColumnUse(key, ("keys", i)) for i, key in enumerate(self.cfg.keys)]

    async def open(self, schema: pa.Schema, ctx: RunContext) -> None:
        names = schema_without_line(schema).names
        if not names:  # no batch reached the sink: no rows, and no columns to build a table of
            ctx.log(
                f"sink database {self.cfg.table}: no rows arrived; the table is left as it was",
                "warning",
            )
            self._backend = _NothingToWrite()
            return
        missing = [k for k in self.cfg.keys if k not in names]
        if missing:
            raise ConfigError.one(
                f"upsert key column(s) {missing} are not in the incoming rows {names}",
                f"sink database {self.cfg.table}: keys",
                "name columns that the previous step produces, or add them with `derive`",
            )
        self.columns = names
        # (Schema.empty_table imports pandas; a table from no batches does not)
        empty = _plain(pa.Table.from_batches([], schema=schema))
        self.schema = empty.schema
        backend: _Backend = (
            _MysqlBackend(self) if self.url.dialect == "mysql" else _AdbcBackend(self, ctx)
        )
        await backend.open(self._staged(empty))
        self._backend = backend
        self._float_columns = (
            {}
            if self.cfg.mode == "replace"
            else _float_columns(self.url.dialect, await backend.column_types(), self.schema)
        )

    def _staged(self, table: pa.Table) -> pa.Table:
        if self.cfg.mode != "upsert":
            return table
        seq = pa.array(range(self._seq, self._seq + table.num_rows), pa.int64())
        self._seq += table.num_rows
        return table.append_column(_SEQ, seq)

    async def write(self, batch: pa.RecordBatch) -> None:
        assert self._backend is not None, "write() before open()"
        table = _plain(batch)
        for key in self.cfg.keys:
            nulls = table.column(key).null_count
            if nulls:
                raise PermanentError.one(
                    f"upsert key column {key!r} is null in {nulls} row(s)"
                    + _at_lines(batch, pc.is_null(table.column(key))),
                    f"sink database {self.cfg.table}",
                    "filter out or fill rows without a key before this sink",
                )
        self._refuse_unstorable_floats(batch, table)
        self._refuse_unstorable_integers(batch, table)
        self._refuse_rounded_integers(batch, table)
        if table.num_rows:
            lines = (
                batch.column(batch.schema.get_field_index(LINE_COLUMN))
                if LINE_COLUMN in batch.schema.names
                else None
            )
            await self._backend.write(self._staged(table), lines)

    def _refuse_unstorable_floats(self, batch: pa.RecordBatch, table: pa.Table) -> None:
        """NaN in SQLite (which stores it as NULL), NaN and infinities in MariaDB/MySQL (which
        cannot store them): refused with the input lines, never turned into something else."""
        dialect = self.url.dialect
        if dialect == "postgresql":
            return  # double precision and real hold both
        for name, column in zip(table.column_names, table.columns, strict=True):
            if not pa.types.is_floating(column.type):
                continue
            if dialect == "sqlite":
                bad, what = pc.is_nan(column), "NaN"
            else:
                bad, what = pc.invert(pc.is_finite(column)), "NaN or infinity"
            self._refuse_rows(
                batch,
                name,
                column,
                bad,
                lambda v: "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"),
                f"{_DIALECT_NAMES[dialect]} cannot store {what}",
                "replace or filter these values before this sink (e.g. a `derive` "
                "setting them to null), or write to PostgreSQL, which stores them",
            )

    def _refuse_unstorable_integers(self, batch: pa.RecordBatch, table: pa.Table) -> None:
        """SQLite integers and the PostgreSQL ``bigint`` an unsigned 64-bit column is loaded as
        are signed 64-bit: a larger value is refused with its input lines before anything is
        written, never wrapped to a negative number."""
        dialect = self.url.dialect
        if dialect == "mysql":
            return  # BIGINT UNSIGNED holds every uint64
        where = "SQLite" if dialect == "sqlite" else "PostgreSQL (as bigint)"
        other = (
            "PostgreSQL into a numeric column"
            if dialect == "sqlite"
            else "MariaDB/MySQL (BIGINT UNSIGNED)"
        )
        for name, column in zip(table.column_names, table.columns, strict=True):
            if column.type != pa.uint64():
                continue
            self._refuse_rows(
                batch,
                name,
                column,
                pc.greater(column, pa.scalar(2**63 - 1, pa.uint64())),
                str,
                f"{where} stores integers up to {2**63 - 1}",
                "cast the column to a decimal or text before this sink (a `cast` step), "
                f"or write to {other}",
            )

    def _refuse_rounded_integers(self, batch: pa.RecordBatch, table: pa.Table) -> None:
        """Integers (of any width, signed or not) going into an existing floating-point
        column that would round them: refused with their input lines before anything is
        written, never stored as another number."""
        for name, (declared, bits) in self._float_columns.items():
            column = table.column(name)
            as_float = pc.cast(column, pa.float32() if bits == 24 else pa.float64(), safe=False)
            back = pc.cast(pc.cast(as_float, pa.float64()), column.type, safe=False)
            self._refuse_rows(
                batch,
                name,
                column,
                pc.not_equal(back, column),
                str,
                f"the table's column is {declared}, which holds integers exactly only up to "
                f"{2**bits} and would store another number",
                "change the column to an integer or decimal type, or cast the values to a "
                "float before this sink (a `cast` step) to store them rounded",
            )

    def _refuse_rows(
        self,
        batch: pa.RecordBatch,
        name: str,
        column: pa.ChunkedArray,
        bad: Any,
        shown: Callable[[Any], str],
        why: str,
        fix: str,
    ) -> None:
        """Refuse the run when ``bad`` selects any row of ``column``: the first such value
        (``shown``), how many, their input lines, ``why`` the database cannot store them."""
        bad = pc.fill_null(bad, False)
        count = pc.sum(bad).as_py() or 0
        if not count:
            return
        first = pc.filter(column, bad)[0].as_py()
        raise PermanentError.one(
            f"column {name!r} holds {shown(first)} in {count} row(s)"
            + _at_lines(batch, bad)
            + f"; {why}",
            f"sink database {self.cfg.table}",
            fix,
        )

    async def commit(self) -> None:
        backend, self._backend = self._backend, None
        if backend is None:
            raise PermanentError.one(
                "nothing to commit: the run's staged rows are gone after a failed commit",
                f"sink database {self.cfg.table}",
                "check the table, then run the pipeline again",
            )
        # Every failure here is permanent: the transaction is gone with it, a retry of the
        # commit alone cannot bring the rows back.
        await backend.commit()

    async def abort(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            await backend.abort()


_DIALECT_NAMES = {"sqlite": "SQLite", "mysql": "MariaDB/MySQL", "postgresql": "PostgreSQL"}


def _float_bits(dialect: str, declared: str) -> int | None:
    """The significand bits of a floating-point column type as ``dialect`` declares it (the
    integers it holds exactly reach 2 to that power); None for other types."""
    t = declared.strip().lower()
    if dialect == "postgresql":
        return {"real": 24, "double precision": 53}.get(t)
    if dialect == "mysql":  # COLUMN_TYPE: FLOAT(p) is float up to p = 24, double beyond
        return (
            24 if re.fullmatch(r"float(\(.*\))?", t) else (53 if t.startswith("double") else None)
        )
    # SQLite: REAL affinity (an 8-byte double) unless an earlier affinity rule applies
    if "int" in t or any(w in t for w in ("char", "clob", "text", "blob")):
        return None
    return 53 if any(w in t for w in ("real", "floa", "doub")) else None


def _float_columns(
    dialect: str, types: dict[str, str], schema: pa.Schema
) -> dict[str, tuple[str, int]]:
    """The integer columns of ``schema`` whose target column (of ``types``) is floating
    point: its declared type and significand bits."""
    found: dict[str, tuple[str, int]] = {}
    for f in schema:
        if not pa.types.is_integer(f.type) or f.name not in types:
            continue
        bits = _float_bits(dialect, types[f.name])
        if bits is not None:
            found[f.name] = (types[f.name], bits)
    return found


_LINES_SHOWN = 10


def _at_lines(batch: pa.RecordBatch, mask: Any) -> str:
    """ ", at input line(s) 3, 9" for the rows of ``batch`` selected by ``mask``."""
    if LINE_COLUMN not in batch.schema.names:
        return ""
    lines = [
        n
        for n in pc.filter(batch.column(batch.schema.get_field_index(LINE_COLUMN)), mask)
        .slice(0, _LINES_SHOWN + 1)
        .to_pylist()
        if n is not None
    ]
    if not lines:
        return ""
    shown = ", ".join(str(n) for n in lines[:_LINES_SHOWN])
    more = ", ..." if len(lines) > _LINES_SHOWN else ""
    return f", at input line(s) {shown}{more}"


class _Backend:
    async def open(self, empty: pa.Table) -> None: ...
    async def column_types(self) -> dict[str, str]:
        """The existing target's column types as the database names them (empty: none)."""
        return {}

    async def write(self, table: pa.Table, lines: pa.Array | None) -> None: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


class _NothingToWrite(_Backend):
    """The run's input was empty: nothing is connected to, written or committed."""


def _error(
    exc: BaseException, sink_: DatabaseSink, doing: str, *, in_transaction: bool = False
) -> QuiverError:
    return database_error(
        exc, sink_.url, f"{doing} table {sink_.cfg.table!r}", in_transaction=in_transaction
    )


class _UnconfirmedCommitError(Exception):
    """The COMMIT itself failed: whether the server applied it is unknown."""


def _confirm(commit: Any) -> None:
    try:
        commit()
    except Exception as exc:
        raise _UnconfirmedCommitError from exc


def _unconfirmed(exc: _UnconfirmedCommitError, sink_: DatabaseSink) -> QuiverError:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return PermanentError(
        [
            *database_error(cause, sink_.url, f"committing table {sink_.cfg.table!r}").details,
            ErrorDetail(
                "the commit was sent but not confirmed: the rows may or may not be in the table",
                f"sink database {sink_.cfg.table}",
                "check whether the rows arrived, then run the pipeline again if they did not",
            ),
        ]
    )


#: PostgreSQL column types (``format_type``) that ADBC's binary COPY writes each Arrow type as.
_PG_AS_IS: list[tuple[Any, str]] = [
    (pa.types.is_int64, r"bigint"),
    (pa.types.is_int32, r"integer"),
    (pa.types.is_int16, r"smallint"),
    (pa.types.is_float64, r"double precision"),
    (pa.types.is_float32, r"real"),
    (pa.types.is_boolean, r"boolean"),
    (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), r"text|character varying.*"),
    (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), r"bytea"),
    (pa.types.is_date32, r"date"),
    (lambda t: pa.types.is_time64(t), r"time(\(\d\))? without time zone"),
    (
        lambda t: pa.types.is_timestamp(t) and t.tz is None,
        r"timestamp(\(\d\))? without time zone",
    ),
    (
        lambda t: pa.types.is_timestamp(t) and t.tz is not None,
        r"timestamp(\(\d\))? with time zone",
    ),
]


#: Integer columns an Arrow integer is narrowed to (a value out of range is refused).
_PG_INTEGERS = {"bigint": pa.int64(), "integer": pa.int32(), "smallint": pa.int16()}


def _pg_copy_type(arrow: pa.DataType, column_type: str) -> pa.DataType | None:
    """The Arrow type to COPY a column as into a PostgreSQL column of ``column_type``, or
    None when only a cast inside the database converts it (text into a number column)."""
    if pa.types.is_integer(arrow) and column_type in _PG_INTEGERS:
        return _PG_INTEGERS[column_type]
    if any(test(arrow) and re.fullmatch(sql, column_type) for test, sql in _PG_AS_IS):
        return arrow
    return None


def _exists_error(sink_: DatabaseSink) -> QuiverError:
    return PermanentError.one(
        f"table {sink_.cfg.table!r} already exists and mode is `create`",
        f"sink database {sink_.url.redacted()}",
        "use mode: append, replace or upsert, or drop the table first",
    )


def _pg_json(t: pa.DataType) -> bool:
    """Whether PostgreSQL takes the Arrow type as JSON: structs and maps (and lists of them)
    have no column type a bulk load can write them as; lists of other values are arrays."""
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _pg_json(t.value_type)
    return False


def _stored_values(table: pa.Table, sqlite: bool) -> pa.Table:
    """The columns as the bulk load writes them: what the database has no type for as text.

    SQLite stores exact decimals as text (it has no decimal type; REAL would round them),
    times of day as ``HH:MM:SS.ffffff`` text, the form its time functions read, nested values
    (lists, structs, maps) as JSON text and durations and intervals as ISO 8601 durations.
    PostgreSQL takes structs and maps as JSON text (into ``jsonb``)."""
    for i, f in enumerate(table.schema):
        t, column = f.type, table.column(i)
        if sqlite and (pa.types.is_decimal(t) or pa.types.is_time(t)):
            table = table.set_column(i, f.name, pc.cast(column, pa.string()))
        elif (sqlite and pa.types.is_nested(t)) or (not sqlite and _pg_json(t)):
            table = table.set_column(i, f.name, json_strings(column))
        elif sqlite and (pa.types.is_duration(t) or pa.types.is_interval(t)):
            table = table.set_column(i, f.name, duration_texts(column))
    return table


def _sqlite_type(t: pa.DataType) -> str:
    """The declared type of a new SQLite column: its affinity stores the value as the sink
    writes it, and its name tells the database source the Arrow type to read it back as
    (decimals are text: a NUMERIC affinity would round them through REAL)."""
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "REAL"
    if pa.types.is_decimal(t):
        return f"TEXT_DECIMAL({t.precision}, {t.scale})"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz is not None else "TIMESTAMP"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "BLOB"
    return "TEXT"


class _LoadCancelledError(Exception):
    """Ends a bulk load that the run abandons (the transaction is rolled back)."""


class _IngestStream:
    """One bulk load fed batch by batch: ADBC runs a single ``COPY`` (PostgreSQL) or insert
    statement (SQLite) in a thread of its own, reading batches from a small queue as
    ``write`` hands them over. One statement for the run rather than one per batch: each
    ingest call costs a round of catalog queries and statement set-up."""

    _END = object()

    def __init__(
        self, conn: Any, schema: pa.Schema, table: str, db_schema: str | None, temporary: bool
    ) -> None:
        self.schema = schema
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.cancelled = False
        self.thread = threading.Thread(
            target=self._run, args=(conn, table, db_schema, temporary), daemon=True
        )
        self.thread.start()

    def _batches(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if self.cancelled:
                raise _LoadCancelledError("the run was abandoned")
            yield from item.to_batches()

    def _run(self, conn: Any, table: str, db_schema: str | None, temporary: bool) -> None:
        cur = conn.cursor()
        try:
            reader = pa.RecordBatchReader.from_batches(self.schema, self._batches())
            if temporary:
                cur.adbc_ingest(table, reader, mode="append", temporary=True)
            else:
                cur.adbc_ingest(table, reader, mode="append", db_schema_name=db_schema)
        except BaseException as exc:  # handed to the caller of put/finish
            self.error = exc
        finally:
            with contextlib.suppress(Exception):
                cur.close()

    def _hand(self, item: Any) -> None:
        while True:
            if self.error is not None:
                raise self.error
            if not self.thread.is_alive():
                raise RuntimeError("the bulk load ended before all rows were handed over")
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def put(self, table: pa.Table) -> None:
        if table.schema != self.schema:
            table = table.cast(self.schema)
        self._hand(table)

    def finish(self) -> None:
        """Wait for the load to take every row handed over; raise its error, if any."""
        self._hand(self._END)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def cancel(self) -> bool:
        """Abandon the load; whether it has ended (within 30 s)."""
        self.cancelled = True
        with contextlib.suppress(Exception):
            while True:
                self.queue.get_nowait()
        with contextlib.suppress(Exception):
            self.queue.put(pa.table({}), timeout=1)  # wakes the load, which then gives up
        self.thread.join(timeout=30)
        return not self.thread.is_alive()


class _AdbcBackend(_Backend):
    """PostgreSQL and SQLite: one ADBC connection, autocommit off, for the whole run."""

    def __init__(self, sink_: DatabaseSink, ctx: RunContext) -> None:
        self.s = sink_
        self.ctx = ctx
        self.sqlite = sink_.url.dialect == "sqlite"
        self.dialect = dialect_for(sink_.url.dialect)
        self.q = self.dialect.quote_ident
        self.conn: Any = None
        self.direct = False  # appending straight into the target
        self.stream: _IngestStream | None = None  # the bulk load of this run's rows
        self.casts: dict[str, pa.DataType] = {}  # integers narrowed to the target's columns
        # The columns as the bulk load writes them, and those PostgreSQL stores as jsonb.
        empty = pa.Table.from_batches([], schema=sink_.schema)
        self.schema = _stored_values(empty, self.sqlite).schema
        self.json = [] if self.sqlite else [f.name for f in sink_.schema if _pg_json(f.type)]

    def _sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.cursor()
        try:
            cur.execute(statement, params or None)
            rows: list[tuple[Any, ...]] = cur.fetchall() if cur.description else []
            return rows
        finally:
            cur.close()

    def _target(self) -> str:
        return self.dialect.quote_table(self.s.cfg.table)

    def _stage(self) -> str:
        return ("temp." if self.sqlite else "") + self.q(self.s.stage)

    def _open(self, empty: pa.Table) -> None:
        if self.sqlite:
            self.conn = connect_adbc(self.s.url, self.ctx.base_dir, autocommit=False)
        else:  # without the DB-API module's imports (see quiver.sql.adbc_stream)
            self.conn = connect_postgresql_adbc(self.s.url, autocommit=False)
        if self.s.cfg.mode in _DIRECT_MODES and self._can_load_directly():
            self.direct = True
            return
        self._stage_rows(empty, "create")

    def _can_load_directly(self) -> bool:
        """Whether the batches can go straight into the target, inside the run's transaction:
        it is missing (and is created now) or it is a table whose column types take every
        incoming column as the bulk load writes it (a ``truncate`` then empties it now).
        Otherwise the staging table casts them at commit."""
        existing = self._target_columns()
        if existing is None:
            if self.json:  # a bulk load cannot write jsonb: through staging, cast at commit
                return False
            self._create_target()
            return True
        if self.s.cfg.mode == "create":
            raise _exists_error(self.s)
        self._check_columns(existing)
        if not self._is_plain_table():
            return False  # a view (with its triggers or rules) takes INSERT, not a bulk load
        if not self.sqlite:
            for f in self.schema:
                target = _pg_copy_type(f.type, existing[f.name])
                if target is None:
                    return False
                if target != f.type:
                    self.casts[f.name] = target
        if self.s.cfg.mode == "truncate":
            self._sql(f"DELETE FROM {self._target()}")  # TRUNCATE would not roll back
        return True

    def _is_plain_table(self) -> bool:
        if self.sqlite:
            schema = self.q(self.s.db_schema or "main")
            rows = self._sql(
                f"SELECT type FROM {schema}.sqlite_master WHERE name = ?", (self.s.table,)
            )
            return bool(rows) and rows[0][0] == "table"
        rows = self._sql(
            "SELECT relkind FROM pg_class WHERE oid = to_regclass($1)", (self._target(),)
        )
        return bool(rows) and rows[0][0] in ("r", "p")  # a table, or a partitioned one

    def _check_columns(self, existing: dict[str, str]) -> None:
        unknown = [c for c in self.s.columns if c not in existing]
        if unknown:
            raise PermanentError.one(
                f"column(s) {unknown} do not exist in table {self.s.cfg.table!r} "
                f"(it has {list(existing)})",
                f"sink database {self.s.url.redacted()}",
                "rename or drop them with `rename`/`select`, add them to the table, "
                "or use mode: replace",
            )

    def _stage_rows(self, table: pa.Table, mode: str) -> None:
        """Create the temporary staging table (``create``) or add rows to it (``append``)."""
        table = _stored_values(table, self.sqlite)
        cur = self.conn.cursor()
        try:
            cur.adbc_ingest(self.s.stage, table, mode=mode, temporary=True)
        finally:
            cur.close()

    async def open(self, empty: pa.Table) -> None:
        try:
            await asyncio.to_thread(self._open, empty)
        except Exception as exc:
            await self.abort()
            raise _error(exc, self.s, "preparing") from exc

    def _load(self, table: pa.Table, lines: pa.Array | None) -> None:
        table = _stored_values(table, self.sqlite)
        for name, target in self.casts.items():
            table = table.set_column(
                table.schema.get_field_index(name), name, self._narrow(table, name, target, lines)
            )
        if self.stream is None:
            if self.direct:
                into, db_schema, temporary = self.s.table, self.s.db_schema, False
            else:
                into, db_schema, temporary = self.s.stage, None, True
            self.stream = _IngestStream(self.conn, table.schema, into, db_schema, temporary)
        self.stream.put(table)

    def _narrow(
        self, table: pa.Table, name: str, target: pa.DataType, lines: pa.Array | None
    ) -> pa.ChunkedArray:
        column = table.column(name)
        try:
            return pc.cast(column, target)
        except pa.ArrowInvalid:
            bounds = pc.min_max(column).as_py()
            low, high = bounds["min"], bounds["max"]
            info = np.iinfo(target.to_pandas_dtype())
            bad = pc.or_(pc.less(column, int(info.min)), pc.greater(column, int(info.max)))
            first = pc.filter(column, pc.fill_null(bad, False))[0].as_py()
            at = ""
            if lines is not None:
                hit = pc.filter(lines, pc.fill_null(bad, False).combine_chunks())
                at = f" at input line {hit[0].as_py()}" if len(hit) else ""
            raise PermanentError.one(
                f"column {name!r} holds {first}{at}, out of the range of the table's column "
                f"type ({low}..{high} given, {info.min}..{info.max} fit)",
                f"sink database {self.s.cfg.table}",
                "widen the column (e.g. bigint), or filter the rows before this sink; "
                "nothing was written",
            ) from None

    async def write(self, table: pa.Table, lines: pa.Array | None) -> None:
        try:
            await asyncio.to_thread(self._load, table, lines)
        except Exception as exc:
            # A failed statement ends the transaction (PostgreSQL) or the connection is
            # gone: the rows written so far cannot be kept, a retry cannot help.
            raise _error(exc, self.s, "loading rows into", in_transaction=True) from exc

    def _end_load(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            stream.finish()

    async def column_types(self) -> dict[str, str]:
        return await asyncio.to_thread(self._target_columns) or {}

    def _target_columns(self) -> dict[str, str] | None:
        """Existing target columns and their SQL types, or None when there is no table."""
        if self.sqlite:
            schema = self.s.db_schema or "main"
            rows = self._sql(
                "SELECT name, type FROM pragma_table_info(?, ?)", (self.s.table, schema)
            )
            return {r[0]: r[1] for r in rows} or None
        rows = self._sql(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (self._target(),),
        )
        return {r[0]: r[1] for r in rows} or None

    def _create_target(self) -> None:
        if self.sqlite:  # declared types, so that the source reads the values back as written
            columns = ", ".join(f"{self.q(f.name)} {_sqlite_type(f.type)}" for f in self.s.schema)
            self._sql(f"CREATE TABLE {self._target()} ({columns})")
        else:
            cur = self.conn.cursor()
            try:
                cur.adbc_ingest(
                    self.s.table,
                    pa.Table.from_batches([], schema=self.schema),
                    mode="create",
                    db_schema_name=self.s.db_schema,
                )
            finally:
                cur.close()
        if not self.sqlite:  # ADBC creates an unconstrained numeric: keep precision and scale
            for f in self.s.schema:
                if pa.types.is_decimal(f.type):
                    self._sql(
                        f"ALTER TABLE {self._target()} ALTER COLUMN {self.q(f.name)} "
                        f"TYPE numeric({min(f.type.precision, 1000)}, {f.type.scale})"
                    )
            for name in self.json:  # created as text: the JSON text of structs and maps
                self._sql(
                    f"ALTER TABLE {self._target()} ALTER COLUMN {self.q(name)} "
                    f"TYPE jsonb USING {self.q(name)}::jsonb"
                )
        if self.s.cfg.mode == "upsert":
            index = self.q(f"{self.s.table}_quiver_key")
            if self.sqlite and self.s.db_schema:
                index = f"{self.q(self.s.db_schema)}.{index}"
            keys = ", ".join(self.q(k) for k in self.s.cfg.keys)
            self._sql(f"CREATE UNIQUE INDEX {index} ON {self._target()} ({keys})")

    def _commit(self) -> None:
        self._end_load()
        if self.direct:
            _confirm(self.conn.commit)
            return
        mode = self.s.cfg.mode
        existing = self._target_columns()
        if existing is not None and mode == "create":
            raise _exists_error(self.s)
        if existing is not None and mode == "replace":
            self._sql(f"DROP TABLE {self._target()}")
            existing = None
        if existing is None:
            self._create_target()
        else:
            if mode == "truncate":
                self._sql(f"DELETE FROM {self._target()}")  # TRUNCATE would not roll back
            self._check_columns(existing)
        types = existing or {}
        cols = self.s.columns

        def value(c: str, alias: str) -> str:
            ref = f"{alias}.{self.q(c)}"
            if types and not self.sqlite:
                return f"CAST({ref} AS {types[c]})"
            if c in self.json:  # staged as text, into the jsonb column created now
                return f"CAST({ref} AS jsonb)"
            return ref

        col_list = ", ".join(self.q(c) for c in cols)
        if mode != "upsert":
            select = ", ".join(value(c, "s") for c in cols)
            self._sql(
                f"INSERT INTO {self._target()} ({col_list}) SELECT {select} FROM {self._stage()} s"
            )
        else:
            self._upsert(cols, value)
        _confirm(self.conn.commit)

    def _upsert(self, cols: list[str], value: Any) -> None:
        keys = self.s.cfg.keys
        stage = self._stage()
        key_list = ", ".join(self.q(k) for k in keys)
        index = self.q(f"{self.s.stage}_key")
        if self.sqlite:
            self._sql(
                f"CREATE INDEX temp.{index} ON {self.q(self.s.stage)} ({key_list}, {self.q(_SEQ)})"
            )
        else:
            self._sql(f"CREATE INDEX {index} ON {stage} ({key_list}, {self.q(_SEQ)})")
            self._sql(f"ANALYZE {stage}")

        def match(a: str, b: str) -> str:
            return " AND ".join(f"{a}.{self.q(k)} = {b}.{self.q(k)}" for k in keys)

        latest = (
            f"(SELECT * FROM {stage} s WHERE NOT EXISTS (SELECT 1 FROM {stage} s2 "
            f"WHERE {match('s2', 's')} AND s2.{self.q(_SEQ)} > s.{self.q(_SEQ)}))"
        )
        target = self._target()
        others = [c for c in cols if c not in keys]
        if others:
            sets = ", ".join(f"{self.q(c)} = {value(c, 'd')}" for c in others)
            where = " AND ".join(f"{target}.{self.q(k)} = {value(k, 'd')}" for k in keys)
            self._sql(f"UPDATE {target} SET {sets} FROM {latest} d WHERE {where}")
        select = ", ".join(value(c, "d") for c in cols)
        exists = " AND ".join(f"t.{self.q(k)} = {value(k, 'd')}" for k in keys)
        col_list = ", ".join(self.q(c) for c in cols)
        self._sql(
            f"INSERT INTO {target} ({col_list}) SELECT {select} FROM {latest} d "
            f"WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE {exists})"
        )

    async def commit(self) -> None:
        try:
            await asyncio.to_thread(self._commit)
        except _UnconfirmedCommitError as exc:
            await self.abort()
            raise _unconfirmed(exc, self.s) from exc.__cause__
        except Exception as exc:
            await self.abort()
            raise _error(exc, self.s, "writing", in_transaction=True) from exc
        await asyncio.to_thread(self._close)

    def _rollback(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None and not stream.cancel():
            # The driver is still inside the load (a server that does not answer): closing
            # the connection under it is unsafe. The transaction ends with the connection,
            # when the server notices or the process exits; nothing is committed.
            self.conn = None
            return
        if self.conn is None:
            return
        try:
            with contextlib.suppress(Exception):  # the connection may be what failed
                self.conn.rollback()
        finally:
            self._close()

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    async def abort(self) -> None:
        await asyncio.to_thread(self._rollback)


_MYSQL_TEXT_KEY = "VARCHAR(255)"


def _mysql_type(f: pa.Field, is_key: bool) -> str:
    t = f.type
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_unsigned_integer(t):
        return "BIGINT UNSIGNED"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_decimal(t):
        return f"DECIMAL({min(t.precision, 65)}, {min(t.scale, 30)})"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_timestamp(t):
        return "DATETIME(6)"
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return "TIME(6)"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "VARBINARY(255)" if is_key else "LONGBLOB"
    if pa.types.is_nested(t):
        return "JSON"
    return _MYSQL_TEXT_KEY if is_key else "LONGTEXT"


#: LOAD DATA's default text format: tab-separated fields, newline-ended lines, ``\\`` escapes,
#: ``\\N`` for NULL. Values are escaped so that none of these characters is taken for syntax.
_LOAD_ESCAPES = [(b"\\", b"\\\\"), (b"\t", b"\\t"), (b"\n", b"\\n"), (b"\x00", b"\\0")]
_LOAD_NULL = b"\\N"
_LOAD_FORMAT = (
    "CHARACTER SET binary FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'"
)


def _is_text_or_bytes(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
    )


def _load_field(values: pa.ChunkedArray) -> pa.Array:
    """One column as LOAD DATA fields: binary text of each value, escaped, NULL as ``\\N``."""
    t = values.type
    if pa.types.is_dictionary(t):
        values = pc.cast(values, t.value_type)
        t = values.type
    # Only text, bytes and JSON can hold a tab, a newline, a backslash or a NUL byte.
    escape = True
    if pa.types.is_nested(t):
        text: Any = json_strings(values)
    elif pa.types.is_interval(t):  # no interval type: ISO 8601 duration text
        text, escape = duration_texts(values), False
    elif pa.types.is_duration(t):
        text, escape = pa.array([_mysql_time(v) for v in values.to_pylist()], pa.binary()), False
    elif _is_text_or_bytes(t):
        text = pc.cast(values, pa.large_binary())
    else:
        escape = False
        if pa.types.is_timestamp(t):
            # DATETIME(6) holds microseconds and no zone: zoned values as UTC wall time
            values = pc.cast(values, pa.timestamp("us"))
        elif pa.types.is_boolean(t):
            values = pc.cast(values, pa.int8())
        text = pc.cast(values, pa.string())
    text = pc.cast(text, pa.large_binary())
    if escape:
        for raw, escaped in _LOAD_ESCAPES:
            text = pc.replace_substring(text, raw, escaped)
    text = pc.fill_null(text, pa.scalar(_LOAD_NULL, pa.large_binary()))
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    return text


def _mysql_column(values: pa.ChunkedArray) -> list[Any]:
    """One column as Python values for INSERT parameters."""
    t = values.type
    if pa.types.is_nested(t):
        nested: list[Any] = json_strings(values).to_pylist()
        return nested
    if pa.types.is_interval(t):
        intervals: list[Any] = duration_texts(values).to_pylist()
        return intervals
    if pa.types.is_timestamp(t) and t.tz is not None:
        values = pc.cast(values, pa.timestamp(t.unit))  # stored as UTC wall time
    if pa.types.is_time(t):
        return [
            None
            if v is None
            else dt.timedelta(
                hours=v.hour, minutes=v.minute, seconds=v.second, microseconds=v.microsecond
            )
            for v in values.to_pylist()
        ]
    result: list[Any] = values.to_pylist()
    return result


#: The server or client refuses LOAD DATA LOCAL: MySQL's ER_NOT_ALLOWED_COMMAND and
#: ER_CLIENT_LOCAL_FILES_DISABLED, MariaDB's ER_LOAD_INFILE_CAPABILITY_DISABLED.
_LOCAL_FILES_REFUSED = {1148, 3948, 4166}


def _local_files_refused(exc: BaseException) -> bool:
    return bool(exc.args) and exc.args[0] in _LOCAL_FILES_REFUSED


def _mysql_time(value: dt.timedelta | None) -> bytes | None:
    if value is None:
        return None
    sign = "-" if value < dt.timedelta(0) else ""
    micros = abs(value) // dt.timedelta(microseconds=1)
    seconds, micros = divmod(micros, 1_000_000)
    return (
        f"{sign}{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micros:06d}".encode()
    )


def _load_file(table: pa.Table, path: str) -> None:
    """Write ``table`` to ``path`` in LOAD DATA's text format (Arrow compute, no Python rows)."""
    fields = [_load_field(c) for c in table.columns]
    tab, newline = pa.scalar(b"\t", pa.large_binary()), pa.scalar(b"\n", pa.large_binary())
    joined = pc.binary_join_element_wise(*fields, tab)
    lines = pc.binary_join_element_wise(joined, newline, pa.scalar(b"", pa.large_binary()))
    offsets, data = lines.buffers()[1], lines.buffers()[2]
    bounds = memoryview(offsets).cast("q")  # large_binary: 64-bit offsets
    first, last = bounds[lines.offset], bounds[lines.offset + len(lines)]
    with open(path, "wb") as fh:
        fh.write(memoryview(data)[first:last] if data is not None else b"")


class _MysqlBackend(_Backend):
    """MariaDB/MySQL: staging in a TEMPORARY table (which commits nothing implicitly).

    MySQL commits implicitly around CREATE/DROP/RENAME TABLE, so new tables are built under
    a private name and moved into place with one atomic ``RENAME TABLE``.
    """

    def __init__(self, sink_: DatabaseSink) -> None:
        self.s = sink_
        self.dialect = dialect_for(sink_.url.dialect)
        self.q = self.dialect.quote_ident
        self.conn: Any = None
        self.fields: list[pa.Field] = []
        self.direct = False  # appending straight into the existing target
        self.local_files = True  # LOAD DATA LOCAL INFILE, until the server refuses it

    def _target(self) -> str:
        return self.dialect.quote_table(self.s.cfg.table)

    def _named(self, name: str) -> str:
        return ".".join(self.q(p) for p in (self.s.db_schema, name) if p)

    def _run(self, statement: str, params: tuple[Any, ...] | None = None) -> list[Any]:
        with self.conn.cursor() as cur:
            cur.execute(statement, params)
            return list(cur.fetchall())

    async def _sql(self, statement: str, params: tuple[Any, ...] | None = None) -> list[Any]:
        return await asyncio.to_thread(self._run, statement, params)

    def _ddl_columns(self, fields: list[pa.Field]) -> str:
        return ", ".join(
            f"{self.q(f.name)} {_mysql_type(f, f.name in self.s.cfg.keys)}" for f in fields
        )

    async def open(self, empty: pa.Table) -> None:
        try:
            self.conn = await asyncio.to_thread(connect_mysql_bulk, self.s.url)
            self.fields = list(empty.schema)
            if self.s.cfg.mode in ("append", "truncate"):  # CREATE TABLE would commit
                existing = await self._target_columns()
                if existing is not None:
                    self._check_columns(existing)
                    if await self._transactional():
                        if self.s.cfg.mode == "truncate":  # not TRUNCATE: it would commit
                            await self._sql(f"DELETE FROM {self._target()}")
                        self.direct = True  # the loaded rows roll back on abort
                        return
            await self._sql(
                f"CREATE TEMPORARY TABLE {self.q(self.s.stage)} ({self._ddl_columns(self.fields)})"
            )
        except Exception as exc:
            await self.abort()
            raise _error(exc, self.s, "preparing") from exc

    def _check_columns(self, existing: list[str]) -> None:
        unknown = [c for c in self.s.columns if c not in existing]
        if unknown:
            raise PermanentError.one(
                f"column(s) {unknown} do not exist in table {self.s.cfg.table!r} "
                f"(it has {existing})",
                f"sink database {self.s.url.redacted()}",
                "rename or drop them with `rename`/`select`, add them to the table, "
                "or use mode: replace",
            )

    async def write(self, table: pa.Table, lines: pa.Array | None) -> None:
        size = self.s.cfg.batch_rows
        for offset in range(0, table.num_rows, size):
            part = lines.slice(offset, size) if lines is not None else None
            await self._write_part(table.slice(offset, size), part)

    async def _write_part(self, table: pa.Table, lines: pa.Array | None) -> None:
        into = self._target() if self.direct else self.q(self.s.stage)
        try:
            if self.local_files:
                try:
                    await asyncio.to_thread(self._load_data, table, into)
                except Exception as exc:
                    if not _local_files_refused(exc):
                        raise
                    self.local_files = False  # the server does not take files: INSERT
            if not self.local_files:
                await asyncio.to_thread(self._insert_rows, table, into)
            # With LOCAL, a value the server cannot take (text in a number column, a date out
            # of range, a duplicate key) is a warning, not an error: the row is changed or
            # skipped. Any such warning refuses the load.
            warnings = await self._warnings()
        except Exception as exc:
            raise _error(exc, self.s, "loading rows into", in_transaction=True) from exc
        if warnings:
            raise self._refused(warnings, table, lines)

    async def _warnings(self) -> list[tuple[str, int, str]]:
        return [
            (str(r[0]), int(r[1]), str(r[2]))
            for r in await self._sql("SHOW WARNINGS LIMIT 10")
            if r[0] != "Note"
        ]

    async def _refuse_warnings(self) -> None:
        """Moving the staged rows: outside strict mode, or into a table that cannot roll back,
        the server adjusts a value it cannot take with a warning instead of failing."""
        warnings = await self._warnings()
        if warnings:
            raise self._refused(warnings, None, None)

    def _column_list(self) -> str:
        return ", ".join(self.q(f.name) for f in self.fields)

    def _load_data(self, table: pa.Table, into: str) -> None:
        fd, path = tempfile.mkstemp(prefix="quiver-load-", suffix=".tsv")
        os.close(fd)
        try:
            _load_file(table, path)
            quoted = "'" + path.replace("\\", "\\\\").replace("'", "\\'") + "'"
            self._run(
                f"LOAD DATA LOCAL INFILE {quoted} INTO TABLE {into} {_LOAD_FORMAT} "
                f"({self._column_list()})"
            )
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)

    def _insert_rows(self, table: pa.Table, into: str) -> None:
        """Multi-row INSERTs, for a server that refuses ``LOAD DATA LOCAL INFILE``."""
        # The statement takes parameters: a literal % (in a column name) is written %%.
        names = self._column_list().replace("%", "%%")
        marks = ", ".join(["%s"] * len(self.fields))
        rows = list(zip(*(_mysql_column(c) for c in table.columns), strict=True))
        with self.conn.cursor() as cur:
            cur.executemany(f"INSERT INTO {into} ({names}) VALUES ({marks})", rows)

    def _refused(
        self,
        warnings: list[tuple[str, int, str]],
        table: pa.Table | None,
        lines: pa.Array | None,
    ) -> QuiverError:
        details = []
        for _level, code, message in warnings:
            found = re.search(r"\bat row (\d+)", message)
            row = int(found.group(1)) - 1 if found else -1
            where = f"sink database {self.s.cfg.table}"
            if lines is not None and 0 <= row < len(lines) and lines[row].as_py() is not None:
                where += f", input line {lines[row].as_py()}"
            values = ""
            if table is not None and 0 <= row < table.num_rows:
                values = f"; the row: {table.slice(row, 1).to_pylist()[0]}"
            details.append(
                ErrorDetail(
                    f"the database would change or skip a value: {message} (code {code})" + values,
                    where,
                    "fix the value in the input, or add a `cast`/`validate` step before this "
                    "sink; nothing was written",
                )
            )
        return PermanentError(details)

    async def _transactional(self) -> bool:
        """Whether the target's storage engine rolls rows back (InnoDB); into any other
        (MyISAM, Aria) rows go through the staging table and one statement at commit."""
        rows = await self._sql(
            "SELECT engine FROM information_schema.tables "
            "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s",
            (self.s.db_schema, self.s.table),
        )
        return bool(rows) and str(rows[0][0]).lower() == "innodb"

    async def column_types(self) -> dict[str, str]:
        rows = await self._sql(
            "SELECT column_name, column_type FROM information_schema.columns "
            "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s",
            (self.s.db_schema, self.s.table),
        )
        return {str(r[0]): str(r[1]).removesuffix(" unsigned") for r in rows}

    async def _target_columns(self) -> list[str] | None:
        rows = await self._sql(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s "
            "ORDER BY ordinal_position",
            (self.s.db_schema, self.s.table),
        )
        return [r[0] for r in rows] or None

    async def _has_unique_key(self) -> bool:
        rows = await self._sql(
            "SELECT index_name, GROUP_CONCAT(column_name) FROM information_schema.statistics "
            "WHERE table_schema = COALESCE(%s, DATABASE()) AND table_name = %s "
            "AND non_unique = 0 GROUP BY index_name",
            (self.s.db_schema, self.s.table),
        )
        wanted = set(self.s.cfg.keys)
        return any(set(str(r[1]).split(",")) == wanted for r in rows)

    def _insert(self, into: str, cols: list[str]) -> str:
        names = ", ".join(self.q(c) for c in cols)
        order = f" ORDER BY {self.q(_SEQ)}" if self.s.cfg.mode == "upsert" else ""
        statement = (
            f"INSERT INTO {into} ({names}) SELECT {names} FROM {self.q(self.s.stage)}{order}"
        )
        others = [c for c in cols if c not in self.s.cfg.keys]
        if self.s.cfg.mode == "upsert":
            updates = others or self.s.cfg.keys[:1]
            statement += " ON DUPLICATE KEY UPDATE " + ", ".join(
                f"{self.q(c)} = VALUES({self.q(c)})" for c in updates
            )
        return statement

    async def _commit(self) -> None:
        if self.direct:
            await asyncio.to_thread(_confirm, self.conn.commit)
            return
        mode = self.s.cfg.mode
        cols = self.s.columns
        existing = await self._target_columns()
        if existing is not None and mode == "create":
            raise _exists_error(self.s)
        if existing is not None and mode != "replace":
            self._check_columns(existing)
            if mode == "upsert" and not await self._has_unique_key():
                keys = ", ".join(self.s.cfg.keys)
                raise PermanentError.one(
                    f"table {self.s.cfg.table!r} has no unique index on ({keys}), "
                    "which upsert needs on MariaDB/MySQL",
                    f"sink database {self.s.url.redacted()}",
                    f"CREATE UNIQUE INDEX ... ON {self.s.cfg.table} ({keys})",
                )
            if mode == "truncate":  # DELETE, not TRUNCATE: that would commit implicitly
                await self._sql(f"DELETE FROM {self._target()}")
            await self._sql(self._insert(self._target(), cols))
            await self._refuse_warnings()
            await asyncio.to_thread(_confirm, self.conn.commit)
            return
        # Build the table under a private name, then move it into place atomically.
        fresh = f"{self.s.table}__quiver_new_{uuid.uuid4().hex[:8]}"
        fields = [f for f in self.fields if f.name != _SEQ]
        key = ""
        if mode == "upsert":
            key = ", PRIMARY KEY (" + ", ".join(self.q(k) for k in self.s.cfg.keys) + ")"
        await self._sql(f"CREATE TABLE {self._named(fresh)} ({self._ddl_columns(fields)}{key})")
        try:
            await self._sql(self._insert(self._named(fresh), cols))
            await self._refuse_warnings()
            await asyncio.to_thread(self.conn.commit)  # of the private table only
            if existing is not None:  # replace
                old = f"{self.s.table}__quiver_old_{uuid.uuid4().hex[:8]}"
                await self._sql(
                    f"RENAME TABLE {self._target()} TO {self._named(old)}, "
                    f"{self._named(fresh)} TO {self._target()}"
                )
                await self._sql(f"DROP TABLE {self._named(old)}")
            else:
                await self._sql(f"RENAME TABLE {self._named(fresh)} TO {self._target()}")
        except Exception:
            with contextlib.suppress(Exception):  # the connection may be what failed
                await self._sql(f"DROP TABLE IF EXISTS {self._named(fresh)}")
            raise

    async def commit(self) -> None:
        try:
            await self._commit()
        except _UnconfirmedCommitError as exc:
            await self.abort()
            raise _unconfirmed(exc, self.s) from exc.__cause__
        except Exception as exc:
            await self.abort()
            raise _error(exc, self.s, "writing", in_transaction=True) from exc
        self._close()

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # already closed by a lost connection
                conn.close()

    async def abort(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):  # the connection may be what failed
                await asyncio.to_thread(self.conn.rollback)
        self._close()
