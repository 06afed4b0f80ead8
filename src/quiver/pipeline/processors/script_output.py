"""The ``output_schema`` option of the script steps (``js``, ``python``): the output fields a
script gives, in order, each with its type, so every value is converted to one type and a
step whose rows were all rejected still gives its columns.

```yaml
output_schema:
  id: long
  total: {type: decimal, precision: 12, scale: 2}
  email: {type: string, required: true}
```
"""

from __future__ import annotations

import pyarrow as pa
from pydantic import Field, field_validator

from quiver.pipeline.component import LINE_COLUMN, ComponentConfig
from quiver.pipeline.js_runtime.codec import FIELD_TYPES, OutputField, arrow_type, normalize_type
from quiver.runtime.hints import did_you_mean

__all__ = ["OutputFieldConfig", "OutputSchemaOption"]

_CANONICAL_TYPES = sorted(set(FIELD_TYPES.values()))


class OutputFieldConfig(ComponentConfig):
    """One output field: its type, and whether an empty value rejects the row."""

    type: str = Field(
        description="string, integer (32-bit), long (64-bit), decimal, double, boolean, "
        "datetime (UTC), date or time."
    )
    required: bool = Field(
        default=False, description="Reject the row when the script leaves this field empty."
    )
    precision: int = Field(default=38, ge=1, le=38, description="Decimal digits in total.")
    scale: int = Field(default=9, ge=0, le=38, description="Decimal digits after the point.")

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        canonical = normalize_type(value)
        if canonical is None:
            close = did_you_mean(value.lower(), FIELD_TYPES)
            hint = f"; {close}" if close else ""
            raise ValueError(
                f"unknown field type '{value}'{hint} (types: {', '.join(_CANONICAL_TYPES)})"
            )
        return canonical


class OutputSchemaOption(ComponentConfig):
    """The ``output_schema`` option, shared by the configs of the script steps."""

    output_schema: dict[str, str | OutputFieldConfig] | None = Field(
        default=None,
        description="Output fields in order, `name: type` or `name: {type, required, precision, "
        "scale}`. Without it the output columns and their types are inferred.",
    )

    @field_validator("output_schema")
    @classmethod
    def _types(
        cls, value: dict[str, str | OutputFieldConfig] | None
    ) -> dict[str, str | OutputFieldConfig] | None:
        if value is None:
            return None
        out: dict[str, str | OutputFieldConfig] = {}
        for name, spec in value.items():
            if name == LINE_COLUMN:
                raise ValueError(f"'{LINE_COLUMN}' is reserved for source line numbers")
            out[name] = OutputFieldConfig(type=spec) if isinstance(spec, str) else spec
        return out

    def fields(self) -> tuple[OutputField, ...] | None:
        """The declared output fields, or None when none are declared."""
        if self.output_schema is None:
            return None
        out: list[OutputField] = []
        for name, spec in self.output_schema.items():
            if isinstance(spec, str):
                spec = OutputFieldConfig(type=spec)
            out.append(OutputField(name, spec.type, spec.required, spec.precision, spec.scale))
        return tuple(out)

    def declared_schema(self) -> pa.Schema | None:
        """The Arrow schema of the declared output fields, or None when none are declared."""
        fields = self.fields()
        if fields is None:
            return None
        return pa.schema([pa.field(f.name, arrow_type(f)) for f in fields])
