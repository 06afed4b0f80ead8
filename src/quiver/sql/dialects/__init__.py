"""SQL dialects as data: what differs between PostgreSQL, MariaDB/MySQL, SQLite and DuckDB.

Planners never branch on a dialect's name; they read these fields. Templates use ``{}`` for the
fragments they wrap (see :func:`quiver.sql.build.template`).

Identifiers are quoted here and nowhere else: :meth:`Dialect.quote_ident` for one name,
:meth:`Dialect.quote_table` for a table name that may carry its schema (``schema.table``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from quiver.runtime.errors import ConfigError, ErrorDetail

__all__ = [
    "DUCKDB",
    "MYSQL",
    "MYSQL_SPATIAL_TYPES",
    "POSTGRESQL",
    "SQLITE",
    "STORED_MARK",
    "Dialect",
    "IdentifierError",
    "check_identifier",
    "dialect_for",
    "split_table_name",
]

ScalarName = str

#: MariaDB's spatial column types (a pattern of ``db_type``): served as GeoJSON, written from it.
MYSQL_SPATIAL_TYPES = (
    r"geometry|point|linestring|polygon|multipoint|multilinestring|multipolygon"
    r"|geometrycollection"
)


#: What a value a field's scalar cannot carry is served as, where the database cannot refuse it
#: itself (MariaDB calls no Python function): a JSON string ``"<mark><kind>:<type>:<value>"``,
#: which the engine finds in the response and answers with an error naming the value. The
#: random part keeps stored text from passing for it.
STORED_MARK = f"quiver-stored-{secrets.token_hex(8)}:"


class IdentifierError(ConfigError, ValueError):
    """An identifier or table name that no quoting can express (empty, a NUL character).

    Also a ValueError, so a config validator may let it through to pydantic."""


@dataclass(frozen=True)
class Dialect:
    name: Literal["postgresql", "mysql", "sqlite", "duckdb"]
    quote_char: str
    placeholder: Callable[[int], str]
    json_object_fn: str
    #: ``fn(obj ORDER BY ...)`` aggregate turning rows' JSON into an array.
    json_agg_fn: str
    #: Whether the array aggregate takes ``ORDER BY`` (and ``LIMIT``) inside its parentheses.
    json_agg_orders: bool
    json_agg_limits: bool
    #: Whether a derived table in a scalar subquery may reference the outer query's columns.
    derived_tables_see_outer: bool
    #: What the array aggregate's NULL over no rows becomes; empty when it already gives ``[]``.
    empty_json_array: str
    #: Wraps a scalar subquery's JSON so a parent JSON object embeds it as JSON, not as a string.
    embed_json: str
    #: Output expression per GraphQL scalar: how a column becomes a JSON value.
    scalar_output: Mapping[ScalarName, str]
    supports_nulls_order: bool
    least_fn: str
    greatest_fn: str
    #: Concatenate a text literal and an integer expression: ``'o' || n``.
    concat_text_int: str
    limit_all: str
    #: Case-insensitive LIKE: ``{col} ILIKE {pattern}``.
    ilike: str
    #: Case-sensitive LIKE.
    like: str
    #: How ``in`` binds its list: one array parameter, or one placeholder per element.
    in_list: Literal["array", "expand"]
    #: An integer parameter used in arithmetic (PostgreSQL needs its type spelled out).
    int_param: str = "{}"
    #: A LIMIT or OFFSET given as a parameter. PostgreSQL plans a statement whose LIMIT is a
    #: plain parameter anew at every run (its generic plan, made for an unknown limit, looks
    #: dearer than a plan made for the value given); a value read by a subquery is unknown to
    #: both, so the statement keeps one generic plan and skips planning.
    limit_param: str = "{}"
    #: Read a column as text (pattern operators on UUID and ID columns).
    text_cast: str = "CAST({} AS TEXT)"
    #: Cast an aggregate to a double-precision float.
    float_cast: str = "CAST({} AS DOUBLE)"
    #: The driver formats the statement with ``%``: literal percent signs are doubled.
    escape_percent: bool = False
    false_literal: str = "FALSE"
    true_literal: str = "TRUE"
    like_escape_char: str = "!"
    extra_session_sql: tuple[str, ...] = field(default=())
    #: Identifiers hold only Basic Multilingual Plane characters (no emoji) and do not end in a
    #: space: MariaDB/MySQL refuse others, so quoting refuses them first, with the fix.
    narrow_identifiers: bool = False
    #: Output per database type, before ``scalar_output``: (pattern matched against the whole
    #: lower-cased type name, template). ``<1>`` in a template takes the pattern's first group
    #: (digits only, e.g. a width).
    type_output: tuple[tuple[str, str], ...] = ()
    #: Database types that compare as text as they are; a String column of another type
    #: (interval, inet, money) is compared in its output text, through ``text_of``. Empty
    #: when every column compares as it is (SQLite).
    text_types: str = ""
    text_of: str = "{}"
    #: An array column as a JSON list whose elements are ``{1}`` over the element ``__e.x``;
    #: empty when the dialect has no arrays.
    list_output: str = ""
    #: An array column whose elements are served as they are, as a list of one dimension
    #: (``{}``): a value of several dimensions has its elements in order. Empty: as it is.
    flat_list: str = ""
    #: Array operators: contains, is contained by, overlaps (``{0}`` column, ``{1}`` array).
    array_contains: str = ""
    array_contained_by: str = ""
    array_overlaps: str = ""
    #: Longest LIKE pattern the database accepts, in bytes (None: no limit of its own).
    max_like_pattern_bytes: int | None = None
    #: Substring tests that need no pattern (``{0}`` column, ``{1}`` the text), used instead
    #: of LIKE where LIKE limits the pattern's length.
    contains_text: str = ""
    starts_with_text: str = ""
    ends_with_text: str = ""
    #: Flight: how a String column (not an enum) of a type the Arrow reader would hand out
    #: in the database's binary form (PostgreSQL's bit, inet, money, geometric types; MariaDB's
    #: BIT and spatial types) is read as its text, as ``type_output``; ``arrow_text_list``
    #: reads an array of such a type as an array of text, where the type's template is the
    #: plain ``text_cast``; ``arrow_text_elements`` reads an array of a type whose template is
    #: another (PostgreSQL's inet) element by element, ``<1>`` standing for the template
    #: applied to one element ``__e.x``.
    arrow_text_output: tuple[tuple[str, str], ...] = ()
    arrow_text_list: str = "{}"
    arrow_text_elements: str = ""
    #: Flight: how a composite column (or an array of composites served as one JSON value) is
    #: read: its JSON text, as GraphQL serves it; ``arrow_composite_list`` reads an array of
    #: composites as an array of their JSON texts. Empty when the dialect has no composites.
    arrow_composite_output: str = ""
    arrow_composite_list: str = ""
    #: Flight DoPut: how such a text value (a ``{}`` placeholder) becomes a value of its column
    #: again, as ``type_output`` (where the database does not convert text on its own).
    arrow_text_input: tuple[tuple[str, str], ...] = ()
    #: The most key/value pairs one call of ``json_object_fn`` takes (PostgreSQL's functions
    #: take 100 arguments, SQLite's 127), and how an object ``{0}`` gets the next ones
    #: ``{1}`` (as ``json_object_fn`` takes them; keys as JSON paths ``'$.key'`` with
    #: ``json_object_more_paths``): a wider object is built in parts. None: no limit.
    json_object_max_pairs: int | None = None
    json_object_more: str = ""
    json_object_more_paths: bool = False
    #: Columns of single-precision floats (a pattern of ``db_type``), which a filter value
    #: is compared with as one: a Float beyond their range (±3.4028235e38) is refused, as
    #: PostgreSQL fails to convert it and MariaDB makes it the largest single.
    single_floats: str = ""
    #: The decimals the database can compare: at most this many digits before the decimal
    #: point and after it (None: any decimal compares).
    decimal_digits: tuple[int, int] | None = None
    #: Decimal columns whose filter values the database reads exactly only within a width
    #: (MariaDB reads a longer literal as its nearest 81-digit decimal, or as zero, with only a
    #: warning): (pattern of ``db_type``, "precision,scale", or "" for the pattern's two
    #: groups). A value beyond the column's width is sent as one within it that compares
    #: alike with every value the column can hold (see :meth:`decimal_width`).
    decimal_widths: tuple[tuple[str, str], ...] = ()
    #: The deepest nesting of arrays and objects a JSON value may have (None: no limit of
    #: the database's own; MariaDB's JSON_VALID refuses more than 31 levels).
    json_max_depth: int | None = None
    #: The digits after the seconds' point a ``datetime``, ``timestamp`` or ``time`` column
    #: declared without a precision keeps (MariaDB: 0; None: the declared type does not say).
    seconds_digits_default: int | None = None
    #: Dates and timestamps may be infinite; the driver sends the largest and smallest
    #: Python values as infinity and -infinity (asyncpg).
    infinite_dates: bool = False
    #: A to-one relation whose target is found by its primary key joins the rows it belongs
    #: to (``LEFT JOIN``) instead of running a subquery per row: cheaper where the database
    #: plans a subquery per outer row (PostgreSQL runs each as a SubPlan).
    joins_to_one: bool = False
    #: A list's objects are rows of a derived table named by their keys, turned into JSON by
    #: the array aggregate (cheaper than the object function on PostgreSQL).
    json_records: bool = False
    #: The longest identifier, in bytes (a longer one is cut, or refused).
    max_identifier_bytes: int = 64
    #: Both sides of a comparison of a scalar go through this (SQLite keeps timestamps as
    #: text in several forms: ``2024-01-02T03:04:05.678`` equals ``2024-01-02 03:04:05.678``).
    scalar_compare: Mapping[ScalarName, str] = field(default_factory=dict)
    #: Types of String columns that have min and max of their own; others (PostgreSQL's
    #: bit, macaddr, ranges) take the min and max of their text. Empty: every type has them.
    min_max_types: str = ""
    #: ``min``/``max`` of a String column compared as its type (``type_input``) that MIN and
    #: MAX do not take (PostgreSQL ranges): the first value in the type's order.
    ordered_min: str = ""
    ordered_max: str = ""
    #: ``min``/``max`` of a column compared through ``scalar_compare`` (or of an enum by its
    #: ``enum_position``): the value ``{0}`` whose compared form ``{1}`` is least or
    #: greatest, as it is stored.
    keyed_min: str = ""
    keyed_max: str = ""
    #: The average of a floating-point column, when AVG cannot take every value (PostgreSQL's
    #: AVG of double precision also sums squares, which overflow past 1.3e154).
    float_avg: str = ""
    #: The exact sum of an integer column ``{0}`` as the text of its digits, where SUM fails
    #: past 64 bits (SQLite's "integer overflow"); ``{1}`` is the rendered ``loose_sum``, used
    #: when the column holds a value that is not an integer. Empty: SUM is exact.
    int_sum: str = ""
    #: The sum beside ``int_sum``: an aggregate that never fails (every aggregate of a
    #: statement is computed, whichever branch of a CASE is taken).
    loose_sum: str = "SUM({})"
    #: Input per database type, as ``type_output``: how a filter value is cast to compare
    #: with a column of that type (MariaDB's single-precision FLOAT). A String column of a
    #: type listed here (PostgreSQL's money, interval, inet, ranges; MariaDB's BIT, INET6)
    #: compares, sorts and pages in the type's own order, its values cast to the type; a
    #: String column of another type that is not text compares in its text (``text_of``).
    type_input: tuple[tuple[str, str], ...] = ()
    #: The same for a list of values bound as one array parameter (``in_list="array"``).
    type_list_input: tuple[tuple[str, str], ...] = ()
    #: An array column of a type as an order key, where its cursor's value cannot be cast back
    #: to the column's own type (PostgreSQL casts text to ``bit`` as one bit): the column and
    #: the value (``type_list_input``) are both cast to a type of the same order.
    list_key: tuple[tuple[str, str], ...] = ()
    #: Writes: what locks the rows a SELECT reads until the transaction ends; how an INSERT
    #: gives no column; how a JSON value is written (``{}``: the text, ``{1}``: column type).
    lock_rows: str = ""
    insert_no_columns: str = " DEFAULT VALUES"
    json_input: str = "{}"
    #: Whether a JSON column holds the JSON value null (true), as opposed to SQL NULL or any
    #: other value (false or NULL); empty where the dialect keeps no change log. The change
    #: log names such fields in its images (see :mod:`quiver.sql.changelog`).
    json_null_test: str = ""
    #: An enum column as its 1-based position among the enum's values, where ORDER BY sorts
    #: enums by position but ``=``/``<`` compare them as text (MariaDB); empty: the enum
    #: compares as it sorts (PostgreSQL), or is text (SQLite).
    enum_position: str = ""
    #: How an order key of a database type is written into a cursor, where the form it is
    #: served in loses precision (MariaDB serves a FLOAT with 6 digits): (pattern, template).
    key_output: tuple[tuple[str, str], ...] = ()
    #: A text column of a character set other than UTF-8 (a pattern of ``db_type``, as
    #: reflection names it: ``varchar(10) character set latin1``) and how its value becomes
    #: UTF-8 text in the JSON the database builds (MariaDB's JSON_ARRAYAGG hands out the bytes
    #: of its arguments' character set, unconverted, and JSON_OBJECT refuses ucs2 and utf16).
    #: Output only: filters and sorting read the column as it is, in its own collation.
    charset_types: str = ""
    charset_output: str = "{}"
    #: Where any column may hold a value of any storage class (SQLite): per scalar, how a
    #: stored value serves as JSON of that scalar whatever its class, ``{0}`` the value and
    #: ``<v>`` the scalar's own output of it (output only, as ``charset_output``).
    loose_output: Mapping[ScalarName, str] = field(default_factory=dict)
    #: Where a column may hold text of any form (SQLite): per scalar, how a stored value is
    #: served when it is text of the scalar's form, and refused when not (``{0}`` the value,
    #: ``<v>`` its output as above); output only, and not where values are read as they are
    #: (``value_output(checked=False)``).
    form_output: Mapping[ScalarName, str] = field(default_factory=dict)
    #: Stored values a column's type allows but its field's scalar cannot carry (MariaDB's
    #: TIME beyond one day, zero dates, the ENUM error value): (scalar, or "enum" for an enum
    #: field; pattern of ``db_type``; kind; the condition, over the value ``{0}``, that it is
    #: such a value). Such a value is served as text holding :data:`STORED_MARK`, the kind, the
    #: field's type and the value (``stored_text``), which the engine refuses (output only).
    stored_checks: tuple[tuple[str, str, str, str], ...] = ()
    stored_text: str = "{}"

    def decimal_width(self, db_type: str | None) -> tuple[int, int] | None:
        """The (precision, scale) of a decimal column of ``db_type`` whose filter values must
        be sent within it (``decimal_widths``), or None."""
        return _decimal_width(self.decimal_widths, (db_type or "").lower())

    def column_output(self, db_type: str | None, scalar: ScalarName) -> str | None:
        """The output template of a column of database type ``db_type`` and GraphQL
        ``scalar``, or None when the column's own JSON is already right."""
        if db_type:
            found = _type_output(self.type_output, db_type.lower())
            if found is not None:
                return found
        return self.scalar_output.get(scalar)

    def value_output(
        self, db_type: str | None, scalar: ScalarName, *, checked: bool = True
    ) -> str | None:
        """The template that serves a value of the column in the database's JSON: as
        :meth:`column_output`, and text of another character set as UTF-8; with ``checked``,
        text not of the scalar's form is refused (``form_output``)."""
        found = self.column_output(db_type, scalar)
        if (
            found is None
            and db_type
            and self.charset_types
            and re.fullmatch(self.charset_types, db_type.lower()) is not None
        ):
            return self.charset_output
        loose = self.loose_output.get(scalar)
        if loose is not None:
            found = loose.replace("<v>", (found or "{0}").replace("{}", "{0}"))
        form = self.form_output.get(scalar) if checked else None
        if form is not None:
            found = form.replace("<v>", (found or "{0}").replace("{}", "{0}"))
        return found

    def stored_output(self, db_type: str | None, scalar: ScalarName, shown: str) -> str | None:
        """Where a column of ``db_type`` served as ``scalar`` ("enum" for an enum field) may
        hold a value the scalar cannot carry (``stored_checks``): the template that serves the
        value ``{0}`` as ``<v>`` (its own output) or, when it is such a value, as the marked
        text naming ``shown`` (the field's GraphQL type). None: every value is served."""
        if not db_type or not self.stored_checks:
            return None
        if re.fullmatch(r"[_A-Za-z][_A-Za-z0-9]*", shown) is None:
            raise ValueError(f"refusing to inline {shown!r} as a literal")
        lowered = db_type.lower()
        for checked, pattern, kind, condition in self.stored_checks:
            if checked == scalar and re.fullmatch(pattern, lowered) is not None:
                marked = (
                    self.stored_text.replace("<kind>", f"'{kind}'")
                    .replace("<type>", f"'{shown}'")
                    .replace("{}", "{0}")
                )
                return f"CASE WHEN {condition} THEN {marked} ELSE <v> END"
        return None

    def has_min_max(self, db_type: str | None, scalar: ScalarName) -> bool:
        """Whether MIN and MAX take a column of ``db_type`` served as ``scalar`` as it is."""
        if scalar != "String" or not self.min_max_types or not db_type:
            return True
        return re.fullmatch(self.min_max_types, db_type.lower()) is not None

    def key_output_of(self, db_type: str | None) -> str | None:
        """How a cursor holds an order key of type ``db_type`` (None: as it is served)."""
        return _type_output(self.key_output, db_type.lower()) if db_type else None

    def arrow_text_of(self, db_type: str | None, *, is_list: bool = False) -> str | None:
        """How a Flight export reads a String column of type ``db_type`` (None: as it is);
        ``is_list``: an array of that type (``db_type`` naming the array or its elements)."""
        if not db_type:
            return None
        element = re.sub(r"(\s*\[\d*\])+$", "", db_type.lower()) if is_list else db_type.lower()
        tpl = _type_output(self.arrow_text_output, element)
        if tpl is None or not is_list:
            return tpl
        if tpl.replace(" ", "").lower() == self.text_cast.replace(" ", "").lower():
            return self.arrow_text_list
        if not self.arrow_text_elements:
            return self.arrow_text_list
        return self.arrow_text_elements.replace("<1>", tpl.replace("{}", "__e.x"))

    def arrow_text_to(self, db_type: str | None) -> str | None:
        """How DoPut turns a text value into a column of type ``db_type`` (None: as it is)."""
        return _type_output(self.arrow_text_input, db_type.lower()) if db_type else None

    def column_input(self, db_type: str | None) -> str | None:
        """How a filter value compares with a column of type ``db_type`` (None: as it is)."""
        return _type_output(self.type_input, db_type.lower()) if db_type else None

    def list_key_of(self, db_type: str | None) -> str | None:
        """How an array column of type ``db_type`` is an order key (None: as it is)."""
        return _type_output(self.list_key, db_type.lower()) if db_type else None

    def column_list_input(self, db_type: str | None) -> str | None:
        """How an array of filter values compares with a column of type ``db_type``."""
        return _type_output(self.type_list_input, db_type.lower()) if db_type else None

    def compares_as_text(self, db_type: str | None) -> bool:
        """Whether a String column of type ``db_type`` compares with text as it is."""
        if not self.text_types or not db_type:
            return True
        return re.fullmatch(self.text_types, db_type.lower()) is not None

    def quote_ident(self, name: str) -> str:
        """One identifier, quoted: the quote character inside it is doubled, so any name (dots,
        spaces, quotes, unicode) stays one identifier. Empty names and NUL are refused."""
        check_identifier(name)
        if self.narrow_identifiers and not name.isascii():
            _check_narrow(name)
        elif self.narrow_identifiers and name.endswith(" "):
            raise _narrow_error(name, "ends with a space")
        q = self.quote_char
        return q + name.replace(q, q + q) + q

    def quote_table(self, name: str) -> str:
        """A table name, optionally qualified (``schema.table``), quoted part by part."""
        return ".".join(self.quote_ident(part) for part in split_table_name(name))


@lru_cache(maxsize=1024)
def _decimal_width(table: tuple[tuple[str, str], ...], db_type: str) -> tuple[int, int] | None:
    for pattern, width in table:
        m = re.fullmatch(pattern, db_type)
        if m is not None:
            precision, scale = (width or f"{m.group(1)},{m.group(2)}").split(",")
            return int(precision), int(scale)
    return None


def _type_output(table: tuple[tuple[str, str], ...], db_type: str) -> str | None:
    for pattern, tpl in table:
        m = re.fullmatch(pattern, db_type)
        if m is not None:
            return tpl.replace("<1>", m.group(1)) if m.groups() else tpl
    return None


def check_identifier(name: str) -> str:
    """``name`` when quoting can express it in every dialect; else an IdentifierError."""
    if not name or "\x00" in name:
        raise _bad_identifier(name)
    return name


def _check_narrow(name: str) -> None:
    wide = next((c for c in name if ord(c) > 0xFFFF), None)
    if wide is not None:
        raise _narrow_error(name, f"holds {wide!r}, outside the Basic Multilingual Plane")
    if name.endswith(" "):
        raise _narrow_error(name, "ends with a space")


def _narrow_error(name: str, problem: str) -> IdentifierError:
    return IdentifierError(
        [
            ErrorDetail(
                f"the identifier {name!r} {problem}, which MariaDB/MySQL do not allow",
                "identifier",
                "rename the column or table, e.g. with the rename processor",
            )
        ]
    )


def split_table_name(name: str) -> tuple[str, ...]:
    """The parts of a possibly qualified table name: ``sales.orders`` -> ``("sales", "orders")``.

    A dot always separates parts; an empty part (``a..b``, ``.a``, an empty name) is refused.
    """
    parts = tuple(name.split("."))
    if any(not part or "\x00" in part for part in parts):
        raise _bad_identifier(name, table=True)
    return parts


def _bad_identifier(name: str, *, table: bool = False) -> IdentifierError:
    what = "table name" if table else "identifier"
    if "\x00" in name:
        problem = f"the {what} {name!r} contains a NUL character"
    elif not name:
        problem = f"the {what} is empty"
    else:
        problem = f"the {what} {name!r} has an empty part"
    fix = (
        "write `table` or `schema.table`, each part non-empty"
        if table
        else "name a column or table with at least one character and no NUL"
    )
    return IdentifierError([ErrorDetail(problem, what, fix)])


def _pg_placeholder(n: int) -> str:
    return f"${n}"


def _qmark(n: int) -> str:
    del n
    return "?"


def _format(n: int) -> str:
    del n
    return "%s"


#: PostgreSQL's built-in types served as String that have an order of their own (a btree
#: operator class) which their text does not follow ("$1,000.00" < "$9.50", "10 days" <
#: "9 days", "10.0.0.2" < "9.0.0.1", "[10,20)" < "[9,10)"). The group is the type's name.
_PG_ORDERED_TYPES = (
    r"(money|interval|inet|cidr|macaddr|macaddr8|oid|xid8|pg_lsn"
    r"|(?:int4|int8|num|ts|tstz|date)(?:multi)?range)"
)

#: A PostgreSQL date or timestamp ``{0}`` before the year 1 or after 9999, not infinite.
_PG_YEAR_OUTSIDE = "(({0} < '0001-01-01' OR {0} >= '10000-01-01') AND isfinite({0}))"

POSTGRESQL = Dialect(
    lock_rows=" FOR UPDATE",
    json_input="CAST(CAST({0} AS TEXT) AS {1})",
    name="postgresql",
    quote_char='"',
    placeholder=_pg_placeholder,
    json_object_fn="json_build_object",
    # json has no concatenation: the second object's members follow the first's in its text.
    json_object_max_pairs=50,
    json_object_more=(
        "CAST(left(CAST({0} AS text), -1) || ',' || substr(CAST(json_build_object({1}) AS text),"
        " 2) AS json)"
    ),
    json_agg_fn="json_agg",
    json_agg_orders=True,
    json_agg_limits=False,
    derived_tables_see_outer=True,
    empty_json_array="'[]'::json",
    embed_json="{}",
    scalar_output={
        "BigInt": "({})::text",
        "Decimal": "({})::text",
        "ID": "({})::text",
        "UUID": "({})::text",
        "DateTime": "to_json({})",
        "Date": "to_json({})",
        "Time": "to_json({})",
        # encode() breaks base64 lines every 76 characters.
        "Base64": "translate(encode({}, 'base64'), chr(10), '')",
    },
    # "char" and name hold only part of a text (one byte, 63 bytes): filter values compare
    # with their text, so a longer value matches nothing instead of failing or being cut.
    text_types="text|varchar|bpchar|citext",
    # ADBC decodes text, enums, json and uuid; any other type of a String field (bit, inet,
    # cidr, macaddr, money, interval, ranges, geometric types) comes in its binary form.
    arrow_text_output=(
        # inet's cast to text writes the netmask of a host address (/32); its output does not.
        ("inet", "(json_build_array({})->>0)"),
        (
            r"(?!(?:text|varchar|bpchar|name|citext|char|xml|json|jsonb|uuid)$).*",
            "CAST({} AS text)",
        ),
    ),
    arrow_text_list="CAST({} AS text[])",
    arrow_text_elements=(
        "CASE WHEN {} IS NULL THEN NULL ELSE ARRAY(SELECT <1>"
        " FROM unnest({}) WITH ORDINALITY AS __e(x, n) ORDER BY __e.n) END"
    ),
    arrow_composite_output="CAST(to_json({}) AS text)",
    arrow_composite_list=(
        # unnest() in FROM would spread each composite over its attributes' columns.
        "CASE WHEN {} IS NULL THEN NULL ELSE ARRAY(SELECT CAST(to_json(({})[i]) AS text)"
        " FROM generate_subscripts({}, 1) AS i ORDER BY i) END"
    ),
    min_max_types="text|varchar|bpchar|name|citext|char|interval|money|inet|cidr|oid|pg_lsn",
    # String columns of these types compare in their own order; the value, in the text the
    # column is served as (or any other form the type reads: "9.50" for money), is cast to it.
    type_input=((_PG_ORDERED_TYPES, "CAST(CAST({} AS text) AS <1>)"),),
    type_list_input=(
        (_PG_ORDERED_TYPES, "CAST(CAST({} AS text[]) AS <1>[])"),
        ("bit|varbit", "CAST(CAST({} AS text[]) AS varbit[])"),
    ),
    list_key=(("bit", "CAST({} AS varbit[])"),),
    ordered_min="(array_agg({0} ORDER BY {0}) FILTER (WHERE {0} IS NOT NULL))[1]",
    ordered_max="(array_agg({0} ORDER BY {0} DESC) FILTER (WHERE {0} IS NOT NULL))[1]",
    text_of="(json_build_array({})->>0)",
    list_output=(
        "CASE WHEN {0} IS NULL THEN NULL ELSE COALESCE((SELECT json_agg({1} ORDER BY __e.n)"
        " FROM unnest({0}) WITH ORDINALITY AS __e(x, n)), '[]'::json) END"
    ),
    # PostgreSQL does not enforce an array column's dimensions: a value of several is served
    # as the one-dimension list its GraphQL type declares, its elements in order.
    # unnest() in the select list, which keeps a composite element whole (in FROM it would
    # spread it over its attributes' columns); a ProjectSet yields the elements in order.
    flat_list="CASE WHEN array_ndims({0}) > 1 THEN ARRAY(SELECT unnest({0})) ELSE {0} END",
    # time and timetz take 24:00:00 (the end of a day), which is no time of day of the Time
    # scalar (00:00:00 to 23:59:59.999999, as Python, JavaScript and RFC 3339 read one).
    # Dates and timestamps reach 4713 BC and years past 9999, which no ISO 8601 date of the
    # scalars holds (PostgreSQL writes them '4713-01-01 BC', '10000-01-01'); the infinities
    # are values of the scalars. Compared in the session's zone, as to_json writes the value.
    stored_checks=(
        ("Time", r"timetz|time", "endofday", "(CAST({0} AS time) = TIME '24:00:00')"),
        ("Date", r"date", "year", _PG_YEAR_OUTSIDE),
        ("DateTime", r"timestamptz|timestamp", "year", _PG_YEAR_OUTSIDE),
    ),
    stored_text=f"to_json('{STORED_MARK}' || <kind> || ':' || <type> || ':' || CAST({{}} AS text))",
    array_contains="{0} @> {1}",
    array_contained_by="{0} <@ {1}",
    array_overlaps="{0} && {1}",
    decimal_digits=(131072, 16383),
    single_floats=r"float4",
    infinite_dates=True,
    joins_to_one=True,
    json_records=True,
    max_identifier_bytes=63,
    float_avg="(SUM({0}) / NULLIF(COUNT({0}), 0))",
    supports_nulls_order=True,
    least_fn="LEAST",
    greatest_fn="GREATEST",
    concat_text_int="({} || ({})::text)",
    limit_all="ALL",
    ilike="{} ILIKE {} ESCAPE '!'",
    like="{} LIKE {} ESCAPE '!'",
    in_list="array",
    int_param="({}::bigint)",
    limit_param="(SELECT {}::bigint)",
    float_cast="CAST({} AS double precision)",
    json_null_test="(CAST({} AS jsonb) = CAST('null' AS jsonb))",
)

MYSQL = Dialect(
    json_max_depth=31,
    single_floats=r"float\b.*",
    decimal_widths=(
        (r"(?:decimal|numeric|dec|fixed)\((\d+),(\d+)\).*", ""),
        (r"bigint\b.*\bunsigned\b.*", "20,0"),
    ),
    seconds_digits_default=0,
    lock_rows=" FOR UPDATE",
    insert_no_columns=" () VALUES ()",
    # JSON_TYPE warns about text that is not JSON (a column without a json_valid check)
    json_null_test="(CASE WHEN JSON_VALID({0}) THEN JSON_TYPE({0}) = 'NULL' ELSE 0 END)",
    name="mysql",
    quote_char="`",
    placeholder=_format,
    json_object_fn="JSON_OBJECT",
    json_agg_fn="JSON_ARRAYAGG",
    json_agg_orders=True,
    json_agg_limits=True,
    derived_tables_see_outer=False,
    empty_json_array="JSON_ARRAY()",
    embed_json="{}",
    scalar_output={
        "BigInt": "CAST({} AS CHAR)",
        "Decimal": "CAST({} AS CHAR)",
        "ID": "CAST({} AS CHAR)",
        "DateTime": "DATE_FORMAT({}, '%Y-%m-%dT%H:%i:%s')",
        "Date": "DATE_FORMAT({}, '%Y-%m-%d')",
        "Time": "TIME_FORMAT({}, '%H:%i:%s')",
        "Boolean": (
            "JSON_EXTRACT(CASE WHEN {0} IS NULL THEN 'null' WHEN {0} THEN 'true' ELSE 'false' END,"
            " '$')"
        ),
        "JSON": "JSON_EXTRACT({}, '$')",
        # TO_BASE64 breaks lines every 76 characters.
        "Base64": "REPLACE(TO_BASE64({}), CHAR(10), '')",
    },
    type_output=(
        # Fractional seconds, when the column keeps them.
        (r"(datetime|timestamp)\([1-6]\)", "DATE_FORMAT({}, '%Y-%m-%dT%H:%i:%s.%f')"),
        (r"time\([1-6]\)", "TIME_FORMAT({}, '%H:%i:%s.%f')"),
        # BIT(1) is Boolean; wider BITs are strings of binary digits.
        (r"bit\(([2-9]|[1-9][0-9]+)\)", "LPAD(BIN({0}), <1>, '0')"),
        (MYSQL_SPATIAL_TYPES, "JSON_EXTRACT(ST_AsGeoJSON({}), '$')"),
        # MariaDB writes numbers padded to their display width into JSON (YEAR 0 as 0000,
        # INT(5) ZEROFILL 42 as 00042), which JSON does not allow: arithmetic drops the padding.
        (r"year\b.*", "({} + 0)"),
        (r"(tiny|small|medium)int\((?:[02-9]|[0-9]{2,})\).* zerofill", "({} + 0)"),
        (r"(int|integer|bigint|decimal|numeric|dec|fixed)\b.* zerofill", "CAST(({} + 0) AS CHAR)"),
        (r"float\b.* zerofill", "CAST({} AS FLOAT)"),
        (r"(double|real)\b.* zerofill", "({} + 0)"),
    ),
    # A SET sorts by its members' bits but compares with text as text: it is read as its text,
    # in the column's own character set and collation (CAST(... AS CHAR) would take the
    # connection's: utf8mb3_general_ci, which ignores case and cannot hold every character).
    text_types=r"(var)?char\b.*|(tiny|medium|long)?text\b.*|enum\b.*",
    text_of="CONCAT({})",
    # Wider BITs as binary digits, spatial values as WKT (the driver gives both as bytes).
    arrow_text_output=(
        (r"bit\(([2-9]|[1-9][0-9]+)\)", "LPAD(BIN({}), <1>, '0')"),
        (MYSQL_SPATIAL_TYPES, "ST_AsText({})"),
    ),
    arrow_text_input=(
        (r"bit\(([2-9]|[1-9][0-9]+)\)", "CAST(CONV({}, 2, 10) AS UNSIGNED)"),
        (MYSQL_SPATIAL_TYPES, "ST_GeomFromText({})"),
    ),
    # A FLOAT column holds single-precision values: a double compares equal to none of them.
    type_input=(
        (r"float\b.*", "CAST({} AS FLOAT)"),
        # Wider BITs and INET4/INET6 compare as numbers and addresses, not as their text.
        (r"bit\(([2-9]|[1-9][0-9]+)\)", "CAST(CONV({}, 2, 10) AS UNSIGNED)"),
        (r"(inet4|inet6)", "CAST({} AS <1>)"),
    ),
    enum_position="({} + 0)",
    # An enum has at most 65,535 values: five digits of its position, then the value.
    keyed_min="SUBSTRING(MIN(CONCAT(LPAD({1}, 5, '0'), {0})), 6)",
    keyed_max="SUBSTRING(MAX(CONCAT(LPAD({1}, 5, '0'), {0})), 6)",
    charset_types=r".* character set \w+",
    charset_output="CONVERT({} USING utf8mb4)",
    # A TIME is a duration (-838:59:59 to 838:59:59), not a time of day; dates may have a
    # zero month or day (0000-00-00) unless sql_mode has NO_ZERO_DATE and NO_ZERO_IN_DATE; an
    # ENUM holds '' (position 0) for a value not in its list written outside strict mode.
    stored_checks=(
        ("Time", r"time\b.*", "time", "({0} < 0 OR {0} >= 240000)"),
        # year 0 too: a date of year 0 is no ISO 8601 date the scalars (or Python) read
        ("Date", r"date", "date", "(YEAR({0}) = 0 OR MONTH({0}) = 0 OR DAYOFMONTH({0}) = 0)"),
        (
            "DateTime",
            r"(datetime|timestamp)\b.*",
            "date",
            "(YEAR({0}) = 0 OR MONTH({0}) = 0 OR DAYOFMONTH({0}) = 0)",
        ),
        ("enum", r"enum\b.*", "enum", "({0} = '')"),
    ),
    stored_text=f"CONCAT('{STORED_MARK}', <kind>, ':', <type>, ':', CAST({{}} AS CHAR))",
    # The double of a FLOAT is exact, and CAST(? AS FLOAT) (type_input) turns it back.
    key_output=((r"float\b.*", "CAST({} AS DOUBLE)"),),
    supports_nulls_order=False,
    least_fn="LEAST",
    greatest_fn="GREATEST",
    concat_text_int="CONCAT({}, {})",
    limit_all="18446744073709551615",
    # utf8mb4_bin compares characters exactly: case- and accent-sensitive, `_` is one character.
    ilike="LOWER({}) LIKE LOWER({}) COLLATE utf8mb4_bin ESCAPE '!'",
    like="{} LIKE {} COLLATE utf8mb4_bin ESCAPE '!'",
    text_cast="CAST({} AS CHAR)",
    in_list="expand",
    escape_percent=True,
    extra_session_sql=("SET SESSION group_concat_max_len = 4294967295",),
    narrow_identifiers=True,
)

#: A UUID's canonical text, as a GLOB pattern (either case of hex digits).
_UUID_GLOB = "-".join("[0-9a-fA-F]" * n for n in (8, 4, 4, 4, 12))

SQLITE = Dialect(
    name="sqlite",
    # json_type raises on text that is not JSON, and any column may hold any value
    json_null_test=(
        "(CASE WHEN typeof({0}) = 'text' AND json_valid({0}) THEN json_type({0}) = 'null'"
        " ELSE 0 END)"
    ),
    quote_char='"',
    placeholder=_qmark,
    json_object_fn="json_object",
    json_object_max_pairs=63,
    json_object_more="json_insert({0}, {1})",
    json_object_more_paths=True,
    json_agg_fn="json_group_array",
    json_agg_orders=False,
    json_agg_limits=False,
    derived_tables_see_outer=True,
    empty_json_array="",  # json_group_array over no rows is already []
    embed_json="json({})",
    scalar_output={
        "BigInt": "CAST({} AS TEXT)",
        "Decimal": "CAST({} AS TEXT)",
        "ID": "CAST({} AS TEXT)",
        "DateTime": "replace({}, ' ', 'T')",
        "Boolean": (
            "CASE WHEN {0} IS NULL THEN NULL WHEN {0} THEN json('true') ELSE json('false') END"
        ),
        "JSON": "json({})",
        # quiver_base64 is registered on every connection (see quiver.sql.database).
        "Base64": "quiver_base64({})",
        # SQLite's JSON writes infinities as Inf, which is not JSON, and reals with 15
        # significant digits, which need not read back as the same double (its printf is
        # not exact at 17): quiver_real writes the shortest exact text, infinities as strings.
        "Float": "CASE WHEN typeof({0}) = 'real' THEN json(quiver_real({0})) ELSE {0} END",
        # Any column may hold any value: an Int is checked to be within 32 bits (text and
        # blobs compare above every number, so they fail too). Checking that it is not a
        # fractional real as well would cost a third more per value.
        "Int": (
            "CASE WHEN {0} BETWEEN -2147483648 AND 2147483647 THEN {0}"
            " WHEN {0} IS NULL THEN NULL ELSE quiver_not_int({0}) END"
        ),
    },
    # A NUMERIC(p, s) column keeps whatever value it is given, a real where the text allows:
    # served with the column's s decimals, as PostgreSQL and MariaDB serve theirs ("1.90",
    # "10.00"). Integers keep every digit (printf would make them doubles); text is as stored.
    type_output=(
        (
            r"(?:numeric|decimal)\s*\(\s*\d+\s*,\s*([1-9][0-9]?)\s*\)",
            "CASE typeof({0}) WHEN 'real' THEN printf('%.<1>f', {0})"
            " WHEN 'integer' THEN CAST({0} AS TEXT) || '.' || printf('%0<1>d', 0)"
            " ELSE CAST({0} AS TEXT) END",
        ),
    ),
    # Any column may hold any value: a String serves a BLOB as its Base64 and a number as its
    # text; a value other scalars cannot carry (a BLOB in a REAL column, text in a Float,
    # an integer in a Date, text that is not JSON in a JSON) fails the field's query with a
    # StoredValueError naming it (quiver_stored, registered on every connection). Int fields
    # check their own (above).
    loose_output={
        "String": (
            "CASE typeof({0}) WHEN 'text' THEN <v> WHEN 'blob' THEN quiver_base64({0})"
            " ELSE CAST({0} AS TEXT) END"
        ),
        "ID": "CASE typeof({0}) WHEN 'blob' THEN quiver_base64({0}) ELSE <v> END",
        "JSON": (
            "CASE WHEN {0} IS NULL THEN NULL WHEN typeof({0}) = 'blob' OR NOT json_valid({0})"
            " THEN quiver_stored({0}, 'JSON') ELSE <v> END"
        ),
        # Floats and decimals that are not numbers are the text "NaN", "Infinity" or
        # "-Infinity", as every database serves them (and change-log images hold them).
        **{
            scalar: (
                "CASE WHEN typeof({0}) = 'blob' OR (typeof({0}) = 'text' AND {0} NOT IN"
                f" ('NaN', 'Infinity', '-Infinity')) THEN quiver_stored({{0}}, '{scalar}')"
                " ELSE <v> END"
            )
            for scalar in ("Float", "Decimal")
        },
        **{
            scalar: (
                f"CASE WHEN typeof({{0}}) IN ({classes}) THEN quiver_stored({{0}}, '{scalar}')"
                " ELSE <v> END"
            )
            for scalar, classes in (
                ("BigInt", "'real', 'text', 'blob'"),
                # Text is no truth value: 'true' and 'yes' would be served as false.
                ("Boolean", "'text', 'blob'"),
                ("Date", "'integer', 'real', 'blob'"),
                ("DateTime", "'integer', 'real', 'blob'"),
                ("Time", "'integer', 'real', 'blob'"),
                ("UUID", "'integer', 'real', 'blob'"),
            )
        },
    },
    # Text in a Date, DateTime, Time or UUID column must be of the scalar's form. The forms
    # SQLite's date functions write (and UUIDs' canonical text) are checked here; any other
    # text is read by quiver_form, which refuses what the scalar cannot carry (the date and
    # time functions with '+0 days' normalise a day or an hour out of range).
    form_output={
        scalar: (
            f"CASE WHEN typeof({{0}}) <> 'text' OR ({canonical}) THEN <v>"
            f" ELSE coalesce(quiver_form(CAST({{0}} AS BLOB), '{scalar}'), <v>) END"
        )
        for scalar, canonical in (
            ("Date", "date({0}, '+0 days') IS {0} AND {0} >= '0001'"),
            (
                "DateTime",
                "datetime(substr({0}, 1, 19), '+0 days') IS replace(substr({0}, 1, 19), 'T', ' ')"
                " AND {0} >= '0001' AND (length({0}) = 19 OR (substr({0}, 20, 1) = '.'"
                " AND length({0}) > 20 AND substr({0}, 21) NOT GLOB '*[^0-9]*'))",
            ),
            (
                "Time",
                "time(substr({0}, 1, 8), '+0 seconds') IS substr({0}, 1, 8) AND (length({0}) = 8"
                " OR (substr({0}, 9, 1) = '.' AND length({0}) > 9 AND substr({0}, 10)"
                " NOT GLOB '*[^0-9]*'))",
            ),
            ("UUID", f"{{0}} GLOB '{_UUID_GLOB}'"),
        )
    },
    max_like_pattern_bytes=50_000,
    # julianday reads every form SQLite's date functions know, to the millisecond.
    scalar_compare={"DateTime": "julianday({})"},
    # The stored text of the least (greatest) julianday: a fixed-width key before the value
    # makes MIN/MAX of the pair pick it (julianday is positive from 4714 BC).
    keyed_min="substr(MIN(printf('%020.10f', {1}) || {0}), 21)",
    keyed_max="substr(MAX(printf('%020.10f', {1}) || {0}), 21)",
    contains_text="(instr({0}, {1}) > 0)",
    starts_with_text="(substr({0}, 1, length({1})) = {1})",
    ends_with_text=("({0} IS NOT NULL AND (length({1}) = 0 OR substr({0}, -length({1})) = {1}))"),
    supports_nulls_order=True,
    least_fn="min",
    greatest_fn="max",
    concat_text_int="({} || {})",
    limit_all="-1",
    # SQLite's lower() folds ASCII only; quiver_lower is Python's str.lower, registered on
    # every connection (see quiver.sql.database).
    # Read as bytes: a TEXT value need not be UTF-8, and Python's sqlite3 refuses to hand a
    # function text it cannot decode.
    ilike="quiver_lower(CAST({} AS BLOB)) LIKE quiver_lower(CAST({} AS BLOB)) ESCAPE '!'",
    like="{} LIKE {} ESCAPE '!'",
    in_list="expand",
    float_cast="CAST({} AS REAL)",
    # SUM of integers fails past 2**63. The high and low 32 bits of each value are summed
    # apart (neither sum overflows before 2**31 rows) and joined exactly by quiver_int_sum;
    # a column holding any real, text or blob is summed by TOTAL (SUM's value then, a real,
    # which the field's output refuses as before; SUM itself would still fail on overflow).
    int_sum=(
        "CASE WHEN COUNT({0}) = COALESCE(SUM(typeof({0}) = 'integer'), 0)"
        " THEN quiver_int_sum(SUM({0} >> 32), SUM({0} & 4294967295)) ELSE {1} END"
    ),
    loose_sum="TOTAL({})",
    extra_session_sql=("PRAGMA case_sensitive_like = ON",),
)

#: DuckDB, the engine of the pipeline's batch processors (sql, filter, derive, ...): they take
#: their quoting and placeholders from here. No GraphQL schema is served from DuckDB.
DUCKDB = Dialect(
    name="duckdb",
    quote_char='"',
    placeholder=_qmark,
    json_object_fn="json_object",
    json_agg_fn="json_group_array",
    json_agg_orders=True,
    json_agg_limits=False,
    derived_tables_see_outer=True,
    empty_json_array="CAST('[]' AS JSON)",
    embed_json="{}",
    scalar_output={
        "BigInt": "CAST({} AS VARCHAR)",
        "Decimal": "CAST({} AS VARCHAR)",
        "ID": "CAST({} AS VARCHAR)",
        "UUID": "CAST({} AS VARCHAR)",
    },
    supports_nulls_order=True,
    least_fn="LEAST",
    greatest_fn="GREATEST",
    concat_text_int="({} || CAST({} AS VARCHAR))",
    limit_all="ALL",
    ilike="{} ILIKE {} ESCAPE '!'",
    like="{} LIKE {} ESCAPE '!'",
    in_list="expand",
    text_cast="CAST({} AS VARCHAR)",
)

_DIALECTS: dict[str, Dialect] = {d.name: d for d in (POSTGRESQL, MYSQL, SQLITE, DUCKDB)}


def dialect_for(name: str) -> Dialect:
    """The dialect called ``name``: postgresql, mysql, sqlite or duckdb."""
    return _DIALECTS[name]
