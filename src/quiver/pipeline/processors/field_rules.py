"""Field rules shared by the ``validate`` and ``cast`` processors.

A rule names a type and optional checks. All rules of a step compile to one DuckDB query over
the batch that yields, for each ruled column, the converted value and the first failed check
(or NULL). Only failing rows are turned into Python objects, so clean batches stay columnar.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from quiver.pipeline.component import LINE_COLUMN, ComponentConfig, RowError
from quiver.pipeline.processors.batch_sql import BatchSql, quote_ident, require_columns
from quiver.runtime.errors import ErrorDetail
from quiver.sql.connect import connect_duckdb

__all__ = ["TYPE_NAMES", "FieldRule", "RuleSet", "TypeName", "check_rules"]

TypeName = Literal["int", "long", "float", "decimal", "str", "bool", "date", "datetime", "time"]
TYPE_NAMES: tuple[str, ...] = (
    "int",
    "long",
    "float",
    "decimal",
    "str",
    "bool",
    "date",
    "datetime",
    "time",
)

_SQL_TYPES = {
    "int": "INTEGER",
    "long": "BIGINT",
    "float": "DOUBLE",
    "str": "VARCHAR",
    "bool": "BOOLEAN",
    "date": "DATE",
    "datetime": "TIMESTAMP",
    "time": "TIME",
}
_INTEGER = "[+-]?[0-9]+"


class FieldRule(ComponentConfig):
    """The type of one column and the checks its values must pass."""

    type: TypeName = Field(default="str", description="Expected type; values are converted to it.")
    required: bool = Field(default=False, description="Reject rows where the value is empty.")
    pattern: str | None = Field(
        default=None, description="Regular expression (RE2) the whole value must match."
    )
    min: float | int | str | None = Field(
        default=None, description="Smallest allowed value (numbers, dates, times)."
    )
    max: float | int | str | None = Field(default=None, description="Largest allowed value.")
    min_length: int | None = Field(default=None, ge=0, description="Fewest characters.")
    max_length: int | None = Field(default=None, ge=0, description="Most characters.")
    enum: list[str | int | float | bool] | None = Field(
        default=None, description="The allowed values."
    )
    format: str | None = Field(
        default=None,
        description="strptime format of date/datetime/time text, e.g. `%d/%m/%Y`; ISO 8601 "
        "when unset.",
    )
    precision: int = Field(default=38, ge=1, le=38, description="Decimal digits in total.")
    scale: int = Field(default=9, ge=0, le=38, description="Decimal digits after the point.")

    @model_validator(mode="after")
    def _consistent(self) -> FieldRule:
        if self.scale > self.precision:
            raise ValueError("scale must not exceed precision")
        if self.format is not None and self.type not in ("date", "datetime", "time"):
            raise ValueError("`format` applies to date, datetime and time fields only")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"invalid pattern {self.pattern!r}: {exc}") from exc
        if (
            self.min_length is not None
            and self.max_length is not None
            and self.min_length > self.max_length
        ):
            raise ValueError(
                f"min_length {self.min_length} is more than max_length {self.max_length}: "
                "no value could pass, so every row would be rejected"
            )
        low, high = _comparable(self.min, self.type), _comparable(self.max, self.type)
        if low is not None and high is not None and type(low) is type(high) and low > high:
            raise ValueError(
                f"min {self.min!r} is more than max {self.max!r}: no value could pass, so every "
                "row would be rejected"
            )
        return self

    def sql_type(self) -> str:
        if self.type == "decimal":
            return f"DECIMAL({self.precision},{self.scale})"
        return _SQL_TYPES[self.type]


def _comparable(bound: float | int | str | None, kind: str) -> Any:
    """A ``min`` / ``max`` bound as a value to order by (a number, or an ISO 8601 date, time or
    date-time for those types), None when it is not one (``format`` text is compared later)."""
    if isinstance(bound, bool) or bound is None:
        return None
    if isinstance(bound, int | float):
        return float(bound)
    parse: Any = {
        "date": dt.date.fromisoformat,
        "datetime": dt.datetime.fromisoformat,
        "time": dt.time.fromisoformat,
    }.get(kind)
    if parse is None:
        return None
    try:
        value = parse(bound)
    except ValueError:
        return None
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return None  # (a zoned and a plain date-time do not compare)
    return value


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Params:
    """Named query parameters (``$p0``, ``$p1``...): user values never enter the SQL text."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


@dataclass
class _Compiled:
    query: str
    params: dict[str, Any]
    columns: list[str]


class RuleSet:
    """Rules by column, compiled once per input schema."""

    def __init__(self, rules: dict[str, FieldRule], step: str, *, checks: bool = True) -> None:
        self.rules = rules
        self.step = step
        self.checks = checks
        self.sql = BatchSql(step)
        self._cache: dict[pa.Schema, _Compiled] = {}

    def _compile(self, schema: pa.Schema) -> _Compiled:
        require_columns(schema, list(self.rules))
        selects: list[str] = []
        p = _Params()
        for i, (column, rule) in enumerate(self.rules.items()):
            q = quote_ident(column)
            arrow_type = schema.field(column).type
            is_text = pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            text = q if is_text else f"CAST({q} AS VARCHAR)"
            blank = f"({q} IS NULL OR trim({q}) = '')" if is_text else f"({q} IS NULL)"
            conv = self._typed(q, arrow_type, rule) or self._convert(text, rule, p)
            selects.append(f"CASE WHEN {blank} THEN NULL ELSE {conv} END AS __v{i}")
            missing_reason = p("required value is missing") if rule.required else "NULL"
            cases = [f"WHEN {blank} THEN {missing_reason}"]
            expected = rule.type if rule.type != "decimal" else rule.sql_type().lower()
            if rule.format:
                expected += f" in the format {rule.format}"
            cases.append(f"WHEN ({conv}) IS NULL THEN {p('expected ' + expected)}")
            if self.checks:
                cases.extend(self._checks(rule, conv, text, p))
            selects.append(f"CASE {' '.join(cases)} END AS __r{i}")
        query = f"SELECT {', '.join(selects)} FROM input"
        return _Compiled(query, p.values, list(self.rules))

    @staticmethod
    def _typed(q: str, arrow_type: pa.DataType, rule: FieldRule) -> str | None:
        """A conversion without going through text, for columns already of a fitting type."""
        integer = pa.types.is_integer(arrow_type)
        if rule.type in ("int", "long") and integer:
            return f"TRY_CAST({q} AS {rule.sql_type()})"
        if rule.type in ("float", "decimal") and (integer or pa.types.is_floating(arrow_type)):
            return f"TRY_CAST({q} AS {rule.sql_type()})"
        if rule.type in ("float", "decimal") and pa.types.is_decimal(arrow_type):
            return f"TRY_CAST({q} AS {rule.sql_type()})"
        if rule.type == "bool" and pa.types.is_boolean(arrow_type):
            return q
        if rule.type == "date" and pa.types.is_date(arrow_type):
            return q
        if rule.type == "datetime" and pa.types.is_timestamp(arrow_type):
            return q
        if rule.type == "time" and pa.types.is_time(arrow_type):
            return q
        return None

    @staticmethod
    def _convert(text: str, rule: FieldRule, p: _Params) -> str:
        if rule.type == "str":
            return text
        if rule.type in ("int", "long"):
            return (
                f"CASE WHEN regexp_full_match(trim({text}), '{_INTEGER}') "
                f"THEN TRY_CAST(trim({text}) AS {rule.sql_type()}) END"
            )
        if rule.format and rule.type in ("date", "datetime", "time"):
            return f"TRY_CAST(try_strptime(trim({text}), {p(rule.format)}) AS {rule.sql_type()})"
        return f"TRY_CAST(trim({text}) AS {rule.sql_type()})"

    @staticmethod
    def _checks(rule: FieldRule, conv: str, text: str, p: _Params) -> list[str]:
        cases: list[str] = []
        if rule.pattern is not None:
            reason = p(f"does not match the pattern {rule.pattern}")
            cases.append(f"WHEN NOT regexp_full_match({text}, {p(rule.pattern)}) THEN {reason}")
        if rule.min_length is not None:
            reason = p(f"shorter than {rule.min_length} characters")
            cases.append(f"WHEN length({text}) < {p(rule.min_length)} THEN {reason}")
        if rule.max_length is not None:
            reason = p(f"longer than {rule.max_length} characters")
            cases.append(f"WHEN length({text}) > {p(rule.max_length)} THEN {reason}")
        if rule.min is not None:
            bound = f"CAST({p(str(rule.min))} AS {rule.sql_type()})"
            cases.append(f"WHEN ({conv}) < {bound} THEN {p(f'below the minimum {rule.min}')}")
        if rule.max is not None:
            bound = f"CAST({p(str(rule.max))} AS {rule.sql_type()})"
            cases.append(f"WHEN ({conv}) > {bound} THEN {p(f'above the maximum {rule.max}')}")
        if rule.enum is not None:
            allowed = [_literal(v) for v in rule.enum]
            member = f"list_contains(CAST({p(allowed)} AS VARCHAR[]), CAST(({conv}) AS VARCHAR))"
            cases.append(f"WHEN NOT {member} THEN {p('not one of ' + ', '.join(allowed))}")
        return cases

    def apply(
        self, batch: pa.RecordBatch, *, convert: bool = True
    ) -> tuple[pa.RecordBatch, list[RowError]]:
        """Valid rows (ruled columns converted) and one RowError per invalid row."""
        compiled = self._cache.get(batch.schema)
        if compiled is None:
            compiled = self._cache[batch.schema] = self._compile(batch.schema)
        result = self.sql.run(batch, compiled.query, compiled.params)
        n = len(compiled.columns)
        reasons = [result.column(f"__r{i}") for i in range(n)]
        ok = pc.is_null(reasons[0])
        for r in reasons[1:]:
            ok = pc.and_(ok, pc.is_null(r))
        errors: list[RowError] = []
        bad = pc.indices_nonzero(pc.invert(ok)).to_pylist()
        if bad:
            lines = (
                batch.column(LINE_COLUMN).take(bad).to_pylist()
                if LINE_COLUMN in batch.schema.names
                else [None] * len(bad)
            )
            taken = batch.take(bad)
            rows = taken.to_pylist()
            why = [r.take(bad).to_pylist() for r in reasons]
            for k, row in enumerate(rows):
                problems = [(compiled.columns[i], why[i][k]) for i in range(n) if why[i][k]]
                column, reason = problems[0]
                text = reason if len(problems) == 1 else "; ".join(f"{c}: {r}" for c, r in problems)
                errors.append(RowError(lines[k], text, column, row.get(column), row))
        arrays = []
        for name in batch.schema.names:
            if convert and name in self.rules:
                arrays.append(result.column(f"__v{compiled.columns.index(name)}").combine_chunks())
            else:
                arrays.append(batch.column(name))
        converted = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
        if bad:
            converted = converted.filter(ok.combine_chunks())
        return converted, errors


def check_rules(rules: dict[str, FieldRule]) -> list[ErrorDetail]:
    """Rule problems found before any data flows (regular expressions DuckDB cannot compile)."""
    details: list[ErrorDetail] = []
    patterns = {column: rule for column, rule in rules.items() if rule.pattern is not None}
    if not patterns:
        return details
    import duckdb

    con = connect_duckdb()
    for column, rule in patterns.items():
        if rule.pattern is not None:
            try:
                con.execute("SELECT regexp_full_match('', ?)", [rule.pattern])
            except duckdb.Error as exc:
                details.append(
                    ErrorDetail(
                        f"invalid pattern {rule.pattern!r}: {exc}",
                        column,
                        "write an RE2 regular expression",
                    )
                )
    con.close()
    return details
