"""Quiver's GraphQL API inside a Starlette app, beside the app's own routes.

    python examples/embedding/app.py [DATABASE_URL]   # default: the Chinook demo database

serves the host app on http://127.0.0.1:8000/ and GraphQL (with GraphiQL) on
http://127.0.0.1:8000/api/graphql. ``build_app`` is what a test (or your own code) imports.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import quiver


def build_app(database_url: str) -> Starlette:
    """The host app: its own route at / and Quiver's GraphQL API mounted at /api."""
    graphql = quiver.create_app(
        database_url,
        settings={
            "graphql": {"max_depth": 8},
            "cors": {"allow_origins": ["http://localhost:3000"]},
        },
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # A mounted app gets no lifespan of its own: open and close Quiver's pool here.
        await graphql.startup()
        try:
            yield
        finally:
            await graphql.shutdown()

    async def tables(request: Request) -> JSONResponse:
        schema = graphql.schema
        names = sorted(e.name for e in schema.entities) if schema else []
        return JSONResponse({"types": names})

    return Starlette(routes=[Route("/", tables), Mount("/api", app=graphql)], lifespan=lifespan)


async def describe(database_url: str) -> None:
    """Reflection alone: what Quiver finds in the database."""
    schema = await quiver.reflect(database_url)
    for entity in schema.entities:
        print(f"{entity.name}: {', '.join(f.name for f in entity.fields)}")


def main() -> None:
    if len(sys.argv) > 1:
        url = sys.argv[1]
    else:
        from quiver.demo.chinook import ensure_sqlite

        url = f"sqlite:///{ensure_sqlite().absolute()}"
    asyncio.run(describe(url))
    uvicorn.run(build_app(url), host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
