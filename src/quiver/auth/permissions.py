"""Permissions: what a caller's role may read and write, from ``auth.permissions``.

Each API key may name a ``role`` and carry ``claims``; ``auth.permissions`` gives, per role and
per entity, the rows (a GraphQL ``where`` filter whose values may be ``"$claims.<name>"``) and
the fields the role may select, insert, update and delete. :func:`grants_for` resolves them for
one :class:`~quiver.auth.keys.Principal` (claims substituted); :meth:`Grants.restrict` is the
schema that principal sees: entities it may not read are gone, and so are the fields it may
not read. The filters themselves are planned by the GraphQL planner (see
``quiver.graphql.access``): this module knows names, not SQL. See docs/permissions.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from quiver.auth.keys import Principal
from quiver.config.settings import AuthSettings, EntityPermissions
from quiver.runtime.errors import ConfigError, ErrorDetail, QuiverError
from quiver.runtime.hints import did_you_mean
from quiver.schema.ir import Entity, Schema

__all__ = [
    "CLAIM_PREFIX",
    "AccessDeniedError",
    "EntityGrant",
    "Grants",
    "check_permission_names",
    "claims_of",
    "grants_for",
    "substitute_claims",
]

CLAIM_PREFIX = "$claims."
Operation = Literal["select", "insert", "update", "delete"]
Locate = Callable[[tuple[str | int, ...]], str | None]


class AccessDeniedError(QuiverError):
    """A request for rows or fields the caller's role may not have."""


@dataclass(frozen=True)
class EntityGrant:
    """What one role may do with one entity (claims already substituted)."""

    entity: str
    #: Filters as written in quiver.yaml (field names, operators), values substituted.
    select_filter: Mapping[str, Any]
    #: Fields the role reads; None: all.
    select_columns: frozenset[str] | None
    insert: bool = False
    insert_check: Mapping[str, Any] | None = None
    insert_columns: frozenset[str] | None = None
    update: bool = False
    update_filter: Mapping[str, Any] | None = None
    update_columns: frozenset[str] | None = None
    delete: bool = False
    delete_filter: Mapping[str, Any] | None = None

    def may_read(self, field: str) -> bool:
        return self.select_columns is None or field in self.select_columns

    def may_write(self, operation: Literal["insert", "update"], field: str) -> bool:
        columns = self.insert_columns if operation == "insert" else self.update_columns
        return columns is None or field in columns

    def row_filter(self, operation: Operation) -> Mapping[str, Any]:
        """The where filter of ``operation`` (``{}``: every row)."""
        chosen = {
            "select": self.select_filter,
            "insert": self.insert_check,
            "update": self.update_filter,
            "delete": self.delete_filter,
        }[operation]
        return chosen or {}


@dataclass(frozen=True)
class Grants:
    """Everything one principal may do: by entity name, only the entities it may read."""

    role: str
    claims: tuple[tuple[str, Any], ...]
    entities: Mapping[str, EntityGrant]

    def readable(self, entity: str) -> bool:
        return entity in self.entities

    def grant(self, entity: str) -> EntityGrant:
        found = self.entities.get(entity)
        if found is None:
            raise AccessDeniedError.one(
                f"the role {self.role!r} may not read {entity}",
                entity,
                "ask for a key whose role lists it in auth.permissions",
            )
        return found

    def restrict(self, schema: Schema) -> Schema:
        """``schema`` as this principal sees it: only what it may read."""
        kept: list[Entity] = []
        for e in schema.entities:
            g = self.entities.get(e.name)
            if g is None:
                continue
            fields = tuple(f for f in e.fields if g.may_read(f.name))
            relations = tuple(r for r in e.relations if r.target in self.entities)
            kept.append(e.model_copy(update={"fields": fields, "relations": relations}))
        # Function mutations run arbitrary SQL: only unrestricted keys may call them.
        return schema.model_copy(update={"entities": tuple(kept), "mutations": ()})


def claims_of(principal: Principal) -> dict[str, Any]:
    return dict(principal.claims)


def substitute_claims(
    value: Any, claims: Mapping[str, Any] | None, where: tuple[str | int, ...] = ()
) -> Any:
    """``value`` with every ``"$claims.<name>"`` string replaced by the claim (``claims``
    None: by null, for checking a filter's shape without a key)."""
    if isinstance(value, dict):
        return {k: substitute_claims(v, claims, (*where, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_claims(v, claims, (*where, i)) for i, v in enumerate(value)]
    if isinstance(value, str) and value.startswith(CLAIM_PREFIX):
        name = value[len(CLAIM_PREFIX) :]
        if claims is None:
            return None
        if name not in claims:
            raise AccessDeniedError.one(
                f"the filter reads the claim {name!r}, which the key does not carry",
                ".".join(str(w) for w in where),
                "add it to the key's claims in auth.api_keys",
            )
        return claims[name]
    return value


def _columns(value: list[str] | str) -> frozenset[str] | None:
    return None if value == "*" else frozenset(value)


def _grant(entity: str, p: EntityPermissions, claims: Mapping[str, Any] | None) -> EntityGrant:
    assert p.select is not None
    return EntityGrant(
        entity=entity,
        select_filter=substitute_claims(p.select.filter, claims),
        select_columns=_columns(p.select.columns),
        insert=p.insert is not None,
        insert_check=substitute_claims(p.insert.check, claims) if p.insert else None,
        insert_columns=_columns(p.insert.columns) if p.insert else None,
        update=p.update is not None,
        update_filter=substitute_claims(p.update.filter, claims) if p.update else None,
        update_columns=_columns(p.update.columns) if p.update else None,
        delete=p.delete is not None,
        delete_filter=substitute_claims(p.delete.filter, claims) if p.delete else None,
    )


def grants_for(
    settings: AuthSettings, role: str | None, claims: Mapping[str, Any] | None
) -> Grants | None:
    """What ``role`` with ``claims`` may do; None when nothing restricts it (no
    ``auth.permissions``, or a key without a role)."""
    if settings.permissions is None or role is None:
        return None
    per_entity = settings.permissions.get(role, {})
    entities = {
        name: _grant(name, p, claims) for name, p in per_entity.items() if p.select is not None
    }
    return Grants(role, tuple(sorted((claims or {}).items())), entities)


def check_permission_names(
    settings: AuthSettings, schema: Schema, locate: Locate | None = None
) -> list[ErrorDetail]:
    """Every problem of ``auth.permissions`` that names alone show: unknown roles, entities,
    fields and claims, a select without the primary key. Filter values are checked by
    ``quiver.graphql.access.check_permissions``."""
    perms = settings.permissions
    out: list[ErrorDetail] = []

    def where(*loc: str | int) -> str:
        found = locate(loc) if locate is not None else None
        dotted = ".".join(str(x) if isinstance(x, str) else f"[{x}]" for x in loc)
        dotted = dotted.replace(".[", "[")
        return f"{found} {dotted}" if found else dotted

    if perms is None:
        # A role without permissions would read everything: surely not what was meant.
        return [
            ErrorDetail(
                f"the key {k.name!r} names the role {k.role!r}, but auth.permissions is not set,"
                " so it would read and write everything",
                where("auth", "api_keys", i, "role"),
                "add auth.permissions with an entry for the role, or remove the role",
            )
            for i, k in enumerate(settings.api_keys)
            if k.role is not None
        ]
    if not settings.api_keys:
        out.append(
            ErrorDetail(
                "auth.permissions is set but auth.api_keys is empty: every caller would be let"
                " in unrestricted",
                where("auth", "permissions"),
                "list the API keys, each with the role whose permissions apply to it",
            )
        )

    entities = {e.name: e for e in schema.entities}
    for i, key in enumerate(settings.api_keys):
        if key.role is not None and key.role not in perms:
            hint = did_you_mean(key.role, list(perms))
            out.append(
                ErrorDetail(
                    f"the role {key.role!r} has no entry in auth.permissions",
                    where("auth", "api_keys", i, "role"),
                    (hint + " " if hint else "")
                    + "add it under auth.permissions (an empty map hides everything from it)",
                )
            )
    for role, per_entity in perms.items():
        keys = [k for k in settings.api_keys if k.role == role]
        for name, p in per_entity.items():
            base = ("auth", "permissions", role, name)
            e = entities.get(name)
            if e is None:
                hint = did_you_mean(name, list(entities))
                out.append(
                    ErrorDetail(
                        f"there is no entity {name!r}",
                        where(*base),
                        (hint + " " if hint else "")
                        + "name a GraphQL type of the schema (quiver check lists them)",
                    )
                )
                continue
            if p.select is None and (p.insert or p.update or p.delete):
                out.append(
                    ErrorDetail(
                        f"{name}: the role may write but not read it",
                        where(*base),
                        "add select: {} (writes answer with the rows written)",
                    )
                )
            for op in ("select", "insert", "update"):
                section = getattr(p, op)
                if section is None or section.columns == "*":
                    continue
                for j, column in enumerate(section.columns):
                    if e.field(column) is None:
                        hint = did_you_mean(column, [f.name for f in e.fields])
                        out.append(
                            ErrorDetail(
                                f"{name} has no field {column!r}",
                                where(*base, op, "columns", j),
                                (hint + " " if hint else "")
                                + f"the fields are: {', '.join(f.name for f in e.fields)}",
                            )
                        )
            if p.select is not None and p.select.columns != "*":
                missing = [
                    f.name
                    for f in e.fields
                    if f.column in e.primary_key and f.name not in p.select.columns
                ]
                if missing:
                    out.append(
                        ErrorDetail(
                            f"{name}: select.columns leaves out the primary key"
                            f" ({', '.join(missing)})",
                            where(*base, "select", "columns"),
                            "add the key fields: rows are paged and written by their key",
                        )
                    )
            for op, filter_key in (
                ("select", "filter"),
                ("insert", "check"),
                ("update", "filter"),
                ("delete", "filter"),
            ):
                section = getattr(p, op)
                if section is None:
                    continue
                for claim, loc in _claims_in(getattr(section, filter_key), ()):
                    for k in keys:
                        if claim not in k.claims:
                            idx = settings.api_keys.index(k)
                            out.append(
                                ErrorDetail(
                                    f"the key {k.name!r} (role {role!r}) has no claim {claim!r},"
                                    f" which {name}.{op}.{filter_key} reads",
                                    where("auth", "api_keys", idx, "claims"),
                                    f"add {claim}: <value> to its claims, or fix the reference"
                                    f" at {where(*base, op, filter_key, *loc)}",
                                )
                            )
    return out


def _claims_in(value: Any, loc: tuple[str | int, ...]) -> list[tuple[str, tuple[str | int, ...]]]:
    if isinstance(value, dict):
        return [x for k, v in value.items() for x in _claims_in(v, (*loc, k))]
    if isinstance(value, list):
        return [x for i, v in enumerate(value) for x in _claims_in(v, (*loc, i))]
    if isinstance(value, str) and value.startswith(CLAIM_PREFIX):
        return [(value[len(CLAIM_PREFIX) :], loc)]
    return []


def raise_problems(problems: list[ErrorDetail]) -> None:
    if problems:
        raise ConfigError(problems)
