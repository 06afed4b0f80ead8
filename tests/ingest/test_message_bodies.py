"""JSON, JSON lines and CSV bodies read alike by every broker receiver (Mosquitto, RabbitMQ,
NATS JetStream, Kafka): a UTF-8 byte order mark is no content, and a body the decoder cannot
read (empty JSON, a CSV row of too many fields or not UTF-8, a bad JSON line) is a rejected
row with its reason, never a failed run."""

from __future__ import annotations

from quiver.pipeline.component import RowError, RunContext

from .conftest import Channel


def reasons(errors: list[RowError]) -> list[str]:
    """The reasons without the message's label (which names the broker's topic and position)."""
    return [e.reason.split(": ", 1)[1] for e in errors]


BOM = b"\xef\xbb\xbf"


async def test_a_csv_body_with_text_after_a_closing_quote_is_refused_naming_where(
    channel: Channel, run_ctx: RunContext
) -> None:
    await channel.publish(
        [b'id,name\n1,"ann, ""a"""\n', b'id,name\n2,"ok"\n3,"Ann"ie\n', b"id,name\n4,bo\n"]
    )
    rows, errors = await channel.read(run_ctx, format="csv", schema={"id": "int"})
    assert rows == [{"id": 1, "name": 'ann, "a"'}, {"id": 4, "name": "bo"}]
    assert reasons(errors) == [
        "unreadable csv body: text after the closing quote at line 3, column 8: a quote "
        'inside a quoted field must be doubled (""), as RFC 4180 asks'
    ]


async def test_csv_bodies_with_a_byte_order_mark_a_huge_field_or_bad_rows(
    channel: Channel, run_ctx: RunContext
) -> None:
    huge = "x" * 200_000
    await channel.publish(
        [
            BOM + b"id,name\n1,ann\n",
            b"id,name\n2," + huge.encode() + b"\n",
            b"id,name\n3,bo,extra\n",
            b"id,name\n4,\xff\n",
        ]
    )
    rows, errors = await channel.read(run_ctx, format="csv", schema={"id": "int"})
    assert rows == [{"id": 1, "name": "ann"}, {"id": 2, "name": huge}]
    assert [e.reason.split(": ")[1] for e in errors] == ["unreadable csv body"] * 2


async def test_json_bodies_with_a_byte_order_mark_empty_or_a_bad_line(
    channel: Channel, run_ctx: RunContext
) -> None:
    await channel.publish([BOM + b'{"id": 1}', b"", b'{"id": 2}', b" \n"])
    rows, errors = await channel.read(run_ctx, format="json")
    assert rows == [{"id": 1}, {"id": 2}]
    assert (
        reasons(errors)
        == ["unreadable json body: the body is empty (a json body is an object or an array)"] * 2
    )

    await channel.publish([BOM + b'{"id": 1}\n{"id": 2}', b'{"id": 3}\n{"id": 4'])
    rows, errors = await channel.read(run_ctx, format="jsonl")
    assert rows == [{"id": 1}, {"id": 2}]
    assert reasons(errors) == ["unreadable jsonl body: Expecting ',' delimiter: line 2 column 9"]
