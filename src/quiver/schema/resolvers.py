"""Python mutations: ``@quiver.mutation`` functions that run inside the mutation's transaction.

::

    @quiver.mutation(entity="Author")
    async def rename_author(tx: Transaction, author_id: int, name: str) -> int:
        await tx.fetch_rows("UPDATE authors SET name = ? WHERE id = ?", [name, author_id])
        return author_id

The first parameter receives the open transaction (:class:`quiver.sql.database.Transaction`;
placeholders are the database's own: ``$1`` on PostgreSQL, ``%s`` on MariaDB, ``?`` on SQLite).
The others become the mutation's arguments, typed by their annotations (``int`` -> ``Int``,
``str | None`` -> optional ``String``, ...). The function returns the key of the row it wrote
(a value, a tuple in key order, or a mapping of key fields), or a list of keys with
``many=True``; the mutation answers that row (those rows) of ``entity`` with the request's
selection. Raising :class:`MutationRefusedError` undoes the whole operation.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from quiver.runtime.errors import ConfigError
from quiver.schema.ir import FunctionArgument, SourceLocation
from quiver.schema.naming import camel

__all__ = ["MutationRefusedError", "ResolverMutation", "mutation", "resolver_of"]

_ATTR = "__quiver_mutation__"
_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])


class MutationRefusedError(Exception):
    """Raised by a Python mutation to refuse the request: nothing of the operation is kept
    and the client gets ``message`` with ``code`` and, if given, the ``field`` at fault."""

    def __init__(self, message: str, *, code: str = "MUTATION_REFUSED", field: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.field = field


@dataclass(frozen=True)
class ResolverMutation:
    """A ``@quiver.mutation`` function, with the arguments its annotations declare."""

    func: Callable[..., Awaitable[Any]]
    name: str
    entity: str
    many: bool
    arguments: tuple[FunctionArgument, ...]
    description: str | None
    location: SourceLocation | None


def mutation(
    *,
    entity: str | type,
    name: str | None = None,
    many: bool = False,
    description: str | None = None,
) -> Callable[[_F], _F]:
    """Declare a Python mutation answering rows of ``entity`` (its name or its ``@quiver.type``
    class); see the module documentation."""

    def decorate(fn: _F) -> _F:
        from quiver.schema.authoring import _location_of, _scalar_of, _unwrap_optional

        location = _location_of(fn)
        where = str(location) if location else getattr(fn, "__qualname__", "mutation")
        plain: Callable[..., Any] = fn
        if not inspect.iscoroutinefunction(plain):
            raise ConfigError.one(
                f"{fn.__name__} must be an async function", where, "declare it with async def"
            )
        params = list(inspect.signature(fn).parameters.values())
        if not params:
            raise ConfigError.one(
                f"{fn.__name__} takes no parameter for the transaction",
                where,
                "make the first parameter the transaction: async def f(tx, ...)",
            )
        hints = typing.get_type_hints(fn, include_extras=True)
        arguments = []
        for p in params[1:]:
            tp, optional = _unwrap_optional(hints.get(p.name, Any))
            scalar = _scalar_of(tp)
            if scalar is None:
                raise ConfigError.one(
                    f"parameter {p.name!r} of {fn.__name__} has no GraphQL scalar type",
                    where,
                    "annotate it with int, float, str, bool, Decimal, datetime, date, UUID, ...",
                )
            arguments.append(
                FunctionArgument(
                    name=camel(p.name),
                    parameter=p.name,
                    scalar=scalar,
                    required=not optional and p.default is inspect.Parameter.empty,
                )
            )
        decl = ResolverMutation(
            func=fn,
            name=name or camel(fn.__name__),
            entity=entity if isinstance(entity, str) else _entity_name(entity, where),
            many=many,
            arguments=tuple(arguments),
            description=description if description is not None else inspect.getdoc(fn),
            location=location,
        )
        setattr(fn, _ATTR, decl)
        return fn

    return decorate


def _entity_name(cls: type, where: str) -> str:
    decl = getattr(cls, "__quiver_type__", None)
    name = getattr(decl, "name", None)
    if not isinstance(name, str):
        raise ConfigError.one(
            f"{cls.__name__} is not a @quiver.type class", where, "pass the entity's name"
        )
    return name


def resolver_of(func: Callable[..., Any]) -> ResolverMutation:
    """The declaration of a ``@quiver.mutation`` function."""
    decl = getattr(func, _ATTR, None)
    if not isinstance(decl, ResolverMutation):
        name = getattr(func, "__qualname__", repr(func))
        raise ConfigError.one(
            f"{name} is not a @quiver.mutation function",
            "resolvers",
            "decorate it with @quiver.mutation(entity=...)",
        )
    return decl
