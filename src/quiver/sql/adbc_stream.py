"""A query's result as a stream of Arrow batches, through ADBC's low-level API (PostgreSQL).

ADBC's DB-API module (``adbc_driver_manager.dbapi``) imports ``pyarrow.dataset``, pandas and
polars (when installed) the first time it is used: about half a CPU-second on a 2-core machine,
more than reading a million rows costs. A pipeline that only streams one result needs none of
that: this module opens the database, connection and statement itself and hands the result to
pyarrow as a ``RecordBatchReader``, exactly as the DB-API's ``fetch_record_batch`` would (the
same driver, options, prepared statement, parameters bound as one Arrow row).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from quiver.sql.connect import _connect_error, _postgresql_uri
from quiver.sql.url import DatabaseUrl

__all__ = ["AdbcResult", "open_postgresql_result"]


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
) -> AdbcResult:
    """Connect to ``url`` and execute ``query`` (blocking: run it in a thread).

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
        statement.set_sql_query(query)
        with contextlib.suppress(adbc_driver_manager.NotSupportedError):
            statement.prepare()
        if params:
            names = [str(i) for i in range(len(params))]
            statement.bind(pa.record_batch([[value] for value in params], names=names))
        handle, _ = statement.execute_query()
        result.reader = pa.RecordBatchReader._import_from_c(handle.address)
    except BaseException:
        result.close()
        raise
    return result
