"""Which properties of its row a ``transform(row, ctx)`` script can touch, read from its syntax.

Columns a script never touches need not enter V8: the host keeps them and puts them back
beside the script's output, as they would have passed through it. That holds only when the
script cannot reach the row's other properties in any way, so the answer is None (every
column enters V8) unless the script passes all of these rules:

- it parses without error, declares ``function transform(row, ...)`` once at its top level
  (a plain, not async or generator, function whose first parameter is a plain name) and never
  names ``transform`` anywhere else;
- inside ``transform``, the row's name appears only as ``row.name`` (read or written, but not
  called as ``row.name(...)``, which would hand the row over as ``this``) and as ``return row``;
  every ``return`` of ``transform`` itself gives ``row``, ``null``, ``undefined`` or nothing,
  so each output row is an input row;
- the context (the second parameter, if any) appears only as ``ctx.name`` with a name other
  than ``emit`` (whose one-argument form builds a copy of the whole row);
- nowhere does the script use ``delete`` (which reorders a row's keys), ``with``, ``eval``,
  ``arguments``, ``import()``, ``this`` or a name of the global object, or any name by which
  prototypes or properties can be redefined (``prototype``, ``__proto__``, ``defineProperty``,
  ``Reflect``, ``Proxy`` and the like: a getter on ``Object.prototype`` could read the row as
  ``this``), not even in a string.

The answer is the set of names after ``row.`` anywhere in the script: a superset of what it
touches (a nested function's own ``row`` counts too).
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["transform_reads"]

#: Names that disqualify a script wherever they appear (identifiers, property names, strings).
_BANNED = frozenset(
    {
        "eval",
        "arguments",
        "Function",
        "Reflect",
        "Proxy",
        "prototype",
        "__proto__",
        "constructor",
        "defineProperty",
        "defineProperties",
        "setPrototypeOf",
        "getPrototypeOf",
        "getOwnPropertyDescriptor",
        "getOwnPropertyDescriptors",
        "__defineGetter__",
        "__defineSetter__",
        "__lookupGetter__",
        "__lookupSetter__",
        "emit",
        "globalThis",
        "global",
        "self",
        "window",
    }
)
#: Nodes that disqualify a script wherever they appear (``this`` in a plain call is the global
#: object, through which ``transform`` could be replaced under a computed name).
_BANNED_NODES = frozenset(
    {"with_statement", "import", "meta_property", "this", "super", "ERROR", "MISSING"}
)
_FUNCTIONS = frozenset(
    {
        "function_declaration",
        "function_expression",
        "function",
        "arrow_function",
        "method_definition",
        "generator_function",
        "generator_function_declaration",
        "class_static_block",
    }
)
_NAMES = frozenset(
    {
        "identifier",
        "property_identifier",
        "shorthand_property_identifier",
        "shorthand_property_identifier_pattern",
        "private_property_identifier",
    }
)
#: Names that refer to a variable (a property name after a dot does not).
_REFERENCES = _NAMES - {"property_identifier", "private_property_identifier"}


class _AnyPropertyError(Exception):
    """The script may touch any property of its row."""


@functools.cache
def _language() -> Any:
    import tree_sitter_javascript
    from tree_sitter import Language

    return Language(tree_sitter_javascript.language())


@functools.lru_cache(maxsize=16)
def transform_reads(source: str) -> frozenset[str] | None:
    """The property names a ``transform(row, ctx)`` script can touch on its row, or None when
    it may touch any of them (see the module's rules). Thread-safe: each call parses with a
    parser of its own (the isolates of a step are made on threads of their own)."""
    from tree_sitter import Parser

    root = Parser(_language()).parse(source.encode("utf-8")).root_node
    if root.has_error:
        return None
    try:
        return _reads(root)
    except _AnyPropertyError:
        return None


def _text(node: Any) -> str:
    return bytes(node.text).decode("utf-8")


def _walk(node: Any) -> Any:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _reads(root: Any) -> frozenset[str]:
    entry = None
    for node in root.named_children:
        if node.type == "function_declaration" and _text(node.child_by_field_name("name")) == (
            "transform"
        ):
            if entry is not None:
                raise _AnyPropertyError
            entry = node
    if entry is None or any(c.type == "async" for c in entry.children):
        raise _AnyPropertyError
    params = [p for p in entry.child_by_field_name("parameters").named_children]
    params = [p for p in params if p.type != "comment"]
    if not params or params[0].type != "identifier":
        raise _AnyPropertyError
    row = _text(params[0])
    ctx = _text(params[1]) if len(params) > 1 and params[1].type == "identifier" else None
    if len(params) > 1 and ctx is None:
        raise _AnyPropertyError
    name_node = entry.child_by_field_name("name")
    reads: set[str] = set()
    for node in _walk(root):
        kind = node.type
        if kind in _BANNED_NODES or node.is_missing:
            raise _AnyPropertyError
        if kind == "unary_expression" and _text(node.child_by_field_name("operator")) == "delete":
            raise _AnyPropertyError
        if kind in _NAMES or kind == "string_fragment":
            text = _text(node)
            if text in _BANNED or (kind == "string_fragment" and any(b in text for b in _BANNED)):
                raise _AnyPropertyError
            if text == "transform" and node != name_node:
                raise _AnyPropertyError
            if kind == "string_fragment" and "transform" in text:
                raise _AnyPropertyError
            if text == row and kind in _REFERENCES:
                _check_row_use(node, entry, params[0], reads)
            elif ctx is not None and text == ctx and kind in _REFERENCES:
                _check_ctx_use(node, params[1])
        elif kind == "return_statement" and _enclosing_function(node) == entry:
            value = [c for c in node.named_children if c.type != "comment"]
            if value and not (
                value[0].type in ("null", "undefined")
                or (value[0].type == "identifier" and _text(value[0]) in (row, "undefined"))
            ):
                raise _AnyPropertyError
    return frozenset(reads)


def _enclosing_function(node: Any) -> Any:
    n = node.parent
    while n is not None and n.type not in _FUNCTIONS:
        n = n.parent
    return n


def _check_row_use(node: Any, entry: Any, param: Any, reads: set[str]) -> None:
    """``node`` names the row: allowed as the parameter, as ``row.name`` and ``return row``
    (and as another function's parameter, whose uses are then held to the same rules)."""
    if node == param:
        return
    parent = node.parent
    if node.type != "identifier" or parent is None:
        raise _AnyPropertyError
    if parent.type == "formal_parameters":
        return
    if parent.type == "member_expression" and parent.child_by_field_name("object") == node:
        prop = parent.child_by_field_name("property")
        if prop is None or prop.type != "property_identifier":
            raise _AnyPropertyError
        outer = parent.parent
        if (
            outer is not None
            and outer.type == "call_expression"
            and (outer.child_by_field_name("function") == parent)
        ):
            raise _AnyPropertyError  # row.name(...) hands the row over as `this`
        reads.add(_text(prop))
        return
    if parent.type == "return_statement" and _enclosing_function(parent) == entry:
        return
    raise _AnyPropertyError


def _check_ctx_use(node: Any, param: Any) -> None:
    """``node`` names the context: allowed as the parameter and as ``ctx.name``."""
    if node == param:
        return
    parent = node.parent
    if node.type != "identifier" or parent is None:
        raise _AnyPropertyError
    if parent.type == "member_expression" and parent.child_by_field_name("object") == node:
        prop = parent.child_by_field_name("property")
        if prop is None or prop.type != "property_identifier" or _text(prop) in _BANNED:
            raise _AnyPropertyError
        return
    raise _AnyPropertyError
