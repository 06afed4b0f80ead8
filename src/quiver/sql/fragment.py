"""SQL fragment trees: SQL is built from trusted text, catalog identifiers and parameters.

``compile_sql(fragment, dialect)`` turns a tree into ``(text, slots)``: the text uses the dialect's
placeholders, and ``slots`` lists one :class:`Slot` per placeholder in order. A slot either holds a
constant or knows how to read its value from the request's variables, so one compiled text serves
every request whose variables have the same shape. User values never enter the text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quiver.sql.dialects import Dialect

__all__ = [
    "Fragment",
    "Ident",
    "Param",
    "Slot",
    "Text",
    "all_of",
    "any_of",
    "compile_split",
    "compile_sql",
    "ident",
    "join",
    "param",
    "sql",
]


@dataclass(frozen=True, slots=True)
class Slot:
    """Where a parameter's value comes from: a constant, or a path into the variables.

    ``transform`` adapts the value for the database (e.g. escaping a LIKE pattern).
    """

    const: Any = None
    path: tuple[str | int, ...] | None = None
    transform: Callable[[Any], Any] | None = None
    #: A list whose items have slots of their own (a list literal holding variables).
    items: tuple[Slot, ...] | None = None

    def value(self, variables: Mapping[str, Any]) -> Any:
        if self.items is not None:
            v: Any = [s.value(variables) for s in self.items]
        elif self.path is None:
            v = self.const
        else:
            cur: Any = variables
            for step in self.path:
                cur = cur[step]
            v = cur
        return self.transform(v) if self.transform is not None else v

    def with_transform(self, fn: Callable[[Any], Any]) -> Slot:
        inner = self.transform
        if inner is None:
            return Slot(self.const, self.path, fn, self.items)
        return Slot(self.const, self.path, lambda v: fn(inner(v)), self.items)


@dataclass(frozen=True, slots=True)
class Text:
    """Trusted SQL text written in Quiver's own code (never a user value)."""

    text: str


@dataclass(frozen=True, slots=True)
class Ident:
    """An identifier from the catalog, optionally qualified (``alias.column``)."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Param:
    """A bound parameter."""

    slot: Slot


@dataclass(frozen=True, slots=True)
class Fragment:
    """A sequence of parts, concatenated without separators."""

    parts: tuple[Text | Ident | Param | Fragment, ...]

    def __add__(self, other: Fragment | str) -> Fragment:
        return Fragment((self, other if isinstance(other, Fragment) else sql(other)))

    def __radd__(self, other: str) -> Fragment:
        return Fragment((sql(other), self))


Piece = Fragment | Text | Ident | Param | str


def _piece(p: Piece) -> Text | Ident | Param | Fragment:
    return Text(p) if isinstance(p, str) else p


def sql(*pieces: Piece) -> Fragment:
    """A fragment from trusted text pieces, identifiers, parameters and fragments."""
    return Fragment(tuple(_piece(p) for p in pieces))


def ident(*names: str) -> Ident:
    return Ident(names)


def param(slot: Slot | Any) -> Param:
    return Param(slot if isinstance(slot, Slot) else Slot(const=slot))


def join(separator: str, items: Iterable[Piece]) -> Fragment:
    out: list[Text | Ident | Param | Fragment] = []
    sep = Text(separator)
    for i, item in enumerate(items):
        if i:
            out.append(sep)
        out.append(_piece(item))
    return Fragment(tuple(out))


def any_of(conditions: Sequence[Piece]) -> Fragment:
    """The conditions joined with OR, in parentheses (at least one condition)."""
    return _balanced(" OR ", conditions)


def all_of(conditions: Sequence[Piece]) -> Fragment:
    """The conditions joined with AND, in parentheses (at least one condition)."""
    return _balanced(" AND ", conditions)


#: Most conditions one pair of parentheses holds: a flat ``a OR b OR ...`` is a tree as deep as
#: it is long, and SQLite refuses an expression deeper than 1000 ("Expression tree is too
#: large"), so longer lists nest in groups of this size (depth log_64 of the length).
_GROUP = 64


def _balanced(separator: str, conditions: Sequence[Piece]) -> Fragment:
    if not conditions:
        raise ValueError("no condition to join")
    items: list[Piece] = list(conditions)
    while len(items) > _GROUP:
        items = [
            sql("(", join(separator, items[i : i + _GROUP]), ")")
            for i in range(0, len(items), _GROUP)
        ]
    return sql("(", join(separator, items), ")")


def compile_sql(fragment: Fragment, dialect: Dialect) -> tuple[str, list[Slot]]:
    """Render ``fragment`` for ``dialect``: the SQL text and the slots of its placeholders."""
    text, slots, _ = compile_split(fragment, dialect)
    return text, slots


def compile_split(fragment: Fragment, dialect: Dialect) -> tuple[str, list[Slot], tuple[str, ...]]:
    """:func:`compile_sql`, and the text cut at its placeholders: ``len(slots) + 1`` pieces, the
    text being the pieces joined by the placeholders in order. A statement can be rewritten
    from them with other expressions in the placeholders' places (PostgreSQL runs several
    requests' statements as one that way), with no scan of the text for ``$n``."""
    chunks: list[str] = []
    slots: list[Slot] = []
    #: index in ``chunks`` of each placeholder
    marks: list[int] = []
    quote = dialect.quote_ident
    placeholder = dialect.placeholder
    percent = dialect.escape_percent

    def walk(parts: Sequence[Text | Ident | Param | Fragment]) -> None:
        for p in parts:
            if isinstance(p, Text):
                chunks.append(p.text.replace("%", "%%") if percent else p.text)
            elif isinstance(p, Ident):
                name = ".".join(quote(n) for n in p.names)
                chunks.append(name.replace("%", "%%") if percent else name)
            elif isinstance(p, Param):
                slots.append(p.slot)
                marks.append(len(chunks))
                chunks.append(placeholder(len(slots)))
            else:
                walk(p.parts)

    walk(fragment.parts)
    pieces: list[str] = []
    start = 0
    for m in marks:
        pieces.append("".join(chunks[start:m]))
        start = m + 1
    pieces.append("".join(chunks[start:]))
    return "".join(chunks), slots, tuple(pieces)
