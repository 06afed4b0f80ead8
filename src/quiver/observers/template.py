"""Templates of action bodies: ``{{ path }}`` placeholders filled from the event document.

::

    Order {{ key.id }} is now {{ after.status }} (was {{ before.status }})
    {"order": {{ after.id | json }}, "note": {{ after.note | json }}}

A path names a member of the event document (``event_id``, ``observer``, ``entity``,
``operation``, ``key``, ``before``, ``after``, ``changed_fields``, ``actor``, ``tenant_id``,
``transaction_id``, ``changed_at``) or ``idempotency_key``, then fields with dots. A value is
written as text (null as nothing, objects and lists as JSON); ``| json`` writes any value as
JSON, for templates of JSON bodies. Nothing else is interpreted: no code runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from quiver.runtime.errors import ErrorDetail
from quiver.runtime.hints import did_you_mean
from quiver.sql.changelog import JsonNumber, json_text

__all__ = ["ROOTS", "Template", "parse_template"]

ROOTS = (
    "event_id",
    "observer",
    "entity",
    "operation",
    "key",
    "before",
    "after",
    "changed_fields",
    "actor",
    "tenant_id",
    "transaction_id",
    "changed_at",
    "idempotency_key",
)
_IMAGES = ("before", "after")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)
_PATH = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*(\|\s*json\s*)?$")


@dataclass(frozen=True)
class _Slot:
    path: tuple[str, ...]
    as_json: bool


@dataclass(frozen=True)
class Template:
    parts: tuple[str | _Slot, ...]

    def render(self, document: Mapping[str, Any]) -> str:
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = document
            for name in part.path:
                value = value.get(name) if isinstance(value, Mapping) else None
            out.append(_text(value, part.as_json))
        return "".join(out)


def _text(value: Any, as_json: bool) -> str:
    if as_json or isinstance(value, dict | list):
        return json_text(value).decode()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, JsonNumber):
        return value.text  # as the database wrote it (1e400, not 1E+400)
    return str(value)


def parse_template(
    text: str, where: str, fields: Iterable[str] | None, errors: list[ErrorDetail]
) -> Template:
    """Parse ``text``; problems (a bad placeholder, an unknown name or field) go to
    ``errors`` with ``where`` as their location."""
    known = set(fields) if fields is not None else None
    parts: list[str | _Slot] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append(text[pos : m.start()])
        pos = m.end()
        found = _PATH.match(m.group(1))
        if found is None:
            errors.append(
                ErrorDetail(
                    f"cannot read the placeholder {m.group(0)!r}",
                    where,
                    "write {{ after.field }} or {{ after.field | json }}",
                )
            )
            continue
        path = tuple(found.group(1).split("."))
        if path[0] not in ROOTS:
            errors.append(
                ErrorDetail(
                    f"unknown name {path[0]!r} in {m.group(0)!r}",
                    where,
                    did_you_mean(path[0], ROOTS, fallback=f"use one of: {', '.join(ROOTS)}"),
                )
            )
        elif path[0] in _IMAGES and len(path) > 1 and known is not None and path[1] not in known:
            errors.append(
                ErrorDetail(
                    f"the entity has no field {path[1]!r} (in {m.group(0)!r})",
                    where,
                    did_you_mean(path[1], known, fallback=f"fields: {', '.join(sorted(known))}"),
                )
            )
        parts.append(_Slot(path, found.group(2) is not None))
    parts.append(text[pos:])
    if "{{" in text[pos:] or "}}" in text[pos:]:
        errors.append(ErrorDetail("an unclosed {{ placeholder", where, "close it with }}"))
    return Template(tuple(p for p in parts if p != ""))
