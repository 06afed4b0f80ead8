"""Engines over the Chinook database in each dialect, and a helper to run documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from quiver.config.settings import QuiverSettings
from quiver.graphql.engine import Engine
from quiver.schema.reflect import reflect_database


class Runner:
    """Runs GraphQL documents through an engine and decodes the response."""

    def __init__(self, engine: Engine, db: Any) -> None:
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


@pytest.fixture(scope="session")
async def chinook_runner(chinook_db: Any) -> AsyncIterator[Runner]:
    schema = await reflect_database(chinook_db.url)
    settings = QuiverSettings.model_validate({"database": {"url": chinook_db.url, "pool_max": 4}})
    engine = await Engine.open(schema, settings)
    try:
        yield Runner(engine, chinook_db)
    finally:
        await engine.close()
