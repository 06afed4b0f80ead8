"""Flight SQL through the ADBC Flight SQL driver, for every column type of each database.

The tables are those of the export round trip (``test_load_round_trip.py``: a column of every
type, at the edges of its range, with nulls). For each column a statement query streams the
same Arrow type and values as the plain export of it; each value it streams, bound back as a
``?`` parameter of its own type, finds its row; and the table schema GetTables reports is the
schema a query of the table returns.
"""

from __future__ import annotations

import decimal
import math
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from tests.conftest import Dialect
from tests.flight.test_load_round_trip import (
    COLUMNS,
    UNEXPORTABLE,
    Matrix,
    _equal,
    export,
    mysql,
    pg,
    sqlite,
)

__all__ = ["mysql", "pg", "sqlite"]  # the matrix fixtures, used here by name

#: JSON columns (composites and spatial values are JSON too): a filter offers them only
#: IS [NOT] NULL, so preparing a comparison of one is refused, naming the column.
NOT_COMPARED: dict[Dialect, set[str]] = {
    "postgresql": {"j", "jb", "comp"},
    "mysql": {"j", "g", "pt", "pgn", "mpt"},
    "sqlite": {"j"},
}
#: Values the filter refuses, documented (none today: PostgreSQL's 0001-01-01, which its
#: driver would send as -infinity, travels as text and finds its row).
REFUSED_VALUES: set[tuple[Dialect, str, Any]] = set()


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def matrix(request: pytest.FixtureRequest) -> Matrix:
    dialect = request.param
    name = {"postgresql": "pg", "mysql": "mysql", "sqlite": "sqlite"}[dialect]
    m: Matrix = request.getfixturevalue(name)
    return m


def _connect(m: Matrix) -> Any:
    import adbc_driver_flightsql.dbapi as flightsql

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cannot disable autocommit": read-only anyway
        return flightsql.connect(m.handle.location.replace("grpc+tcp://", "grpc://"))


@pytest.fixture
def adbc(matrix: Matrix) -> Iterator[Any]:
    connection = _connect(matrix)
    try:
        yield connection
    finally:
        connection.close()


def _cases() -> list[Any]:
    return [
        pytest.param(dialect, column, id=f"{dialect}-{column}")
        for dialect in ("postgresql", "mysql", "sqlite")
        for column in COLUMNS[dialect]
    ]


def _matrix_of(request: pytest.FixtureRequest, dialect: str) -> Matrix:
    name = {"postgresql": "pg", "mysql": "mysql", "sqlite": "sqlite"}[dialect]
    m: Matrix = request.getfixturevalue(name)
    return m


def _exported(m: Matrix, column: str) -> pa.Table:
    f = m.entity("cells").field_by_column(column)
    assert f is not None
    client = flight.FlightClient(m.handle.location)
    try:
        return export(client, m.entity("cells"), ["id", f.name])
    finally:
        client.close()


@pytest.mark.parametrize(("dialect", "column"), _cases())
def test_a_statement_query_streams_each_type_as_the_export_does(
    request: pytest.FixtureRequest, dialect: Dialect, column: str
) -> None:
    import adbc_driver_manager

    m = _matrix_of(request, dialect)
    entity = m.entity("cells")
    f = entity.field_by_column(column)
    assert f is not None
    conn = _connect(m)
    try:
        with conn.cursor() as cur:
            if column in UNEXPORTABLE[dialect]:
                with pytest.raises(adbc_driver_manager.Error) as caught:
                    cur.execute(f"SELECT id, {f.name} FROM {entity.name}")
                    cur.fetch_arrow_table()
                assert UNEXPORTABLE[dialect][column] in str(caught.value)
                assert "Traceback" not in str(caught.value)
                return
            cur.execute(f"SELECT id, {f.name} FROM {entity.name}")
            got = cur.fetch_arrow_table().sort_by("id")
        with conn.cursor() as cur:  # the same, prepared (its schema known before it runs)
            query = f"SELECT id, {f.name} FROM {entity.name} WHERE id >= ?"
            cur.adbc_prepare(query)
            cur.execute(query, (0,))
            prepared = cur.fetch_arrow_table().sort_by("id")
            schema = cur.adbc_execute_schema(query)
    finally:
        conn.close()
    want = _exported(m, column)
    for table in (got, prepared):
        assert table.schema.equals(want.schema), (table.schema, want.schema)
        assert _equal(table.column(f.name), want.column(f.name))
    assert schema.equals(want.schema)


@pytest.mark.parametrize(("dialect", "column"), _cases())
def test_each_value_a_query_streams_binds_back_as_a_parameter_of_its_type(
    request: pytest.FixtureRequest, dialect: Dialect, column: str
) -> None:
    """``WHERE column = ?`` with a value the column streams, typed as it streams, finds its
    row; the parameter schema the server reports is that type."""
    import adbc_driver_manager

    m = _matrix_of(request, dialect)
    if column in UNEXPORTABLE[dialect]:
        pytest.skip("the column does not stream (see the query test)")
    entity = m.entity("cells")
    f = entity.field_by_column(column)
    assert f is not None
    want = _exported(m, column)
    values = want.column(f.name)
    if pa.types.is_list(values.type):
        pytest.skip("a list column is compared by its elements (contains), not with =")
    query = f"SELECT id FROM {entity.name} WHERE {f.name} = ?"
    conn = _connect(m)
    try:
        if column in NOT_COMPARED[dialect]:
            with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
                cur.adbc_prepare(query)
            said = str(caught.value)
            assert "compares only with IS NULL / IS NOT NULL" in said, said
            return
        with conn.cursor() as cur:
            cur.adbc_prepare(query)
            params = pa.schema(cur.adbc_statement.get_parameter_schema())
            assert params.types == [values.type], params
        for row in range(want.num_rows):
            value = values[row]
            if not value.is_valid:
                continue
            bound = pa.record_batch([pa.array([value.as_py()], values.type)], names=["v"])
            with conn.cursor() as cur:
                if _refused(dialect, column, value.as_py()):
                    with pytest.raises(adbc_driver_manager.Error) as caught:
                        cur.execute(query, bound)
                        cur.fetch_arrow_table()
                    said = str(caught.value)
                    assert any(w in said for w in (column, "finite numbers", "compared")), said
                    assert "Traceback" not in said, said
                    continue
                cur.execute(query, bound)
                ids = cur.fetch_arrow_table().column("id").to_pylist()
            assert want.column("id")[row].as_py() in ids, (value, ids)
    finally:
        conn.close()


def _refused(dialect: Dialect, column: str, value: Any) -> bool:
    """Whether binding ``value`` is refused: a column without ``=``, a value the filter
    refuses, NaN or an infinity (a filter takes finite numbers, as GraphQL's Float)."""
    if isinstance(value, float) and not math.isfinite(value):
        return True
    return column in NOT_COMPARED[dialect] or (dialect, column, value) in REFUSED_VALUES


def test_the_table_schema_get_tables_reports_is_the_schema_a_query_returns(
    matrix: Matrix, adbc: Any
) -> None:
    entity = matrix.entity("cells")
    reported = adbc.adbc_get_table_schema(entity.name)
    client = flight.FlightClient(matrix.handle.location)
    try:
        exported = client.get_schema(
            flight.FlightDescriptor.for_command(f"export:{entity.name}::".encode())
        ).schema
    finally:
        client.close()
    assert reported.equals(exported)
    queried = [c for c in COLUMNS[_dialect(matrix)] if c not in UNEXPORTABLE[_dialect(matrix)]]
    names = [f.name for f in entity.fields if f.column in ("id", *queried)]
    with adbc.cursor() as cur:
        cur.execute(f"SELECT {', '.join(names)} FROM {entity.name} WHERE id = 1")
        got = cur.fetch_arrow_table().schema
    assert got.equals(pa.schema([reported.field(n) for n in names]))


def _dialect(m: Matrix) -> Dialect:
    return m.db.dialect


@pytest.mark.parametrize(
    ("dialect", "value", "ids"),
    [("postgresql", "in progress", [1]), ("postgresql", "true", [2, 3]), ("mysql", "it's", [2])],
)
def test_enum_columns_compare_with_the_values_they_stream(
    request: pytest.FixtureRequest, dialect: Dialect, value: str, ids: list[int]
) -> None:
    """SQL compares an enum column with the database's values (as the rows show them), not
    the GraphQL names of the values (``in_progress``, ``true_``)."""
    m = _matrix_of(request, dialect)
    conn = _connect(m)
    quoted = value.replace("'", "''")
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM Cell WHERE e = '{quoted}'")
            assert sorted(cur.fetch_arrow_table().column("id").to_pylist()) == ids
            cur.execute("SELECT id FROM Cell WHERE e IN (?, '1st') AND e = ?", (value, value))
            assert sorted(cur.fetch_arrow_table().column("id").to_pylist()) == ids
    finally:
        conn.close()


def test_a_value_an_enum_column_does_not_hold_is_refused_with_its_values(pg: Matrix) -> None:
    import adbc_driver_manager

    conn = _connect(pg)
    try:
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
            cur.execute("SELECT id FROM Cell WHERE e = 'in_progress'")
            cur.fetch_arrow_table()
    finally:
        conn.close()
    said = str(caught.value)
    assert "e has no value 'in_progress'" in said and "'in progress'" in said, said


def test_a_uuid_object_binds_as_its_text(matrix: Matrix) -> None:
    """pyarrow types a ``uuid.UUID`` as the ``arrow.uuid`` extension type."""
    conn = _connect(matrix)
    try:
        with conn.cursor() as cur:
            key = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
            cur.execute("SELECT id FROM Cell WHERE u = ?", (key,))
            assert cur.fetch_arrow_table().column("id").to_pylist() == [1]
    finally:
        conn.close()


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_nan_or_infinite_parameter_is_refused_with_what_to_write(
    pg: Matrix, value: float
) -> None:
    import adbc_driver_manager

    conn = _connect(pg)
    try:
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
            cur.execute("SELECT id FROM Cell WHERE f8 = ?", (value,))
            cur.fetch_arrow_table()
    finally:
        conn.close()
    said = str(caught.value)
    assert "finite numbers only" in said and "1.7976931348623157e308" in said, said


def test_a_value_with_no_arrow_form_after_the_first_batch_fails_without_a_traceback(
    pg: Matrix,
) -> None:
    """Batches of 2 rows: the numeric NaN of row 3 is found in the second batch of the
    stream, of an export and of a query alike."""
    client = flight.FlightClient(pg.handle.location)
    try:
        with pytest.raises(flight.FlightServerError) as caught:
            client.do_get(flight.Ticket(b"export:Cell::id,an")).read_all()
    finally:
        client.close()
    said = str(caught.value)
    assert said.startswith("STORED_VALUE") or "an: column 'an'" in said, said
    assert "Traceback" not in said, said


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_a_json_column_is_compared_only_with_is_null(
    request: pytest.FixtureRequest, dialect: Dialect
) -> None:
    import adbc_driver_manager

    m = _matrix_of(request, dialect)
    conn = _connect(m)
    try:
        with conn.cursor() as cur:
            with pytest.raises(adbc_driver_manager.Error) as caught:
                cur.execute("SELECT id FROM Cell WHERE j = 'null' OR id = 1")
                cur.fetch_arrow_table()
            said = str(caught.value)
            assert "j holds JSON" in said and "select j and compare" in said, said
            cur.execute("SELECT id FROM Cell WHERE j IS NOT NULL")
            assert sorted(cur.fetch_arrow_table().column("id").to_pylist()) == [1, 2]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        ("n_fixed = 9999999999999999999999999999.9999999999", [1]),
        ("n_fixed = -9999999999999999999999999999.9999999999", [2]),
        ("n_fixed > 9999999999999999999999999999.9999999998", [1]),
        ("n_fixed IN (1.5, -9999999999999999999999999999.9999999999)", [2]),
        ("n_fixed BETWEEN -(9999999999999999999999999999.9999999998) AND 0", []),
        ("n < 100000000000000000000000000000000", [2]),
        ("f8 = 1.7976931348623157e308", [1]),
        ("f4 > 3.3e38", [1, 3]),
        ("i8 = -9223372036854775808", [2]),
        ("d = DATE '2024-02-29'", [1]),
        ("ts = TIMESTAMP '2024-01-02 03:04:05.678'", [1]),
        ("tm = TIME '23:59:59.999999'", [1]),
        ("d = CAST('2024-02-29' AS DATE)", [1]),
        ("o = 42", [1]),
        ("b", [1]),
        ("NOT b", [2]),
    ],
)
def test_sql_constants_are_read_exactly_by_their_column(
    pg: Matrix, where: str, ids: list[int]
) -> None:
    """A number with a fraction keeps every digit for a decimal column (it was once read as
    a double, and 28 nines before the point matched nothing); typed date and time literals
    and a boolean column alone are conditions too."""
    conn = _connect(pg)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM Cell WHERE {where}")
            assert sorted(cur.fetch_arrow_table().column("id").to_pylist()) == ids
    finally:
        conn.close()


#: An integer, a text and a boolean column of each matrix table.
_COLUMNS3 = {
    "postgresql": {"i": "i4", "s": "vc", "b": "b"},
    "mysql": {"i": "i", "s": "vc", "b": "bo"},
    "sqlite": {"i": "i", "s": "vc", "b": "bo"},
}


@pytest.mark.parametrize(
    "where",
    [
        "{i} <> 2147483647",
        "NOT {i} = 2147483647",
        "NOT ({i} = 1 OR {i} = 2147483647)",
        "{i} NOT IN (1)",
        "{s} NOT LIKE 'x%'",
        "{i} NOT BETWEEN 0 AND 1",
        "NOT {i} > 0",
        "NOT {b}",
        "NOT NOT {i} = 2147483647",
        "NOT ({i} IS NULL)",
        "NOT ({i} IS NULL OR {i} > 0)",
        "NOT ({i} > 0 AND {s} LIKE 'x%')",
        "NOT ({i} > 0 OR {s} = 'abc') OR {i} IS NULL",
    ],
)
def test_not_holds_where_sql_says_so_never_on_a_null(matrix: Matrix, where: str) -> None:
    """SQL's NOT of a comparison with a NULL column is unknown, so the row is not read (the
    filter's own ``not`` once read every NULL row: ``x NOT IN (1)`` held where x is NULL)."""
    dialect = _dialect(matrix)
    condition = where.format(**_COLUMNS3[dialect])
    conn = _connect(matrix)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM Cell WHERE {condition}")
            got = sorted(cur.fetch_arrow_table().column("id").to_pylist())
    finally:
        conn.close()
    table = f"{matrix.db_schema}.cells" if matrix.db_schema else "cells"
    want = sorted(r[0] for r in matrix.db.query(f"SELECT id FROM {table} WHERE {condition}"))
    assert got == want


def test_an_array_column_is_compared_only_with_is_null(pg: Matrix) -> None:
    """The parameter schema of ``ai = ?`` once said int32, and binding one then failed with
    the GraphQL filter's "Field 'eq' is not defined by type 'IntArrayFilter'"."""
    import adbc_driver_manager

    conn = _connect(pg)
    try:
        for where in ("ai = 1", "ai = ?", "at LIKE 'a%'", "ae IN ('happy')"):
            with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
                cur.adbc_prepare(f"SELECT id FROM Cell WHERE {where}")
            said = str(caught.value)
            assert "holds an array (streamed as a list)" in said, said
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM Cell WHERE ai IS NULL")
            assert sorted(cur.fetch_arrow_table().column("id").to_pylist()) == [3, 4, 5]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("where", "value", "ids"),
    [
        ("f8 < ?", decimal.Decimal("0.5"), [2, 4]),
        ("n_fixed = ?", decimal.Decimal("-9999999999999999999999999999.9999999999"), [2]),
        ("n_fixed = ?", -1, []),
        ("i4 = ?", decimal.Decimal("2147483647"), [1]),
        ("o = ?", 42, [1]),
        ("vc IN (?, 'abc')", 7, []),
    ],
)
def test_a_number_is_bound_as_its_column_reads_it(
    pg: Matrix, where: str, value: Any, ids: list[int]
) -> None:
    """A decimal bound to a float column is a double, to a decimal column every digit; a
    number bound to a column streamed as text is its text (as a SQL constant is)."""
    conn = _connect(pg)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id FROM Cell WHERE {where}", (value,))
            assert sorted(cur.fetch_arrow_table().column("id").to_pylist()) == ids
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("i4 LIKE '1%'", "LIKE compares text, and i4 is an Int column"),
        ("e LIKE 'h%'", "LIKE compares text, and e is an enum column"),
        ("d NOT LIKE '2024%'", "LIKE compares text, and d is a Date column"),
        ("b > FALSE", "b is a Boolean column, whose values have no order"),
        ("e BETWEEN 'happy' AND 'true'", "e is an enum column, whose values have no order"),
        ("bin < ?", "bin is a Base64 column, whose values have no order"),
    ],
)
def test_an_operator_a_column_does_not_take_is_refused_with_those_it_does(
    pg: Matrix, where: str, says: str
) -> None:
    """Refused when the statement is prepared, in SQL's words (it was the GraphQL filter's
    "Field 'like' is not defined by type 'IntFilter'")."""
    import adbc_driver_manager

    conn = _connect(pg)
    try:
        with conn.cursor() as cur, pytest.raises(adbc_driver_manager.Error) as caught:
            cur.adbc_prepare(f"SELECT id FROM Cell WHERE {where}")
    finally:
        conn.close()
    said = str(caught.value)
    assert says in said and "with =, <>, IN (...) or IS NULL" in said, said


#: A bytes column (Base64 in GraphQL) of each matrix table.
_BYTES = {"postgresql": "bin", "mysql": "bl", "sqlite": "bl"}


def test_a_binary_string_compares_with_a_bytes_column(matrix: Matrix) -> None:
    """``X'00ff'`` is bytes, compared with a bytes column as a bound ``bytes`` value is (it
    could not be parsed)."""
    column = _BYTES[_dialect(matrix)]
    conn = _connect(matrix)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT id, {column} FROM Cell")
            rows = cur.fetch_arrow_table().to_pylist()
            values = {r[column] for r in rows if r[column]}
            assert values, rows
            for value in values:
                want = sorted(r["id"] for r in rows if r[column] == value)
                cur.execute(f"SELECT id FROM Cell WHERE {column} = X'{value.hex()}'")
                assert sorted(cur.fetch_arrow_table().column("id").to_pylist()) == want
            listed = ", ".join(f"x'{v.hex().upper()}'" for v in values)
            cur.execute(f"SELECT id FROM Cell WHERE {column} IN ({listed}, X'')")
            got = sorted(cur.fetch_arrow_table().column("id").to_pylist())
            assert got == sorted(
                r["id"] for r in rows if r[column] is not None and r[column] in values | {b""}
            )
    finally:
        conn.close()
