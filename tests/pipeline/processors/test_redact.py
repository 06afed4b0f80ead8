"""The redact processor: personal data masked or hashed in text columns and attributes."""

from __future__ import annotations

from typing import cast

import pyarrow as pa
import pytest
from pydantic import ValidationError

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.field_paths import parse_path, read_path
from quiver.pipeline.processors.redact import RedactConfig, RedactProcessor, luhn_valid
from quiver.runtime.errors import PermanentError

from .contract import make, process
from .telemetry_rows import spans

TEXTS = [
    "mail ann.lee@example.co.uk now",
    "card 4111 1111 1111 1111 and order 1234567890123",
    "call +1 415-555-0132 or (415) 555-0199",
    "from 192.168.10.7 and 2001:db8::8a2e:370:7334 and ::1",
    "nothing here, 10:30:00 on 2024-01-05",
    None,
]


def _redact(options: dict[str, object], texts: list[str | None], ctx: RunContext) -> list[object]:
    b = pa.RecordBatch.from_pydict({"msg": pa.array(texts, pa.string())})
    out = process(make(RedactProcessor, {"fields": ["msg"], **options}), b, ctx)
    assert out.batch is not None
    return cast(list[object], out.batch.column("msg").to_pylist())


def test_built_in_patterns_are_masked_by_kind(run_ctx: RunContext) -> None:
    assert _redact({}, TEXTS, run_ctx) == [
        "mail [email] now",
        "card [card] and order 1234567890123",
        "call [phone] or [phone]",
        "from [ipv4] and [ipv6] and [ipv6]",
        "nothing here, 10:30:00 on 2024-01-05",
        None,
    ]


def test_card_numbers_failing_the_luhn_check_stay() -> None:
    cards = pa.array(["4111111111111111", "4111111111111112", "5500-0000-0000-0004", "0" * 12])
    assert luhn_valid(cards).tolist() == [True, False, True, False]


def test_hash_mode_gives_the_same_hash_for_the_same_value(run_ctx: RunContext) -> None:
    out = _redact(
        {"mode": "hash", "patterns": ["email"], "salt": "s"},
        ["a x@y.io", "b x@y.io", "c z@y.io"],
        run_ctx,
    )
    hashes = [str(v).split(" ")[1] for v in out]
    assert hashes[0] == hashes[1] != hashes[2]
    assert all(len(h) == 16 and "@" not in h for h in hashes)


def test_custom_patterns_and_mask(run_ctx: RunContext) -> None:
    out = _redact(
        {"patterns": [], "custom": {"employee": r"EMP-\d{6}"}, "mask": "<{kind}>"},
        ["by EMP-123456 and EMP-12"],
        run_ctx,
    )
    assert out == ["by <employee> and EMP-12"]


def test_attributes_and_single_keys_are_redacted(run_ctx: RunContext) -> None:
    b = spans().slice(1)
    proc = make(RedactProcessor, {"fields": ["attributes"], "patterns": ["email"]})
    out = process(proc, b, run_ctx).batch
    assert out is not None
    assert read_path(out, parse_path("attributes.user.email")).to_pylist() == [
        "[email]",
        None,
        "[email]",
        None,
    ]
    assert read_path(out, parse_path("attributes.http.method")).to_pylist()[0] == "POST"
    proc = make(RedactProcessor, {"fields": ['attributes["user.email"]'], "mode": "hash"})
    out = process(proc, spans(), run_ctx).batch
    assert out is not None
    assert "@" not in str(read_path(out, parse_path("attributes.user.email")).to_pylist())


def test_redacting_a_number_column_is_refused(run_ctx: RunContext) -> None:
    with pytest.raises(PermanentError, match=r"duration_ns.*not text"):
        process(make(RedactProcessor, {"fields": ["duration_ns"]}), spans(), run_ctx)


def test_a_bad_custom_regex_is_refused_with_its_location() -> None:
    with pytest.raises(ValidationError) as info:
        RedactConfig.model_validate({"fields": ["body"], "custom": {"x": "a(b"}})
    error = info.value.errors()[0]
    assert error["loc"] == ("custom",)
    assert "bad regular expression 'a(b'" in error["msg"]


def test_text_holding_control_characters_is_still_split_right(run_ctx: RunContext) -> None:
    out = _redact({"patterns": ["card"]}, ["a\x00b 4111111111111111 \x00c"], run_ctx)
    assert out == ["a\x00b [card] \x00c"]
