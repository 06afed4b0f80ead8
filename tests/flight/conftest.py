"""Flight servers over the Chinook database in each dialect, and clients of them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow.flight as flight
import pytest

from quiver.config.settings import QuiverSettings
from quiver.flight.server import FlightHandle, start_flight_server
from quiver.schema.ir import Schema
from quiver.schema.reflect import reflect_database
from tests.conftest import ChinookDb


def reflect(url: str) -> Schema:
    """The schema of the database at ``url``, reflected outside pytest's event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, reflect_database(url)).result()


@dataclass
class Served:
    handle: FlightHandle
    db: ChinookDb
    schema: Schema

    @property
    def location(self) -> str:
        return self.handle.location

    def client(self, **options: Any) -> flight.FlightClient:
        return flight.FlightClient(self.location, **options)


def start(url: str, schema: Schema, **sections: Any) -> FlightHandle:
    settings = QuiverSettings.model_validate(
        {
            "database": {"url": url, "pool_max": 2},
            "flight": {"port": 0, **sections.pop("flight", {})},
            **sections,
        }
    )
    return start_flight_server(schema, settings)


@contextmanager
def serving(db: ChinookDb, **sections: Any) -> Iterator[Served]:
    """A Flight server over the database of ``db``, as reflected now, stopped on leaving."""
    schema = reflect(db.url)
    handle = start(db.url, schema, **sections)
    try:
        yield Served(handle, db, schema)
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def served(chinook_db: ChinookDb) -> Iterator[Served]:
    """A Flight server over the Chinook database of each dialect, batches of 1,000 rows."""
    with serving(chinook_db, flight={"batch_rows": 1000}) as running:
        yield running


@pytest.fixture
def client(served: Served) -> Iterator[flight.FlightClient]:
    c = served.client()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def conn(served: Served) -> Iterator[Any]:
    """A DBAPI connection of adbc-driver-flightsql to the served Flight SQL endpoint."""
    import adbc_driver_flightsql.dbapi as flightsql

    location = served.location.replace("grpc+tcp://", "grpc://")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Cannot disable autocommit": read-only anyway
        connection = flightsql.connect(location)
    try:
        yield connection
    finally:
        connection.close()


def sql(served: Served, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """``text`` (``?`` placeholders) run on the served database directly: the ground truth."""
    if served.db.dialect != "sqlite":
        text = text.replace("?", "%s")
    return served.db.query(text, params)
