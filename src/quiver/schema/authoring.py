"""Authoring the API in Python: ``@quiver.type`` classes, ``quiver.field`` / ``quiver.relation``
attributes and ``@quiver.query`` root fields, collected into the schema IR.

Decorators only attach a declaration to the object they decorate (and add it to the
:class:`TypeRegistry` that is collecting, if any): importing an app twice, or two apps in one
process, never mixes their declarations. :func:`load_app` imports an app from its file
inside a fresh registry and :func:`build_schema` turns the declarations into a
:class:`~quiver.schema.ir.Schema`, collecting every problem with its ``file:line``.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import datetime as dt
import importlib.util
import inspect
import linecache
import os
import sys
import traceback
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ForwardRef, Generic, TypeAlias, TypeVar, overload

from quiver.config.settings import TableNames
from quiver.runtime.errors import ErrorDetail
from quiver.schema.ir import Entity, Field, Relation, RootKind, Scalar, Schema, SourceLocation
from quiver.schema.naming import camel, pascal, pluralize

__all__ = [
    "ID",
    "JSON",
    "AuthoredApp",
    "BigInt",
    "CompiledApp",
    "OrderBy",
    "QueryDeclaration",
    "TypeDeclaration",
    "TypeRegistry",
    "Where",
    "build_schema",
    "collecting",
    "compile_app",
    "field",
    "load_app",
    "object_type",
    "query",
    "relation",
    "snake",
]

_T = TypeVar("_T")
_C = TypeVar("_C", bound=type[Any])
_F = TypeVar("_F", bound=Callable[..., Any])


# --------------------------------------------------------------------------------------------
# Scalar annotations and generic markers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ScalarMarker:
    scalar: Scalar


#: A 64-bit integer (GraphQL ``BigInt``, sent as a JSON number).
BigInt: TypeAlias = Annotated[int, _ScalarMarker(Scalar.BIGINT)]
#: An opaque identifier (GraphQL ``ID``).
ID: TypeAlias = Annotated[str, _ScalarMarker(Scalar.ID)]
#: A JSON document: an object or an array (GraphQL ``JSON``).
JSON: TypeAlias = Annotated[dict[str, Any] | list[Any], _ScalarMarker(Scalar.JSON)]

_PYTHON_SCALARS: dict[Any, Scalar] = {
    int: Scalar.INT,
    float: Scalar.FLOAT,
    str: Scalar.STRING,
    bool: Scalar.BOOLEAN,
    Decimal: Scalar.DECIMAL,
    dt.datetime: Scalar.DATETIME,
    dt.date: Scalar.DATE,
    dt.time: Scalar.TIME,
    uuid.UUID: Scalar.UUID,
    bytes: Scalar.BASE64,
    dict: Scalar.JSON,
}
_SUPPORTED = (
    "int, float, str, bool, Decimal, datetime, date, time, uuid.UUID, bytes, quiver.BigInt, "
    "quiver.ID, quiver.JSON, a @quiver.type class or list[...] of one, each optionally '| None'"
)


class Where(Generic[_T]):
    """Marks the ``where`` argument of a list query: ``where: quiver.Where[Order] | None``."""

    __slots__ = ()


class OrderBy(Generic[_T]):
    """Marks the ``order_by`` argument of a list query: ``order_by: quiver.OrderBy[Order]``."""

    __slots__ = ()


# --------------------------------------------------------------------------------------------
# Declarations
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldSpec:
    """What ``quiver.field(...)`` returns: options of one scalar field."""

    column: str | None = None
    name: str | None = None
    description: str | None = None
    hidden: bool = False


@dataclass(frozen=True)
class RelationSpec:
    """What ``quiver.relation(...)`` returns: how a link joins the two sources."""

    fk: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    name: str | None = None
    description: str | None = None
    hidden: bool = False


@dataclass(frozen=True)
class TypeDeclaration:
    """A class decorated with ``@quiver.type``."""

    cls: type[Any]
    name: str
    source: str
    db_schema: str | None
    key: tuple[str, ...] | None
    description: str | None
    location: SourceLocation | None


@dataclass(frozen=True)
class QueryDeclaration:
    """A function decorated with ``@quiver.query``."""

    func: Callable[..., Any]
    name: str
    description: str | None
    connection: bool
    aggregate: bool
    location: SourceLocation | None


_TYPE_ATTR = "__quiver_type__"
_QUERY_ATTR = "__quiver_query__"


class TypeRegistry:
    """Declarations made while this registry is collecting, in declaration order."""

    def __init__(self) -> None:
        self.types: list[TypeDeclaration] = []
        self.queries: list[QueryDeclaration] = []

    def add(self, decl: TypeDeclaration | QueryDeclaration) -> None:
        if isinstance(decl, TypeDeclaration):
            self.types.append(decl)
        else:
            self.queries.append(decl)


_ACTIVE: ContextVar[TypeRegistry | None] = ContextVar("quiver_authoring_registry", default=None)


@contextlib.contextmanager
def collecting() -> Iterator[TypeRegistry]:
    """Collect the declarations made inside the ``with`` block into a new registry."""
    registry = TypeRegistry()
    token = _ACTIVE.set(registry)
    try:
        yield registry
    finally:
        _ACTIVE.reset(token)


def _register(decl: TypeDeclaration | QueryDeclaration) -> None:
    registry = _ACTIVE.get()
    if registry is not None:
        registry.add(decl)


def _columns(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def snake(name: str) -> str:
    """``InvoiceLine`` -> ``invoice_line``: the default source of a ``@quiver.type`` class."""
    p = pascal(name)
    out: list[str] = []
    for i, ch in enumerate(p):
        if ch.isupper() and i and (not p[i - 1].isupper() or p[i + 1 : i + 2].islower()):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


@overload
def object_type(cls: _C, /) -> _C: ...


@overload
def object_type(
    *,
    name: str | None = None,
    source: str | None = None,
    db_schema: str | None = None,
    key: str | Sequence[str] | None = None,
    description: str | None = None,
) -> Callable[[_C], _C]: ...


def object_type(
    cls: _C | None = None,
    /,
    *,
    name: str | None = None,
    source: str | None = None,
    db_schema: str | None = None,
    key: str | Sequence[str] | None = None,
    description: str | None = None,
) -> _C | Callable[[_C], _C]:
    """Declare a GraphQL object type read from a table or view (``quiver.type``).

    ``name`` defaults to the class name, ``source`` to its snake_case form, ``key`` to the
    field named ``id`` if there is one, ``description`` to the docstring.
    """

    def decorate(klass: _C) -> _C:
        decl = TypeDeclaration(
            cls=klass,
            name=name or klass.__name__,
            source=source or snake(klass.__name__),
            db_schema=db_schema,
            key=_columns(key) if key is not None else None,
            description=description if description is not None else inspect.getdoc(klass),
            location=_location_of(klass),
        )
        setattr(klass, _TYPE_ATTR, decl)
        _register(decl)
        return klass

    return decorate(cls) if cls is not None else decorate


def field(
    *,
    column: str | None = None,
    name: str | None = None,
    description: str | None = None,
    hidden: bool = False,
) -> Any:
    """Options of a scalar field: its ``column`` (default: the attribute name), its GraphQL
    ``name`` (default: the attribute name in camelCase), a ``description``, or ``hidden=True``
    to keep the column out of the API."""
    return FieldSpec(column=column, name=name, description=description, hidden=hidden)


def relation(
    *,
    fk: str | Sequence[str] | None = None,
    references: str | Sequence[str] | None = None,
    name: str | None = None,
    description: str | None = None,
    hidden: bool = False,
) -> Any:
    """A link to another ``@quiver.type``.

    Annotated ``Target`` (or ``Target | None``) it is a forward link: ``fk`` are columns of
    this type's source that hold ``references`` (default: the target's key). Annotated
    ``list[Target]`` it is a reverse link: ``fk`` are columns of the target's source that
    hold this type's ``references`` (default: this type's key).
    """
    return RelationSpec(
        fk=_columns(fk),
        references=_columns(references),
        name=name,
        description=description,
        hidden=hidden,
    )


@overload
def query(func: _F, /) -> _F: ...


@overload
def query(
    *,
    name: str | None = None,
    description: str | None = None,
    connection: bool = False,
    aggregate: bool = False,
) -> Callable[[_F], _F]: ...


def query(
    func: _F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    connection: bool = False,
    aggregate: bool = False,
) -> _F | Callable[[_F], _F]:
    """Declare a root query field. Returning ``list[T]`` declares T's list field (and with
    ``connection=True`` / ``aggregate=True`` its ``...Connection`` / ``...Aggregate`` fields);
    returning ``T`` or ``T | None`` declares T's by-key field, whose parameters are T's key."""

    def decorate(fn: _F) -> _F:
        decl = QueryDeclaration(
            func=fn,
            name=name or camel(fn.__name__),
            description=description if description is not None else inspect.getdoc(fn),
            connection=connection,
            aggregate=aggregate,
            location=_location_of(fn),
        )
        setattr(fn, _QUERY_ATTR, decl)
        _register(decl)
        return fn

    return decorate(func) if func is not None else decorate


# --------------------------------------------------------------------------------------------
# Source locations
# --------------------------------------------------------------------------------------------


def display_path(path: str) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


@dataclass(frozen=True)
class _Source:
    file: str
    node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef | None

    def line_of(self, node: ast.AST | None) -> int | None:
        lineno = getattr(node, "lineno", None)
        return None if lineno is None else int(lineno)

    def location(self, line: int | None) -> SourceLocation | None:
        return SourceLocation(file=self.file, line=line) if line is not None else None

    def member_lines(self) -> dict[str, int]:
        """Class attribute name -> line of its annotation."""
        out: dict[str, int] = {}
        if isinstance(self.node, ast.ClassDef):
            for stmt in self.node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    out[stmt.target.id] = stmt.lineno
        return out

    def argument_lines(self) -> dict[str, int]:
        """Function parameter name -> its line; ``return`` -> line of the return annotation."""
        out: dict[str, int] = {}
        if isinstance(self.node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = self.node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
                if arg is not None:
                    out[arg.arg] = arg.lineno
            if self.node.returns is not None:
                out["return"] = self.node.returns.lineno
        return out


_Definition = ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
# file -> (source text, qualified name -> definitions in source order); one parse per file.
_INDEX: dict[str, tuple[str, dict[str, list[_Definition]]]] = {}


def _definitions(file: str) -> dict[str, list[_Definition]]:
    """Every class and function of ``file`` by ``__qualname__`` (``f.<locals>.C`` too)."""
    linecache.checkcache(file)
    text = "".join(linecache.getlines(file))
    cached = _INDEX.get(file)
    if cached is not None and cached[0] == text:
        return cached[1]
    index: dict[str, list[_Definition]] = {}

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _Definition):
                qualname = prefix + child.name
                index.setdefault(qualname, []).append(child)
                inner = qualname + (".<locals>." if not isinstance(child, ast.ClassDef) else ".")
                walk(child, inner)
            else:
                walk(child, prefix)

    with contextlib.suppress(SyntaxError):
        walk(ast.parse(text), "")
    _INDEX[file] = (text, index)
    return index


def _source_of(obj: Any) -> _Source | None:
    """Where ``obj`` (a class or function) is defined, with its syntax tree."""
    try:
        file = inspect.getsourcefile(obj)
    except TypeError:
        return None
    if file is None:
        return None
    candidates = _definitions(file).get(getattr(obj, "__qualname__", ""), [])
    code = getattr(obj, "__code__", None)
    if code is not None:  # a function: pick the definition its code starts at
        first = code.co_firstlineno
        candidates = [
            n for n in candidates if min([n.lineno, *(d.lineno for d in n.decorator_list)]) == first
        ] or candidates
    node = candidates[0] if candidates else None
    return _Source(display_path(file), node)


def _location_of(obj: Any) -> SourceLocation | None:
    src = _source_of(obj)
    if src is None:
        return None
    return src.location(src.line_of(src.node))


# --------------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------------


class _ForwardName:
    """A name an annotation uses that nothing defines (a misspelt or reflected type)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:  # lets typing accept it as a type
        raise TypeError(f"{self.name} is not defined")

    def __or__(self, other: Any) -> Any:
        return typing.Union[self, other]  # noqa: UP007

    def __ror__(self, other: Any) -> Any:
        return typing.Union[other, self]  # noqa: UP007

    def __getattr__(self, attr: str) -> _ForwardName:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _ForwardName(f"{self.name}.{attr}")

    def __repr__(self) -> str:
        return self.name


class _Namespace(dict[str, Any]):
    """Names for evaluating string annotations: declared types, then the module, then builtins;
    anything else becomes a :class:`_ForwardName`."""

    def __init__(self, module_globals: Mapping[str, Any], types_: Mapping[str, Any]) -> None:
        super().__init__(types_)
        self._globals = module_globals

    def __missing__(self, key: str) -> Any:
        if key in self._globals:
            return self._globals[key]
        if hasattr(builtins, key):
            return getattr(builtins, key)
        return _ForwardName(key)


class _AnnotationError(Exception):
    pass


def _evaluate(annotation: Any, namespace: _Namespace) -> Any:
    if isinstance(annotation, ForwardRef):
        annotation = annotation.__forward_arg__
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, {"__builtins__": builtins}, namespace)
    except Exception as exc:
        raise _AnnotationError(f"cannot evaluate annotation {annotation!r}: {exc}") from None


def _describe(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _optional_text(annotation: Any) -> str:
    """``annotation`` written as optional (``int | None``), as the user would write it."""
    if annotation is inspect.Parameter.empty:
        return "<type> | None"
    text = _describe(annotation)
    nullable = _unwrap_optional(annotation)[1] if not isinstance(annotation, str) else False
    if nullable or text.replace(" ", "").endswith("|None") or text.startswith("Optional["):
        return text
    return f"{text} | None"


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        rest = tuple(a for a in args if a is not type(None))
        nullable = len(rest) < len(args)
        if len(rest) == 1:
            return rest[0], nullable
        return typing.Union[rest], nullable  # noqa: UP007
    return tp, False


def _scalar_of(tp: Any) -> Scalar | None:
    if typing.get_origin(tp) is Annotated:
        for meta in getattr(tp, "__metadata__", ()):
            if isinstance(meta, _ScalarMarker):
                return meta.scalar
        return _scalar_of(typing.get_args(tp)[0])
    if typing.get_origin(tp) is dict:
        return Scalar.JSON
    try:
        return _PYTHON_SCALARS.get(tp)
    except TypeError:  # unhashable annotation object
        return None


def _target_of(tp: Any) -> TypeDeclaration | str | None:
    """The declaration (or unresolved name) an annotation points at, if it names a type."""
    if isinstance(tp, ForwardRef):
        return tp.__forward_arg__
    if isinstance(tp, _ForwardName):
        return tp.name
    if isinstance(tp, str):
        return tp
    decl = getattr(tp, _TYPE_ATTR, None) if isinstance(tp, type) else None
    if isinstance(decl, TypeDeclaration) and decl.cls is tp:
        return decl
    return None


# --------------------------------------------------------------------------------------------
# Building the schema
# --------------------------------------------------------------------------------------------


@dataclass
class AuthoredApp:
    """What an app declares: its schema (hidden fields included) and the problems found."""

    schema: Schema
    errors: list[ErrorDetail] = dataclass_field(default_factory=list)
    warnings: list[ErrorDetail] = dataclass_field(default_factory=list)
    #: False when the app could not be imported (``errors`` says why).
    imported: bool = True
    #: The traceback of the failed import, for ``--debug``.
    import_traceback: str | None = None


@dataclass
class _Member:
    attr: str
    annotation: Any
    default: Any
    location: SourceLocation | None
    module: str  # where string annotations are evaluated


@dataclass
class _PendingRelation:
    decl: TypeDeclaration
    member: _Member
    spec: RelationSpec
    target: TypeDeclaration | str
    many: bool
    nullable: bool


@dataclass
class _EntityDraft:
    decl: TypeDeclaration
    fields: list[Field] = dataclass_field(default_factory=list)
    attrs: dict[str, Field] = dataclass_field(default_factory=dict)
    relations: list[Relation] = dataclass_field(default_factory=list)
    primary_key: tuple[str, ...] = ()
    list_field: str | None = None
    by_key_field: str | None = None
    root_fields: list[RootKind] = dataclass_field(default_factory=list)
    list_arguments: tuple[str, ...] | None = None

    def column(self, name: str) -> str | None:
        """A declared field's column, found by column, attribute or GraphQL name."""
        for f in self.fields:
            if f.column == name:
                return f.column
        if name in self.attrs:
            return self.attrs[name].column
        for f in self.fields:
            if f.name == name:
                return f.column
        return None

    def entity(self, declared_roots: bool) -> Entity:
        return Entity(
            name=self.decl.name,
            source=self.decl.source,
            db_schema=self.decl.db_schema,
            fields=tuple(self.fields),
            primary_key=self.primary_key,
            relations=tuple(self.relations),
            list_field=self.list_field,
            by_key_field=self.by_key_field,
            description=self.decl.description,
            location=self.decl.location,
            root_fields=tuple(self.root_fields) if declared_roots else None,
            list_arguments=self.list_arguments,
        )


_LIST_ARGUMENTS = {"where": "where", "order_by": "orderBy", "limit": "limit", "offset": "offset"}


class _Builder:
    def __init__(
        self, types_: Sequence[TypeDeclaration], queries: Sequence[QueryDeclaration]
    ) -> None:
        self.decls = _reachable(types_)
        self.queries = list(queries)
        self.errors: list[ErrorDetail] = []
        self.warnings: list[ErrorDetail] = []
        self.drafts: dict[int, _EntityDraft] = {id(d.cls): _EntityDraft(d) for d in self.decls}
        self.by_name: dict[str, TypeDeclaration] = {}
        for d in self.decls:
            self.by_name.setdefault(d.name, d)
            self.by_name.setdefault(d.cls.__name__, d)
        self.pending: list[_PendingRelation] = []

    def error(self, message: str, where: SourceLocation | str | None, fix: str = "") -> None:
        self.errors.append(ErrorDetail(message, str(where or ""), fix))

    def namespace(self, module: str) -> _Namespace:
        mod = sys.modules.get(module)
        module_globals = vars(mod) if mod is not None else {}
        return _Namespace(module_globals, {d.cls.__name__: d.cls for d in self.decls})

    def build(self) -> AuthoredApp:
        for decl in self.decls:
            self.collect_members(decl)
        for pending in self.pending:
            self.add_relation(pending)
        for decl in self.decls:
            self.set_key(decl)
        for q in self.queries:
            self.add_query(q)
        roots = bool(self.queries)
        if not roots:  # every type gets the root fields reflection would give it
            for draft in self.drafts.values():
                draft.list_field = pluralize(camel(draft.decl.name))
                draft.by_key_field = camel(draft.decl.name) if draft.primary_key else None
        entities = tuple(self.drafts[id(d.cls)].entity(roots) for d in self.decls)
        return AuthoredApp(
            schema=Schema(entities=entities),
            errors=self.errors,
            warnings=self.warnings,
        )

    # ----- members -----
    def members(self, decl: TypeDeclaration) -> list[_Member]:
        seen: dict[str, _Member] = {}
        for klass in reversed(decl.cls.__mro__):
            annotations = vars(klass).get("__annotations__", {})
            if klass is object or not annotations:
                continue
            src = _source_of(klass)  # inherited attributes point at the base class's lines
            lines = src.member_lines() if src is not None else {}
            for attr, annotation in annotations.items():
                if attr.startswith("_"):
                    continue
                line = lines.get(attr)
                loc = src.location(line) if src is not None and line else decl.location
                seen[attr] = _Member(attr, annotation, vars(klass).get(attr), loc, klass.__module__)
        return list(seen.values())

    def collect_members(self, decl: TypeDeclaration) -> None:
        draft = self.drafts[id(decl.cls)]
        for m in self.members(decl):
            try:
                tp = _evaluate(m.annotation, self.namespace(m.module))
            except _AnnotationError as exc:
                self.error(f"{decl.name}.{m.attr}: {exc}", m.location, f"use {_SUPPORTED}")
                continue
            if typing.get_origin(tp) is typing.ClassVar:
                continue
            inner, nullable = _unwrap_optional(tp)
            spec = m.default
            many = typing.get_origin(inner) is list and len(typing.get_args(inner)) == 1
            target = _target_of(typing.get_args(inner)[0] if many else inner)
            if isinstance(spec, RelationSpec) or (target is not None and not many):
                if target is None:
                    self.error(
                        f"{decl.name}.{m.attr}: a relation must be annotated with a @quiver.type "
                        f"class, not {_describe(m.annotation)}",
                        m.location,
                        "annotate it 'Target', 'Target | None' or 'list[Target]', or declare a "
                        "scalar with quiver.field()",
                    )
                    continue
                if not isinstance(spec, RelationSpec):
                    spec = RelationSpec()
                self.pending.append(_PendingRelation(decl, m, spec, target, many, nullable))
                continue
            if target is not None and many:
                self.pending.append(
                    _PendingRelation(decl, m, RelationSpec(), target, many=True, nullable=False)
                )
                continue
            fspec = spec if isinstance(spec, FieldSpec) else FieldSpec()
            scalar = _scalar_of(inner)
            if scalar is None:
                self.error(
                    f"{decl.name}.{m.attr}: unsupported annotation {_describe(m.annotation)}",
                    m.location,
                    f"use {_SUPPORTED}",
                )
                continue
            f = Field(
                name=fspec.name or camel(m.attr),
                column=fspec.column or m.attr,
                scalar=scalar,
                nullable=nullable,
                description=fspec.description,
                location=m.location,
                hidden=fspec.hidden,
            )
            draft.fields.append(f)
            draft.attrs[m.attr] = f

    def resolve_target(self, p: _PendingRelation) -> TypeDeclaration | str:
        if isinstance(p.target, TypeDeclaration):
            return p.target
        return self.by_name.get(p.target, p.target)

    def add_relation(self, p: _PendingRelation) -> None:
        draft = self.drafts[id(p.decl.cls)]
        where = p.member.location
        target = self.resolve_target(p)
        target_name = target.name if isinstance(target, TypeDeclaration) else target
        target_draft = (
            self.drafts.get(id(target.cls)) if isinstance(target, TypeDeclaration) else None
        )
        label = f"{p.decl.name}.{p.member.attr}"
        if not p.spec.fk and not p.spec.hidden:
            side = f"the {target_name} source" if p.many else f"{p.decl.source}"
            self.error(
                f"{label}: the relation to {target_name} names no foreign key column",
                where,
                f"pass fk='column' (a column of {side}), e.g. "
                f"quiver.relation(fk='{snake(p.decl.name if p.many else target_name)}_id')",
            )
            return
        if p.many:
            holder = target_draft
            local = tuple(draft.column(c) or c for c in p.spec.references)
            remote = tuple((holder.column(c) if holder else None) or c for c in p.spec.fk)
        else:
            holder = draft
            local = tuple(draft.column(c) or c for c in p.spec.fk)
            remote = tuple(
                (target_draft.column(c) if target_draft else None) or c for c in p.spec.references
            )
        draft.relations.append(
            Relation(
                name=p.spec.name or camel(p.member.attr),
                target=target_name,
                kind="many" if p.many else "one",
                local_columns=local,
                target_columns=remote,
                nullable=False if p.many else p.nullable,
                description=p.spec.description,
                location=where,
                hidden=p.spec.hidden,
            )
        )

    def set_key(self, decl: TypeDeclaration) -> None:
        draft = self.drafts[id(decl.cls)]
        if decl.key is None:
            default = draft.column("id")
            draft.primary_key = (default,) if default else ()
            return
        # A key that is no declared field may be a reflected column (--extend-db);
        # validation reports it if it is still missing after merging.
        draft.primary_key = tuple(draft.column(k) or k for k in decl.key)

    # ----- queries -----
    def add_query(self, q: QueryDeclaration) -> None:
        src = _source_of(q.func)
        lines = src.argument_lines() if src is not None else {}

        def loc(name: str) -> SourceLocation | None:
            line = lines.get(name)
            return SourceLocation(file=src.file, line=line) if src and line else q.location

        namespace = self.namespace(q.func.__module__)
        try:
            sig = inspect.signature(q.func)
            returned = _evaluate(sig.return_annotation, namespace)
        except (_AnnotationError, ValueError, TypeError) as exc:
            self.error(f"query {q.name}: {exc}", loc("return"), "fix the return annotation")
            return
        inner, _ = _unwrap_optional(returned)
        many = typing.get_origin(inner) is list and len(typing.get_args(inner)) == 1
        target = _target_of(typing.get_args(inner)[0] if many else inner)
        if isinstance(target, str):
            target = self.by_name.get(target, target)
        if returned is inspect.Signature.empty or not isinstance(target, TypeDeclaration):
            what = (
                f"returns unknown type {target!r}"
                if isinstance(target, str)
                else "has no @quiver.type return annotation"
                if returned is inspect.Signature.empty
                else f"returns {_describe(sig.return_annotation)}"
            )
            self.error(
                f"query {q.name} {what}",
                loc("return"),
                "annotate the return as list[T] (a list field) or T | None (one row by key), "
                "where T is a @quiver.type class",
            )
            return
        draft = self.drafts[id(target.cls)]
        params = list(sig.parameters.values())
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                self.error(
                    f"query {q.name}: *{p.name} / **{p.name} parameters are not supported",
                    loc(p.name),
                    "list each argument by name",
                )
            elif p.default is not p.empty and p.default is not None:
                # The function is never called: a default would be dropped without a word.
                self.error(
                    f"query {q.name}: argument {p.name!r} has the default {p.default!r}, which"
                    " the API cannot apply (the function's body never runs; clients give every"
                    " argument they want)",
                    loc(p.name),
                    f"remove the default ({p.name}: {_optional_text(p.annotation)} = None"
                    " makes the argument optional)",
                )
        params = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if many:
            self.add_list_query(q, draft, params, namespace, loc)
        else:
            self.add_key_query(q, draft, params, namespace, loc)

    def claim(self, q: QueryDeclaration, draft: _EntityDraft, kind: RootKind, where: Any) -> bool:
        if kind in draft.root_fields:
            other = draft.list_field if kind == "list" else draft.by_key_field
            self.error(
                f"query {q.name}: {draft.decl.name} already has a "
                f"{'list' if kind == 'list' else 'by-key'} query {other!r}",
                where,
                "declare one list query and one by-key query per type",
            )
            return False
        draft.root_fields.append(kind)
        return True

    def add_list_query(
        self,
        q: QueryDeclaration,
        draft: _EntityDraft,
        params: list[inspect.Parameter],
        namespace: _Namespace,
        loc: Callable[[str], SourceLocation | None],
    ) -> None:
        if not self.claim(q, draft, "list", q.location):
            return
        draft.list_field = q.name
        if q.connection:
            draft.root_fields.append("connection")
        if q.aggregate:
            draft.root_fields.append("aggregate")
        allowed: list[str] = []
        entity = draft.decl.name
        for p in params:
            arg = _LIST_ARGUMENTS.get(p.name) or (p.name if p.name == "orderBy" else None)
            if arg is None:
                self.error(
                    f"query {q.name}: unsupported argument {p.name!r}",
                    loc(p.name),
                    "a list query accepts where, order_by, limit and offset",
                )
                continue
            try:
                tp = _evaluate(p.annotation, namespace) if p.annotation is not p.empty else None
            except _AnnotationError as exc:
                self.error(f"query {q.name}: {exc}", loc(p.name), "fix the annotation")
                continue
            inner, _ = _unwrap_optional(tp)
            if typing.get_origin(inner) is list and arg == "orderBy":
                inner = typing.get_args(inner)[0]
            expected: str
            if arg in ("limit", "offset"):
                ok = inner is int
                expected = "int | None"
            else:
                marker = Where if arg == "where" else OrderBy
                expected = f"quiver.{marker.__name__}[{entity}] | None"
                args = typing.get_args(inner)
                ok = typing.get_origin(inner) is marker and len(args) == 1
                if ok:
                    of = _target_of(args[0])
                    of_name = of.name if isinstance(of, TypeDeclaration) else of
                    ok = of_name in (entity, draft.decl.cls.__name__)
            if tp is not None and not ok:
                self.error(
                    f"query {q.name}: argument {p.name!r} is annotated {_describe(p.annotation)}",
                    loc(p.name),
                    f"annotate it {expected}",
                )
                continue
            allowed.append(arg)
        draft.list_arguments = tuple(allowed)

    def add_key_query(
        self,
        q: QueryDeclaration,
        draft: _EntityDraft,
        params: list[inspect.Parameter],
        namespace: _Namespace,
        loc: Callable[[str], SourceLocation | None],
    ) -> None:
        entity = draft.decl.name
        if not draft.primary_key:
            self.error(
                f"query {q.name}: {entity} has no key to look a row up by",
                q.location,
                f"pass key='column' to @quiver.type on {entity}, or return list[{entity}]",
            )
            return
        if not self.claim(q, draft, "by_key", q.location):
            return
        draft.by_key_field = q.name
        key_fields = [f for c in draft.primary_key for f in draft.fields if f.column == c]
        if len(key_fields) < len(draft.primary_key):
            return  # the key comes from the reflected table (--extend-db): nothing to match
        by_param = {p.name: p for p in params}
        fix = "its parameters must be the key fields: " + ", ".join(
            f"{f.name}: {_python_name(f.scalar)}" for f in key_fields
        )
        matched: set[str] = set()
        for f in key_fields:
            attr = next((a for a, af in draft.attrs.items() if af is f), f.name)
            p = by_param.get(attr) or by_param.get(f.name)
            if p is None:
                self.error(f"query {q.name}: missing key argument {attr!r}", q.location, fix)
                continue
            matched.add(p.name)
            try:
                tp = _evaluate(p.annotation, namespace) if p.annotation is not p.empty else None
            except _AnnotationError as exc:
                self.error(f"query {q.name}: {exc}", loc(p.name), fix)
                continue
            if tp is not None and _scalar_of(tp) != f.scalar:
                self.error(
                    f"query {q.name}: key argument {p.name!r} is annotated "
                    f"{_describe(p.annotation)} but {entity}.{f.name} is {f.scalar.value}",
                    loc(p.name),
                    fix,
                )
        for p in params:
            if p.name not in matched:
                self.error(
                    f"query {q.name}: argument {p.name!r} is not a key field of {entity}",
                    loc(p.name),
                    fix,
                )


def _python_name(scalar: Scalar) -> str:
    for tp, s in _PYTHON_SCALARS.items():
        if s is scalar and tp is not dict:
            return "uuid.UUID" if tp is uuid.UUID else tp.__name__
    return f"quiver.{scalar.value}"


def _reachable(decls: Sequence[TypeDeclaration]) -> list[TypeDeclaration]:
    """``decls`` plus every @quiver.type class their annotations name directly."""
    out: list[TypeDeclaration] = []
    seen: set[int] = set()
    todo = list(decls)
    while todo:
        d = todo.pop(0)
        if id(d.cls) in seen:
            continue
        seen.add(id(d.cls))
        out.append(d)
        for annotation in vars(d.cls).get("__annotations__", {}).values():
            if isinstance(annotation, str):
                continue
            inner, _ = _unwrap_optional(annotation)
            if typing.get_origin(inner) is list and typing.get_args(inner):
                inner = typing.get_args(inner)[0]
            target = _target_of(inner)
            if isinstance(target, TypeDeclaration):
                todo.append(target)
    return out


def build_schema(
    types_: Sequence[TypeDeclaration | type[Any]],
    queries: Sequence[QueryDeclaration | Callable[..., Any]] = (),
) -> AuthoredApp:
    """The schema the given ``@quiver.type`` classes and ``@quiver.query`` functions declare.

    Problems are collected, not raised: check ``errors`` before using ``schema``.
    """
    tdecls = [_declaration(t, _TYPE_ATTR, TypeDeclaration) for t in types_]
    qdecls = [_declaration(q, _QUERY_ATTR, QueryDeclaration) for q in queries]
    return _Builder(tdecls, qdecls).build()


_D = TypeVar("_D", TypeDeclaration, QueryDeclaration)


def _declaration(obj: Any, attr: str, kind: type[_D]) -> _D:
    if isinstance(obj, kind):
        return obj
    decl = getattr(obj, attr, None)
    if not isinstance(decl, kind):
        decorator = "type" if attr == _TYPE_ATTR else "query"
        raise TypeError(f"{obj!r} is not decorated with @quiver.{decorator}")
    return decl


# --------------------------------------------------------------------------------------------
# Loading an app from its file
# --------------------------------------------------------------------------------------------


def load_app(path: str | os.PathLike[str]) -> AuthoredApp:
    """Import the app at ``path`` in a fresh registry and build its schema.

    A failing import is reported as an error at the app's line that raised, never raised.
    The app's directory is on ``sys.path`` while it imports, and modules it imported from
    there are forgotten afterwards so the next load sees fresh code.
    """
    file = Path(path)
    shown = display_path(str(file))
    if not file.is_file():
        return AuthoredApp(
            Schema(),
            [ErrorDetail(f"no such file: {shown}", shown, "pass the path of a Python file")],
            imported=False,
        )
    directory = str(file.resolve().parent)
    module_name = f"_quiver_app_{abs(hash((str(file.resolve()), os.getpid())))}"
    before = set(sys.modules)
    sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(module_name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with collecting() as registry:
            try:
                spec.loader.exec_module(module)
            except SyntaxError as exc:
                where = f"{shown}:{exc.lineno or 1}"
                detail = ErrorDetail(f"syntax error: {exc.msg}", where)
                return AuthoredApp(Schema(), [detail], imported=False)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                return AuthoredApp(
                    Schema(),
                    [_import_error(exc, file)],
                    imported=False,
                    import_traceback="".join(traceback.format_exception(exc)),
                )
            types_ = _module_declarations(module, registry.types, _TYPE_ATTR, TypeDeclaration)
            queries = _module_declarations(module, registry.queries, _QUERY_ATTR, QueryDeclaration)
            return _Builder(types_, queries).build()
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(directory)
        for name in set(sys.modules) - before:
            if name == module_name or _imported_from(name, directory):
                sys.modules.pop(name, None)


def _imported_from(name: str, directory: str) -> bool:
    """Whether module ``name`` was found through the ``directory`` entry of ``sys.path``
    (its top-level module or package sits right in it), not through an installed package
    that merely lives below it."""
    top = sys.modules.get(name.split(".", 1)[0])
    file: str | None = getattr(top, "__file__", None)
    if not file:
        return False
    location = os.path.dirname(os.path.abspath(file))
    if os.path.basename(file).startswith("__init__."):
        location = os.path.dirname(location)
    return location == directory


def _module_declarations(
    module: types.ModuleType, registered: list[_D], attr: str, kind: type[_D]
) -> list[_D]:
    """Declarations made during the import, then those the module imported from elsewhere."""
    out = list(registered)
    seen = {id(d) for d in out}
    for value in list(vars(module).values()):
        decl = getattr(value, attr, None) if callable(value) else None
        if isinstance(decl, kind) and id(decl) not in seen and _declared(decl) is value:
            seen.add(id(decl))
            out.append(decl)
    return out


def _declared(decl: TypeDeclaration | QueryDeclaration) -> Any:
    """The object a declaration belongs to (a subclass inherits its base's attribute)."""
    return decl.cls if isinstance(decl, TypeDeclaration) else decl.func


def _import_error(exc: BaseException, file: Path) -> ErrorDetail:
    """The error at the deepest line of the app's own code (its file or its directory)."""
    directory = str(file.resolve().parent) + os.sep
    where = f"{display_path(str(file))}:1"
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename).startswith(directory):
            where = f"{display_path(frame.filename)}:{frame.lineno or 1}"
    return ErrorDetail(
        f"importing the app failed: {type(exc).__name__}: {exc}",
        where,
        "fix the error (run with --debug for the traceback)",
    )


# --------------------------------------------------------------------------------------------
# Compiling an app
# --------------------------------------------------------------------------------------------


@dataclass
class CompiledApp:
    """The result of :func:`compile_app`: the schema to serve, or the errors that prevent it."""

    schema: Schema | None
    errors: list[ErrorDetail] = dataclass_field(default_factory=list)
    warnings: list[ErrorDetail] = dataclass_field(default_factory=list)
    #: The traceback of the app's failed import, for ``--debug``.
    import_traceback: str | None = None

    def lines(self) -> list[str]:
        """Every problem as ``file:line: error: message (fix)``, in file and line order."""
        from quiver.schema.validate import Report

        return Report(self.errors, self.warnings).lines()


async def compile_app(
    path: str | os.PathLike[str],
    *,
    check_db: str | None = None,
    extend_db: str | None = None,
    names: Mapping[str, TableNames] | None = None,
) -> CompiledApp:
    """Load the app at ``path``, merge it over the reflected ``extend_db`` if given, validate
    it (against the live ``check_db`` too) and return the schema to serve. ``names`` name the
    reflected tables as the ``names:`` section of ``quiver.yaml`` does.

    ``schema`` is ``None`` when there are errors; all of them are collected.
    """
    from quiver.schema.merge import link_relations, merge, strip_hidden
    from quiver.schema.validate import Report, check_against, check_database, validate_schema

    app = load_app(path)
    report = Report(list(app.errors), list(app.warnings))
    if app.imported and not app.schema.entities and not app.errors:
        report.errors.append(
            ErrorDetail(
                "the app declares no @quiver.type classes",
                f"{display_path(str(path))}:1",
                "decorate at least one class with @quiver.type",
            )
        )
    if not app.imported:
        return CompiledApp(None, report.errors, report.warnings, app.import_traceback)
    schema = app.schema
    reflected: Schema | None = None
    if extend_db:
        from quiver.schema.reflect import reflect_database

        schemas = sorted({e.db_schema for e in schema.entities if e.db_schema}) or None
        reflected = await reflect_database(extend_db, schemas=schemas, names=names)
        schema = merge(reflected, schema)
    schema = link_relations(schema)
    report.extend(validate_schema(schema, columns_checked=bool(check_db or extend_db)))
    if check_db:
        db_report, _ = await check_database(schema, check_db)
        report.extend(db_report)
    elif reflected is not None and extend_db:
        from quiver.sql.url import parse_database_url

        postgres = parse_database_url(extend_db).dialect == "postgresql"
        report.extend(check_against(schema, reflected, case_sensitive=postgres))
    if report.errors:
        return CompiledApp(None, report.errors, report.warnings)
    return CompiledApp(strip_hidden(schema), report.errors, report.warnings)
