"""The Python API to embed Quiver: ``quiver.create_app`` and ``quiver.reflect``.

``create_app`` returns the same ASGI app that ``quiver serve`` runs, to be served by any ASGI
server or mounted inside another ASGI application (Starlette, FastAPI, ...). When no schema is
given, the app reflects its database when it starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from quiver.config.loader import load_settings
from quiver.config.settings import QuiverSettings, TableNames
from quiver.graphql.http import GraphQLApp
from quiver.observers.tables import without_own_tables
from quiver.runtime.errors import ConfigError
from quiver.schema.ir import Schema
from quiver.schema.reflect import reflect_database

__all__ = ["create_app", "reflect"]


def create_app(
    database: str | None = None,
    *,
    schema: Schema | None = None,
    settings: QuiverSettings | Mapping[str, Any] | None = None,
    config: str | os.PathLike[str] | None = None,
    mutations: Sequence[Callable[..., Any]] = (),
) -> GraphQLApp:
    """The GraphQL ASGI app for ``database`` (a URL such as ``postgresql://user@host/db``).

    ``settings`` are those of ``quiver.yaml``, as a :class:`QuiverSettings` or a mapping of
    sections (``{"graphql": {"max_depth": 8}}``); ``config`` reads them from a file instead,
    with ``QUIVER_*`` environment variables over it, as ``quiver serve`` does. ``database``
    wins over ``database.url``. ``schema`` (from :func:`reflect`, or a compiled ``schema.json``
    read with ``quiver.schema.ir.load_schema_file``) skips reflection at start-up.
    ``mutations`` are ``@quiver.mutation`` functions served beside the generated mutations.

    The app opens its database pool in its ASGI lifespan; mounted inside another app, call
    ``await app.startup()`` and ``await app.shutdown()`` from the host's lifespan. Raises
    :class:`~quiver.runtime.errors.ConfigError` for invalid settings or no database.
    """
    if settings is not None and config is not None:
        raise ConfigError.one(
            "create_app takes settings or config, not both",
            "create_app",
            "pass the settings as a mapping, or the path of a quiver.yaml",
        )
    overrides = {"database.url": database} if database is not None else {}
    if config is not None:
        resolved = load_settings(config, overrides)
    else:
        if isinstance(settings, QuiverSettings):
            settings = settings.model_dump()
        resolved = load_settings(None, overrides, environ={}, base=settings or {})
    if schema is None and not resolved.database.url:
        raise ConfigError.one(
            "no database to serve",
            "create_app",
            "pass a database URL, e.g. create_app('sqlite:///chinook.db'), or settings with "
            "database.url",
        )
    return GraphQLApp(schema, resolved, mutations)


async def reflect(
    database: str,
    *,
    schemas: list[str] | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    names: Mapping[str, TableNames | Mapping[str, Any]] | None = None,
) -> Schema:
    """The schema of the database at ``database``: its tables, views, keys and relations.

    ``schemas`` lists the PostgreSQL schemas to read (default ``public``); ``include`` and
    ``exclude`` are glob patterns over table names. Pass the result to :func:`create_app`
    (``schema=``) or save it with ``schema.to_json()``. ``names`` sets GraphQL names as the
    ``names:`` section of ``quiver.yaml`` does (``{"movies": {"type": "Film"}}``). Quiver's
    own tables under their default names (the change log, the observers' ledger, claims and
    dead letters, ``quiver_jobs``) are left out, as the API never serves them. Raises
    :class:`~quiver.runtime.errors.ConfigError` for names it cannot use (an unknown key
    among them) and when the database cannot be reflected.
    """
    given = {
        table: n.model_dump(exclude_defaults=True) if isinstance(n, TableNames) else n
        for table, n in (names or {}).items()
    }
    settings = load_settings(None, environ={}, base={"names": given})
    schema = await reflect_database(
        database, schemas=schemas, include=include, exclude=exclude, names=settings.names
    )
    return without_own_tables(schema, settings)
