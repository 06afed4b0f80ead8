"""Run a mutation operation: every root field in order, all in one transaction.

Each create, update or delete writes its rows, records one change-log row per row written
(:mod:`quiver.sql.changelog`) and answers with the rows it wrote, selected with the request's
nested selection (:func:`quiver.graphql.planner.plan_rows_by_key`) inside the same transaction.
The first refused write ends the operation: the transaction rolls back, so nothing of it is
kept, and the answer is ``data: null`` with one error naming the code and the field at fault.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from graphql.execution.values import get_argument_values

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLSchema,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from quiver.config.settings import MutationSettings
from quiver.graphql.access import Access
from quiver.graphql.planner import (
    BIT_TYPE,
    PG_TEXT_INPUT,
    PlanError,
    RowRestriction,
    collect_root_fields,
    collect_sub_fields,
    pg_date_text,
    pg_text_array_element,
    plan_keys_where,
    plan_rows_by_key,
    write_value_check,
)
from quiver.runtime.context import RequestContext, current_request
from quiver.runtime.hints import did_you_mean
from quiver.schema.catalog import Catalog, MutationField
from quiver.schema.ir import Composite, Entity, FunctionArgument, FunctionMutation, Scalar
from quiver.schema.ir import Field as IrField
from quiver.schema.resolvers import MutationRefusedError, ResolverMutation
from quiver.sql.build import template
from quiver.sql.changelog import (
    JSON_NULLS,
    Change,
    ChangeContext,
    ensure_change_log,
    json_nulls,
    json_text,
    json_value,
    mark_writer,
    unmark_writer,
    write_changes,
)
from quiver.sql.database import (
    ConstraintError,
    Database,
    DatabaseError,
    RaisedError,
    StatementTimeoutError,
    StoredValueError,
    Transaction,
    stored_refusal,
)
from quiver.sql.declared import json_depth, misfit
from quiver.sql.dialects import MYSQL_SPATIAL_TYPES, Dialect
from quiver.sql.fragment import Fragment, all_of, any_of, compile_sql, ident, join, param, sql
from quiver.sql.violations import Violation, ViolationKind

__all__ = ["MutationRunner"]

log = logging.getLogger("quiver.graphql")

Key = tuple[Any, ...]

_CODES: dict[ViolationKind, str] = {
    "unique": "UNIQUE_VIOLATION",
    "foreign_key": "FOREIGN_KEY_VIOLATION",
    "not_null": "NOT_NULL_VIOLATION",
    "check": "CHECK_VIOLATION",
    "too_long": "INVALID_VALUE",
    "out_of_range": "INVALID_VALUE",
    "value": "INVALID_VALUE",
}
#: the kinds of a value the column's type cannot hold
_VALUE_KINDS: frozenset[ViolationKind] = frozenset(("too_long", "out_of_range", "value"))
_EXPLAIN: dict[ViolationKind, str] = {
    "unique": "another row already has this value",
    "foreign_key": "the referenced row does not exist, or other rows still reference this one",
    "not_null": "a value is required",
    "check": "the value fails a check of the table",
    "too_long": "the value is longer than the column holds",
    "out_of_range": "the value is outside the range of the column's type",
    "value": "the value does not fit the column's type",
}


class _MisfitError(Exception):
    """A value its column cannot hold as given (at ``path``): INVALID_VALUE, before any write."""

    def __init__(self, reason: str, path: tuple[str | int, ...]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path = path


class _FailedError(Exception):
    """Ends the operation: the transaction rolls back and ``error`` is the answer."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


@dataclass
class _Field:
    """One mutation field of the request being run."""

    key: str
    mutation: MutationField
    nodes: list[FieldNode]
    args: dict[str, Any]
    #: The argument being written (``("inputs", 2)``, ``("set",)``), to trace a refused write.
    at: tuple[str | int, ...] = ()
    #: The fields written by the statement being run, in the order of their parameters.
    written: tuple[str, ...] = ()
    #: The values of ``written``, in the same order.
    values: tuple[Any, ...] = ()


class MutationRunner:
    """Runs mutation operations against one database."""

    def __init__(
        self,
        catalog: Catalog,
        graphql_schema: GraphQLSchema,
        dialect: Dialect,
        settings: MutationSettings,
        resolvers: Sequence[ResolverMutation] = (),
        access: Access | None = None,
    ) -> None:
        """``access``: the permissions of the role this runner writes for (None: all)."""
        self.access = access
        self.catalog = catalog
        self.resolvers = {r.name: r for r in resolvers}
        self.gql = graphql_schema
        self.dialect = dialect
        self.settings = settings
        self._change_log_ready = False

    async def run(
        self,
        database: Database,
        operation: OperationDefinitionNode,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        context: RequestContext | None,
    ) -> tuple[bytes, bool]:
        """The response body, and whether it holds data (False: errors, nothing written)."""
        mutation_type = self.gql.mutation_type
        assert mutation_type is not None
        roots = collect_root_fields(
            self.catalog, self.gql, self.dialect, operation, fragments, variables
        )
        who = context or current_request() or RequestContext()
        changes = ChangeContext(str(uuid.uuid4()), who.user_id, who.tenant_id)
        values: list[tuple[str, bytes]] = []
        try:
            if self.settings.change_log and not self._change_log_ready:
                # Its own transaction: MariaDB commits a transaction at any CREATE TABLE.
                async with database.transaction() as tx:
                    await ensure_change_log(tx, self.dialect, self.settings.change_log_table)
                self._change_log_ready = True
            async with database.transaction() as tx:
                log = self.settings.change_log
                if log:
                    await mark_writer(tx, self.dialect, self.settings.change_log_table, changes)
                for key, nodes in roots.items():
                    name = nodes[0].name.value
                    if name == "__typename":
                        values.append((key, b'"Mutation"'))
                        continue
                    definition = mutation_type.fields[name]
                    args = get_argument_values(definition, nodes[0], variables)
                    resolver = self.resolvers.get(name)
                    if resolver is not None:
                        work = self._resolver(tx, key, resolver, nodes, args, fragments, variables)
                        values.append((key, await self._recorded(tx, log, changes, work)))
                        continue
                    fm = self.catalog.function_mutations.get(name)
                    if fm is not None:
                        work = self._function(tx, key, fm, nodes, args, fragments, variables)
                        values.append((key, await self._recorded(tx, log, changes, work)))
                        continue
                    field = _Field(key, self.catalog.mutation_fields[name], nodes, args)
                    values.append(
                        (key, await self._field(tx, field, fragments, variables, changes))
                    )
                if log:
                    await unmark_writer(tx, self.dialect, self.settings.change_log_table, changes)
        except _FailedError as failure:
            return orjson.dumps({"errors": [failure.error], "data": None}), False
        except ConstraintError as err:  # at commit (deferred constraints)
            error = _violation_error(err.violation, None, None)
            return orjson.dumps({"errors": [error], "data": None}), False
        except DatabaseError as err:
            return orjson.dumps({"errors": [_database_error(err, None)], "data": None}), False
        parts = [b'{"data":{']
        for i, (key, value) in enumerate(values):
            parts.append(b"," if i else b"")
            parts.append(orjson.dumps(key) + b":" + value)
        parts.append(b"}}")
        return b"".join(parts), True

    # ----- one field -----
    async def _recorded(
        self, tx: Transaction, log: bool, changes: ChangeContext, work: Awaitable[bytes]
    ) -> bytes:
        """Await ``work`` (a Python or function mutation, whose writes are not known here) with
        the writer mark lifted, so the change-log triggers (when installed) record its writes
        in this transaction."""
        table = self.settings.change_log_table
        if log:
            await unmark_writer(tx, self.dialect, table, changes)
        answer = await work
        if log:
            await mark_writer(tx, self.dialect, table, changes)
        return answer

    async def _field(
        self,
        tx: Transaction,
        field: _Field,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
        context: ChangeContext,
    ) -> bytes:
        kind = field.mutation.kind
        e = field.mutation.entity
        try:
            answer: bytes | None = None
            if kind in ("create", "create_many"):
                keys, changes = await self._create(tx, field)
            elif kind in ("update", "update_many"):
                keys, changes = await self._update(tx, field, fragments, variables)
            else:
                keys = await self._keys(tx, field, fragments, variables)
                # A deleted row is answered as it was: read before the delete.
                answer = await self._rows(tx, e, keys, field.nodes, fragments, variables)
                changes = await self._delete(tx, e, keys)
            if self.settings.change_log:
                await write_changes(
                    tx, self.dialect, self.settings.change_log_table, changes, context
                )
            if answer is None:
                answer = await self._rows(tx, e, keys, field.nodes, fragments, variables)
        except PlanError as err:
            error = _error(err.message, "BAD_USER_INPUT", field.key)
            if err.path:
                error["extensions"]["argumentPath"] = list(err.path)
            raise _FailedError(error) from None
        except _MisfitError as err:
            name = str(err.path[-1])
            error = _error(
                f"{e.name}.{name}: {err.reason}; nothing was written.", "INVALID_VALUE", field.key
            )
            error["extensions"].update(field=name, argumentPath=list(err.path))
            raise _FailedError(error) from None
        except ConstraintError as err:
            raise _FailedError(_violation_error(err.violation, field, e)) from None
        except DatabaseError as err:
            raise _FailedError(_database_error(err, field.key)) from None
        return _one(answer) if kind in ("create", "update", "delete") else answer

    # ----- database functions -----
    async def _function(
        self,
        tx: Transaction,
        key: str,
        fm: FunctionMutation,
        nodes: list[FieldNode],
        args: dict[str, Any],
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> bytes:
        """Call ``fm``'s function with the given arguments (named, so omitted ones take their
        defaults). A status starting with ``failed`` or ``error``, or any errors, end the
        operation: nothing of it is kept."""
        given = [
            sql(ident(a.parameter), " => ", param(self._argument(key, a, args[a.name])))
            for a in fm.arguments
            if a.name in args
        ]
        function = sql(ident(fm.db_schema, fm.function) if fm.db_schema else ident(fm.function))
        statement = sql(
            "SELECT CAST(status AS TEXT), CAST(message AS TEXT), CAST(entity_key AS TEXT),"
            " CAST(errors AS TEXT) FROM ",
            function,
            "(",
            join(", ", given),
            ")",
        )
        try:
            rows = await self._fetch(tx, statement)
        except ConstraintError as err:
            raise _FailedError(_violation_error(err.violation, None, None, key)) from None
        except DatabaseError as err:
            raise _FailedError(_database_error(err, key)) from None
        if len(rows) != 1:
            raise _FailedError(
                _error(
                    f"{fm.function} returned {len(rows)} rows; it must return one.",
                    "DATABASE_ERROR",
                    key,
                )
            )
        status, message, entity_key, errors_text = rows[0]
        errors = orjson.loads(errors_text) if errors_text else []
        if not isinstance(errors, list):
            errors = [errors]
        status = status or ""
        if errors or status.lower().startswith(("failed", "error")):
            error = _error(message or f"{fm.name} failed: {status}", "MUTATION_FAILED", key)
            error["extensions"].update(status=status, errors=errors)
            raise _FailedError(error)
        plain: dict[str, Any] = {"status": status, "message": message}
        typename = f"{fm.name[:1].upper()}{fm.name[1:]}Result"
        parts = []
        for out_key, sub in self._select(nodes, fragments, variables).items():
            name = sub[0].name.value
            value: Any
            if name == "entity" and fm.entity is not None:
                raw = b"null"
                if entity_key:
                    e = self.catalog.entities[fm.entity]
                    named = orjson.loads(entity_key)
                    row_key = tuple(
                        named.get(f.name, named.get(f.column)) for f in self.catalog.key_fields(e)
                    )
                    raw = _one(await self._rows(tx, e, [row_key], sub, fragments, variables))
                parts.append(orjson.dumps(out_key) + b":" + raw)
                continue
            if name == "__typename":
                value = typename
            elif name == "errors":
                picked = self._select(sub, fragments, variables)
                value = [
                    {
                        k: "MutationError"
                        if n[0].name.value == "__typename"
                        else (problem if isinstance(problem, dict) else {}).get(n[0].name.value)
                        for k, n in picked.items()
                    }
                    for problem in errors
                ]
            else:
                value = plain.get(name)
            parts.append(orjson.dumps(out_key) + b":" + orjson.dumps(value))
        return b"{" + b",".join(parts) + b"}"

    # ----- Python mutations -----
    async def _resolver(
        self,
        tx: Transaction,
        key: str,
        resolver: ResolverMutation,
        nodes: list[FieldNode],
        args: dict[str, Any],
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> bytes:
        """Run ``resolver`` in the transaction and answer the rows whose keys it returns."""
        given = {
            a.parameter: self._argument(key, a, args[a.name])
            for a in resolver.arguments
            if a.name in args
        }
        try:
            returned = await resolver.func(tx, **given)
        except MutationRefusedError as refused:
            error = _error(refused.message, refused.code, key)
            if refused.field:
                error["extensions"]["field"] = refused.field
            raise _FailedError(error) from None
        except ConstraintError as err:
            e = self.catalog.entities[resolver.entity]
            raise _FailedError(_violation_error(err.violation, None, e, key)) from None
        except DatabaseError as err:
            raise _FailedError(_database_error(err, key)) from None
        e = self.catalog.entities[resolver.entity]
        items = list(returned or []) if resolver.many else [returned]
        keys = [self._key_of(e, k) for k in items if k is not None]
        answer = await self._rows(tx, e, keys, nodes, fragments, variables)
        return answer if resolver.many else _one(answer)

    def _argument(self, key: str, argument: FunctionArgument, value: Any) -> Any:
        """An argument of a Python or function mutation, checked as a value written to a
        column of its type is (no NUL or lone surrogate in text, finite floats, dates the
        driver can send): BAD_USER_INPUT naming it, before the mutation runs."""
        if value is None:
            return None
        f = IrField(name=argument.name, column=argument.parameter, scalar=argument.scalar)
        check = write_value_check(self.dialect, f)
        if check is None:
            return value
        try:
            return check(value)
        except PlanError as err:
            error = _error(f"{key}({argument.name}): {err.message}", "BAD_USER_INPUT", key)
            error["extensions"]["argumentPath"] = [argument.name]
            raise _FailedError(error) from None

    def _key_of(self, e: Entity, value: Any) -> Key:
        """A key as a resolver returns it: a value, a tuple in key order, a mapping by field."""
        fields = self.catalog.key_fields(e)
        if isinstance(value, Mapping):
            return tuple(value.get(f.name, value.get(f.column)) for f in fields)
        if isinstance(value, tuple):
            return value
        return (value,)

    def _select(
        self,
        nodes: list[FieldNode],
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> dict[str, list[FieldNode]]:
        return collect_sub_fields(self.catalog, self.gql, self.dialect, nodes, fragments, variables)

    # ----- create -----
    async def _create(self, tx: Transaction, field: _Field) -> tuple[list[Key], list[Change]]:
        e = field.mutation.entity
        if field.mutation.kind == "create":
            rows: list[tuple[tuple[str | int, ...], Mapping[str, Any]]] = [
                (("input",), field.args["input"])
            ]
        else:
            rows = [(("inputs", i), r) for i, r in enumerate(field.args["inputs"])]
            self._check_rows(field, len(rows), "inputs were given")
        keys: list[Key] = []
        for path, row in rows:
            self._check_columns(field, "insert", row, path)
        for path, row in rows:
            field.at = path
            columns: list[Fragment] = []
            values: list[Fragment] = []
            await self._check_composites(tx, e, row, path)
            for name, value in row.items():
                f = self.catalog.fields[e.name][name]
                columns.append(sql(ident(f.column)))
                values.append(self._value(e, f, value, (*path, name)))
            field.written, field.values = tuple(row), tuple(row.values())
            returning = sql(" RETURNING ", join(", ", (ident(c) for c in e.primary_key)))
            if columns:
                body = sql(" (", join(", ", columns), ") VALUES (", join(", ", values), ")")
            else:
                body = sql(self.dialect.insert_no_columns)
            got = await self._fetch(tx, sql("INSERT INTO ", _table(e), body, returning))
            keys.append(got[0])
        field.at = field.written = field.values = ()
        await self._check_within(tx, field, "insert", keys)
        after = await self._images(tx, e, keys)
        changes = [_change(e, "insert", None, image, _given(image)) for image in after]
        return keys, changes

    # ----- update -----
    async def _update(
        self,
        tx: Transaction,
        field: _Field,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> tuple[list[Key], list[Change]]:
        e = field.mutation.entity
        keys = await self._keys(tx, field, fragments, variables)
        changes_set: Mapping[str, Any] = field.args["set"]
        self._check_columns(field, "update", changes_set, ("set",))
        if not keys or not changes_set:
            return keys, []
        await self._check_composites(tx, e, changes_set, ("set",))
        before = await self._images(tx, e, keys)
        assignments = []
        new_values: dict[str, Any] = {}
        for name, value in changes_set.items():
            f = self.catalog.fields[e.name][name]
            assignments.append(sql(ident(f.column), " = ", self._value(e, f, value, ("set", name))))
            new_values[f.column] = value
        field.at = ("set",)
        field.written, field.values = tuple(changes_set), tuple(changes_set.values())
        await self._fetch(
            tx,
            sql("UPDATE ", _table(e), " SET ", join(", ", assignments), " WHERE ", _match(e, keys)),
        )
        field.at = field.written = field.values = ()
        # A key changed by the update is the row's key from now on.
        new_keys = [
            tuple(new_values.get(c, k[i]) for i, c in enumerate(e.primary_key)) for k in keys
        ]
        await self._check_within(tx, field, "update", new_keys)
        after = await self._images(tx, e, new_keys)
        changes = []
        for old, new in zip(before, after, strict=True):
            was, now = json_nulls(old), json_nulls(new)
            changed = [
                n
                for n in new
                if n != JSON_NULLS and (old.get(n), n in was) != (new.get(n), n in now)
            ]
            if changed:
                changes.append(_change(e, "update", old, new, changed))
        return new_keys, changes

    # ----- delete -----
    async def _delete(self, tx: Transaction, e: Entity, keys: list[Key]) -> list[Change]:
        if not keys:
            return []
        before = await self._images(tx, e, keys)
        await self._fetch(tx, sql("DELETE FROM ", _table(e), " WHERE ", _match(e, keys)))
        return [
            _change(e, "delete", image, None, [n for n in image if n != JSON_NULLS])
            for image in before
        ]

    # ----- rows -----
    async def _keys(
        self,
        tx: Transaction,
        field: _Field,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> list[Key]:
        """The keys of the rows the field writes, locked; NOT_FOUND for a missing key."""
        e = field.mutation.entity
        if field.mutation.kind in ("update_many", "delete_many"):
            mutation_type = self.gql.mutation_type
            assert mutation_type is not None
            text, params = plan_keys_where(
                self.catalog,
                self.gql,
                self.dialect,
                e,
                mutation_type.fields[field.mutation.name],
                field.nodes[0],
                fragments,
                variables,
                self.access.rows if self.access is not None else None,
                self._touch(field),
            )
            keys = await tx.fetch_rows(text, params)
            self._check_rows(field, len(keys), "rows match where")
            return keys
        key = tuple(field.args[f.name] for f in self.catalog.key_fields(e))
        # A row the role may not see or touch is answered as a missing one.
        allowed: list[Fragment] = []
        touch = self._touch(field)
        if self.access is not None and touch is not None:
            seen, writable = self.access.rows(e, "q__w"), touch(e, "q__w")
            allowed = [c for c in (seen, writable) if c is not None]
        found = await self._fetch(tx, _keys_among(e, [key], allowed, self.dialect.lock_rows))
        if not found:
            shown = ", ".join(
                f"{f.name}: {field.args[f.name]!r}" for f in self.catalog.key_fields(e)
            )
            error = _error(
                f"No {e.name} has the key {{{shown}}}; nothing was changed.",
                "NOT_FOUND",
                field.key,
            )
            raise _FailedError(error)
        return [found[0]]

    # ----- permissions -----
    def _touch(self, field: _Field) -> RowRestriction | None:
        """The rows the field's update or delete may write (None: any)."""
        if self.access is None:
            return None
        op: Literal["update", "delete"] = (
            "update" if field.mutation.kind in ("update", "update_many") else "delete"
        )
        return self.access.for_operation(op)

    def _check_columns(
        self,
        field: _Field,
        op: Literal["insert", "update"],
        row: Mapping[str, Any],
        path: tuple[str | int, ...],
    ) -> None:
        """PERMISSION_DENIED for a field the role may not write."""
        if self.access is None:
            return
        grant = self.access.grants.grant(field.mutation.entity.name)
        refused = [name for name in row if not grant.may_write(op, name)]
        if refused:
            error = _error(
                f"{field.mutation.name}: the role {self.access.grants.role!r} may not"
                f" {op} the field {', '.join(refused)} of {field.mutation.entity.name}; nothing"
                " was written. Leave it out, or use a key whose role may write it.",
                "PERMISSION_DENIED",
                field.key,
            )
            error["extensions"]["argumentPath"] = [*path, refused[0]]
            raise _FailedError(error)

    async def _check_within(
        self, tx: Transaction, field: _Field, op: Literal["insert", "update"], keys: list[Key]
    ) -> None:
        """PERMISSION_DENIED (and nothing kept) when a written row falls outside what the
        role may create (insert.check) or outside the rows it may update (update.filter)."""
        if self.access is None or not keys:
            return
        e = field.mutation.entity
        cond = self.access.condition(op, e, "q__w")
        if cond is None:
            return
        inside = await self._fetch(tx, _keys_among(e, keys, [cond]))
        if len(inside) < len(keys):
            rule = "insert.check" if op == "insert" else "update.filter"
            raise _FailedError(
                _error(
                    f"{field.mutation.name}: a written row is outside the rows the role"
                    f" {self.access.grants.role!r} may {op} ({rule} of {e.name}); nothing was"
                    " written.",
                    "PERMISSION_DENIED",
                    field.key,
                )
            )

    def _check_rows(self, field: _Field, count: int, what: str) -> None:
        limit = self.settings.max_rows
        if count > limit:
            raise _FailedError(
                _error(
                    f"{field.mutation.name}: {count} {what}; one mutation writes at most"
                    f" {limit} rows, and nothing was written. Narrow where or send smaller"
                    " batches, or raise mutations.max_rows.",
                    "TOO_MANY_ROWS",
                    field.key,
                )
            )

    async def _images(self, tx: Transaction, e: Entity, keys: list[Key]) -> list[dict[str, Any]]:
        """Every field of the rows of ``keys``, as the API serves them, in the order of keys,
        and the JSON fields holding the JSON value null under ``JSON_NULLS`` (see
        :mod:`quiver.sql.changelog`)."""
        if not keys:
            return []
        catalog, gql = self.catalog, self.gql
        if self.access is not None:
            # The change log records whole rows, whatever the writer may read.
            catalog, gql = self.access.catalog, self.access.graphql_schema
            e = catalog.entities[e.name]
        every = FieldNode(
            name=NameNode(value="_"),
            selection_set=SelectionSetNode(
                selections=tuple(FieldNode(name=NameNode(value=f.name)) for f in e.fields)
            ),
        )
        json_fields = [f for f in e.fields if f.holds_json_null]
        text, params = plan_rows_by_key(
            catalog,
            gql,
            self.dialect,
            e,
            keys,
            [every],
            {},
            {},
            json_nulls=json_fields,
            # the change log records rows as they are, whatever their fields can carry
            checked=False,
        )
        body = await tx.fetch_json(text, params)
        images: list[dict[str, Any]] = json_value(body or b"[]")
        if json_fields:
            for image in images:
                tests = image.pop(JSON_NULLS, None) or {}
                named = [name for name, test in tests.items() if test]
                if named:
                    image[JSON_NULLS] = named
        return images

    async def _rows(
        self,
        tx: Transaction,
        e: Entity,
        keys: Sequence[Key],
        nodes: list[FieldNode],
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> bytes:
        if not keys:
            return b"[]"
        text, params = plan_rows_by_key(
            self.catalog,
            self.gql,
            self.dialect,
            e,
            keys,
            nodes,
            fragments,
            variables,
            self.access.rows if self.access is not None else None,
        )
        body = await tx.fetch_json(text, params) or b"[]"
        refused = stored_refusal(body) if self.dialect.stored_checks else None
        if refused is not None:
            raise refused
        return body

    async def _fetch(self, tx: Transaction, statement: Fragment) -> list[Key]:
        text, slots = compile_sql(statement, self.dialect)
        return await tx.fetch_rows(text, [s.value({}) for s in slots])

    def _check_json_depth(self, value: Any, path: tuple[str | int, ...]) -> None:
        """INVALID_VALUE for JSON nested deeper than the database keeps; the change log
        holds the value one level down, inside the row's image."""
        limit = self.dialect.json_max_depth
        if limit is None:
            return
        if self.settings.change_log:
            limit -= 1
        depth = json_depth(value)
        if depth > limit:
            raise _MisfitError(
                f"the JSON value nests {depth} levels deep, and MariaDB"
                f" keeps at most {limit} here"
                + (
                    " (the change log records it inside the row)"
                    if self.settings.change_log
                    else ""
                )
                + ": flatten it",
                path,
            )

    async def _check_composites(
        self, tx: Transaction, e: Entity, row: Mapping[str, Any], path: tuple[str | int, ...]
    ) -> None:
        """INVALID_VALUE naming the field for a composite value that an attribute's type cannot
        hold. The database does not say which value of a statement it could not read, so when
        the statement writes other fields too, each composite value is read on its own first."""
        if len(row) < 2:
            return
        for name, value in row.items():
            f = self.catalog.fields[e.name][name]
            if f.composite is None or value is None:
                continue
            at = (*path, name)
            try:
                await self._fetch(tx, sql("SELECT (", self._value(e, f, value, at), ") IS NULL"))
            except ConstraintError as err:
                if err.violation.kind not in _VALUE_KINDS:
                    raise
                reason = (
                    f"{_EXPLAIN[err.violation.kind]}; the database said: {err.violation.message}"
                )
                raise _MisfitError(reason, at) from None

    def _value(self, e: Entity, f: IrField, value: Any, path: tuple[str | int, ...]) -> Fragment:
        """A value written to ``f`` of ``e``, checked, as a parameter of the column's type."""
        if value is None:
            return sql(param(None))
        if f.composite is not None:
            array = f.is_list or bool(f.composite_array)
            return _composite_value(f"{e.name}.{f.name}", f.composite, array, value, path)
        dated = pg_date_text(self.dialect, f)
        if dated is not None:
            if not f.is_list:
                reason = misfit(f.db_type, value, self.dialect.seconds_digits_default)
                if reason is not None:
                    raise _MisfitError(reason, path)
            try:
                text = dated[0](value)
            except PlanError as err:
                raise PlanError(f"{e.name}.{f.name}: {err.message}", path) from None
            if f.is_list:
                return sql("CAST(CAST(", param(text), f" AS TEXT[]) AS {dated[1]}[])")
            return sql("CAST(CAST(", param(text), f" AS TEXT) AS {dated[1]})")
        check = write_value_check(self.dialect, f)
        if check is not None:
            try:
                value = check(value)
            except PlanError as err:
                raise PlanError(f"{e.name}.{f.name}: {err.message}", path) from None
        if not f.is_list:
            reason = misfit(f.db_type, value, self.dialect.seconds_digits_default)
            if reason is not None:
                raise _MisfitError(reason, path)
        bits = _bit_width(self.dialect, f)
        if bits is not None:
            return _bit_value(self.dialect, value, path)
        if self.dialect.name == "postgresql" and f.is_list:
            element = pg_text_array_element(f)
            if element is not None:
                return _pg_text_array(f"{e.name}.{f.name}", element, value, path)
        if self.dialect.name == "postgresql" and not f.is_list and isinstance(value, str):
            cast = PG_TEXT_INPUT.fullmatch((f.db_type or "").lower())
            if cast is not None:
                # Served as text, read back from text: the driver's binary codecs of these
                # types take Python objects (timedelta, tuples, Range), not their text.
                return sql("CAST(CAST(", param(value), f" AS TEXT) AS {cast.group(0)})")
        if f.scalar == Scalar.JSON and f.is_list and self.dialect.name == "postgresql":
            # json[] / jsonb[]: the driver takes each element as its JSON text
            if not isinstance(value, list):
                raise PlanError(
                    f"{e.name}.{f.name}: {json_text(value).decode()[:80]} is not a list", path
                )
            for i, item in enumerate(value):
                self._check_json_depth(item, (*path, i))
            texts = [None if item is None else json_text(item).decode() for item in value]
            element = "json" if (f.db_type or "").strip().lower() == "json" else "jsonb"
            return sql("CAST(CAST(", param(texts), f" AS TEXT[]) AS {element}[])")
        if f.scalar == Scalar.JSON and not f.is_list:
            self._check_json_depth(value, path)
            text = json_text(value).decode()  # exact numbers (JsonNumber) as written
            if self.dialect.name == "mysql" and _MY_GEOMETRY.fullmatch((f.db_type or "").lower()):
                # served as GeoJSON (ST_AsGeoJSON), written from it
                if not isinstance(value, dict) or value.get("type") not in _GEOJSON_TYPES:
                    raise PlanError(
                        f"{e.name}.{f.name}: {text[:80]} is not a GeoJSON geometry: write an"
                        ' object such as {"type": "Point", "coordinates": [1, 2]}',
                        path,
                    )
                return sql("ST_GeomFromGeoJSON(", param(text), ")")
            if self.dialect.json_input != "{}" and (f.db_type or "") in ("json", "jsonb"):
                return template(self.dialect.json_input, param(text), (f.db_type or "").upper())
            return sql(param(text))
        return sql(param(value))


_MY_GEOMETRY = re.compile(MYSQL_SPATIAL_TYPES)
_GEOJSON_TYPES = frozenset(
    (
        "Point",
        "LineString",
        "Polygon",
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
        "GeometryCollection",
    )
)
_BIT_DIGITS = re.compile(r"[01]*")


def _bit_width(dialect: Dialect, f: IrField) -> int | None:
    """The width of a bit-string column served as text of 0s and 1s (0: varying), else None.
    MariaDB's BIT(1) is a Boolean, written as one."""
    if f.is_list or f.scalar != Scalar.STRING or dialect.name not in ("postgresql", "mysql"):
        return None
    m = BIT_TYPE.fullmatch((f.db_type or "").strip())
    if m is None:
        return None
    return int(m.group(1)) if m.group(1) else 0


def _pg_text_array(where: str, element: str, value: Any, path: tuple[str | int, ...]) -> Fragment:
    """A PostgreSQL array of ``element`` from the list of text it is served as, null elements
    kept; bit strings must be binary digits."""
    if not isinstance(value, list):
        raise PlanError(f"{where}: {value!r} is not a list", path)
    for i, item in enumerate(value):
        if item is None:
            continue
        if not isinstance(item, str):
            raise PlanError(f"{where}[{i}]: {item!r} is not a text value", (*path, i))
        if element == "bit varying" and not _BIT_DIGITS.fullmatch(item):
            raise PlanError(
                f"{where}[{i}]: {item!r} is not a bit string: write it as binary digits, 0 and 1",
                (*path, i),
            )
    return sql("CAST(CAST(", param(value), f" AS TEXT[]) AS {element}[])")


def _bit_value(dialect: Dialect, value: Any, path: tuple[str | int, ...]) -> Fragment:
    """A bit string given as its binary digits (as it is served), written as bits: the
    drivers would send the digits' characters as bytes."""
    if not isinstance(value, str) or not _BIT_DIGITS.fullmatch(value):
        raise PlanError(f"{value!r} is not a bit string: write it as binary digits, 0 and 1", path)
    if dialect.name == "postgresql":
        return sql("CAST(CAST(", param(value), " AS TEXT) AS BIT VARYING)")
    if not value:
        raise PlanError("an empty bit string does not fit a MariaDB BIT column", path)
    return sql("CAST(CONV(", param(value), ", 2, 10) AS UNSIGNED)")


def _composite_value(
    where: str, composite: Composite, is_list: bool, value: Any, path: tuple[str | int, ...]
) -> Fragment:
    """A PostgreSQL composite value, or an array of them, from the JSON it is served as, its
    attributes checked first: json_populate_record would skip a key that is no attribute.
    json_populate_record fills arrays of composites inside a composite by itself; an array
    column is built from its elements in order, a null element kept as NULL."""
    if is_list:
        _check_composites_list(where, composite, value, path)
    else:
        _check_composite(where, composite, value, path)
    json = sql("CAST(CAST(", param(json_text(value).decode()), " AS TEXT) AS json)")
    if not is_list:
        return _populate(composite, json)
    return sql(
        "ARRAY(SELECT CASE WHEN json_typeof(q__e.value) = 'null' THEN NULL ELSE ",
        _populate(composite, sql("q__e.value")),
        " END FROM json_array_elements(",
        json,
        ") WITH ORDINALITY AS q__e(value, n) ORDER BY q__e.n)",
    )


def _populate(composite: Composite, json: Fragment) -> Fragment:
    """``composite`` read from the JSON object ``json``, the type schema-qualified."""
    return sql(
        "json_populate_record(CAST(NULL AS ",
        ident(composite.db_schema, composite.name),
        "), ",
        json,
        ")",
    )


def _check_composites_list(
    where: str, composite: Composite, value: Any, path: tuple[str | int, ...]
) -> None:
    """BAD_USER_INPUT for a value that is not a list of objects of ``composite`` (or nulls),
    naming the element at fault. PostgreSQL arrays of composites are written one dimension
    deep: a list inside the list is refused."""
    if not isinstance(value, list):
        raise PlanError(
            f"{where}: {orjson.dumps(value).decode()[:80]} is not a list of objects of the"
            f" attributes of {composite.name} ({_attribute_names(composite)})",
            path,
        )
    for i, item in enumerate(value):
        if isinstance(item, list):
            raise PlanError(
                f"{where}[{i}]: a list inside the list: arrays of the composite type"
                f" {composite.name} are written one dimension deep, as a list of objects",
                path,
            )
        if item is not None:
            _check_composite(f"{where}[{i}]", composite, item, path)


def _attribute_names(composite: Composite) -> str:
    return ", ".join(a.name for a in composite.attributes) or "none"


def _check_composite(
    where: str, composite: Composite, value: Any, path: tuple[str | int, ...]
) -> None:
    """BAD_USER_INPUT for a value that is not an object of ``composite``'s attributes, down
    through nested composites and their arrays."""
    names = _attribute_names(composite)
    if not isinstance(value, dict):
        raise PlanError(
            f"{where}: {orjson.dumps(value).decode()[:80]} is not an object of the attributes"
            f" of {composite.name} ({names})",
            path,
        )
    for key, item in value.items():
        attribute = composite.attribute(key)
        if attribute is None:
            hint = did_you_mean(key, (a.name for a in composite.attributes))
            raise PlanError(
                f"{where}: {composite.name} has no attribute {key!r}; its attributes are"
                f" {names}" + (f"; {hint}" if hint else ""),
                path,
            )
        if attribute.composite is None or item is None:
            continue
        if attribute.is_list:
            _check_composites_list(f"{where}.{key}", attribute.composite, item, path)
        else:
            _check_composite(f"{where}.{key}", attribute.composite, item, path)


def _table(e: Entity) -> Fragment:
    return sql(ident(e.db_schema, e.source) if e.db_schema else ident(e.source))


def _keys_among(
    e: Entity, keys: Sequence[Key], conditions: Sequence[Fragment], lock: str = ""
) -> Fragment:
    """The keys among ``keys`` whose rows meet every condition (over the alias ``q__w``)."""
    return sql(
        "SELECT ",
        join(", ", (ident("q__w", c) for c in e.primary_key)),
        " FROM ",
        _table(e),
        " q__w WHERE ",
        _match(e, keys, "q__w"),
        *(sql(" AND ", c) for c in conditions),
        lock,
    )


def _match(e: Entity, keys: Sequence[Key], alias: str | None = None) -> Fragment:
    """Rows whose primary key is one of ``keys`` (columns qualified by ``alias`` if given)."""

    def column(c: str) -> Fragment:
        return sql(ident(alias, c) if alias else ident(c))

    return any_of(
        [
            all_of([sql(column(c), " = ", param(v)) for c, v in zip(e.primary_key, k, strict=True)])
            for k in keys
        ]
    )


def _given(image: Mapping[str, Any]) -> list[str]:
    """The fields an insert gave a value: not SQL NULL (a JSON null is a value)."""
    nulls = json_nulls(image)
    return [n for n, v in image.items() if n != JSON_NULLS and (v is not None or n in nulls)]


def _change(
    e: Entity,
    operation: Any,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    changed: list[str],
) -> Change:
    image = after if after is not None else before
    assert image is not None
    names = [f.name for c in e.primary_key if (f := e.field_by_column(c)) is not None]
    key = {n: image.get(n) for n in names}
    return Change(
        entity=e.name,
        key=json_text(key).decode(),
        operation=operation,
        before=json_text(before).decode() if before is not None else None,
        after=json_text(after).decode() if after is not None else None,
        changed_fields=orjson.dumps(changed).decode(),
    )


def _one(array: bytes) -> bytes:
    """The one element of a JSON array of one element (``null`` when empty)."""
    inner = array.strip()[1:-1].strip()
    return inner or b"null"


def _error(message: str, code: str, key: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"message": message}
    if key is not None:
        out["path"] = [key]
    out["extensions"] = {"code": code}
    return out


def _database_error(err: DatabaseError, key: str | None) -> dict[str, Any]:
    if isinstance(err, RaisedError):
        return _error(err.details[0].message, "MUTATION_FAILED", key)
    if isinstance(err, StoredValueError):
        detail = err.details[0]
        log.error("stored value in a mutation: %s", detail.message)
        return _error(
            f"{detail.message} ({detail.fix}); nothing was written.", "DATABASE_ERROR", key
        )
    if isinstance(err, StatementTimeoutError):
        return _error("The mutation ran past the statement time limit.", "STATEMENT_TIMEOUT", key)
    log.error("database error in a mutation: %s", err)
    return _error(
        "The database could not run this mutation; nothing was written.", "DATABASE_ERROR", key
    )


def _violation_error(
    violation: Violation, field: _Field | None, e: Entity | None, key: str | None = None
) -> dict[str, Any]:
    """A refused write as a GraphQL error naming the code and, when known, the field."""
    names = _fields_at_fault(violation, e) if e is not None else []
    if not names and field is not None and field.written:
        names = _written_at_fault(violation, field.written, field.values)
    where = f"{e.name}.{', '.join(names)}" if e is not None and names else (e.name if e else "")
    message = f"{where}: {_EXPLAIN[violation.kind]}" if where else _EXPLAIN[violation.kind]
    message += f"; nothing was written. The database said: {violation.message}"
    error = _error(message, _CODES[violation.kind], field.key if field else key)
    ext = error["extensions"]
    if names:
        ext["field"] = names[0] if len(names) == 1 else names
    if violation.constraint:
        ext["constraint"] = violation.constraint
    if field is not None and field.at:
        path = list(field.at)
        if len(names) == 1:
            path.append(names[0])
        ext["argumentPath"] = path
    return error


_ARGUMENT = re.compile(r"query argument \$(\d+)")
_TOO_LONG = re.compile(r"value too long for type (?:character varying|character)\((\d+)\)")


def _written_at_fault(
    violation: Violation, written: tuple[str, ...], values: tuple[Any, ...]
) -> list[str]:
    """The field at fault among those the statement wrote, when the database named none: the
    one whose parameter the driver refused (``query argument $3``), the only text longer than
    the length the database names (``value too long for type character varying(2)``), or the
    only one written when a value did not fit."""
    m = _ARGUMENT.search(violation.message)
    if m is not None and 1 <= int(m.group(1)) <= len(written):
        return [written[int(m.group(1)) - 1]]
    m = _TOO_LONG.search(violation.message)
    if m is not None:
        limit = int(m.group(1))
        longer = [
            n
            for n, v in zip(written, values, strict=False)
            if isinstance(v, str) and len(v) > limit
        ]
        if len(longer) == 1:
            return longer
    if violation.kind in _VALUE_KINDS and len(written) == 1:
        return [written[0]]
    return []


def _fields_at_fault(violation: Violation, e: Entity) -> list[str]:
    """The API names of the columns at fault (:meth:`Violation.columns_in`)."""
    columns = violation.columns_in([f.column for f in e.fields], e.primary_key)
    return [f.name for c in columns if (f := e.field_by_column(c)) is not None]
