"""Stored values a column's type allows but the field's GraphQL scalar cannot carry: MariaDB's
TIME beyond one day, its zero dates and zero date parts, its ENUM error value, and SQLite
text in a Date, DateTime, Time or UUID column that is not of the scalar's form, PostgreSQL's
24:00:00 and its dates before the year 1 or after 9999. Each fails the root field with a
DATABASE_ERROR naming the scalar, the value and the fix; every valid value in the same
columns is served as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.conftest import ChinookDb, create_empty_database, drop_database
from tests.graphql.conftest import Runner

pytestmark = pytest.mark.asyncio(loop_scope="session")

FIX = "serve the column through a view that casts it to text"


def _refusal(errors: list[Any], *needles: str) -> dict[str, Any]:
    """The one error of a refused stored value, checked to name each of ``needles``."""
    assert len(errors) == 1, errors
    error: dict[str, Any] = errors[0]
    assert error["extensions"]["code"] == "DATABASE_ERROR", error
    for needle in (*needles, FIX):
        assert needle in error["message"], (needle, error["message"])
    return error


# --------------------------------------------------------------------------------------------
# MariaDB
# --------------------------------------------------------------------------------------------

MARIADB_TABLES = (
    "CREATE TABLE teams (id INT PRIMARY KEY, name VARCHAR(20))",
    "CREATE TABLE shifts (id INT PRIMARY KEY, team_id INT REFERENCES teams (id),"
    " starts TIME, precise TIME(3), day DATE, at DATETIME, exact DATETIME(6),"
    " stamp TIMESTAMP NULL DEFAULT NULL, kind ENUM('early', 'late'), spare ENUM('', 'x'),"
    " note VARCHAR(20))",
)
#: row id -> the columns it sets (outside strict mode); its other columns are NULL.
MARIADB_ROWS: dict[int, dict[str, str]] = {
    1: {
        "starts": "08:30:00",
        "precise": "23:59:59.999",
        "day": "2020-01-15",
        "at": "2020-01-15 10:00:00",
        "exact": "2020-01-15 10:00:00.123456",
        "stamp": "2020-01-15 10:00:00",
        "kind": "late",
        "spare": "x",
        "note": "fine",
    },
    2: {"starts": "-01:00:00", "note": "negative"},
    3: {"starts": "24:00:00"},
    4: {"starts": "838:59:59"},
    5: {"precise": "-00:00:00.500"},
    6: {"day": "0000-00-00"},
    7: {"day": "2020-00-15"},
    8: {"at": "0000-00-00 00:00:00"},
    9: {"at": "2020-01-00 10:00:00"},
    10: {"stamp": "0000-00-00 00:00:00"},
    11: {"exact": "2020-00-01 00:00:00.5"},
    12: {"kind": "nonsense"},  # not in the list: stored as '' outside strict mode
    13: {"spare": "nonsense"},  # '' is in this list: a value of the enum
    14: {"starts": "00:00:00", "day": "0001-01-01", "at": "9999-12-31 23:59:59"},
    # year 0 (MariaDB stores it in any sql_mode): no ISO 8601 date the scalars read
    15: {"day": "0000-01-01"},
    16: {"at": "0000-12-31 23:59:59"},
    17: {"exact": "0000-06-15 12:00:00.25"},
}
#: (row, field, scalar, the value as the message names it)
MARIADB_REFUSED = [
    (2, "starts", "Time", "'-01:00:00'"),
    (3, "starts", "Time", "'24:00:00'"),
    (4, "starts", "Time", "'838:59:59'"),
    (5, "precise", "Time", "'-00:00:00.500'"),
    (6, "day", "Date", "'0000-00-00'"),
    (7, "day", "Date", "'2020-00-15'"),
    (8, "at", "DateTime", "'0000-00-00 00:00:00'"),
    (9, "at", "DateTime", "'2020-01-00 10:00:00'"),
    (10, "stamp", "DateTime", "'0000-00-00 00:00:00'"),
    (11, "exact", "DateTime", "'2020-00-01 00:00:00.500000'"),
    (12, "kind", "ENUM error value ''", "a ShiftKind field"),
    (15, "day", "Date", "'0000-01-01'"),
    (16, "at", "DateTime", "'0000-12-31 23:59:59'"),
    (17, "exact", "DateTime", "'0000-06-15 12:00:00.250000'"),
]


@asynccontextmanager
async def _running(db: ChinookDb, **database: Any) -> AsyncIterator[Runner]:
    """An engine over ``db``'s database as reflected now, logging changes to ``outbox``."""
    schema = await reflect_database(db.url)
    settings = QuiverSettings.model_validate(
        {"database": {"url": db.url, **database}, "mutations": {"change_log_table": "outbox"}}
    )
    engine = await GraphQLEngine.open(schema, settings)
    try:
        yield Runner(engine, db)
    finally:
        await engine.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mariadb() -> AsyncIterator[Runner]:
    url = create_empty_database("mysql")
    db = ChinookDb("mysql", url)
    try:
        # Outside strict mode and without NO_ZERO_DATE / NO_ZERO_IN_DATE, as a server may be.
        db.query("SET SESSION sql_mode = ''")
        for statement in MARIADB_TABLES:
            db.query(statement)
        db.query("INSERT INTO teams VALUES (1, 'blue'), (2, 'red')")
        for row, values in MARIADB_ROWS.items():
            names = ", ".join(["id", "team_id", *values])
            marks = ", ".join(["%s"] * (len(values) + 2))
            db.query(
                f"INSERT INTO shifts ({names}) VALUES ({marks})",
                [row, 1 if row == 1 else 2, *values.values()],
            )
        db.query("SET SESSION sql_mode = DEFAULT")
        async with _running(db, pool_max=2) as runner:
            yield runner
    finally:
        db.close()
        drop_database(url)


async def test_mariadb_valid_values_are_served_as_before(mariadb: Runner) -> None:
    fields = "id starts precise day at exact stamp kind spare note"
    data = await mariadb.data(f"{{ shifts(where: {{id: {{in: [1, 13, 14]}}}}) {{ {fields} }} }}")
    by_id = {r["id"]: r for r in data["shifts"]}
    assert by_id[1] == {
        "id": 1,
        "starts": "08:30:00",
        "precise": "23:59:59.999000",
        "day": "2020-01-15",
        "at": "2020-01-15T10:00:00",
        "exact": "2020-01-15T10:00:00.123456",
        "stamp": "2020-01-15T10:00:00",
        "kind": "late",
        "spare": "x",
        "note": "fine",
    }
    assert by_id[14]["starts"] == "00:00:00"
    assert by_id[14]["day"] == "0001-01-01"
    assert by_id[14]["at"] == "9999-12-31T23:59:59"
    # '' is in spare's list: the value a write outside it stores is a value of the enum
    empty = by_id[13]["spare"]
    assert isinstance(empty, str) and empty != "x"


@pytest.mark.parametrize(("row", "field", "scalar", "value"), MARIADB_REFUSED)
async def test_mariadb_value_the_scalar_cannot_carry_is_a_field_error(
    mariadb: Runner, row: int, field: str, scalar: str, value: str
) -> None:
    errors = await mariadb.errors(f"{{ shifts(where: {{id: {{eq: {row}}}}}) {{ id {field} }} }}")
    error = _refusal(errors, scalar, value)
    assert error["path"] == ["shifts"]
    assert "quiver-stored" not in error["message"]


async def test_mariadb_rows_whose_value_is_not_served_are_not_refused(mariadb: Runner) -> None:
    data = await mariadb.data("{ shifts(orderBy: {id: ASC}) { id note } }")
    assert [r["id"] for r in data["shifts"]] == list(MARIADB_ROWS)
    # only the first row is served: the others' values are never read into the answer
    data = await mariadb.data("{ shifts(orderBy: {id: ASC}, limit: 1) { id starts day kind } }")
    assert data["shifts"] == [{"id": 1, "starts": "08:30:00", "day": "2020-01-15", "kind": "late"}]


async def test_mariadb_nested_aggregated_and_sibling_fields_are_refused(mariadb: Runner) -> None:
    errors = await mariadb.errors("{ teams(orderBy: {id: ASC}) { id shifts { starts } } }")
    _refusal(errors, "Time", "'-01:00:00'")
    errors = await mariadb.errors("{ shiftsAggregate { min { starts } } }")
    _refusal(errors, "Time", "'-01:00:00'")
    # the greatest date is a valid one: served
    data = await mariadb.data("{ shiftsAggregate { max { day } } }")
    assert data["shiftsAggregate"] == {"max": {"day": "2020-01-15"}}
    kind, body = await mariadb.raw(
        "{ ok: teams(where: {id: {eq: 1}}) { name } bad: shifts(where: {id: {eq: 6}}) { day } }"
    )
    assert kind == "field_error", body
    assert body["data"] is None
    [error] = body["errors"]
    assert error["path"] == ["bad"]
    assert "'0000-00-00'" in error["message"]
    connection = await mariadb.errors(
        "{ shiftsConnection(where: {id: {eq: 2}}) { nodes { starts } } }"
    )
    _refusal(connection, "Time", "'-01:00:00'")


async def test_mariadb_aggregates_of_valid_values_are_served(mariadb: Runner) -> None:
    data = await mariadb.data(
        "{ shiftsAggregate(where: {id: {in: [1, 14]}}) { min { starts day } max { at } } }"
    )
    agg = data["shiftsAggregate"]
    assert agg["min"] == {"starts": "00:00:00", "day": "0001-01-01"}
    assert agg["max"] == {"at": "9999-12-31T23:59:59"}


async def test_mariadb_mutation_returning_such_a_value_writes_nothing(mariadb: Runner) -> None:
    errors = await mariadb.errors(
        'mutation { updateShift(id: 2, set: {note: "changed"}) { id starts } }'
    )
    error = _refusal(errors, "Time", "'-01:00:00'", "nothing was written")
    assert error["path"] == ["updateShift"]
    assert mariadb.sql("SELECT note FROM shifts WHERE id = 2") == [("negative",)]
    # the change log records rows as they are: a write that does not serve it goes through
    data = await mariadb.data('mutation { updateShift(id: 2, set: {note: "kept"}) { id note } }')
    assert data["updateShift"] == {"id": 2, "note": "kept"}
    assert mariadb.sql("SELECT COUNT(*) FROM outbox") == [(1,)]
    # and a value can be corrected through the API
    data = await mariadb.data(
        'mutation { updateShift(id: 3, set: {starts: "23:00:00"}) { id starts } }'
    )
    assert data["updateShift"] == {"id": 3, "starts": "23:00:00"}
    mariadb.sql("UPDATE shifts SET note = 'negative' WHERE id = 2")
    mariadb.db.query("SET SESSION sql_mode = ''")
    mariadb.sql("UPDATE shifts SET starts = '24:00:00' WHERE id = 3")
    mariadb.db.query("SET SESSION sql_mode = DEFAULT")


async def test_mariadb_year_zero_is_refused_as_input_as_it_is_as_output(mariadb: Runner) -> None:
    # MariaDB stores year 0 in strict mode too; the Date and DateTime scalars read no year 0
    mariadb.sql("UPDATE shifts SET day = '0000-03-01' WHERE id = 15")
    try:
        errors = await mariadb.errors("{ shifts(where: {id: {eq: 15}}) { day } }")
        _refusal(errors, "Date", "'0000-03-01'", "its year, month or day is zero")
    finally:
        mariadb.sql("UPDATE shifts SET day = '0000-01-01' WHERE id = 15")
    for query in (
        '{ shifts(where: {day: {eq: "0000-01-01"}}) { id } }',
        '{ shifts(where: {at: {lt: "0000-12-31T23:59:59"}}) { id } }',
        'mutation { updateShift(id: 14, set: {day: "0000-01-01"}) { id } }',
    ):
        [error] = await mariadb.errors(query)
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
        assert "cannot represent '0000-" in error["message"], error
    assert mariadb.sql("SELECT day FROM shifts WHERE id = 14")[0][0].year == 1


async def test_mariadb_stored_text_never_passes_for_a_marked_value(mariadb: Runner) -> None:
    from quiver.sql.dialects import STORED_MARK

    forged = "quiver-stored-0123456789abcdef:time:Time:x"
    assert not forged.startswith(STORED_MARK)
    mariadb.sql("UPDATE shifts SET note = ? WHERE id = 1", (forged[:20],))
    try:
        data = await mariadb.data("{ shifts(where: {id: {eq: 1}}) { note starts } }")
        assert data["shifts"] == [{"note": forged[:20], "starts": "08:30:00"}]
    finally:
        mariadb.sql("UPDATE shifts SET note = 'fine' WHERE id = 1")


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------

#: column -> (declared type, the texts it serves as stored, the texts it refuses)
SQLITE_TEXTS: dict[str, tuple[str, list[str], list[str]]] = {
    "d": (
        "DATE",
        ["2024-01-02", "2024-02-29", "0001-01-01", "9999-12-31", "2024-W01-2"],
        ["yesterday", "2021-02-30", "2024-13-01", "2024-1-2", " 2024-01-02", "2024-01-02 03:04"],
    ),
    "dtm": (
        "DATETIME",
        [
            "2024-01-02 03:04:05",
            "2024-01-02T03:04:05",
            "2024-01-02 03:04:05.678",
            "2024-01-02T03:04:05.123456",
            "2024-01-02 03:04:05.1234567",
            "2024-01-02T03:04:05Z",
            "2024-01-02 03:04:05+02:00",
            "2024-01-02T03:04:05.5-05:30",
            "2024-01-02 03:04",
            "2024-01-02",
        ],
        ["now", "2024-02-30 00:00:00", "2024-01-02 24:00:00", "2024-01-02 03:04:05.", "abc"],
    ),
    "tm": (
        "TIME",
        ["03:04:05", "23:59:59.999", "03:04", "03:04:05.123456", "03:04:05+02:00", "03:04:05Z"],
        ["24:00:00", "25:00:00", "noon", "03:60:00", "-01:00:00", "03:04:05."],
    ),
    "uu": (
        "UUID",
        [
            "123e4567-e89b-12d3-a456-426614174000",
            "123E4567-E89B-12D3-A456-426614174000",
            "123e4567e89b12d3a456426614174000",
            "{123e4567-e89b-12d3-a456-426614174000}",
        ],
        ["abc", "123e4567-e89b-12d3-a456-42661417400", "123e4567-e89b-12d3-a456-42661417400g"],
    ),
}
SQLITE_SCALARS = {"d": "Date", "dtm": "DateTime", "tm": "Time", "uu": "UUID"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sqlite_cells(tmp_path_factory: Any) -> AsyncIterator[Runner]:
    path: Path = tmp_path_factory.mktemp("stored") / "stored.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE cells (id INTEGER PRIMARY KEY, col TEXT NOT NULL, good INTEGER NOT NULL,"
        " d DATE, dtm DATETIME, tm TIME, uu UUID)"
    )
    row = 0
    for column, (_, good, bad) in SQLITE_TEXTS.items():
        for texts, ok in ((good, 1), (bad, 0)):
            for text in texts:
                row += 1
                conn.execute(
                    f"INSERT INTO cells (id, col, good, {column}) VALUES (?, ?, ?, ?)",
                    (row, column, ok, text),
                )
    conn.commit()
    conn.close()
    async with _running(ChinookDb("sqlite", f"sqlite:///{path.absolute()}")) as runner:
        yield runner


def _stored(column: str, text: str) -> str:
    """The text as stored (checked: the column's affinity kept it as text)."""
    with sqlite3.connect(":memory:") as conn:
        conn.execute(f"CREATE TABLE t (x {SQLITE_TEXTS[column][0]})")
        conn.execute("INSERT INTO t VALUES (?)", (text,))
        cls, value = conn.execute("SELECT typeof(x), x FROM t").fetchone()
    assert cls == "text", (column, text, cls)
    return str(value)


@pytest.mark.parametrize("column", list(SQLITE_TEXTS))
async def test_sqlite_text_of_the_scalars_form_is_served_as_stored(
    sqlite_cells: Runner, column: str
) -> None:
    data = await sqlite_cells.data(
        f'{{ cells(where: {{col: {{eq: "{column}"}}, good: {{eq: 1}}}}, orderBy: {{id: ASC}})'
        f" {{ {column} }} }}"
    )
    served = [r[column] for r in data["cells"]]
    good = [_stored(column, t) for t in SQLITE_TEXTS[column][1]]
    if column == "dtm":  # served with a T between the date and the time, as before
        good = [t.replace(" ", "T") for t in good]
    assert served == good


@pytest.mark.parametrize(
    ("column", "text"),
    [(column, text) for column, (_, _, bad) in SQLITE_TEXTS.items() for text in bad],
)
async def test_sqlite_text_not_of_the_scalars_form_is_a_field_error(
    sqlite_cells: Runner, column: str, text: str
) -> None:
    [(row,)] = sqlite_cells.sql(
        f"SELECT id FROM cells WHERE {column} = ?", (_stored(column, text),)
    )
    errors = await sqlite_cells.errors(f"{{ cells(where: {{id: {{eq: {row}}}}}) {{ {column} }} }}")
    scalar = SQLITE_SCALARS[column]
    error = _refusal(errors, f"a {scalar} field", repr(text))
    assert error["path"] == ["cells"]


async def test_sqlite_aggregates_and_other_classes_still_refused(sqlite_cells: Runner) -> None:
    errors = await sqlite_cells.errors('{ cellsAggregate(where: {col: {eq: "d"}}) { max { d } } }')
    _refusal(errors, "a Date field", "'yesterday'")
    data = await sqlite_cells.data(
        '{ cellsAggregate(where: {col: {eq: "d"}, good: {eq: 1}}) { min { d } max { d } } }'
    )
    assert data["cellsAggregate"] == {"min": {"d": "0001-01-01"}, "max": {"d": "9999-12-31"}}


async def test_sqlite_mutation_returning_such_a_value_writes_nothing(
    sqlite_cells: Runner,
) -> None:
    [(row,)] = sqlite_cells.sql("SELECT id FROM cells WHERE d = 'yesterday'")
    errors = await sqlite_cells.errors(
        f'mutation {{ updateCell(id: {row}, set: {{col: "moved"}}) {{ id d }} }}'
    )
    error = _refusal(errors, "a Date field", "'yesterday'", "nothing was written")
    assert error["path"] == ["updateCell"]
    assert sqlite_cells.sql("SELECT col FROM cells WHERE id = ?", (row,)) == [("d",)]
    # the change log records rows as they are: a write that does not serve it goes through
    data = await sqlite_cells.data(
        f'mutation {{ updateCell(id: {row}, set: {{col: "moved"}}) {{ id col }} }}'
    )
    assert data["updateCell"] == {"id": row, "col": "moved"}
    assert sqlite_cells.sql("SELECT COUNT(*) FROM outbox") == [(1,)]
    sqlite_cells.sql("UPDATE cells SET col = 'd' WHERE id = ?", (row,))


async def test_sqlite_text_that_is_not_utf8_is_refused_readably(sqlite_cells: Runner) -> None:
    sqlite_cells.sql(
        "INSERT INTO cells (id, col, good, d) VALUES (1000, 'x', 0, CAST(x'32ff' AS TEXT))"
    )
    try:
        errors = await sqlite_cells.errors("{ cells(where: {id: {eq: 1000}}) { d } }")
        _refusal(errors, "a Date field", "'2\ufffd'")
    finally:
        sqlite_cells.sql("DELETE FROM cells WHERE id = 1000")


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def postgresql(fresh_postgresql: str) -> AsyncIterator[Runner]:
    db = ChinookDb("postgresql", fresh_postgresql)
    try:
        db.query("CREATE TYPE mood AS ENUM ('calm', 'busy')")
        db.query(
            "CREATE TABLE shifts (id INT PRIMARY KEY, starts TIME, zoned TIMETZ, times TIME[],"
            " day DATE, at TIMESTAMP, kind mood, u UUID, note TEXT)"
        )
        db.query(
            "INSERT INTO shifts VALUES (1, '23:59:59.999999', '10:00:00+02', '{00:00:00}',"
            " '2020-01-15', '2020-01-15 10:00:00', 'busy', '123e4567-e89b-12d3-a456-426614174000',"
            " 'fine'), (2, '24:00:00', NULL, NULL, NULL, NULL, NULL, NULL, 'end'),"
            " (3, NULL, '24:00:00+05', NULL, NULL, NULL, NULL, NULL, NULL),"
            " (4, NULL, NULL, '{08:00:00,24:00:00}', NULL, NULL, NULL, NULL, NULL)"
        )
        async with _running(db) as runner:
            yield runner
    finally:
        db.close()


async def test_postgresql_serves_every_time_of_day_and_checks_only_time_and_date_fields(
    postgresql: Runner,
) -> None:
    query = "{ shifts(where: {id: {eq: 1}}) { starts zoned times day at kind u } }"
    data = await postgresql.data(query)
    assert data["shifts"] == [
        {
            "starts": "23:59:59.999999",
            "zoned": "10:00:00+02",
            "times": ["00:00:00"],
            "day": "2020-01-15",
            "at": "2020-01-15T10:00:00",
            "kind": "busy",
            "u": "123e4567-e89b-12d3-a456-426614174000",
        }
    ]
    prepared = postgresql.engine.prepare("{ shifts { kind u note } }", None)
    await postgresql.engine.execute(prepared, None)
    assert not any(s.marks for steps in prepared.plans.values() for s in steps)


@pytest.mark.parametrize(
    ("row", "field", "value"),
    [(2, "starts", "'24:00:00'"), (3, "zoned", "'24:00:00+05'"), (4, "times", "'24:00:00'")],
)
async def test_postgresql_time_of_24_00_is_a_field_error(
    postgresql: Runner, row: int, field: str, value: str
) -> None:
    errors = await postgresql.errors(f"{{ shifts(where: {{id: {{eq: {row}}}}}) {{ {field} }} }}")
    error = _refusal(errors, "a Time field holds the PostgreSQL time", value, "00:00:00")
    assert error["path"] == ["shifts"]


async def test_postgresql_time_of_24_00_is_refused_as_input_as_it_is_as_output(
    postgresql: Runner,
) -> None:
    for query in (
        '{ shifts(where: {starts: {eq: "24:00:00"}}) { id } }',
        '{ shifts(where: {starts: {gte: "24:00"}}) { id } }',
        'mutation { updateShift(id: 1, set: {starts: "24:00:00"}) { id } }',
        'mutation { createShift(input: {id: 9, zoned: "24:00:00+00:00"}) { id } }',
    ):
        [error] = await postgresql.errors(query)
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED", error
        assert "Time cannot represent '24:00" in error["message"], error
    [error] = await postgresql.errors(
        "query ($t: Time) { shifts(where: {starts: {eq: $t}}) { id } }", {"t": "24:00:00"}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    # a row holding it can be read without the field, and corrected through the API
    data = await postgresql.data('{ shifts(where: {starts: {gt: "23:00"}}) { id note } }')
    assert data["shifts"] == [{"id": 1, "note": "fine"}, {"id": 2, "note": "end"}]
    errors = await postgresql.errors(
        'mutation { updateShift(id: 2, set: {note: "x"}) { id starts } }'
    )
    _refusal(errors, "'24:00:00'", "nothing was written")
    assert postgresql.sql("SELECT note FROM shifts WHERE id = 2") == [("end",)]
    data = await postgresql.data(
        'mutation { updateShift(id: 2, set: {starts: "00:00:00"}) { id starts } }'
    )
    assert data["updateShift"] == {"id": 2, "starts": "00:00:00"}
    postgresql.sql("UPDATE shifts SET starts = '24:00:00' WHERE id = 2")


#: row id -> (column, value) of PostgreSQL dates and timestamps outside the years 1 to 9999.
PG_FAR_DATES = {
    2: ("day", "4713-01-01 BC"),
    3: ("day", "10000-01-01"),
    4: ("at", "0044-03-15 12:00:00 BC"),
    5: ("at", "294276-12-31 23:59:59"),
    # year 1 where it was written, 1 BC in the server's zone (UTC)
    6: ("zoned", "0001-01-01 00:00:00+05"),
    7: ("days", "{2020-01-01,0001-12-31 BC}"),
    8: ("stamps", "{infinity,10000-01-01 00:00:00+00}"),
}


@pytest_asyncio.fixture(loop_scope="session")
async def postgresql_dates(fresh_postgresql: str) -> AsyncIterator[Runner]:
    db = ChinookDb("postgresql", fresh_postgresql)
    try:
        db.query(
            "CREATE TABLE events (id INT PRIMARY KEY, day DATE, at TIMESTAMP, zoned TIMESTAMPTZ,"
            " days DATE[], stamps TIMESTAMPTZ[], note TEXT)"
        )
        db.query(
            "INSERT INTO events VALUES (1, '0001-01-01', '9999-12-31 23:59:59.999999',"
            " '-infinity', '{infinity,9999-12-31}', '{0001-01-01 00:00:00+00}', 'edges')"
        )
        for row, (column, value) in PG_FAR_DATES.items():
            insert = f"INSERT INTO events (id, {column}, note) VALUES (%s, %s, 'far')"
            db.query(insert, (row, value))
        async with _running(db) as runner:
            yield runner
    finally:
        db.close()


async def test_postgresql_dates_of_years_1_and_9999_and_infinities_are_served(
    postgresql_dates: Runner,
) -> None:
    data = await postgresql_dates.data(
        "{ events(where: {id: {eq: 1}}) { day at zoned days stamps } }"
    )
    assert data["events"] == [
        {
            "day": "0001-01-01",
            "at": "9999-12-31T23:59:59.999999",
            "zoned": "-infinity",
            "days": ["infinity", "9999-12-31"],
            "stamps": ["0001-01-01T00:00:00+00:00"],
        }
    ]


@pytest.mark.parametrize("row", sorted(PG_FAR_DATES))
async def test_postgresql_date_before_year_1_or_after_9999_is_a_field_error(
    postgresql_dates: Runner, row: int
) -> None:
    field, _ = PG_FAR_DATES[row]
    scalar = "Date" if field in ("day", "days") else "DateTime"
    errors = await postgresql_dates.errors(
        f"{{ events(where: {{id: {{eq: {row}}}}}) {{ id {field} }} }}"
    )
    error = _refusal(errors, f"a {scalar} field holds the PostgreSQL value", "years 1 to 9999")
    assert error["path"] == ["events"]
    # the row is still found and read without the field
    data = await postgresql_dates.data(f"{{ events(where: {{id: {{eq: {row}}}}}) {{ note }} }}")
    assert data["events"] == [{"note": "far"}]


async def test_postgresql_filters_still_compare_with_far_dates(postgresql_dates: Runner) -> None:
    data = await postgresql_dates.data(
        '{ events(where: {day: {lt: "0001-01-01"}}) { id } b: events(where: {at: {gt:'
        ' "9999-12-31T23:59:59.999999"}}) { id } }'
    )
    assert data == {"events": [{"id": 2}], "b": [{"id": 5}]}


# --------------------------------------------------------------------------------------------
# Subscriptions
# --------------------------------------------------------------------------------------------


async def test_mariadb_subscription_serving_such_a_value_ends_naming_it(
    fresh_mysql: str, modules: Path
) -> None:
    from tests.graphql.subscription_fixtures import live_server, watching

    query = "subscription { gadgetChanged { op after { id released } } }"
    async with (
        live_server("mysql", fresh_mysql) as live,
        watching(live, modules, "Gadget", query) as client,
    ):
        await live.sql("INSERT INTO gadgets (price, released) VALUES (1, '2024-05-06')")
        [first] = await client.next_payloads(1)
        assert first["data"]["gadgetChanged"]["after"]["released"] == "2024-05-06"
        live.db.query("SET SESSION sql_mode = ''")
        await live.sql("INSERT INTO gadgets (price, released) VALUES (2, '2024-00-06')")
        event = await client.event()
        assert event["event"] == "error", event
        (error,) = event["errors"]
        assert error["extensions"]["code"] == "DATABASE_ERROR", error
        assert "a Date field holds the MariaDB date '2024-00-06'" in error["message"]
        assert FIX in error["message"]


async def test_postgresql_subscription_serving_24_00_ends_naming_it(
    fresh_postgresql: str, modules: Path
) -> None:
    from tests.graphql.subscription_fixtures import serve_database, watching

    db = ChinookDb("postgresql", fresh_postgresql)
    try:
        db.query("CREATE TABLE shifts (id INT PRIMARY KEY, starts TIME)")
        query = "subscription { shiftChanged { after { id starts } } }"
        async with (
            serve_database(db, fresh_postgresql) as live,
            watching(live, modules, "Shift", query) as client,
        ):
            await live.sql("INSERT INTO shifts VALUES (1, '23:59:59')")
            [first] = await client.next_payloads(1)
            assert first["data"]["shiftChanged"]["after"] == {"id": 1, "starts": "23:59:59"}
            await live.sql("INSERT INTO shifts VALUES (2, '24:00:00')")
            event = await client.event()
            assert event["event"] == "error", event
            (error,) = event["errors"]
            assert error["extensions"]["code"] == "DATABASE_ERROR", error
            assert "a Time field holds the PostgreSQL time '24:00:00'" in error["message"]
            assert FIX in error["message"]
    finally:
        db.close()
