"""Small builders over fragments that read the dialect's data (templates, JSON functions)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from quiver.sql.dialects import Dialect
from quiver.sql.fragment import Fragment, Piece, join, sql

__all__ = ["OrderItem", "json_object", "literal_string", "order_by_clause", "template"]

_HOLE = re.compile(r"\{(\d*)\}")


def template(tpl: str, *args: Piece) -> Fragment:
    """Fill ``{}`` / ``{0}`` holes of a dialect template with fragments."""
    parts: list[Piece] = []
    pos = 0
    auto = 0
    for m in _HOLE.finditer(tpl):
        parts.append(tpl[pos : m.start()])
        if m.group(1):
            parts.append(args[int(m.group(1))])
        else:
            parts.append(args[auto])
            auto += 1
        pos = m.end()
    parts.append(tpl[pos:])
    return sql(*parts)


def literal_string(text: str) -> str:
    """A SQL string literal for text that comes from the catalog (GraphQL names), never users."""
    if not re.fullmatch(r"[_A-Za-z0-9]*", text):
        raise ValueError(f"refusing to inline {text!r} as a literal")
    return f"'{text}'"


def json_object(dialect: Dialect, pairs: Iterable[tuple[str, Piece]]) -> Fragment:
    """The JSON object of ``pairs``, in their order; built in parts where the database's
    object function takes fewer arguments (``json_object_max_pairs``)."""
    listed = list(pairs)
    limit = dialect.json_object_max_pairs or len(listed) or 1
    obj = sql(
        dialect.json_object_fn,
        "(",
        join(", ", [sql(literal_string(k), ", ", v) for k, v in listed[:limit]]),
        ")",
    )
    for start in range(limit, len(listed), limit):
        more = [
            sql(_json_key(k, dialect.json_object_more_paths), ", ", v)
            for k, v in listed[start : start + limit]
        ]
        obj = template(dialect.json_object_more, obj, join(", ", more))
    return obj


def _json_key(key: str, path: bool) -> str:
    return f"'$.{literal_string(key)[1:-1]}'" if path else literal_string(key)


OrderItem = tuple[Fragment, str, str]
"""An ORDER BY key: expression, ``ASC``/``DESC``, nulls ``FIRST``/``LAST`` (``""`` for a key
that is never null)."""


def order_by_clause(dialect: Dialect, items: Sequence[OrderItem]) -> Fragment:
    keys: list[Fragment] = []
    for expr, direction, nulls in items:
        if not nulls:  # a key that is never null: no placement (which would hide an index)
            keys.append(sql(expr, f" {direction}"))
        elif dialect.supports_nulls_order:
            keys.append(sql(expr, f" {direction} NULLS {nulls}"))
        else:
            keys.append(sql(expr, " IS NULL ", "DESC" if nulls == "FIRST" else "ASC"))
            keys.append(sql(expr, f" {direction}"))
    return join(", ", keys)
