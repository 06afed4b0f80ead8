"""The value kinds an OTLP/JSON document may hold, checked against the message it is read as.

The protobuf library's JSON parser, asked to ignore unknown fields as OTLP/JSON requires,
also drops an enum name it does not know (``"kind": "SPAN_KIND_SERVR"`` becomes
unspecified), reads a string where an object belongs as an object with no fields (``"value":
"x"`` becomes an empty attribute value), takes ``true`` as the integer 1 and reads integer
strings the way Python's ``int`` does (``" 1"``, ``"1_000"``, digits of other scripts). None
of these is OTLP/JSON; each would be acknowledged and stored as something the sender did not
send. :func:`check_shape` refuses them first, naming the field: objects where messages are,
arrays where repeated fields are, enums as their number or one of their names, integers as
JSON integers or strings of ASCII digits, booleans as ``true``/``false``, strings and bytes
as strings, doubles as numbers or strings. ``null`` stands for the default anywhere, and
unknown fields are ignored, their contents unchecked, as the specification says. A field named
twice in one object, by its JSON name and its proto name (``scopeSpans`` and ``scope_spans``),
is refused: the parser would read one of the values and drop the other unseen.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

__all__ = ["ShapeError", "check_shape"]

_MAX_DEPTH = 100  # the protobuf JSON parser's own limit on nested messages
_SIGNED = re.compile(r"-?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")
_INTEGERS = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_UNSIGNED_INTEGERS = frozenset(
    {
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    }
)
_DOUBLES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})


class ShapeError(Exception):
    """A value of a kind its field cannot hold; ``message`` names the field and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_shape(doc: Any, descriptor: Descriptor, where: str = "") -> None:
    """Raise :class:`ShapeError` where ``doc`` holds a value its field of ``descriptor``
    cannot hold as OTLP/JSON (``where``: the path of ``doc`` in the body, for the message)."""
    _message(doc, descriptor, where, 0)


def _message(doc: Any, descriptor: Descriptor, where: str, depth: int) -> None:
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise ShapeError(
            f"{where or 'the body'}: {_show(doc)} is not an object; a {descriptor.name} is "
            "written as a JSON object"
        )
    if depth > _MAX_DEPTH:
        head = where if len(where) <= 80 else where[:80] + "…"
        raise ShapeError(
            f"{head}: values are nested more than {_MAX_DEPTH} messages deep; send them flatter"
        )
    by_json = descriptor.fields_by_camelcase_name
    by_name = descriptor.fields_by_name
    aliases = _aliases(descriptor)
    if not aliases.keys().isdisjoint(doc):  # a proto field name (scope_spans) is used
        for key in aliases.keys() & doc.keys():
            if aliases[key] in doc:
                raise ShapeError(
                    f"{where or 'the body'}: {aliases[key]} and {key} name the same field, "
                    "and only one of their values would be read; send it once"
                )
    for key, value in doc.items():
        field = by_json.get(key) or by_name.get(key)
        if field is None or value is None:
            continue  # unknown fields are ignored; null is the default
        at = f"{where}.{key}" if where else key
        if field.is_repeated:
            if not isinstance(value, list):
                raise ShapeError(f"{at}: {_show(value)} is not an array; {key} is a list")
            for i, item in enumerate(value):
                _value(item, field, f"{at}[{i}]", depth)
        else:
            _value(value, field, at, depth)


_ALIASES: dict[str, dict[str, str]] = {}


def _aliases(descriptor: Descriptor) -> dict[str, str]:
    """The proto field names of ``descriptor`` that differ from their JSON names, with those
    JSON names (``scope_spans``: ``scopeSpans``)."""
    found = _ALIASES.get(descriptor.full_name)
    if found is None:
        found = _ALIASES[descriptor.full_name] = {
            f.name: f.camelcase_name for f in descriptor.fields if f.name != f.camelcase_name
        }
    return found


def _value(value: Any, field: FieldDescriptor, at: str, depth: int) -> None:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        _message(value, field.message_type, at, depth + 1)
        return
    if value is None:
        raise ShapeError(f"{at}: null is not a value; leave the item out")
    if kind == FieldDescriptor.TYPE_ENUM:
        _enum(value, field, at)
    elif kind in _INTEGERS or kind in _UNSIGNED_INTEGERS:
        digits = _UNSIGNED if kind in _UNSIGNED_INTEGERS else _SIGNED
        if isinstance(value, bool) or not (
            isinstance(value, int | float) or (isinstance(value, str) and digits.fullmatch(value))
        ):
            sign = "" if kind in _UNSIGNED_INTEGERS else "an optional '-' and "
            raise ShapeError(
                f"{at}: {_show(value)} is not an integer; write a JSON integer or a string of "
                f'{sign}ASCII digits (64-bit values as strings, e.g. "1700000000000000000")'
            )
    elif kind in _DOUBLES:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ShapeError(f"{at}: {_show(value)} is not a number")
    elif kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise ShapeError(f"{at}: {_show(value)} is not a boolean; write true or false")
    elif not isinstance(value, str):  # string, bytes
        what = "base64 or hex text" if kind == FieldDescriptor.TYPE_BYTES else "text"
        raise ShapeError(f"{at}: {_show(value)} is not a string; write it as {what} in quotes")


def _enum(value: Any, field: FieldDescriptor, at: str) -> None:
    enum = field.enum_type
    if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        return  # a number the specification does not name is kept as it is
    if isinstance(value, str) and value in enum.values_by_name:
        return
    names = ", ".join(v.name for v in enum.values[:6]) + (", …" if len(enum.values) > 6 else "")
    raise ShapeError(
        f"{at}: {_show(value)} is not a value of {enum.name}; write its number or one of {names}"
    )


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 42 else text[:40] + "…"
