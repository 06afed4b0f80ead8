"""PostgreSQL through ADBC's low-level API: a result streamed as Arrow batches, and a lean
connection for bulk loads.

ADBC's DB-API module (``adbc_driver_manager.dbapi``) imports ``pyarrow.dataset``, pandas and
polars (when installed) the first time it is used: about half a CPU-second on a 2-core machine,
more than reading or loading a million rows costs. The pipeline's database source and sink
need none of that: this module opens the database, connection and statement itself, with the
same driver and options. :func:`open_postgresql_result` hands a query's result to pyarrow as a
``RecordBatchReader`` (as the DB-API's ``fetch_record_batch`` does); :func:`connect_postgresql_adbc`
gives the few DB-API calls the sink makes (``cursor``, ``execute``, ``fetchall``,
``adbc_ingest``, ``commit``, ``rollback``). Parameters are bound as one Arrow row, built from
their bytes (converting Python values with ``pa.array`` would import pandas too).
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from quiver.sql.connect import _connect_error, _postgresql_uri
from quiver.sql.url import DatabaseUrl

__all__ = [
    "AdbcConnection",
    "AdbcCursor",
    "AdbcResult",
    "connect_postgresql_adbc",
    "open_postgresql_result",
]


class AdbcResult:
    """An open PostgreSQL connection, one statement, and its result's ``reader``.

    Closing releases the reader first, then the statement, the connection and the database
    (ADBC requires that order); it never raises.
    """

    def __init__(self, database: Any, connection: Any) -> None:
        self.database = database
        self.connection = connection
        self.statement: Any = None
        self.reader: pa.RecordBatchReader | None = None

    def close(self) -> None:
        if self.reader is not None:
            with contextlib.suppress(Exception):
                self.reader.close()
        for handle in (self.statement, self.connection, self.database):
            if handle is not None:
                with contextlib.suppress(Exception):
                    handle.close()


def open_postgresql_result(
    url: DatabaseUrl,
    query: str,
    params: Sequence[Any] = (),
    options: Mapping[str, str] | None = None,
    reads: Callable[[pa.Schema], str] | None = None,
) -> AdbcResult:
    """Connect to ``url`` and execute ``query`` (blocking: run it in a thread).

    With ``reads``, the query executed is what it returns for the schema of ``query``'s
    result, as the driver would read it (the statement is prepared, not run, to learn it).

    A failure to connect raises the typed error of :func:`quiver.sql.connect.connect_adbc`;
    a failing query raises the driver's exception (the caller names what it was doing). The
    result is closed on failure and must be closed by the caller otherwise.
    """
    import adbc_driver_manager
    import adbc_driver_postgresql

    database: Any = None
    try:
        database = adbc_driver_postgresql.connect(_postgresql_uri(url))
        connection = adbc_driver_manager.AdbcConnection(database)
    except Exception as exc:
        if database is not None:
            with contextlib.suppress(Exception):
                database.close()
        raise _connect_error(exc, url) from exc
    result = AdbcResult(database, connection)
    try:
        statement = adbc_driver_manager.AdbcStatement(connection)
        result.statement = statement
        if options:
            statement.set_options(**options)
        if reads is not None:
            statement.set_sql_query(query)
            statement.prepare()
            handle = statement.execute_schema()
            schema = _named_types(connection, pa.Schema._import_from_c(handle.address))
            query = reads(schema)
        statement.set_sql_query(query)
        with contextlib.suppress(adbc_driver_manager.NotSupportedError):
            statement.prepare()
        if params:
            statement.bind(_parameters(params))
        handle, _ = statement.execute_query()
        result.reader = pa.RecordBatchReader._import_from_c(handle.address)
    except BaseException:
        result.close()
        raise
    return result


_UNNAMED = re.compile(r"unnamed<oid:(\d+)>")


def _named_types(connection: Any, schema: pa.Schema) -> pa.Schema:
    """``schema`` with each type the driver has no name for (``unnamed<oid:3905>``: ranges,
    arrays of them, extensions' types) named as ``pg_type`` names it (``_int4range`` for an
    array), in its ``POSTGRESQL:type`` metadata; as it is when it has none."""
    import adbc_driver_manager

    oids = {
        int(m.group(1))
        for f in schema
        if (m := _UNNAMED.fullmatch((f.metadata or {}).get(b"POSTGRESQL:type", b"").decode()))
    }
    if not oids:
        return schema
    statement = adbc_driver_manager.AdbcStatement(connection)
    try:
        listed = ", ".join(str(oid) for oid in sorted(oids))
        statement.set_sql_query(
            f"SELECT CAST(oid AS int8), typname FROM pg_type WHERE oid IN ({listed})"
        )
        handle, _ = statement.execute_query()
        table = pa.RecordBatchReader._import_from_c(handle.address).read_all()
    finally:
        statement.close()
    names = dict(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
    fields = []
    for f in schema:
        meta = dict(f.metadata or {})
        m = _UNNAMED.fullmatch(meta.get(b"POSTGRESQL:type", b"").decode())
        if m is not None and int(m.group(1)) in names:
            meta[b"POSTGRESQL:type"] = str(names[int(m.group(1))]).encode()
            f = f.with_metadata(meta)
        fields.append(f)
    return pa.schema(fields, metadata=schema.metadata)


def _parameter(value: Any) -> pa.Array:
    """One parameter as a one-value array. Text and numbers are built from their bytes:
    converting Python values (``pa.array``) imports pandas, when installed, the first time."""
    if isinstance(value, str):
        data = value.encode()
        offsets = struct.pack("<ii", 0, len(data))
        buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        return pa.Array.from_buffers(pa.string(), 1, buffers)
    if isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63:
        return pa.Array.from_buffers(pa.int64(), 1, [None, pa.py_buffer(struct.pack("<q", value))])
    if isinstance(value, float):
        return pa.Array.from_buffers(
            pa.float64(), 1, [None, pa.py_buffer(struct.pack("<d", value))]
        )
    return pa.array([value])


def _parameters(params: Sequence[Any]) -> pa.RecordBatch:
    """Positional parameters as one Arrow row (columns ``0``, ``1``, ... as the DB-API names
    them)."""
    arrays = [_parameter(value) for value in params]
    return pa.RecordBatch.from_arrays(arrays, names=[str(i) for i in range(len(arrays))])


class AdbcCursor:
    """The part of a DB-API cursor the pipeline's database sink uses, on one ADBC statement:
    ``execute``, ``fetchall``, ``description``, ``adbc_ingest``."""

    def __init__(self, connection: Any) -> None:
        import adbc_driver_manager

        self._lib = adbc_driver_manager
        self._statement = adbc_driver_manager.AdbcStatement(connection)
        self._query: str | None = None
        self._reader: Any = None

    def __enter__(self) -> AdbcCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _clear(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()
            self._reader = None

    def _prepare(self, query: str) -> None:
        self._clear()
        if query != self._query:
            self._query = query
            self._statement.set_sql_query(query)
            with contextlib.suppress(self._lib.NotSupportedError):
                self._statement.prepare()

    def execute(self, query: str, params: Sequence[Any] | None = None) -> AdbcCursor:
        """Run ``query`` with positional ``params`` (one row of them)."""
        self._prepare(query)
        if params:
            self._statement.bind(_parameters(params))
        handle, _ = self._statement.execute_query()
        # (ADBC's own reader wrapper imports pandas: a plain pyarrow reader reads the same)
        self._reader = pa.RecordBatchReader._import_from_c(handle.address)
        return self

    @property
    def description(self) -> list[tuple[str, pa.DataType]] | None:
        """The result's columns (name, Arrow type), empty for a statement without one."""
        if self._reader is None:
            return None
        return [(f.name, f.type) for f in self._reader.schema]

    def fetchall(self) -> list[tuple[Any, ...]]:
        """The remaining rows as tuples of Python values (as the DB-API gives them)."""
        rows: list[tuple[Any, ...]] = []
        if self._reader is None:
            return rows
        for batch in self._reader:
            rows.extend(zip(*(column.to_pylist() for column in batch.columns), strict=True))
        return rows

    def adbc_ingest(
        self,
        table: str,
        data: pa.RecordBatchReader | pa.Table,
        mode: str = "append",
        *,
        temporary: bool = False,
        db_schema_name: str | None = None,
    ) -> None:
        """Bulk-load ``data`` into ``table`` (PostgreSQL: one ``COPY``)."""
        from adbc_driver_manager import _lib

        lib = self._lib
        self._clear()
        self._query = None
        modes = {
            "append": _lib.INGEST_OPTION_MODE_APPEND,
            "create": _lib.INGEST_OPTION_MODE_CREATE,
            "create_append": _lib.INGEST_OPTION_MODE_CREATE_APPEND,
            "replace": _lib.INGEST_OPTION_MODE_REPLACE,
        }
        options: dict[str, str] = {
            _lib.INGEST_OPTION_TARGET_TABLE: table,
            _lib.INGEST_OPTION_MODE: modes[mode],
        }
        if db_schema_name is not None:
            options[lib.StatementOptions.INGEST_TARGET_DB_SCHEMA.value] = db_schema_name
        self._statement.set_options(**options)
        temp = "true" if temporary else "false"
        try:
            self._statement.set_options(**{lib.StatementOptions.INGEST_TEMPORARY.value: temp})
        except lib.NotSupportedError:
            if temporary:
                raise
        if isinstance(data, pa.Table):
            data = data.to_reader()
        self._statement.bind_stream(data)
        self._statement.execute_update()

    def close(self) -> None:
        self._clear()
        with contextlib.suppress(Exception):
            self._statement.close()


class AdbcConnection:
    """The part of a DB-API connection the pipeline's database sink uses (``cursor``,
    ``commit``, ``rollback``, ``close``), on ADBC's low-level API (see the module's text)."""

    def __init__(self, database: Any, connection: Any) -> None:
        self._database = database
        self._connection = connection

    def cursor(self) -> AdbcCursor:
        return AdbcCursor(self._connection)

    def commit(self) -> None:
        self._connection.commit()

    def rollback(self) -> None:
        self._connection.rollback()

    def close(self) -> None:
        try:
            self._connection.close()
        finally:
            self._database.close()


def connect_postgresql_adbc(url: DatabaseUrl, *, autocommit: bool = True) -> AdbcConnection:
    """A lean ADBC connection to PostgreSQL (blocking: run it in a thread); errors as
    :func:`quiver.sql.connect.connect_adbc` raises them."""
    import adbc_driver_manager
    import adbc_driver_postgresql

    database: Any = None
    try:
        database = adbc_driver_postgresql.connect(_postgresql_uri(url))
        connection = adbc_driver_manager.AdbcConnection(database)
        if not autocommit:
            connection.set_autocommit(False)
    except Exception as exc:
        if database is not None:
            with contextlib.suppress(Exception):
                database.close()
        raise _connect_error(exc, url) from exc
    return AdbcConnection(database, connection)
