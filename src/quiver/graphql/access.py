"""Permissions planned: a role's row filters as conditions of the GraphQL filter tree.

:class:`Access` takes a principal's :class:`~quiver.auth.permissions.Grants` and coerces each
filter as the ``<Entity>Where`` input of the full schema (so a filter may test fields the role
cannot read, and relations), then plans it with :func:`~quiver.graphql.planner.plan_filter`:
every value a parameter. :meth:`Access.rows` is the planner's row restriction: every table a
query, a nested relation, a relation filter, an aggregate or an export reads shows only the
rows the role may select. :func:`check_permissions` is what ``quiver check`` and ``quiver
serve`` run: every problem of ``auth.permissions``, each with its place in quiver.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from graphql.utilities import coerce_input_value

from graphql import GraphQLError, GraphQLInputObjectType, GraphQLSchema
from quiver.auth.permissions import (
    AccessDeniedError,
    Grants,
    Locate,
    check_permission_names,
    grants_for,
)
from quiver.config.loader import located
from quiver.config.settings import QuiverSettings
from quiver.graphql.planner import PlanError, RowRestriction, plan_filter
from quiver.runtime.errors import ConfigError, ErrorDetail
from quiver.schema.catalog import Catalog, build_catalog
from quiver.schema.ir import Entity, Schema
from quiver.sql.dialects import Dialect, dialect_for
from quiver.sql.fragment import Fragment

__all__ = ["Access", "AccessDeniedError", "check_permissions"]

Operation = Literal["select", "insert", "update", "delete"]
_FILTER_KEY = {"select": "filter", "insert": "check", "update": "filter", "delete": "filter"}


class Access:
    """One principal's permissions over the full catalog and GraphQL schema."""

    def __init__(
        self,
        grants: Grants,
        catalog: Catalog,
        graphql_schema: GraphQLSchema,
        dialect: Dialect,
        *,
        plan: bool = True,
    ) -> None:
        """Coerce (and with ``plan``, plan once) every filter of ``grants``; a
        :class:`ConfigError` lists the filters that do not fit the schema."""
        self.grants = grants
        self.catalog = catalog
        self.graphql_schema = graphql_schema
        self.dialect = dialect
        self._where: dict[tuple[str, Operation], dict[str, Any]] = {}
        problems: list[ErrorDetail] = []
        for name, grant in grants.entities.items():
            for op in ("select", "insert", "update", "delete"):
                raw = grant.row_filter(op)
                if not raw:
                    continue
                where = f"auth.permissions.{grants.role}.{name}.{op}.{_FILTER_KEY[op]}"
                coerced = coerce_filter(graphql_schema, name, raw, where, problems)
                if coerced is None:
                    continue
                try:
                    if plan:
                        e = catalog.entities[name]
                        plan_filter(catalog, graphql_schema, dialect, e, "x", coerced)
                except PlanError as err:
                    problems.append(ErrorDetail(err.message, where, "fix the filter"))
                    continue
                self._where[(name, op)] = coerced
        if problems:
            raise ConfigError(problems)

    def condition(self, operation: Operation, entity: Entity, alias: str) -> Fragment | None:
        """The rows of ``entity`` (named ``alias``) ``operation`` may take; None: every row."""
        where = self._where.get((entity.name, operation))
        if where is None:
            return None
        full = self.catalog.entities[entity.name]
        return plan_filter(self.catalog, self.graphql_schema, self.dialect, full, alias, where)

    def rows(self, entity: Entity, alias: str) -> Fragment | None:
        """The planner's row restriction: the rows the role may select."""
        return self.condition("select", entity, alias)

    def for_operation(self, operation: Operation) -> RowRestriction:
        def restriction(entity: Entity, alias: str) -> Fragment | None:
            return self.condition(operation, entity, alias)

        return restriction

    def where_of(self, operation: Operation, entity: str) -> Mapping[str, Any] | None:
        """The coerced filter of ``operation`` on ``entity`` (None: every row)."""
        return self._where.get((entity, operation))


def coerce_filter(
    graphql_schema: GraphQLSchema,
    entity: str,
    raw: Mapping[str, Any],
    where: str,
    problems: list[ErrorDetail],
) -> dict[str, Any] | None:
    """``raw`` coerced as the ``<entity>Where`` input; problems are added with ``where``."""
    where_type = graphql_schema.get_type(f"{entity}Where")
    if not isinstance(where_type, GraphQLInputObjectType):
        problems.append(ErrorDetail(f"{entity} has no filter input", where, ""))
        return None
    found: list[ErrorDetail] = []

    def on_error(path: Sequence[str | int], invalid: Any, error: GraphQLError) -> None:
        at = ".".join(str(p) for p in path)
        found.append(
            ErrorDetail(
                error.message,
                f"{where}.{at}" if at else where,
                "write the filter as a GraphQL where argument of the entity",
            )
        )

    coerced = coerce_input_value(dict(raw), where_type, on_error)
    if found:
        problems.extend(found)
        return None
    return dict(coerced)


def check_permissions(
    settings: QuiverSettings, schema: Schema, locate: Locate | None = None
) -> None:
    """Raise a :class:`ConfigError` listing every problem of ``auth.permissions`` against
    ``schema``: unknown roles, entities, fields and claims, filters that do not fit."""
    auth = settings.auth
    problems = check_permission_names(auth, schema, locate)
    if problems or auth.permissions is None:
        if problems:
            raise ConfigError(problems)
        return
    from quiver.graphql.typesystem import build_graphql_schema

    catalog = build_catalog(schema)
    graphql_schema = build_graphql_schema(catalog)
    dialect = _dialect(settings)
    for role in auth.permissions:
        keys = [k for k in auth.api_keys if k.role == role]
        # Without a key the filters' shape is still checked, every claim read as null.
        every: list[dict[str, Any] | None] = [dict(k.claims) for k in keys]
        for claims in every or [None]:
            grants = grants_for(auth, role, claims)
            assert grants is not None
            try:
                Access(grants, catalog, graphql_schema, dialect, plan=claims is not None)
            except ConfigError as err:
                problems.extend(d for d in err.details if d not in problems)
    if problems:
        if locate is not None:
            problems = [located(d, locate) for d in problems]
        raise ConfigError(problems)


def _dialect(settings: QuiverSettings) -> Dialect:
    from quiver.sql.url import parse_database_url

    url = settings.database.url
    return dialect_for(parse_database_url(url).dialect if url else "sqlite")
