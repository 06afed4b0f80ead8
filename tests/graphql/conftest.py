"""Engines over the Chinook database and the awkward database in each dialect, a helper to run
documents, and the checks the edge-case tests share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import GraphQLEngine
from quiver.schema.reflect import reflect_database
from tests.conftest import DIALECTS, ChinookDb, Dialect, create_empty_database, drop_database
from tests.graphql.edge_fixtures import build_sqlite, statements


@contextlib.asynccontextmanager
async def asgi_client(
    app: Any, base_url: str = "http://quiver"
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``app`` (a Quiver ASGI app) called in process, the app started before
    and shut down after."""
    await app.startup()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url
        ) as client:
            yield client
    finally:
        await app.shutdown()


@pytest_asyncio.fixture(loop_scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the module's ``app`` fixture (a started Quiver ASGI app), called in
    process."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://quiver") as c:
        yield c


class Runner:
    """Runs GraphQL documents through an engine and decodes the response."""

    def __init__(self, engine: GraphQLEngine, db: Any) -> None:
        self.engine = engine
        self.db = db
        self.dialect: str = db.dialect

    async def raw(
        self, query: str, variables: dict[str, Any] | None = None, operation: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        prepared = self.engine.prepare(query, operation)
        outcome = await self.engine.execute(prepared, variables)
        return outcome.kind, orjson.loads(outcome.body)

    async def data(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        kind, body = await self.raw(query, variables)
        assert kind == "data", body
        assert "errors" not in body, body
        return body["data"]

    async def errors(self, query: str, variables: dict[str, Any] | None = None) -> list[Any]:
        kind, body = await self.raw(query, variables)
        assert kind != "data", body
        errors: list[Any] = body["errors"]
        return errors

    def sql(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Plain SQL through an independent driver, with ``?`` placeholders."""
        if self.dialect != "sqlite":
            text = text.replace("?", "%s")
        rows: list[tuple[Any, ...]] = self.db.query(text, params)
        return rows


@contextlib.asynccontextmanager
async def runner_over(db: Any, **database: Any) -> AsyncIterator[Runner]:
    """A :class:`Runner` of an engine over ``db``'s database (a ChinookDb) as reflected now,
    with the ``database`` settings given; the engine is closed on leaving, ``db`` is not."""
    schema = await reflect_database(db.url)
    settings = QuiverSettings.model_validate({"database": {"url": db.url, **database}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        yield Runner(engine, db)
    finally:
        await engine.close()


@pytest.fixture(scope="session")
async def chinook_runner(chinook_db: Any) -> AsyncIterator[Runner]:
    schema = await reflect_database(chinook_db.url)
    settings = QuiverSettings.model_validate({"database": {"url": chinook_db.url, "pool_max": 4}})
    engine = await GraphQLEngine.open(schema, settings)
    try:
        yield Runner(engine, chinook_db)
    finally:
        await engine.close()


#: Codes of an error that tells the client its request is wrong (never a crash).
CLIENT_ERROR_CODES = {"BAD_USER_INPUT", "GRAPHQL_VALIDATION_FAILED"}


def xfail_on(
    request: pytest.FixtureRequest, dialect: str, dialects: Iterable[str], reason: str
) -> None:
    """Mark the running test as a known, strict failure when it runs on one of ``dialects``."""
    if dialect in set(dialects):
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def is_client_error(kind: str, body: dict[str, Any], *needles: str) -> bool:
    """A request error with a client code whose message names one of ``needles``."""
    if kind == "data" or "errors" not in body:
        return False
    error = body["errors"][0]
    code = error.get("extensions", {}).get("code")
    return code in CLIENT_ERROR_CODES and any(n in error["message"] for n in needles)


@pytest_asyncio.fixture(scope="package", loop_scope="session", params=DIALECTS)
async def awkward(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Runner]:
    """An engine over the awkward database (tests/graphql/edge_fixtures.py) in each dialect."""
    dialect: Dialect = request.param
    if dialect == "sqlite":
        url = build_sqlite(tmp_path_factory.mktemp("awkward") / "awkward.sqlite")
        db = ChinookDb(dialect, url)
    else:
        url = create_empty_database(dialect)
        db = ChinookDb(dialect, url)
        for statement in statements(dialect):
            db.query(statement)
    engine: GraphQLEngine | None = None
    try:
        schema = await reflect_database(url)
        settings = QuiverSettings.model_validate({"database": {"url": url, "pool_max": 2}})
        engine = await GraphQLEngine.open(schema, settings)
        yield Runner(engine, db)
    finally:
        if engine is not None:
            await engine.close()
        db.close()
        if dialect != "sqlite":
            drop_database(url)


@pytest_asyncio.fixture(params=DIALECTS)
async def shop(request: pytest.FixtureRequest) -> AsyncIterator[Runner]:
    """An engine over a new bookshop database (tests/graphql/mutation_fixtures.py) in each
    dialect, with mutations and the change log."""
    from tests.graphql.mutation_fixtures import open_bookshop

    dialect: Dialect = request.param
    url: str = request.getfixturevalue(f"fresh_{dialect}")
    runner = await open_bookshop(dialect, url)
    try:
        yield runner
    finally:
        await runner.engine.close()
        runner.db.close()


@pytest.fixture(scope="session")
def modules() -> Path:
    """The reference graphql-ws client's node_modules, installed once."""
    from tests.graphql.subscription_fixtures import node_modules  # it imports this module

    return node_modules()


@pytest_asyncio.fixture(params=DIALECTS)
async def live_matrix(request: pytest.FixtureRequest, tmp_path_factory: Any) -> AsyncIterator[Any]:
    """The type-matrix table (tests/graphql/type_matrix.py) of each dialect, served over HTTP
    and WebSocket (a subscription_fixtures.LiveServer)."""
    from tests.graphql import type_matrix as tm  # both import this module
    from tests.graphql.subscription_fixtures import serve_database

    dialect: Dialect = request.param
    with tm.matrix_database(dialect, tmp_path_factory) as m:
        async with serve_database(m.db, m.url, m.schemas) as live:
            yield live
