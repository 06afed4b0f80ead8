"""Function mutations: the signature of each PostgreSQL function a mutation calls, read from
the catalog so the mutation's GraphQL arguments follow the function's parameters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quiver.runtime.errors import ConfigError, ErrorDetail, QuiverError
from quiver.runtime.hints import did_you_mean
from quiver.schema.ir import FunctionArgument, FunctionMutation
from quiver.schema.naming import camel
from quiver.schema.reflect import postgresql_scalar
from quiver.sql.connect import connect_postgresql
from quiver.sql.url import parse_database_url

__all__ = ["FunctionSpec", "reflect_functions"]

_PG_FUNCTIONS = """
SELECT n.nspname, p.proname, p.pronargs, p.pronargdefaults, p.proargnames,
       ARRAY(SELECT t.typname FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(oid, i)
             JOIN pg_catalog.pg_type t ON t.oid = a.oid ORDER BY a.i) AS types
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = ANY($1::text[]) AND p.prokind = 'f'
"""


@dataclass(frozen=True)
class FunctionSpec:
    """A function mutation as configured: its GraphQL name, function, entity, description."""

    name: str
    function: str
    entity: str | None = None
    description: str | None = None
    where: str = "mutations.functions"


async def reflect_functions(
    url: str, specs: Sequence[FunctionSpec], schemas: Sequence[str] = ("public",)
) -> tuple[FunctionMutation, ...]:
    """The mutations of ``specs``, their arguments read from the functions' parameters."""
    if not specs:
        return ()
    db = parse_database_url(url)
    if db.dialect != "postgresql":
        raise ConfigError.one(
            "function mutations call PostgreSQL functions; this database is not PostgreSQL",
            specs[0].where,
            "remove mutations.functions, or serve a PostgreSQL database",
        )
    qualified = [s.function.split(".")[0] for s in specs if "." in s.function]
    wanted = list(dict.fromkeys([*schemas, *qualified]))
    try:
        conn = await connect_postgresql(db, server_settings={"application_name": "quiver-reflect"})
    except QuiverError as exc:
        raise ConfigError(exc.details) from None
    try:
        rows = await conn.fetch(_PG_FUNCTIONS, wanted)
    finally:
        await conn.close()
    by_name: dict[tuple[str, str], list[Any]] = {}
    for row in rows:
        by_name.setdefault((row["nspname"], row["proname"]), []).append(row)
    out: list[FunctionMutation] = []
    problems: list[ErrorDetail] = []
    for i, spec in enumerate(specs):
        where = f"{spec.where}[{i}].function"
        schema, _, name = spec.function.rpartition(".")
        found = by_name.get((schema or schemas[0], name), [])
        if len(found) != 1:
            problems.append(
                ErrorDetail(
                    f"function {spec.function!r} "
                    + ("does not exist" if not found else "is overloaded"),
                    where,
                    did_you_mean(name, {n for _, n in by_name}, most=3, fallback="create it first")
                    if not found
                    else "give each overload a name of its own",
                )
            )
            continue
        r = found[0]
        names = list(r["proargnames"] or [])[: r["pronargs"]]
        if len(names) < r["pronargs"] or not all(names):
            problems.append(
                ErrorDetail(
                    f"function {spec.function!r} has unnamed parameters", where, "name them"
                )
            )
            continue
        optional_from = r["pronargs"] - (r["pronargdefaults"] or 0)
        arguments = tuple(
            FunctionArgument(
                name=camel(p.removeprefix("p_")),
                parameter=p,
                scalar=postgresql_scalar(t),
                required=j < optional_from,
            )
            for j, (p, t) in enumerate(zip(names, r["types"], strict=True))
        )
        out.append(
            FunctionMutation(
                name=spec.name,
                function=name,
                db_schema=schema or schemas[0],
                entity=spec.entity,
                arguments=arguments,
                description=spec.description,
            )
        )
    if problems:
        raise ConfigError(problems)
    return tuple(out)
