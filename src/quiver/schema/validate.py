"""Validating a schema: every problem at once, each with where it was declared and a fix.

:func:`validate_schema` checks a schema on its own (names, duplicates, keys, relations);
:func:`check_against` compares it with the schema reflected from the live database
(sources and columns that do not exist, types and nullability that disagree) and
:func:`check_database` reflects that database first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from quiver.runtime.errors import ErrorDetail
from quiver.runtime.hints import did_you_mean
from quiver.schema.api_names import (
    GENERATED_TYPE_SUFFIXES,
    RESERVED_MEMBER_NAMES,
    RESERVED_TYPE_NAMES,
    root_field_names,
)
from quiver.schema.ir import Entity, Field, Relation, Scalar, Schema, SourceLocation

__all__ = [
    "Report",
    "check_against",
    "check_database",
    "render",
    "validate_schema",
]

_GRAPHQL_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*$")
LIST_ARGUMENTS = ("where", "orderBy", "limit", "offset")


@dataclass
class Report:
    """Errors (the schema cannot be served) and warnings (it can, but look)."""

    errors: list[ErrorDetail] = field(default_factory=list)
    warnings: list[ErrorDetail] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, other: Report) -> None:
        self.errors.extend(other.errors)
        self.warnings.extend(other.warnings)

    def lines(self) -> list[str]:
        """Every problem as ``file:line: error: message (fix)``, in file and line order."""
        items = [(d, "error") for d in self.errors] + [(d, "warning") for d in self.warnings]
        items.sort(key=lambda item: _sort_key(item[0].where))
        return [render(d, severity) for d, severity in items]


def _sort_key(where: str) -> tuple[str, int, str]:
    m = re.match(r"^(.*):(\d+)$", where)
    return (m.group(1), int(m.group(2)), "") if m else ("\uffff", 0, where)


def render(detail: ErrorDetail, severity: str = "error") -> str:
    """``where: severity: message (fix)``."""
    text = f"{severity}: {detail.message}"
    if detail.where:
        text = f"{detail.where}: {text}"
    if detail.fix:
        text += f" ({detail.fix})"
    return text


def _suggestion(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    hint = did_you_mean(name, candidates)
    return f"; {hint}" if hint else ""


def _where(location: SourceLocation | None, path: str) -> str:
    return str(location) if location is not None else path


def _name_problem(name: str) -> str | None:
    if not _GRAPHQL_NAME.match(name):
        return "is not a valid GraphQL name"
    if name.startswith("__"):
        return "starts with '__', which GraphQL reserves for introspection"
    return None


class _Validator:
    def __init__(self, schema: Schema, columns_checked: bool) -> None:
        self.schema = schema
        self.columns_checked = columns_checked
        self.report = Report()
        self.entities = {e.name: e for e in schema.entities}

    def error(self, message: str, where: str, fix: str = "") -> None:
        self.report.errors.append(ErrorDetail(message, where, fix))

    def warning(self, message: str, where: str, fix: str = "") -> None:
        self.report.warnings.append(ErrorDetail(message, where, fix))

    def run(self) -> Report:
        seen: dict[str, Entity] = {}
        roots: dict[str, tuple[Entity, str]] = {}
        generated = {
            f"{e.name}{suffix}": e.name
            for e in self.schema.entities
            for suffix in GENERATED_TYPE_SUFFIXES
        } | {f"{s.value}Filter": s.value for s in Scalar}
        for e in self.schema.entities:
            where = _where(e.location, e.name)
            problem = _name_problem(e.name)
            if problem:
                self.error(
                    f"type name {e.name!r} {problem}",
                    where,
                    "use letters, digits and '_', not starting with a digit; pass name=",
                )
            elif e.name in RESERVED_TYPE_NAMES:
                self.error(
                    f"type name {e.name!r} is reserved by the GraphQL schema",
                    where,
                    f"rename it, e.g. name='{e.name}Row'",
                )
            elif e.name in generated:
                self.error(
                    f"type name {e.name!r} is also the name of a type the GraphQL schema "
                    f"generates for {generated[e.name]}",
                    where,
                    "rename one of the two types with name=",
                )
            if e.name in seen:
                first = seen[e.name]
                self.error(
                    f"duplicate type name {e.name!r} (also declared at "
                    f"{_where(first.location, first.source)})",
                    where,
                    "give one of them another name=",
                )
            else:
                seen[e.name] = e
            self.check_entity(e)
            for name, kind in root_field_names(e).items():
                problem = _name_problem(name)
                if problem:
                    self.error(f"root field name {name!r} {problem}", where, "pass name=")
                if name in roots and roots[name][0] is not e:
                    other = roots[name][0]
                    self.error(
                        f"duplicate root field {name!r}: {e.name} ({kind}) and {other.name} "
                        f"({roots[name][1]}) both use it",
                        where,
                        "name the query differently with @quiver.query(name=...)",
                    )
                roots.setdefault(name, (e, kind))
        return self.report

    def check_entity(self, e: Entity) -> None:
        where = _where(e.location, e.name)
        if not e.source:
            self.error(f"{e.name} names no source table or view", where, "pass source=")
        names: dict[str, str] = {}
        items: list[Field | Relation] = [*e.fields, *e.relations]
        for item in items:
            if item.hidden:
                continue
            iwhere = _where(item.location, f"{e.name}.{item.name}")
            problem = _name_problem(item.name)
            if problem is None and item.name in RESERVED_MEMBER_NAMES:
                problem = "is reserved: filters use it as a combinator or GraphQL as a literal"
            if problem:
                self.error(
                    f"{e.name}: field name {item.name!r} {problem}",
                    iwhere,
                    "pass name= to quiver.field() or quiver.relation()",
                )
            if item.name in names:
                self.error(
                    f"{e.name}: duplicate field name {item.name!r} (also at {names[item.name]})",
                    iwhere,
                    "rename one of them with name=",
                )
            else:
                names[item.name] = iwhere
        visible = {f.column for f in e.fields if not f.hidden}
        hidden = {f.column for f in e.fields if f.hidden}
        for col in e.primary_key:
            if col in hidden:
                self.error(
                    f"{e.name}: key column {col!r} is hidden",
                    where,
                    "a key column must be served; remove hidden=True from its field",
                )
            elif col not in visible:
                listed = ", ".join(f.name for f in e.fields if not f.hidden) or "none"
                self.error(
                    f"{e.name}: key column {col!r} is not a field{_suggestion(col, visible)}",
                    where,
                    f"declare it as a field or fix key= (fields: {listed})",
                )
        if not e.primary_key and e.root_fields and "by_key" in e.root_fields:
            self.error(f"{e.name} has a by-key query but no key", where, f"pass key= to {e.name}")
        if e.list_arguments is not None:
            for arg in e.list_arguments:
                if arg not in LIST_ARGUMENTS:
                    self.error(
                        f"{e.name}: unknown list argument {arg!r}",
                        where,
                        f"use {', '.join(LIST_ARGUMENTS)}",
                    )
        for rel in e.relations:
            if not rel.hidden:
                self.check_relation(e, rel)

    def check_relation(self, e: Entity, rel: Relation) -> None:
        where = _where(rel.location, f"{e.name}.{rel.name}")
        label = f"{e.name}.{rel.name}"
        target = self.entities.get(rel.target)
        if target is None:
            self.error(
                f"{label}: unknown relation target {rel.target!r}"
                f"{_suggestion(rel.target, self.entities)}",
                where,
                "annotate it with a @quiver.type class, or with a reflected type's name and "
                "compile with --extend-db",
            )
            return
        if rel.kind == "one" and not rel.target_columns:
            self.error(
                f"{label}: {rel.target} has no key for the relation to reference",
                where,
                f"pass references='column' to quiver.relation() or key= to {rel.target}",
            )
            return
        if rel.kind == "many" and not rel.local_columns:
            self.error(
                f"{label}: {e.name} has no key for {rel.target} rows to reference",
                where,
                f"pass references='column' to quiver.relation() or key= to {e.name}",
            )
            return
        if len(rel.local_columns) != len(rel.target_columns):
            self.error(
                f"{label}: {len(rel.local_columns)} column(s) {list(rel.local_columns)} cannot "
                f"join {len(rel.target_columns)} column(s) {list(rel.target_columns)} of "
                f"{rel.target}",
                where,
                "give fk= and references= the same number of columns",
            )
            return
        self.check_columns(label, where, e, rel.local_columns)
        self.check_columns(label, where, target, rel.target_columns)
        for lc, tc in zip(rel.local_columns, rel.target_columns, strict=True):
            lf, tf = e.field_by_column(lc), target.field_by_column(tc)
            if lf is not None and tf is not None and not _joinable(lf.scalar, tf.scalar):
                self.warning(
                    f"{label}: joins {e.name}.{lf.name} ({lf.scalar.value}) with "
                    f"{target.name}.{tf.name} ({tf.scalar.value})",
                    where,
                    "check that fk= names the right column",
                )

    def check_columns(self, label: str, where: str, owner: Entity, columns: Iterable[str]) -> None:
        known = {f.column for f in owner.fields}
        for col in columns:
            if col in known or self.columns_checked:
                continue
            hint = _suggestion(col, known)
            if hint:
                self.error(
                    f"{label}: column {col!r} does not exist on {owner.name}{hint}",
                    where,
                    "fix the column name in fk= / references=",
                )
            else:
                self.warning(
                    f"{label}: column {col!r} is not declared on {owner.name}; it is assumed "
                    f"to exist in {owner.source!r}",
                    where,
                    f"declare it on {owner.name}, with quiver.field(hidden=True) to keep it out "
                    "of the API, or compile with --check-db to verify it",
                )


_JOINABLE = {
    frozenset({Scalar.INT, Scalar.BIGINT}),
    frozenset({Scalar.ID, Scalar.INT}),
    frozenset({Scalar.ID, Scalar.BIGINT}),
    frozenset({Scalar.ID, Scalar.STRING}),
    frozenset({Scalar.ID, Scalar.UUID}),
    frozenset({Scalar.STRING, Scalar.UUID}),
    frozenset({Scalar.INT, Scalar.DECIMAL}),
    frozenset({Scalar.BIGINT, Scalar.DECIMAL}),
}


def _joinable(a: Scalar, b: Scalar) -> bool:
    return a == b or frozenset({a, b}) in _JOINABLE


def validate_schema(schema: Schema, *, columns_checked: bool = False) -> Report:
    """Every problem of ``schema`` on its own, with its location and a fix.

    A relation column that is not a declared field is an error when it looks like a typo of
    one and a warning otherwise (it may exist in the source); ``columns_checked=True`` leaves
    both to :func:`check_against`, which knows the source's real columns.
    """
    return _Validator(schema, columns_checked).run()


# Declared scalar -> database scalars it can serve without loss.
_SERVES: dict[Scalar, frozenset[Scalar]] = {
    Scalar.BIGINT: frozenset({Scalar.INT}),
    Scalar.FLOAT: frozenset({Scalar.INT}),
    Scalar.DECIMAL: frozenset({Scalar.INT, Scalar.BIGINT}),
    Scalar.STRING: frozenset({Scalar.UUID, Scalar.ID}),
    Scalar.ID: frozenset({Scalar.INT, Scalar.BIGINT, Scalar.STRING, Scalar.UUID}),
    Scalar.JSON: frozenset(),
}


def check_against(schema: Schema, database: Schema, *, case_sensitive: bool = True) -> Report:
    """Compare ``schema`` with ``database`` (reflected): missing sources and columns are
    errors, scalar and nullability disagreements are warnings."""
    report = Report()

    def fold(name: str) -> str:
        return name if case_sensitive else name.casefold()

    sources: dict[tuple[str | None, str], Entity] = {}
    for d in database.entities:
        sources.setdefault((d.db_schema, fold(d.source)), d)
        sources.setdefault((None, fold(d.source)), d)
    by_name = {e.name: e for e in schema.entities}
    actual: dict[str, Entity] = {}
    for e in schema.entities:
        where = _where(e.location, e.name)
        db = sources.get((e.db_schema, fold(e.source)))
        if db is None:
            qualified = f"{e.db_schema}.{e.source}" if e.db_schema else e.source
            report.errors.append(
                ErrorDetail(
                    f"{e.name}: source {qualified!r} does not exist in the database"
                    f"{_suggestion(e.source, sorted({d.source for d in database.entities}))}",
                    where,
                    "fix source= (a table or view) or create it",
                )
            )
            continue
        actual[e.name] = db
        columns = {fold(f.column): f for f in db.fields}
        for f in e.fields:
            fwhere = _where(f.location, f"{e.name}.{f.name}")
            dbf = columns.get(fold(f.column))
            if dbf is None:
                report.errors.append(
                    ErrorDetail(
                        f"{e.name}.{f.name}: column {f.column!r} does not exist in "
                        f"{db.source!r}{_suggestion(f.column, [c.column for c in db.fields])}",
                        fwhere,
                        "fix column= or the attribute name",
                    )
                )
                continue
            if f.scalar != dbf.scalar and dbf.scalar not in _SERVES.get(f.scalar, frozenset()):
                report.warnings.append(
                    ErrorDetail(
                        f"{e.name}.{f.name}: declared {f.scalar.value} but column "
                        f"{db.source}.{dbf.column} is {dbf.scalar.value}",
                        fwhere,
                        f"declare it as the database type ({dbf.scalar.value}) unless the "
                        "conversion is intended",
                    )
                )
            if not f.nullable and dbf.nullable and not f.hidden:
                report.warnings.append(
                    ErrorDetail(
                        f"{e.name}.{f.name}: declared non-null but column "
                        f"{db.source}.{dbf.column} allows NULL",
                        fwhere,
                        "annotate it '... | None', or a NULL row fails the whole response",
                    )
                )
    for e in schema.entities:
        if e.name not in actual:
            continue
        for rel in e.relations:
            target = by_name.get(rel.target)
            if rel.hidden or target is None:
                continue
            where = _where(rel.location, f"{e.name}.{rel.name}")
            for owner, cols in ((e, rel.local_columns), (target, rel.target_columns)):
                db = actual.get(owner.name)
                if db is None:
                    continue
                present = {fold(f.column) for f in db.fields}
                for col in cols:
                    if fold(col) not in present:
                        report.errors.append(
                            ErrorDetail(
                                f"{e.name}.{rel.name}: column {col!r} does not exist in "
                                f"{db.source!r}{_suggestion(col, [f.column for f in db.fields])}",
                                where,
                                "fix fk= / references=",
                            )
                        )
    return report


async def check_database(schema: Schema, url: str) -> tuple[Report, Schema]:
    """Reflect the database at ``url`` and :func:`check_against` it; also returns what was
    reflected."""
    from quiver.schema.reflect import reflect_database
    from quiver.sql.url import parse_database_url

    dialect = parse_database_url(url).dialect
    explicit = sorted({e.db_schema for e in schema.entities if e.db_schema})
    database = Schema()
    if explicit:
        database = await reflect_database(url, schemas=explicit)
    if not explicit or any(e.db_schema is None for e in schema.entities):
        default = await reflect_database(url)
        database = database.model_copy(update={"entities": database.entities + default.entities})
    return check_against(schema, database, case_sensitive=dialect == "postgresql"), database
