"""Quiver: compiled GraphQL over SQL databases, Arrow Flight, file and telemetry pipelines.

The public API lives here: authoring (``@quiver.type``, ``quiver.field``, ``quiver.relation``,
``@quiver.query``, ``@quiver.mutation``, ``@quiver.observer`` and the annotation markers) and
embedding (``quiver.create_app`` returns the GraphQL ASGI app, ``await quiver.reflect(url)``
the schema of a database); everything else is reached through the ``quiver`` CLI. Each module
is imported on first use, so ``import quiver`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "ID",
    "JSON",
    "BigInt",
    "MutationRefusedError",
    "OrderBy",
    "Where",
    "__version__",
    "create_app",
    "field",
    "mutation",
    "observer",
    "query",
    "reflect",
    "relation",
    "type",
]

# Public name -> attribute of quiver.schema.authoring.
_AUTHORING = {
    "type": "object_type",
    "field": "field",
    "relation": "relation",
    "query": "query",
    "Where": "Where",
    "OrderBy": "OrderBy",
    "BigInt": "BigInt",
    "ID": "ID",
    "JSON": "JSON",
}

# Public name -> attribute of quiver.schema.resolvers.
_RESOLVERS = {"mutation": "mutation", "MutationRefusedError": "MutationRefusedError"}

# Public name -> attribute of quiver.observers.authoring.
_OBSERVERS = {"observer": "observer"}

# Public name -> attribute of quiver.graphql.embedding.
_EMBEDDING = {"create_app": "create_app", "reflect": "reflect"}

if TYPE_CHECKING:
    from quiver.graphql.embedding import create_app, reflect
    from quiver.observers.authoring import observer
    from quiver.schema.authoring import ID, JSON, BigInt, OrderBy, Where, field, query, relation
    from quiver.schema.authoring import object_type as type
    from quiver.schema.resolvers import MutationRefusedError, mutation


def __getattr__(name: str) -> Any:
    if name in _EMBEDDING:
        from quiver.graphql import embedding

        value = getattr(embedding, _EMBEDDING[name])
        globals()[name] = value
        return value
    if name in _OBSERVERS:
        from quiver.observers import authoring as observer_authoring

        value = getattr(observer_authoring, _OBSERVERS[name])
        globals()[name] = value
        return value
    if name in _RESOLVERS:
        from quiver.schema import resolvers

        value = getattr(resolvers, _RESOLVERS[name])
        globals()[name] = value
        return value
    target = _AUTHORING.get(name)
    if target is None:
        raise AttributeError(f"module 'quiver' has no attribute {name!r}")
    from quiver.schema import authoring

    value = getattr(authoring, target)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
