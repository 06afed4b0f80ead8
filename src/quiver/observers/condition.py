"""Observer conditions: a small expression language, parsed to an AST and evaluated safely.

::

    total > 100 && changed(status) && status == 'paid'
    before.status != after.status || not active
    country in ['NZ', 'AU']

A bare field name reads the row after the write (before it, for a delete); ``before.f`` and
``after.f`` name an image explicitly. ``changed(f)`` is true when the write changed ``f``.
Operators: ``&&`` / ``and``, ``||`` / ``or``, ``!`` / ``not``, ``==``, ``!=``, ``<``, ``<=``,
``>``, ``>=``, ``in [...]``; literals: numbers, ``'text'`` or ``"text"``, ``true``, ``false``,
``null``. Nothing is ever handed to ``eval``: the parser builds the node classes below and
:func:`evaluate` walks them.

A comparison whose sides cannot be compared (a missing value, text against a number that is not
numeric text) is false; ``==`` / ``!=`` against ``null`` test for a missing value. A JSON field
holding the JSON value null (present as null in an event document, where SQL NULL is absent)
holds a value, as a query's ``isNull`` sees it: ``== null`` is false, ``!= null`` true, and it
is false as a condition of its own.

A comparison with a field compares values of the field's type (see :func:`typed_condition`),
whatever their spelling in the image: numbers (Int, BigInt, Float, Decimal, served as text or
numbers) as exact numbers, where ``NaN`` equals only ``NaN`` and is neither below nor above
anything; DateTime as instants (``'2024-01-02 05:04:05+02:00' == '2024-01-02T03:04:05Z'``, a
time without an offset read as UTC); Date as dates; UUID whatever the letters' case.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from quiver.runtime.errors import ErrorDetail, QuiverError
from quiver.runtime.hints import did_you_mean

__all__ = [
    "And",
    "Changed",
    "Compare",
    "Condition",
    "ConditionError",
    "Constant",
    "FieldRef",
    "Images",
    "ListOf",
    "Node",
    "Not",
    "Or",
    "check_comparisons",
    "check_fields",
    "evaluate",
    "fields_of",
    "parse_condition",
    "typed_condition",
]

#: How a field's values compare: ``number``, ``instant``, ``date``, ``uuid``; ``unordered``
#: (binary, lists) and ``json`` (a JSON field, which may hold the JSON value null): only ``==``
#: and ``!=``, an ordering is refused when checked (see :func:`check_comparisons`); others: as
#: they are.
Kind = Literal["number", "instant", "date", "uuid", "unordered", "json"]
_UNORDERED = ("unordered", "json")


class _JsonNull:
    """The JSON value null of a JSON field: a value, unlike SQL NULL (a missing value)."""

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "JSON null"


_JSON_NULL = _JsonNull()


class ConditionError(QuiverError):
    """A condition that cannot be parsed, or names a field its entity does not have."""


@dataclass(frozen=True)
class FieldRef:
    name: str
    image: Literal["current", "before", "after"] = "current"
    column: int = 0


@dataclass(frozen=True)
class Constant:
    value: Any


@dataclass(frozen=True)
class Changed:
    field: FieldRef


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class ListOf:
    items: tuple[Node, ...]


Node = FieldRef | Constant | Changed | Compare | And | Or | Not | ListOf


@dataclass(frozen=True)
class Condition:
    """A parsed condition and the text it came from."""

    text: str
    root: Node | None
    #: How each field of the entity compares (see :func:`typed_condition`).
    kinds: Mapping[str, Kind] = field(default_factory=dict)

    def fields(self) -> list[FieldRef]:
        return list(fields_of(self.root)) if self.root is not None else []


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>&&|\|\||==|!=|<=|>=|<|>|!|\(|\)|\[|\]|,|\.)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}
_COMPARISONS = {"==", "!=", "<", "<=", ">", ">="}


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    column: int


def _tokens(text: str, where: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            col = pos + len(text[pos:]) - len(text[pos:].lstrip()) + 1
            raise _error(
                text, where, col, f"unexpected character {text[col - 1]!r}", "remove or quote it"
            )
        kind = m.lastgroup or ""
        value = m.group(kind)
        column = m.start(kind) + 1
        if kind == "name" and value in _KEYWORDS:
            kind, value = "op", _KEYWORDS[value]
        elif kind == "name" and value == "in":
            kind = "op"
        out.append(_Token(kind, value, column))
        pos = m.end()
    out.append(_Token("end", "", len(text) + 1))
    return out


def _error(text: str, where: str, column: int, message: str, fix: str) -> ConditionError:
    return ConditionError(
        [ErrorDetail(f"{message} at column {column} of {text!r}", where, fix)],
        code="INVALID_CONDITION",
    )


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.tokens = _tokens(text, where)
        self.pos = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind not in ("op",):
            raise self.fail(token, f"expected {text!r}", f"add {text!r}")

    def fail(self, token: _Token, message: str, fix: str) -> ConditionError:
        found = "the end" if token.kind == "end" else repr(token.text)
        return _error(self.text, self.where, token.column, f"{message}, found {found}", fix)

    def parse(self) -> Node:
        node = self.or_()
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "expected && or || between terms", "join terms with &&")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.peek().text == "||" and self.peek().kind == "op":
            self.take()
            node = Or(node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.peek().text == "&&" and self.peek().kind == "op":
            self.take()
            node = And(node, self.not_())
        return node

    def not_(self) -> Node:
        if self.peek().text == "!" and self.peek().kind == "op":
            self.take()
            return Not(self.not_())
        return self.comparison()

    def comparison(self) -> Node:
        left = self.operand()
        token = self.peek()
        if token.kind == "op" and token.text in _COMPARISONS:
            self.take()
            return Compare(token.text, left, self.operand())
        if token.kind == "op" and token.text == "in":
            self.take()
            return Compare("in", left, self.list_())
        return left

    def list_(self) -> ListOf:
        self.expect("[")
        items: list[Node] = []
        while not (self.peek().kind == "op" and self.peek().text == "]"):
            items.append(self.operand())
            if self.peek().kind == "op" and self.peek().text == ",":
                self.take()
            elif not (self.peek().kind == "op" and self.peek().text == "]"):
                raise self.fail(self.peek(), "expected ',' or ']'", "close the list with ]")
        self.take()
        return ListOf(tuple(items))

    def operand(self) -> Node:
        token = self.take()
        if token.kind == "num":
            exact = token.text.isdigit()
            return Constant(int(token.text) if exact else Decimal(token.text))
        if token.kind == "str":
            return Constant(_unquote(token.text))
        if token.kind == "op" and token.text == "(":
            node = self.or_()
            self.expect(")")
            return node
        if token.kind == "name":
            if token.text in ("true", "false", "null"):
                return Constant({"true": True, "false": False, "null": None}[token.text])
            if token.text == "changed":
                self.expect("(")
                ref = self.field_ref(self.take())
                self.expect(")")
                return Changed(ref)
            return self.field_ref(token)
        raise self.fail(token, "expected a field, a literal or '('", "complete the expression")

    def field_ref(self, token: _Token) -> FieldRef:
        if token.kind != "name":
            raise self.fail(token, "expected a field name", "name a field of the entity")
        if token.text in ("before", "after") and self.peek().text == ".":
            self.take()
            inner = self.take()
            if inner.kind != "name":
                raise self.fail(inner, "expected a field name after '.'", "write before.field")
            image: Literal["before", "after"] = "before" if token.text == "before" else "after"
            return FieldRef(inner.text, image, inner.column)
        return FieldRef(token.text, "current", token.column)


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: m.group(1), body)


def parse_condition(text: str | None, where: str = "when") -> Condition:
    """Parse ``text`` (None or blank: always true); a syntax error raises ConditionError."""
    if text is None or not text.strip():
        return Condition(text or "", None)
    return Condition(text, _Parser(text, where).parse())


def typed_condition(condition: Condition, kinds: Mapping[str, Kind]) -> Condition:
    """``condition`` comparing each field as ``kinds`` says (from the field's type)."""
    return replace(condition, kinds=dict(kinds))


def fields_of(node: Node | None) -> Iterable[FieldRef]:
    """Every field a condition reads, in order."""
    if node is None or isinstance(node, Constant):
        return
    if isinstance(node, FieldRef):
        yield node
    elif isinstance(node, Changed):
        yield node.field
    elif isinstance(node, Not):
        yield from fields_of(node.operand)
    elif isinstance(node, ListOf):
        for item in node.items:
            yield from fields_of(item)
    else:
        yield from fields_of(node.left)
        yield from fields_of(node.right)


def check_fields(
    condition: Condition, known: Iterable[str], entity: str, where: str
) -> list[ErrorDetail]:
    """One error per field the condition reads that ``entity`` does not have."""
    names = set(known)
    errors = []
    for ref in condition.fields():
        if ref.name not in names:
            fix = did_you_mean(ref.name, names, fallback=f"fields: {', '.join(sorted(names))}")
            errors.append(
                ErrorDetail(
                    f"{entity} has no field {ref.name!r} (column {ref.column} of "
                    f"{condition.text!r})",
                    where,
                    fix,
                )
            )
    return errors


def check_comparisons(
    condition: Condition, kinds: Mapping[str, Kind], entity: str, where: str
) -> list[ErrorDetail]:
    """One error per ordering (``<``, ``<=``, ``>``, ``>=``) of a field whose values have no
    order (JSON, binary, lists): it could never hold."""
    errors: list[ErrorDetail] = []
    for node in _comparisons(condition.root):
        if node.op not in _ORDER:
            continue
        for side in (node.left, node.right):
            if isinstance(side, FieldRef) and kinds.get(side.name) in _UNORDERED:
                errors.append(
                    ErrorDetail(
                        f"{entity}.{side.name} has no order: {node.op} on it is never true"
                        f" (column {side.column} of {condition.text!r})",
                        where,
                        "compare it with == or !=, or order a field of numbers, dates or text",
                    )
                )
    return errors


def _comparisons(node: Node | None) -> Iterable[Compare]:
    if isinstance(node, Compare):
        yield node
    if isinstance(node, Not):
        yield from _comparisons(node.operand)
    elif isinstance(node, And | Or | Compare):
        yield from _comparisons(node.left)
        yield from _comparisons(node.right)


@dataclass(frozen=True)
class Images:
    """What a condition reads: the row before and after the write, and what changed."""

    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    changed: frozenset[str]


def evaluate(condition: Condition, images: Images) -> bool:
    """Whether ``images`` satisfy ``condition`` (an empty condition always holds)."""
    if condition.root is None:
        return True
    return _truthy(_eval(condition.root, images, condition.kinds))


def _eval(node: Node, images: Images, kinds: Mapping[str, Kind]) -> Any:
    if isinstance(node, Constant):
        return node.value
    if isinstance(node, FieldRef):
        if node.image == "before":
            image = images.before
        elif node.image == "after":
            image = images.after
        else:
            image = images.after if images.after is not None else images.before
        if image is None:
            return None
        value = image.get(node.name)
        if value is None and kinds.get(node.name) == "json" and node.name in image:
            return _JSON_NULL  # SQL NULL is absent from the document
        return value
    if isinstance(node, Changed):
        return node.field.name in images.changed
    if isinstance(node, Not):
        return not _truthy(_eval(node.operand, images, kinds))
    if isinstance(node, And):
        return _truthy(_eval(node.left, images, kinds)) and _truthy(
            _eval(node.right, images, kinds)
        )
    if isinstance(node, Or):
        return _truthy(_eval(node.left, images, kinds)) or _truthy(_eval(node.right, images, kinds))
    if isinstance(node, ListOf):
        return [_eval(item, images, kinds) for item in node.items]
    left = _eval(node.left, images, kinds)
    right = _eval(node.right, images, kinds)
    kind = _kind_of(node.left, kinds) or _kind_of(node.right, kinds)
    if node.op == "in":
        return any(_compare("==", left, item, kind) for item in right)
    return _compare(node.op, left, right, kind)


def _kind_of(node: Node, kinds: Mapping[str, Kind]) -> Kind | None:
    return kinds.get(node.name) if isinstance(node, FieldRef) else None


def _truthy(value: Any) -> bool:
    return (
        value is not None
        and value is not False
        and value is not _JSON_NULL
        and value != 0
        and value != ""
    )


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _compare(op: str, left: Any, right: Any, kind: Kind | None = None) -> bool:
    if left is None or right is None:
        if op == "==":
            return left is None and right is None
        if op == "!=":
            return (left is None) != (right is None)
        return False
    a, b = _coerce(left, right, kind)
    if isinstance(a, Decimal) and isinstance(b, Decimal) and (a.is_nan() or b.is_nan()):
        # NaN (a Float or Decimal image value "NaN") equals only NaN and is not ordered.
        same = a.is_nan() and b.is_nan()
        return same if op == "==" else not same if op == "!=" else False
    if op == "==":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    try:
        return _ORDER[op](a, b)
    except TypeError:
        return False


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        number = Decimal(str(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    # "sNaN" is text, not a number: a signalling NaN raises on every comparison.
    return None if number.is_snan() else number


def _coerce(left: Any, right: Any, kind: Kind | None = None) -> tuple[Any, Any]:
    """Numbers and numeric text compare as numbers (a BigInt image value is text); the two
    sides of a comparison with a field compare as values of its ``kind`` when both read so."""
    if isinstance(left, bool) or isinstance(right, bool):
        return left, right
    numeric = kind == "number" and isinstance(left, str) and isinstance(right, str)
    if (
        numeric
        or isinstance(left, int | float | Decimal)
        or isinstance(right, int | float | Decimal)
    ):
        a, b = _number(left), _number(right)
        if a is not None and b is not None:
            return a, b
    read = _READERS.get(kind or "")
    if read is not None and isinstance(left, str) and isinstance(right, str):
        x, y = read(left), read(right)
        if x is not None and y is not None:
            return x, y
    return left, right


def _instant(text: str) -> dt.datetime | None:
    """ISO 8601 date and time (a space or ``T`` between, ``Z`` or an offset, or none: UTC)."""
    if len(text) < 10 or text[4:5] != "-":
        return None
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def _date(text: str) -> dt.date | None:
    if text[4:5] != "-":
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        return None


def _uuid(text: str) -> uuid.UUID | None:
    if len(text.strip()) != 36:
        return None
    try:
        return uuid.UUID(text.strip())
    except ValueError:
        return None


_READERS: dict[str, Callable[[str], Any]] = {"instant": _instant, "date": _date, "uuid": _uuid}
