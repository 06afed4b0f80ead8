"""The ``database`` source: rows of a table or a query from PostgreSQL, MariaDB/MySQL or SQLite.

PostgreSQL and SQLite are read through their ADBC drivers, which hand over Arrow batches
directly (no per-row Python objects); MariaDB/MySQL is read with asyncmy through an
unbuffered server-side cursor, ``batch_rows`` rows at a time, into a schema fixed from the
result's column types. Either way the whole result is never held in memory.

Each batch carries the line column: the 1-based record number in the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import decimal
import json
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from quiver.pipeline.component import (
    LINE_COLUMN,
    Acknowledging,
    ComponentConfig,
    RunContext,
    source,
)
from quiver.pipeline.json_text import strict_json
from quiver.pipeline.line_numbers import line_column
from quiver.runtime.errors import ConfigError, ErrorDetail, PermanentError, QuiverError
from quiver.sql.adbc_stream import open_postgresql_result
from quiver.sql.arrow_reads import (
    bit_number,
    infinite_time_column,
    mysql_read_template,
    non_finite_numeric_column,
    pg_read_template,
    read_through,
)
from quiver.sql.connect import connect_adbc, connect_mysql, connection_lost, database_error
from quiver.sql.dialects import check_identifier, dialect_for, split_table_name
from quiver.sql.url import parse_database_url

__all__ = ["DatabaseSource", "DatabaseSourceConfig", "IncrementalConfig"]


class IncrementalConfig(BaseModel):
    """Read only rows newer than the last run's: by an ever-growing cursor column."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="Cursor column: an id, a timestamp, a version number.")
    state: str = Field(
        description="JSON file keeping the last value read, relative to the pipeline file; "
        "written only when the run has committed."
    )
    inclusive: bool = Field(
        False,
        description="Read rows equal to the last value again (>=), for cursors that are not "
        "unique; pair it with an upsert sink.",
    )

    @field_validator("column")
    @classmethod
    def _named(cls, column: str) -> str:
        return check_identifier(column)  # an IdentifierError is a ValueError for pydantic


class DatabaseSourceConfig(ComponentConfig):
    """Read a table or the result of a query."""

    url: str = Field(
        description="Database URL: postgresql://user:pw@host:5432/db, mysql://user@host/db "
        "(also mariadb://) or sqlite:///relative/file.db (resolved against the pipeline file)."
    )
    table: str | None = Field(
        None,
        description="Table to read, optionally qualified: `schema.table`. Exclusive with query.",
    )
    query: str | None = Field(
        None, description="SQL query whose rows are read. Exclusive with table."
    )
    batch_rows: int = Field(65_536, ge=1, description="Rows per batch handed to the next step.")
    incremental: IncrementalConfig | None = Field(
        None, description="Read only rows whose cursor column is past the last run's value."
    )

    @field_validator("table")
    @classmethod
    def _table_name(cls, table: str | None) -> str | None:
        if table is not None:
            split_table_name(table)  # an IdentifierError is a ValueError: pydantic reports it
        return table

    @model_validator(mode="after")
    def _table_or_query(self) -> DatabaseSourceConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("set exactly one of `table` or `query`")
        return self


@source("database", config=DatabaseSourceConfig)
class DatabaseSource(Acknowledging):
    """Rows of a table or query from PostgreSQL, MariaDB/MySQL or SQLite, streamed in batches."""

    def __init__(self, cfg: DatabaseSourceConfig) -> None:
        self.cfg = cfg
        self.url = parse_database_url(cfg.url)
        self.dialect = dialect_for(self.url.dialect)
        self.state_path = ""
        self.last: Any = None  # the cursor value of the previous run (incremental)
        self.highest: Any = None  # the highest cursor value read in this run
        self.declared: dict[str, str] = {}  # a SQLite table's declared column types

    def _base(self) -> str:
        """The table's rows or the query, before the incremental condition."""
        if self.cfg.query is not None:
            return self.cfg.query
        assert self.cfg.table is not None
        return f"SELECT * FROM {self.dialect.quote_table(self.cfg.table)}"

    def _query(self, base: str | None = None) -> tuple[str, tuple[Any, ...]]:
        """The statement run and its parameters: ``base`` (by default :meth:`_base`) past the
        incremental cursor's last value, in cursor order."""
        dialect = self.dialect
        base = self._base() if base is None else base
        inc = self.cfg.incremental
        if inc is None:
            return base, ()
        column = f"q.{dialect.quote_ident(inc.column)}"
        query = f"SELECT * FROM ({base}) q"
        params: tuple[Any, ...] = ()
        if self.last is not None:
            if dialect.escape_percent:  # with parameters, a literal % is written %%
                query, column = query.replace("%", "%%"), column.replace("%", "%%")
            mark = dialect.placeholder(1)
            query += f" WHERE {column} {'>=' if inc.inclusive else '>'} {mark}"
            params = (self.last,)
        return f"{query} ORDER BY {column}", params

    async def batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        if self.cfg.incremental is not None:
            self.state_path = os.path.join(ctx.base_dir, self.cfg.incremental.state)
            self.last = read_cursor_state(self.state_path, self.cfg.incremental.column)
            self.highest = self.last
        line = 0
        stream = self._mysql_batches() if self.url.dialect == "mysql" else self._adbc_batches(ctx)
        async for stored in stream:
            if self.cfg.incremental is not None:
                # The cursor keeps the value as the database compares it: SQLite's text,
                # before it is read as the declared type.
                self._track(stored)
            batch = stored
            if self.declared:
                where = f"source database {self.url.redacted()}"
                batch = _sqlite_typed(stored, self.declared, line + 1, where)
            for piece in _rebatch(batch, self.cfg.batch_rows):
                numbers = line_column(np.arange(line + 1, line + piece.num_rows + 1))
                line += piece.num_rows
                yield piece.append_column(LINE_COLUMN, numbers)

    def _track(self, batch: pa.RecordBatch) -> None:
        assert self.cfg.incremental is not None
        name = self.cfg.incremental.column
        if name not in batch.schema.names:
            raise PermanentError.one(
                f"the incremental column {name!r} is not in the result {batch.schema.names}",
                f"source database {self.url.redacted()}: incremental.column",
                "name a column the table or query returns",
            )
        top = pc.max(batch.column(batch.schema.get_field_index(name))).as_py()
        if top is not None and (self.highest is None or top > self.highest):
            self.highest = top

    async def commit(self) -> None:
        """Remember the highest cursor value read: the sinks have committed these rows."""
        if self.cfg.incremental is None or self.highest is None or self.highest == self.last:
            return
        await asyncio.to_thread(
            write_cursor_state, self.state_path, self.cfg.incremental.column, self.highest
        )
        self.last = self.highest

    async def abort(self) -> None:
        """The run failed: the state file keeps the previous value, the rows are read again."""
        self.highest = self.last

    # -- PostgreSQL and SQLite through ADBC -----------------------------------------------

    async def _adbc_batches(self, ctx: RunContext) -> AsyncIterator[pa.RecordBatch]:
        if self.url.dialect == "postgresql":
            async for batch in self._postgresql_batches():
                yield batch
            return
        conn = await asyncio.to_thread(connect_adbc, self.url, ctx.base_dir)
        read = 0
        try:
            cur = conn.cursor()
            query, params = self._query()
            try:
                await asyncio.to_thread(cur.execute, query, params or None)
                reader = await asyncio.to_thread(cur.fetch_record_batch)
            except Exception as exc:
                raise database_error(exc, self.url, f"query {query!r}") from exc
            self.declared = await asyncio.to_thread(self._sqlite_declared_types, conn)
            while True:
                try:
                    batch = await asyncio.to_thread(_read_next, reader)
                except Exception as exc:
                    raise self._reading_error(exc, read) from exc
                if batch is None:
                    break
                read += batch.num_rows
                yield batch if self.declared else _plain_types(batch)
        finally:
            with contextlib.suppress(Exception):  # the connection may be what failed
                await asyncio.to_thread(conn.close)

    async def _postgresql_batches(self) -> AsyncIterator[pa.RecordBatch]:
        """The result through ADBC's low-level API: the same driver and batches as its
        DB-API, without the half CPU-second of imports that module costs on first use."""
        base = self._base()
        query, params = self._query(base)

        def reads(schema: pa.Schema) -> str:
            # Columns ADBC would hand out in another form than their value are read as it.
            templates = [pg_read_template(f) for f in schema]
            quote = self.dialect.quote_ident
            return self._query(read_through(base, schema.names, templates, quote))[0]

        # Batches of a few MB rather than the driver's 16 MB: the first rows reach the next
        # steps sooner, so reading and writing overlap.
        options = {"adbc.postgresql.batch_size_hint_bytes": str(_PG_BATCH_BYTES)}
        try:
            result = await asyncio.to_thread(
                open_postgresql_result, self.url, base, params, options, reads
            )
        except QuiverError:
            raise
        except Exception as exc:
            raise database_error(exc, self.url, f"query {query!r}") from exc
        read = 0
        try:
            while True:
                try:
                    batch = await asyncio.to_thread(_read_next, result.reader)
                except Exception as exc:
                    raise self._reading_error(exc, read) from exc
                if batch is None:
                    break
                self._check_finite(batch, read)
                self._check_numeric(batch, read)
                read += batch.num_rows
                yield _plain_types(batch)
        finally:
            await asyncio.to_thread(result.close)

    def _check_finite(self, batch: pa.RecordBatch, before: int) -> None:
        """Refuse PostgreSQL's ``infinity`` and ``-infinity`` dates and timestamps, which no
        Arrow date or timestamp holds."""
        found = infinite_time_column(batch)
        if found is None:
            return
        column = self.dialect.quote_ident(found.column)
        fix = (
            f"read it with a `query` that maps them, e.g. CAST({column} AS text[]) AS {column}"
            if pa.types.is_list(found.arrow)
            else f"read it with a `query` that maps them, e.g. CASE WHEN isfinite({column}) "
            f"THEN {column} END AS {column}, or CAST({column} AS text)"
        )
        raise PermanentError.one(
            f"column {found.column!r} holds {found.value} at record {before + found.index + 1}"
            f", which no Arrow {found.arrow} holds",
            f"source database {self.url.redacted()}",
            fix,
        )

    def _check_numeric(self, batch: pa.RecordBatch, before: int) -> None:
        """Refuse NaN in a PostgreSQL ``numeric(p, s)`` column, read as an Arrow decimal,
        which has no NaN (an unconstrained ``numeric`` is read as its text, NaN included)."""
        decimals = [f.name for f in batch.schema if _numeric_type(f) is not None]
        found = non_finite_numeric_column(batch, decimals) if decimals else None
        if found is None:
            return
        column = self.dialect.quote_ident(found.column)
        arrow = _numeric_type(batch.schema.field(found.column))
        assert isinstance(arrow, pa.Decimal128Type | pa.Decimal256Type)
        declared = f"numeric({arrow.precision}, {arrow.scale})"
        raise PermanentError(
            [
                ErrorDetail(
                    f"column {found.column!r} holds {found.value} at record "
                    f"{before + found.index + 1}, which no Arrow {arrow} holds",
                    f"source database {self.url.redacted()}",
                    f"read it with a `query` that maps it, e.g. CAST(NULLIF({column}, 'NaN') AS "
                    f"{declared}) AS {column} (NULL), or CAST({column} AS text) AS {column} "
                    "(the text)",
                )
            ],
            code="STORED_VALUE",
        )

    def _check_booleans(
        self, columns: Sequence[Sequence[Any]], schema: pa.Schema, before: int
    ) -> None:
        """A TINYINT(1) column reads as a boolean: a value other than 0 and 1 in one is refused
        rather than turned into true."""
        for values, f in zip(columns, schema, strict=True):
            if not pa.types.is_boolean(f.type):
                continue
            for i, v in enumerate(values):
                if v is not None and bit_number(v) not in (0, 1):
                    raise PermanentError.one(
                        f"column {f.name!r} is TINYINT(1), read as a boolean, but holds {v} "
                        f"at record {before + i + 1}",
                        f"source database {self.url.redacted()}",
                        f"cast it in a query to read numbers: CAST({f.name} AS SIGNED)",
                    )

    def _sqlite_declared_types(self, conn: Any) -> dict[str, str]:
        """The declared column types of the SQLite table read (none for a query)."""
        if self.url.dialect != "sqlite" or self.cfg.table is None:
            return {}
        parts = split_table_name(self.cfg.table)
        cur = conn.cursor()
        try:
            cur.execute(
                "SELECT name, type FROM pragma_table_info(?, ?)",
                (parts[-1], parts[0] if len(parts) == 2 else "main"),
            )
            return {str(r[0]): str(r[1]).upper() for r in cur.fetchall()}
        finally:
            cur.close()

    def _reading_error(self, exc: BaseException, read: int) -> QuiverError:
        """What a failure while fetching rows means, ``read`` rows into the result.

        Before the first row, a lost connection is retryable: the engine reads again from the
        start on a fresh connection. After it, the rows read so far are already on their way
        to the sinks: the run must stop before they commit, and be started again.
        """
        if read and connection_lost(exc):
            return PermanentError.one(
                f"the connection to the database was lost while reading rows, after record "
                f"{read}: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}",
                self.url.redacted(),
                "the run stopped before its sinks committed: check why the server ended the "
                "connection (a restart, a killed session, a timeout), then run the pipeline again",
            )
        return database_error(exc, self.url, "reading rows")

    # -- MariaDB / MySQL through asyncmy ---------------------------------------------------

    async def _mysql_reads(self, conn: Any) -> str:
        """The table's rows or the query, reading FLOATs as the doubles they are (MariaDB
        prints them in 6 digits), wider BITs as binary digits and spatial values as WKT:
        the column types are those of the result's first, empty, read."""
        base = self._base()
        probe = f"SELECT * FROM ({base}) AS q LIMIT 0"
        cur = conn.cursor()
        try:
            await cur.execute(probe)
            description = cur.description or ()
        except Exception as exc:
            raise database_error(exc, self.url, f"query {base!r}") from exc
        finally:
            with contextlib.suppress(Exception):
                await cur.close()
        names = [str(d[0]) for d in description]
        templates = [mysql_read_template(d[1], d[3]) for d in description]
        return read_through(base, names, templates, self.dialect.quote_ident)

    async def _mysql_batches(self) -> AsyncIterator[pa.RecordBatch]:
        from asyncmy.cursors import SSCursor

        conn = await connect_mysql(self.url)
        read = 0
        try:
            query, params = self._query(await self._mysql_reads(conn))
            cur = conn.cursor(SSCursor)
            try:
                await cur.execute(query, params or None)
            except Exception as exc:
                raise database_error(exc, self.url, f"query {query!r}") from exc
            fields = getattr(getattr(cur, "_result", None), "fields", None) or []
            unsigned = [bool(getattr(f, "flags", 0) & _UNSIGNED_FLAG) for f in fields]
            binary = [getattr(f, "charsetnr", 0) == _BINARY_CHARSET for f in fields]
            schema = mysql_result_schema(cur.description, unsigned or None, binary or None)
            while True:
                try:
                    rows = await cur.fetchmany(self.cfg.batch_rows)
                except Exception as exc:
                    raise self._reading_error(exc, read) from exc
                if not rows:
                    break
                read += len(rows)
                columns = list(zip(*rows, strict=True))
                self._check_booleans(columns, schema, read - len(rows))
                yield pa.record_batch(
                    [
                        pa.array(_mysql_values(col, f.type), f.type)
                        for col, f in zip(columns, schema, strict=True)
                    ],
                    schema=schema,
                )
            with contextlib.suppress(Exception):
                await cur.close()
        finally:
            # Closing an unfinished unbuffered result would read the rest of it first; a
            # failed or abandoned read just drops the connection (which may be gone already).
            with contextlib.suppress(Exception):
                conn.close()


# -- incremental state ------------------------------------------------------------------

_ENCODE: list[tuple[type, str]] = [
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (decimal.Decimal, "decimal"),
    (dt.datetime, "timestamp"),
    (dt.date, "date"),
    (str, "str"),
]


def read_cursor_state(path: str, column: str) -> Any:
    """The cursor value saved by the last committed run, or None before the first one."""
    if not os.path.exists(path):
        return None
    where = f"{path}: incremental state"
    try:
        with open(path, "rb") as fh:
            doc = strict_json(fh.read())
        kind, text = doc["type"], doc["value"]
        saved_column = doc.get("column")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError.one(
            f"unreadable state file: {exc}", where, "fix it, or delete it to read everything"
        ) from None
    if saved_column != column:
        raise ConfigError.one(
            f"the state file tracks column {saved_column!r}, not {column!r}",
            where,
            "delete the state file (the next run reads everything) or use another `state` path",
        )
    decode: dict[str, Any] = {
        "bool": bool,
        "int": int,
        "float": float,
        "decimal": decimal.Decimal,
        "timestamp": dt.datetime.fromisoformat,
        "date": dt.date.fromisoformat,
        "str": str,
    }
    if kind not in decode:
        raise ConfigError.one(f"unknown value type {kind!r}", where, "delete the state file")
    return decode[kind](text)


def write_cursor_state(path: str, column: str, value: Any) -> None:
    """Save ``value`` atomically (write a temporary file, then rename it over the old one)."""
    kind = next((name for t, name in _ENCODE if isinstance(value, t)), None)
    if kind is None:
        raise PermanentError.one(
            f"cannot keep a cursor value of type {type(value).__name__}",
            f"{path}: incremental state",
            "use a numeric, date, timestamp or text column as the incremental column",
        )
    text = value.isoformat() if isinstance(value, dt.date) else value
    if isinstance(value, decimal.Decimal):
        text = str(value)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"column": column, "type": kind, "value": text}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _read_next(reader: Any) -> pa.RecordBatch | None:
    try:
        batch: pa.RecordBatch = reader.read_next_batch()
    except StopIteration:
        return None
    return batch


def _rebatch(batch: pa.RecordBatch, size: int) -> Iterator[pa.RecordBatch]:
    for offset in range(0, batch.num_rows, size):
        yield batch.slice(offset, size)


_SQLITE_DECIMAL = re.compile(r"(?:TEXT_)?(?:DECIMAL|NUMERIC)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def _sqlite_typed(
    batch: pa.RecordBatch, declared: dict[str, str], first_record: int, where: str
) -> pa.RecordBatch:
    """SQLite keeps dates, times, timestamps and decimals as text and booleans as integers:
    read them back as the Arrow types their declared column types name (the types the
    database sink declares), the same type in every batch. A value that is not of its
    declared type is refused with its record number: a query reads the stored values."""
    arrays = []
    for f, array in zip(batch.schema, batch.columns, strict=True):
        decl = declared.get(f.name, "")
        target = _sqlite_declared_arrow(decl)
        if target is None:
            arrays.append(array)
            continue
        try:
            arrays.append(_sqlite_value(array, decl, target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise _not_declared_type(array, f.name, decl, target, first_record, where) from None
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _sqlite_declared_arrow(decl: str) -> pa.DataType | None:
    if decl == "BOOLEAN":
        return pa.bool_()
    if decl == "DATE":
        return pa.date32()
    if decl in ("TIMESTAMP", "DATETIME"):
        return pa.timestamp("us")
    if decl in ("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"):
        return pa.timestamp("us", "UTC")
    if decl == "TIME":
        return pa.time64("us")
    match = _SQLITE_DECIMAL.fullmatch(decl)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        return (pa.decimal128 if precision <= 38 else pa.decimal256)(precision, scale)
    return None


def _sqlite_value(array: pa.Array, decl: str, target: pa.DataType) -> pa.Array:
    t = array.type
    if array.null_count == len(array):
        return pa.nulls(len(array), target)
    if decl == "BOOLEAN":
        values = pc.drop_null(array)
        if not pa.types.is_integer(t) or not pc.all(pc.is_in(values, pa.array([0, 1]))).as_py():
            raise pa.ArrowInvalid("not 0 or 1")
        return pc.not_equal(array, 0)
    if not pa.types.is_string(t):
        raise pa.ArrowTypeError(f"stored as {t}")
    if decl == "TIME":
        stamps = pc.binary_join_element_wise("1970-01-01T", array, "")
        return pc.cast(pc.cast(stamps, pa.timestamp("us")), target)
    if pa.types.is_timestamp(target) and target.tz is not None:
        return pc.cast(pc.cast(array, pa.timestamp("us")), target)
    return pc.cast(array, target)


def _not_declared_type(
    array: pa.Array, name: str, decl: str, target: pa.DataType, first_record: int, where: str
) -> QuiverError:
    """The error for the first value of ``array`` that does not read as ``target``."""
    for i in range(len(array)):
        one = array.slice(i, 1)
        try:
            _sqlite_value(one, decl, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            value = one[0].as_py()
            break
    else:
        value, i = None, 0
    return PermanentError.one(
        f"column {name!r} is declared {decl} but holds {value!r} at record {first_record + i}",
        where,
        "fix the value in the table, or read the table with a `query` (which gives the stored "
        "values as they are)",
    )


def _plain_types(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Turn driver extension types into plain Arrow types every sink can write.

    PostgreSQL ``numeric(p,s)`` becomes a decimal (an unconstrained ``numeric`` stays exact
    text), ``uuid`` its canonical text, ``json``/``jsonb`` text; other driver-specific types
    keep their storage (cast them to text in the query when a sink cannot write bytes).
    """
    if not any(_has_extension(f.type) for f in batch.schema):
        return batch
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for array, f in zip(batch.columns, batch.schema, strict=True):
        if isinstance(f.type, pa.BaseExtensionType):
            plain = _plain_array(array, f)
            arrays.append(plain)
            fields.append(pa.field(f.name, plain.type, f.nullable, f.metadata))
        elif _has_extension(f.type):  # a list of numerics
            items = _plain_array(array.values, f.type.value_field)
            plain = pa.ListArray.from_arrays(array.offsets, items, mask=array.is_null())
            arrays.append(plain)
            fields.append(pa.field(f.name, plain.type, f.nullable, f.metadata))
        else:
            arrays.append(array)
            fields.append(f)
    return pa.record_batch(arrays, schema=pa.schema(fields))


def _plain_array(array: pa.Array, f: pa.Field) -> pa.Array:
    storage = array.storage
    if f.type.extension_name == "arrow.uuid":
        return pa.array(
            [None if b is None else str(uuid.UUID(bytes=b)) for b in storage.to_pylist()],
            pa.string(),
        )
    target = _numeric_type(f)
    if target is not None:
        return pc.cast(storage, target)
    if (f.metadata or {}).get(b"POSTGRESQL:type") == b"numeric":
        # The driver writes NaN and the infinities as C does; PostgreSQL (and GraphQL) spell
        # them NaN, Infinity and -Infinity.
        for c_text, pg_text in _NUMERIC_SPECIALS:
            storage = pc.replace_substring_regex(storage, c_text, pg_text)
    return storage


_NUMERIC_SPECIALS = (("^nan$", "NaN"), ("^inf$", "Infinity"), ("^-inf$", "-Infinity"))


def _has_extension(t: pa.DataType) -> bool:
    return isinstance(t, pa.BaseExtensionType) or (
        pa.types.is_list(t) and isinstance(t.value_type, pa.BaseExtensionType)
    )


def _numeric_type(f: pa.Field) -> pa.DataType | None:
    meta = f.metadata or {}
    if meta.get(b"POSTGRESQL:type") != b"numeric":
        return None
    typmod = int(meta.get(b"POSTGRESQL:typmod", b"-1"))
    if typmod < 4:
        return None  # unconstrained numeric: keep the exact text
    precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0x7FF
    if scale & 0x400:  # PostgreSQL 15 keeps the scale in 11 bits, signed: numeric(3, -2)
        scale -= 0x800
    if scale < 0:  # whole numbers, as the Flight export reads them: 12300 in numeric(3, -2)
        precision, scale = precision - scale, 0
    precision = max(precision, scale, 1)  # numeric(3, 5) holds 0.00123
    if precision > 76:
        return None  # wider than any Arrow decimal: keep the exact text
    return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)


_PG_BATCH_BYTES = 4 << 20
_UNSIGNED_FLAG = 32  # MySQL column flag
_BINARY_CHARSET = 63  # the "binary" character set: BINARY, VARBINARY, BLOB, BIT, GEOMETRY


def mysql_result_schema(
    description: Sequence[Sequence[Any]],
    unsigned: Sequence[bool] | None = None,
    binary: Sequence[bool] | None = None,
) -> pa.Schema:
    """Arrow schema of a MySQL result from the cursor description (type codes, sizes).

    ``unsigned`` (from the column flags) makes DECIMAL precisions exact: the reported length
    counts a sign character for signed columns and a decimal point when there is a scale.
    ``binary`` (the column's character set is ``binary``) tells BINARY, VARBINARY and BLOB
    columns, read as bytes, from CHAR, VARCHAR and TEXT, which report the same type codes.
    """
    from asyncmy.constants import FIELD_TYPE as T

    fields = []
    for i, (name, type_code, _size, length, precision, scale, _null) in enumerate(description):
        if type_code == T.TINY and length == 1 and not (unsigned is not None and unsigned[i]):
            arrow: pa.DataType = pa.bool_()  # BOOLEAN is TINYINT(1)
        elif type_code == T.LONGLONG and unsigned is not None and unsigned[i]:
            arrow = pa.uint64()
        elif type_code in (T.TINY, T.SHORT, T.LONG, T.INT24, T.LONGLONG, T.YEAR):
            arrow = pa.int64()
        elif type_code in (T.FLOAT, T.DOUBLE):
            arrow = pa.float64()
        elif type_code in (T.DECIMAL, T.NEWDECIMAL):
            digits = int(length or precision or 38) - (1 if scale else 0)
            if unsigned is not None and not unsigned[i]:
                digits -= 1  # the sign
            digits = min(max(digits, int(scale or 0), 1), 76)
            arrow = (pa.decimal128 if digits <= 38 else pa.decimal256)(digits, int(scale or 0))
        elif type_code in (T.DATE, T.NEWDATE):
            arrow = pa.date32()
        elif type_code in (T.DATETIME, T.TIMESTAMP):
            arrow = pa.timestamp("us")
        elif type_code == T.TIME:
            arrow = pa.duration("us")
        elif type_code == T.BIT and (length or 1) == 1:
            arrow = pa.bool_()  # BIT(1), as GraphQL serves it: a Boolean
        elif type_code == T.BIT:
            arrow = pa.binary()
        elif type_code == T.NULL:
            arrow = pa.null()
        elif type_code == T.GEOMETRY or (
            binary is not None
            and binary[i]
            and type_code
            in (T.BLOB, T.TINY_BLOB, T.MEDIUM_BLOB, T.LONG_BLOB, T.STRING, T.VAR_STRING, T.VARCHAR)
        ):
            arrow = pa.binary()
        else:
            arrow = pa.string()
        fields.append(pa.field(str(name), arrow))
    return pa.schema(fields)


def _mysql_values(values: Sequence[Any], arrow: pa.DataType) -> Sequence[Any]:
    if pa.types.is_string(arrow):
        return [v.decode("utf-8") if isinstance(v, bytes | bytearray) else v for v in values]
    if pa.types.is_boolean(arrow):
        return [None if v is None else bool(bit_number(v)) for v in values]
    if pa.types.is_binary(arrow):
        return [v.encode("utf-8") if isinstance(v, str) else v for v in values]
    if pa.types.is_decimal(arrow):
        return [decimal.Decimal(v) if isinstance(v, str) else v for v in values]
    if pa.types.is_timestamp(arrow):
        return [dt.datetime.combine(v, dt.time()) if type(v) is dt.date else v for v in values]
    return values
