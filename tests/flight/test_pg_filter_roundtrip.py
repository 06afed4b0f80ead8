"""Arbitrary text through a Flight export filter on PostgreSQL selects exactly its own row."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import psycopg
import pyarrow.flight as flight
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quiver.flight.server import FlightHandle
from tests.conftest import _pg_create, _pg_drop
from tests.flight.conftest import reflect, start

TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]))


@dataclass
class Setup:
    admin: psycopg.Connection[tuple[object, ...]]
    handle: FlightHandle
    client: flight.FlightClient


@pytest.fixture(scope="module", params=["on", "off"])
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    url = _pg_create()
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute("CREATE TABLE note (id int PRIMARY KEY, body text NOT NULL)")
            name = admin.execute("SELECT current_database()").fetchone()
            assert name is not None
            # Every new session of this database, the server's included, gets the setting.
            admin.execute(
                f'ALTER DATABASE "{name[0]}" SET standard_conforming_strings = {request.param}'
            )
            handle = start(url, reflect(url))
            lease = handle.server.pool.acquire()
            with lease.connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('standard_conforming_strings')")
                assert cursor.fetchone() == (request.param,)
            handle.server.pool.release(lease)
            client = flight.FlightClient(handle.location)
            try:
                yield Setup(admin, handle, client)
            finally:
                client.close()
                handle.stop()
    finally:
        _pg_drop(url)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=TEXT, other=TEXT)
def test_any_text_filters_exactly_its_row(setup: Setup, value: str, other: str) -> None:
    setup.admin.execute("DELETE FROM note")
    setup.admin.execute(
        "INSERT INTO note VALUES (1, %s), (2, %s), (3, %s)",
        (value, value + "\\" + other, "'" + value + "x"),
    )
    for where in ({"body": {"eq": value}}, {"body": {"in": [value, value + "'"]}}):
        ticket = orjson.dumps({"export": {"table": "Note", "where": where}})
        table = setup.client.do_get(flight.Ticket(ticket)).read_all()
        assert table.column("id").to_pylist() == [1]
        assert table.column("body").to_pylist() == [value]
