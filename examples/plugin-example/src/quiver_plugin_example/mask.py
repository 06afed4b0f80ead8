"""The ``mask`` processor: hide personal data (emails, phone numbers, free text) in columns.

Masking is vectorised with ``pyarrow.compute``; no row becomes a Python object.

* ``emails``: ``jane.doe@example.com`` -> ``j*******@example.com`` (the first character and
  the domain stay, so the data keeps its shape); a value without ``@`` is masked entirely.
* ``phones``: every digit but the last ``keep_digits`` is replaced, separators dropped:
  ``+33 6 12 34 56 78`` -> ``*********78``.
* ``text``: everything but the last ``keep_chars`` characters.

Nulls stay null. Columns must exist and hold strings; otherwise the step fails with the
column name and the columns that do exist.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from quiver.pipeline.component import ComponentConfig, ProcessorOutput, RunContext, processor
from quiver.runtime.errors import PermanentError

__all__ = ["MaskConfig", "MaskProcessor"]


class MaskConfig(ComponentConfig):
    """Which columns to mask, and how."""

    emails: list[str] = Field(default_factory=list, description="Columns holding emails.")
    phones: list[str] = Field(default_factory=list, description="Columns holding phone numbers.")
    text: list[str] = Field(default_factory=list, description="Columns masked but for the end.")
    keep_digits: int = Field(2, ge=0, le=6, description="Last phone digits left visible.")
    keep_chars: int = Field(0, ge=0, description="Last characters of `text` left visible.")
    char: str = Field("*", min_length=1, max_length=1, description="The masking character.")

    @model_validator(mode="after")
    def _something_to_mask(self) -> MaskConfig:
        named = [*self.emails, *self.phones, *self.text]
        if not named:
            raise ValueError("name at least one column in `emails`, `phones` or `text`")
        twice = sorted({c for c in named if named.count(c) > 1})
        if twice:
            raise ValueError(f"column(s) {twice} are listed more than once")
        return self


def _stars(count: pa.Array, char: str) -> pa.Array:
    """``char`` repeated ``count`` times, element-wise."""
    return pc.binary_repeat(pa.scalar(char), pc.max_element_wise(count, 0))


def mask_emails(values: pa.Array, char: str) -> pa.Array:
    local = pc.replace_substring_regex(values, r"@.*$", "")
    domain = pc.replace_substring_regex(values, r"^[^@]*", "")
    has_at = pc.match_substring(values, "@")
    first = pc.utf8_slice_codeunits(local, 0, 1)
    hidden = _stars(pc.subtract(pc.utf8_length(local), 1), char)
    masked = pc.binary_join_element_wise(first, hidden, domain, "")
    whole = _stars(pc.utf8_length(values), char)
    return pc.if_else(has_at, masked, whole)


def mask_phones(values: pa.Array, keep: int, char: str) -> pa.Array:
    digits = pc.replace_substring_regex(values, r"\D", "")
    length = pc.utf8_length(digits)
    tail = (
        pc.utf8_slice_codeunits(digits, -keep, 2**31 - 1)
        if keep
        else pc.binary_repeat(pa.scalar(""), pc.max_element_wise(length, 0))
    )
    return pc.binary_join_element_wise(_stars(pc.subtract(length, keep), char), tail, "")


def mask_text(values: pa.Array, keep: int, char: str) -> pa.Array:
    length = pc.utf8_length(values)
    if not keep:
        return _stars(length, char)
    tail = pc.utf8_slice_codeunits(values, -keep, 2**31 - 1)
    return pc.binary_join_element_wise(_stars(pc.subtract(length, keep), char), tail, "")


@processor("mask", config=MaskConfig)
class MaskProcessor:
    """Mask emails, phone numbers and free text in the named columns."""

    def __init__(self, cfg: MaskConfig) -> None:
        self.cfg = cfg

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        cfg = self.cfg
        plan = (
            [(c, "email") for c in cfg.emails]
            + [(c, "phone") for c in cfg.phones]
            + [(c, "text") for c in cfg.text]
        )
        columns = list(batch.columns)
        for name, kind in plan:
            index = batch.schema.get_field_index(name)
            if index < 0:
                raise PermanentError.one(
                    f"column {name!r} does not exist (columns: {batch.schema.names})",
                    "processor mask",
                    "fix the name in `emails`/`phones`/`text`, or rename the column first",
                )
            values = columns[index]
            if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
                values = pc.cast(values, pa.string())
            if kind == "email":
                columns[index] = mask_emails(values, cfg.char)
            elif kind == "phone":
                columns[index] = mask_phones(values, cfg.keep_digits, cfg.char)
            else:
                columns[index] = mask_text(values, cfg.keep_chars, cfg.char)
        schema = pa.schema(
            [batch.schema.field(i).with_type(columns[i].type) for i in range(batch.num_columns)]
        )
        return ProcessorOutput(pa.record_batch(columns, schema=schema))
