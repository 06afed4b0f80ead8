"""The ``redact`` processor: find personal data in text and replace it with a mask or a hash.

```yaml
- redact:
    fields: [body, attributes, resource["user.email"]]   # a map column: every value in it
    patterns: [email, card, phone, ipv4, ipv6]           # the built-ins (default: all)
    custom: {employee_id: 'EMP-\\d{6}'}                   # more patterns (RE2 syntax)
    mode: mask                                            # or hash
    mask: "[{kind}]"                                      # {kind}: the pattern's name
    salt: ${env:REDACT_SALT}                              # hash mode: sha256(salt + match)
```
``card`` only replaces digit runs (13 to 19 digits, spaces or dashes allowed between them)
that pass the Luhn check, so order and invoice numbers stay. Each pattern runs over the whole
column at once (RE2 through ``pyarrow.compute``); in hash mode the same match always gives the
same hash (its first 16 hex digits), so redacted values can still be counted and joined.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from quiver.pipeline.component import (
    Closing,
    ColumnBound,
    ColumnUse,
    ComponentConfig,
    Concurrent,
    ProcessorOutput,
    RunContext,
    processor,
)
from quiver.pipeline.processors.batch_sql import BatchSql
from quiver.pipeline.processors.field_paths import (
    FieldPath,
    PathText,
    parse_path,
    read_path,
    write_path,
)
from quiver.runtime.errors import PermanentError

__all__ = ["PATTERNS", "RedactConfig", "RedactProcessor", "luhn_valid"]

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEX = r"[0-9A-Fa-f]{1,4}"

#: The built-in patterns, in the order they run (cards before phone numbers).
PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
    "card": r"\b\d(?:[ -]?\d){12,18}\b",
    "ipv6": (
        rf"(?:{_HEX}:){{7}}{_HEX}|(?:{_HEX}:){{1,6}}(?::{_HEX}){{1,6}}"
        rf"|(?:{_HEX}:){{1,7}}:|::(?:{_HEX}:){{0,6}}{_HEX}"
    ),
    "ipv4": rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b",
    "phone": (
        r"(?:\+\d{1,3}[ .-]?)?\(?\b\d{3}\)?[ .-]\d{3}[ .-]\d{4}\b"
        r"|\+\d{1,3}(?:[ .-]?\d{2,4}){2,5}\b"
    ),
}
_MARKS = ("\x00", "\x01", "\x02", "\x1e")


def _marker(text: pa.Array) -> str:
    """A character no value of ``text`` holds, to wrap matches in."""
    for mark in _MARKS:
        if not pc.any(pc.match_substring(text, mark)).as_py():
            return mark
    raise PermanentError.one(
        "cannot redact text holding the control characters U+0000, U+0001, U+0002 and U+001E",
        "",
        "remove control characters first (transform or derive), or use mode: mask without card",
    )


PatternName = Literal["email", "card", "phone", "ipv4", "ipv6"]
_BUILT_IN: list[PatternName] = ["email", "card", "phone", "ipv4", "ipv6"]


def _valid_regex(pattern: str) -> None:
    try:
        pc.match_substring_regex(pa.array([""]), pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"bad regular expression {pattern!r}: {exc}") from exc


class RedactConfig(ComponentConfig):
    """Mask or hash personal data in text fields."""

    fields: list[PathText] = Field(
        description="Field paths of text columns or map keys; a map column means all its values."
    )
    patterns: list[PatternName] = Field(
        default_factory=lambda: list(_BUILT_IN), description="Built-in patterns to apply."
    )
    custom: dict[str, str] = Field(
        default_factory=dict, description="Name -> regular expression (RE2) of more patterns."
    )
    mode: Literal["mask", "hash"] = Field(
        default="mask", description="Replace each match with the mask, or with its hash."
    )
    mask: str = Field(default="[{kind}]", description="Mask text; {kind} is the pattern name.")
    salt: str = Field(default="", description="Hash mode: text hashed before each match.")

    @field_validator("custom")
    @classmethod
    def _regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for pattern in value.values():
            _valid_regex(pattern)
        return value


def luhn_valid(candidates: pa.Array) -> np.ndarray:
    """Whether each digit string (spaces and dashes ignored) passes the Luhn check."""
    digits = pc.replace_substring_regex(candidates, r"[^0-9]", "")
    last19 = pc.utf8_slice_codeunits(pc.utf8_lpad(digits, 19, "0"), -19)  # zeros add nothing
    padded = last19.cast(pa.binary())
    offsets_buffer, data_buffer = padded.buffers()[1:3]
    assert offsets_buffer is not None and data_buffer is not None
    start = int(np.frombuffer(offsets_buffer, dtype=np.int32)[padded.offset])
    data = np.frombuffer(data_buffer, dtype=np.uint8)[start : start + 19 * len(padded)]
    table = data.reshape(-1, 19).astype(np.int64) - 48
    doubled = table[:, -2::-2] * 2  # every second digit, from the right
    table[:, -2::-2] = np.where(doubled > 9, doubled - 9, doubled)
    lengths = pc.utf8_length(digits).to_numpy(zero_copy_only=False)
    valid: np.ndarray = (table.sum(axis=1) % 10 == 0) & (lengths >= 13) & (lengths <= 19)
    return valid


@processor("redact", config=RedactConfig)
class RedactProcessor(Concurrent, Closing, ColumnBound):
    """Mask or hash personal data in text fields."""

    def __init__(self, cfg: RedactConfig) -> None:
        self.cfg = cfg
        self._paths = [parse_path(f) for f in cfg.fields]
        self._rules: list[tuple[str, str]] = [
            (k, PATTERNS[k]) for k in PATTERNS if k in cfg.patterns
        ]
        self._rules += list(cfg.custom.items())
        self._sql = BatchSql("redact")

    def _replacements(self, kind: str, matches: pa.Array) -> pa.Array:
        if self.cfg.mode == "mask":
            mask = self.cfg.mask.replace("{kind}", kind)
            return pc.fill_null(pa.nulls(len(matches), pa.string()), mask)
        table = self._sql.run(
            pa.RecordBatch.from_arrays([matches], ["v"]),
            "SELECT left(sha256($salt || v), 16) AS h FROM input",
            {"salt": self.cfg.salt},
        )
        return table.column("h").combine_chunks()

    def _redact_text(self, text: pa.Array) -> pa.Array:
        for kind, pattern in self._rules:
            if not pc.any(pc.match_substring_regex(text, pattern)).as_py():
                continue
            if self.cfg.mode == "mask" and kind != "card":
                mask = self.cfg.mask.replace("{kind}", kind).replace("\\", "\\\\")
                text = pc.replace_substring_regex(text, pattern, mask)
                continue
            # wrap each match in markers, split on them: odd pieces are the matches
            mark = _marker(text)
            marked = pc.replace_substring_regex(text, pattern, f"{mark}\\0{mark}")
            pieces = pc.split_pattern(marked, mark)
            offsets = pieces.offsets.to_numpy()
            flat = pieces.flatten()
            counts = np.diff(offsets)
            position = np.arange(len(flat)) - np.repeat(offsets[:-1] - offsets[0], counts)
            chosen = position % 2 == 1
            if kind == "card":
                chosen[chosen] = luhn_valid(flat.filter(pa.array(chosen)))
            if chosen.any():
                new = self._replacements(kind, flat.filter(pa.array(chosen)))
                flat = pc.replace_with_mask(flat, pa.array(chosen), new)
            rebuilt = pa.ListArray.from_arrays(
                pa.array(offsets - offsets[0], pa.int32()), flat, mask=pieces.is_null()
            )
            text = pc.binary_join(rebuilt, "")
        return text

    def _redact(self, batch: pa.RecordBatch, path: FieldPath) -> pa.RecordBatch:
        values = read_path(batch, path)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if path.key is None and pa.types.is_map(values.type):
            assert isinstance(values, pa.MapArray)
            # whole child arrays (map_lookup needs keys and items at the same child offset)
            rebuilt = pa.MapArray.from_arrays(
                pa.array(values.offsets.to_numpy(), pa.int32()),
                values.keys,
                self._redact_text(values.items),
                type=values.type,
                mask=values.is_null(),
            )
            return write_path(batch, path, rebuilt)
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
            raise PermanentError.one(
                f"cannot redact {path}: it is {values.type}, not text",
                str(path),
                "list only text columns, map columns or map keys under `fields`",
            )
        redacted = self._redact_text(values)
        if path.key is not None:
            return write_path(batch, path, redacted)
        return write_path(batch, path, redacted.cast(values.type))

    def columns_used(self) -> list[ColumnUse]:
        return [ColumnUse(path.column, ("fields", i)) for i, path in enumerate(self._paths)]

    async def process(self, batch: pa.RecordBatch, ctx: RunContext) -> ProcessorOutput:
        del ctx
        for path in self._paths:
            batch = self._redact(batch, path)
        return ProcessorOutput(batch)

    def close(self) -> None:
        self._sql.close()
