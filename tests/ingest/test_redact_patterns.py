"""The built-in patterns of `redact` on telemetry text: what each masks and, as much, what
it leaves alone (version numbers, dotted numbers that cannot be addresses, ids)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from quiver.pipeline.component import RunContext
from quiver.pipeline.processors.redact import RedactProcessor
from tests.pipeline.processors.contract import make, process


def redact(kind: str, texts: list[str], ctx: RunContext) -> list[str]:
    batch = pa.RecordBatch.from_pydict({"body": pa.array(texts, pa.string())})
    out = process(make(RedactProcessor, {"fields": ["body"], "patterns": [kind]}), batch, ctx)
    assert out.batch is not None
    return [str(v) for v in out.batch.column("body").to_pylist()]


@pytest.mark.parametrize("mode", ["mask", "hash"])
def test_ipv4_masks_addresses_and_leaves_versions_and_impossible_octets(
    run_ctx: RunContext, mode: str
) -> None:
    masked = {
        "from 192.168.10.7 now": "from [ipv4] now",
        "peer=10.0.0.1:443": "peer=[ipv4]:443",
        "255.255.255.255,0.0.0.0.": "[ipv4],[ipv4].",
        "client (8.8.8.8)": "client ([ipv4])",
    }
    kept = [
        "version 1.2.3.4",
        "Version: 10.0.0.1",
        "agent v1.2.3.4 started",
        "release 2.0.1.3 and build=4.5.6.7",
        "not an address 1.2.3.256",
        "nor 300.1.1.1",
        "leading zeros 010.001.002.003",
        "too many parts 1.2.3.4.5",
        "an OID 1.3.6.1.4.1.2021",
    ]
    texts = [*masked, *kept]
    batch = pa.RecordBatch.from_pydict({"body": pa.array(texts, pa.string())})
    processor = make(RedactProcessor, {"fields": ["body"], "patterns": ["ipv4"], "mode": mode})
    out = process(processor, batch, run_ctx)
    assert out.batch is not None
    result = out.batch.column("body").to_pylist()
    if mode == "mask":
        assert result == [*masked.values(), *kept]
    else:
        assert result[len(masked) :] == kept
        assert all(r != t for r, t in zip(result, masked, strict=False))


def test_phone_numbers_in_uk_forms_are_masked(run_ctx: RunContext) -> None:
    assert redact(
        "phone",
        [
            "call +44 20 7946 0958 today",
            "call 020 7946 0958 today",
            "mobile 07700 900123",
            "office (0161) 496 0000",
            "abroad +44 (0)20 7946 0958",
            "us +1 415-555-0132 or (415) 555-0199",
        ],
        run_ctx,
    ) == [
        "call [phone] today",
        "call [phone] today",
        "mobile [phone]",
        "office [phone]",
        "abroad [phone]",
        "us [phone] or [phone]",
    ]


def test_phone_leaves_dates_times_versions_and_short_numbers(run_ctx: RunContext) -> None:
    kept = [
        "at 2024-01-05 10:30:00",
        "order 0042 shipped",
        "took 020 ms",
        "version 1.2.3",
        "port 4317 and 4318",
    ]
    assert redact("phone", kept, run_ctx) == kept


def test_emails_with_non_ascii_local_parts_and_international_domains(
    run_ctx: RunContext,
) -> None:
    assert redact(
        "email",
        [
            "from josé.garcía@example.com",
            "to 用户@例子.广告 ok",
            "cc user@bücher.de",
            "bcc пользователь@пример.рф",
            "punycode user@xn--bcher-kva.xn--p1ai",
            "plain ann.lee@example.co.uk",
        ],
        run_ctx,
    ) == [
        "from [email]",
        "to [email] ok",
        "cc [email]",
        "bcc [email]",
        "punycode [email]",
        "plain [email]",
    ]


def test_email_leaves_handles_and_unqualified_names(run_ctx: RunContext) -> None:
    kept = ["ping @here", "user@localhost", "a@b", "price 5@3.50"]
    assert redact("email", kept, run_ctx) == kept
