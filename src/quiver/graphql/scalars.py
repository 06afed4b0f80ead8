"""Custom GraphQL scalars: BigInt, Decimal, DateTime, Date, Time, UUID, JSON and Base64.

Inputs are parsed into Python values (int, Decimal, datetime, ...) that become SQL parameters;
outputs are produced by the database (see ``Dialect.scalar_output``): BigInt and Decimal travel as
strings so no precision is lost in JSON, date and time values as ISO 8601 strings, binary
values as standard Base64 (RFC 4648, with padding, no line breaks).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import re
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from graphql.language import (
    FloatValueNode,
    IntValueNode,
    ListValueNode,
    ObjectValueNode,
    StringValueNode,
)

from graphql import (
    GraphQLBoolean,
    GraphQLError,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLScalarType,
    GraphQLString,
    ValueNode,
    print_ast,
    value_from_ast_untyped,
)
from quiver.schema.ir import Scalar
from quiver.sql.changelog import json_text as changelog_json_text
from quiver.sql.changelog import json_value
from quiver.sql.declared import json_depth
from quiver.sql.iso_forms import INFINITE, ISO_PARSERS

__all__ = ["SCALAR_TYPES", "graphql_scalar", "json_text"]


def _literal_parser(
    name: str, parse: Callable[[Any], Any], kinds: tuple[type[ValueNode], ...]
) -> Callable[..., Any]:
    expected = " or ".join(_KIND_NAMES[k] for k in kinds)
    numeric = (IntValueNode, FloatValueNode)

    def parse_literal(node: ValueNode, _variables: Any = None) -> Any:
        if not isinstance(node, kinds):
            raise GraphQLError(f"{name} expects {expected}, got {print_ast(node)}")
        value = node.value  # type: ignore[attr-defined]
        return parse(value if not isinstance(node, numeric) else _number(value))

    return parse_literal


def _number(text: str) -> int | decimal.Decimal:
    """A numeric literal as an exact value (never a binary float)."""
    return int(text) if text.lstrip("-").isdigit() else decimal.Decimal(text)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _parse_bigint(value: Any) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?[0-9]+\s*", value):
        number = int(value)
    if number is None:
        raise GraphQLError(
            f"BigInt cannot represent {value!r}: give an integer or a string of digits"
        )
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise GraphQLError(f"BigInt cannot represent {value!r}: it is outside the 64-bit range")
    return number


#: PostgreSQL's non-finite numerics, served and taken as these strings.
NON_FINITE_DECIMALS = ("NaN", "Infinity", "-Infinity")


def _parse_decimal(value: Any) -> decimal.Decimal:
    if isinstance(value, bool):
        raise GraphQLError(f"Decimal cannot represent {value!r}")
    if value in NON_FINITE_DECIMALS:
        # as served; only PostgreSQL's numeric holds them (the planner checks the database)
        return decimal.Decimal(value)
    if isinstance(value, int | str | float | decimal.Decimal):
        try:
            # str(float) is the shortest text that round-trips: 12.5 -> "12.5".
            d = decimal.Decimal(str(value).strip())
        except decimal.InvalidOperation:
            pass
        else:
            if d.is_finite():
                return d
    raise GraphQLError(f'Decimal cannot represent {value!r}: give a string such as "12.50"')


#: Seconds with more than 6 digits after the point: Python (and the databases) would cut them.
_SUB_MICROSECOND = re.compile(r":\d{2}[.,]\d{7,}")


def _iso_parser(
    kind: str, parse: Callable[[str], Any], *, infinite: bool = False
) -> Callable[[Any], Any]:
    def parse_value(value: Any) -> Any:
        if infinite and value in INFINITE:
            return value
        if isinstance(value, str):
            if _SUB_MICROSECOND.search(value):
                raise GraphQLError(
                    f"{kind} cannot represent {value!r}: it has more than 6 digits of a second"
                    " after the point, and values keep microseconds; round it to 6 digits"
                )
            try:
                return parse(value)
            except ValueError:
                pass
        raise GraphQLError(f"{kind} cannot represent {value!r}: give an ISO 8601 string")

    return parse_value


def _parse_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise GraphQLError(f"UUID cannot represent {value!r}")


def _parse_base64(value: Any) -> bytes:
    if isinstance(value, str):
        try:
            return base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            pass
    raise GraphQLError(
        f"Base64 cannot represent {value!r}: give standard Base64 (A-Z a-z 0-9 + /, padded"
        ' with =), e.g. "/w==" for the byte 0xFF'
    )


def _serialize_passthrough(value: Any) -> Any:
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    return value


def _scalar(
    name: str,
    description: str,
    parse: Callable[[Any], Any],
    literal_kinds: tuple[type[ValueNode], ...],
) -> GraphQLScalarType:
    return GraphQLScalarType(
        name=name,
        description=description,
        serialize=_serialize_passthrough,
        parse_value=parse,
        parse_literal=_literal_parser(name, parse, literal_kinds),
    )


_STR = (StringValueNode,)
_KIND_NAMES: dict[type[ValueNode], str] = {
    StringValueNode: "a string",
    IntValueNode: "an integer",
    FloatValueNode: "a number",
}
BIGINT = _scalar(
    "BigInt",
    "A 64-bit integer, serialised as a string so JSON readers lose no precision.",
    _parse_bigint,
    (StringValueNode, IntValueNode),
)
DECIMAL = _scalar(
    "Decimal",
    'An exact decimal number, serialised as a string ("12.50"); PostgreSQL\'s numeric also'
    ' has "NaN", "Infinity" and "-Infinity".',
    _parse_decimal,
    (StringValueNode, IntValueNode, FloatValueNode),
)
DATETIME = _scalar(
    "DateTime",
    'A date and time in ISO 8601 (PostgreSQL also has "infinity" and "-infinity").',
    _iso_parser("DateTime", ISO_PARSERS["DateTime"], infinite=True),
    _STR,
)
DATE = _scalar(
    "Date",
    'A calendar date in ISO 8601 (PostgreSQL also has "infinity" and "-infinity").',
    _iso_parser("Date", ISO_PARSERS["Date"], infinite=True),
    _STR,
)
TIME = _scalar(
    "Time",
    "A time of day in ISO 8601, 00:00:00 to 23:59:59.999999 (24:00:00 is the next day's 00:00:00).",
    _iso_parser("Time", ISO_PARSERS["Time"]),
    _STR,
)
UUID = _scalar("UUID", "A UUID in its canonical text form.", _parse_uuid, _STR)
BASE64 = _scalar(
    "Base64",
    "Binary data as standard Base64 (RFC 4648 with padding, no line breaks).",
    _parse_base64,
    _STR,
)


#: The deepest nesting of arrays and objects a JSON input may have: deeper values cannot be
#: encoded again (orjson stops at 255 levels) and no database indexes into them usefully.
JSON_MAX_DEPTH = 200


def _json_depth_checked(value: Any) -> Any:
    """``value``, refused when its arrays and objects nest deeper than ``JSON_MAX_DEPTH``."""
    if json_depth(value) > JSON_MAX_DEPTH:
        raise GraphQLError(
            f"JSON cannot represent a value nested more than {JSON_MAX_DEPTH} levels deep"
            " (arrays and objects within each other): flatten it"
        )
    return value


def _parse_json_literal(node: ValueNode, variables: Any = None) -> Any:
    return _json_depth_checked(_exact_untyped(node, variables))


def _exact_untyped(node: ValueNode, variables: Any) -> Any:
    """A JSON literal's value, its numbers as exact as a variable's (graphql-core reads a
    float literal as a double (``1e400`` would be infinity, long decimals rounded) and an
    integer past 64 bits as one JSON cannot write)."""
    if isinstance(node, FloatValueNode | IntValueNode):
        return json_value(node.value)
    if isinstance(node, ListValueNode):
        return [_exact_untyped(v, variables) for v in node.values]
    if isinstance(node, ObjectValueNode):
        return {f.name.value: _exact_untyped(f.value, variables) for f in node.fields}
    return value_from_ast_untyped(node, variables)


def json_text(value: Any) -> str:
    """The JSON text of an input value, every number as given: integers beyond 64 bits and
    decimals (numbers of a JSON literal a double cannot hold) keep their digits."""
    return changelog_json_text(value).decode()


JSON = GraphQLScalarType(
    name="JSON",
    description="Any JSON value.",
    serialize=lambda v: orjson.loads(v) if isinstance(v, bytes | str) else v,
    parse_value=_json_depth_checked,
    parse_literal=_parse_json_literal,
)

SCALAR_TYPES: dict[Scalar, GraphQLScalarType] = {
    Scalar.INT: GraphQLInt,
    Scalar.FLOAT: GraphQLFloat,
    Scalar.STRING: GraphQLString,
    Scalar.BOOLEAN: GraphQLBoolean,
    Scalar.ID: GraphQLID,
    Scalar.BIGINT: BIGINT,
    Scalar.DECIMAL: DECIMAL,
    Scalar.DATETIME: DATETIME,
    Scalar.DATE: DATE,
    Scalar.TIME: TIME,
    Scalar.UUID: UUID,
    Scalar.JSON: JSON,
    Scalar.BASE64: BASE64,
}


def graphql_scalar(scalar: Scalar) -> GraphQLScalarType:
    return SCALAR_TYPES[scalar]
