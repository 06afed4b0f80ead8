"""Stored values a column's type allows but no Arrow type of its field holds (MariaDB's TIME
beyond a day, its zero dates and year 0, SQLite text not of a Date, DateTime or Time form,
PostgreSQL's time 24:00:00) fail an export, a Flight SQL query and a GraphQL ticket with
STORED_VALUE naming the column or field and the value, never a wrong value or an internal
error; values Arrow holds exactly (MariaDB's ENUM error value '', SQLite text in a UUID
column, PostgreSQL's timetz 24:00:00+00, as utf8) are streamed as stored. Change events'
images of PostgreSQL arrays of several dimensions are the one-dimension lists GraphQL serves."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.flight as flight
import pytest

from quiver.observers.triggers import install_triggers
from quiver.sql.database import open_database
from tests.conftest import ChinookDb, create_empty_database, drop_database
from tests.flight.conftest import Served, reflect, serving, start

#: dialect -> (column declarations, [(column, stored text, the value as the error names it)]),
#: each value in a row of its own; None: streamed as stored.
CASES: dict[str, tuple[str, list[tuple[str, str, str | None]]]] = {
    "mysql": (
        "tm TIME, d DATE, dtm DATETIME, k ENUM('a', 'b')",
        [
            ("tm", "-01:00:00", "1:00:00"),
            ("tm", "24:00:00", "24:00:00"),
            ("d", "0000-00-00", "'0000-00-00'"),
            ("d", "2020-00-15", "'2020-00-15'"),
            ("d", "0000-01-01", "'0000-01-01'"),
            ("dtm", "0000-00-00 00:00:00", "'0000-00-00 00:00:00'"),
            ("dtm", "2020-01-00 10:00:00", "'2020-01-00 10:00:00'"),
            ("dtm", "0000-01-01 10:00:00", "'0000-01-01 10:00:00'"),
            ("k", "zzz", None),  # stored as '', the ENUM's error value: its text is ''
        ],
    ),
    "sqlite": (
        "tm TIME, d DATE, dtm DATETIME, u UUID",
        [
            ("tm", "24:00:00", "24:00:00"),
            ("tm", "noon", "noon"),
            ("tm", "03:04:05+02:00", "03:04:05+02:00"),
            ("d", "yesterday", "yesterday"),
            ("d", "2021-02-30", "2021-02-30"),
            ("dtm", "now", "now"),
            ("dtm", "2024-01-02 24:00:00", "2024-01-02 24:00:00"),
            ("u", "abc", None),
        ],
    ),
    "postgresql": (
        "tm TIME, tz TIMETZ, tms TIME[]",
        [
            ("tm", "24:00:00", "24:00:00"),
            ("tms", "{08:00:00,24:00:00}", "24:00:00"),
            ("tz", "24:00:00+00", None),
        ],
    ),
}
#: what each case streams as when an export streams it as stored; a GraphQL ticket refuses it
#: as the field's scalar does (naming this)
STREAMED = {
    "k": ("", "ENUM error value ''"),
    "u": ("abc", "'abc'"),
    "tz": ("24:00:00+00", "'24:00:00+00'"),
}


@pytest.fixture(scope="module", params=list(CASES))
def stored(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Served]:
    dialect: str = request.param
    if dialect == "sqlite":
        path: Path = tmp_path_factory.mktemp("stored") / "stored.sqlite"
        url = f"sqlite:///{path.absolute()}"
    else:
        url = create_empty_database("mysql" if dialect == "mysql" else "postgresql")
    db = ChinookDb(dialect, url)  # type: ignore[arg-type]
    try:
        columns, cases = CASES[dialect]
        db.query(f"CREATE TABLE cells (id INT PRIMARY KEY, {columns})")
        if dialect == "mysql":
            db.query("SET SESSION sql_mode = ''")  # as a server may be
        mark = "?" if dialect == "sqlite" else "%s"
        for row, (column, text, _) in enumerate(cases, 1):
            db.query(f"INSERT INTO cells (id, {column}) VALUES ({row}, {mark})", [text])
        with serving(db) as running:
            yield running
    finally:
        db.close()
        if dialect != "sqlite":
            drop_database(url)


def _read(served: Served, ticket: dict[str, Any]) -> Any:
    with served.client() as client:
        return client.do_get(flight.Ticket(orjson.dumps(ticket))).read_all().to_pylist()


def _flight_sql(served: Served, query: str) -> Any:
    import adbc_driver_flightsql.dbapi as flightsql

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        conn = flightsql.connect(served.location.replace("grpc+tcp://", "grpc://"))
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetch_arrow_table().to_pylist()
    finally:
        conn.close()


def _reads(served: Served, row: int, column: str) -> dict[str, Any]:
    """Each way of reading one value: an export, Flight SQL, and GraphQL tickets read as
    columns and through the engine's JSON."""
    where = {"id": {"eq": row}}
    graphql = f"{{ cells(where: {{id: {{eq: {row}}}}}) {{ {column} }} }}"
    nested = f"{{ cells(where: {{id: {{eq: {row}}}}}, limit: 1) {{ id {column} }} }}"
    return {
        "export": lambda: _read(served, {"export": {"table": "cells", "where": where}}),
        "flight sql": lambda: _flight_sql(served, f"SELECT {column} FROM cells WHERE id = {row}"),
        "graphql": lambda: _read(served, {"graphql": {"query": graphql}}),
        "graphql json": lambda: _read(served, {"graphql": {"query": nested}}),
    }


def _case_ids() -> list[tuple[str, int]]:
    return [(d, row) for d, (_, cases) in CASES.items() for row in range(1, len(cases) + 1)]


@pytest.mark.parametrize("case", range(max(len(c) for _, c in CASES.values())))
@pytest.mark.parametrize("way", ["export", "flight sql", "graphql", "graphql json"])
def test_a_value_no_arrow_type_holds_fails_the_stream_naming_it(
    stored: Served, case: int, way: str
) -> None:
    cases = CASES[stored.db.dialect][1]
    if case >= len(cases):
        pytest.skip("no such case in this dialect")
    column, _, shown = cases[case]
    read = _reads(stored, case + 1, column)[way]
    graphql = way.startswith("graphql")
    if shown is None:
        streamed, shown = STREAMED[column]
        if not graphql:
            rows = read()
            assert rows[0][column] == streamed, rows
            return
    with pytest.raises(Exception) as caught:
        read()
    message = str(caught.value)
    assert "STORED_VALUE" in message, message
    assert shown in message, message
    # the column and its table; a GraphQL ticket's answer names the root field (the table)
    # and the field's scalar
    assert "cells" in message and (graphql or f"column {column!r}" in message), message
    assert "INTERNAL" not in message and "Traceback" not in message, message


def test_change_event_images_are_read_exactly_or_refused(fresh_sqlite: str) -> None:
    """A SQLite time with an offset is no time64: refused, never read without its offset."""
    db = ChinookDb("sqlite", fresh_sqlite)
    try:
        db.query("CREATE TABLE cells (id INT PRIMARY KEY, tm TIME)")
        schema = reflect(fresh_sqlite)
        _triggers(fresh_sqlite, schema)
        db.query("INSERT INTO cells VALUES (1, '03:04:05+02:00')")
        handle = start(fresh_sqlite, schema)
        try:
            served = Served(handle, db, schema)
            ticket = {"observer_events": {"entity": "Cell", "since": "2020-01-01"}}
            with pytest.raises(flight.FlightServerError) as caught:
                _read(served, ticket)
            message = str(caught.value)
            assert "STORED_VALUE" in message and "'03:04:05+02:00'" in message, message
            ticket["observer_events"]["images"] = "json"
            [event] = _read(served, ticket)
            assert orjson.loads(event["after"]) == {"id": 1, "tm": "03:04:05+02:00"}
        finally:
            handle.stop()
    finally:
        db.close()


def _triggers(url: str, schema: Any) -> None:
    async def install() -> None:
        db = await open_database(url)
        try:
            await install_triggers(db, schema.entities, "quiver_change_log")
        finally:
            await db.close()

    asyncio.run(install())


def test_change_events_of_arrays_of_several_dimensions_are_flat_lists(
    fresh_postgresql: str,
) -> None:
    db = ChinookDb("postgresql", fresh_postgresql)
    try:
        db.query("CREATE TABLE grid (id INT PRIMARY KEY, a INT[][], t TEXT[])")
        schema = reflect(fresh_postgresql)
        _triggers(fresh_postgresql, schema)
        db.query("INSERT INTO grid VALUES (1, '{{1,2},{3,4}}', '{{a,b},{c,NULL}}')")
        # a row logged before the triggers served such arrays flat
        db.query(
            "INSERT INTO quiver_change_log (entity, entity_key, operation, after_image,"
            " changed_fields, transaction_id) VALUES ('Grid', '{\"id\": 2}', 'insert',"
            ' \'{"id": 2, "a": [[5], [6]], "t": [["x"], [null]]}\', \'[]\', \'x\')'
        )
        handle = start(fresh_postgresql, schema)
        try:
            served = Served(handle, db, schema)
            ticket: dict[str, Any] = {"observer_events": {"entity": "Grid", "since": "2020-01-01"}}
            events = _read(served, ticket)
            assert [e["after"] for e in events] == [
                {"id": 1, "a": [1, 2, 3, 4], "t": ["a", "b", "c", None]},
                {"id": 2, "a": [5, 6], "t": ["x", None]},
            ]
            ticket["observer_events"]["images"] = "json"
            assert [orjson.loads(e["after"]) for e in _read(served, ticket)] == [
                {"id": 1, "a": [1, 2, 3, 4], "t": ["a", "b", "c", None]},
                {"id": 2, "a": [5, 6], "t": ["x", None]},
            ]
            exported = _read(served, {"export": {"table": "grid"}})
            assert exported == [{"id": 1, "a": [1, 2, 3, 4], "t": ["a", "b", "c", None]}]
        finally:
            handle.stop()
    finally:
        db.close()
