"""The nats receiver against NATS with JetStream at 127.0.0.1:4222."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from quiver.ingest.nats import NatsReceiver
from quiver.pipeline.component import LINE_COLUMN, RunContext

from .conftest import (
    FETCH_WAIT,
    build,
    free_port,
    js_publish,
    publish_until_read,
    unique,
    wait_started,
)
from .conftest import read_all as take

FAST = {"idle_timeout": 1.0, "batch_seconds": 0.2, "fetch_wait": FETCH_WAIT}


def receiver(**options: Any) -> NatsReceiver:
    r: NatsReceiver = build(NatsReceiver, {**FAST, **options})
    return r


async def test_jetstream_durable_acknowledges_after_commit(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    stream, prefix = js_stream
    await js_publish(f"{prefix}.a", [b'{"n": %d}' % i for i in range(40)])
    opts = {"subject": f"{prefix}.>", "stream": stream, "durable": unique("d")}

    first = receiver(**opts)
    assert (await take(first, run_ctx)).column("n").to_pylist() == list(range(40))
    await first.abort()  # negatively acknowledged: delivered again at once
    await first.close()

    again = receiver(**opts)
    table = await take(again, run_ctx)
    assert sorted(table.column("n").to_pylist()) == list(range(40))
    assert set(table.column("nats_subject").to_pylist()) == {f"{prefix}.a"}
    await again.commit()
    await again.close()

    await js_publish(f"{prefix}.b", [b'{"n": 40}'])
    after = receiver(**opts)
    assert (await take(after, run_ctx)).column("n").to_pylist() == [40]
    await after.commit()
    await after.close()


async def test_jetstream_messages_of_a_killed_run_come_again_after_ack_wait(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    stream, prefix = js_stream
    await js_publish(f"{prefix}.a", [b'{"n": 1}', b'{"n": 2}'])
    opts = {"subject": f"{prefix}.>", "stream": stream, "durable": unique("d"), "ack_wait": 1.0}
    killed = receiver(**opts)
    assert (await take(killed, run_ctx)).num_rows == 2
    await killed.close()  # no commit, no abort
    await asyncio.sleep(1.2)
    again = receiver(**opts)
    assert sorted((await take(again, run_ctx)).column("n").to_pylist()) == [1, 2]
    await again.commit()
    await again.close()


async def test_core_subjects_with_wildcards(run_ctx: RunContext) -> None:
    import nats

    prefix = unique("core")
    r = receiver(subject=f"{prefix}.*.temp", idle_timeout=None)
    stream = r.batches(run_ctx)
    reading = asyncio.ensure_future(anext(stream))
    nc = await nats.connect("nats://127.0.0.1:4222")

    async def publish() -> None:
        await nc.publish(f"{prefix}.paris.wind", b'{"c": 99}')  # not subscribed
        await nc.publish(f"{prefix}.paris.temp", b'{"c": 20}')
        await nc.flush()

    batch = await publish_until_read(reading, publish)
    await nc.close()
    r.drain()
    rest = [b async for b in stream]
    await r.commit()
    await r.close()
    rows = pa.Table.from_batches([batch, *rest]).drop_columns([LINE_COLUMN]).to_pylist()
    assert rows and all(row == {"c": 20, "nats_subject": f"{prefix}.paris.temp"} for row in rows)


def test_stream_without_durable_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="`stream` needs `durable`"):
        build(NatsReceiver, {"subject": "a.>", "stream": "S"})


async def test_a_commit_is_settled_before_it_returns(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    """Acknowledged, then closed at once: once ack_wait has passed nothing comes again."""
    stream, prefix = js_stream
    count = 300
    await js_publish(f"{prefix}.a", [b'{"n": %d}' % i for i in range(count)])
    opts = {"subject": f"{prefix}.>", "stream": stream, "durable": unique("d"), "ack_wait": 1.0}
    r = receiver(**opts, batch_messages=count)
    assert sorted((await take(r, run_ctx)).column("n").to_pylist()) == list(range(count))
    await r.commit()
    await r.close()
    await asyncio.sleep(1.5)  # past ack_wait: what was not acknowledged is sent again
    after = receiver(**opts)
    again = await take(after, run_ctx)
    await after.close()
    assert again.num_rows == 0, f"{again.num_rows} acknowledged message(s) were sent again"


@pytest.fixture
def private_nats(certificates: Path) -> Iterator[int]:
    """A core NATS server of one test on a free port: TLS with the test CA's certificate and
    the token `s3cret` required of every client."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "nats-server",
            *("-a", "127.0.0.1", "-p", str(port)),
            *("--tls", "--tlscert", str(certificates / "server.pem")),
            *("--tlskey", str(certificates / "server.key"), "--auth", "s3cret"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_started(proc, port, "nats-server", 10)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_tls_and_a_token(private_nats: int, certificates: Path, tmp_path: Path) -> None:
    import nats

    from quiver.runtime.errors import PermanentError

    shutil.copy(certificates / "ca.pem", tmp_path / "ca.pem")
    ctx = RunContext("tls", str(tmp_path))
    server = f"nats://127.0.0.1:{private_nats}"
    options = {
        "servers": [server],
        "subject": "secure.>",
        "tls": {"ca_file": "ca.pem"},  # relative to the pipeline's folder
        "idle_timeout": None,
    }
    client_tls = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    nc = await nats.connect(server, token="s3cret", tls=client_tls)
    try:
        r = receiver(**options, token="s3cret")
        stream = r.batches(ctx)
        reading = asyncio.ensure_future(anext(stream))
        batch = await publish_until_read(reading, lambda: nc.publish("secure.a", b'{"ok": 1}'))
        r.drain()
        _ = [b async for b in stream]
        await r.commit()
        await r.close()
    finally:
        await nc.close()
    assert set(batch.column("ok").to_pylist()) == {1}

    wrong = receiver(**options, token="nope", reconnect_attempts=0)
    with pytest.raises(PermanentError) as err:
        await anext(wrong.batches(ctx))
    assert "nope" not in str(err.value)
    await wrong.close()

    # without the CA the server's certificate is not trusted: the run fails at once
    untrusted = receiver(**{**options, "tls": {}}, token="s3cret")
    started = time.monotonic()
    with pytest.raises(PermanentError) as err:
        await anext(untrusted.batches(ctx))
    assert time.monotonic() - started < 5
    await untrusted.close()
    assert "TLS certificate is not trusted" in str(err.value), err.value
    assert "tls.ca_file" in err.value.details[0].fix


async def test_a_jetstream_run_stops_within_its_fetch_wait(
    js_stream: tuple[str, str], run_ctx: RunContext
) -> None:
    """A pull request is never cut short: a drained run ends once the one in flight has
    waited its `fetch_wait` (1 s by default), not sooner."""
    stream, prefix = js_stream
    await js_publish(f"{prefix}.a", [b'{"n": 1}'])
    opts = {"subject": f"{prefix}.>", "stream": stream, "durable": unique("d")}
    r = receiver(**opts, idle_timeout=None, batch_seconds=0.05, fetch_wait=0.05)
    batches = r.batches(run_ctx)
    assert (await anext(batches)).num_rows == 1
    r.drain()
    started = time.monotonic()
    assert [b async for b in batches] == []
    took = time.monotonic() - started
    await r.commit()
    await r.close()
    assert took < 0.9, f"the run took {took:.2f}s to stop"
