"""The mqtt receiver against Mosquitto at 127.0.0.1:1883."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pyarrow as pa
import pytest

from quiver.ingest.mqtt import MqttReceiver
from quiver.pipeline.component import LINE_COLUMN, RunContext

from .conftest import build, mqtt_publish, publish_until_read, unique
from .conftest import read_all as take

FAST = {"idle_timeout": 1.0, "batch_seconds": 0.2}


def receiver(prefix: str, **options: object) -> MqttReceiver:
    r: MqttReceiver = build(MqttReceiver, {"topics": [f"{prefix}/#"], **FAST, **options})
    return r


async def open_session(prefix: str, client_id: str, ctx: RunContext, **options: object) -> None:
    """Connect once so the broker keeps messages for the session from now on."""
    r = receiver(prefix, client_id=client_id, idle_timeout=0.2, **options)
    await take(r, ctx)
    await r.close()


async def test_qos1_messages_are_acknowledged_only_after_commit(run_ctx: RunContext) -> None:
    prefix, cid, qos = unique("m"), unique("c"), 1
    await open_session(prefix, cid, run_ctx, qos=qos)
    await asyncio.to_thread(
        mqtt_publish, [(f"{prefix}/a", b'{"n": %d}' % i) for i in range(50)], qos
    )

    first = receiver(prefix, client_id=cid, qos=qos)
    assert (await take(first, run_ctx)).column("n").to_pylist() == list(range(50))
    await first.abort()  # a sink failed: nothing acknowledged
    await first.close()

    again = receiver(prefix, client_id=cid, qos=qos)
    assert sorted((await take(again, run_ctx)).column("n").to_pylist()) == list(range(50))
    await again.commit()
    await again.close()
    assert again.acknowledged == 50

    after = receiver(prefix, client_id=cid, qos=qos)
    assert (await take(after, run_ctx)).num_rows == 0
    await after.close()


@pytest.mark.parametrize("qos", [1, 2])
async def test_a_commit_holds_when_the_session_is_taken_over_at_once(
    run_ctx: RunContext, qos: int
) -> None:
    """commit() returns once the broker has settled every message: a new connection of the
    same client id right after close() (a restart) is sent none of them again. Mosquitto reads
    one packet per turn of its loop; had the acknowledgements only been written to the socket,
    the takeover would drop the ones it had not read yet (hundreds of them here)."""
    prefix, cid, count = unique("m"), unique("c"), 400
    await open_session(prefix, cid, run_ctx, qos=qos)
    await asyncio.to_thread(
        mqtt_publish, [(f"{prefix}/a", b'{"n": %d}' % i) for i in range(count)], qos
    )
    r = receiver(prefix, client_id=cid, qos=qos, batch_messages=count)
    assert sorted((await take(r, run_ctx)).column("n").to_pylist()) == list(range(count))
    await r.commit()
    await r.close()
    after = receiver(prefix, client_id=cid, qos=qos, idle_timeout=0.5)
    again = await take(after, run_ctx)
    await after.close()
    assert again.num_rows == 0, f"{again.num_rows} acknowledged message(s) were sent again"


async def test_qos2_messages_are_completed_on_commit(run_ctx: RunContext) -> None:
    prefix, cid = unique("m"), unique("c")
    await open_session(prefix, cid, run_ctx, qos=2)
    await asyncio.to_thread(mqtt_publish, [(f"{prefix}/a", b'{"n": %d}' % i) for i in range(20)], 2)
    r = receiver(prefix, client_id=cid, qos=2)
    assert (await take(r, run_ctx)).column("n").to_pylist() == list(range(20))
    await r.commit()
    await r.close()
    after = receiver(prefix, client_id=cid, qos=2)
    assert (await take(after, run_ctx)).num_rows == 0
    await after.close()


async def test_qos0_messages_arrive_with_their_topic(run_ctx: RunContext) -> None:
    prefix = unique("m")
    r = receiver(prefix, qos=0, idle_timeout=None)
    stream = cast("AsyncGenerator[pa.RecordBatch, None]", r.batches(run_ctx))
    reading = asyncio.ensure_future(anext(stream))
    batch = await publish_until_read(
        reading, lambda: asyncio.to_thread(mqtt_publish, [(f"{prefix}/x/y", b'{"v": 1.5}')], 0)
    )
    await stream.aclose()
    await r.commit()
    await r.close()
    assert batch.to_pylist()[0] == {"v": 1.5, "mqtt_topic": f"{prefix}/x/y", LINE_COLUMN: 1}


async def test_wildcards_and_topic_levels_routed_into_fields(run_ctx: RunContext) -> None:
    prefix, cid = unique("m"), unique("c")
    options = {
        "topics": [f"{prefix}/+/+/temp", f"{prefix}/alerts/#"],
        "topic_fields": [f"{prefix}/{{site}}/{{device}}/temp", f"{prefix}/alerts/#"],
        "topic_field": None,
        "client_id": cid,
    }
    r = build(MqttReceiver, {**FAST, **options, "idle_timeout": 0.2})
    await take(r, run_ctx)
    await r.close()
    await asyncio.to_thread(
        mqtt_publish,
        [
            (f"{prefix}/paris/t1/temp", b'{"c": 20}'),
            (f"{prefix}/lyon/t7/temp", b'{"c": 18}'),
            (f"{prefix}/paris/t1/humidity", b'{"c": 99}'),  # matches no subscription
            (f"{prefix}/alerts/fire/now", b'{"c": 500}'),
        ],
    )
    r = build(MqttReceiver, {**FAST, **options})
    rows = (await take(r, run_ctx)).drop_columns([LINE_COLUMN]).to_pylist()
    await r.commit()
    await r.close()
    assert sorted(rows, key=lambda x: x["c"]) == [
        {"c": 18, "site": "lyon", "device": "t7"},
        {"c": 20, "site": "paris", "device": "t1"},
        {"c": 500, "site": None, "device": None},
    ]


async def test_a_field_that_is_not_a_whole_topic_level_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="a field takes a whole level"):
        build(MqttReceiver, {"topics": ["a/#"], "topic_fields": ["a/x{site}/#"]})


async def test_drain_ends_the_input_with_what_was_received(run_ctx: RunContext) -> None:
    prefix = unique("m")
    r = receiver(prefix, idle_timeout=None, batch_seconds=0.1)
    stream = r.batches(run_ctx)
    reading = asyncio.ensure_future(anext(stream))
    first = await publish_until_read(
        reading, lambda: asyncio.to_thread(mqtt_publish, [(f"{prefix}/a", b'{"n": 1}')])
    )
    r.drain()
    rest = [b async for b in stream]  # ends at once, with what came meanwhile
    await r.commit()
    await r.close()
    assert first.num_rows >= 1
    assert set(pa.Table.from_batches([first, *rest]).column("n").to_pylist()) == {1}


async def test_tls_and_a_password(
    private_mosquitto: int, certificates: Path, tmp_path: Path
) -> None:
    import shutil

    import paho.mqtt.publish as publish

    from quiver.runtime.errors import PermanentError

    shutil.copy(certificates / "ca.pem", tmp_path / "ca.pem")
    ctx = RunContext("tls", str(tmp_path))
    options = {
        "port": private_mosquitto,
        "tls": {"ca_file": "ca.pem"},  # relative to the pipeline's folder
        "username": "ingest",
        "idle_timeout": None,
    }
    r = receiver("secure", **options, password="s3cret")
    stream = r.batches(ctx)
    reading = asyncio.ensure_future(anext(stream))
    batch = await publish_until_read(
        reading,
        lambda: asyncio.to_thread(
            publish.single,
            "secure/a",
            b'{"ok": 1}',
            qos=1,
            hostname="127.0.0.1",
            port=private_mosquitto,
            auth={"username": "ingest", "password": "s3cret"},
            tls={"ca_certs": str(certificates / "ca.pem")},
        ),
    )
    r.drain()
    _ = [b async for b in stream]
    await r.commit()
    await r.close()
    assert set(batch.column("ok").to_pylist()) == {1}

    wrong = receiver("secure", **options, password="nope")
    with pytest.raises(PermanentError, match="refused the connection"):
        await anext(wrong.batches(ctx))
    await wrong.close()


async def test_a_bad_json_line_is_reported_at_its_line_in_the_body(run_ctx: RunContext) -> None:
    """A JSON Lines body is read as one text: the reason names the line of the body at
    fault, not line 1 of a line read alone."""
    prefix, cid = unique("m"), unique("c")
    await open_session(prefix, cid, run_ctx, qos=1)
    bodies = [
        b'{"n": 1}\n\n{"n": 2, "n": 3}\n',
        b'{"n": 4}\n{"n": }\n',
        b'{"n": 5}\n{"n": "\xff"}\n',
        b'{"n": 6}\n',
    ]
    await asyncio.to_thread(mqtt_publish, [(f"{prefix}/a", b) for b in bodies], 1)
    r = receiver(prefix, client_id=cid, qos=1, format="jsonl", topic_field=None)
    table = await take(r, run_ctx)
    errors = r.take_errors()
    await r.commit()
    await r.close()
    assert table.column("n").to_pylist() == [6]
    assert [e.reason.split(": ", 1)[1] for e in errors] == [
        "unreadable jsonl body: key 'n' appears twice in one JSON object (the object at line 3 "
        "column 1); its values would be taken differently by different readers, so the record "
        "is refused: keep one of them",
        "unreadable jsonl body: Expecting value: line 2 column 7",
        "unreadable jsonl body: not UTF-8 text: byte 0xff at line 2 column 8; send JSON Lines "
        "as UTF-8",
    ]
    # a body that is not UTF-8 is kept whole (messages.body_entry)
    assert [e.row for e in errors] == [
        {"body": bodies[0].decode()},
        {"body": bodies[1].decode()},
        {"body_base64": base64.b64encode(bodies[2]).decode()},
    ]
